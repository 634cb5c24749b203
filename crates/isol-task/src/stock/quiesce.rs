//! Quiescing deferred per-CPU work from user space, on the CPU itself.
//!
//! # vmstat
//!
//! Each CPU keeps differentials of the VM statistics; the kernel folds
//! them into the global counters in `refresh_cpu_vm_stats()`, which runs
//! only on the CPU itself: in the `vmstat_update` work, or in
//! `quiet_vmstat()` when the tick stops, and there only if that work is
//! already pending. The vmstat shepherd (every `vm.stat_interval` on a
//! housekeeping CPU) queues `vmstat_update` on every CPU whose
//! differentials are not zero and whose work is not pending; the work
//! re-arms itself (a deferrable timer on the CPU, one interval later) as
//! long as it finds something to fold. No system call folds one CPU's
//! counters (`/proc/sys/vm/stat_refresh` folds them all, with a work item
//! on every CPU, other isolated CPUs included). So on a stock kernel
//! before 6.5 the only way to keep the work from interrupting the loop
//! later is to have it run now, during activation:
//!
//! - **park** (the CPU is nohz_full, its tick stops while the task
//!   runs): dirty one counter (touch a fresh page), then yield the CPU in
//!   short sleeps for 1.5 stat intervals with the tick stopped. The
//!   shepherd queues the work, which folds everything and re-arms its
//!   deferrable timer; with the tick stopped that timer stays asleep, and
//!   while it is pending the shepherd leaves the CPU alone. Counters the
//!   task dirties later (its own system calls, persistent mode) stay on
//!   the CPU unfolded and harmless until something restarts the tick: the
//!   timer then fires once, folds and re-arms.
//! - **settle** (the tick keeps running on the CPU: no nohz_full, as on
//!   5.10's isolcpus): yield the CPU in short sleeps for 3 stat intervals
//!   with the tick running, so that the shepherd's work and the re-armed
//!   one run and the chain ends with nothing left to fold and nothing
//!   pending. A later dirtying system call brings the shepherd back within
//!   an interval: no user-space step can prevent that there.
//! - nothing, on 6.5+ when the CPU is isolated (nohz_full, isolcpus
//!   domain or an isolated cpuset): the shepherd skips isolated CPUs.
//! - nothing, on a CPU the kernel does not isolate (tests on ordinary
//!   machines): other tasks there dirty the counters anyway.
//!
//! The lab proves park on 6.1 (nohz_full) and settle on 5.10 (isolcpus)
//! against the control: `lab/tests/task_vmstat.rs`.
//!
//! # LRU
//!
//! `lru_add_drain_all()` (mlock, migration, compaction on any CPU) queues
//! work on every CPU whose LRU or mlock batches hold pages. A local
//! `lru_add_drain()` empties ours: `madvise(MADV_COLD)` on an unlocked,
//! unpopulated page runs exactly that, and flushes no TLB since nothing is
//! mapped. Activation drains once more at its very end (except where the
//! vmstat work settles with the tick running): park's fresh page and
//! activation's own allocations fault pages into the batch after the
//! first drain (a lab run on 6.1 had compaction queue the drain work on
//! the CPU 2 ms into the loop).
//!
//! # Timers
//!
//! Stock kernels cannot cancel another subsystem's timers; `timers` makes
//! the watcher wait, on a housekeeping CPU, until nothing is pending on the
//! CPU (see `crate::tick`).

use crate::arch::PAGE;
use crate::config::Quiesce;
use crate::error::{Error, Result};
use crate::Step;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release_at_least(&r, major, minor)
}

fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut it = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// What the vmstat step does on this CPU of this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmstatPlan {
    /// 6.5+ and the CPU is isolated: the shepherd skips it.
    Skipped,
    /// The kernel does not isolate the CPU.
    NotIsolated,
    /// nohz_full before 6.5: have the work run now, leave it parked on
    /// the CPU's (asleep) deferrable timer.
    Park,
    /// The tick runs on the CPU: have the work run until it stops
    /// re-arming.
    Settle,
}

impl VmstatPlan {
    pub fn for_cpu(cpu: u32) -> VmstatPlan {
        let isolated = super::kernel_isolated().contains(cpu);
        let nohz_full = super::read_set("/sys/devices/system/cpu/nohz_full").contains(cpu);
        Self::choose(isolated, nohz_full, kernel_at_least(6, 5))
    }

    pub fn choose(isolated: bool, nohz_full: bool, shepherd_skips_isolated: bool) -> VmstatPlan {
        match (isolated, shepherd_skips_isolated, nohz_full) {
            (false, _, _) => VmstatPlan::NotIsolated,
            (true, true, _) => VmstatPlan::Skipped,
            (true, false, true) => VmstatPlan::Park,
            (true, false, false) => VmstatPlan::Settle,
        }
    }
}

/// vm.stat_interval (the shepherd's period and the work's re-arm delay).
pub fn stat_interval() -> Duration {
    let s = std::fs::read_to_string("/proc/sys/vm/stat_interval")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(s.max(1))
}

/// The quiesce actions of `mask` that do not need a watcher, in order;
/// vmstat by `plan` (see the module documentation).
pub fn run(mask: Quiesce, plan: VmstatPlan) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    if mask.contains(Quiesce::LRU) {
        out.push(lru()?);
    }
    if mask.contains(Quiesce::VMSTAT) {
        out.push(vmstat(plan)?);
    }
    Ok(out)
}

pub fn vmstat(plan: VmstatPlan) -> Result<Step> {
    let interval = stat_interval();
    let detail = match plan {
        VmstatPlan::Skipped => "nothing to do: this kernel's vmstat shepherd skips isolated CPUs (6.5+)".into(),
        VmstatPlan::NotIsolated => "nothing done: the kernel does not isolate this CPU, so whatever else runs here dirties its counters".into(),
        VmstatPlan::Park => {
            dirty_one_counter()?;
            let t = yield_for(interval * 3 / 2, false)?;
            format!(
                "the kernel's vmstat work ran on this CPU while it yielded {} ms with the tick stopped: counters folded, the work parked on its deferred timer (the shepherd leaves the CPU alone while it is pending)",
                t.as_millis()
            )
        }
        VmstatPlan::Settle => {
            let t = yield_for(interval * 3, true)?;
            format!(
                "the kernel's vmstat work ran on this CPU while it yielded {} ms with the tick running (3 stat intervals) until it stopped re-arming: counters folded, nothing pending",
                t.as_millis()
            )
        }
    };
    Ok(Step {
        name: "vmstat_sync",
        detail,
    })
}

/// Fresh pages mapped for [`dirty_one_counter`], kept for the process's
/// lifetime: unmapping would flush the TLB of the process's other CPUs.
static DIRT: AtomicUsize = AtomicUsize::new(0);

/// Make this CPU's vmstat differentials non-zero (a page faulted in here
/// counts in NR_ANON_MAPPED), so that the shepherd's work surely runs.
fn dirty_one_counter() -> Result<()> {
    // SAFETY: a fresh private anonymous page, written once and kept.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::os("mmap for the vmstat quiesce"));
    }
    // SAFETY: within the page just mapped.
    unsafe { std::ptr::write_volatile(p as *mut u8, 1) };
    DIRT.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Spin 9 ms, sleep 1 ms, for `total`: the sleeps let a kworker run on
/// this CPU even if the task is SCHED_FIFO. With `tick`, a CPU-time timer
/// of this thread keeps the tick running while it spins (the deferrable
/// timers of the CPU only fire from the tick).
fn yield_for(total: Duration, tick: bool) -> Result<Duration> {
    let timer = if tick { Some(CpuTimer::arm()?) } else { None };
    let t0 = Instant::now();
    while t0.elapsed() < total {
        let s = Instant::now();
        while s.elapsed() < Duration::from_millis(9) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(timer);
    Ok(t0.elapsed())
}

/// A CLOCK_THREAD_CPUTIME_ID timer far in the future: while armed, the
/// tick must run on the thread's CPU (tick dependency POSIX_TIMER).
struct CpuTimer(libc::timer_t);

impl CpuTimer {
    fn arm() -> Result<CpuTimer> {
        // SIGEV_NONE timers are never armed in the tick: it must notify.
        // The signal (SIGURG, ignored by default) never comes: 1000 s of
        // CPU time.
        let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
        ev.sigev_notify = libc::SIGEV_SIGNAL;
        ev.sigev_signo = libc::SIGURG;
        let mut t: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to locals.
        if unsafe { libc::timer_create(libc::CLOCK_THREAD_CPUTIME_ID, &mut ev, &mut t) } != 0 {
            return Err(Error::os("timer_create(CLOCK_THREAD_CPUTIME_ID)"));
        }
        let its = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 1000,
                tv_nsec: 0,
            },
        };
        // SAFETY: t was created above.
        if unsafe { libc::timer_settime(t, 0, &its, std::ptr::null_mut()) } != 0 {
            let e = Error::os("timer_settime");
            unsafe { libc::timer_delete(t) };
            return Err(e);
        }
        Ok(CpuTimer(t))
    }
}

impl Drop for CpuTimer {
    fn drop(&mut self) {
        // SAFETY: created by arm().
        unsafe { libc::timer_delete(self.0) };
    }
}

/// A PROT_NONE page kept for the process's lifetime: never populated (so
/// madvise walks no page and flushes no TLB, and no munmap ever sends a
/// shootdown to the process's other CPUs).
static SCRATCH: AtomicUsize = AtomicUsize::new(0);

fn scratch() -> Result<*mut libc::c_void> {
    let p = SCRATCH.load(Ordering::Relaxed);
    if p != 0 {
        return Ok(p as *mut libc::c_void);
    }
    // SAFETY: fresh anonymous mapping, kept forever.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::os("mmap for the LRU drain"));
    }
    SCRATCH.store(p as usize, Ordering::Relaxed);
    Ok(p)
}

pub fn lru() -> Result<Step> {
    let p = scratch()?;
    // mlockall(MCL_FUTURE) marked it locked, and MADV_COLD refuses locked
    // VMAs before draining: unlock it (nothing is populated, nothing moves).
    // SAFETY: p is our mapping of PAGE bytes.
    let r = unsafe {
        libc::munlock(p, PAGE);
        libc::madvise(p, PAGE, libc::MADV_COLD)
    };
    if r != 0 {
        return Err(Error::Os {
            what: "madvise(MADV_COLD) to drain this CPU's LRU batches (kernel 5.4+)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Step {
        name: "lru_drain",
        detail: "drained this CPU's LRU and mlock batches (local lru_add_drain via MADV_COLD)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn plan_by_kernel_and_cpu() {
        assert_eq!(
            VmstatPlan::choose(false, true, false),
            VmstatPlan::NotIsolated
        );
        assert_eq!(VmstatPlan::choose(true, true, true), VmstatPlan::Skipped);
        assert_eq!(VmstatPlan::choose(true, false, true), VmstatPlan::Skipped);
        assert_eq!(VmstatPlan::choose(true, true, false), VmstatPlan::Park);
        assert_eq!(VmstatPlan::choose(true, false, false), VmstatPlan::Settle);
        assert!(release_at_least("6.5.0-1-amd64", 6, 5));
        assert!(release_at_least("6.12.118+deb12-cloud-amd64", 6, 5));
        assert!(!release_at_least("6.1.0-57-cloud-amd64", 6, 5));
        assert!(!release_at_least("5.10.0-32-cloud-amd64", 6, 5));
    }
}
