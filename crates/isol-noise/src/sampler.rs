//! The measuring loop (oslat class): one thread per CPU reads the TSC in
//! a tight loop; every delta goes into a histogram, every delta above the
//! threshold is a gap, stored with its start into memory allocated and
//! touched before the loop starts (no page fault inside it). Gaps are
//! published as they happen so a reader on a housekeeping CPU can show
//! progress and keep a partial report if the run is cut short.

use crate::clock::{self, Clock};
use crate::histogram::{loglin_index, Histogram, LogLinear};
use crate::inject::{Injection, Kind};
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
    /// --inject timer: a POSIX timer of this thread, this period (ns).
    pub inject_timer_ns: Option<u64>,
    /// --inject fault: read a fresh page this often (ns).
    pub inject_fault_ns: Option<u64>,
    /// This sampler's slot for the timer's signal handler (< TIMER_SLOTS).
    pub slot: usize,
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
            inject_timer_ns: None,
            inject_fault_ns: None,
            slot: 0,
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
    /// --inject timer/fault: (kind, before, after) in monotonic ns.
    pub injections: Vec<Injection>,
    /// Why an on-CPU kind could not be injected.
    pub inject_notes: Vec<String>,
}

/// Samplers that can run an injected timer at once.
pub const TIMER_SLOTS: usize = 16;
const TIMER_CAP: usize = 8192;
/// When each slot's timer signal was handled (TSC), written by the
/// handler: static, so the handler only does atomic stores.
static TIMER_HITS: [[AtomicU64; TIMER_CAP]; TIMER_SLOTS] =
    [const { [const { AtomicU64::new(0) }; TIMER_CAP] }; TIMER_SLOTS];
static TIMER_COUNT: [AtomicUsize; TIMER_SLOTS] = [const { AtomicUsize::new(0) }; TIMER_SLOTS];

extern "C" fn on_timer(_sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let t = clock::ticks();
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler;
    // the timer's sigev_value is the slot.
    let slot = unsafe { (*info).si_value().sival_ptr as usize };
    if slot < TIMER_SLOTS {
        let i = TIMER_COUNT[slot].fetch_add(1, Ordering::Relaxed);
        if i < TIMER_CAP {
            TIMER_HITS[slot][i].store(t, Ordering::Relaxed);
        }
    }
}

fn timer_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

/// A CLOCK_MONOTONIC timer that signals the calling thread every
/// `period` ns from `first` (absolute); armed here, so on this CPU.
fn arm_timer(slot: usize, first: u64, period: u64) -> Result<libc::timer_t> {
    // SAFETY: installs a handler that only touches atomics; the slot's
    // pages are written before the timer can fire (no fault in the handler).
    unsafe {
        for h in TIMER_HITS[slot].iter() {
            h.store(0, Ordering::Relaxed);
        }
        TIMER_COUNT[slot].store(0, Ordering::Relaxed);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_timer as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        if libc::sigaction(timer_signal(), &sa, std::ptr::null_mut()) != 0 {
            anyhow::bail!("sigaction: {}", std::io::Error::last_os_error());
        }
        let mut ev: libc::sigevent = std::mem::zeroed();
        ev.sigev_notify = libc::SIGEV_THREAD_ID;
        ev.sigev_signo = timer_signal();
        ev.sigev_value.sival_ptr = slot as *mut libc::c_void;
        ev.sigev_notify_thread_id = nix::unistd::gettid().as_raw();
        let mut t: libc::timer_t = std::mem::zeroed();
        if libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut t) != 0 {
            anyhow::bail!("timer_create: {}", std::io::Error::last_os_error());
        }
        let ts = |ns: u64| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as i64,
            tv_nsec: (ns % 1_000_000_000) as i64,
        };
        let its = libc::itimerspec {
            it_interval: ts(period),
            it_value: ts(first),
        };
        if libc::timer_settime(t, libc::TIMER_ABSTIME, &its, std::ptr::null_mut()) != 0 {
            let e = std::io::Error::last_os_error();
            libc::timer_delete(t);
            anyhow::bail!("timer_settime: {e}");
        }
        Ok(t)
    }
}

/// Untouched, never-huge anonymous memory: every first read of a page
/// faults (and maps the zero page: no memory used).
struct FaultArea {
    base: *mut u8,
    pages: usize,
}

impl FaultArea {
    const PAGES: usize = 1 << 16;
    fn new() -> Result<FaultArea> {
        let len = Self::PAGES * 4096;
        // SAFETY: a fresh private mapping, unmapped on drop.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                anyhow::bail!("mmap: {}", std::io::Error::last_os_error());
            }
            // A huge zero page would serve 512 reads with one fault.
            libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
            Ok(FaultArea {
                base: p as *mut u8,
                pages: Self::PAGES,
            })
        }
    }
}

impl Drop for FaultArea {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.pages * 4096) };
    }
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
    let mut inject_notes = Vec::new();
    let fault_area = match cfg.inject_fault_ns.map(|_| FaultArea::new()) {
        Some(Err(e)) => {
            inject_notes.push(format!("inject fault: {e:#}; not injected"));
            None
        }
        Some(Ok(a)) => Some(a),
        None => None,
    };
    // Written before the loop: no page fault but the injected ones.
    let mut faults: Vec<(u64, u64)> = vec![(0, 0); fault_area.as_ref().map_or(0, |a| a.pages)];
    let mut nfaults = 0usize;
    let fault_every = cfg.inject_fault_ns.map(|n| cal.ticks(n).max(1));
    let timer_period = cfg.inject_timer_ns.map(|n| n.max(100_000));
    let timer = match timer_period {
        Some(p) if cfg.slot < TIMER_SLOTS => {
            let first = isol_system::clock::monotonic_ns() + p;
            match arm_timer(cfg.slot, first, p) {
                Ok(t) => Some((t, first, p)),
                Err(e) => {
                    inject_notes.push(format!("inject timer: {e:#}; not injected"));
                    None
                }
            }
        }
        Some(_) => {
            inject_notes.push("inject timer: too many CPUs; not injected".into());
            None
        }
        None => None,
    };

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
    let mut next_fault = start + fault_every.unwrap_or(0);
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
            if let (Some(area), Some(every)) = (fault_area.as_ref(), fault_every) {
                if now >= next_fault && nfaults < area.pages {
                    next_fault = now + every;
                    let t0 = clock::ticks();
                    // SAFETY: inside the mapping, read only.
                    unsafe { std::ptr::read_volatile(area.base.add(nfaults * 4096)) };
                    let t1 = clock::ticks();
                    faults[nfaults] = (t0, t1);
                    nfaults += 1;
                    // `prev` stays before the fault: the next delta holds it.
                    continue;
                }
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
    if let Some((t, ..)) = timer {
        // SAFETY: our timer; no signal after this returns.
        unsafe { libc::timer_delete(t) };
    }
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
    let mut injections: Vec<Injection> = faults[..nfaults]
        .iter()
        .map(|&(t0, t1)| Injection {
            kind: Kind::Fault,
            cpu: cfg.cpu,
            before_ns: clock.mono(t0),
            after_ns: clock.mono(t1),
        })
        .collect();
    if let Some((_, first, period)) = timer {
        // Each handled signal: its expiry (the last one before it) to
        // the handler, which ran right after the interrupt.
        let n = TIMER_COUNT[cfg.slot].load(Ordering::Relaxed).min(TIMER_CAP);
        for h in TIMER_HITS[cfg.slot][..n].iter() {
            let at = clock.mono(h.load(Ordering::Relaxed));
            if at < first {
                continue;
            }
            injections.push(Injection {
                kind: Kind::Timer,
                cpu: cfg.cpu,
                before_ns: first + (at - first) / period * period,
                after_ns: at,
            });
        }
    }
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
        injections,
        inject_notes,
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
