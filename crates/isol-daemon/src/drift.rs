//! Audit drift: device IRQs and user tasks that land on the watched CPUs,
//! and which of them are new since the previous check.

use isol_cpulist::CpuSet;
use isol_system::{Root, SystemModel};
use std::collections::HashSet;

#[derive(Default)]
pub struct Drift {
    irqs: HashSet<u32>,
    tasks: HashSet<i32>,
    first: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DriftReport {
    pub irqs: usize,
    pub tasks: usize,
    pub new_irqs: usize,
    pub new_tasks: usize,
}

impl Drift {
    pub fn new() -> Drift {
        Drift {
            first: true,
            ..Default::default()
        }
    }

    /// Read the machine and compare with the previous check. The first
    /// check only sets the baseline.
    pub fn check(&mut self, root: &Root, cpus: &CpuSet) -> DriftReport {
        let m = SystemModel::probe(root);
        let mut irqs = HashSet::new();
        let mut tasks = HashSet::new();
        for c in m.per_cpu.iter().filter(|c| cpus.contains(c.cpu)) {
            irqs.extend(c.irqs.iter().map(|i| i.irq));
            tasks.extend(c.user_pinned.iter().map(|t| t.tid));
        }
        let r = DriftReport {
            irqs: irqs.len(),
            tasks: tasks.len(),
            new_irqs: if self.first {
                0
            } else {
                irqs.difference(&self.irqs).count()
            },
            new_tasks: if self.first {
                0
            } else {
                tasks.difference(&self.tasks).count()
            },
        };
        self.irqs = irqs;
        self.tasks = tasks;
        self.first = false;
        r
    }
}
