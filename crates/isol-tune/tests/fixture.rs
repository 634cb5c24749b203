//! audit, apply and revert on a fixture tree.

use isol_cpulist::CpuSet;
use isol_system::Root;
use isol_tune::apply::{ApplyOptions, Outcome};
use isol_tune::testing::{fixture, snapshot};
use isol_tune::{apply, audit, revert, Status};

fn cpus(s: &str) -> CpuSet {
    CpuSet::parse(s).unwrap()
}

fn setup() -> (tempfile::TempDir, tempfile::TempDir, Root) {
    let machine = tempfile::tempdir().unwrap();
    fixture(machine.path()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = Root::at(machine.path());
    (machine, state, root)
}

/// What the kernel does after a write to smp_affinity_list: deliver the
/// IRQ within the new affinity. A fixture's regular files cannot.
fn kernel_moves_irqs(root: &Root) {
    for n in [4, 11, 24] {
        let a = std::fs::read_to_string(root.proc(&format!("irq/{n}/smp_affinity_list"))).unwrap();
        let first = CpuSet::parse(a.trim()).unwrap().first().unwrap();
        std::fs::write(
            root.proc(&format!("irq/{n}/effective_affinity_list")),
            format!("{first}\n"),
        )
        .unwrap();
    }
}

/// The fixture's files isol writes (effective affinities are the kernel's).
fn values(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut m = snapshot(dir);
    m.retain(|p, _| !p.ends_with("effective_affinity_list"));
    m
}

fn opts(state: &tempfile::TempDir, dry_run: bool) -> ApplyOptions {
    ApplyOptions {
        journal: state.path().join("journal.json"),
        dry_run,
        fault_after: None,
    }
}

#[test]
fn audit_flags_each_misconfiguration_with_its_fix() {
    let (_m, _s, root) = setup();
    // Default CPUs: the isolated ones (nohz_full=1 in the fixture).
    let r = audit(&root, None).unwrap();
    assert_eq!(r.cpus, cpus("1"));
    assert_eq!(r.housekeeping, cpus("0"));
    let st = |id: &str| r.item(id).unwrap_or_else(|| panic!("no item {id}")).status;
    assert_eq!(st("boot.nohz_full"), Status::Pass);
    assert_eq!(st("rcu.nocbs"), Status::Pass);
    assert_eq!(st("boot.isolcpus_domain"), Status::Fail);
    assert_eq!(st("irq.default_affinity"), Status::Fail);
    assert_eq!(st("irq.affinity"), Status::Fail);
    assert_eq!(st("workqueue.cpumask"), Status::Fail);
    assert_eq!(st("workqueue.per_workqueue"), Status::Warn);
    assert_eq!(st("sysctl.timer_migration"), Status::Warn);
    assert_eq!(st("sysctl.watchdog_cpumask"), Status::Fail);
    assert_eq!(st("sysctl.nmi_watchdog"), Status::Warn);
    assert_eq!(st("sysctl.stat_interval"), Status::Warn);
    assert_eq!(st("mm.thp"), Status::Warn);
    assert_eq!(st("mm.ksm"), Status::Warn);
    assert_eq!(st("cpufreq.governor"), Status::Warn);
    assert_eq!(st("idle.states"), Status::Warn);
    assert_eq!(r.verdict.status, Status::Fail);

    // The IRQ item names IRQ 4 (effective on CPU 1) and IRQ 11 (allowed
    // there), and its fix is the exact command.
    let irq = r.item("irq.affinity").unwrap();
    assert!(irq.detail.contains("4 "), "{}", irq.detail);
    let fix = irq.fix.as_deref().unwrap();
    assert!(fix.contains(&format!(
        "echo 0 > {}",
        root.proc("irq/4/smp_affinity_list").display()
    )));
    assert!(fix.contains("irq/11/smp_affinity_list"));
    assert!(!fix.contains("irq/24/"), "IRQ 24 is already off CPU 1");
    let tm = r.item("sysctl.timer_migration").unwrap();
    assert!(tm.fix.as_deref().unwrap().starts_with("echo 0 > "));
    // Boot advice names what is missing, and every failing/warning item
    // has a fix.
    assert!(r.boot.params.iter().any(|p| p.starts_with("isolcpus=")));
    assert!(r.boot.grub.contains("GRUB_CMDLINE_LINUX_DEFAULT"));
    for i in &r.items {
        if matches!(i.status, Status::Fail | Status::Warn) {
            assert!(i.fix.is_some(), "{} has no fix", i.id);
            assert!(!i.noise.is_empty());
        }
    }
}

#[test]
fn cpu_list_is_validated() {
    let (_m, _s, root) = setup();
    assert!(
        audit(&root, Some(&cpus("0-1"))).is_err(),
        "no housekeeping CPU left"
    );
    assert!(audit(&root, Some(&cpus("5"))).is_err(), "offline CPU");
}

#[test]
fn dry_run_changes_nothing() {
    let (m, s, root) = setup();
    let before = snapshot(m.path());
    let r = apply(&root, &cpus("1"), &opts(&s, true)).unwrap();
    assert!(r.changes.len() >= 10);
    assert!(r.changes.iter().all(|c| c.outcome == Outcome::Planned));
    assert_eq!(snapshot(m.path()), before);
    assert!(!s.path().join("journal.json").exists());
}

#[test]
fn apply_fixes_runtime_items_is_idempotent_and_revert_restores_bytes() {
    let (m, s, root) = setup();
    let before = values(m.path());
    let r = apply(&root, &cpus("1"), &opts(&s, false)).unwrap();
    kernel_moves_irqs(&root);
    assert_eq!(r.failed(), 0, "{:#?}", r.changes);
    assert!(r.changes.iter().all(|c| c.outcome == Outcome::Applied));
    assert!(s.path().join("journal.json").exists());
    // Boot-only items remain and are named.
    assert!(r.remaining.contains(&"boot.isolcpus_domain".to_string()));

    let a = audit(&root, Some(&cpus("1"))).unwrap();
    for id in [
        "irq.default_affinity",
        "irq.affinity",
        "workqueue.cpumask",
        "workqueue.per_workqueue",
        "sysctl.timer_migration",
        "sysctl.watchdog_cpumask",
        "sysctl.nmi_watchdog",
        "sysctl.numa_balancing",
        "sysctl.stat_interval",
        "mm.thp",
        "mm.ksm",
        "cpufreq.governor",
        "idle.states",
    ] {
        assert_eq!(a.item(id).unwrap().status, Status::Pass, "{id} after apply");
    }
    assert_eq!(
        std::fs::read_to_string(root.proc("irq/4/smp_affinity_list")).unwrap(),
        "0\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.proc("sys/kernel/timer_migration")).unwrap(),
        "0\n"
    );

    // Second apply: nothing to do, journal unchanged.
    let j1 = std::fs::read(s.path().join("journal.json")).unwrap();
    let after = snapshot(m.path());
    let r2 = apply(&root, &cpus("1"), &opts(&s, false)).unwrap();
    assert!(r2.changes.is_empty(), "{:#?}", r2.changes);
    assert_eq!(snapshot(m.path()), after);
    assert_eq!(std::fs::read(s.path().join("journal.json")).unwrap(), j1);

    let rv = revert(&root, &s.path().join("journal.json")).unwrap();
    assert!(rv.complete, "{:#?}", rv.entries);
    assert_eq!(values(m.path()), before, "not byte-identical after revert");
    assert!(!s.path().join("journal.json").exists());
    // Nothing left to revert.
    let rv = revert(&root, &s.path().join("journal.json")).unwrap();
    assert!(!rv.found && rv.complete);
}

#[test]
fn extending_apply_keeps_the_first_original() {
    let (m, s, root) = setup();
    let before = values(m.path());
    apply(&root, &cpus("1"), &opts(&s, false)).unwrap();
    kernel_moves_irqs(&root);
    // Someone changes a value back behind isol's back; apply again.
    std::fs::write(root.proc("sys/kernel/timer_migration"), "1\n").unwrap();
    let r = apply(&root, &cpus("1"), &opts(&s, false)).unwrap();
    assert_eq!(r.changes.len(), 1);
    revert(&root, &s.path().join("journal.json")).unwrap();
    assert_eq!(values(m.path()), before);
}

#[test]
fn refused_write_is_reported_and_journal_stays_consistent() {
    let (m, s, root) = setup();
    // A read-only sysfs attribute refuses writes even from root, as the
    // kernel refuses a managed IRQ's affinity.
    let ro = std::path::Path::new("/sys/devices/system/cpu/possible");
    let ksm = root.sys("kernel/mm/ksm/run");
    std::fs::remove_file(&ksm).unwrap();
    std::os::unix::fs::symlink(ro, &ksm).unwrap();
    let ro_before = std::fs::read(ro).unwrap();
    let before = values(m.path());
    let r = apply(&root, &cpus("1"), &opts(&s, false)).unwrap();
    kernel_moves_irqs(&root);
    assert_eq!(r.failed(), 1, "{:#?}", r.changes);
    let bad = r
        .changes
        .iter()
        .find(|c| c.outcome == Outcome::Failed)
        .unwrap();
    assert_eq!(bad.item, "mm.ksm");
    assert!(bad.error.is_some());
    // Every other change was made.
    assert!(
        r.changes
            .iter()
            .filter(|c| c.outcome == Outcome::Applied)
            .count()
            >= 10
    );
    let j = isol_tune::journal::Journal::load(&s.path().join("journal.json"))
        .unwrap()
        .unwrap();
    let e = j
        .entries
        .iter()
        .find(|e| e.change.key() == ksm.display().to_string())
        .unwrap();
    assert_eq!(e.state, isol_tune::journal::State::Failed);
    let rv = revert(&root, &s.path().join("journal.json")).unwrap();
    assert!(rv.complete, "{:#?}", rv.entries);
    assert_eq!(values(m.path()), before);
    assert_eq!(std::fs::read(ro).unwrap(), ro_before);
}

#[test]
fn host_audit_runs_and_agrees_with_the_files() {
    let root = Root::default();
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let online = CpuSet::parse(online.trim()).unwrap();
    if online.len() < 2 {
        return; // needs a housekeeping CPU
    }
    let target = CpuSet::single(online.last().unwrap());
    let r = audit(&root, Some(&target)).unwrap();
    assert!(r.items.len() >= 25, "{} items", r.items.len());
    // The verdict counts add up.
    let v = &r.verdict;
    assert_eq!(v.pass + v.warn + v.fail + v.skip, r.items.len());
    // Items agree with what the files say.
    let tm = std::fs::read_to_string("/proc/sys/kernel/timer_migration").unwrap();
    let want = if tm.trim() == "0" {
        Status::Pass
    } else {
        Status::Warn
    };
    assert_eq!(r.item("sysctl.timer_migration").unwrap().status, want);
    let wq = std::fs::read_to_string("/sys/devices/virtual/workqueue/cpumask").unwrap();
    let wq = CpuSet::parse_mask(wq.trim()).unwrap();
    let want = if wq.intersects(&target) {
        Status::Fail
    } else {
        Status::Pass
    };
    assert_eq!(r.item("workqueue.cpumask").unwrap().status, want);
    let nohz = std::fs::read_to_string("/sys/devices/system/cpu/nohz_full")
        .ok()
        .and_then(|s| CpuSet::parse(s.trim()).ok())
        .unwrap_or_default();
    let want = if target.is_subset(&nohz) {
        Status::Pass
    } else {
        Status::Fail
    };
    assert_eq!(r.item("boot.nohz_full").unwrap().status, want);
    for i in &r.items {
        if matches!(i.status, Status::Fail | Status::Warn) {
            assert!(i.fix.is_some(), "{} has no fix", i.id);
        }
    }
    // On the live machine, thread changes are planned as affinity changes;
    // this process itself is never among them.
    let me = std::process::id() as i32;
    for i in &r.items {
        for c in &i.changes {
            if let isol_tune::Change::Affinity { pid, .. } = c {
                assert_ne!(*pid, me);
            }
        }
    }
}
