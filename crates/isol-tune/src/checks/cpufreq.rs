//! cpufreq governor of the CPUs.

use crate::audit::Ctx;
use crate::item::{Change, Item};

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let it = Item::new(
        "cpufreq.governor",
        "cpufreq governor performance",
        "frequency changes (sugov kthread, irq_work, kworkers of ondemand) and varying speed on the CPUs",
    );
    let mut none = Vec::new();
    let mut bad = Vec::new();
    let mut changes = Vec::new();
    let mut stuck = Vec::new();
    for cpu in ctx.cpus.iter() {
        let dir = ctx.sys(&format!("devices/system/cpu/cpu{cpu}/cpufreq"));
        let Some(g) = ctx.read(&dir.join("scaling_governor")) else {
            none.push(cpu);
            continue;
        };
        if g == "performance" {
            continue;
        }
        bad.push(format!("CPU {cpu}: {g}"));
        let avail = ctx
            .read(&dir.join("scaling_available_governors"))
            .unwrap_or_default();
        if avail.split_whitespace().any(|a| a == "performance") {
            changes.push(Change::write(dir.join("scaling_governor"), "performance"));
        } else {
            stuck.push(cpu);
        }
    }
    let it = if none.len() == ctx.cpus.len() {
        it.skip("no cpufreq driver (fixed frequency, e.g. a VM)")
    } else if bad.is_empty() {
        it.pass("performance")
    } else {
        let mut it = it.warn(bad.join(", "));
        if !stuck.is_empty() {
            it = it.fix(format!(
                "the performance governor is not available on CPUs {}; load it (CONFIG_CPU_FREQ_GOV_PERFORMANCE) or boot with intel_pstate=disable",
                stuck.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
            ));
        }
        it.changes(changes)
    };
    vec![it]
}
