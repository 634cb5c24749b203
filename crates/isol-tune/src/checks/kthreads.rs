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
        "new and unbound kthreads may be scheduled on the CPUs",
    );
    v.push(if unbound.is_empty() {
        it.pass("kernel threads are created on housekeeping CPUs only")
    } else {
        let hk = &ctx.hk;
        let isol = super::with(ctx.model.boot.isolcpus.as_ref().map(|i| &i.cpus), c);
        it.warn(format!(
            "kernel threads allowed on all CPUs: {}",
            unbound.join(", ")
        ))
        .fix(format!(
            "boot with nohz_full={c} or isolcpus=nohz,domain,managed_irq,{isol} (kthreads then start on {hk}); or kthread_cpus={hk}"
        ))
        .boot(format!("kthread_cpus={hk}"))
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
