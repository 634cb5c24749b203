//! isold on every kernel of the matrix with CPU 1 isolated: the TLB
//! generator's IPIs appear in /metrics with their cause labels (the
//! function, which 5.10 calls flush_tlb_func_remote).

use isol_lab::{testprogs::testprog, Flavour, KernelSpec, Lab, Series};

fn on(series: Series) {
    let out = Lab::new()
        .unwrap()
        .kernel(KernelSpec::new(series, Flavour::Cloud))
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(240))
        .file(testprog("noisegen").unwrap(), "/bin/noisegen")
        .run_scenario("serve")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    let m = out.section("metrics").unwrap().text;
    let tlb = m
        .lines()
        .find(|l| {
            l.starts_with("isol_interruptions_total{")
                && l.contains("cpu=\"1\"")
                && l.contains("class=\"ipi\"")
                && l.contains("detail=\"flush_tlb_func")
        })
        .unwrap_or_else(|| panic!("no TLB-flush series in /metrics:\n{m}"));
    let n: f64 = tlb.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > 0.0, "{tlb}");
    assert!(m.contains("isol_up 1"));
    assert!(m.contains("isol_watched_cpus 1"));
    // SIGTERM ends it cleanly.
    assert!(out.stdout.contains("isold_status=0"), "{}", out.stdout);
}

#[test]
fn isold_exports_generator_ipis_on_5_10() {
    on(Series::V5_10);
}

#[test]
fn isold_exports_generator_ipis_on_6_1() {
    on(Series::V6_1);
}

#[test]
fn isold_exports_generator_ipis_on_6_12() {
    on(Series::V6_12);
}
