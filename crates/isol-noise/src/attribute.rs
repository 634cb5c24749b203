//! Matching gaps with kernel entries. A gap [s, s+len) is explained by the
//! capture engine's records on its CPU that overlap it (with a small
//! tolerance for the TSC->monotonic mapping and the entry code before the
//! first tracepoint). The record covering most of the gap is the primary
//! cause. Time inside the gap that no record covers is `hw` time: SMI,
//! hypervisor preemption, the SMT sibling. A gap with no record at all is
//! `hw`; so is one whose uncovered time dominates (a long stall that a
//! short tick happened to land in is not the tick's fault).

/// An interval in CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub len: u64,
    /// A point event whose duration is unknown (a page fault on a CPU
    /// without context tracking): it explains the whole gap it falls in.
    pub point: bool,
}

impl Span {
    pub fn new(start: u64, len: u64) -> Span {
        Span {
            start,
            len,
            point: false,
        }
    }
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Slack on each side when testing overlap, ns.
    pub tolerance_ns: u64,
    /// Uncovered time up to this much is entry/exit overhead, not `hw`.
    pub hw_slack_ns: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            tolerance_ns: 5_000,
            hw_slack_ns: 50_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// Indices of the overlapping entries, in time order.
    pub entries: Vec<usize>,
    /// The entry covering most of the gap.
    pub primary: Option<usize>,
    /// Gap time covered by kernel entries (union), ns.
    pub kernel_ns: u64,
    /// Gap time no entry covers, ns.
    pub hw_ns: u64,
    /// The gap is `hw`: no entry, or uncovered time dominates.
    pub hw: bool,
}

/// Attribute each gap; `entries` must be sorted by start.
pub fn attribute(gaps: &[Span], entries: &[Span], p: Params) -> Vec<Attribution> {
    debug_assert!(entries.windows(2).all(|w| w[0].start <= w[1].start));
    let longest = entries.iter().map(|e| e.len).max().unwrap_or(0);
    gaps.iter()
        .map(|g| {
            let lo = g.start.saturating_sub(p.tolerance_ns + longest);
            let hi = g.end() + p.tolerance_ns;
            let first = entries.partition_point(|e| e.start < lo);
            let mut hits = Vec::new();
            let mut clipped: Vec<(u64, u64)> = Vec::new();
            let mut best: Option<(u64, usize)> = None;
            let mut point = false;
            for (i, e) in entries.iter().enumerate().skip(first) {
                if e.start > hi {
                    break;
                }
                if e.end() + p.tolerance_ns < g.start {
                    continue;
                }
                hits.push(i);
                let (a, b) = (e.start.max(g.start), e.end().min(g.end()));
                let cover = if e.point {
                    point = true;
                    g.len
                } else if b > a {
                    clipped.push((a, b));
                    b - a
                } else {
                    0
                };
                if best.is_none_or(|(c, _)| cover > c) {
                    best = Some((cover, i));
                }
            }
            let kernel_ns = if point {
                g.len
            } else {
                union_len(&mut clipped)
            };
            let hw_ns = g.len - kernel_ns.min(g.len);
            let hw = hits.is_empty() || (hw_ns > p.hw_slack_ns && hw_ns > kernel_ns);
            Attribution {
                entries: hits,
                primary: best.map(|(_, i)| i),
                kernel_ns,
                hw_ns,
                hw,
            }
        })
        .collect()
}

fn union_len(v: &mut [(u64, u64)]) -> u64 {
    v.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for &(a, b) in v.iter() {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    total + cur.map_or(0, |(a, b)| b - a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(gaps: &[Span], entries: &[Span]) -> Vec<Attribution> {
        attribute(gaps, entries, Params::default())
    }

    #[test]
    fn a_gap_with_no_entry_is_hw() {
        let a = at(
            &[Span::new(1_000_000, 30_000)],
            &[Span::new(5_000_000, 10_000)],
        );
        assert!(a[0].hw);
        assert_eq!(a[0].primary, None);
        assert_eq!(a[0].hw_ns, 30_000);
    }

    #[test]
    fn an_entry_inside_the_gap_explains_it_despite_entry_overhead() {
        // 25 us gap, 12 us handler inside: 13 us of entry/exit overhead.
        let a = at(
            &[Span::new(1_000_000, 25_000)],
            &[Span::new(900_000, 1_000), Span::new(1_004_000, 12_000)],
        );
        assert!(!a[0].hw);
        assert_eq!(a[0].entries, vec![1]);
        assert_eq!(a[0].primary, Some(1));
        assert_eq!(a[0].kernel_ns, 12_000);
    }

    #[test]
    fn a_long_stall_is_not_blamed_on_a_tick_that_landed_in_it() {
        let a = at(
            &[Span::new(1_000_000, 2_000_000)],
            &[Span::new(1_500_000, 15_000)],
        );
        assert!(a[0].hw, "{:?}", a[0]);
        assert_eq!(a[0].entries, vec![0], "the tick is still listed");
        assert_eq!(a[0].hw_ns, 1_985_000);
    }

    #[test]
    fn the_longest_of_nested_or_adjacent_entries_is_primary_and_union_counts_once() {
        let a = at(
            &[Span::new(10_000, 100_000)],
            &[
                Span::new(12_000, 20_000),
                Span::new(20_000, 80_000),
                Span::new(30_000, 10_000),
            ],
        );
        assert_eq!(a[0].primary, Some(1));
        assert_eq!(a[0].kernel_ns, 88_000);
        assert!(!a[0].hw);
    }

    #[test]
    fn tolerance_catches_a_record_just_outside_and_point_events_cover() {
        let a = at(
            &[Span::new(100_000, 10_000), Span::new(500_000, 40_000)],
            &[
                Span::new(110_000 + 3_000, 2_000),
                Span {
                    start: 520_000,
                    len: 0,
                    point: true,
                },
            ],
        );
        assert_eq!(a[0].entries, vec![0]);
        assert!(!a[0].hw);
        assert_eq!(a[1].kernel_ns, 40_000);
        assert!(!a[1].hw);
        assert_eq!(a[1].primary, Some(1));
    }
}
