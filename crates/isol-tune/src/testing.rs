//! Fixture trees for tests: a small machine under a temporary directory,
//! misconfigured in every runtime-fixable way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files of the fixture machine (2 CPUs), relative to its root.
pub const FILES: &[(&str, &str)] = &[
    ("proc/cmdline", "BOOT_IMAGE=/vmlinuz console=ttyS0 nohz_full=1 rcu_nocbs=1\n"),
    ("proc/sys/kernel/osrelease", "6.12.0-fixture\n"),
    ("proc/self/mounts", "proc /proc proc rw 0 0\n"),
    (
        "proc/interrupts",
        "           CPU0       CPU1       \n  4:          0        712   IO-APIC   4-edge      ttyS0\n 11:         90          0   IO-APIC  11-fasteoi   virtio0\n 24:          5          0   PCI-MSI 49152-edge      eth0\nLOC:      19710      17325   Local timer interrupts\n",
    ),
    ("proc/irq/default_smp_affinity", "3\n"),
    ("proc/irq/4/smp_affinity_list", "0-1\n"),
    ("proc/irq/4/effective_affinity_list", "1\n"),
    ("proc/irq/11/smp_affinity_list", "0-1\n"),
    ("proc/irq/11/effective_affinity_list", "0\n"),
    ("proc/irq/24/smp_affinity_list", "0\n"),
    ("proc/irq/24/effective_affinity_list", "0\n"),
    ("proc/sys/kernel/timer_migration", "1\n"),
    ("proc/sys/kernel/watchdog", "1\n"),
    ("proc/sys/kernel/watchdog_cpumask", "0-1\n"),
    ("proc/sys/kernel/nmi_watchdog", "1\n"),
    ("proc/sys/kernel/numa_balancing", "1\n"),
    ("proc/sys/vm/stat_interval", "1\n"),
    ("sys/devices/system/cpu/online", "0-1\n"),
    ("sys/devices/system/cpu/possible", "0-1\n"),
    ("sys/devices/system/cpu/present", "0-1\n"),
    ("sys/devices/system/cpu/isolated", "\n"),
    ("sys/devices/system/cpu/nohz_full", "1\n"),
    ("sys/devices/system/cpu/cpu1/cpufreq/scaling_governor", "powersave\n"),
    (
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_available_governors",
        "performance powersave\n",
    ),
    ("sys/devices/system/cpu/cpuidle/current_driver", "intel_idle\n"),
    ("sys/devices/system/cpu/cpu1/cpuidle/state0/name", "POLL\n"),
    ("sys/devices/system/cpu/cpu1/cpuidle/state0/latency", "0\n"),
    ("sys/devices/system/cpu/cpu1/cpuidle/state0/disable", "0\n"),
    ("sys/devices/system/cpu/cpu1/cpuidle/state1/name", "C6\n"),
    ("sys/devices/system/cpu/cpu1/cpuidle/state1/latency", "133\n"),
    ("sys/devices/system/cpu/cpu1/cpuidle/state1/disable", "0\n"),
    ("sys/devices/virtual/workqueue/cpumask", "3\n"),
    ("sys/devices/virtual/workqueue/writeback/cpumask", "3\n"),
    ("sys/devices/virtual/workqueue/writeback/per_cpu", "0\n"),
    // A regular file cannot show the kernel's `[always] madvise never`
    // and also take `never` on write; the bare word stands for it.
    ("sys/kernel/mm/transparent_hugepage/enabled", "always\n"),
    ("sys/kernel/mm/ksm/run", "1\n"),
];

/// Write the fixture under `dir`.
pub fn fixture(dir: &Path) -> std::io::Result<()> {
    for (rel, body) in FILES {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(p, body)?;
    }
    Ok(())
}

/// Every regular file under `dir` with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(b) = std::fs::read(&p) {
                out.insert(p, b);
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, &mut m);
    m
}
