//! The system model on a synthetic 4-CPU machine: nohz_full=2-3,
//! isolcpus=managed_irq,domain,2-3, one IRQ left on CPU 3, a per-CPU
//! kthread and a user task pinned to CPU 3, a cgroup partition.

use isol_system::{Root, SystemModel};
use std::fs;
use std::path::Path;

fn w(base: &Path, rel: &str, text: &str) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn stat_line(pid: i32, comm: &str, cpu: u32, flags: u32, state: char) -> String {
    // 52 fields as in proc(5); only comm, state, flags, processor, policy matter here.
    let mut f: Vec<String> = vec![pid.to_string(), format!("({comm})"), state.to_string()];
    f.extend((4..=52).map(|_| "0".to_string()));
    f[8] = flags.to_string(); // field 9: flags
    f[38] = cpu.to_string(); // field 39: processor
    f.join(" ") + "\n"
}

fn task(base: &Path, pid: i32, comm: &str, allowed: &str, cpu: u32, kthread: bool, state: char) {
    let flags = if kthread {
        0x0020_0000 | 0x0400_0000
    } else {
        0
    };
    let st = stat_line(pid, comm, cpu, flags, state);
    let status = format!("Name:\t{comm}\nState:\t{state} (x)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\nCpus_allowed_list:\t{allowed}\n");
    for d in [format!("proc/{pid}"), format!("proc/{pid}/task/{pid}")] {
        w(base, &format!("{d}/stat"), &st);
        w(base, &format!("{d}/status"), &status);
    }
}

fn machine(base: &Path) {
    w(base, "proc/cmdline", "BOOT_IMAGE=/vmlinuz nohz_full=2-3 isolcpus=managed_irq,domain,2-3 irqaffinity=0-1 nosoftlockup\n");
    w(base, "proc/sys/kernel/osrelease", "6.12.0-test\n");
    w(
        base,
        "proc/self/status",
        "Name:\tisol\nCapEff:\t000001ffffffffff\n",
    );
    w(base, "proc/filesystems", "nodev\tsysfs\nnodev\ttracefs\n");
    w(
        base,
        "proc/self/mounts",
        "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n",
    );
    let cpu = "sys/devices/system/cpu";
    w(base, &format!("{cpu}/online"), "0-3\n");
    w(base, &format!("{cpu}/possible"), "0-3\n");
    w(base, &format!("{cpu}/isolated"), "2-3\n");
    w(base, &format!("{cpu}/nohz_full"), "2-3\n");
    for c in 0..4 {
        w(
            base,
            &format!("{cpu}/cpu{c}/topology/core_id"),
            &format!("{}\n", c / 2),
        );
        w(
            base,
            &format!("{cpu}/cpu{c}/topology/physical_package_id"),
            "0\n",
        );
        let sib = if c < 2 { "0-1" } else { "2-3" };
        w(
            base,
            &format!("{cpu}/cpu{c}/topology/thread_siblings_list"),
            &format!("{sib}\n"),
        );
    }
    w(base, "sys/devices/system/node/node0/cpulist", "0-3\n");
    w(base, "sys/kernel/btf/vmlinux", "");
    w(base, "proc/irq/default_smp_affinity", "3\n");
    for (n, eff, name) in [(4, "0", "ttyS0"), (11, "3", "eth0")] {
        w(base, &format!("proc/irq/{n}/smp_affinity_list"), "0-3\n");
        w(
            base,
            &format!("proc/irq/{n}/effective_affinity_list"),
            &format!("{eff}\n"),
        );
        fs::create_dir_all(base.join(format!("proc/irq/{n}/{name}"))).unwrap();
    }
    w(
        base,
        "proc/interrupts",
        "           CPU0       CPU1       CPU2       CPU3\n  4:         10          0          0          0   IO-APIC   4-edge      ttyS0\n 11:          0          0          0        777   IO-APIC  11-fasteoi   eth0\nLOC:        100        100          5          6   Local timer interrupts\n",
    );
    w(
        base,
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu memory\n",
    );
    w(base, "sys/fs/cgroup/rt/cpuset.cpus.partition", "isolated\n");
    w(base, "sys/fs/cgroup/rt/cpuset.cpus.effective", "3\n");
    task(base, 1, "init", "0-3", 0, false, 'S');
    task(base, 20, "ksoftirqd/3", "3", 3, true, 'S');
    task(base, 21, "kworker/u8:0", "0-3", 1, true, 'I');
    task(base, 300, "spin", "3", 3, false, 'R');
}

#[test]
fn model_of_a_synthetic_isolated_machine() {
    let dir = tempfile::tempdir().unwrap();
    machine(dir.path());
    let m = SystemModel::probe(&Root::at(dir.path()));
    assert_eq!(m.kernel.release, "6.12.0-test");
    assert_eq!(m.cpus.online.to_string(), "0-3");
    assert_eq!(m.cpus.nohz_full.to_string(), "2-3");
    assert_eq!(m.cpus.domain.to_string(), "2-3");
    assert_eq!(m.cpus.managed_irq.to_string(), "2-3");
    assert_eq!(m.cpus.rcu_nocbs.to_string(), "2-3");
    assert_eq!(m.cpus.cgroup_isolated.to_string(), "3");
    assert_eq!(m.cpus.isolated.to_string(), "2-3");
    assert_eq!(m.cpus.housekeeping.to_string(), "0-1");
    assert_eq!(m.default_irq_affinity.as_ref().unwrap().to_string(), "0-1");
    assert_eq!(m.topology.cores(), 2);

    let c3 = m.cpu(3).unwrap();
    assert!(c3.isolation.nohz_full && c3.isolation.domain && c3.isolation.cgroup_isolated);
    assert_eq!(c3.irqs.len(), 1);
    assert_eq!(c3.irqs[0].name, "eth0");
    assert_eq!(c3.irqs[0].count, 777);
    assert_eq!(c3.arch_irqs["LOC"], 6);
    assert_eq!(c3.kthreads.len(), 1);
    assert!(c3.kthreads[0].fixed_affinity);
    assert_eq!(c3.kthreads_unbound, 1);
    assert_eq!(c3.user_pinned[0].comm, "spin");
    assert_eq!(c3.user_running.len(), 1);
    assert_eq!(c3.user_allowed, 2);
    assert!(m.cpu(2).unwrap().irqs.is_empty());
    assert!(m.cpu(0).unwrap().user_pinned.is_empty());

    assert!(m.features.nohz_full_support);
    assert!(m.features.btf);
    // Not mounted in the fixture, but this "process" has CAP_SYS_ADMIN.
    assert_eq!(
        serde_json::to_value(&m.features.tracefs).unwrap()["state"],
        "mountable"
    );
    assert!(!m.missing.iter().any(|x| x.what == "nohz_full"));
}

#[test]
fn a_kernel_without_nohz_full_is_reported_missing() {
    let dir = tempfile::tempdir().unwrap();
    machine(dir.path());
    fs::remove_file(dir.path().join("sys/devices/system/cpu/nohz_full")).unwrap();
    let m = SystemModel::probe(&Root::at(dir.path()));
    assert!(m.cpus.nohz_full.is_empty());
    let x = m.missing.iter().find(|x| x.what == "nohz_full").unwrap();
    assert!(x.why.contains("CONFIG_NO_HZ_FULL"));
}
