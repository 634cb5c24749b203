//! Idle states and PM QoS: how long the CPUs take to wake up.

use crate::audit::Ctx;
use crate::item::{Change, Item};

/// Idle states with a longer exit latency (µs) are disabled by apply.
pub const MAX_EXIT_LATENCY_US: u64 = 10;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let it = Item::new(
        "idle.states",
        "no deep idle states on the CPUs",
        "exit latency of deep C-states added to every interrupt or wake-up; cpuidle governor work",
    );
    let driver = ctx
        .read(&ctx.sys("devices/system/cpu/cpuidle/current_driver"))
        .unwrap_or_else(|| "none".into());
    let mut deep = Vec::new();
    let mut changes = Vec::new();
    let mut qos = Vec::new();
    for cpu in ctx.cpus.iter() {
        let base = format!("devices/system/cpu/cpu{cpu}");
        if let Some(q) = ctx.read(&ctx.sys(&format!("{base}/power/pm_qos_resume_latency_us"))) {
            if q != "0" {
                qos.push(format!("CPU {cpu}: {q} µs"));
            }
        }
        let Ok(rd) = std::fs::read_dir(ctx.sys(&format!("{base}/cpuidle"))) else {
            continue;
        };
        let mut states: Vec<_> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("state"))
            .map(|e| e.path())
            .collect();
        states.sort();
        for s in states {
            let lat: u64 = ctx
                .read(&s.join("latency"))
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let disabled = ctx.read(&s.join("disable")).as_deref() == Some("1");
            if lat > MAX_EXIT_LATENCY_US && !disabled {
                let name = ctx.read(&s.join("name")).unwrap_or_default();
                deep.push(format!("CPU {cpu} {name} ({lat} µs)"));
                changes.push(Change::write(s.join("disable"), "1"));
            }
        }
    }
    let mut detail = format!("cpuidle driver {driver}");
    if !qos.is_empty() {
        detail.push_str(&format!("; PM QoS resume latency {}", qos.join(", ")));
    }
    let it = if deep.is_empty() {
        it.pass(format!(
            "{detail}; no enabled state exits slower than {MAX_EXIT_LATENCY_US} µs"
        ))
    } else {
        it.warn(format!("{detail}; enabled deep states: {}", deep.join(", ")))
            .fix("or boot with processor.max_cstate=1 intel_idle.max_cstate=0, or hold /dev/cpu_dma_latency open with a low value while the workload runs")
            .changes(changes)
    };
    vec![it]
}
