//! CPUs, SMT siblings and NUMA nodes from /sys/devices/system.

use crate::Root;
use isol_cpulist::CpuSet;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuTopo {
    pub cpu: u32,
    pub core: Option<u32>,
    pub package: Option<u32>,
    /// SMT siblings including the CPU itself.
    pub siblings: CpuSet,
    pub node: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub online: CpuSet,
    pub possible: CpuSet,
    pub present: CpuSet,
    /// Online CPUs only.
    pub cpus: Vec<CpuTopo>,
    pub nodes: Vec<Node>,
    pub smt_active: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub node: u32,
    pub cpus: CpuSet,
}

fn list(root: &Root, rel: &str) -> Option<CpuSet> {
    root.read(&root.sys(rel))
        .and_then(|s| CpuSet::parse(&s).ok())
}

/// Online CPUs (one sysfs read: for callers that need nothing else).
pub fn online_cpus(root: &Root) -> Option<CpuSet> {
    list(root, "devices/system/cpu/online")
}

/// Possible CPUs (the size of the kernel's CPU masks).
pub fn possible_cpus(root: &Root) -> Option<CpuSet> {
    list(root, "devices/system/cpu/possible")
}

impl Topology {
    pub fn probe(root: &Root) -> Topology {
        let base = "devices/system/cpu";
        let online = list(root, &format!("{base}/online")).unwrap_or_default();
        let possible = list(root, &format!("{base}/possible")).unwrap_or_else(|| online.clone());
        let present = list(root, &format!("{base}/present")).unwrap_or_else(|| online.clone());

        let mut nodes = Vec::new();
        if let Ok(rd) = std::fs::read_dir(root.sys("devices/system/node")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = name.strip_prefix("node").and_then(|n| n.parse().ok()) {
                    let cpus = list(root, &format!("devices/system/node/{name}/cpulist"))
                        .unwrap_or_default();
                    nodes.push(Node { node: n, cpus });
                }
            }
        }
        nodes.sort_by_key(|n| n.node);

        let num = |rel: String| root.read(&root.sys(&rel)).and_then(|s| s.parse().ok());
        let cpus = online
            .iter()
            .map(|cpu| {
                let t = format!("{base}/cpu{cpu}/topology");
                CpuTopo {
                    cpu,
                    core: num(format!("{t}/core_id")),
                    package: num(format!("{t}/physical_package_id")),
                    siblings: list(root, &format!("{t}/thread_siblings_list"))
                        .unwrap_or_else(|| CpuSet::single(cpu)),
                    node: nodes.iter().find(|n| n.cpus.contains(cpu)).map(|n| n.node),
                }
            })
            .collect();
        let smt_active = root
            .read(&root.sys(&format!("{base}/smt/active")))
            .map(|s| s == "1");
        Topology {
            online,
            possible,
            present,
            cpus,
            nodes,
            smt_active,
        }
    }

    pub fn cpu(&self, cpu: u32) -> Option<&CpuTopo> {
        self.cpus.iter().find(|c| c.cpu == cpu)
    }

    /// Number of distinct physical cores among online CPUs.
    pub fn cores(&self) -> usize {
        let mut seen: Vec<&CpuSet> = self.cpus.iter().map(|c| &c.siblings).collect();
        seen.sort();
        seen.dedup();
        seen.len()
    }
}
