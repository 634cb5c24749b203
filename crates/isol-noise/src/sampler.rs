//! The measuring loop (oslat class): one thread per CPU reads the TSC in
//! a tight loop; every delta goes into a histogram, every delta above the
//! threshold is a gap, stored with its start into memory allocated and
//! touched before the loop starts (no page fault inside it). Gaps are
//! published as they happen so a reader on a housekeeping CPU can show
//! progress and keep a partial report if the run is cut short.

use crate::clock::{self, Clock};
use crate::histogram::{loglin_index, Histogram, LogLinear};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Config {
    pub cpu: u32,
    /// Loop length; None runs until `stop`.
    pub duration_ns: Option<u64>,
    /// A delta above this is a gap.
    pub threshold_ns: u64,
    /// Stop the run at the first gap above this (its trace is kept).
    pub stop_above_ns: Option<u64>,
    pub bucket_width_ns: u64,
    pub buckets: usize,
    /// Gaps kept; more are counted as lost.
    pub max_gaps: usize,
    /// SCHED_FIFO priority for the loop (None: the caller's policy).
    pub fifo_priority: Option<i32>,
    /// Test hook: stall (busy-wait on the TSC, no kernel entry) for
    /// `.1` ns once `.0` ns into the run. The gap it leaves has no kernel
    /// record: attribution must not blame the kernel for it.
    pub inject_stall: Option<(u64, u64)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cpu: 0,
            duration_ns: Some(10_000_000_000),
            threshold_ns: 5_000,
            stop_above_ns: None,
            bucket_width_ns: 1_000,
            buckets: 32,
            max_gaps: 200_000,
            fifo_priority: None,
            inject_stall: None,
        }
    }
}

/// State shared with the reader: live counters and the gap buffer.
pub struct Shared {
    pub stop: AtomicBool,
    /// The loop runs (calibrated, recording).
    pub running: AtomicBool,
    pub done: AtomicBool,
    pub loops: AtomicU64,
    pub max_ticks: AtomicU64,
    /// Gaps published so far (entries below are complete).
    pub ngaps: AtomicUsize,
    pub lost: AtomicU64,
    gap_start: Box<[AtomicU64]>,
    gap_ticks: Box<[AtomicU64]>,
    /// Calibration, set before `running`.
    pub hz_bits: AtomicU64,
    /// The calibration's (TSC, monotonic ns) origin, set before `running`:
    /// the reader dates gaps while the loop runs (--on-threshold).
    pub clock_tsc0: AtomicU64,
    pub clock_mono0: AtomicU64,
    /// The sampler thread's tid (for its schedstat), set before `running`.
    pub tid: AtomicU32,
}

impl Shared {
    pub fn new(max_gaps: usize) -> Arc<Shared> {
        // Allocated and written here, so the pages are present before the
        // loop touches them.
        let mk = || {
            (0..max_gaps.max(1))
                .map(|_| AtomicU64::new(0))
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            running: AtomicBool::new(false),
            done: AtomicBool::new(false),
            loops: AtomicU64::new(0),
            max_ticks: AtomicU64::new(0),
            ngaps: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            gap_start: mk(),
            gap_ticks: mk(),
            hz_bits: AtomicU64::new(0),
            clock_tsc0: AtomicU64::new(0),
            clock_mono0: AtomicU64::new(0),
            tid: AtomicU32::new(0),
        })
    }

    /// Gap `i` (< ngaps): (start TSC, length in ticks).
    pub fn gap(&self, i: usize) -> (u64, u64) {
        (
            self.gap_start[i].load(Ordering::Relaxed),
            self.gap_ticks[i].load(Ordering::Relaxed),
        )
    }

    pub fn hz(&self) -> f64 {
        f64::from_bits(self.hz_bits.load(Ordering::Relaxed))
    }

    /// The loop's clock, once `running`.
    pub fn clock(&self) -> Clock {
        Clock {
            tsc0: self.clock_tsc0.load(Ordering::Relaxed),
            mono0: self.clock_mono0.load(Ordering::Relaxed),
            hz: self.hz(),
        }
    }
}

/// One CPU's run, in TSC ticks; `clock` maps them to monotonic ns.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cpu: u32,
    pub clock: Clock,
    pub start_tsc: u64,
    pub end_tsc: u64,
    pub loops: u64,
    pub min_ticks: u64,
    pub max_ticks: u64,
    pub sum_ticks: u64,
    /// Loop deltas (ns buckets).
    pub histogram: Histogram,
    /// Loop deltas, ticks, log-linear: the percentiles' source.
    pub fine: LogLinear,
    /// (start TSC, ticks), in time order.
    pub gaps: Vec<(u64, u64)>,
    pub lost: u64,
    /// Index in `gaps` of the gap that stopped the run (--stop-above).
    pub stopped_by: Option<usize>,
    /// (start TSC, ticks) of the injected stall, if any.
    pub injected: Option<(u64, u64)>,
    /// Per second of the run: largest delta, ticks.
    pub second_max: Vec<u64>,
}

fn pin(cpu: u32) -> Result<()> {
    isol_system::affinity::pin_current_thread(&isol_cpulist::CpuSet::single(cpu))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("pinning the sampler to CPU {cpu}"))
}

fn set_fifo(prio: i32) -> Result<()> {
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: valid sched_param for the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
        anyhow::bail!(
            "SCHED_FIFO priority {prio}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Run the loop on the calling thread (after pinning it to `cfg.cpu`).
pub fn run(cfg: &Config, sh: &Shared) -> Result<Outcome> {
    sh.tid
        .store(nix::unistd::gettid().as_raw() as u32, Ordering::Relaxed);
    pin(cfg.cpu)?;
    if let Some(p) = cfg.fifo_priority {
        set_fifo(p)?;
    }
    // Calibrate on the CPU itself; doubles as the pre-heat.
    let cal = Clock::calibrate(50);
    sh.hz_bits.store(cal.hz.to_bits(), Ordering::Relaxed);
    sh.clock_tsc0.store(cal.tsc0, Ordering::Relaxed);
    sh.clock_mono0.store(cal.mono0, Ordering::Relaxed);
    let mut hist = vec![0u64; cfg.buckets.max(1)];
    let mut fine = LogLinear::default();
    let last_bucket = hist.len() - 1;
    let width_ticks = cal.ticks(cfg.bucket_width_ns.max(1)).max(1);
    // bucket = delta / width_ticks, as a multiply and shift.
    let bmult: u128 = (1u128 << 64) / width_ticks as u128;
    let thresh = cal.ticks(cfg.threshold_ns);
    let stop_above = cfg.stop_above_ns.map(|n| cal.ticks(n)).unwrap_or(u64::MAX);
    let secs = cfg
        .duration_ns
        .map(|d| d / 1_000_000_000 + 2)
        .unwrap_or(3600) as usize;
    let mut second_max = vec![0u64; secs.min(1 << 20)];
    let sec_ticks = cal.ticks(1_000_000_000);
    let slow_every = cal.ticks(100_000).max(1); // bookkeeping every 100 us
    let cap = sh.gap_start.len().min(cfg.max_gaps.max(1));
    let mut inject = cfg
        .inject_stall
        .map(|(at, len)| (cal.ticks(at), cal.ticks(len)));
    let mut injected = None;

    let a = clock::pair();
    sh.running.store(true, Ordering::Release);
    let start = clock::ticks();
    let end = cfg
        .duration_ns
        .map(|d| start + cal.ticks(d))
        .unwrap_or(u64::MAX);
    let (mut loops, mut min, mut max, mut sum) = (0u64, u64::MAX, 0u64, 0u64);
    let mut ngaps = 0usize;
    let mut lost = 0u64;
    let mut stopped_by = None;
    let mut sec = 0usize;
    let mut sec_end = start + sec_ticks;
    let mut sec_max = 0u64;
    let mut next_slow = start + slow_every;
    let mut prev = start;
    loop {
        let now = clock::ticks();
        let d = now.wrapping_sub(prev);
        let b = ((d as u128 * bmult) >> 64) as usize;
        hist[b.min(last_bucket)] += 1;
        fine.counts[loglin_index(d)] += 1;
        sum = sum.wrapping_add(d);
        loops += 1;
        if d < min {
            min = d;
        }
        if d > sec_max {
            sec_max = d;
        }
        if d > thresh {
            if ngaps < cap {
                sh.gap_start[ngaps].store(prev, Ordering::Relaxed);
                sh.gap_ticks[ngaps].store(d, Ordering::Relaxed);
                ngaps += 1;
                sh.ngaps.store(ngaps, Ordering::Release);
            } else {
                lost += 1;
            }
            if d > stop_above {
                stopped_by = (ngaps > 0).then(|| ngaps - 1);
                if sec_max > max {
                    max = sec_max;
                }
                if let Some(s) = second_max.get_mut(sec) {
                    *s = sec_max;
                }
                prev = now;
                break;
            }
        }
        prev = now;
        if now >= next_slow {
            next_slow = now + slow_every;
            while now >= sec_end {
                if let Some(s) = second_max.get_mut(sec) {
                    *s = sec_max;
                }
                if sec_max > max {
                    max = sec_max;
                    sh.max_ticks.store(max, Ordering::Relaxed);
                }
                sec_max = 0;
                sec += 1;
                sec_end += sec_ticks;
            }
            sh.loops.store(loops, Ordering::Relaxed);
            if now >= end || sh.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some((at, len)) = inject {
                if now - start >= at {
                    inject = None;
                    let t0 = clock::ticks();
                    while clock::ticks() - t0 < len {
                        std::hint::spin_loop();
                    }
                    injected = Some(t0);
                    // `prev` stays before the stall: the next delta is the gap.
                }
            }
        }
    }
    let end_tsc = prev;
    if sec_max > max {
        max = sec_max;
    }
    if let Some(s) = second_max.get_mut(sec) {
        *s = s.to_owned().max(sec_max);
    }
    second_max.truncate((sec + 1).min(second_max.len()));
    let b = clock::pair();
    sh.loops.store(loops, Ordering::Relaxed);
    sh.max_ticks.store(max, Ordering::Relaxed);
    sh.lost.store(lost, Ordering::Relaxed);
    sh.done.store(true, Ordering::Release);
    let clock = Clock::fit(a, b);
    let gaps: Vec<(u64, u64)> = (0..ngaps).map(|i| sh.gap(i)).collect();
    let injected = injected.map(|t0| {
        // The gap holding the stall.
        gaps.iter()
            .copied()
            .find(|&(s, l)| s <= t0 && t0 < s + l)
            .unwrap_or((t0, 0))
    });
    let mut histogram = Histogram::new(cfg.bucket_width_ns, hist.len());
    histogram.counts = hist;
    Ok(Outcome {
        cpu: cfg.cpu,
        clock,
        start_tsc: start,
        end_tsc,
        loops,
        min_ticks: if loops == 0 { 0 } else { min },
        max_ticks: max,
        sum_ticks: sum,
        histogram,
        fine,
        gaps,
        lost,
        stopped_by,
        injected,
        second_max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dur_ms: u64) -> Config {
        Config {
            cpu: 0,
            duration_ns: Some(dur_ms * 1_000_000),
            threshold_ns: 20_000,
            max_gaps: 10_000,
            ..Config::default()
        }
    }

    #[test]
    fn loop_counts_every_delta_and_finds_an_injected_stall() {
        let mut c = cfg(300);
        c.inject_stall = Some((100_000_000, 2_000_000));
        let sh = Shared::new(c.max_gaps);
        let o = run(&c, &sh).unwrap();
        assert_eq!(o.histogram.total(), o.loops);
        assert!(o.loops > 1000);
        let (s, l) = o.injected.expect("stall not found among the gaps");
        assert!(o.gaps.contains(&(s, l)));
        let ns = o.clock.ns(l);
        assert!(ns >= 2_000_000, "stall gap {ns} ns");
        assert!(o.clock.ns(o.max_ticks) >= 2_000_000);
        // Every gap is above the threshold; the max lands in the last bucket.
        assert!(o.gaps.iter().all(|g| o.clock.ns(g.1) > 19_000));
        assert!(*o.histogram.counts.last().unwrap() >= 1);
        assert_eq!(sh.ngaps.load(Ordering::Acquire), o.gaps.len());
    }

    #[test]
    fn stop_above_ends_the_run_at_that_gap() {
        let mut c = cfg(5_000);
        c.inject_stall = Some((50_000_000, 3_000_000));
        c.stop_above_ns = Some(2_500_000);
        let sh = Shared::new(c.max_gaps);
        let o = run(&c, &sh).unwrap();
        let i = o.stopped_by.expect("not stopped");
        assert_eq!(i, o.gaps.len() - 1, "the stopping gap is the last one kept");
        assert!(o.clock.ns(o.gaps[i].1) > 2_500_000);
        // Stopped long before the 5 s duration.
        assert!(o.clock.ns(o.end_tsc - o.start_tsc) < 4_000_000_000);
    }
}
