//! The clock the capture stamps records with (CLOCK_MONOTONIC, as BPF's
//! bpf_ktime_get_ns): every part of isol that matches times against
//! records reads this one.

/// CLOCK_MONOTONIC in nanoseconds, through the vDSO (no kernel entry with
/// a TSC clocksource: isolated loops call it too).
#[inline]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
