//! Tasks (threads) and the CPUs they may run on, from /proc/PID/task/TID.

use crate::Root;
use isol_cpulist::CpuSet;
use serde::Serialize;

/// PF_KTHREAD from include/linux/sched.h: the task is a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;
/// PF_NO_SETAFFINITY: user space may not change this task's affinity
/// (per-CPU kthreads such as ksoftirqd/N, migration/N, cpuhp/N).
const PF_NO_SETAFFINITY: u32 = 0x0400_0000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    pub kthread: bool,
    /// CPUs the scheduler may run it on (`Cpus_allowed_list`).
    pub allowed: CpuSet,
    /// CPU it last ran on.
    pub last_cpu: Option<u32>,
    /// Scheduler state letter (`R` running/runnable, `S`, `D`, `I` ...).
    pub state: char,
    /// The kernel refuses affinity changes (bound per-CPU kthread).
    pub fixed_affinity: bool,
    /// SCHED_FIFO / SCHED_RR.
    pub realtime: bool,
}

impl Task {
    /// Runs only on a subset of CPUs that includes `cpu` and is smaller
    /// than all online CPUs: it was put there on purpose.
    pub fn pinned_to(&self, cpu: u32, online: &CpuSet) -> bool {
        self.allowed.contains(cpu) && !online.is_subset(&self.allowed)
    }
}

/// All threads of all processes. Tasks that exit while being read are
/// skipped silently: that is a race, not an error.
pub fn probe(root: &Root) -> Vec<Task> {
    let mut out = Vec::new();
    let Ok(procs) = procfs::process::all_processes_with_root(&root.proc) else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(tasks) = p.tasks() else { continue };
        for t in tasks.flatten() {
            let Ok(stat) = t.stat() else { continue };
            // Only one line of status is needed; procfs's full Status parse
            // costs more and fails on fields this kernel may lack.
            let status = root.proc(&format!("{}/task/{}/status", t.pid, t.tid));
            let Some(allowed) = std::fs::read_to_string(status).ok().and_then(|s| {
                let v = s
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
                CpuSet::parse(v).ok()
            }) else {
                continue;
            };
            out.push(Task {
                pid: t.pid,
                tid: t.tid,
                comm: stat.comm.clone(),
                kthread: stat.flags & PF_KTHREAD != 0,
                allowed,
                last_cpu: stat.processor.and_then(|c| u32::try_from(c).ok()),
                state: stat.state,
                fixed_affinity: stat.flags & PF_NO_SETAFFINITY != 0,
                realtime: matches!(stat.policy, Some(1) | Some(2)),
            });
        }
    }
    out
}
