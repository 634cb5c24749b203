//! `isol noise --inject all` on quiet CPU 1 of the matrix kernels: per
//! injected kind, the share of the injections whose gap names the right
//! kernel function (the recall, docs/json/noise.md) is >= 99 % for page
//! faults, and for the IPI kinds (tlb, membarrier, perf, jit) every
//! judged injection but at most one is named: with the host loaded, one
//! TLB flush in 9 (6.12) and in 23 (6.1) was folded into another task's
//! displacement episode (the capture's known nesting limit, see
//! bench/RESULTS.md), which at these sample sizes is below 99 %. Under TCG the
//! gaps are dominated by the emulator (lab/tests/noise.rs), so this is
//! about naming, not `primary`; and the jit kind's window holds an RCU
//! grace period, slow under TCG: ~9 rounds of the IPI kinds in 8 s.
//!
//! `timer` is held to 99 % on 5.10 (no NO_HZ_FULL: the timer fires on
//! CPU 1 itself) and to 98 % on 6.1 and 6.12. On a nohz_full CPU the
//! kernel moves the POSIX timer's hrtimer to a housekeeping CPU and the
//! loop gets the signal by a reschedule IPI, named through its sender's
//! stack. Under TCG that kick often shares its episode, or the reschedule
//! itself (sent twice before it is taken), with another IPI: the fair
//! server's dl_task_timer kick on 6.12, a perf install. A record keeps
//! the senders of two IPIs (2026-12-04: 6.1 197/197, 284/285 and 97/98,
//! 6.12 268/269, 253/253 and 117/117; before, with one sender, 6.12 gave
//! 96.8 % in a CI run). What is left: a third sender in one episode
//! (counted, `extra_sender`) and a sender stack the kernel failed to give
//! (counted, `stack`). A kick counts anywhere in the gap in which the
//! signal's handler ran: the window's start is inferred from the timer's
//! period, and under TCG the loop's clock drifts from the kernel's. A
//! window in which the loop blocked with the CPU idle (its page fault
//! waiting for the mmap lock an injector held) is not judged, like one
//! where it was preempted.

use isol_lab::{Flavour, KernelSpec, Lab, Series};

fn on(series: Series) -> serde_json::Map<String, serde_json::Value> {
    let out = Lab::new()
        .unwrap()
        .kernel(KernelSpec::new(series, Flavour::Cloud))
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(240))
        .run_scenario("recall")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    let v = out.json_section("recall").unwrap();
    assert_eq!(v["schema"], "isol.noise/3");
    assert_eq!(v["attribution"], true, "no capture engine: {}", v["notes"]);
    eprintln!("notes: {}", v["notes"]);
    let cpu = &v["per_cpu"][0];
    assert_eq!(cpu["cpu"], 1);
    let rows = cpu["recall"].as_object().expect("no recall").clone();
    for (k, r) in &rows {
        eprintln!("{series:?} {k}: {r}");
    }
    assert_eq!(rows.len(), 6, "{rows:?}");
    rows
}

/// Every kind in `kinds` was injected, judged often enough to mean
/// something, and named in >= 99 % of its judged injections, or all but
/// `spare` of them.
fn assert_recall_but(
    rows: &serde_json::Map<String, serde_json::Value>,
    kinds: &[&str],
    spare: u64,
) {
    for &k in kinds {
        let r = &rows[k];
        let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f}: {r}"));
        assert!(n("injected") >= 5, "{k}: {r}");
        assert!(n("in_gap") >= 5, "{k}: too few judged: {r}");
        assert!(
            n("named") as f64 >= 0.99 * n("in_gap") as f64 || n("named") + spare >= n("in_gap"),
            "{k}: recall below 99 % and more than {spare} missed: {r}"
        );
    }
}

fn assert_recall(rows: &serde_json::Map<String, serde_json::Value>, kinds: &[&str]) {
    assert_recall_but(rows, kinds, 0);
}

const IPIS: [&str; 4] = ["tlb", "membarrier", "perf", "jit"];

#[test]
fn injected_causes_are_named_on_5_10() {
    let rows = on(Series::V5_10);
    assert_recall_but(&rows, &IPIS, 1);
    assert_recall(&rows, &["fault", "timer"]);
}

/// `kind` named in at least `share` of its judged injections.
fn assert_share(rows: &serde_json::Map<String, serde_json::Value>, kind: &str, share: f64) {
    let r = &rows[kind];
    let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f}: {r}"));
    assert!(n("in_gap") >= 50, "{kind}: too few judged: {r}");
    assert!(
        n("named") as f64 >= share * n("in_gap") as f64,
        "{kind}: recall below {share}: {r}"
    );
}

#[test]
fn injected_causes_are_named_on_6_1() {
    let rows = on(Series::V6_1);
    assert_recall_but(&rows, &IPIS, 1);
    assert_recall(&rows, &["fault"]);
    assert_share(&rows, "timer", 0.98);
}

#[test]
fn injected_causes_are_named_on_6_12() {
    let rows = on(Series::V6_12);
    assert_recall_but(&rows, &IPIS, 1);
    assert_recall(&rows, &["fault"]);
    assert_share(&rows, "timer", 0.98);
}
