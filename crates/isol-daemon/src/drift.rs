//! Audit drift: device IRQs and user tasks that land on the watched CPUs,
//! and which of them are new since the previous check.

use isol_cpulist::CpuSet;
use isol_system::irq::Irqs;
use isol_system::topology::Topology;
use isol_system::Root;
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
        // Only IRQs and tasks: a full SystemModel would also probe kernel
        // features (creating a BPF map, whose freeing is work queued on some
        // CPU) and decompress the kernel config, every check.
        let online = Topology::probe(root).online;
        let all_irqs = Irqs::probe(root);
        let all_tasks = isol_system::tasks::probe(root);
        let mut irqs = HashSet::new();
        let mut tasks = HashSet::new();
        for c in cpus.iter() {
            irqs.extend(all_irqs.landing_on(c).map(|i| i.irq));
            tasks.extend(
                all_tasks
                    .iter()
                    .filter(|t| !t.kthread && t.pinned_to(c, &online))
                    .map(|t| t.tid),
            );
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
