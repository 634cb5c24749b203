//! The Prometheus metrics isold exports (names and labels documented in
//! docs/metrics.md). Counters follow the in-kernel aggregates by delta, so
//! they only ever increase; label values are bounded (see `max_details`).

use isol_capture::{Aggregate, Drops, Record, StrictBreak};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;

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
    pub up: Gauge,
    // Delta bookkeeping against the kernel's cumulative numbers.
    last: HashMap<CauseLabels, (u64, u64)>,
    details: HashMap<u32, HashSet<String>>,
    last_drops: Drops,
    /// Per task: the kernel's break count and first break seen, for deltas.
    seen_breaks: HashMap<u32, (u32, u64)>,
    worst_keys: HashSet<CpuClass>,
    max_details: usize,
}

impl Metrics {
    pub fn new(max_details: usize) -> (Metrics, Registry) {
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
            up: Gauge::default(),
            last: HashMap::new(),
            details: HashMap::new(),
            last_drops: Drops::default(),
            seen_breaks: HashMap::new(),
            worst_keys: HashSet::new(),
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
            "Capture records or details dropped, by reason (never silent)",
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
            "isol_isolated_tasks",
            "Tasks and processes registered through the task isolation API",
            m.isolated_tasks.clone(),
        );
        r.register(
            "isol_config_reloads",
            "Configuration reloads (SIGHUP)",
            m.reloads.clone(),
        );
        r.register("isol_up", "1 while the capture is attached", m.up.clone());
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
    pub fn reset_baseline(&mut self) {
        self.last.clear();
        self.last_drops = Drops::default();
    }

    fn label(&mut self, a: &Aggregate) -> CauseLabels {
        let set = self.details.entry(a.cpu).or_default();
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
        let mut now: HashMap<CauseLabels, (u64, u64)> = HashMap::new();
        for a in aggs {
            let l = self.label(a);
            let e = now.entry(l).or_default();
            e.0 += a.count;
            e.1 += a.total_ns;
        }
        for (l, (count, ns)) in now {
            let (c0, n0) = self.last.get(&l).copied().unwrap_or((0, 0));
            self.interruptions
                .get_or_create(&l)
                .inc_by(count.saturating_sub(c0));
            self.seconds
                .get_or_create(&l)
                .inc_by(ns.saturating_sub(n0) as f64 / 1e9);
            self.last.insert(l, (count, ns));
        }
    }

    /// Worst interruption per CPU and class among this interval's records.
    pub fn update_worst(&mut self, recs: &[Record]) {
        let mut worst: HashMap<CpuClass, u64> = HashMap::new();
        for r in recs {
            let k = CpuClass {
                cpu: r.cpu.to_string(),
                class: r.cause.class.name().into(),
            };
            let w = worst.entry(k).or_default();
            *w = (*w).max(r.duration_ns);
        }
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
        let l = self.last_drops;
        for (reason, now, before) in [
            ("ringbuf", d.ringbuf, l.ringbuf),
            ("aggregation", d.aggregation, l.aggregation),
            ("stack", d.stack, l.stack),
            ("sender", d.sender, l.sender),
            ("nesting", d.nesting, l.nesting),
        ] {
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
