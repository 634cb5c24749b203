//! `isol info --json` inside a guest with CPU 1 isolated.

use isol_lab::{Flavour, Lab};
use serde_json::Value;

#[test]
fn info_reports_isolated_cpu1() {
    let out = Lab::new()
        .unwrap()
        .kernel(Flavour::Cloud)
        .cmdline("nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0")
        .smp(2)
        .run_scenario("info")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    let info = out.json_section("info").unwrap();

    assert_eq!(info["cpus"]["isolated"], "1", "cpus: {}", info["cpus"]);

    let per_cpu = info["per_cpu"].as_array().expect("per_cpu is an array");
    let cpu1 = per_cpu
        .iter()
        .find(|c| c["cpu"] == 1)
        .unwrap_or_else(|| panic!("no per_cpu entry for cpu 1: {per_cpu:?}"));
    assert_eq!(
        cpu1["isolation"]["nohz_full"], true,
        "{}",
        cpu1["isolation"]
    );
    assert_eq!(cpu1["isolation"]["domain"], true, "{}", cpu1["isolation"]);

    let tps = &info["features"]["tracepoints"];
    assert_eq!(tps["context_tracking:user_exit"], true, "{tps}");
    assert_eq!(tps["context_tracking:user_enter"], true, "{tps}");

    // irqaffinity=0 keeps device IRQs off CPU 1: none has it in its
    // effective affinity.
    let irqs = cpu1["irqs"].as_array().expect("cpu 1 irqs is an array");
    let on_cpu1: Vec<&Value> = irqs.iter().collect();
    assert!(
        on_cpu1.is_empty(),
        "device IRQs effective on CPU 1: {on_cpu1:?}"
    );
}
