//! cgroup v2 cpuset partitions. `cpuset.cpus.partition = isolated` (6.1+)
//! takes CPUs out of load balancing at run time, the dynamic equivalent of
//! `isolcpus=domain`.

use crate::Root;
use isol_cpulist::CpuSet;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Path relative to the cgroup2 mount (`/rt/app`).
    pub path: String,
    /// `isolated`, `root`, or an `... invalid (reason)` state.
    pub state: String,
    pub cpus: CpuSet,
    pub valid: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cgroups {
    /// Where cgroup2 is mounted, if anywhere.
    pub mount: Option<PathBuf>,
    /// The cpuset controller is enabled for cgroup2 (not bound to v1).
    pub cpuset_v2: bool,
    /// Root's `cpuset.cpus.isolated` (6.8+): every CPU in an isolated
    /// partition, as the kernel sums them.
    pub isolated: Option<CpuSet>,
    pub partitions: Vec<Partition>,
}

impl Cgroups {
    pub fn probe(root: &Root) -> Cgroups {
        let mounts = std::fs::read_to_string(root.proc("self/mounts")).unwrap_or_default();
        let Some(mnt) = mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_string())
        }) else {
            return Cgroups::default();
        };
        let dir = root.path(&mnt);
        let controllers = root
            .read(&dir.join("cgroup.controllers"))
            .unwrap_or_default();
        let mut cg = Cgroups {
            mount: Some(PathBuf::from(&mnt)),
            cpuset_v2: controllers.split_whitespace().any(|c| c == "cpuset"),
            isolated: root
                .read(&dir.join("cpuset.cpus.isolated"))
                .and_then(|s| CpuSet::parse(&s).ok()),
            partitions: Vec::new(),
        };
        if cg.cpuset_v2 {
            walk(root, &dir, &dir, 0, &mut cg.partitions);
        }
        cg
    }

    /// CPUs in valid isolated partitions.
    pub fn isolated_cpus(&self) -> CpuSet {
        if let Some(i) = &self.isolated {
            return i.clone();
        }
        self.partitions
            .iter()
            .filter(|p| p.valid && p.state == "isolated")
            .fold(CpuSet::new(), |a, p| a.union(&p.cpus))
    }
}

/// cgroup trees are shallow; the depth bound only guards against loops.
fn walk(root: &Root, top: &Path, dir: &Path, depth: usize, out: &mut Vec<Partition>) {
    if depth > 32 {
        return;
    }
    if let Some(state) = root.read(&dir.join("cpuset.cpus.partition")) {
        if state.starts_with("isolated") {
            let cpus = root
                .read(&dir.join("cpuset.cpus.effective"))
                .and_then(|s| CpuSet::parse(&s).ok())
                .unwrap_or_default();
            let rel = dir.strip_prefix(top).unwrap_or(dir);
            out.push(Partition {
                path: format!("/{}", rel.display()),
                valid: !state.contains("invalid"),
                state,
                cpus,
            });
        }
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, top, &e.path(), depth + 1, out);
        }
    }
}
