//! One measurement: pin isol to the housekeeping CPUs, start the capture
//! engine (before the samplers: attaching patches kernel text and sends
//! IPIs to every CPU), start one sampler per measured CPU, drain records
//! every few ms from the housekeeping CPU, then build the report. In
//! `--pid` mode there is no sampler: the task's interruptions are the gaps.

use crate::attribute::Params;
use crate::clock;
use crate::inject::{self, Injection, Kind};
use crate::report::{self, CaptureInfo, Context, Report, Stop};
use crate::sampler::{self, Shared};
use anyhow::{bail, Context as _, Result};
use isol_capture::record::RawRecord;
use isol_capture::threshold::{run_actions, Action, Event, Hit, Ring};
use isol_capture::{Capture, Options};
use isol_cpulist::CpuSet;
use isol_system::{Root, SystemModel};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum Mode {
    /// A TSC loop on each CPU; `sampler.cpu` is set per CPU.
    Synthetic {
        cpus: CpuSet,
        sampler: sampler::Config,
    },
    /// The interruptions of a running process, from the capture alone.
    Pid {
        pid: u32,
        bucket_width_ns: u64,
        buckets: usize,
    },
}

#[derive(Debug, Clone)]
pub enum Attribution {
    /// Fail if the capture engine cannot start.
    Required,
    /// Measure without causes (and say so) if it cannot.
    IfPossible,
    Off,
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub mode: Mode,
    pub duration: Option<Duration>,
    pub attribution: Attribution,
    pub params: Params,
    pub worst: usize,
    pub ring_bytes: u32,
    pub drain_ms: u64,
    /// rtla's --on-threshold: actions for a gap above the sampler's
    /// `stop_above_ns` (synthetic mode only).
    pub on_threshold: Option<OnThreshold>,
    /// --inject: known interference, and the recall of its causes.
    pub inject: Option<crate::inject::Plan>,
}

#[derive(Debug, Clone)]
pub struct OnThreshold {
    pub actions: Vec<Action>,
    /// What the `trace` action writes: this much of the CPU's past.
    pub window_ns: u64,
    /// Bound of the trace ring per CPU.
    pub ring_bytes_per_cpu: usize,
}

impl OnThreshold {
    fn stops(&self) -> bool {
        !self.actions.contains(&Action::Continue)
    }
}

/// The gap's mapping from TSC to monotonic time may be off by a few µs:
/// the trace takes records that end this long after the gap.
const GAP_SLACK_NS: u64 = 20_000;

/// Live state for a progress line, once a second.
#[derive(Debug, Clone)]
pub struct Progress {
    pub elapsed_s: f64,
    pub duration_s: Option<f64>,
    /// (cpu, loops, max ns, gaps)
    pub cpus: Vec<(u32, u64, u64, usize)>,
    pub records: u64,
}

/// Run isol's own thread on the CPUs not measured.
pub fn pin_away_from(measured: &CpuSet) -> Result<CpuSet> {
    isol_system::affinity::pin_away_from(measured).map_err(anyhow::Error::msg)
}

pub fn virtualized() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| crate::arch::cpuinfo_says_guest(&s))
        .unwrap_or(false)
}

/// Steal time per CPU from /proc/stat, ns.
fn steal() -> Vec<(u32, u64)> {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let cpu: u32 = w.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = w.filter_map(|x| x.parse().ok()).collect();
            Some((cpu, v.get(7).copied().unwrap_or(0) * 1_000_000_000 / hz))
        })
        .collect()
}

struct Drainer {
    cap: Option<Capture>,
    records: Vec<RawRecord>,
    total: u64,
    /// The last moments of each CPU, for the `trace` action.
    ring: Option<Ring<RawRecord>>,
    /// The loops' tids: a task a loop displaced is not the loop's
    /// interruption (its record spans the loop's own running time and
    /// would cover every gap of it), so it is left out.
    loops: Vec<u32>,
}

impl Drainer {
    fn drain(&mut self, keep: &dyn Fn(&RawRecord) -> bool) {
        if let Some(c) = self.cap.as_mut() {
            let raws = c.drain_raw();
            self.total += raws.len() as u64;
            let loops = &self.loops;
            let by_a_loop = |r: &RawRecord| {
                r.primary.class == isol_capture::Class::Sched as u8
                    && r.primary.kind == isol_capture::Kind::Preempt as u8
                    && loops.contains(&r.primary.arg)
            };
            for r in raws.into_iter().filter(|r| keep(r) && !by_a_loop(r)) {
                if let Some(ring) = self.ring.as_mut() {
                    ring.push(r);
                }
                self.records.push(r);
            }
        }
    }
}

/// Runs the actions for a gap on `cpu` of `[start_ns, start_ns + len_ns)`
/// (monotonic). The cause is what the capture saw inside it, `hw` if
/// nothing (unknown without the capture); the trace is the CPU's window up to the gap, then the gap.
fn gap_actions(dr: &Drainer, on: &OnThreshold, cpu: u32, start_ns: u64, len_ns: u64) -> Hit {
    let end = start_ns + len_ns;
    let inside: Vec<RawRecord> = dr
        .records
        .iter()
        .rev()
        .take_while(|r| r.start_ns + on.window_ns + GAP_SLACK_NS >= start_ns)
        .filter(|r| r.cpu == cpu && r.start_ns < end && r.start_ns + r.duration_ns > start_ns)
        .copied()
        .collect();
    // The distinct causes inside, oldest first: a preempted loop can hold
    // hundreds of records.
    let cause = match dr.cap.as_ref() {
        Some(c) if !inside.is_empty() => {
            let mut names: Vec<String> = Vec::new();
            for r in inside.iter().rev() {
                let k = c.resolver.cause(&r.primary);
                let n = format!("{} {} {}", k.class.name(), k.kind.name(), k.detail);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let more = names.len().saturating_sub(4);
            names.truncate(4);
            let mut s = names.join(", ");
            if more > 0 {
                s += &format!(" and {more} more");
            }
            s
        }
        Some(_) => "hw".to_string(),
        None => "unknown (no attribution)".to_string(),
    };
    let event = Event {
        kind: "gap",
        cpu,
        start_ns,
        duration_ns: len_ns,
        cause,
    };
    let mut lines = || {
        let mut out: Vec<String> = match (dr.ring.as_ref(), dr.cap.as_ref()) {
            (Some(ring), Some(c)) => ring
                .window(cpu, end + GAP_SLACK_NS)
                .iter()
                .filter_map(|r| {
                    let mut v = serde_json::to_value(c.resolve(r)).ok()?;
                    v["type"] = "interruption".into();
                    Some(v.to_string())
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut gap = serde_json::to_value(&event).unwrap_or_default();
        gap["type"] = "gap".into();
        gap["crossed"] = true.into();
        out.push(gap.to_string());
        out
    };
    run_actions(&on.actions, &event, &mut lines)
}

pub fn run(
    o: &SessionOptions,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report> {
    let (cpus, pid) = match &o.mode {
        Mode::Synthetic { cpus, .. } => (cpus.clone(), None),
        Mode::Pid { pid, .. } => (CpuSet::new(), Some(*pid)),
    };
    if pid.is_none() {
        if cpus.is_empty() {
            bail!("no CPU to measure");
        }
        let online = SystemModel::probe(&Root::default()).cpus.online;
        let off = cpus.difference(&online);
        if !off.is_empty() {
            bail!("CPU {off} is not online (online: {online})");
        }
        pin_away_from(&cpus)?;
    }
    let mut notes = Vec::new();
    let cap = match o.attribution {
        Attribution::Off => None,
        _ => match Capture::start(Options {
            cpus: cpus.clone(),
            pid,
            syscalls: false,
            strict_syscalls: false,
            ring_bytes: o.ring_bytes,
            // A gap's sender is reported with its stack, and the gaps are
            // few: no sampling.
            all_stacks: true,
        }) {
            Ok(c) => Some(c),
            Err(e) if matches!(o.attribution, Attribution::IfPossible) => {
                notes.push(format!(
                    "no attribution: the capture engine could not start ({e:#}); gaps are measured but not explained (`isol doctor` says what is missing)"
                ));
                None
            }
            Err(e) => return Err(e.context("starting the capture engine")),
        },
    };
    if pid.is_some() && cap.is_none() {
        bail!("--pid needs the capture engine");
    }
    let attached = cap.as_ref().map(|c| c.attached.len()).unwrap_or(0);
    let on = match &o.mode {
        Mode::Synthetic { sampler, .. } => o.on_threshold.clone().zip(sampler.stop_above_ns),
        Mode::Pid { .. } => None,
    };
    let traces = on
        .as_ref()
        .is_some_and(|(on, _)| on.actions.iter().any(|a| matches!(a, Action::Trace { .. })));
    let mut dr = Drainer {
        cap,
        records: Vec::new(),
        total: 0,
        loops: Vec::new(),
        ring: on
            .as_ref()
            .filter(|_| traces)
            .map(|(on, _)| Ring::with_bytes(on.window_ns, on.ring_bytes_per_cpu)),
    };
    let keep_cpus = cpus.clone();
    let keep: Box<dyn Fn(&RawRecord) -> bool> = match pid {
        Some(p) => Box::new(move |r: &RawRecord| r.tgid == p),
        None => Box::new(move |r: &RawRecord| keep_cpus.contains(r.cpu)),
    };

    // Samplers (synthetic mode).
    let mut threads = Vec::new();
    if let Mode::Synthetic { sampler: base, .. } = &o.mode {
        for cpu in cpus.iter() {
            let mut cfg = base.clone();
            cfg.cpu = cpu;
            // With `continue` the loop goes on past the threshold; the
            // reader finds the gaps above it and runs the actions.
            if on.as_ref().is_some_and(|(on, _)| !on.stops()) {
                cfg.stop_above_ns = None;
            }
            cfg.duration_ns = o.duration.map(|d| d.as_nanos() as u64);
            if let Some(p) = &o.inject {
                let has = |k| p.kinds.contains(&k);
                cfg.inject_timer_ns = has(Kind::Timer).then_some(p.every_ns);
                cfg.inject_fault_ns = has(Kind::Fault).then_some(p.every_ns);
                cfg.slot = threads.len();
            }
            let sh = Shared::new(cfg.max_gaps);
            let sh2 = sh.clone();
            let h = std::thread::Builder::new()
                .name(format!("isol-sampler{cpu}"))
                .spawn(move || sampler::run(&cfg, &sh2))?;
            threads.push((cpu, sh, h));
        }
    }
    // The IPI kinds, from a thread on isol's (housekeeping) CPUs, once
    // every loop runs.
    let inject_stop = std::sync::Arc::new(AtomicBool::new(false));
    let injector = o
        .inject
        .as_ref()
        .filter(|p| p.kinds.iter().any(|k| k.remote()))
        .map(|p| {
            let (p, stop2) = (p.clone(), inject_stop.clone());
            let targets: Vec<u32> = cpus.iter().collect();
            let shs: Vec<_> = threads.iter().map(|t| t.1.clone()).collect();
            std::thread::Builder::new()
                .name("isol-inject".into())
                .spawn(move || {
                    while !shs.iter().all(|s| {
                        s.running.load(Ordering::Acquire) || s.done.load(Ordering::Acquire)
                    }) {
                        if stop2.load(Ordering::Relaxed) {
                            return (Vec::new(), Vec::new());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    inject::run_remote(&p, &targets, &stop2)
                })
        })
        .transpose()?;
    let wall0 = Instant::now();
    let t0_ns = isol_system::clock::monotonic_ns();
    let steal0 = steal();
    let mut steal_secs: Vec<Vec<(u32, u64)>> = Vec::new();
    let mut last_steal = steal0.clone();
    let mut next_sec = wall0 + Duration::from_secs(1);
    let tick = Duration::from_millis(o.drain_ms.clamp(1, 1000));
    let end = o.duration.map(|d| wall0 + d + Duration::from_millis(100));
    let mut interrupted = false;
    // Per sampler: (mono ns, cumulative run-queue wait ns).
    let mut runq: Vec<Vec<(u64, u64)>> = vec![Vec::new(); threads.len()];
    let sample_runq = |runq: &mut Vec<Vec<(u64, u64)>>| {
        for (i, (_, sh, _)) in threads.iter().enumerate() {
            let tid = sh.tid.load(Ordering::Relaxed);
            if tid == 0 || !sh.running.load(Ordering::Acquire) {
                continue;
            }
            let now = isol_system::clock::monotonic_ns();
            if let Some(w) = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            {
                runq[i].push((now, w));
            }
        }
    };
    // Per sampler, the gaps already looked at; then the crossings.
    let mut seen = vec![0usize; threads.len()];
    let mut hits: Vec<Hit> = Vec::new();
    let mut stopped_on_threshold = false;
    // Gaps published before a drain have their records in that drain: the
    // kernel emits a record before the loop resumes and publishes the gap.
    let mut missed = 0u64;
    let crossings = |dr: &Drainer,
                     published: &[usize],
                     seen: &mut [usize],
                     hits: &mut Vec<Hit>,
                     stopped: &mut bool,
                     missed: &mut u64| {
        let Some((on, above)) = on.as_ref() else {
            return;
        };
        for (i, (cpu, sh, _)) in threads.iter().enumerate() {
            if *stopped || !sh.running.load(Ordering::Acquire) {
                continue;
            }
            // Refit from the loop's origin to now: exact at both ends.
            let c = clock::Clock::fit(
                (
                    sh.clock_tsc0.load(Ordering::Relaxed),
                    sh.clock_mono0.load(Ordering::Relaxed),
                ),
                clock::pair(),
            );
            while seen[i] < published[i].min(sh.ngaps.load(Ordering::Acquire)) {
                let (s, l) = sh.gap(seen[i]);
                seen[i] += 1;
                let len = c.ns(l);
                if len > *above {
                    // With `continue`, actions never hold the end of the run
                    // (a flood of crossings): later ones are counted. Without
                    // it one crossing runs them, even the gap that ended it.
                    if !on.stops()
                        && (stop.load(Ordering::Relaxed)
                            || end.is_some_and(|e| Instant::now() >= e))
                    {
                        *missed += 1;
                        continue;
                    }
                    hits.push(gap_actions(dr, on, *cpu, c.mono(s), len));
                    if on.stops() {
                        *stopped = true;
                        break;
                    }
                }
            }
        }
    };
    // Set by each loop before it runs: known before any record it causes.
    let loop_tids = |threads: &[(u32, std::sync::Arc<Shared>, _)]| -> Vec<u32> {
        threads
            .iter()
            .map(|(_, sh, _)| sh.tid.load(Ordering::Relaxed))
            .filter(|&t| t != 0)
            .collect()
    };
    let published = |threads: &[(u32, std::sync::Arc<Shared>, _)]| -> Vec<usize> {
        threads
            .iter()
            .map(|(_, sh, _)| sh.ngaps.load(Ordering::Acquire))
            .collect()
    };
    loop {
        std::thread::sleep(tick);
        sample_runq(&mut runq);
        let p = published(&threads);
        dr.loops = loop_tids(&threads);
        dr.drain(&*keep);
        crossings(
            &dr,
            &p,
            &mut seen,
            &mut hits,
            &mut stopped_on_threshold,
            &mut missed,
        );
        let user_stop = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        let samplers_done = !threads.is_empty()
            && threads
                .iter()
                .any(|(_, sh, _)| sh.done.load(Ordering::Acquire));
        let pid_gone = pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        if now >= next_sec {
            next_sec += Duration::from_secs(1);
            let s = steal();
            steal_secs.push(
                s.iter()
                    .map(|&(c, v)| {
                        let before = last_steal
                            .iter()
                            .find(|x| x.0 == c)
                            .map(|x| x.1)
                            .unwrap_or(v);
                        (c, v.saturating_sub(before))
                    })
                    .collect(),
            );
            last_steal = s;
            progress(&Progress {
                elapsed_s: wall0.elapsed().as_secs_f64(),
                duration_s: o.duration.map(|d| d.as_secs_f64()),
                cpus: threads
                    .iter()
                    .map(|(c, sh, _)| {
                        let hz = sh.hz();
                        let max = if hz > 0.0 {
                            (sh.max_ticks.load(Ordering::Relaxed) as f64 * 1e9 / hz) as u64
                        } else {
                            0
                        };
                        (
                            *c,
                            sh.loops.load(Ordering::Relaxed),
                            max,
                            sh.ngaps.load(Ordering::Acquire),
                        )
                    })
                    .collect(),
                records: dr.total,
            });
        }
        if user_stop {
            interrupted = true;
        }
        if user_stop
            || samplers_done
            || stopped_on_threshold
            || pid_gone
            || end.is_some_and(|e| now >= e)
        {
            break;
        }
    }
    // Nothing is injected once a loop may have ended.
    inject_stop.store(true, Ordering::Relaxed);
    let mut injections = Vec::new();
    if let Some(h) = injector {
        let (v, n) = h
            .join()
            .map_err(|_| anyhow::anyhow!("the injector panicked"))?;
        injections = v;
        notes.extend(n);
    }
    // One sampler stopping (--stop-above, error) stops them all.
    for (_, sh, _) in &threads {
        sh.stop.store(true, Ordering::Relaxed);
    }
    sample_runq(&mut runq);
    if on.is_some() && !stopped_on_threshold {
        // The gap that stopped a sampler may have come after the last
        // look: once they have all ended, look at their last gaps.
        let give_up = Instant::now() + Duration::from_secs(5);
        while !threads.iter().all(|t| t.2.is_finished()) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(o.drain_ms.clamp(1, 200)));
        let p = published(&threads);
        dr.loops = loop_tids(&threads);
        dr.drain(&*keep);
        crossings(
            &dr,
            &p,
            &mut seen,
            &mut hits,
            &mut stopped_on_threshold,
            &mut missed,
        );
    }
    let mut outcomes = Vec::new();
    for (cpu, _, h) in threads {
        let out = h
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler on CPU {cpu} panicked"))?
            .with_context(|| format!("sampler on CPU {cpu}"))?;
        injections.extend(out.injections.iter().copied());
        for n in &out.inject_notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        outcomes.push(out);
    }
    // Records of the last gaps may still sit in the ring buffer.
    std::thread::sleep(Duration::from_millis(o.drain_ms.clamp(1, 200)));
    dr.drain(&*keep);
    let duration_ns = wall0.elapsed().as_nanos() as u64;

    let steal_of = |cpu: u32| -> Vec<u64> {
        steal_secs
            .iter()
            .map(|s| s.iter().find(|x| x.0 == cpu).map(|x| x.1).unwrap_or(0))
            .collect()
    };
    let cap = dr.cap.as_ref();
    let records_lost = cap.is_some_and(|c| c.drops().ringbuf > 0);
    // A CPU's records, each with the capture that names it (none without
    // one: then nothing was recorded).
    let seen = |cpu: u32| -> Vec<report::Seen> {
        let Some(c) = cap else {
            return Vec::new();
        };
        dr.records
            .iter()
            .filter(|r| r.cpu == cpu)
            .map(|&raw| report::Seen { raw, names: c })
            .collect()
    };
    let mut per_cpu = Vec::new();
    let mut stopped = None;
    let threshold_ns;
    let mut tsc_hz = None;
    match &o.mode {
        Mode::Synthetic { sampler: base, .. } => {
            threshold_ns = base.threshold_ns;
            for (i, out) in outcomes.iter().enumerate() {
                let steal = steal_of(out.cpu);
                let t0 = out.clock.mono(out.start_tsc);
                let mine: Vec<Injection> = injections
                    .iter()
                    .filter(|j| j.cpu == out.cpu)
                    .copied()
                    .collect();
                let cx = Context {
                    injections: &mine,
                    inject: o.inject.as_ref().map(|p| &p.kinds[..]),
                    params: o.params,
                    worst: o.worst,
                    threshold_ns,
                    t0_ns: t0,
                    steal: &steal,
                    runq: &runq[i],
                    records_lost,
                };
                let recs = seen(out.cpu);
                if let Some(i) = out.stopped_by {
                    let (s, l) = out.gaps[i];
                    stopped = Some(Stop {
                        cpu: out.cpu,
                        gap_ns: out.clock.ns(l),
                        at_s: out.clock.ns(s.saturating_sub(out.start_tsc)) as f64 / 1e9,
                    });
                }
                tsc_hz = Some(out.clock.hz);
                per_cpu.push(report::synthetic_cpu(out, &recs, &cx));
            }
        }
        Mode::Pid {
            bucket_width_ns,
            buckets,
            ..
        } => {
            threshold_ns = 0;
            let mut cpus_seen: Vec<u32> = dr.records.iter().map(|r| r.cpu).collect();
            cpus_seen.sort_unstable();
            cpus_seen.dedup();
            for cpu in cpus_seen {
                let steal = steal_of(cpu);
                let cx = Context {
                    injections: &[],
                    inject: None,
                    params: o.params,
                    worst: o.worst,
                    threshold_ns,
                    t0_ns,
                    steal: &steal,
                    runq: &[],
                    records_lost,
                };
                let recs = seen(cpu);
                per_cpu.push(report::pid_cpu(
                    cpu,
                    &recs,
                    &cx,
                    duration_ns,
                    *bucket_width_ns,
                    *buckets,
                ));
            }
        }
    }
    let capture = dr.cap.as_ref().map(|c| CaptureInfo {
        attached,
        skipped: c.skipped.clone(),
        records: dr.total,
        drops: c.drops(),
    });
    let report_cpus = match pid {
        Some(_) => per_cpu.iter().map(|c| c.cpu).collect(),
        None => cpus,
    };
    Ok(Report {
        schema: report::SCHEMA,
        mode: if pid.is_some() { "pid" } else { "synthetic" },
        pid,
        cpus: report_cpus,
        duration_s: duration_ns as f64 / 1e9,
        threshold_ns,
        interrupted,
        stopped,
        tsc_hz,
        virtualized: virtualized(),
        attribution: dr.cap.is_some(),
        capture,
        per_cpu,
        notes,
        on_threshold: on.map(|(on, above)| isol_capture::threshold::Summary {
            threshold_ns: above,
            stopped: stopped_on_threshold,
            hits,
            missed,
            trace_window_ms: on.window_ns / 1_000_000,
            trace_dropped: dr.ring.as_ref().map_or(0, |r| r.dropped()),
        }),
    })
}
