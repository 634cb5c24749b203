//! User tasks on the CPUs.

use super::{away, some};
use crate::audit::Ctx;
use crate::item::{Change, Item};
use isol_cpulist::CpuSet;
use std::collections::BTreeMap;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let mut on: BTreeMap<i32, (i32, String, CpuSet, &'static str)> = BTreeMap::new();
    let mut allowed = Vec::new();
    for r in ctx.model.per_cpu.iter().filter(|r| c.contains(r.cpu)) {
        for t in &r.user_pinned {
            if t.pid != ctx.self_pid {
                on.insert(t.tid, (t.pid, t.comm.clone(), t.allowed.clone(), "pinned"));
            }
        }
        // A task that merely ran here last is noise only where the
        // scheduler should not have put it (domain-isolated CPUs);
        // elsewhere tasks.balancing covers it.
        for t in r.user_running.iter().filter(|_| r.isolation.domain) {
            if t.pid != ctx.self_pid {
                on.entry(t.tid)
                    .or_insert((t.pid, t.comm.clone(), t.allowed.clone(), "running"));
            }
        }
        let n = r.user_allowed - r.user_pinned.len();
        if n > 0 && !r.isolation.domain {
            allowed.push(format!("CPU {}: {n}", r.cpu));
        }
    }
    let mut v = Vec::new();

    let it = Item::new(
        "tasks.on_cpus",
        "no other user task on the CPUs",
        "preemption of the workload, cache and TLB pollution, and the IPIs those tasks cause",
    );
    v.push(if on.is_empty() {
        it.pass("no user thread is pinned to or running on the CPUs")
    } else {
        let names = on.iter().map(|(tid, (pid, comm, a, why))| {
            format!("{comm} (pid {pid} tid {tid}, {why}, allowed {a})")
        });
        let detail = format!(
            "{}; if one is your workload, start it after isol apply",
            some(names, 8)
        );
        let changes: Vec<Change> = on
            .iter()
            .map(|(tid, (pid, comm, a, _))| Change::Affinity {
                pid: *pid,
                tid: *tid,
                comm: comm.clone(),
                cpus: away(a, c, &ctx.hk),
            })
            .collect();
        if ctx.live() {
            it.fail(detail).changes(changes)
        } else {
            let fix: Vec<String> = changes.iter().map(Change::command).collect();
            it.fail(detail).fix(fix.join("\n"))
        }
    });

    let it = Item::new(
        "tasks.balancing",
        "unpinned user tasks not balanced onto the CPUs",
        "the scheduler may place any user task on the CPUs",
    );
    v.push(if allowed.is_empty() {
        it.pass("the CPUs are out of load balancing, or no user task may run there")
    } else {
        it.warn(format!(
            "CPUs in scheduler domains, user threads allowed: {}",
            allowed.join(", ")
        ))
        .fix("see boot.isolcpus_domain or cgroup.partition")
    });
    v
}
