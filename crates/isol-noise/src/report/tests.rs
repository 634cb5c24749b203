//! The report builder and renderers on a made-up run: one CPU, a tick
//! inside one gap, nothing inside another (hw), a TLB IPI in a third.

use super::*;
use crate::attribute::Params;
use crate::clock::Clock;
use crate::inject::Injection;
use crate::sampler::Outcome;
use isol_capture::record::{RawCause, RawRecord, Record};
use isol_capture::{Class, Kind};

pub(crate) fn cause_of(r: &RawRecord) -> Cause {
    let (class, kind) = (
        Class::from_raw(r.primary.class),
        Kind::from_raw(r.primary.kind),
    );
    Cause {
        class,
        kind,
        detail: match kind {
            Kind::LocalTimer => "tick_nohz_handler".into(),
            Kind::CallFunction => "flush_tlb_func".into(),
            _ => "?".into(),
        },
        irq: None,
        vector: None,
        address: None,
        pid: None,
        nr: None,
        vm_exit: None,
    }
}

fn record_of(r: &RawRecord) -> Record {
    Record {
        cpu: r.cpu,
        tid: r.tid,
        pid: r.tgid,
        comm: "isol-sampler1".into(),
        start_ns: r.start_ns,
        duration_ns: r.duration_ns,
        exact: false,
        idle: false,
        strict_break: false,
        no_duration: false,
        truncated: false,
        vm_userspace: false,
        pre_activation: false,
        cause: cause_of(r),
        chain: vec![cause_of(r)],
        sender: (r.primary.kind == 5).then(|| Sender {
            cpu: 0,
            context: "task",
            pid: 42,
            comm: "noisegen".into(),
            callsite: "smp_call_function_many_cond".into(),
            function: "flush_tlb_func".into(),
            stack: vec!["flush_tlb_mm_range".into(), "__x64_sys_munmap".into()],
            stack_not_taken: None,
            sent_ns: r.start_ns.saturating_sub(2_000),
        }),
        // A reschedule IPI's: the fair server's kick first, then (when
        // the raw record says there was one) a POSIX timer's signal.
        other_sender: (r.primary.kind == 7 && r.sender2.valid != 0).then(|| Sender {
            cpu: 0,
            context: "hardirq",
            pid: 43,
            comm: "isol-inject".into(),
            callsite: "signal_wake_up_state".into(),
            function: String::new(),
            stack: vec![
                "native_smp_send_reschedule".into(),
                "signal_wake_up_state+0x2a".into(),
                "posix_timer_fn+0x40".into(),
            ],
            stack_not_taken: None,
            sent_ns: r.start_ns.saturating_sub(1_000),
        }),
    }
}

/// Names records as a capture would, from their class and kind alone.
struct MadeUp;

impl Names for MadeUp {
    fn record(&self, r: &RawRecord) -> Record {
        record_of(r)
    }
    fn cause(&self, r: &RawRecord) -> Cause {
        cause_of(r)
    }
}

fn seen(records: &[RawRecord]) -> Vec<Seen<'static>> {
    records
        .iter()
        .map(|&raw| Seen {
            raw,
            names: &MadeUp,
        })
        .collect()
}

fn raw(start_ns: u64, dur: u64, class: u8, kind: u8) -> RawRecord {
    RawRecord {
        start_ns,
        duration_ns: dur,
        cpu: 1,
        tid: 7,
        primary: RawCause {
            class,
            kind,
            ..RawCause::default()
        },
        ..RawRecord::default()
    }
}

/// 1 GHz TSC, monotonic = TSC + 1e9: ticks are ns.
pub(crate) fn made_up() -> Report {
    made_up_with(None, &[])
}

fn made_up_with(inject: Option<&[crate::inject::Kind]>, injections: &[Injection]) -> Report {
    made_up_full(inject, injections, &[])
}

fn made_up_full(
    inject: Option<&[crate::inject::Kind]>,
    injections: &[Injection],
    extra: &[RawRecord],
) -> Report {
    let clock = Clock {
        tsc0: 0,
        mono0: 1_000_000_000,
        hz: 1e9,
    };
    let mut h = Histogram::new(1000, 32);
    h.counts[0] = 1_000_000;
    h.counts[20] = 1;
    h.counts[31] = 2;
    let mut fine = crate::histogram::LogLinear::default();
    fine.counts[crate::histogram::loglin_index(30)] += 1_000_000;
    fine.counts[crate::histogram::loglin_index(20_500)] += 1;
    fine.counts[crate::histogram::loglin_index(2_000_000)] += 2;
    let o = Outcome {
        cpu: 1,
        clock,
        start_tsc: 0,
        end_tsc: 2_000_000_000,
        loops: 1_000_003,
        min_ticks: 30,
        max_ticks: 2_000_000,
        sum_ticks: 2_000_000_000,
        histogram: h,
        fine,
        gaps: vec![
            (100_000_000, 20_000),    // tick inside
            (600_000_000, 2_000_000), // nothing: hw (the injected stall)
            (1_500_000_000, 40_000),  // TLB IPI
        ],
        lost: 0,
        stopped_by: None,
        injected: Some((600_000_000, 2_000_000)),
        second_max: vec![2_000_000, 40_000],
        injections: Vec::new(),
        inject_notes: Vec::new(),
    };
    let recs = [
        raw(1_000_000_000 + 100_004_000, 12_000, 3, 2),
        raw(1_000_000_000 + 1_500_002_000, 35_000, 2, 5),
        raw(1_000_000_000 + 1_900_000_000, 10_000, 3, 2), // in no gap
        // A tick inside the 2 ms stall: the gap stays hw, the tick is kept.
        raw(1_000_000_000 + 600_500_000, 10_000, 3, 2),
    ];
    let recs = [&recs[..], extra].concat();
    let cx = Context {
        inject,
        injections,
        params: Params::default(),
        worst: 10,
        threshold_ns: 5_000,
        t0_ns: 1_000_000_000,
        steal: &[],
        runq: &[
            (1_000_000_000, 0),
            (1_550_000_000, 0),
            (2_000_000_000, 0),
            (3_000_000_000, 0),
        ],
        records_lost: true,
    };
    let cpu = synthetic_cpu(&o, &seen(&recs), &cx);
    Report {
        schema: SCHEMA,
        mode: "synthetic",
        pid: None,
        cpus: CpuSet::single(1),
        duration_s: 2.0,
        threshold_ns: 5_000,
        interrupted: false,
        stopped: None,
        tsc_hz: Some(1e9),
        virtualized: false,
        attribution: true,
        capture: None,
        per_cpu: vec![cpu],
        notes: vec![],
        on_threshold: None,
    }
}

#[test]
fn builder_attributes_each_gap_and_sums_per_cause() {
    let r = made_up();
    let c = &r.per_cpu[0];
    assert_eq!(c.gaps, 3);
    assert_eq!(c.attributed, 2);
    assert_eq!(c.noise_ns, 2_060_000);
    assert_eq!(c.max_ns, 2_000_000);
    assert_eq!(c.min_ns, 30);
    let names: Vec<(&str, u64, u64)> = c
        .causes
        .iter()
        .map(|r| (r.cause.class.as_str(), r.count, r.total_ns))
        .collect();
    assert_eq!(
        names,
        vec![
            ("hw", 1, 2_000_000),
            ("ipi", 1, 40_000),
            ("timer", 1, 20_000)
        ]
    );
    assert_eq!(c.worst[0].cause.class, "hw");
    assert_eq!(c.worst[1].cause.detail, "flush_tlb_func");
    let s = c.worst[1].sender.as_ref().expect("sender of the TLB IPI");
    assert_eq!(s.comm, "noisegen");
    assert_eq!(c.injected.as_ref().unwrap().cause.class, "hw");
    assert_eq!(c.timeline.len(), 2);
    assert_eq!(c.timeline[0].gaps, 2);
    assert_eq!(c.timeline[0].max_ns, 2_000_000);
    assert_eq!(c.timeline[1].noise_ns, 40_000);
    assert!((c.availability_pct - 100.0 * (1.0 - 2_060_000.0 / 2e9)).abs() < 1e-9);
    // The loop's 30 ns, not the oslat bucket's "1000": percentiles come
    // from the log-linear counts (within 1/64 and HdrHistogram's 0.1 %).
    let near = |got: u64, want: f64| (got as f64 - want).abs() <= want / 50.0;
    assert!(near(c.percentiles.p50, 30.0), "{:?}", c.percentiles);
    assert!(near(c.percentiles.p9999, 30.0), "{:?}", c.percentiles);
    assert_eq!(c.histogram.counts[0], 1_000_000);
}

#[test]
fn every_kernel_entry_inside_a_gap_is_counted_even_in_an_hw_gap() {
    let r = made_up();
    let c = &r.per_cpu[0];
    let rows: Vec<(&str, &str, u64, u64, u64)> = c
        .covered
        .iter()
        .map(|r| {
            (
                r.cause.class.as_str(),
                r.cause.detail.as_str(),
                r.gaps,
                r.in_hw_gaps,
                r.covered_ns,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("ipi", "flush_tlb_func", 1, 0, 35_000),
            ("timer", "tick_nohz_handler", 2, 1, 22_000),
        ]
    );
    let s = c.covered[0].sender.as_ref().expect("the IPI's sender");
    assert_eq!((s.comm.as_str(), s.pid), ("noisegen", 42));
    let text = text::render(&r);
    assert!(text.contains("kernel entries inside gaps"), "{text}");
    let html = html::render(&r);
    assert!(html.contains("data-cause=\"timer local_timer tick_nohz_handler\" data-gaps=\"2\" data-covered-ns=\"22000\""), "{html}");
}

#[test]
fn text_json_and_oslat_renderings_carry_the_numbers() {
    let r = made_up();
    let t = text::render(&r);
    assert!(t.contains("ipi       call_function"), "{t}");
    assert!(
        t.contains("sent by CPU 0 (task context) noisegen[42]"),
        "{t}"
    );
    assert!(t.contains("injected 2.00 ms"), "{t}");
    let o = text::oslat(&r);
    assert!(o.contains("    001 (us):\t 1000000\n"), "{o}");
    assert!(
        o.contains("    032 (us):\t 2 (including overflows)\n"),
        "{o}"
    );
    assert!(o.contains("     Maximum:\t 2000 (us)\n"), "{o}");
    let v: serde_json::Value = serde_json::from_str(&json::render(&r)).unwrap();
    assert_eq!(v["schema"], "isol.noise/3");
    assert_eq!(v["per_cpu"][0]["causes"][0]["class"], "hw");
    assert_eq!(v["per_cpu"][0]["worst"][1]["sender"]["comm"], "noisegen");
    let cpu = &v["per_cpu"][0];
    assert_eq!(cpu["latency"][0]["count"], 1_000_000);
    assert_eq!(cpu["latency"][0]["lo_ns"], 25);
    assert_eq!(cpu["marks"][2]["cause"]["class"], "ipi");
    assert_eq!(cpu["marks"][2]["chain"][0]["detail"], "flush_tlb_func");
    // The timeline's sender goes without the stack the worst gaps carry.
    assert_eq!(cpu["marks"][2]["sender"]["comm"], "noisegen");
    assert_eq!(cpu["marks"][2]["sender"]["stack"], serde_json::json!([]));
}

#[test]
fn html_is_self_contained_and_labels_its_plots() {
    let r = made_up();
    let h = html::render(&r);
    assert!(
        !h.contains("http://") && !h.contains("https://") && !h.contains(" src="),
        "no network"
    );
    assert!(h.contains("data-total-ns=\"40000\""));
    // The cause bar's label, numbers as people read them.
    assert!(h.contains(">40.0 us in 1 gaps (max 40.0 us)</text>"), "{h}");
    // Loops: 1000003 reads 1.0 M.
    assert!(
        h.contains("data-loops=\"1000003\" title=\"1000003 loop iterations\"><b>1.0 M</b>"),
        "{h}"
    );
    // Percentiles in ns, not oslat's 1 us buckets.
    assert!(h.contains("data-percentile=\"p99\" data-ns=\"30\""), "{h}");
    assert!(h.contains("<b>30 ns</b><span>p99</span>"), "{h}");
    assert_eq!(html::esc("<a&\"'>"), "&lt;a&amp;&quot;&#39;&gt;");
}

#[test]
fn a_pid_report_speaks_of_interruptions_not_loops() {
    let mut r = made_up();
    let h = html::render(&r);
    assert!(h.contains("gaps are loop deltas above 5000 ns"));
    assert!(h.contains("<line class=\"thr\""));
    r.mode = "pid";
    r.pid = Some(42);
    let h = html::render(&r);
    assert!(h.contains("<h1>isol noise: pid 42</h1>"), "{h}");
    assert!(h.contains("every interruption of the task is a gap"));
    assert!(h.contains("Latency histogram: interruptions (log axes)"));
    assert!(!h.contains("data-loops=") && !h.contains("<line class=\"thr\""));
}

#[test]
fn the_latency_histogram_has_log_bins_and_labelled_log_axes() {
    let r = made_up();
    let c = &r.per_cpu[0];
    let bins: Vec<(u64, u64, u64)> = c
        .latency
        .iter()
        .map(|b| (b.lo_ns, b.hi_ns, b.count))
        .collect();
    // 30 ns, 20.5 us, 2 ms: every loop once, in its decade's tenth.
    assert_eq!(
        bins,
        vec![
            (25, 32, 1_000_000),
            (19_953, 25_119, 1),
            (1_995_262, 2_511_886, 2)
        ]
    );
    let h = html::render(&r);
    for (lo, hi, n) in &bins {
        assert!(
            h.contains(&format!(
                "data-lo=\"{lo}\" data-hi=\"{hi}\" data-count=\"{n}\""
            )),
            "bin {lo}..{hi} not plotted"
        );
    }
    // The bar's count label: 1.0 M, not a clipped "1000000".
    assert!(h.contains("data-count=\"1000000\""), "{h}");
    assert!(h.contains(">1.0 M</text>"), "{h}");
    // Decades on both axes, 10 ns .. 10 ms and 1 .. 1M.
    for t in [
        "10 ns", "100 ns", "1 us", "10 us", "100 us", "1 ms", "10 ms",
    ] {
        assert!(
            h.contains(&format!("text-anchor=\"middle\">{t}</text>")),
            "x tick {t}"
        );
    }
    for t in ["1", "10", "100", "1k", "10k", "100k", "1M"] {
        assert!(
            h.contains(&format!("text-anchor=\"end\">{t}</text>")),
            "y tick {t}"
        );
    }
    assert!(h.contains("count (log)"));
}

#[test]
fn log_bins_are_contiguous_and_hold_their_values() {
    assert_eq!(log_bin(0), (0, 10));
    assert_eq!(log_bin(9), (0, 10));
    assert_eq!(log_bin(10), (10, 13));
    assert_eq!(log_bin(99), (79, 100));
    assert_eq!(log_bin(100), (100, 126));
    assert_eq!(log_bin(1_000_000_000), (1_000_000_000, 1_258_925_412));
    let mut v = 0u64;
    let mut prev = (0, 0);
    while v < 20_000_000_000 {
        let (lo, hi) = log_bin(v);
        assert!(lo <= v && v < hi, "{v} in {lo}..{hi}");
        if (lo, hi) != prev {
            // A new bin starts where the last one ended.
            assert_eq!(lo, prev.1, "gap before {lo}");
            prev = (lo, hi);
        }
        v = hi.max(v + 1) - 1;
        let (lo2, _) = log_bin(v);
        assert_eq!(lo2, lo, "{v}: the last value of {lo}..{hi}");
        v += 1;
    }
}

#[test]
fn a_timeline_mark_shows_its_gap_with_chain_and_sender_on_hover() {
    let r = made_up();
    let c = &r.per_cpu[0];
    let marks: Vec<(&str, u64)> = c
        .marks
        .iter()
        .map(|m| (m.cause.class.as_str(), m.duration_ns))
        .collect();
    // Every gap, in time order, with its primary cause.
    assert_eq!(
        marks,
        vec![("timer", 20_000), ("hw", 2_000_000), ("ipi", 40_000)]
    );
    assert!((c.marks[2].at_s - 1.5).abs() < 1e-9);
    let ipi = html::mark_title(&c.marks[2]);
    assert_eq!(
        ipi,
        "40.0 us at 1.500 s: ipi call_function flush_tlb_func\n\
         chain: ipi call_function flush_tlb_func\n\
         sent by CPU 0 noisegen[42], function flush_tlb_func, from smp_call_function_many_cond"
    );
    // The hw gap has no chain and no sender to show.
    assert!(!html::mark_title(&c.marks[1]).contains("chain:"));
    let h = html::render(&r);
    assert!(
        h.contains(&format!(
            "data-at-s=\"1.500000\" data-duration-ns=\"40000\" data-class=\"ipi\"><title>{}</title></rect>",
            html::esc(&ipi)
        )),
        "{h}"
    );
    // Coloured by class, with a legend; labelled time axis.
    assert!(h.contains("fill=\"#ff7f0e\" data-at-s=\"1.500000\""), "{h}");
    assert!(h.contains("data-class=\"hw\" data-marks=\"1\""), "{h}");
    assert!(h.contains(">2.0 s</text>"), "{h}");
    assert!(h.contains("time since the start (s)"));
    // Worst gaps: the sender's stack frames.
    assert!(
        h.contains("<pre class=\"stack\">flush_tlb_mm_range\n__x64_sys_munmap</pre>"),
        "{h}"
    );
}

#[test]
fn the_timeline_keeps_the_longest_gaps_when_there_are_too_many() {
    let clock = Clock {
        tsc0: 0,
        mono0: 0,
        hz: 1e9,
    };
    // Gap i lasts 10 us + i ns: the last MARKS_MAX are the longest.
    let n = MARKS_MAX + 500;
    let gaps: Vec<(u64, u64)> = (0..n as u64).map(|i| (i * 100_000, 10_000 + i)).collect();
    let o = Outcome {
        cpu: 1,
        clock,
        start_tsc: 0,
        end_tsc: n as u64 * 100_000,
        loops: n as u64,
        min_ticks: 10_000,
        max_ticks: 10_000 + n as u64,
        sum_ticks: 0,
        histogram: Histogram::new(1000, 32),
        fine: crate::histogram::LogLinear::default(),
        gaps,
        lost: 0,
        stopped_by: None,
        injected: None,
        second_max: vec![],
        injections: Vec::new(),
        inject_notes: Vec::new(),
    };
    let cx = Context {
        inject: None,
        injections: &[],
        params: Params::default(),
        worst: 10,
        threshold_ns: 5_000,
        t0_ns: 0,
        steal: &[],
        runq: &[],
        records_lost: false,
    };
    let c = synthetic_cpu(&o, &[], &cx);
    assert_eq!(c.marks.len(), MARKS_MAX);
    assert_eq!(c.marks[0].duration_ns, 10_000 + 500);
    assert!(c.marks.windows(2).all(|w| w[0].at_s < w[1].at_s));
    let mut r = made_up();
    r.per_cpu = vec![c];
    let h = html::render(&r);
    assert_eq!(h.matches("class=\"mark plot\"").count(), MARKS_MAX);
    assert!(
        h.contains("The 2000 longest of 2500 gaps are shown."),
        "{h}"
    );
}

#[test]
fn run_queue_wait_names_an_uncovered_gap_but_only_up_to_the_wait() {
    let mut budget = vec![3_000_000, 0];
    let runq = [(0, 0), (10_000_000, 3_000_000), (20_000_000, 3_000_000)];
    // 2 ms uncovered in interval 0 (3 ms of wait): sched.
    assert!(runq_take(
        &runq,
        &mut budget,
        1_000_000,
        3_000_000,
        2_000_000,
        true
    ));
    // Another 2 ms there: only 1 ms of wait left.
    assert!(!runq_take(
        &runq,
        &mut budget,
        4_000_000,
        6_000_000,
        2_000_000,
        true
    ));
    // Interval 1 had no wait.
    assert!(!runq_take(
        &runq,
        &mut budget,
        12_000_000,
        13_000_000,
        1_000_000,
        true
    ));
    // Across the boundary: 1 ms left in interval 0, none in 1: not 2 ms.
    assert!(!runq_take(
        &runq,
        &mut budget,
        9_000_000,
        12_000_000,
        2_000_000,
        true
    ));
    // Past the last sample: not judged.
    assert!(!runq_take(
        &runq,
        &mut budget,
        15_000_000,
        25_000_000,
        1_000_000,
        true
    ));
}

#[test]
fn a_long_run_queue_wait_spanning_samples_is_named() {
    // Another task held the CPU from 5 ms to 55 ms; samples every 20 ms.
    let runq = [
        (0, 0),
        (20_000_000, 15_000_000),
        (40_000_000, 35_000_000),
        (60_000_000, 50_000_000),
    ];
    let mut budget: Vec<u64> = runq.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(runq_take(
        &runq,
        &mut budget,
        5_000_000,
        55_000_000,
        50_000_000,
        true
    ));
    // Handed out once.
    assert_eq!(budget.iter().sum::<u64>(), 0);
}

#[test]
fn a_seen_preemption_uses_up_its_wait_so_a_stall_beside_it_is_hw() {
    // 3 ms of run-queue wait in interval 0, all of it a preemption the
    // capture recorded (a covered sched gap).
    let runq = [(0, 0), (10_000_000, 3_000_000), (20_000_000, 3_000_000)];
    let mut budget = vec![3_000_000, 0];
    assert!(runq_take(
        &runq,
        &mut budget,
        1_000_000,
        4_000_000,
        3_000_000,
        false
    ));
    // A 3 ms stall with no kernel entry later in the same interval.
    assert!(!runq_take(
        &runq,
        &mut budget,
        5_000_000,
        8_000_000,
        3_000_000,
        true
    ));
}

#[test]
fn recall_judges_injections_in_gaps_and_needs_the_function_inside_the_window() {
    use crate::inject::Kind as K;
    let tlb = |before_ns, after_ns| Injection {
        kind: K::Tlb,
        cpu: 1,
        before_ns,
        after_ns,
    };
    let base = 1_000_000_000;
    let r = made_up_with(
        Some(&[K::Tlb, K::Perf]),
        &[
            // Brackets the TLB IPI of the 1.5 s gap: named, and primary.
            tlb(base + 1_500_001_000, base + 1_500_040_000),
            // Overlaps the tick's gap, nothing TLB inside: a miss.
            tlb(base + 100_010_000, base + 100_015_000),
            // Overlaps the 1.5 s gap but ends before its IPI: a miss,
            // whatever else the gap holds.
            tlb(base + 1_499_990_000, base + 1_499_996_000),
            // In no gap: not judged.
            tlb(base + 1_200_000_000, base + 1_200_001_000),
        ],
    );
    let rc = &r.per_cpu[0].recall;
    let t = &rc["tlb"];
    assert_eq!(
        (t.injected, t.in_gap, t.named, t.primary),
        (4, 3, 1, 1),
        "{t:?}"
    );
    assert!((t.recall.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(t.expected, ["flush_tlb_func", "flush_tlb_func_remote"]);
    // The misses show what their gaps held: the tick, the TLB IPI that
    // came after the window.
    let m: Vec<(u64, usize, bool)> = t
        .misses
        .iter()
        .map(|m| {
            let e = &m.gaps[0].entries;
            (m.gaps[0].start_ns, e.len(), e[0].inside)
        })
        .collect();
    assert_eq!(
        m,
        [
            (base + 100_000_000, 1, true),
            (base + 1_500_000_000, 1, true)
        ]
    );
    // Asked for, never injected: listed, no recall.
    assert_eq!((rc["perf"].injected, rc["perf"].recall), (0, None));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["per_cpu"][0]["recall"]["tlb"]["named"], 1);
    assert!(text::render(&r)
        .contains("tlb                4         0       3       1        0  33.33 %"));
    // Without --inject there is no recall object.
    let v = serde_json::to_value(made_up()).unwrap();
    assert!(v["per_cpu"][0].get("recall").is_none());
}

#[test]
fn a_fault_of_the_loop_is_judged_only_in_the_gap_that_holds_its_window() {
    use crate::inject::Kind as K;
    let fault = |before_ns, after_ns| Injection {
        kind: K::Fault,
        cpu: 1,
        before_ns,
        after_ns,
    };
    let base = 1_000_000_000;
    let r = made_up_with(
        Some(&[K::Fault]),
        &[
            // Read inside the tick's gap, no page fault recorded: a miss.
            fault(base + 100_002_000, base + 100_004_000),
            // Done 3 us before the TLB IPI's gap began: it cost less than
            // the threshold and is not judged (the gap is the IPI's,
            // though within the 5 us slack an IPI's window gets).
            fault(base + 1_499_995_000, base + 1_499_997_000),
        ],
    );
    let f = &r.per_cpu[0].recall["fault"];
    assert_eq!((f.injected, f.in_gap, f.named), (2, 1, 0), "{f:?}");
    assert_eq!(f.misses.len(), 1);
    assert_eq!(f.misses[0].gaps[0].start_ns, base + 100_000_000);
}

#[test]
fn an_injection_while_the_cpu_went_idle_is_not_judged() {
    use crate::inject::Kind as K;
    let base = 1_000_000_000;
    let timer = Injection {
        kind: K::Timer,
        cpu: 1,
        before_ns: base + 601_000_000,
        after_ns: base + 601_200_000,
    };
    // The 2 ms stall holds only a tick: judged, a miss.
    let r = made_up_with(Some(&[K::Timer]), &[timer]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named, t.preempted), (1, 0, 0), "{t:?}");
    // An IPI handled by the idle task in that window: the loop had
    // blocked, and a signal needs no IPI then. Not judged.
    let mut idle = raw(base + 601_100_000, 20_000, 2, 5);
    idle.tid = 0;
    let r = made_up_full(Some(&[K::Timer]), &[timer], &[idle]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named, t.preempted), (0, 0, 1), "{t:?}");
    // Or later in the same gap, after the window: the IPI that woke the
    // blocked loop, handled after the injector returned. Not judged.
    let mut wake = raw(base + 601_700_000, 20_000, 2, 5);
    wake.tid = 0;
    let r = made_up_full(Some(&[K::Timer]), &[timer], &[wake]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named, t.preempted), (0, 0, 1), "{t:?}");
    // A preemption after the window is not the window's: judged.
    let mut sched = raw(base + 601_700_000, 20_000, 2, 5);
    sched.primary.class = Class::Sched as u8;
    let r = made_up_full(Some(&[K::Timer]), &[timer], &[sched]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.preempted), (1, 0), "{t:?}");
}

#[test]
fn a_timer_whose_kick_shares_its_ipi_with_another_is_named_by_the_other_sender() {
    use crate::inject::Kind as K;
    let base = 1_000_000_000;
    let timer = Injection {
        kind: K::Timer,
        cpu: 1,
        before_ns: base + 601_000_000,
        after_ns: base + 601_200_000,
    };
    // A reschedule IPI in the window, whose first sender is not the timer.
    let mut kick = raw(base + 601_100_000, 20_000, 2, 7);
    let r = made_up_full(Some(&[K::Timer]), &[timer], &[kick]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named), (1, 0), "{t:?}");
    // The same IPI, the timer's signal its other sender: named.
    kick.sender2.valid = 1;
    let r = made_up_full(Some(&[K::Timer]), &[timer], &[kick]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named), (1, 1), "{t:?}");
}

#[test]
fn a_timers_kick_before_its_inferred_window_counts_in_the_gap_its_handler_ran_in() {
    use crate::inject::Kind as K;
    let base = 1_000_000_000;
    let timer = |after_ns| Injection {
        kind: K::Timer,
        cpu: 1,
        before_ns: base + 601_150_000,
        after_ns,
    };
    // The kick (its sender's stack names posix_timer_fn) ended 30 us
    // before the window the period gives; the handler ran in the same gap.
    let mut kick = raw(base + 601_100_000, 20_000, 2, 7);
    kick.sender2.valid = 1;
    let r = made_up_full(Some(&[K::Timer]), &[timer(base + 601_200_000)], &[kick]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named), (1, 1), "{t:?}");
    // The handler ran after that gap: the kick is not its.
    let r = made_up_full(Some(&[K::Timer]), &[timer(base + 602_500_000)], &[kick]);
    let t = &r.per_cpu[0].recall["timer"];
    assert_eq!((t.in_gap, t.named), (1, 0), "{t:?}");
}
