//! The Prometheus metrics isold exports (names and labels documented in
//! docs/metrics.md). Counters follow the in-kernel aggregates by delta, so
//! they only ever increase; label values are bounded (see `max_details`).

use isol_capture::record::RawRecord;
use isol_capture::{Aggregate, Class, Drops, StrictBreak};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// (cpu, class, kind, detail) as the kernel aggregates them.
type RawKey = (u32, &'static str, &'static str, String);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cpu: String,
    pub class: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CpuClass {
    pub cpu: String,
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CpuLabel {
    pub cpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftKind {
    pub kind: String,
}

type FCounter = Counter<f64, AtomicU64>;
type FGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    pub interruptions: Family<CauseLabels, Counter>,
    pub seconds: Family<CauseLabels, FCounter>,
    pub worst: Family<CpuClass, FGauge>,
    pub breaks: Family<CpuLabel, Counter>,
    pub dropped: Family<Reason, Counter>,
    pub drift_current: Family<DriftKind, Gauge>,
    pub drift_events: Family<DriftKind, Counter>,
    pub watched_cpus: Gauge,
    pub isolated_tasks: Gauge,
    pub reloads: Counter,
    pub reload_failures: Counter,
    pub up: Gauge,
    pub over_threshold: Family<CpuClass, Counter>,
    pub threshold: FGauge,
    // Delta bookkeeping against the kernel's cumulative numbers, per raw
    // cause (a detail may be exported under its own label or "other").
    last: HashMap<RawKey, (u64, u64, u64)>,
    /// When each exported cause series last moved (for `retention`).
    touched: HashMap<CauseLabels, Instant>,
    /// Log2 bucket from which an interruption counts as over the threshold.
    threshold_bucket: usize,
    retention: Option<Duration>,
    /// Detail values given a label of their own, per CPU and class: a
    /// class's own slots, so that a crowd of short-lived preempting pids
    /// cannot push an IPI's function into "other".
    details: HashMap<(u32, &'static str), HashSet<String>>,
    last_drops: Drops,
    /// Per task: the kernel's break count and first break seen, for deltas.
    seen_breaks: HashMap<u32, (u32, u64)>,
    worst_keys: HashSet<CpuClass>,
    /// This interval's worst duration per (CPU, raw class).
    worst_now: HashMap<(u32, u8), u64>,
    max_details: usize,
}

impl Metrics {
    /// `threshold_ns`: interruptions at least this long are also counted in
    /// `isol_interruptions_over_threshold_total` (rounded up to the kernel
    /// histogram's power-of-two bucket; the effective value is exported).
    /// `retention`: cause series that have not moved for this long are
    /// dropped from the exposition, freeing their `detail` slot.
    pub fn new(
        max_details: usize,
        threshold_ns: u64,
        retention: Option<Duration>,
    ) -> (Metrics, Registry) {
        let mut r = Registry::default();
        let m = Metrics {
            interruptions: Family::default(),
            seconds: Family::default(),
            worst: Family::default(),
            breaks: Family::default(),
            dropped: Family::default(),
            drift_current: Family::default(),
            drift_events: Family::default(),
            watched_cpus: Gauge::default(),
            isolated_tasks: Gauge::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            up: Gauge::default(),
            over_threshold: Family::default(),
            threshold: FGauge::default(),
            last: HashMap::new(),
            touched: HashMap::new(),
            threshold_bucket: threshold_bucket(threshold_ns),
            retention,
            details: HashMap::new(),
            last_drops: Drops::default(),
            seen_breaks: HashMap::new(),
            worst_keys: HashSet::new(),
            worst_now: HashMap::new(),
            max_details,
        };
        r.register(
            "isol_interruptions",
            "Interruptions of watched CPUs by primary cause",
            m.interruptions.clone(),
        );
        r.register(
            "isol_interruption_seconds",
            "Time watched CPUs lost to interruptions, by primary cause",
            m.seconds.clone(),
        );
        r.register(
            "isol_interruption_worst_seconds",
            "Longest interruption in the last collection interval",
            m.worst.clone(),
        );
        r.register(
            "isol_strict_breaks",
            "Strict-mode breaks (tasks signalled)",
            m.breaks.clone(),
        );
        r.register(
            "isol_dropped_records",
            "Capture records or details dropped, by reason (never silent; stack_sampled: sender stacks not taken by choice)",
            m.dropped.clone(),
        );
        r.register(
            "isol_drift",
            "Device IRQs and user tasks currently landing on watched CPUs",
            m.drift_current.clone(),
        );
        r.register(
            "isol_drift_events",
            "IRQs or tasks that moved onto a watched CPU since the previous check",
            m.drift_events.clone(),
        );
        r.register(
            "isol_watched_cpus",
            "Number of CPUs watched",
            m.watched_cpus.clone(),
        );
        r.register(
            "isol_interruptions_over_threshold",
            "Interruptions at least isol_threshold_seconds long",
            m.over_threshold.clone(),
        );
        r.register(
            "isol_threshold_seconds",
            "Effective threshold of isol_interruptions_over_threshold (a power of two in ns)",
            m.threshold.clone(),
        );
        r.register(
            "isol_isolated_tasks",
            "Tasks and processes registered through the task isolation API",
            m.isolated_tasks.clone(),
        );
        r.register(
            "isol_config_reloads",
            "Configuration reloads (SIGHUP)",
            m.reloads.clone(),
        );
        r.register(
            "isol_config_reload_failures",
            "Configurations refused at SIGHUP (the old one stays in force)",
            m.reload_failures.clone(),
        );
        r.register("isol_up", "1 while the capture is attached", m.up.clone());
        // Every drop reason is exported from the start at 0: a scrape that
        // lands before the first collection must not read "no series" as
        // "never dropped" (nor race a test's first look).
        for (reason, _) in Drops::default().reasons() {
            m.dropped
                .get_or_create(&Reason {
                    reason: reason.into(),
                })
                .inc_by(0);
        }
        (m, r)
    }

    /// Series that must exist from the start (at zero) so dashboards and
    /// alerts see them before the first event.
    pub fn init_cpus(&mut self, cpus: &isol_cpulist::CpuSet) {
        for c in cpus.iter() {
            let _ = self.breaks.get_or_create(&CpuLabel { cpu: c.to_string() });
        }
        for k in ["irq", "task"] {
            let _ = self
                .drift_events
                .get_or_create(&DriftKind { kind: k.into() });
        }
    }

    /// The capture restarted: its cumulative numbers start from zero.
    /// New threshold and retention (config reload).
    pub fn set_limits(&mut self, threshold_ns: u64, retention: Option<Duration>) {
        self.threshold_bucket = threshold_bucket(threshold_ns);
        self.retention = retention;
    }

    pub fn reset_baseline(&mut self) {
        self.last.clear();
        self.last_drops = Drops::default();
    }

    fn label(&mut self, a: &Aggregate) -> CauseLabels {
        let set = self
            .details
            .entry((a.cpu, a.cause.class.name()))
            .or_default();
        let detail = if set.contains(&a.cause.detail) || set.len() < self.max_details {
            set.insert(a.cause.detail.clone());
            a.cause.detail.clone()
        } else {
            "other".to_string()
        };
        CauseLabels {
            cpu: a.cpu.to_string(),
            class: a.cause.class.name().into(),
            kind: a.cause.kind.name().into(),
            detail,
        }
    }

    pub fn update_aggregates(&mut self, aggs: &[Aggregate]) {
        self.threshold
            .set((1u64 << self.threshold_bucket) as f64 / 1e9);
        let now = Instant::now();
        for a in aggs {
            let key: RawKey = (
                a.cpu,
                a.cause.class.name(),
                a.cause.kind.name(),
                a.cause.detail.clone(),
            );
            let over: u64 = a.hist.iter().skip(self.threshold_bucket).sum();
            let (c0, n0, o0) = self.last.get(&key).copied().unwrap_or((0, 0, 0));
            let (dc, dn, dover) = (
                a.count.saturating_sub(c0),
                a.total_ns.saturating_sub(n0),
                over.saturating_sub(o0),
            );
            self.last.insert(key, (a.count, a.total_ns, over));
            if dc == 0 && dn == 0 {
                continue;
            }
            let l = self.label(a);
            self.interruptions.get_or_create(&l).inc_by(dc);
            self.seconds.get_or_create(&l).inc_by(dn as f64 / 1e9);
            self.over_threshold
                .get_or_create(&CpuClass {
                    cpu: l.cpu.clone(),
                    class: l.class.clone(),
                })
                .inc_by(dover);
            self.touched.insert(l, now);
        }
        if let Some(keep) = self.retention {
            let stale: Vec<CauseLabels> = self
                .touched
                .iter()
                .filter(|(_, t)| now.duration_since(**t) > keep)
                .map(|(l, _)| l.clone())
                .collect();
            for l in stale {
                self.interruptions.remove(&l);
                self.seconds.remove(&l);
                self.touched.remove(&l);
                for ((cpu, class), set) in self.details.iter_mut() {
                    if cpu.to_string() == l.cpu && *class == l.class {
                        set.remove(&l.detail);
                    }
                }
            }
        }
    }

    /// Folds one drained record into this interval's worst per CPU and
    /// class. From the raw record: naming every record (symbols, the
    /// preempting task's /proc comm, the sender's stack) cost isold 7 % of
    /// its CPU under an IPI storm, and the maximum needs none of it.
    pub fn note_worst(&mut self, r: &RawRecord) {
        let w = self.worst_now.entry((r.cpu, r.primary.class)).or_default();
        *w = (*w).max(r.duration_ns);
    }

    /// Publishes the interval's worst interruption per CPU and class (0
    /// for a series that had none) and starts the next interval.
    pub fn update_worst(&mut self) {
        let worst: HashMap<CpuClass, u64> = self
            .worst_now
            .drain()
            .map(|((cpu, class), ns)| {
                let k = CpuClass {
                    cpu: cpu.to_string(),
                    class: Class::from_raw(class).name().into(),
                };
                (k, ns)
            })
            .collect();
        for k in &self.worst_keys {
            if !worst.contains_key(k) {
                self.worst.get_or_create(k).set(0.0);
            }
        }
        for (k, ns) in worst {
            self.worst.get_or_create(&k).set(ns as f64 / 1e9);
            self.worst_keys.insert(k);
        }
    }

    pub fn update_drops(&mut self, d: Drops) {
        let before = self.last_drops.reasons();
        for ((reason, now), (_, before)) in d.reasons().into_iter().zip(before) {
            self.dropped
                .get_or_create(&Reason {
                    reason: reason.into(),
                })
                .inc_by(now.saturating_sub(before));
        }
        self.last_drops = d;
    }

    pub fn update_breaks(&mut self, breaks: &[StrictBreak]) {
        for b in breaks {
            // A counting registration keeps one record per task whose count
            // grows; a re-registration starts it again at 1.
            let prev = self.seen_breaks.insert(b.tid, (b.count, b.ts_ns));
            let delta = match prev {
                Some((c, _)) if b.count >= c => b.count - c,
                _ => b.count.max(1),
            };
            if delta > 0 {
                self.breaks
                    .get_or_create(&CpuLabel {
                        cpu: b.cpu.to_string(),
                    })
                    .inc_by(delta as u64);
            }
        }
    }
}

/// First log2(ns) bucket whose lower bound is at least `ns`.
fn threshold_bucket(ns: u64) -> usize {
    let mut b = 0;
    while b < 63 && (1u64 << b) < ns {
        b += 1;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_capture::{Cause, Class, Kind};

    fn agg(detail: &str, count: u64, hist_at: usize) -> Aggregate {
        let mut hist = vec![0; 32];
        hist[hist_at] = count;
        Aggregate {
            cpu: 1,
            cause: Cause {
                class: Class::Ipi,
                kind: Kind::CsdFunction,
                detail: detail.into(),
                irq: None,
                vector: None,
                address: None,
                pid: None,
                nr: None,
                vm_exit: None,
            },
            count,
            total_ns: count * 1000,
            max_ns: 1000,
            hist,
        }
    }

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn worst_is_the_intervals_longest_per_cpu_and_class_then_zero() {
        let (mut m, r) = Metrics::new(4, 10_000, None);
        let rec = |cpu, class: Class, ns| RawRecord {
            cpu,
            duration_ns: ns,
            primary: isol_capture::record::RawCause {
                class: class as u8,
                ..Default::default()
            },
            ..Default::default()
        };
        for x in [
            rec(1, Class::Ipi, 3_000),
            rec(1, Class::Ipi, 9_000),
            rec(1, Class::Ipi, 5_000),
            rec(2, Class::Ipi, 1_000),
            rec(1, Class::Irq, 2_000),
        ] {
            m.note_worst(&x);
        }
        m.update_worst();
        let t = text(&r);
        let worst = |t: &str, cpu: &str, class: &str| {
            let p = format!("isol_interruption_worst_seconds{{cpu=\"{cpu}\",class=\"{class}\"}} ");
            t.lines()
                .find_map(|l| l.strip_prefix(p.as_str()))
                .unwrap_or_else(|| panic!("no {p} in\n{t}"))
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(worst(&t, "1", "ipi"), 9e-6);
        assert_eq!(worst(&t, "2", "ipi"), 1e-6);
        assert_eq!(worst(&t, "1", "irq"), 2e-6);
        // The next interval starts empty: a series with no record is 0.
        m.note_worst(&rec(2, Class::Ipi, 4_000));
        m.update_worst();
        let t = text(&r);
        assert_eq!(worst(&t, "1", "ipi"), 0.0);
        assert_eq!(worst(&t, "2", "ipi"), 4e-6);
    }

    #[test]
    fn vm_exits_are_their_own_class_by_reason() {
        let (mut m, r) = Metrics::new(4, 10_000, None);
        let exit = |reason: &str, n| {
            let mut a = agg(reason, n, 10);
            a.cause.class = Class::VmExit;
            a.cause.kind = Kind::VmExit;
            a
        };
        m.update_aggregates(&[exit("INTR", 5), exit("HLT", 3)]);
        let t = text(&r);
        for (reason, n) in [("INTR", 5), ("HLT", 3)] {
            let line = format!(
                "isol_interruptions_total{{cpu=\"1\",class=\"vmexit\",kind=\"vm_exit\",detail=\"{reason}\"}} {n}"
            );
            assert!(t.contains(&line), "no {line} in\n{t}");
        }
    }

    #[test]
    fn a_crowd_of_preempting_pids_does_not_push_ipi_functions_into_other() {
        let (mut m, r) = Metrics::new(4, 10_000, None);
        let preempt = |d: &str| {
            let mut a = agg(d, 1, 10);
            a.cause.class = Class::Sched;
            a.cause.kind = Kind::Preempt;
            a
        };
        let crowd: Vec<Aggregate> = (0..50).map(|i| preempt(&format!("pid {i}"))).collect();
        m.update_aggregates(&crowd);
        m.update_aggregates(&[agg("flush_tlb_func", 7, 10)]);
        let t = text(&r);
        assert!(
            t.contains("class=\"ipi\",kind=\"csd_function\",detail=\"flush_tlb_func\"} 7"),
            "{t}"
        );
        // The class's own bound still holds: 4 pids, the rest "other".
        assert_eq!(
            t.matches("isol_interruptions_total{cpu=\"1\",class=\"sched\"")
                .count(),
            5,
            "{t}"
        );
        assert!(
            t.contains("class=\"sched\",kind=\"preempt\",detail=\"other\"} 46"),
            "{t}"
        );
    }

    #[test]
    fn threshold_counts_long_ones_and_retention_drops_quiet_series() {
        assert_eq!(threshold_bucket(10_000), 14); // 16384 ns
        let (mut m, r) = Metrics::new(32, 10_000, Some(Duration::from_millis(50)));
        // 3 short (bucket 10, ~1 us) and 2 long (bucket 15, ~32 us).
        m.update_aggregates(&[agg("short_fn", 3, 10), agg("long_fn", 2, 15)]);
        let t = text(&r);
        assert!(
            t.contains("isol_interruptions_over_threshold_total{cpu=\"1\",class=\"ipi\"} 2"),
            "{t}"
        );
        assert!(t.contains("isol_threshold_seconds 0.000016384"), "{t}");
        assert!(t.contains("detail=\"short_fn\""), "{t}");
        std::thread::sleep(Duration::from_millis(80));
        // long_fn moves again, short_fn does not: short_fn's series goes.
        m.update_aggregates(&[agg("short_fn", 3, 10), agg("long_fn", 4, 15)]);
        let t = text(&r);
        assert!(!t.contains("detail=\"short_fn\""), "{t}");
        assert!(
            t.contains("isol_interruptions_over_threshold_total{cpu=\"1\",class=\"ipi\"} 4"),
            "{t}"
        );
        // It comes back counting from where the kernel is, not from zero.
        m.update_aggregates(&[agg("short_fn", 5, 10), agg("long_fn", 4, 15)]);
        let t = text(&r);
        let line = t
            .lines()
            .find(|l| l.starts_with("isol_interruptions_total") && l.contains("short_fn"))
            .unwrap();
        assert!(line.ends_with(" 2"), "{line}");
    }
}
