//! Quiescing deferred per-CPU work from user space, on the CPU itself.
//!
//! - vmstat: since 6.5 the vmstat shepherd skips isolated CPUs, and the
//!   per-CPU counters are folded whenever the tick stops (quiet_vmstat), so
//!   there is nothing to do. Older kernels, or a CPU the kernel does not
//!   isolate: a 1 ms sleep lets the CPU enter idle, which folds them;
//!   that costs one idle entry and one timer interrupt, now rather than later.
//! - LRU: lru_add_drain_all() (mlock, migration, compaction on any CPU)
//!   queues work on every CPU whose LRU or mlock batches hold pages. A
//!   local lru_add_drain() empties ours: madvise(MADV_COLD) on an unlocked,
//!   unpopulated page runs exactly that, and flushes no TLB since nothing
//!   is mapped.
//! - timers: stock kernels cannot cancel another subsystem's timers; the
//!   ones still queued on the CPU are listed (TickReport.pending_timers).

use crate::config::Quiesce;
use crate::error::{Error, Result};
use crate::Step;
use std::sync::atomic::{AtomicUsize, Ordering};

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

pub fn run(mask: Quiesce, cpu_isolated: bool) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    if mask.contains(Quiesce::VMSTAT) {
        out.push(vmstat(cpu_isolated));
    }
    if mask.contains(Quiesce::LRU) {
        out.push(lru()?);
    }
    Ok(out)
}

fn vmstat(cpu_isolated: bool) -> Step {
    if cpu_isolated && kernel_at_least(6, 5) {
        return Step {
            name: "vmstat_sync",
            detail: "nothing to do: this kernel's vmstat shepherd skips isolated CPUs (6.5+) and a stopped tick folds the counters".into(),
        };
    }
    std::thread::sleep(std::time::Duration::from_millis(1));
    Step {
        name: "vmstat_sync",
        detail: "slept 1 ms so the CPU went idle and folded its vmstat counters (one idle entry, one timer interrupt)".into(),
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

const PAGE: usize = 4096;

fn lru() -> Result<Step> {
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
