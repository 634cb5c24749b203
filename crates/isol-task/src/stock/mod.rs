//! The stock-kernel backend: what the task isolation patch does in the
//! kernel, done from user space around the activating task.

pub mod memory;
pub mod quiesce;

use crate::error::{Error, Result};
use isol_cpulist::CpuSet;

/// A CPU list from a sysfs file; empty if absent or unreadable.
pub(crate) fn read_set(path: &str) -> CpuSet {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_default()
}

/// CPUs the kernel isolates: nohz_full, isolcpus, isolated cpuset partitions.
pub fn kernel_isolated() -> CpuSet {
    let mut s = read_set("/sys/devices/system/cpu/nohz_full");
    s = s.union(&read_set("/sys/devices/system/cpu/isolated"));
    s.union(&read_set("/sys/fs/cgroup/cpuset.cpus.isolated"))
}

pub fn current_affinity() -> Result<CpuSet> {
    // SAFETY: zeroed cpu_set_t is a valid empty set; size is its own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(Error::os("sched_getaffinity"));
    }
    let mut out = CpuSet::default();
    for c in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: c < CPU_SETSIZE.
        if unsafe { libc::CPU_ISSET(c, &set) } {
            out.insert(c as u32);
        }
    }
    Ok(out)
}

/// Step (a): the task must be affine to exactly one CPU, isolated unless
/// the configuration allows otherwise; returns it and whether the kernel
/// isolates it. Waits for the scheduler to move the task there.
pub fn check_affinity(allow_unisolated: bool) -> Result<(u32, bool)> {
    let aff = current_affinity()?;
    if aff.len() != 1 {
        return Err(Error::Affinity(format!(
            "this task may run on CPUs {aff}: pin it to exactly one isolated CPU first (sched_setaffinity, taskset -c N, or chisol --cpu N)"
        )));
    }
    let cpu = aff.iter().next().unwrap();
    let isolated = kernel_isolated().contains(cpu);
    if !isolated && !allow_unisolated {
        return Err(Error::Affinity(format!(
            "CPU {cpu} is not isolated by the kernel (not in nohz_full=, isolcpus= or an isolated cpuset): `isol audit` says how; for tests set allow_unisolated (ISOL_ALLOW_UNISOLATED=1)"
        )));
    }
    // SAFETY: plain libc calls.
    while unsafe { libc::sched_getcpu() } != cpu as i32 {
        unsafe { libc::sched_yield() };
    }
    Ok((cpu, isolated))
}
