//! Boot parameters: what only a reboot can give.

use super::with;
use crate::audit::Ctx;
use crate::item::Item;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let m = ctx.model;
    let b = &m.boot;
    let c = &ctx.cpus;
    let mut v = Vec::new();

    let it = Item::new(
        "boot.nohz_full",
        "nohz_full: tick stopped while one task runs",
        "the periodic scheduler tick (CONFIG_HZ interrupts per second) and the softirqs it raises",
    );
    v.push(if c.is_subset(&m.cpus.nohz_full) {
        it.pass(format!("nohz_full covers {c}"))
    } else if !m.features.nohz_full_support {
        it.fail(format!(
            "kernel {} lacks CONFIG_NO_HZ_FULL",
            m.kernel.release
        ))
        .fix("boot a kernel built with CONFIG_NO_HZ_FULL=y (Debian: linux-image-cloud-amd64 or -rt-amd64), with nohz_full=".to_string() + &c.to_string())
    } else {
        let want = with(b.nohz_full.as_ref(), c);
        it.fail(format!(
            "nohz_full is {}",
            m.cpus.nohz_full_display()
        ))
        .fix(format!("boot with nohz_full={want}"))
        .boot(format!("nohz_full={want}"))
    });

    let isol = b.isolcpus.as_ref();
    let isol_cpus = with(isol.map(|i| &i.cpus), c);
    let isol_param = format!("isolcpus=nohz,domain,managed_irq,{isol_cpus}");
    let it = Item::new(
        "boot.isolcpus_domain",
        "CPUs out of scheduler load balancing",
        "other tasks balanced onto the CPUs; load-balancing softirqs and IPIs",
    );
    v.push(if c.is_subset(&m.cpus.domain) {
        it.pass(format!(
            "{c} out of load balancing ({})",
            if c.is_subset(m.sysfs.isolated.as_ref().unwrap_or(&Default::default())) {
                "isolcpus=domain"
            } else {
                "cgroup isolated partition"
            }
        ))
    } else {
        it.fail(format!(
            "CPUs {} are in scheduler domains",
            c.difference(&m.cpus.domain)
        ))
        .fix(format!(
            "boot with {isol_param} (or at run time: an isolated cgroup cpuset partition, see cgroup.partition)"
        ))
        .boot(isol_param.clone())
    });

    let it = Item::new(
        "boot.isolcpus_managed_irq",
        "managed (multiqueue) IRQs kept off the CPUs",
        "interrupts of multiqueue devices (NVMe, virtio, NIC queues) whose affinity user space cannot change",
    );
    v.push(if c.is_subset(&m.cpus.managed_irq) {
        it.pass(format!("isolcpus=managed_irq covers {c}"))
    } else {
        it.warn(format!(
            "isolcpus has no managed_irq for CPUs {}",
            c.difference(&m.cpus.managed_irq)
        ))
        .fix(format!("boot with {isol_param}"))
        .boot(isol_param.clone())
    });

    let it = Item::new(
        "boot.irqaffinity",
        "irqaffinity: default IRQ affinity from boot",
        "IRQs set up during boot, before any runtime fix, land on the CPUs",
    );
    let hk = &ctx.hk;
    v.push(match &b.irqaffinity {
        Some(a) if !a.intersects(c) => it.pass(format!("irqaffinity={a}")),
        other => it
            .warn(match other {
                Some(a) => format!("irqaffinity={a} includes {}", a.intersection(c)),
                None => "irqaffinity= not set".into(),
            })
            .fix(format!("boot with irqaffinity={hk}"))
            .boot(format!("irqaffinity={hk}")),
    });

    let it = Item::new(
        "boot.skew_tick",
        "skew_tick=1: ticks of different CPUs not simultaneous",
        "jiffies-lock contention makes the residual tick longer when every CPU ticks at once",
    );
    v.push(if b.get("skew_tick") == Some(Some("1")) {
        it.pass("skew_tick=1")
    } else {
        it.warn("skew_tick=1 not set")
            .fix("boot with skew_tick=1")
            .boot("skew_tick=1")
    });

    let it = Item::new(
        "boot.tsc",
        "tsc=reliable: no clocksource watchdog",
        "the clocksource watchdog timer visits every CPU in turn to check the TSC",
    );
    let cs = ctx
        .read(&ctx.sys("devices/system/clocksource/clocksource0/current_clocksource"))
        .unwrap_or_default();
    v.push(if cs != "tsc" {
        it.skip(if cs.is_empty() {
            "clocksource unknown".to_string()
        } else {
            format!("clocksource is {cs}, not tsc")
        })
    } else if b.get("tsc") == Some(Some("reliable")) {
        it.pass("tsc=reliable")
    } else {
        it.warn("clocksource tsc is watched")
            .fix("boot with tsc=reliable (only if the TSC is known stable on this machine)")
            .boot("tsc=reliable")
    });

    let it = Item::new(
        "boot.rcu_normal_after_boot",
        "no expedited RCU grace periods after boot",
        "expedited grace periods IPI every CPU not in an RCU quiescent state",
    );
    let rnab = ctx
        .read(&ctx.sys("module/rcupdate/parameters/rcu_normal_after_boot"))
        .or_else(|| {
            b.get("rcupdate.rcu_normal_after_boot")
                .map(|v| v.unwrap_or("1").to_string())
        });
    v.push(match rnab.as_deref() {
        Some("1") | Some("Y") => it.pass("rcupdate.rcu_normal_after_boot=1"),
        _ => it
            .warn("expedited RCU grace periods stay enabled after boot")
            .fix("boot with rcupdate.rcu_normal_after_boot=1")
            .boot("rcupdate.rcu_normal_after_boot=1"),
    });

    let it = Item::new(
        "boot.intel_pstate",
        "intel_pstate off",
        "HWP notification interrupts and P-state changes on the CPUs",
    );
    let status = ctx.read(&ctx.sys("devices/system/cpu/intel_pstate/status"));
    v.push(match status.as_deref() {
        None | Some("off") => it.skip("intel_pstate not in use"),
        Some(s) => it
            .warn(format!("intel_pstate is {s}"))
            .fix("boot with intel_pstate=disable (then set the performance governor)")
            .boot("intel_pstate=disable"),
    });

    if !b.invalid.is_empty() {
        v.push(
            Item::new(
                "boot.invalid",
                "isolation parameters the kernel rejected",
                "the isolation they ask for is not in effect",
            )
            .fail(
                b.invalid
                    .iter()
                    .map(|i| format!("{}={}: {}", i.param, i.value, i.error))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .fix("correct these parameters on the kernel command line"),
        );
    }
    v
}

trait NohzDisplay {
    fn nohz_full_display(&self) -> String;
}
impl NohzDisplay for isol_system::model::CpuSummary {
    fn nohz_full_display(&self) -> String {
        if self.nohz_full.is_empty() {
            "empty".into()
        } else {
            self.nohz_full.to_string()
        }
    }
}
