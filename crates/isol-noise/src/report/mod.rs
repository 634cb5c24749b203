//! The report: per-CPU summary (min/avg/max, percentiles, availability,
//! count and time per cause), the N worst gaps with their cause chain and
//! sender stack, a per-second timeline, the loop histogram. Built from the
//! samplers' outcomes and the capture engine's records; rendered by
//! [`text`], [`json`] and [`html`].

mod analyse;
pub mod html;
pub mod json;
pub mod text;

#[cfg(test)]
use analyse::runq_take;
pub use analyse::{log_bin, pid_cpu, synthetic_cpu, Context, Names, Seen};

use crate::histogram::Histogram;
use isol_capture::record::Sender;
use isol_capture::Cause;
use isol_cpulist::CpuSet;
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA: &str = "isol.noise/3";

/// Gaps a CPU's `marks` keep for the HTML timeline: enough for every gap
/// of a typical run, few enough to keep the file small and the SVG quick.
pub const MARKS_MAX: usize = 2000;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    /// `synthetic` (TSC loop) or `pid` (a running task, capture only).
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub cpus: CpuSet,
    pub duration_s: f64,
    pub threshold_ns: u64,
    /// Ctrl-C ended the run: the report is partial.
    pub interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsc_hz: Option<f64>,
    /// Running under a hypervisor (cpuinfo `hypervisor` flag).
    pub virtualized: bool,
    /// Gaps were matched with kernel entries (the capture engine ran).
    pub attribution: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureInfo>,
    pub per_cpu: Vec<CpuReport>,
    /// Things the reader should know (no attribution, chosen CPU, ...).
    pub notes: Vec<String>,
    /// --on-threshold: the gaps above --stop-above and the actions run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_threshold: Option<isol_capture::threshold::Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stop {
    pub cpu: u32,
    pub gap_ns: u64,
    pub at_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaptureInfo {
    pub attached: usize,
    pub skipped: Vec<String>,
    pub records: u64,
    pub drops: isol_capture::Drops,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    pub cpu: u32,
    /// Loop iterations (synthetic mode).
    pub loops: u64,
    /// Loop deltas (synthetic) or interruption durations (pid), ns.
    pub min_ns: u64,
    pub avg_ns: f64,
    pub max_ns: u64,
    /// From the histogram: upper bound of the bucket holding each quantile.
    pub percentiles: Percentiles,
    /// Share of the run the loop (or task) had the CPU, %.
    pub availability_pct: f64,
    /// Gaps above the threshold (pid mode: interruptions).
    pub gaps: u64,
    /// Gaps not kept (buffer full); counted in the histogram only.
    pub gaps_lost: u64,
    /// Total time in gaps, ns.
    pub noise_ns: u64,
    /// Gaps with a kernel cause / all gaps kept.
    pub attributed: u64,
    pub attributed_pct: f64,
    /// Time in gaps no kernel entry covers, ns.
    pub hw_ns: u64,
    /// Count and time per primary cause, largest time first.
    pub causes: Vec<CauseRow>,
    /// Every kernel entry inside a gap, whatever the gap's primary cause
    /// (an `hw` gap's too): per cause, the gaps it was in, its entries and
    /// the gap time it covered, largest first. Nothing the kernel did
    /// inside a gap is lost behind `hw`.
    pub covered: Vec<CoveredRow>,
    /// The worst gaps, longest first ("auto analysis").
    pub worst: Vec<Gap>,
    /// With --stop-above: the gaps of the last 100 ms before the stop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub before_stop: Vec<Gap>,
    /// Test hook: the stall injected into the loop, as attributed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injected: Option<Gap>,
    pub timeline: Vec<Second>,
    pub histogram: Histogram,
    /// Loop deltas (synthetic) or interruptions (pid) in log bins, ten
    /// per decade from 10 ns (plus one [0, 10) bin); non-empty bins only,
    /// in order: the HTML histogram's log axis without oslat's 1 us floor.
    pub latency: Vec<Bin>,
    /// The gaps the HTML timeline plots, in time order: all of them, or
    /// the [`MARKS_MAX`] longest when there are more.
    pub marks: Vec<Mark>,
    /// --inject: per kind, how many injections their gap names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub recall: BTreeMap<&'static str, Recall>,
}

/// The recall of one injected kind on one CPU. An injection is judged
/// when a gap overlaps its window (else it cost the loop less than the
/// threshold: nothing to attribute) and the loop was not switched out
/// during the window (then the gap is the preemption's); it is named when such a gap holds a
/// kernel entry that runs inside the window and names the expected
/// function (its cause, a cause in its chain, or for a timer moved off
/// the CPU the sender's stack).
#[derive(Debug, Clone, Serialize)]
pub struct Recall {
    /// Any of these names it (`page_fault` is the kind, not a function).
    pub expected: Vec<&'static str>,
    pub injected: u64,
    /// Injections while another task had the CPU: not judged.
    pub preempted: u64,
    /// Injections whose window a gap overlaps, the loop not switched out
    /// in it: judged.
    pub in_gap: u64,
    pub named: u64,
    /// Judged, not named, and no kernel entry at all in their gaps: the
    /// capture missed it, or the CPU never ran it (KVM's paravirtual TLB
    /// flush skips a vCPU the host has preempted: no IPI, the host
    /// flushes). Counted as misses.
    pub no_entry: u64,
    /// named / in_gap; null when no injection was in a gap.
    pub recall: Option<f64>,
    /// Of the named, those whose gap has that entry as primary cause (not
    /// `hw`): under an emulator the stolen time around it dominates.
    pub primary: u64,
    /// The first judged misses (up to [`MAX_MISSES`]), with what their
    /// gaps held instead: what a reader needs to find why.
    pub misses: Vec<Miss>,
}

/// How many misses a recall row shows.
pub const MAX_MISSES: usize = 8;

/// A judged injection no gap named: its window and its gaps' entries.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub before_ns: u64,
    pub after_ns: u64,
    pub gaps: Vec<MissGap>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissGap {
    pub start_ns: u64,
    pub duration_ns: u64,
    pub entries: Vec<MissEntry>,
}

/// A kernel entry of a missed injection's gap.
#[derive(Debug, Clone, Serialize)]
pub struct MissEntry {
    pub start_ns: u64,
    pub duration_ns: u64,
    pub tid: u32,
    pub cause: isol_capture::record::Cause,
    /// Every cause of its chain, outermost first: `class/kind detail`.
    pub chain: Vec<String>,
    /// It began inside the gap (the only ones that may name it).
    pub inside: bool,
    /// An IPI's sender, with its stack (as isol.watch/1).
    pub sender: Option<isol_capture::record::Sender>,
    /// Another IPI's sender in the same entry (as isol.watch/1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_sender: Option<isol_capture::record::Sender>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bin {
    /// Values in [lo_ns, hi_ns).
    pub lo_ns: u64,
    pub hi_ns: u64,
    pub count: u64,
}

/// A gap as the timeline shows it: when, how long, why, who sent it.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub at_s: f64,
    pub duration_ns: u64,
    pub cause: Named,
    /// The primary entry's cause chain, outermost first.
    pub chain: Vec<Cause>,
    /// An IPI's sender, without its stack (the worst gaps carry stacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
}

/// A cause as the report names it: the capture engine's class/kind/detail,
/// or class `hw` for time with no kernel entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Named {
    pub class: String,
    pub kind: String,
    pub detail: String,
}

impl Named {
    pub fn of(c: &Cause) -> Named {
        Named {
            class: c.class.name().into(),
            kind: c.kind.name().into(),
            detail: c.detail.clone(),
        }
    }
    pub fn hw(steal: bool) -> Named {
        Named {
            class: "hw".into(),
            kind: if steal {
                "hypervisor"
            } else {
                "no_kernel_entry"
            }
            .into(),
            detail: if steal {
                "no kernel entry; the hypervisor reported steal time then".into()
            } else {
                "no kernel entry: SMI, hypervisor preemption or SMT sibling".into()
            },
        }
    }
    pub fn runqueue() -> Named {
        Named {
            class: "sched".into(),
            kind: "runqueue_wait".into(),
            detail: "another task ran on this CPU (run-queue wait, from schedstat)".into(),
        }
    }
    pub fn label(&self) -> String {
        format!("{} {} {}", self.class, self.kind, self.detail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CauseRow {
    #[serde(flatten)]
    pub cause: Named,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoveredRow {
    #[serde(flatten)]
    pub cause: Named,
    /// Gaps holding at least one such entry.
    pub gaps: u64,
    pub entries: u64,
    /// Gap time these entries covered, ns.
    pub covered_ns: u64,
    /// Of those gaps, how many were `hw` by their primary cause.
    pub in_hw_gaps: u64,
    /// An IPI's sender (the first one named), as isol.watch/1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// CLOCK_MONOTONIC ns (the capture engine's clock).
    pub start_ns: u64,
    /// Seconds since the run started.
    pub at_s: f64,
    pub duration_ns: u64,
    pub cause: Named,
    /// Covered by kernel entries / by none, ns.
    pub kernel_ns: u64,
    pub hw_ns: u64,
    /// The primary entry's cause chain, outermost first.
    pub chain: Vec<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// Every kernel entry inside the gap.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub cause: Named,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub tid: u32,
    pub comm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub second: u64,
    /// Largest loop delta (synthetic) or interruption (pid) that second.
    pub max_ns: u64,
    pub gaps: u64,
    pub noise_ns: u64,
    pub hw_ns: u64,
    /// Steal time the kernel accounted to this CPU that second.
    pub steal_ns: u64,
}

pub use isol_system::units::ns as fmt_ns;

#[cfg(test)]
pub(crate) mod tests;
