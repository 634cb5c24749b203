//! `isol info`: the system model, for a person or as JSON (isol.info/1).

use crate::output::{cpus, json, yes};
use isol_system::features::BpfState;
use isol_system::model::CpuReport;
use isol_system::tracefs::Tracefs;
use isol_system::{Root, SystemModel};
use std::fmt::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print the model as JSON (schema isol.info/1, docs/json/info.md).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let m = SystemModel::probe(&Root::default());
    if a.json {
        json(&m)?;
    } else {
        print!("{}", render(&m));
    }
    Ok(ExitCode::SUCCESS)
}

fn isolation_words(c: &CpuReport) -> String {
    let i = &c.isolation;
    let w: Vec<&str> = [
        (i.nohz_full, "nohz_full"),
        (i.domain, "domain"),
        (i.managed_irq, "managed_irq"),
        (i.rcu_nocbs, "rcu_nocbs"),
        (i.cgroup_isolated, "cgroup"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if w.is_empty() {
        "-".into()
    } else {
        w.join(",")
    }
}

/// A compact list of names: `ksoftirqd/1, cpuhp/1, ... (+7 more)`.
fn names<'a>(it: impl Iterator<Item = &'a str>, max: usize) -> String {
    let v: Vec<&str> = it.collect();
    let mut s = v.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if v.len() > max {
        let _ = write!(s, " (+{} more)", v.len() - max);
    }
    s
}

pub fn render(m: &SystemModel) -> String {
    let mut o = String::new();
    let t = &m.topology;
    let _ = writeln!(o, "Kernel    {} ({})", m.kernel.release, m.kernel.machine);
    let _ = writeln!(
        o,
        "CPUs      online {} · {} cores · {} NUMA node(s){}",
        cpus(&t.online),
        t.cores(),
        t.nodes.len().max(1),
        match t.smt_active {
            Some(true) => " · SMT on",
            Some(false) => " · SMT off",
            None => "",
        }
    );
    let c = &m.cpus;
    if c.isolated.is_empty() {
        let _ = writeln!(o, "Isolated  none: every CPU is housekeeping");
    } else {
        let _ = writeln!(
            o,
            "Isolated  {} (nohz_full {} · domain {} · managed_irq {} · rcu_nocbs {} · cgroup {}); housekeeping {}",
            cpus(&c.isolated),
            cpus(&c.nohz_full),
            cpus(&c.domain),
            cpus(&c.managed_irq),
            cpus(&c.rcu_nocbs),
            cpus(&c.cgroup_isolated),
            cpus(&c.housekeeping)
        );
    }
    let b = &m.boot;
    let mut params = Vec::new();
    if let Some(v) = &b.nohz_full {
        params.push(format!("nohz_full={v}"));
    }
    if let Some(i) = &b.isolcpus {
        let f: Vec<String> = i
            .flags
            .iter()
            .map(|f| {
                serde_json::to_value(f)
                    .unwrap()
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        params.push(format!("isolcpus={},{}", f.join(","), i.cpus));
    }
    if let Some(v) = &b.rcu_nocbs {
        params.push(format!("rcu_nocbs={v}"));
    }
    if let Some(v) = &b.irqaffinity {
        params.push(format!("irqaffinity={v}"));
    }
    if let Some(v) = &b.kthread_cpus {
        params.push(format!("kthread_cpus={v}"));
    }
    for (k, v) in &b.other {
        params.push(match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        });
    }
    let _ = writeln!(
        o,
        "Boot      {}",
        if params.is_empty() {
            "no isolation parameters".into()
        } else {
            params.join(" ")
        }
    );
    for inv in &b.invalid {
        let _ = writeln!(
            o,
            "          ignored by the kernel: {}={} ({})",
            inv.param, inv.value, inv.error
        );
    }
    let _ = writeln!(
        o,
        "IRQs      default affinity {}",
        m.default_irq_affinity
            .as_ref()
            .map(cpus)
            .unwrap_or_else(|| "unknown".into())
    );
    match (&m.cgroups.mount, m.cgroups.cpuset_v2) {
        (None, _) => {
            let _ = writeln!(o, "cgroup v2 not mounted");
        }
        (Some(p), false) => {
            let _ = writeln!(
                o,
                "cgroup v2 at {} without the cpuset controller",
                p.display()
            );
        }
        (Some(p), true) => {
            let _ = writeln!(
                o,
                "cgroup v2 at {}: {} isolated partition(s){}",
                p.display(),
                m.cgroups.partitions.len(),
                m.cgroups
                    .partitions
                    .iter()
                    .map(|p| format!(" {}={} [{}]", p.path, p.cpus, p.state))
                    .collect::<String>()
            );
        }
    }

    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:>4} {:>4} {:>4}  {:<38} {:>5} {:>10} {:>9} {:>9}",
        "CPU", "node", "core", "isolation", "IRQs", "timer irq", "kthreads", "user"
    );
    for r in &m.per_cpu {
        let _ = writeln!(
            o,
            "{:>4} {:>4} {:>4}  {:<38} {:>5} {:>10} {:>9} {:>9}",
            r.cpu,
            r.node.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            r.core.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            isolation_words(r),
            r.irqs.len(),
            r.arch_irqs
                .get(isol_system::arch::LOCAL_TIMER_LINE)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{}+{}", r.kthreads.len(), r.kthreads_unbound),
            format!("{}/{}", r.user_pinned.len(), r.user_allowed),
        );
    }
    let _ = writeln!(
        o,
        "  (IRQs: device IRQs delivered there; timer irq: local timer interrupts since boot;\n   kthreads: confined+unbound; user: pinned/allowed threads)"
    );

    let isolated: Vec<&CpuReport> = m
        .per_cpu
        .iter()
        .filter(|r| c.isolated.contains(r.cpu))
        .collect();
    if !isolated.is_empty() {
        let _ = writeln!(o, "\nStill landing on isolated CPUs:");
        for r in isolated {
            let _ = writeln!(o, "  CPU {}:", r.cpu);
            if r.irqs.is_empty() {
                let _ = writeln!(o, "    device IRQs: none");
            } else {
                let _ = writeln!(
                    o,
                    "    device IRQs: {}",
                    names(
                        r.irqs
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .into_iter(),
                        8
                    )
                );
                for i in &r.irqs {
                    let _ = writeln!(
                        o,
                        "      IRQ {} {} effective {} (asked {}){}",
                        i.irq,
                        i.name,
                        i.effective,
                        i.affinity,
                        if i.managed == Some(true) {
                            " managed"
                        } else {
                            ""
                        }
                    );
                }
            }
            let fixed = r.kthreads.iter().filter(|k| k.fixed_affinity);
            let movable = r.kthreads.iter().filter(|k| !k.fixed_affinity);
            let _ = writeln!(
                o,
                "    per-CPU kthreads (cannot move): {}",
                names(fixed.map(|k| k.comm.as_str()), 10)
            );
            let mv: Vec<_> = movable.collect();
            if !mv.is_empty() {
                let _ = writeln!(
                    o,
                    "    kthreads confined here (movable): {}",
                    names(mv.iter().map(|k| k.comm.as_str()), 10)
                );
            }
            let _ = writeln!(
                o,
                "    unbound kthreads allowed here: {}",
                r.kthreads_unbound
            );
            let _ = writeln!(
                o,
                "    user threads pinned here: {}{}",
                if r.user_pinned.is_empty() {
                    "none".into()
                } else {
                    names(r.user_pinned.iter().map(|k| k.comm.as_str()), 10)
                },
                if r.user_allowed > r.user_pinned.len() {
                    format!(
                        "; {} more allowed here by a wide affinity",
                        r.user_allowed - r.user_pinned.len()
                    )
                } else {
                    String::new()
                }
            );
        }
    }

    let f = &m.features;
    let _ = writeln!(o, "\nCapabilities");
    let _ = writeln!(
        o,
        "  privileges   {}",
        if f.root {
            "root".to_string()
        } else {
            format!(
                "uid {} (CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {})",
                f.euid,
                yes(f.capabilities.cap_bpf),
                yes(f.capabilities.cap_perfmon),
                yes(f.capabilities.cap_sys_admin)
            )
        }
    );
    let _ = writeln!(
        o,
        "  tracefs      {}",
        match &f.tracefs {
            Tracefs::Mounted { path } => format!("mounted at {}", path.display()),
            Tracefs::Mountable => "not mounted (isol can mount it)".into(),
            Tracefs::NotPermitted => "not mounted, and this user may not mount it".into(),
            Tracefs::Absent => "not in this kernel".into(),
        }
    );
    let tri = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let _ = writeln!(
        o,
        "  kernel       NO_HZ_FULL {} · context tracking {} · BTF {} · BPF {} · osnoise {}",
        yes(f.nohz_full_support),
        tri(f.context_tracking),
        yes(f.btf),
        match f.bpf {
            BpfState::Available => "yes",
            BpfState::NotPermitted => "not permitted",
            BpfState::Unsupported => "no",
        },
        tri(f.osnoise)
    );
    if !f.tracepoints.is_empty() {
        let absent: Vec<&str> = f
            .tracepoints
            .iter()
            .filter(|(_, v)| !**v)
            .map(|(k, _)| k.as_str())
            .collect();
        let _ = writeln!(
            o,
            "  tracepoints  {}/{} present{}",
            f.tracepoints.len() - absent.len(),
            f.tracepoints.len(),
            if absent.is_empty() {
                String::new()
            } else {
                format!(" (absent: {})", absent.join(", "))
            }
        );
    }
    if !m.missing.is_empty() {
        let _ = writeln!(o, "\nMissing");
        for x in &m.missing {
            let _ = writeln!(o, "  - {}\n    fix: {}", x.why, x.fix);
        }
    }
    o
}
