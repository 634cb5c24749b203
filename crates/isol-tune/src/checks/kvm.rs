//! KVM hosts whose vCPU threads run on the CPUs (the host side of tuned's
//! realtime-virtual-host profile): KVM's own threads must stay off them.
//! A VM exit they cause is the guest's latency, whatever the guest does.

use super::{away, some};
use crate::audit::Ctx;
use crate::item::{Change, Item};
use isol_system::tasks::Task;

/// comm of the NX huge page recovery thread, as the kernel truncates it
/// (`kvm-nx-lpage-recovery`, 15 characters kept).
const NX_RECOVERY: &str = "kvm-nx-lpage-re";
/// One per VM with an in-kernel PIT: `kvm-pit/<VMM pid>`.
const PIT: &str = "kvm-pit/";

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let nx = Item::new(
        "kvm.nx_recovery",
        "KVM's NX huge page recovery threads off the CPUs",
        "kvm-nx-lpage-recovery wakes periodically to split huge pages back and preempts the vCPU thread on its CPU (a VM exit for the guest)",
    );
    let pit = Item::new(
        "kvm.pit",
        "KVM's PIT threads off the CPUs",
        "kvm-pit injects the emulated PIT's ticks; on a vCPU's CPU it preempts that vCPU",
    );
    let halt = Item::new(
        "kvm.halt_poll_ns",
        "KVM halt polling off (kvm.halt_poll_ns = 0)",
        "a halting vCPU thread polls in the host for up to halt_poll_ns before it sleeps: host time on the CPU at every guest HLT, as tuned's realtime-virtual-host profile turns off",
    );
    let params = ctx.sys("module/kvm/parameters");
    if ctx.read(&ctx.sys("module/kvm/initstate")).is_none() && !params.exists() {
        let why = "KVM is not loaded: no VM host here";
        return vec![
            nx.skip(why),
            pit.skip(why),
            halt.skip(format!(
                "{why} (no {}); a future VM host boots with kvm.halt_poll_ns=0",
                params.join("halt_poll_ns").display()
            )),
        ];
    }
    let tasks = isol_system::tasks::probe(ctx.root);
    let on_cpus = |prefix: &str| -> Vec<&Task> {
        tasks
            .iter()
            .filter(|t| t.comm.starts_with(prefix) && t.allowed.intersects(&ctx.cpus))
            .collect()
    };
    let moves = |ts: &[&Task]| -> Vec<Change> {
        ts.iter()
            .map(|t| Change::Affinity {
                pid: t.pid,
                tid: t.tid,
                comm: t.comm.clone(),
                cpus: away(&t.allowed, &ctx.cpus, &ctx.hk),
            })
            .collect()
    };
    let named = |ts: &[&Task]| {
        some(
            ts.iter()
                .map(|t| format!("{} (tid {}, allowed {})", t.comm, t.tid, t.allowed)),
            6,
        )
    };
    // Thread moves are changes on the live machine only; on a tree that
    // is not this machine they are commands to run. Writes are changes.
    let with_moves = |it: Item, moves: Vec<Change>, write: Option<Change>| {
        let write: Vec<Change> = write.into_iter().collect();
        if ctx.live() {
            it.changes(moves.into_iter().chain(write).collect())
        } else if moves.is_empty() {
            it.changes(write)
        } else {
            let cmds: Vec<String> = moves.iter().map(Change::command).collect();
            it.fix(cmds.join("\n")).changes(write)
        }
    };

    let ratio_path = params.join("nx_huge_pages_recovery_ratio");
    let ratio = ctx.read(&ratio_path);
    let mitigated = ctx
        .read(&params.join("nx_huge_pages"))
        .is_some_and(|v| matches!(v.as_str(), "Y" | "y" | "1" | "force"));
    let recovering = mitigated && ratio.as_deref().is_some_and(|r| r != "0");
    let stop_recovery = recovering.then(|| Change::write(ratio_path.clone(), "0"));
    let threads = on_cpus(NX_RECOVERY);
    let nx = if !threads.is_empty() {
        with_moves(
            nx.fail(format!("allowed on the CPUs: {}", named(&threads))),
            moves(&threads),
            stop_recovery,
        )
    } else if recovering {
        with_moves(
            nx.warn(format!(
                "none on the CPUs now, but every VM gets one (nx_huge_pages on, recovery ratio {})",
                ratio.as_deref().unwrap_or("?")
            )),
            Vec::new(),
            stop_recovery,
        )
    } else {
        nx.pass("no recovery thread on the CPUs, and no recovery work")
    };

    let threads = on_cpus(PIT);
    let pit = if threads.is_empty() {
        pit.pass("no kvm-pit thread on the CPUs")
    } else {
        with_moves(
            pit.warn(format!("allowed on the CPUs: {}", named(&threads))),
            moves(&threads),
            None,
        )
    };
    vec![nx, pit, halt_poll(ctx, halt, &params)]
}

/// The module-wide default; a VMM may still set its own per VM
/// (KVM_CAP_HALT_POLL), which no file shows.
fn halt_poll(ctx: &Ctx, it: Item, params: &std::path::Path) -> Item {
    let path = params.join("halt_poll_ns");
    match ctx.read(&path).map(|v| (v.parse::<u64>().ok(), v)) {
        None => it.skip(format!(
            "{} absent: this KVM has no halt polling parameter",
            path.display()
        )),
        Some((Some(0), _)) => it.pass("kvm.halt_poll_ns = 0"),
        Some((_, v)) => it
            .warn(format!("kvm.halt_poll_ns = {v}"))
            .changes(vec![Change::write(path, "0")])
            .boot("kvm.halt_poll_ns=0"),
    }
}

#[cfg(test)]
mod tests {
    use crate::audit::audit;
    use crate::item::{Change, Status};
    use crate::testing::fixture;
    use isol_system::Root;
    use std::path::Path;

    /// A kernel thread in the fixture's /proc, allowed on `allowed`.
    fn kthread(dir: &Path, tid: i32, comm: &str, allowed: &str) {
        let t = dir.join(format!("proc/{tid}/task/{tid}"));
        std::fs::create_dir_all(&t).unwrap();
        // pid (comm) state ppid ... flags (PF_KTHREAD) ... processor policy
        let stat = format!(
            "{tid} ({comm}) S 2 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        );
        std::fs::write(t.join("stat"), &stat).unwrap();
        std::fs::write(dir.join(format!("proc/{tid}/stat")), &stat).unwrap();
        std::fs::write(
            t.join("status"),
            format!("Name:\t{comm}\nCpus_allowed_list:\t{allowed}\n"),
        )
        .unwrap();
    }

    fn kvm_params(dir: &Path, nx: &str, ratio: &str) {
        let p = dir.join("sys/module/kvm/parameters");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(dir.join("sys/module/kvm/initstate"), "live\n").unwrap();
        std::fs::write(p.join("nx_huge_pages"), format!("{nx}\n")).unwrap();
        std::fs::write(p.join("nx_huge_pages_recovery_ratio"), format!("{ratio}\n")).unwrap();
    }

    #[test]
    fn no_kvm_is_said() {
        let m = tempfile::tempdir().unwrap();
        fixture(m.path()).unwrap();
        let r = audit(&Root::at(m.path()), None).unwrap();
        for id in ["kvm.nx_recovery", "kvm.pit", "kvm.halt_poll_ns"] {
            let it = r.item(id).unwrap();
            assert_eq!(it.status, Status::Skip, "{id}");
            assert!(it.detail.contains("KVM is not loaded"), "{}", it.detail);
            assert!(it.changes.is_empty() && it.boot.is_empty(), "{id}");
        }
        let halt = r.item("kvm.halt_poll_ns").unwrap();
        assert!(
            halt.detail.contains("halt_poll_ns") && halt.detail.contains("kvm.halt_poll_ns=0"),
            "{}",
            halt.detail
        );
        assert!(!r.boot.params.iter().any(|p| p.starts_with("kvm.")));
    }

    fn halt_poll(dir: &Path, v: &str) -> std::path::PathBuf {
        let p = dir.join("sys/module/kvm/parameters/halt_poll_ns");
        std::fs::write(&p, format!("{v}\n")).unwrap();
        p
    }

    #[test]
    fn halt_polling_on_warns_and_apply_turns_it_off_journaled() {
        let m = tempfile::tempdir().unwrap();
        fixture(m.path()).unwrap();
        kvm_params(m.path(), "N", "0");
        let path = halt_poll(m.path(), "200000");
        let root = Root::at(m.path());
        let r = audit(&root, None).unwrap();
        let it = r.item("kvm.halt_poll_ns").unwrap();
        assert_eq!(it.status, Status::Warn);
        assert_eq!(it.detail, "kvm.halt_poll_ns = 200000");
        assert_eq!(it.changes, vec![Change::write(path.clone(), "0")]);
        assert!(
            it.fix.as_deref().unwrap().contains("echo 0 > "),
            "{:?}",
            it.fix
        );
        assert_eq!(it.boot, vec!["kvm.halt_poll_ns=0".to_string()]);
        assert!(r.boot.params.contains(&"kvm.halt_poll_ns=0".to_string()));
        assert!(r.verdict.warning.contains(&"kvm.halt_poll_ns".to_string()));

        // apply writes 0 and journals 200000; the item then passes;
        // revert puts 200000 back.
        let state = tempfile::tempdir().unwrap();
        let journal = state.path().join("journal.json");
        let opts = crate::apply::ApplyOptions {
            journal: journal.clone(),
            dry_run: false,
            fault_after: None,
        };
        let cpus = isol_cpulist::CpuSet::parse("1").unwrap();
        let rep = crate::apply::apply(&root, &cpus, &opts).unwrap();
        let c = rep
            .changes
            .iter()
            .find(|c| c.item == "kvm.halt_poll_ns")
            .expect("a change for kvm.halt_poll_ns");
        assert_eq!(c.outcome, crate::apply::Outcome::Applied);
        assert_eq!(c.original.as_deref().map(str::trim), Some("200000"));
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), "0");
        let r = audit(&root, None).unwrap();
        let it = r.item("kvm.halt_poll_ns").unwrap();
        assert_eq!(
            (it.status, it.detail.as_str()),
            (Status::Pass, "kvm.halt_poll_ns = 0")
        );
        let rev = crate::revert::revert(&root, &journal).unwrap();
        assert!(rev.complete);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), "200000");
    }

    #[test]
    fn halt_polling_absent_from_a_loaded_kvm_is_skipped() {
        let m = tempfile::tempdir().unwrap();
        fixture(m.path()).unwrap();
        kvm_params(m.path(), "N", "0");
        let r = audit(&Root::at(m.path()), None).unwrap();
        let it = r.item("kvm.halt_poll_ns").unwrap();
        assert_eq!(it.status, Status::Skip);
        assert!(it.detail.contains("halt_poll_ns absent"), "{}", it.detail);
    }

    #[test]
    fn kvm_threads_on_the_cpus_are_named_with_their_fix() {
        let m = tempfile::tempdir().unwrap();
        fixture(m.path()).unwrap();
        kvm_params(m.path(), "Y", "60");
        kthread(m.path(), 321, "kvm-nx-lpage-re", "1");
        kthread(m.path(), 322, "kvm-pit/300", "0-1");
        kthread(m.path(), 323, "kvm-pit/301", "0");
        let r = audit(&Root::at(m.path()), None).unwrap();

        let nx = r.item("kvm.nx_recovery").unwrap();
        assert_eq!(nx.status, Status::Fail);
        assert!(nx.detail.contains("tid 321"), "{}", nx.detail);
        let fix = nx.fix.as_deref().unwrap();
        // Moved to the housekeeping CPU, and the recovery work stopped.
        assert!(fix.contains("taskset -pc 0 321"), "{fix}");
        let ratio = m
            .path()
            .join("sys/module/kvm/parameters/nx_huge_pages_recovery_ratio");
        assert_eq!(nx.changes, vec![Change::write(ratio, "0")]);

        let pit = r.item("kvm.pit").unwrap();
        assert_eq!(pit.status, Status::Warn);
        assert!(pit.detail.contains("tid 322"), "{}", pit.detail);
        assert!(!pit.detail.contains("tid 323"), "{}", pit.detail);
        assert!(pit.fix.as_deref().unwrap().contains("taskset -pc 0 322"));
    }

    #[test]
    fn recovery_off_and_threads_away_pass() {
        let m = tempfile::tempdir().unwrap();
        fixture(m.path()).unwrap();
        kvm_params(m.path(), "N", "60");
        kthread(m.path(), 321, "kvm-nx-lpage-re", "0");
        let r = audit(&Root::at(m.path()), None).unwrap();
        assert_eq!(r.item("kvm.nx_recovery").unwrap().status, Status::Pass);
        assert_eq!(r.item("kvm.pit").unwrap().status, Status::Pass);

        // Mitigation on with recovery work: every future VM's thread is.
        kvm_params(m.path(), "Y", "60");
        let r = audit(&Root::at(m.path()), None).unwrap();
        let nx = r.item("kvm.nx_recovery").unwrap();
        assert_eq!(nx.status, Status::Warn, "{}", nx.detail);
        assert_eq!(nx.changes.len(), 1);
    }
}
