//! `isol noise` on the Debian 6.12 cloud kernel with CPU 1 nohz_full and
//! nothing else running there: the remaining gaps are listed with causes,
//! the residual 1 Hz tick among them, and the report's counts agree.
//!
//! Not asserted here: "with noise generators running, >= 99 % of gaps
//! are attributed". Under QEMU TCG it does not hold, and for a reason
//! outside the guest: the measured vCPU stops while QEMU runs the other
//! vCPU (single-threaded TCG round-robins them) or while the host
//! deschedules its thread (multi-threaded TCG on a 2-core host that also
//! builds), and the guest TSC keeps counting. Measured 2026-11-22, 8 s
//! idle on CPU 1: single-threaded TCG 12155 gaps, 12151 `hw` (99.97 %);
//! multi-threaded 11490 gaps, 11479 `hw`; with `noisegen --cpu 0 --jit`
//! 11759 / 11759 and 8886 / 8877. The `hw` gaps run from 5 us to 100 ms;
//! with `noisegen --cpu 1 --timer` and `isol noise -f 50` their share of
//! the gaps above any threshold from 5 us to 2 ms stayed above 95 %, so
//! no threshold separates them from kernel causes; TCG reports no steal
//! time. The rt kernel's own osnoise tracer agrees: its workload on the
//! same CPU counts ~3000-5000 `HW` noise samples per second
//! (bench/RESULTS.md, isol noise vs osnoise). The 99 %
//! property needs real hardware or KVM, which these hosts lack.

use isol_lab::{testprogs::testprog, Lab};

#[test]
fn idle_nohz_full_cpu_gaps_are_listed_with_causes() {
    let out = Lab::new()
        .unwrap()
        .quiet_cpu1()
        .file(testprog("noisegen").unwrap(), "/bin/noisegen")
        // One capture: ~25 s of BPF verification under TCG, 8 s of run.
        .timeout(std::time::Duration::from_secs(300))
        .run_scenario("noise")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();

    let v = out.json_section("idle").unwrap();
    assert_eq!(v["schema"], "isol.noise/3");
    assert_eq!(v["attribution"], true, "no capture engine: {}", v["notes"]);
    let cpu = &v["per_cpu"][0];
    assert_eq!(cpu["cpu"], 1);
    let gaps = cpu["gaps"].as_u64().unwrap();
    let causes = cpu["causes"].as_array().unwrap();
    let count = |pred: &dyn Fn(&serde_json::Value) -> bool| -> u64 {
        causes
            .iter()
            .filter(|c| pred(c))
            .map(|c| c["count"].as_u64().unwrap())
            .sum()
    };
    let hw = count(&|c| c["class"] == "hw");
    eprintln!(
        "CPU 1: {gaps} gaps, {} attributed ({:.2} %), {hw} hw (the emulator), causes:",
        cpu["attributed"],
        cpu["attributed_pct"].as_f64().unwrap()
    );
    for c in causes {
        eprintln!(
            "  {} / {} / {}: {} gaps, {} ns",
            c["class"].as_str().unwrap(),
            c["kind"].as_str().unwrap(),
            c["detail"].as_str().unwrap(),
            c["count"],
            c["total_ns"]
        );
    }
    assert!(gaps > 0, "no gap at all under TCG");
    // Every gap is listed under exactly one cause.
    assert_eq!(count(&|_| true), gaps, "causes do not add up: {causes:?}");
    assert_eq!(cpu["attributed"].as_u64().unwrap(), gaps - hw);
    // A task runs on the nohz_full CPU: the residual 1 Hz tick remains,
    // and is named, whether or not the emulator's time dominates the gap
    // it fell in (then the gap is hw, and the tick is in `covered`).
    let covered = cpu["covered"].as_array().unwrap();
    eprintln!("kernel entries inside gaps:");
    for c in covered {
        eprintln!(
            "  {} / {} / {}: in {} gaps ({} hw), {} ns",
            c["class"].as_str().unwrap(),
            c["kind"].as_str().unwrap(),
            c["detail"].as_str().unwrap(),
            c["gaps"],
            c["in_hw_gaps"],
            c["covered_ns"]
        );
    }
    assert!(
        covered.iter().any(|c| c["class"] == "timer"
            && c["kind"] == "local_timer"
            && c["gaps"].as_u64() > Some(0)),
        "no tick among the kernel entries inside gaps: {covered:?}"
    );
    // Every gap with a kernel primary cause has that cause among the
    // entries inside gaps.
    for c in causes
        .iter()
        .filter(|c| c["class"] != "hw" && c["kind"] != "runqueue_wait")
    {
        assert!(
            covered.iter().any(|k| k["class"] == c["class"]
                && k["kind"] == c["kind"]
                && k["detail"] == c["detail"]),
            "primary cause {c} not among the entries inside gaps: {covered:?}"
        );
    }
    // Each listed gap's cause agrees with what covers it.
    let worst = cpu["worst"].as_array().unwrap();
    assert!(!worst.is_empty());
    for g in worst {
        let kernel = g["kernel_ns"].as_u64().unwrap();
        let uncovered = g["hw_ns"].as_u64().unwrap();
        if g["cause"]["class"] == "hw" {
            assert!(
                uncovered > kernel,
                "hw gap mostly covered by the kernel: {g}"
            );
        } else if g["cause"]["kind"] != "runqueue_wait" {
            // (run-queue wait is matched from schedstat, not entries)
            assert!(kernel > 0, "kernel cause with no kernel time: {g}");
            assert!(
                !g["entries"].as_array().unwrap().is_empty(),
                "kernel cause with no entry: {g}"
            );
        }
    }
    remote_function_from_a_perf_generator_is_named_with_its_sender_inside_gaps(&out);
}

/// With a perf-event generator on CPU 0 making the kernel run
/// remote_function on CPU 1 while `isol noise -c 1` measures there, every
/// such entry is named with its sender among the kernel entries inside
/// gaps, and in the gaps that hold it, even where TCG's stalls make the
/// gap itself `hw`. (The same boot as the idle part.)
fn remote_function_from_a_perf_generator_is_named_with_its_sender_inside_gaps(
    out: &isol_lab::Outcome,
) {
    let v = out.json_section("perf").unwrap();
    let cpu = &v["per_cpu"][0];
    let covered = cpu["covered"].as_array().unwrap();
    let rf: Vec<&serde_json::Value> = covered
        .iter()
        .filter(|c| c["class"] == "ipi" && c["detail"] == "remote_function")
        .collect();
    eprintln!(
        "remote_function rows: {rf:?}\ngaps {} causes {}",
        cpu["gaps"], cpu["causes"]
    );
    assert!(
        !rf.is_empty(),
        "remote_function not among the kernel entries inside gaps: {covered:?}"
    );
    let s = &rf[0]["sender"];
    assert_eq!(s["cpu"], 0, "{s}");
    assert_eq!(s["comm"], "noisegen", "{s}");
    // And in the gaps that hold it.
    let in_gap = cpu["worst"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["entries"].as_array().unwrap())
        .filter(|e| e["detail"] == "remote_function")
        .count();
    let total: u64 = rf.iter().map(|r| r["gaps"].as_u64().unwrap()).sum();
    eprintln!("remote_function in {total} gaps, {in_gap} of them among the 50 worst");
}
