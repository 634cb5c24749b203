//! The kernel's CPU-list format, as used by `isolcpus=`, `nohz_full=`,
//! `/sys/devices/system/cpu/online`, `/proc/irq/*/smp_affinity_list`,
//! `Cpus_allowed_list` and tracefs `CPUS{}` filters: `0-3,8,10-11`.
//!
//! Also reads the hex mask form (`smp_affinity`, `cpus_allowed` in sysfs:
//! `ff,00000001`). Every other crate of isol takes and prints CPU sets
//! through [`CpuSet`], so one parser decides what is valid.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Largest CPU number accepted. The kernel's NR_CPUS maximum is 8192; a
/// bound keeps a typo like `0-4000000000` from allocating gigabytes.
pub const MAX_CPU: u32 = 8191;

/// Why a CPU list was rejected. Messages quote the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty item in CPU list {list:?} (stray comma?)")]
    EmptyItem { list: String },
    #[error("{item:?} in CPU list {list:?} is not a CPU number")]
    NotANumber { list: String, item: String },
    #[error("CPU {cpu} in {list:?} is above the maximum {max}", max = MAX_CPU)]
    TooLarge { list: String, cpu: u64 },
    #[error("range {item:?} in CPU list {list:?} runs backwards")]
    Backwards { list: String, item: String },
    #[error("stride in {item:?} of CPU list {list:?} must be a group size 1..=range length, like 0-7:2/4")]
    BadStride { list: String, item: String },
    #[error("{mask:?} is not a hexadecimal CPU mask")]
    BadMask { mask: String },
}

/// A set of CPU numbers. Ordered, so printing is canonical.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse the list form. Accepts what the kernel's `bitmap_parselist`
    /// accepts, including `N-M:used/group` strides, and `all`/`none`
    /// only when `all` is given (the kernel resolves `all` against
    /// nr_cpu_ids, which only the caller knows).
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::parse_with_all(s, None)
    }

    /// As [`CpuSet::parse`], resolving the keyword `all` to `all` and `N`
    /// (kernel >= 6.2 "last CPU" alias) to its highest member.
    pub fn parse_with_all(s: &str, all: Option<&CpuSet>) -> Result<Self, ParseError> {
        let list = s.trim();
        let mut set = BTreeSet::new();
        if list.is_empty() {
            return Ok(CpuSet(set));
        }
        let last = all.and_then(|a| a.last());
        for raw in list.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                return Err(ParseError::EmptyItem { list: list.into() });
            }
            if item == "all" {
                if let Some(a) = all {
                    set.extend(a.iter());
                    continue;
                }
            }
            let (range, stride) = match item.split_once(':') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            let num = |t: &str| -> Result<u32, ParseError> {
                let t = t.trim();
                if t == "N" {
                    if let Some(l) = last {
                        return Ok(l);
                    }
                }
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::NotANumber {
                        list: list.into(),
                        item: item.into(),
                    });
                }
                let v: u64 = t.parse().map_err(|_| ParseError::TooLarge {
                    list: list.into(),
                    cpu: u64::MAX,
                })?;
                if v > MAX_CPU as u64 {
                    return Err(ParseError::TooLarge {
                        list: list.into(),
                        cpu: v,
                    });
                }
                Ok(v as u32)
            };
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let v = num(range)?;
                    (v, v)
                }
            };
            if hi < lo {
                return Err(ParseError::Backwards {
                    list: list.into(),
                    item: item.into(),
                });
            }
            match stride {
                None => set.extend(lo..=hi),
                Some(st) => {
                    let bad = || ParseError::BadStride {
                        list: list.into(),
                        item: item.into(),
                    };
                    let (used, group) = st.split_once('/').ok_or_else(bad)?;
                    let used: u32 = used.trim().parse().map_err(|_| bad())?;
                    let group: u32 = group.trim().parse().map_err(|_| bad())?;
                    if used == 0 || group == 0 || used > group || group > hi - lo + 1 {
                        return Err(bad());
                    }
                    let mut base = lo;
                    while base <= hi {
                        for c in base..(base + used).min(hi + 1) {
                            set.insert(c);
                        }
                        base = match base.checked_add(group) {
                            Some(b) => b,
                            None => break,
                        };
                    }
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// Parse the hex mask form: comma-separated 32-bit words, most
    /// significant first (`/proc/irq/N/smp_affinity`).
    pub fn parse_mask(s: &str) -> Result<Self, ParseError> {
        let mask = s.trim();
        let bad = || ParseError::BadMask { mask: mask.into() };
        if mask.is_empty() {
            return Err(bad());
        }
        let words: Vec<&str> = mask.split(',').collect();
        let mut set = BTreeSet::new();
        for (i, w) in words.iter().rev().enumerate() {
            let w = w.trim().trim_start_matches("0x");
            if w.is_empty() || w.len() > 8 {
                return Err(bad());
            }
            let v = u32::from_str_radix(w, 16).map_err(|_| bad())?;
            for bit in 0..32 {
                if v & (1 << bit) != 0 {
                    let cpu = i as u64 * 32 + bit;
                    if cpu > MAX_CPU as u64 {
                        return Err(ParseError::TooLarge {
                            list: mask.into(),
                            cpu,
                        });
                    }
                    set.insert(cpu as u32);
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// The hex mask form, in 32-bit words as the kernel prints it.
    pub fn to_mask(&self) -> String {
        let words = self.last().map_or(1, |l| l as usize / 32 + 1);
        let mut v = vec![0u32; words];
        for c in self.iter() {
            v[c as usize / 32] |= 1 << (c % 32);
        }
        v.iter()
            .rev()
            .map(|w| format!("{w:08x}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn single(cpu: u32) -> Self {
        CpuSet(BTreeSet::from([cpu]))
    }

    pub fn insert(&mut self, cpu: u32) -> bool {
        self.0.insert(cpu)
    }
    pub fn remove(&mut self, cpu: u32) -> bool {
        self.0.remove(&cpu)
    }
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }
    pub fn last(&self) -> Option<u32> {
        self.0.last().copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    pub fn union(&self, o: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&o.0).copied().collect())
    }
    pub fn intersection(&self, o: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&o.0).copied().collect())
    }
    pub fn difference(&self, o: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&o.0).copied().collect())
    }
    pub fn is_subset(&self, o: &CpuSet) -> bool {
        self.0.is_subset(&o.0)
    }
    pub fn intersects(&self, o: &CpuSet) -> bool {
        !self.0.is_disjoint(&o.0)
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuSet(iter.into_iter().collect())
    }
}

impl FromStr for CpuSet {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        CpuSet::parse(s)
    }
}

/// Canonical list form: ascending, ranges of 2+ CPUs collapsed (`0-3,8`),
/// empty set printed as the empty string, as the kernel does.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut it = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&(hi + 1)) {
                hi = it.next().unwrap();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

/// Serialized as the list string, so JSON carries `"1-3"` exactly as the
/// kernel prints it.
impl serde::Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CpuSet::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    #[test]
    fn kernel_forms() {
        assert_eq!(p("0-3,8,10-11").to_string(), "0-3,8,10-11");
        assert_eq!(p("").len(), 0);
        assert_eq!(p(" 1 \n").to_string(), "1");
        assert_eq!(p("3,1,2").to_string(), "1-3");
        assert_eq!(p("0-7:2/4").to_string(), "0-1,4-5");
        assert_eq!(p("1,1,1").len(), 1);
    }

    #[test]
    fn all_and_last_keywords() {
        let online = p("0-3");
        assert_eq!(
            CpuSet::parse_with_all("all", Some(&online)).unwrap(),
            online
        );
        assert_eq!(
            CpuSet::parse_with_all("2-N", Some(&online))
                .unwrap()
                .to_string(),
            "2-3"
        );
        assert!(CpuSet::parse("all").is_err());
    }

    #[test]
    fn garbage_is_rejected_with_the_offending_part_named() {
        for (bad, needle) in [
            ("1,,2", "empty item"),
            ("a", "\"a\""),
            ("1-", "\"1-\""),
            ("-1", "\"-1\""),
            ("3-1", "backwards"),
            ("99999", "above the maximum"),
            ("0-40000000000", "above the maximum"),
            ("0-7:0/4", "stride"),
            ("0-7:5/4", "stride"),
            ("1.5", "\"1.5\""),
            ("+1", "\"+1\""),
        ] {
            let e = CpuSet::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(CpuSet::parse_mask("ff").unwrap().to_string(), "0-7");
        assert_eq!(
            CpuSet::parse_mask("00000001,00000002").unwrap().to_string(),
            "1,32"
        );
        assert_eq!(p("1,32").to_mask(), "00000001,00000002");
        assert_eq!(CpuSet::new().to_mask(), "00000000");
        assert!(CpuSet::parse_mask("xyz").is_err());
        assert!(CpuSet::parse_mask("").is_err());
    }

    #[test]
    fn serde_is_the_list_string() {
        let s = serde_json::to_string(&p("0-2,5")).unwrap();
        assert_eq!(s, "\"0-2,5\"");
        let back: CpuSet = serde_json::from_str(&s).unwrap();
        assert_eq!(back, p("0-2,5"));
        assert!(serde_json::from_str::<CpuSet>("\"1-\"").is_err());
    }

    proptest! {
        #[test]
        fn print_parse_roundtrip(cpus in proptest::collection::btree_set(0u32..=MAX_CPU, 0..64)) {
            let set: CpuSet = cpus.iter().copied().collect();
            let back = CpuSet::parse(&set.to_string()).unwrap();
            prop_assert_eq!(&back, &set);
            let back = CpuSet::parse_mask(&set.to_mask()).unwrap();
            prop_assert_eq!(back, set);
        }

        #[test]
        fn never_panics_and_accepts_only_canonicalizable(s in "[0-9,\\-:/ aN]{0,24}") {
            if let Ok(set) = CpuSet::parse(&s) {
                // Whatever is accepted prints to a form that parses to the same set.
                prop_assert_eq!(CpuSet::parse(&set.to_string()).unwrap(), set);
            }
        }

        #[test]
        fn ranges_match_naive_expansion(lo in 0u32..200, len in 0u32..200) {
            let hi = lo + len;
            let set = CpuSet::parse(&format!("{lo}-{hi}")).unwrap();
            prop_assert_eq!(set.len() as u32, len + 1);
            prop_assert_eq!(set.first(), Some(lo));
            prop_assert_eq!(set.last(), Some(hi));
        }
    }
}
