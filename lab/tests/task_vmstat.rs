//! The vmstat scenario of the task isolation prctl series, on the kernels
//! that need a quiesce and on one that does not (scenario
//! lab/scenarios/task_vmstat.sh, sample crates/isol-capi/examples/vmstat.c):
//!
//! - 6.1 (CPU 1 nohz_full): the control mlocks and loops, and the vmstat
//!   shepherd's vmstat_update runs on CPU 1 within the shepherd's period;
//!   with vmstat_sync quiesced at activation (the work run now and parked
//!   on the CPU's deferred timer), none is queued for or runs on CPU 1 in
//!   30 s. Persistent mode: a loop that maps, mlocks and munmaps every
//!   100 ms and calls isol_quiesce_if_needed() gets neither vmstat_update
//!   nor lru_add_drain_per_cpu for 20 s, while compaction on CPU 0 drains
//!   every CPU's LRU batches twice a second (on 6.1 those system calls
//!   drain the batch themselves; page faults fill it: the control that
//!   faults pages in and never re-quiesces gets the drain).
//! - 5.10 (isolcpus only: no nohz_full in any Debian 5.10 flavour, so the
//!   tick runs under the loop): same control; the quiesce lets the work
//!   run until it stops re-arming (3 stat intervals), then none for 30 s.
//! - 6.12: no quiesce needed, and the control proves it: since 6.5 the
//!   shepherd skips isolated CPUs, so nothing comes even without one.
//!
//! Each is one boot of about a minute and a half under TCG (the 30 s loop
//! dominates).

use isol_lab::{testprogs::capi_sample, Flavour, KernelSpec, Lab, Outcome, Series};
use std::time::Duration;

/// One piece of vmstat or LRU work for CPU 1, from the trace.
#[derive(Debug)]
struct Work {
    ts: f64,
    /// Queued for CPU 1 (by whoever) or run on CPU 1.
    queued: bool,
    function: String,
}

struct Run {
    text: String,
    mlock: f64,
    start: f64,
    end: f64,
    work: Vec<Work>,
}

impl Run {
    fn of(out: &Outcome, name: &str) -> Run {
        let s = out.section(name).unwrap();
        let text = s.text.clone();
        assert!(text.contains("rc=0"), "{name} failed:\n{text}");
        let num = |prefix: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {name}:\n{text}"))
                .trim()
                .parse()
                .unwrap()
        };
        let (mlock, start, end) = (num("mlock at "), num("loop start "), num("loop end "));
        let work = text
            .lines()
            .filter_map(|l| {
                let queued = l.contains("workqueue_queue_work:");
                if !queued && !l.contains("workqueue_execute_start:") {
                    return None;
                }
                // "comm-pid [001] d..1. 9.056382: workqueue_..."
                let ts = l
                    .split_whitespace()
                    .find(|w| w.ends_with(':') && w[..w.len() - 1].parse::<f64>().is_ok())?;
                let function = ["vmstat_update", "lru_add_drain_per_cpu"]
                    .into_iter()
                    .find(|f| l.contains(f))?;
                Some(Work {
                    ts: ts[..ts.len() - 1].parse().ok()?,
                    queued,
                    function: function.into(),
                })
            })
            .collect();
        Run {
            text,
            mlock,
            start,
            end,
            work,
        }
    }

    /// Work of `function` for CPU 1 while the loop ran.
    fn during(&self, function: &str) -> Vec<&Work> {
        self.work
            .iter()
            .filter(|w| w.function == function && w.ts >= self.start && w.ts <= self.end)
            .collect()
    }
}

fn boot(series: Series) -> Outcome {
    let out = Lab::new()
        .unwrap()
        .kernel(KernelSpec::new(series, Flavour::Cloud))
        .quiet_cpu1()
        .timeout(Duration::from_secs(400))
        // The scenario runs the sample only (libisol.a inside it).
        .without_isol()
        .file(capi_sample("vmstat").unwrap(), "/bin/vmstat")
        .run_scenario("task_vmstat")
        .unwrap();
    eprintln!("{}\n{}", out.summary(), out.stdout);
    out.ensure_success().unwrap();
    out
}

fn interval(out: &Outcome) -> f64 {
    out.section("interval")
        .unwrap()
        .text
        .trim()
        .parse()
        .unwrap()
}

/// The control: the mlock left the counters dirty and vmstat_update ran
/// on CPU 1 because of it, the first time within the shepherd's period of
/// the mlock (see `within`). It interrupts the
/// loop, unless the shepherd passed during the mlock itself (a few ms of
/// a 1 MB mlock): then it ran inside that system call, just as surely.
fn assert_control(out: &Outcome) {
    let c = Run::of(out, "control");
    let ran: Vec<&Work> = c
        .work
        .iter()
        .filter(|w| w.function == "vmstat_update" && !w.queued && w.ts >= c.mlock && w.ts <= c.end)
        .collect();
    let first = ran.first().unwrap_or_else(|| {
        panic!(
            "control: no vmstat_update ran on CPU 1 after the mlock:\n{}",
            c.text
        )
    });
    // The shepherd passes every interval (rounded to a whole second) and
    // skips the CPU while the work it re-armed there is pending (one
    // interval more); under TCG its CPU crawls while CPU 1 spins.
    let within = 3.0 * interval(out);
    assert!(
        first.ts - c.mlock <= within,
        "control: the first vmstat_update came {:.2} s after the mlock (more than {within} s):\n{}",
        first.ts - c.mlock,
        c.text
    );
    eprintln!(
        "control: vmstat_update on CPU 1 {:.2} s after the mlock ({} the loop)",
        first.ts - c.mlock,
        if first.ts >= c.start {
            "during"
        } else {
            "before"
        }
    );
}

/// vmstat_update and lru_add_drain_per_cpu neither queued for nor run on
/// CPU 1 while the loop ran (the LRU is quiesced too: a drain of its
/// batches, by khugepaged or compaction, is work on the CPU and dirties
/// the counters again).
fn assert_quiet(out: &Outcome, name: &str, seconds: f64) -> Run {
    let q = Run::of(out, name);
    assert!(
        q.end - q.start >= seconds - 0.5,
        "{name}: the loop ran {:.1} s:\n{}",
        q.end - q.start,
        q.text
    );
    for f in ["vmstat_update", "lru_add_drain_per_cpu"] {
        let w = q.during(f);
        assert!(
            w.is_empty(),
            "{name}: {f} queued for or ran on CPU 1 during the loop: {w:?}\n{}",
            q.text
        );
    }
    q
}

fn report_step(run: &Run, step: &str) -> String {
    let line = run
        .text
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report:\n{}", run.text));
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no {step} step: {r}"))["detail"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn vmstat_quiesce_on_6_1_nohz_full_parks_the_work_and_persistent_mode_keeps_it_away() {
    let out = boot(Series::V6_1);
    assert_control(&out);
    let q = assert_quiet(&out, "quiesce", 30.0);
    assert!(
        report_step(&q, "vmstat_sync").contains("parked"),
        "{}",
        q.text
    );

    // Persistent: a loop of mmap/mlock/munmap with the check gets neither
    // vmstat_update (its dirt stays parked) nor the LRU drain, although
    // compaction drains every CPU's batches between its churns. The LRU
    // control, which also faults pages in and never re-quiesces, gets the
    // drain: its batch holds those pages when compaction comes.
    let pc = Run::of(&out, "persistent_control");
    assert!(
        !pc.during("lru_add_drain_per_cpu").is_empty(),
        "persistent_control: no lru_add_drain_per_cpu for CPU 1 although compaction ran twice a second between its churns:\n{}",
        pc.text
    );
    let p = assert_quiet(&out, "persistent", 20.0);
    let counts = p
        .text
        .lines()
        .find(|l| l.starts_with("vmstat: "))
        .unwrap()
        .to_string();
    assert!(
        counts.contains("churns=")
            && !counts.contains("requiesced=0")
            && !counts.contains("compactions=0"),
        "{counts}"
    );
}

#[test]
fn vmstat_quiesce_on_5_10_isolcpus_settles_the_work() {
    let out = boot(Series::V5_10);
    assert!(
        !out.cmdline.contains("nohz_full"),
        "5.10 has no NO_HZ_FULL: {}",
        out.cmdline
    );
    assert_control(&out);
    let q = assert_quiet(&out, "quiesce", 30.0);
    assert!(
        report_step(&q, "vmstat_sync").contains("stopped re-arming"),
        "{}",
        q.text
    );
}

#[test]
fn vmstat_needs_no_quiesce_on_6_12_the_shepherd_skips_isolated_cpus() {
    let out = boot(Series::V6_12);
    // The control's mlock leaves the counters dirty, and still no work.
    let c = assert_quiet(&out, "control", 6.0);
    let q = Run::of(&out, "quiesce");
    assert!(
        report_step(&q, "vmstat_sync").contains("skips isolated CPUs"),
        "{}",
        q.text
    );
    drop(c);
}
