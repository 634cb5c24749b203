//! Kernel threads on the CPUs: which, and whether they can be moved.

use super::{away, some};
use crate::audit::Ctx;
use crate::item::{Change, Item};
use std::collections::BTreeMap;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let mut movable: BTreeMap<i32, (String, isol_cpulist::CpuSet)> = BTreeMap::new();
    let mut fixed = Vec::new();
    let mut unbound = Vec::new();
    for r in ctx.model.per_cpu.iter().filter(|r| c.contains(r.cpu)) {
        for k in &r.kthreads {
            if k.fixed_affinity {
                fixed.push(k.comm.clone());
            } else {
                movable.insert(k.tid, (k.comm.clone(), k.allowed.clone()));
            }
        }
        if r.kthreads_unbound > 0 {
            unbound.push(format!("CPU {}: {}", r.cpu, r.kthreads_unbound));
        }
    }
    let mut v = Vec::new();

    let it = Item::new(
        "kthreads.movable",
        "movable kernel threads kept off the CPUs",
        "wake-ups of those kthreads (rcuo*, kcompactd, kswapd, ...) preempt the task on the CPUs",
    );
    v.push(if movable.is_empty() {
        it.pass("no movable kernel thread is confined to the CPUs")
    } else {
        let names = movable
            .iter()
            .map(|(tid, (comm, a))| format!("{comm} (tid {tid}, allowed {a})"));
        let detail = format!("confined to the CPUs: {}", some(names, 10));
        let changes: Vec<Change> = movable
            .iter()
            .map(|(tid, (comm, a))| Change::Affinity {
                pid: *tid,
                tid: *tid,
                comm: comm.clone(),
                cpus: away(a, c, &ctx.hk),
            })
            .collect();
        if ctx.live() {
            it.fail(detail).changes(changes)
        } else {
            let fix = changes.iter().map(Change::command).collect::<Vec<_>>();
            it.fail(detail).fix(fix.join("\n"))
        }
    });

    let it = Item::new(
        "kthreads.unbound",
        "kernel threads allowed on every CPU",
        "those kthreads may be scheduled on the CPUs whenever they wake",
    );
    v.push(if unbound.is_empty() {
        it.pass("every kernel thread is confined to housekeeping or per-CPU")
    } else {
        // The model only counts them; name them (one more /proc walk,
        // only when there is something to name).
        let online = &ctx.model.cpus.online;
        let all = isol_system::tasks::probe(ctx.root);
        let wide: Vec<_> = all
            .iter()
            .filter(|t| t.kthread && t.allowed.intersects(c) && online.is_subset(&t.allowed))
            .collect();
        let (fixed, movable): (Vec<_>, Vec<_>) = wide.iter().partition(|t| t.fixed_affinity);
        let names = |v: &[&&isol_system::tasks::Task]| some(v.iter().map(|t| t.comm.clone()), 8);
        let mut detail = Vec::new();
        if !movable.is_empty() {
            detail.push(format!("movable: {}", names(&movable)));
        }
        if !fixed.is_empty() {
            detail.push(format!(
                "not movable (unbound kworkers follow workqueue.cpumask): {}",
                names(&fixed)
            ));
        }
        let detail = detail.join("; ");
        let hk = &ctx.hk;
        let boot =
            format!("for kthreads created later: boot with nohz_full={c} (or kthread_cpus={hk})");
        if movable.is_empty() {
            it.pass(detail)
        } else {
            let changes: Vec<Change> = movable
                .iter()
                .map(|t| Change::Affinity {
                    pid: t.pid,
                    tid: t.tid,
                    comm: t.comm.clone(),
                    cpus: away(&t.allowed, c, hk),
                })
                .collect();
            let it = it.warn(detail);
            if ctx.live() {
                it.fix(boot).changes(changes)
            } else {
                let cmds: Vec<String> = changes.iter().map(Change::command).collect();
                it.fix(format!("{}\n{boot}", cmds.join("\n")))
            }
        }
    });

    fixed.sort();
    fixed.dedup();
    v.push(
        Item::new(
            "kthreads.per_cpu",
            "per-CPU kernel threads (cannot be moved)",
            "they run only when work is queued for this CPU (ksoftirqd: softirqs, kworker/N: per-CPU work, migration: stop-machine)",
        )
        .pass(if fixed.is_empty() {
            "none".to_string()
        } else {
            format!("bound by the kernel: {}", some(&fixed, 12))
        }),
    );
    v
}
