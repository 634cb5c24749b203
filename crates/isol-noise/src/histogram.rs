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
