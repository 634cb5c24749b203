//! The clock the capture stamps records with (CLOCK_MONOTONIC, as BPF's
//! bpf_ktime_get_ns): every part of isol that matches times against
//! records reads this one.

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
