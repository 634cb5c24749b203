//! `isol audit`, `apply`, `revert` in a guest with CPU 1 isolated:
//! misconfigurations flagged with their fixes, apply makes them pass,
//! revert restores every value byte for byte, also after apply is
//! SIGKILLed at each step in turn (lab/scenarios/audit.sh).

use isol_lab::{Flavour, Lab};
use serde_json::Value;

fn item<'a>(audit: &'a Value, id: &str) -> &'a Value {
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id}"))
}

#[test]
fn audit_apply_revert_and_fault_injection() {
    let out = Lab::new()
        .unwrap()
        .kernel(Flavour::Cloud)
        .cmdline("nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0")
        .smp(2)
        .timeout(std::time::Duration::from_secs(600))
        .run_scenario("audit")
        .unwrap();
    eprintln!("{}", out.summary());
    eprintln!("{}", out.stdout);
    out.ensure_success().unwrap();

    let var = |k: &str| -> String {
        out.stdout
            .lines()
            .flat_map(|l| l.split_whitespace())
            .find_map(|w| w.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("scenario printed no {k}="))
    };
    let irq = var("IRQ");
    let pinned = var("PINNED");

    // Before: each misconfiguration flagged, with its exact fix.
    let a1 = out.json_section("audit1").unwrap();
    assert_eq!(a1["cpus"], "1");
    let irq_item = item(&a1, "irq.affinity");
    assert_eq!(irq_item["status"], "fail", "{irq_item}");
    assert!(
        irq_item["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("echo 0 > /proc/irq/{irq}/smp_affinity_list")),
        "{irq_item}"
    );
    let wq = item(&a1, "workqueue.cpumask");
    assert_eq!(wq["status"], "fail", "{wq}");
    assert!(wq["fix"]
        .as_str()
        .unwrap()
        .contains("> /sys/devices/virtual/workqueue/cpumask"));
    let tm = item(&a1, "sysctl.timer_migration");
    assert_eq!(tm["status"], "warn", "{tm}");
    assert_eq!(tm["fix"], "echo 0 > /proc/sys/kernel/timer_migration");
    let tasks = item(&a1, "tasks.on_cpus");
    assert_eq!(tasks["status"], "fail", "{tasks}");
    assert!(
        tasks["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("taskset -pc 0 {pinned}")),
        "{tasks}"
    );
    // The boot parameters are in place: those items pass.
    for id in ["boot.nohz_full", "boot.isolcpus_domain", "rcu.nocbs"] {
        assert_eq!(item(&a1, id)["status"], "pass", "{id}: {}", item(&a1, id));
    }

    // apply made every change.
    let ap = out.json_section("apply1").unwrap();
    let changes = ap["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for c in changes {
        assert_eq!(c["outcome"], "applied", "{c}");
    }

    // After apply: the four items pass, nothing fails.
    let a2 = out.json_section("audit2").unwrap();
    for id in [
        "irq.affinity",
        "workqueue.cpumask",
        "sysctl.timer_migration",
        "tasks.on_cpus",
    ] {
        assert_eq!(item(&a2, id)["status"], "pass", "{id}: {}", item(&a2, id));
    }
    assert_eq!(a2["verdict"]["fail"], 0, "{}", a2["verdict"]);

    // Idempotent.
    let ap2 = out.json_section("apply2").unwrap();
    assert_eq!(ap2["changes"].as_array().unwrap().len(), 0, "{ap2}");

    // Revert restored everything (the scenario compares the bytes too).
    let rv = out.json_section("revert").unwrap();
    assert_eq!(rv["complete"], true, "{rv}");
    assert!(out.stdout.contains("revert: byte-identical"));

    // Fault injection covered every step (3 per change).
    let steps: usize = var("FAULT_STEPS").parse().unwrap();
    assert!(
        steps >= 3 * changes.len(),
        "{steps} fault steps for {} changes",
        changes.len()
    );
}
