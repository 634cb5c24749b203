//! Page faults are interruptions: lock and prefault memory, and keep THP
//! (khugepaged collapses, huge page faults) away from the process.

use crate::error::{Error, Result};

/// How much stack to touch before locking: deeper calls than this fault.
const STACK_PREFAULT: usize = 256 * 1024;

#[inline(never)]
fn touch_stack() {
    let mut buf = [0u8; STACK_PREFAULT];
    // Write every page so each is really faulted in, not optimised away.
    for i in (0..STACK_PREFAULT).step_by(crate::arch::PAGE) {
        // SAFETY: in bounds.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 1) };
    }
    std::hint::black_box(&buf);
}

/// mlockall(current|future) after prefaulting the stack. Future mappings
/// (heap growth, new threads' stacks) are populated when created.
pub fn lock() -> Result<String> {
    touch_stack();
    // The vDSO's data pages are special mappings mlockall does not
    // populate: read the clocks once so the first clock_gettime after
    // activation does not fault.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    for clock in [
        libc::CLOCK_MONOTONIC,
        libc::CLOCK_REALTIME,
        libc::CLOCK_MONOTONIC_RAW,
    ] {
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
    }
    // SAFETY: plain libc call.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        let e = std::io::Error::last_os_error();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
        return Err(Error::Os {
            what: format!(
                "mlockall (locking memory needs CAP_IPC_LOCK or RLIMIT_MEMLOCK above the process size, now {} KiB: raise it with ulimit -l or configure lock_memory = false)",
                limit.rlim_cur / 1024
            ),
            source: e,
        });
    }
    Ok(format!(
        "stack prefaulted ({} KiB), all current and future memory locked",
        STACK_PREFAULT / 1024
    ))
}

/// PR_SET_THP_DISABLE: inherited across fork and kept across exec.
pub fn disable_thp() -> Result<String> {
    // SAFETY: plain prctl with integer arguments (41 is upstream's
    // PR_SET_THP_DISABLE, not one of the colliding task isolation numbers).
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(Error::os("prctl(PR_SET_THP_DISABLE)"));
    }
    Ok("transparent huge pages disabled for the process".into())
}
