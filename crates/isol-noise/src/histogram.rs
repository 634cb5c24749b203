//! Fixed-width buckets of loop deltas, as oslat prints them: bucket i
//! counts deltas in [i*w, (i+1)*w) and is labelled with its upper bound
//! (`001 (us)` holds everything under 1 us); the last bucket also holds
//! every larger delta ("including overflows").

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// Bucket width, ns.
    pub width_ns: u64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(width_ns: u64, buckets: usize) -> Histogram {
        Histogram {
            width_ns: width_ns.max(1),
            counts: vec![0; buckets.max(1)],
        }
    }

    pub fn bucket_of(&self, ns: u64) -> usize {
        ((ns / self.width_ns) as usize).min(self.counts.len() - 1)
    }

    pub fn add(&mut self, ns: u64) {
        let b = self.bucket_of(ns);
        self.counts[b] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Upper bound (ns) of the bucket holding the p-quantile (0..=1);
    /// None when empty. The last bucket's bound is a lower bound.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let want = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= want {
                return Some((i as u64 + 1) * self.width_ns);
            }
        }
        None
    }

    /// oslat's per-core histogram lines (`    001 (us):\t 12345`).
    pub fn oslat_lines(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let last = self.counts.len() - 1;
        for (i, c) in self.counts.iter().enumerate() {
            let upper = (i as u64 + 1) * self.width_ns;
            let label = if self.width_ns % 1000 == 0 {
                format!("{:03} (us)", upper / 1000)
            } else {
                format!("{:03} (ns)", upper)
            };
            let _ = writeln!(
                o,
                "    {label}:\t {c}{}",
                if i == last {
                    " (including overflows)"
                } else {
                    ""
                }
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_overflow_and_percentiles() {
        let mut h = Histogram::new(1000, 4);
        for ns in [0, 999, 1000, 2500, 3999, 4000, 1_000_000] {
            h.add(ns);
        }
        assert_eq!(h.counts, vec![2, 1, 1, 3]);
        assert_eq!(h.percentile(0.0), Some(1000));
        assert_eq!(h.percentile(0.5), Some(3000));
        assert_eq!(h.percentile(1.0), Some(4000));
        let l = h.oslat_lines();
        assert!(l.starts_with("    001 (us):\t 2\n"), "{l}");
        assert!(
            l.ends_with("    004 (us):\t 3 (including overflows)\n"),
            "{l}"
        );
        assert_eq!(Histogram::new(1000, 4).percentile(0.5), None);
    }
}

/// Log-linear buckets (HdrHistogram's layout, 2^SUB_BITS sub-buckets per
/// power of two): every value from 1 tick to 2^64 kept within 1/64
/// (1.6 %), so percentiles hold from tens of ns to seconds without the
/// 1 us steps of the oslat buckets. Counted by hand in the sampler's loop
/// (a shift and an add per iteration, no call: the loop's own cost is
/// the floor of what it can measure); read through the `hdrhistogram`
/// crate afterwards ([`LogLinear::to_hdr`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLinear {
    pub counts: Vec<u64>,
}

pub const SUB_BITS: u32 = 6;
pub const LOGLIN_LEN: usize = ((65 - SUB_BITS) as usize) << SUB_BITS;

impl Default for LogLinear {
    fn default() -> Self {
        LogLinear {
            counts: vec![0; LOGLIN_LEN],
        }
    }
}

/// The bucket of `v`: exact below 2^(SUB_BITS+1), then 2^SUB_BITS buckets
/// per power of two.
#[inline(always)]
pub fn loglin_index(v: u64) -> usize {
    let e = 63 - (v | 1).leading_zeros();
    if e < SUB_BITS {
        return v as usize;
    }
    let shift = e - SUB_BITS;
    (((shift + 1) as usize) << SUB_BITS) + ((v >> shift) as usize - (1 << SUB_BITS))
}

/// The values bucket `i` holds: [low, low + width).
pub fn loglin_range(i: usize) -> (u64, u64) {
    let k = (i >> SUB_BITS) as u32;
    if k <= 1 {
        return (i as u64, 1);
    }
    let shift = k - 1;
    let top = (i as u64 & ((1 << SUB_BITS) - 1)) + (1 << SUB_BITS);
    (top << shift, 1 << shift)
}

impl LogLinear {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// As an HdrHistogram of ns (3 significant digits), each bucket's
    /// count at its middle value converted by `to_ns`.
    pub fn to_hdr(&self, to_ns: impl Fn(u64) -> u64) -> hdrhistogram::Histogram<u64> {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits");
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let (low, width) = loglin_range(i);
                let _ = h.record_n(to_ns(low.saturating_add(width / 2)).max(1), c);
            }
        }
        h
    }
}

#[cfg(test)]
mod loglin_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_values_are_exact_and_buckets_are_contiguous() {
        for v in 0..200u64 {
            let (low, width) = loglin_range(loglin_index(v));
            assert!(low <= v && v < low + width, "{v}: {low}+{width}");
        }
        assert_eq!(loglin_range(loglin_index(127)), (127, 1));
        let mut prev_end = 0;
        for i in 0..LOGLIN_LEN - 1 {
            let (low, width) = loglin_range(i);
            assert_eq!(low, prev_end, "bucket {i}");
            prev_end = low + width;
        }
        assert!(loglin_index(u64::MAX) < LOGLIN_LEN);
    }

    proptest! {
        #[test]
        fn every_value_is_kept_within_one_part_in_64(v in any::<u64>()) {
            let i = loglin_index(v);
            prop_assert!(i < LOGLIN_LEN);
            let (low, width) = loglin_range(i);
            prop_assert!(low <= v && v - low < width);
            prop_assert!(width == 1 || width <= low / 64 + 1);
        }
    }
}
