//! Device IRQs and where they land: /proc/irq/N/*_affinity_list and the
//! names and per-CPU counts in /proc/interrupts.

use crate::Root;
use isol_cpulist::CpuSet;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Irq {
    pub irq: u32,
    /// Action names from /proc/interrupts (`ttyS0`, `virtio0-input.0`).
    pub name: String,
    /// Chip and type columns (`IO-APIC 4-edge`), to tell MSI from legacy.
    pub chip: String,
    /// What the user asked for (`smp_affinity_list`).
    pub affinity: CpuSet,
    /// Where the interrupt is really delivered (`effective_affinity_list`);
    /// falls back to `affinity` on kernels without it.
    pub effective: CpuSet,
    /// Kernel-managed (multiqueue) IRQ: affinity cannot be changed from
    /// user space; only `isolcpus=managed_irq` keeps it off a CPU. `None`
    /// when the kernel does not say (no irq debugfs).
    pub managed: Option<bool>,
    /// Interrupts serviced per CPU since boot, indexed by CPU number.
    pub counts: BTreeMap<u32, u64>,
}

/// Architecture interrupt lines of /proc/interrupts (LOC, RES, CAL, TLB,
/// IWI ...): the per-CPU noise that has no /proc/irq directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchIrq {
    pub name: String,
    pub description: String,
    pub counts: BTreeMap<u32, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Irqs {
    pub default_affinity: Option<CpuSet>,
    pub device: Vec<Irq>,
    pub arch: Vec<ArchIrq>,
}

struct Line {
    label: String,
    counts: BTreeMap<u32, u64>,
    rest: String,
}

/// Parse /proc/interrupts: a header of CPU names, then one line per IRQ.
fn parse_interrupts(text: &str) -> Vec<Line> {
    let mut lines = text.lines();
    let cpus: Vec<u32> = match lines.next() {
        Some(h) => h
            .split_whitespace()
            .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
            .collect(),
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    for l in lines {
        let Some((label, tail)) = l.split_once(':') else {
            continue;
        };
        let mut counts = BTreeMap::new();
        let mut words = tail.split_whitespace().peekable();
        for &cpu in &cpus {
            match words.peek().and_then(|w| w.parse::<u64>().ok()) {
                Some(v) => {
                    counts.insert(cpu, v);
                    words.next();
                }
                None => break,
            }
        }
        out.push(Line {
            label: label.trim().to_string(),
            counts,
            rest: words.collect::<Vec<_>>().join(" "),
        });
    }
    out
}

/// Only the architecture lines of /proc/interrupts (one read, no
/// /proc/irq walk): cheap enough to take before and after a capture.
pub fn arch_interrupts(root: &Root) -> Vec<ArchIrq> {
    let text = std::fs::read_to_string(root.proc("interrupts")).unwrap_or_default();
    parse_interrupts(&text)
        .into_iter()
        .filter(|l| l.label.parse::<u32>().is_err())
        .map(|l| ArchIrq {
            name: l.label,
            description: l.rest,
            counts: l.counts,
        })
        .collect()
}

impl Irqs {
    pub fn probe(root: &Root) -> Irqs {
        let text = std::fs::read_to_string(root.proc("interrupts")).unwrap_or_default();
        let lines = parse_interrupts(&text);
        let mut irqs = Irqs {
            default_affinity: root
                .read(&root.proc("irq/default_smp_affinity"))
                .and_then(|m| CpuSet::parse_mask(&m).ok()),
            ..Default::default()
        };
        let mut names: BTreeMap<u32, &Line> = BTreeMap::new();
        for l in &lines {
            match l.label.parse::<u32>() {
                Ok(n) => {
                    names.insert(n, l);
                }
                Err(_) => irqs.arch.push(ArchIrq {
                    name: l.label.clone(),
                    description: l.rest.clone(),
                    counts: l.counts.clone(),
                }),
            }
        }
        let Ok(rd) = std::fs::read_dir(root.proc("irq")) else {
            return irqs;
        };
        for e in rd.flatten() {
            let Ok(n) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let dir = e.path();
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .ok()
                    .and_then(|s| CpuSet::parse(s.trim()).ok())
            };
            let Some(affinity) = read("smp_affinity_list") else {
                continue;
            };
            let effective = read("effective_affinity_list").unwrap_or_else(|| affinity.clone());
            let line = names.get(&n);
            let rest = line.map(|l| l.rest.as_str()).unwrap_or("");
            // The action names follow chip, hwirq and trigger type; the
            // sub-directories of /proc/irq/N are named after the actions.
            let mut actions: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|d| d.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .collect();
            actions.sort();
            let name = if actions.is_empty() {
                rest.split_whitespace().last().unwrap_or("").to_string()
            } else {
                actions.join(",")
            };
            // The kernel exports the managed flag only in debugfs
            // (CONFIG_GENERIC_IRQ_DEBUGFS); unknown otherwise.
            let managed = std::fs::read_to_string(root.sys(&format!("kernel/debug/irq/irqs/{n}")))
                .ok()
                .map(|s| s.contains("AFFINITY_MANAGED"));
            irqs.device.push(Irq {
                irq: n,
                name,
                chip: rest.to_string(),
                affinity,
                effective,
                managed,
                counts: line.map(|l| l.counts.clone()).unwrap_or_default(),
            });
        }
        irqs.device.sort_by_key(|i| i.irq);
        irqs
    }

    /// Device IRQs whose effective affinity includes `cpu`.
    pub fn landing_on(&self, cpu: u32) -> impl Iterator<Item = &Irq> {
        self.device
            .iter()
            .filter(move |i| i.effective.contains(cpu))
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        // /proc/interrupts shaped text with hostile columns: never a panic,
        // and a count is only ever taken for a CPU the header names.
        #[test]
        fn any_interrupts_text_parses_without_panic(
            header in proptest::collection::vec("CPU[0-9]{0,4}|[A-Z]{0,4}", 0..6),
            rows in proptest::collection::vec(
                ("[A-Z0-9 ]{0,5}", proptest::collection::vec("[0-9]{0,22}|\\PC{0,6}", 0..8)),
                0..10,
            ),
        ) {
            let mut text = header.join("  ");
            for (label, cols) in &rows {
                text.push_str(&format!("\n{label}: {}", cols.join(" ")));
            }
            let cpus: Vec<u32> = header.iter().filter_map(|c| c.strip_prefix("CPU")?.parse().ok()).collect();
            for l in parse_interrupts(&text) {
                proptest::prop_assert!(l.counts.keys().all(|c| cpus.contains(c)));
            }
        }
    }

    use super::*;

    #[test]
    fn interrupts_table() {
        let t = "           CPU0       CPU1       \n  0:         44          0   IO-APIC   2-edge      timer\n  4:          0        712   IO-APIC   4-edge      ttyS0\nNMI:          0          0   Non-maskable interrupts\nLOC:      19710      17325   Local timer interrupts\nERR:          0\n";
        let l = parse_interrupts(t);
        assert_eq!(l.len(), 5);
        assert_eq!(l[1].label, "4");
        assert_eq!(l[1].counts[&1], 712);
        assert_eq!(l[1].rest, "IO-APIC 4-edge ttyS0");
        assert_eq!(l[3].rest, "Local timer interrupts");
        assert_eq!(l[4].counts.len(), 1);
    }
}
