//! Where isol's own threads run. Everything isol does besides a
//! deliberate measurement thread stays on housekeeping CPUs, so the CPUs
//! it watches see nothing of it.

use crate::Root;
use isol_cpulist::CpuSet;

/// Pin the calling thread (and the threads it creates later) to `cpus`.
pub fn pin_current_thread(cpus: &CpuSet) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for c in cpus.iter() {
        set.set(c as usize)
            .map_err(|_| format!("CPU {c} is beyond what sched_setaffinity takes"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("pinning to CPUs {cpus}: {e}"))
}

/// Pin the calling thread to the online CPUs outside `watched` and return
/// them; an error if none is left for isol itself.
pub fn pin_away_from(watched: &CpuSet) -> Result<CpuSet, String> {
    let online = crate::topology::online_cpus(&Root::default())
        .ok_or("cannot read /sys/devices/system/cpu/online")?;
    let hk = online.difference(watched);
    if hk.is_empty() {
        return Err(format!(
            "every online CPU ({online}) is watched; leave at least one housekeeping CPU for isol itself"
        ));
    }
    pin_current_thread(&hk)?;
    Ok(hk)
}
