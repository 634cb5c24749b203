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
//! CPU 1 itself) and to 95 % on 6.1 and 6.12. On a nohz_full CPU the
//! kernel moves the POSIX timer's hrtimer to a housekeeping CPU and the
//! loop gets the signal by a reschedule IPI, named through its sender's
//! stack. That was 96 % on 6.1 and 48 % on 6.12 (2026-12-03) while a csd
//! queued for CPU 1 between the kick and its handling took the kick's
//! sender (one slot per CPU for both); with a slot each, 6.1 gave 217/218
//! and 292/293, 6.12 320/320, 292/297 and, in a CI run, 215/222 = 96.8 %
//! (2026-12-04). What is left: a
//! record carries the first IPI sender of its episode only, and under TCG
//! the signal's kick often shares an episode (or the reschedule itself)
//! with another IPI: the fair server's dl_task_timer kick on 6.12, a perf
//! install; and a sender stack the kernel failed to give (a counted
//! drop). A window in which the loop blocked with the CPU idle (its page
//! fault waiting for the mmap lock an injector held) is not judged, like
//! one where it was preempted: 6.1's earlier misses were those.

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
    assert!(n("in_gap") >= 100, "{kind}: too few judged: {r}");
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
    assert_share(&rows, "timer", 0.95);
}

#[test]
fn injected_causes_are_named_on_6_12() {
    let rows = on(Series::V6_12);
    assert_recall_but(&rows, &IPIS, 1);
    assert_recall(&rows, &["fault"]);
    assert_share(&rows, "timer", 0.95);
}
