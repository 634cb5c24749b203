//! The analysis: a CPU's gaps (or interruptions) and the capture's
//! records into its [`CpuReport`] — causes, coverage, worst gaps, timeline,
//! recall of injected causes. The writers ([`super::text`], [`super::json`],
//! [`super::html`]) only render its result.

use super::{
    Bin, CauseRow, CoveredRow, CpuReport, Entry, Gap, Mark, Named, Percentiles, Recall, Second,
    MARKS_MAX,
};
use crate::attribute::{self, Attribution, Params, Span};
use crate::histogram::Histogram;
use crate::sampler::Outcome;
use isol_capture::record::{RawRecord, Record};
use isol_capture::{Cause, Class};
use std::collections::BTreeMap;

/// Edge k of the log bins (k >= 10): 10^(k/10) ns rounded, so 10, 13,
/// 16, 20, 25, 32, 40, 50, 63, 79, 100, ... (distinct integers).
fn log_edge(k: u32) -> u64 {
    10f64.powf(k as f64 / 10.0).round() as u64
}

/// The log bin holding `v` ns: [lo, hi).
pub fn log_bin(v: u64) -> (u64, u64) {
    if v < 10 {
        return (0, 10);
    }
    // The float guess may be one off at an edge; the integer edges decide.
    let mut k = ((v as f64).log10() * 10.0).floor().max(10.0) as u32;
    while k > 10 && v < log_edge(k) {
        k -= 1;
    }
    while v >= log_edge(k + 1) {
        k += 1;
    }
    (log_edge(k), log_edge(k + 1))
}

/// (value ns, count) pairs into non-empty log bins, in order.
fn log_bins(values: impl Iterator<Item = (u64, u64)>) -> Vec<Bin> {
    let mut m: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (v, c) in values {
        if c > 0 {
            *m.entry(log_bin(v)).or_default() += c;
        }
    }
    m.into_iter()
        .map(|((lo_ns, hi_ns), count)| Bin {
            lo_ns,
            hi_ns,
            count,
        })
        .collect()
}

/// Inputs the builder needs besides the outcome.
pub struct Context<'a> {
    /// --inject: the kinds asked for, and this CPU's injections.
    pub inject: Option<&'a [crate::inject::Kind]>,
    pub injections: &'a [crate::inject::Injection],
    pub params: Params,
    pub worst: usize,
    pub threshold_ns: u64,
    /// Monotonic ns when the run started.
    pub t0_ns: u64,
    /// Per second of the run, steal ns accounted to this CPU.
    pub steal: &'a [u64],
    /// (monotonic ns, cumulative run-queue wait ns) of the measuring
    /// thread, sampled every few ms from /proc (schedstat): time another
    /// task had the CPU while the loop was runnable. The capture records
    /// every displacement itself; this names uncovered gaps only when it
    /// lost records (`records_lost`), and otherwise keeps preemptions
    /// from being counted twice.
    pub runq: &'a [(u64, u64)],
    /// The capture dropped records during the run (ring buffer full).
    pub records_lost: bool,
}

/// What names a raw record: the capture engine that recorded it (tests
/// give their own).
pub trait Names {
    /// The record in full (sender and its stack: map lookups, so only for
    /// the records a report shows).
    fn record(&self, r: &RawRecord) -> Record;
    /// Its primary cause.
    fn cause(&self, r: &RawRecord) -> Cause;
}

impl Names for isol_capture::Capture {
    fn record(&self, r: &RawRecord) -> Record {
        self.resolve(r)
    }
    fn cause(&self, r: &RawRecord) -> Cause {
        self.resolver.cause(&r.primary)
    }
}

/// A kernel entry the capture recorded, with what names it: a record
/// cannot be there without its capture.
#[derive(Clone, Copy)]
pub struct Seen<'a> {
    pub raw: RawRecord,
    pub names: &'a dyn Names,
}

impl Seen<'_> {
    pub fn record(&self) -> Record {
        self.names.record(&self.raw)
    }
    pub fn cause(&self) -> Cause {
        self.names.cause(&self.raw)
    }
}

impl std::ops::Deref for Seen<'_> {
    type Target = RawRecord;
    fn deref(&self) -> &RawRecord {
        &self.raw
    }
}

/// The quantiles a report gives, from any source of `value_at(q)`.
fn percentiles_by(p: impl Fn(f64) -> u64) -> Percentiles {
    Percentiles {
        p50: p(0.5),
        p90: p(0.9),
        p99: p(0.99),
        p999: p(0.999),
        p9999: p(0.9999),
    }
}

/// From the log-linear counts: within 1.6 % (plus the hdr histogram's
/// 0.1 %) at any magnitude, in ns.
fn fine_percentiles(h: &hdrhistogram::Histogram<u64>) -> Percentiles {
    percentiles_by(|q| h.value_at_quantile(q))
}

fn percentiles(h: &Histogram) -> Percentiles {
    percentiles_by(|q| h.percentile(q).unwrap_or(0))
}

/// Hands out the loop's run-queue wait (from schedstat, per sampling
/// interval) to a gap [start, end). `cover`: the gap has `ns` of time no
/// kernel entry covers; it is a run-queue wait if the intervals it
/// overlaps still hold 80% of that (a long gap spans several intervals:
/// their waits add up), and takes it. Otherwise the gap was a preemption
/// the capture saw: it takes its `ns` of wait unconditionally, so that
/// wait cannot also explain another, uncovered gap in the same interval
/// (an injected stall beside a real preemption is `hw`).
pub(super) fn runq_take(
    runq: &[(u64, u64)],
    budget: &mut [u64],
    start: u64,
    end: u64,
    ns: u64,
    cover: bool,
) -> bool {
    if ns == 0 || runq.len() < 2 {
        return false;
    }
    // Interval k is [runq[k].0, runq[k+1].0).
    let first = runq.partition_point(|s| s.0 <= start);
    let after = runq.partition_point(|s| s.0 < end);
    // Before the first sample or past the last one: not judged.
    if first == 0 || after >= runq.len() {
        return false;
    }
    let range = first - 1..after;
    let avail: u64 = budget[range.clone()].iter().sum();
    if cover && avail * 5 < ns * 4 {
        return false;
    }
    // schedstat adds a wait when the task runs again: at the gap's end,
    // so the last interval pays first.
    let mut need = ns;
    for b in budget[range].iter_mut().rev() {
        let take = (*b).min(need);
        *b -= take;
        need -= take;
    }
    true
}

/// `records` are this CPU's (any order). `gaps`: (mono start, ns).
fn analyse(
    cpu: u32,
    gaps: &[(u64, u64)],
    records: &[Seen],
    cx: &Context,
    duration_ns: u64,
) -> (CpuReport, Vec<Attribution>, Vec<Named>, Vec<usize>) {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| records[i].start_ns);
    let spans: Vec<Span> = order
        .iter()
        .map(|&i| {
            let r = &records[i];
            Span {
                start: r.start_ns,
                len: r.duration_ns,
                point: r.flags & isol_capture::record::REC_NO_DURATION != 0,
            }
        })
        .collect();
    let gspans: Vec<Span> = gaps.iter().map(|&(s, l)| Span::new(s, l)).collect();
    let attr = attribute::attribute(&gspans, &spans, cx.params);
    let secs = duration_ns.div_ceil(1_000_000_000).max(1) as usize;
    let mut timeline: Vec<Second> = (0..secs)
        .map(|s| Second {
            second: s as u64,
            steal_ns: cx.steal.get(s).copied().unwrap_or(0),
            ..Second::default()
        })
        .collect();
    let mut rows: BTreeMap<Named, CauseRow> = BTreeMap::new();
    let mut covered: BTreeMap<Named, CoveredRow> = BTreeMap::new();
    let (mut noise, mut hw_ns, mut attributed) = (0u64, 0u64, 0u64);
    let mut names = Vec::with_capacity(gaps.len());
    // Run-queue wait still to hand out, per sampling interval.
    let mut budget: Vec<u64> = cx
        .runq
        .windows(2)
        .map(|w| w[1].1.saturating_sub(w[0].1))
        .collect();
    for (g, a) in gaps.iter().zip(&attr) {
        let sec = (g.0.saturating_sub(cx.t0_ns) / 1_000_000_000) as usize;
        let steal = [sec.wrapping_sub(1), sec, sec + 1]
            .iter()
            .any(|&s| cx.steal.get(s).is_some_and(|&v| v > 0));
        // Preemptions the capture saw in this gap account for their part
        // of the run-queue wait first.
        let seen_wait: u64 = a
            .entries
            .iter()
            .map(|&e| &records[order[e]])
            .filter(|r| Class::from_raw(r.primary.class) == Class::Sched)
            .map(|r| {
                let (s0, e0) = (
                    r.start_ns.max(g.0),
                    (r.start_ns + r.duration_ns).min(g.0 + g.1),
                );
                e0.saturating_sub(s0)
            })
            .sum();
        runq_take(cx.runq, &mut budget, g.0, g.0 + g.1, seen_wait, false);
        let mut seen_here: Vec<Named> = Vec::new();
        for &e in &a.entries {
            let r = &records[order[e]];
            let n = Named::of(&r.cause());
            let (s0, e0) = (
                r.start_ns.max(g.0),
                (r.start_ns + r.duration_ns).min(g.0 + g.1),
            );
            let row = covered.entry(n.clone()).or_insert(CoveredRow {
                cause: n.clone(),
                gaps: 0,
                entries: 0,
                covered_ns: 0,
                in_hw_gaps: 0,
                sender: None,
            });
            if row.sender.is_none() && Class::from_raw(r.primary.class) == Class::Ipi {
                row.sender = r.record().sender;
            }
            row.entries += 1;
            row.covered_ns += e0.saturating_sub(s0);
            if !seen_here.contains(&n) {
                row.gaps += 1;
                if a.hw {
                    row.in_hw_gaps += 1;
                }
                seen_here.push(n);
            }
        }
        let name = match (a.hw, a.primary) {
            (false, Some(p)) => {
                attributed += 1;
                Named::of(&records[order[p]].cause())
            }
            _ if cx.records_lost
                && runq_take(cx.runq, &mut budget, g.0, g.0 + g.1, a.hw_ns, true) =>
            {
                attributed += 1;
                Named::runqueue()
            }
            _ => Named::hw(steal),
        };
        noise += g.1;
        hw_ns += a.hw_ns;
        if sec >= timeline.len() {
            timeline.resize_with(sec + 1, Second::default);
            for (i, t) in timeline.iter_mut().enumerate() {
                t.second = i as u64;
            }
        }
        let t = &mut timeline[sec];
        t.gaps += 1;
        t.noise_ns += g.1;
        t.hw_ns += a.hw_ns;
        t.max_ns = t.max_ns.max(g.1);
        let row = rows.entry(name.clone()).or_insert(CauseRow {
            cause: name.clone(),
            count: 0,
            total_ns: 0,
            max_ns: 0,
        });
        row.count += 1;
        row.total_ns += g.1;
        row.max_ns = row.max_ns.max(g.1);
        names.push(name);
    }
    let mut causes: Vec<CauseRow> = rows.into_values().collect();
    causes.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.cause.cmp(&b.cause)));
    let mut covered: Vec<CoveredRow> = covered.into_values().collect();
    covered.sort_by(|a, b| b.covered_ns.cmp(&a.covered_ns).then(a.cause.cmp(&b.cause)));
    let mut idx: Vec<usize> = (0..gaps.len()).collect();
    idx.sort_by(|&a, &b| gaps[b].1.cmp(&gaps[a].1).then(a.cmp(&b)));
    let worst_idx: Vec<usize> = idx.iter().copied().take(cx.worst).collect();
    let mut mark_idx: Vec<usize> = idx.into_iter().take(MARKS_MAX).collect();
    mark_idx.sort_by_key(|&i| gaps[i].0);
    let rep = CpuReport {
        cpu,
        loops: 0,
        min_ns: 0,
        avg_ns: 0.0,
        max_ns: 0,
        percentiles: Percentiles::default(),
        availability_pct: if duration_ns == 0 {
            100.0
        } else {
            100.0 * (1.0 - noise.min(duration_ns) as f64 / duration_ns as f64)
        },
        gaps: gaps.len() as u64,
        gaps_lost: 0,
        noise_ns: noise,
        attributed,
        attributed_pct: if gaps.is_empty() {
            100.0
        } else {
            100.0 * attributed as f64 / gaps.len() as f64
        },
        hw_ns,
        causes,
        covered,
        worst: Vec::new(),
        before_stop: Vec::new(),
        injected: None,
        timeline,
        histogram: Histogram::new(1000, 1),
        latency: Vec::new(),
        marks: Vec::new(),
        recall: BTreeMap::new(),
    };
    let mut rep = rep;
    rep.worst = worst_idx
        .iter()
        .map(|&i| gap(gaps[i], &attr[i], &names[i], records, &order, cx))
        .collect();
    rep.marks = mark_idx
        .iter()
        .map(|&i| {
            let primary = attr[i]
                .primary
                .filter(|_| !attr[i].hw)
                .map(|p| records[order[p]].record());
            Mark {
                at_s: gaps[i].0.saturating_sub(cx.t0_ns) as f64 / 1e9,
                duration_ns: gaps[i].1,
                cause: names[i].clone(),
                chain: primary
                    .as_ref()
                    .map(|r| r.chain.clone())
                    .unwrap_or_default(),
                sender: primary.and_then(|r| r.sender).map(|mut s| {
                    s.stack.clear();
                    s
                }),
            }
        })
        .collect();
    (rep, attr, names, order)
}

fn gap(
    g: (u64, u64),
    a: &Attribution,
    name: &Named,
    records: &[Seen],
    order: &[usize],
    cx: &Context,
) -> Gap {
    let primary = a
        .primary
        .filter(|_| !a.hw)
        .map(|p| records[order[p]].record());
    Gap {
        start_ns: g.0,
        at_s: g.0.saturating_sub(cx.t0_ns) as f64 / 1e9,
        duration_ns: g.1,
        cause: name.clone(),
        kernel_ns: a.kernel_ns,
        hw_ns: a.hw_ns,
        chain: primary
            .as_ref()
            .map(|r| r.chain.clone())
            .unwrap_or_default(),
        sender: primary.and_then(|r| r.sender),
        entries: a
            .entries
            .iter()
            .map(|&e| {
                let r = &records[order[e]];
                Entry {
                    cause: Named::of(&r.cause()),
                    start_ns: r.start_ns,
                    duration_ns: r.duration_ns,
                    tid: r.tid,
                    comm: isol_capture::record::comm(&r.comm),
                    sender: (Class::from_raw(r.primary.class) == Class::Ipi)
                        .then(|| r.record().sender)
                        .flatten(),
                }
            })
            .collect(),
    }
}

/// One CPU of a synthetic run.
pub fn synthetic_cpu(o: &Outcome, records: &[Seen], cx: &Context) -> CpuReport {
    let c = &o.clock;
    let gaps: Vec<(u64, u64)> = o.gaps.iter().map(|&(s, l)| (c.mono(s), c.ns(l))).collect();
    let run_ns = c.ns(o.end_tsc.saturating_sub(o.start_tsc));
    let (mut rep, attr, names, order) = analyse(o.cpu, &gaps, records, cx, run_ns);
    rep.loops = o.loops;
    rep.min_ns = c.ns(o.min_ticks);
    rep.max_ns = c.ns(o.max_ticks);
    rep.avg_ns = if o.loops == 0 {
        0.0
    } else {
        c.ns(o.sum_ticks) as f64 / o.loops as f64
    };
    rep.percentiles = if o.fine.total() > 0 {
        fine_percentiles(&o.fine.to_hdr(|t| c.ns(t)))
    } else {
        percentiles(&o.histogram)
    };
    rep.histogram = o.histogram.clone();
    // Each log-linear bucket at its middle value, as the percentiles.
    rep.latency = log_bins(
        o.fine
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| {
                let (low, width) = crate::histogram::loglin_range(i);
                (c.ns(low.saturating_add(width / 2)), n)
            }),
    );
    rep.gaps_lost = o.lost;
    for (t, m) in rep.timeline.iter_mut().zip(&o.second_max) {
        t.max_ns = t.max_ns.max(c.ns(*m));
    }
    if let Some(s) = o.stopped_by {
        let end = gaps[s].0;
        rep.before_stop = (0..=s)
            .filter(|&i| gaps[i].0 + 100_000_000 >= end)
            .map(|i| gap(gaps[i], &attr[i], &names[i], records, &order, cx))
            .collect();
    }
    if let Some(inj) = o.injected {
        if let Some(i) = o.gaps.iter().position(|&g| g == inj) {
            rep.injected = Some(gap(gaps[i], &attr[i], &names[i], records, &order, cx));
        }
    }
    rep.recall = recall(&gaps, &attr, records, &order, cx);
    rep
}

/// Per injected kind: [`Recall`]. `gaps` in time order (they do not
/// overlap, so their ends are ordered too).
fn recall(
    gaps: &[(u64, u64)],
    attr: &[Attribution],
    records: &[Seen],
    order: &[usize],
    cx: &Context,
) -> BTreeMap<&'static str, Recall> {
    let mut out = BTreeMap::new();
    let Some(kinds) = cx.inject else {
        return out;
    };
    let tol = cx.params.tolerance_ns;
    for &k in kinds {
        let mut row = Recall {
            expected: k.expected().to_vec(),
            injected: 0,
            preempted: 0,
            in_gap: 0,
            named: 0,
            no_entry: 0,
            recall: None,
            primary: 0,
            misses: Vec::new(),
        };
        for j in cx.injections.iter().filter(|j| j.kind == k) {
            row.injected += 1;
            let (lo, hi) = (j.before_ns.saturating_sub(tol), j.after_ns + tol);
            // The slack is for an IPI, sent from another CPU. A timer or
            // fault of the loop itself is in the gap that holds its window
            // or in none (it cost less than the threshold): a gap beginning
            // just after it is the next event's.
            let (glo, ghi) = if k.remote() {
                (lo, hi)
            } else {
                (j.before_ns, j.after_ns.max(j.before_ns + 1))
            };
            let first = gaps.partition_point(|g| g.0 + g.1 <= glo);
            let hit: Vec<usize> = (first..gaps.len())
                .take_while(|&i| gaps[i].0 < ghi)
                .collect();
            if hit.is_empty() {
                continue;
            }
            // An entry of gap i that began before the loop stopped is not
            // in it: another task's wait, or a record with a broken start.
            let inside = |i: usize, r: &RawRecord| {
                r.start_ns + tol >= gaps[i].0 && r.start_ns <= gaps[i].0 + gaps[i].1 + tol
            };
            // The loop was switched out during the window: the event may
            // not have reached it (a TLB flush or membarrier skips a CPU
            // not running isol; an IPI or timer is then handled in the
            // other task), and such a gap is the preemption's. Decided
            // before looking for the name, so it cannot flatter the recall.
            // So was it when the CPU went idle in a gap of the window (an
            // entry of the idle task, pid 0, anywhere in that gap): the
            // loop had blocked (a page fault waiting for the mmap lock an
            // injector held), and a flush or a signal then needs no IPI.
            // The IPI that ends such a wait may be handled after the
            // window: the injector's munmap wakes the loop as it drops the
            // lock, and under TCG the wake-up reaches the idle CPU later
            // (a CI run on 6.1: 0.6 ms after munmap returned).
            let preempted = hit.iter().any(|&i| {
                attr[i].entries.iter().any(|&e| {
                    let r = &records[order[e]];
                    inside(i, r)
                        && (r.tid == 0
                            || (Class::from_raw(r.primary.class) == Class::Sched
                                && r.start_ns <= hi
                                && r.start_ns + r.duration_ns >= lo))
                })
            });
            if preempted {
                row.preempted += 1;
                continue;
            }
            row.in_gap += 1;
            // (gap, entry) pairs naming it.
            let naming: Vec<(usize, usize)> = hit
                .iter()
                .flat_map(|&i| attr[i].entries.iter().map(move |&e| (i, e)))
                .filter(|&(i, e)| {
                    let r = &records[order[e]];
                    // Running at some time in the window: a timer's
                    // interrupt may start (for another timer) before it
                    // expires. Or, for a timer, anywhere in the gap in
                    // which its handler ran: the signal came in that gap,
                    // and the window's start is only inferred from the
                    // period (under TCG the loop's clock drifts from the
                    // kernel's by milliseconds).
                    let handled_in = gaps[i].0 <= j.after_ns && j.after_ns < gaps[i].0 + gaps[i].1;
                    inside(i, r)
                        && r.start_ns <= hi
                        && (r.start_ns + r.duration_ns >= lo
                            || (k == crate::inject::Kind::Timer && handled_in))
                        && crate::inject::names(k, &r.record())
                })
                .collect();
            if naming.is_empty()
                && hit.iter().all(|&i| {
                    attr[i]
                        .entries
                        .iter()
                        .all(|&e| !inside(i, &records[order[e]]))
                })
            {
                row.no_entry += 1;
            }
            if naming.is_empty() && row.misses.len() < super::MAX_MISSES {
                row.misses
                    .push(miss(j, &hit, gaps, attr, records, order, inside));
            }
            if !naming.is_empty() {
                row.named += 1;
                if naming
                    .iter()
                    .any(|&(i, e)| !attr[i].hw && attr[i].primary == Some(e))
                {
                    row.primary += 1;
                }
            }
        }
        row.recall = (row.in_gap > 0).then(|| row.named as f64 / row.in_gap as f64);
        out.insert(k.name(), row);
    }
    out
}

/// A judged miss as the JSON shows it.
fn miss(
    j: &crate::inject::Injection,
    hit: &[usize],
    gaps: &[(u64, u64)],
    attr: &[Attribution],
    records: &[Seen],
    order: &[usize],
    inside: impl Fn(usize, &RawRecord) -> bool,
) -> super::Miss {
    let gaps = hit
        .iter()
        .map(|&i| super::MissGap {
            start_ns: gaps[i].0,
            duration_ns: gaps[i].1,
            entries: attr[i]
                .entries
                .iter()
                .map(|&e| {
                    let r = &records[order[e]];
                    let rec = r.record();
                    super::MissEntry {
                        start_ns: r.start_ns,
                        duration_ns: r.duration_ns,
                        tid: r.tid,
                        chain: rec
                            .chain
                            .iter()
                            .map(|c| format!("{}/{} {}", c.class.name(), c.kind.name(), c.detail))
                            .collect(),
                        cause: rec.cause,
                        sender: rec.sender,
                        other_sender: rec.other_sender,
                        inside: inside(i, r),
                    }
                })
                .collect(),
        })
        .collect();
    super::Miss {
        before_ns: j.before_ns,
        after_ns: j.after_ns,
        gaps,
    }
}

/// One CPU of a `--pid` run: every interruption of the task is a gap.
pub fn pid_cpu(
    cpu: u32,
    records: &[Seen],
    cx: &Context,
    duration_ns: u64,
    width_ns: u64,
    buckets: usize,
) -> CpuReport {
    let gaps: Vec<(u64, u64)> = records
        .iter()
        .map(|r| (r.start_ns, r.duration_ns))
        .collect();
    let mut sorted: Vec<(u64, u64)> = gaps.clone();
    sorted.sort();
    let (mut rep, ..) = analyse(cpu, &sorted, records, cx, duration_ns);
    let mut h = Histogram::new(width_ns, buckets);
    for g in &gaps {
        h.add(g.1);
    }
    rep.min_ns = gaps.iter().map(|g| g.1).min().unwrap_or(0);
    rep.max_ns = gaps.iter().map(|g| g.1).max().unwrap_or(0);
    rep.avg_ns = if gaps.is_empty() {
        0.0
    } else {
        rep.noise_ns as f64 / gaps.len() as f64
    };
    rep.percentiles = percentiles(&h);
    rep.histogram = h;
    rep.latency = log_bins(gaps.iter().map(|g| (g.1, 1)));
    rep
}
