//! The time-stamp counter: read it, calibrate it against CLOCK_MONOTONIC
//! (the clock the capture engine's records carry, bpf_ktime_get_ns), and
//! convert TSC values to monotonic nanoseconds.

/// Read the cycle counter (the TSC on x86-64).
pub use crate::arch::ticks;

use isol_system::clock::monotonic_ns as mono_ns;

/// One simultaneous (TSC, monotonic ns) reading: the tightest of a few
/// brackets, the TSC taken as the bracket's middle.
pub fn pair() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..16 {
        let a = ticks();
        let m = mono_ns();
        let b = ticks();
        let w = b.wrapping_sub(a);
        if w < best.0 {
            best = (w, a + w / 2, m);
        }
    }
    (best.1, best.2)
}

/// A linear map TSC -> CLOCK_MONOTONIC ns between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub tsc0: u64,
    pub mono0: u64,
    /// TSC ticks per second.
    pub hz: f64,
}

impl Clock {
    pub fn fit(a: (u64, u64), b: (u64, u64)) -> Clock {
        let dt = b.0.saturating_sub(a.0).max(1) as f64;
        let dn = b.1.saturating_sub(a.1).max(1) as f64;
        Clock {
            tsc0: a.0,
            mono0: a.1,
            hz: dt * 1e9 / dn,
        }
    }

    /// Calibrate by spinning `spin_ms` (also warms the CPU up, as oslat's
    /// pre-heat does).
    pub fn calibrate(spin_ms: u64) -> Clock {
        let a = pair();
        let end = a.1 + spin_ms * 1_000_000;
        while mono_ns() < end {
            std::hint::spin_loop();
        }
        Clock::fit(a, pair())
    }

    pub fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * 1e9 / self.hz) as u64
    }

    pub fn ticks(&self, ns: u64) -> u64 {
        (ns as f64 * self.hz / 1e9) as u64
    }

    /// CLOCK_MONOTONIC ns at TSC value `t`.
    pub fn mono(&self, t: u64) -> u64 {
        let d = t as i128 - self.tsc0 as i128;
        (self.mono0 as i128 + (d as f64 * 1e9 / self.hz) as i128).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_maps_both_ends() {
        let c = Clock::fit((1_000, 5_000), (3_001_000, 1_005_000));
        assert_eq!(c.hz, 3e9);
        assert_eq!(c.mono(1_000), 5_000);
        assert_eq!(c.mono(3_001_000), 1_005_000);
        assert_eq!(c.mono(1_000 + 3_000), 6_000);
        assert_eq!(c.ns(3_000_000), 1_000_000);
        assert_eq!(c.ticks(1_000_000), 3_000_000);
    }

    #[test]
    fn calibration_agrees_with_the_monotonic_clock() {
        let c = Clock::calibrate(20);
        assert!(c.hz > 1e8 && c.hz < 1e11, "TSC at {} Hz", c.hz);
        let (t, m) = pair();
        let err = c.mono(t) as i64 - m as i64;
        // Extrapolated right after calibration: within 100 us.
        assert!(err.abs() < 100_000, "TSC->monotonic off by {err} ns");
    }
}
