//! Device IRQ affinities and the default affinity for new IRQs.

use super::{away, some};
use crate::audit::Ctx;
use crate::item::{Change, Item};
use isol_cpulist::CpuSet;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let hk = &ctx.hk;
    let mut v = Vec::new();

    let it = Item::new(
        "irq.default_affinity",
        "default affinity of new IRQs (/proc/irq/default_smp_affinity)",
        "IRQs registered later (module load, hotplug) land on the CPUs",
    );
    let path = ctx.proc("irq/default_smp_affinity");
    v.push(match &ctx.model.default_irq_affinity {
        None => it.skip("/proc/irq/default_smp_affinity unreadable"),
        Some(d) if !d.intersects(c) => it.pass(format!("default affinity {d}")),
        Some(d) => it
            .fail(format!(
                "default affinity {d} includes {}",
                d.intersection(c)
            ))
            .changes(vec![Change::write(path, away(d, c, hk).to_mask())]),
    });

    let it = Item::new(
        "irq.affinity",
        "device IRQs kept off the CPUs",
        "device interrupts and the softirqs they raise (net, block, tasklets) run on the CPUs",
    );
    let mut landing = Vec::new(); // effective affinity on the CPUs
    let mut may_land = Vec::new(); // requested affinity only
    let mut managed = Vec::new();
    let mut changes = Vec::new();
    for i in &ctx.irqs.device {
        let eff = i.effective.intersects(c);
        if !eff && !i.affinity.intersects(c) {
            continue;
        }
        let label = format!(
            "{} {}",
            i.irq,
            if i.name.is_empty() { "?" } else { &i.name }
        );
        if i.managed == Some(true) {
            if eff {
                managed.push(label);
            }
            continue;
        }
        if eff {
            landing.push(format!("{label} (effective {})", i.effective));
        } else if i.affinity.is_subset(c) {
            // Only the CPUs allowed: delivered there from its next
            // interrupt on (x86 moves IO-APIC IRQs lazily).
            landing.push(format!("{label} (allowed {} only)", i.affinity));
        } else {
            may_land.push(format!("{label} (allowed {})", i.affinity));
        }
        let new: CpuSet = away(&i.affinity, c, hk);
        changes.push(Change::write(
            ctx.proc(&format!("irq/{}/smp_affinity_list", i.irq)),
            new.to_string(),
        ));
    }
    let mut detail = Vec::new();
    if !landing.is_empty() {
        detail.push(format!("delivered on the CPUs: {}", some(&landing, 8)));
    }
    if !managed.is_empty() {
        detail.push(format!(
            "kernel-managed, delivered on the CPUs: {}",
            some(&managed, 8)
        ));
    }
    if !may_land.is_empty() {
        detail.push(format!("allowed on the CPUs: {}", some(&may_land, 8)));
    }
    let detail = detail.join("; ");
    let mut it = if !landing.is_empty() || !managed.is_empty() {
        it.fail(detail)
    } else if !may_land.is_empty() {
        it.warn(detail)
    } else {
        it.pass(format!(
            "no device IRQ affine to {c} ({} checked)",
            ctx.irqs.device.len()
        ))
    };
    if !managed.is_empty() {
        let isol = super::with(ctx.model.boot.isolcpus.as_ref().map(|i| &i.cpus), c);
        it = it
            .fix(format!(
                "managed IRQs: boot with isolcpus=nohz,domain,managed_irq,{isol}"
            ))
            .boot(format!("isolcpus=nohz,domain,managed_irq,{isol}"));
    }
    v.push(it.changes(changes));
    v
}
