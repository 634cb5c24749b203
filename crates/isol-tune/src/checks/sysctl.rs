//! sysctls: timer_migration, watchdog, nmi_watchdog, numa_balancing,
//! vm.stat_interval.

use crate::audit::Ctx;
use crate::item::{Change, Item};
use isol_cpulist::CpuSet;

/// vm.stat_interval that tuned's cpu-partitioning uses.
pub const STAT_INTERVAL: u32 = 10;

fn int_item(ctx: &Ctx, item: Item, rel: &str, want: i64, bad_if: impl Fn(i64) -> bool) -> Item {
    let path = ctx.proc(rel);
    let key = rel.trim_start_matches("sys/").replace('/', ".");
    match ctx.read(&path).and_then(|s| s.parse::<i64>().ok()) {
        None => item.skip(format!("{} absent", path.display())),
        Some(v) if !bad_if(v) => item.pass(format!("{key} = {v}")),
        Some(v) => item
            .warn(format!("{key} = {v}"))
            .changes(vec![Change::write(path, want.to_string())]),
    }
}

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let mut v = Vec::new();

    v.push(int_item(
        ctx,
        Item::new(
            "sysctl.timer_migration",
            "kernel.timer_migration = 0",
            "timers of other CPUs may be queued on or expired by the CPUs through timer migration",
        ),
        "sys/kernel/timer_migration",
        0,
        |v| v != 0,
    ));

    // Soft lockup watchdog (hrtimer every watchdog_thresh*2/5 s plus a
    // stopper work) and hard lockup detector, per watchdog_cpumask.
    let it = Item::new(
        "sysctl.watchdog_cpumask",
        "lockup watchdogs kept off the CPUs",
        "the soft-lockup watchdog hrtimer (every 4 s) and its stopper work, and the hard-lockup NMI, on the CPUs",
    );
    let enabled = ctx.read(&ctx.proc("sys/kernel/watchdog"));
    let path = ctx.proc("sys/kernel/watchdog_cpumask");
    let mask = ctx.read(&path).and_then(|s| CpuSet::parse(&s).ok());
    v.push(match (enabled.as_deref(), mask) {
        (Some("0"), _) => it.pass("lockup watchdogs disabled (kernel.watchdog = 0)"),
        (_, None) => it.skip("kernel.watchdog_cpumask absent (no lockup detector)"),
        (_, Some(m)) if !m.intersects(c) => it.pass(format!("kernel.watchdog_cpumask = {m}")),
        (_, Some(m)) => it
            .fail(format!("kernel.watchdog_cpumask = {m}"))
            .changes(vec![Change::write(
                path,
                super::away(&m, c, &ctx.hk).to_string(),
            )])
            .boot("nosoftlockup"),
    });

    v.push(int_item(
        ctx,
        Item::new(
            "sysctl.nmi_watchdog",
            "kernel.nmi_watchdog = 0",
            "a perf NMI every watchdog_thresh seconds on each watched CPU",
        ),
        "sys/kernel/nmi_watchdog",
        0,
        |v| v != 0,
    ));

    let numa = Item::new(
        "sysctl.numa_balancing",
        "kernel.numa_balancing = 0",
        "NUMA hinting page faults, task_numa_work and page migrations",
    );
    v.push(int_item(ctx, numa, "sys/kernel/numa_balancing", 0, |v| {
        v != 0
    }));

    v.push(int_item(
        ctx,
        Item::new(
            "sysctl.stat_interval",
            "vm.stat_interval >= 10",
            "vmstat_update kworker folding per-CPU counters every stat_interval seconds",
        ),
        "sys/vm/stat_interval",
        STAT_INTERVAL as i64,
        |v| v < STAT_INTERVAL as i64,
    ));
    v
}
