//! Kernel addresses to symbol names, from /proc/kallsyms.

use std::collections::HashMap;

pub struct Ksyms {
    syms: Vec<(u64, String)>,
    /// Name -> address (first match), for tests and lookups by name.
    by_name: HashMap<String, u64>,
}

impl Ksyms {
    /// Load /proc/kallsyms. Without root the addresses read as zero
    /// (kptr_restrict); then nothing resolves and callers print hex.
    pub fn load() -> Ksyms {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Ksyms {
        let mut syms = Vec::new();
        let mut by_name = HashMap::new();
        for l in text.lines() {
            let mut f = l.split_whitespace();
            let (Some(a), Some(t), Some(n)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(a, 16) else {
                continue;
            };
            // Text symbols only: callbacks and stack frames are code.
            if addr == 0 || !matches!(t, "t" | "T" | "w" | "W") {
                continue;
            }
            by_name.entry(n.to_string()).or_insert(addr);
            syms.push((addr, n.to_string()));
        }
        syms.sort_by_key(|s| s.0);
        Ksyms { syms, by_name }
    }

    /// Addresses of `names` of any symbol type (data and per-CPU
    /// variables too; a per-CPU variable's address may be small, its
    /// offset in the per-CPU area). None where kallsyms does not list it
    /// (kernels without CONFIG_KALLSYMS_ALL list code only).
    pub fn addresses(names: &[&str]) -> Vec<Option<u64>> {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        Self::parse_addresses(&text, names)
    }

    fn parse_addresses(text: &str, names: &[&str]) -> Vec<Option<u64>> {
        let mut out = vec![None; names.len()];
        for l in text.lines() {
            let mut f = l.split_whitespace();
            let (Some(a), Some(_), Some(n), None) = (f.next(), f.next(), f.next(), f.next()) else {
                continue; // module symbols carry a fourth field
            };
            if let Some(i) = names.iter().position(|w| *w == n) {
                if out[i].is_none() {
                    out[i] = u64::from_str_radix(a, 16).ok();
                }
            }
        }
        out
    }

    pub fn addr_of(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// `(name, offset)` of the symbol containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        if addr == 0 {
            return None;
        }
        let i = self.syms.partition_point(|s| s.0 <= addr);
        let (a, n) = self.syms.get(i.checked_sub(1)?)?;
        Some((n.as_str(), addr - a))
    }

    /// A function pointer's name (no offset when it is the start).
    pub fn name(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some((n, 0)) => n.to_string(),
            Some((n, off)) => format!("{n}+{off:#x}"),
            None if addr == 0 => String::new(),
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_and_at_start() {
        let k = Ksyms::parse(
            "ffffffff81000000 T _stext\nffffffff81000100 t flush_tlb_func\nffffffff81000200 D data\nffffffff81000300 T end\n",
        );
        assert_eq!(k.name(0xffffffff81000100), "flush_tlb_func");
        assert_eq!(k.name(0xffffffff81000110), "flush_tlb_func+0x10");
        // Data symbols are skipped: an address there belongs to the code before.
        assert_eq!(k.name(0xffffffff81000210), "flush_tlb_func+0x110");
        assert_eq!(k.name(0x10), "0x10");
        assert_eq!(k.addr_of("end"), Some(0xffffffff81000300));
    }

    #[test]
    fn data_and_per_cpu_addresses() {
        let text = "0000000000000000 A fixed_percpu_data\n000000000001f2c0 D __preempt_count\nffffffff82a0b000 D __per_cpu_offset\nffffffffc0001000 t foo\t[mod]\n";
        let a = Ksyms::parse_addresses(
            text,
            &["__per_cpu_offset", "__preempt_count", "foo", "nope"],
        );
        assert_eq!(a, vec![Some(0xffffffff82a0b000), Some(0x1f2c0), None, None]);
    }
}
