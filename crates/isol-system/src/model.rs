//! The whole machine, as one serialisable value (`isol info --json`,
//! schema `isol.info/1`, documented in docs/json/info.md).

use crate::cgroup::Cgroups;
use crate::cmdline::{BootParams, IsolFlag};
use crate::features::Features;
use crate::irq::{Irq, Irqs};
use crate::tasks::{self, Task};
use crate::topology::Topology;
use crate::{Missing, Root};
use isol_cpulist::CpuSet;
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA: &str = "isol.info/1";

#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    pub release: String,
    pub version: String,
    pub machine: String,
}

/// What the kernel reports in /sys/devices/system/cpu.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SysfsIsolation {
    /// `isolated`: CPUs isolated from scheduler domains at boot.
    pub isolated: Option<CpuSet>,
    /// `nohz_full`: absent (None) when the kernel lacks NO_HZ_FULL.
    pub nohz_full: Option<CpuSet>,
}

impl SysfsIsolation {
    pub fn probe(root: &Root) -> SysfsIsolation {
        SysfsIsolation {
            isolated: sysfs_list(root, "devices/system/cpu/isolated"),
            nohz_full: sysfs_list(root, "devices/system/cpu/nohz_full"),
        }
    }
}

/// Which CPUs are isolated, and how, after combining every source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuSummary {
    pub online: CpuSet,
    /// Union of every kind of isolation below.
    pub isolated: CpuSet,
    pub housekeeping: CpuSet,
    pub nohz_full: CpuSet,
    /// Out of scheduler load balancing: isolcpus=domain or an isolated
    /// cgroup partition.
    pub domain: CpuSet,
    pub managed_irq: CpuSet,
    pub rcu_nocbs: CpuSet,
    pub cgroup_isolated: CpuSet,
}

impl CpuSummary {
    /// Only what says which CPUs are isolated (sysfs, the command line,
    /// cgroups): for callers that need nothing else of the machine.
    pub fn probe(root: &Root) -> CpuSummary {
        let online = crate::topology::online_cpus(root).unwrap_or_default();
        let possible = crate::topology::possible_cpus(root);
        let boot = BootParams::parse(
            &root.read(&root.proc("cmdline")).unwrap_or_default(),
            possible.as_ref(),
        );
        let sysfs = SysfsIsolation::probe(root);
        Self::assemble(&online, &boot, &sysfs, &Cgroups::probe(root))
    }

    fn assemble(
        online: &CpuSet,
        boot: &BootParams,
        sysfs: &SysfsIsolation,
        cgroups: &Cgroups,
    ) -> CpuSummary {
        let online = online.clone();
        // What the kernel applied wins over what the command line asked.
        let nohz_full = sysfs
            .nohz_full
            .clone()
            .unwrap_or_default()
            .intersection(&online);
        let isol = boot.isolcpus.as_ref();
        let flag_cpus = |f: IsolFlag| {
            isol.filter(|i| i.flags.contains(&f))
                .map(|i| i.cpus.clone())
                .unwrap_or_default()
        };
        let cgroup_isolated = cgroups.isolated_cpus();
        let boot_domain = sysfs
            .isolated
            .clone()
            .unwrap_or_else(|| flag_cpus(IsolFlag::Domain));
        let domain = boot_domain.union(&cgroup_isolated).intersection(&online);
        let managed_irq = flag_cpus(IsolFlag::ManagedIrq).intersection(&online);
        // nohz_full implies callback offloading (rcu_nocb_setup).
        let rcu_nocbs = boot
            .rcu_nocbs
            .clone()
            .unwrap_or_default()
            .union(&nohz_full)
            .intersection(&online);
        let isolated = nohz_full.union(&domain).union(&managed_irq);
        CpuSummary {
            housekeeping: online.difference(&isolated),
            online: online.clone(),
            isolated,
            nohz_full,
            domain,
            managed_irq,
            rcu_nocbs,
            cgroup_isolated,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuIsolation {
    pub nohz_full: bool,
    pub domain: bool,
    pub managed_irq: bool,
    pub rcu_nocbs: bool,
    pub cgroup_isolated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct IrqBrief {
    pub irq: u32,
    pub name: String,
    pub effective: CpuSet,
    pub affinity: CpuSet,
    pub managed: Option<bool>,
    /// Interrupts this CPU serviced since boot.
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskBrief {
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    pub allowed: CpuSet,
    /// The kernel will not let its affinity change (per-CPU kthread).
    pub fixed_affinity: bool,
    pub realtime: bool,
    pub state: char,
}

impl From<&Task> for TaskBrief {
    fn from(t: &Task) -> Self {
        TaskBrief {
            pid: t.pid,
            tid: t.tid,
            comm: t.comm.clone(),
            allowed: t.allowed.clone(),
            fixed_affinity: t.fixed_affinity,
            realtime: t.realtime,
            state: t.state,
        }
    }
}

/// One CPU: where it sits, how it is isolated, and what still lands on it.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    pub cpu: u32,
    pub core: Option<u32>,
    pub package: Option<u32>,
    pub node: Option<u32>,
    pub siblings: CpuSet,
    pub isolation: CpuIsolation,
    /// Device IRQs whose effective affinity includes this CPU.
    pub irqs: Vec<IrqBrief>,
    /// Architecture interrupts serviced since boot (LOC, RES, CAL, TLB ...).
    pub arch_irqs: BTreeMap<String, u64>,
    /// Kernel threads confined to a subset of CPUs that includes this one.
    pub kthreads: Vec<TaskBrief>,
    /// Kernel threads allowed on every online CPU (movable, unbound).
    pub kthreads_unbound: usize,
    /// User threads confined to a subset of CPUs that includes this one.
    pub user_pinned: Vec<TaskBrief>,
    /// User threads that are runnable and last ran here.
    pub user_running: Vec<TaskBrief>,
    /// User threads whose affinity allows this CPU.
    pub user_allowed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemModel {
    pub schema: &'static str,
    pub kernel: Kernel,
    pub topology: Topology,
    pub boot: BootParams,
    pub sysfs: SysfsIsolation,
    pub cgroups: Cgroups,
    pub cpus: CpuSummary,
    pub default_irq_affinity: Option<CpuSet>,
    pub per_cpu: Vec<CpuReport>,
    pub features: Features,
    /// Things this machine lacks for isolation or for isol's capture,
    /// each with its fix.
    pub missing: Vec<Missing>,
}

fn sysfs_list(root: &Root, rel: &str) -> Option<CpuSet> {
    // Older kernels print "(null)" for an empty nohz_full mask.
    root.read(&root.sys(rel))
        .map(|s| CpuSet::parse(&s).unwrap_or_default())
}

impl SystemModel {
    /// Read the whole machine. Never fails: what cannot be read is absent
    /// and, where it matters, listed in `missing`.
    pub fn probe(root: &Root) -> SystemModel {
        let uts = nix::sys::utsname::uname().ok();
        let s = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let kernel = Kernel {
            release: root
                .read(&root.proc("sys/kernel/osrelease"))
                .unwrap_or_else(|| s(|u| u.release())),
            version: root
                .read(&root.proc("sys/kernel/version"))
                .unwrap_or_else(|| s(|u| u.version())),
            machine: s(|u| u.machine()),
        };
        let topology = Topology::probe(root);
        let boot = BootParams::parse(
            &root.read(&root.proc("cmdline")).unwrap_or_default(),
            Some(&topology.possible),
        );
        let sysfs = SysfsIsolation::probe(root);
        let cgroups = Cgroups::probe(root);
        let irqs = Irqs::probe(root);
        let tasks = tasks::probe(root);
        let features = Features::probe(root, &kernel.release);
        Self::assemble(
            kernel, topology, boot, sysfs, cgroups, irqs, &tasks, features,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        kernel: Kernel,
        topology: Topology,
        boot: BootParams,
        sysfs: SysfsIsolation,
        cgroups: Cgroups,
        irqs: Irqs,
        tasks: &[Task],
        features: Features,
    ) -> SystemModel {
        let cpus = CpuSummary::assemble(&topology.online, &boot, &sysfs, &cgroups);
        let online = cpus.online.clone();

        let per_cpu = topology
            .cpus
            .iter()
            .map(|t| {
                let c = t.cpu;
                let brief = |i: &Irq| IrqBrief {
                    irq: i.irq,
                    name: i.name.clone(),
                    effective: i.effective.clone(),
                    affinity: i.affinity.clone(),
                    managed: i.managed,
                    count: i.counts.get(&c).copied().unwrap_or(0),
                };
                let allowed_here = |k: bool| {
                    tasks
                        .iter()
                        .filter(move |x| x.kthread == k && x.allowed.contains(c))
                };
                CpuReport {
                    cpu: c,
                    core: t.core,
                    package: t.package,
                    node: t.node,
                    siblings: t.siblings.clone(),
                    isolation: CpuIsolation {
                        nohz_full: cpus.nohz_full.contains(c),
                        domain: cpus.domain.contains(c),
                        managed_irq: cpus.managed_irq.contains(c),
                        rcu_nocbs: cpus.rcu_nocbs.contains(c),
                        cgroup_isolated: cpus.cgroup_isolated.contains(c),
                    },
                    irqs: irqs.landing_on(c).map(brief).collect(),
                    arch_irqs: irqs
                        .arch
                        .iter()
                        .filter_map(|a| Some((a.name.clone(), *a.counts.get(&c)?)))
                        .collect(),
                    kthreads: allowed_here(true)
                        .filter(|x| x.pinned_to(c, &online))
                        .map(TaskBrief::from)
                        .collect(),
                    kthreads_unbound: allowed_here(true)
                        .filter(|x| !x.pinned_to(c, &online))
                        .count(),
                    user_pinned: allowed_here(false)
                        .filter(|x| x.pinned_to(c, &online))
                        .map(TaskBrief::from)
                        .collect(),
                    user_running: allowed_here(false)
                        .filter(|x| x.last_cpu == Some(c) && x.state == 'R')
                        .map(TaskBrief::from)
                        .collect(),
                    user_allowed: allowed_here(false).count(),
                }
            })
            .collect();

        let mut missing = features.missing_for_isolation();
        missing.extend(features.missing_for_capture());
        SystemModel {
            schema: SCHEMA,
            kernel,
            default_irq_affinity: irqs.default_affinity.clone(),
            topology,
            boot,
            sysfs,
            cgroups,
            cpus,
            per_cpu,
            features,
            missing,
        }
    }

    pub fn cpu(&self, cpu: u32) -> Option<&CpuReport> {
        self.per_cpu.iter().find(|c| c.cpu == cpu)
    }
}
