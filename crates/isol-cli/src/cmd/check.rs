//! `isol check`: the main job. On whatever machine it runs: pick the
//! isolated CPUs (or, with none, a sensible CPU, and say so), run the
//! quiet-CPU audit, measure noise for a few seconds with every gap
//! attributed, and print a verdict a newcomer understands, with the path
//! of the HTML report.

use crate::output::json;
use anyhow::Result;
use isol_capture::{Class, Kind};
use isol_cpulist::CpuSet;
use isol_noise::attribute::Params;
use isol_noise::report::{fmt_ns, html, CpuReport, Named, Report};
use isol_noise::sampler;
use isol_noise::session::{self, Attribution, Mode, SessionOptions};
use isol_system::Root;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to check (default: the isolated CPUs, else one CPU chosen).
    #[arg(short, long)]
    cpus: Option<CpuSet>,
    /// Seconds to measure.
    #[arg(short = 'D', long, default_value_t = 5.0)]
    duration: f64,
    /// A gap is a loop delta above this many microseconds.
    #[arg(short = 'T', long, default_value_t = 5.0)]
    threshold: f64,
    /// Where to write the HTML report (default: a file in the temp dir).
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Print the result as JSON (schema isol.check/1).
    #[arg(long)]
    json: bool,
    /// Test hook, as in `isol noise`.
    #[arg(long, hide = true)]
    inject_stall: Option<String>,
}

#[derive(Serialize)]
struct Check {
    schema: &'static str,
    cpus: CpuSet,
    /// Why these CPUs.
    chosen: String,
    /// `quiet`, `good`, `noisy`.
    verdict: Verdict,
    /// The verdict in words, and what to do.
    lines: Vec<String>,
    audit: Option<isol_tune::audit::Verdict>,
    html: String,
    noise: Report,
}

/// The CPUs to check, why, and whether they are isolated.
fn choose(asked: Option<CpuSet>) -> Result<(CpuSet, String, bool)> {
    use isol_system::select::{select, WhenNoneIsolated};
    let s = select(
        &Root::default(),
        asked.as_ref(),
        WhenNoneIsolated::LastOnline,
    )
    .map_err(anyhow::Error::msg)?;
    // A user's list is checked as asked, isolated or not.
    let isolated = s.isolated || asked.is_some();
    Ok((s.watched, s.why, isolated))
}

/// How quiet the CPUs were; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Quiet,
    Good,
    Noisy,
}

/// A report cause as the advice tells causes apart (the report names
/// causes by strings: class, kind, detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advised<'a> {
    /// Class `hw`: time no kernel entry covers.
    NoKernelEntry,
    Tick,
    Timer(&'a str),
    DeviceIrq(&'a str),
    TlbFlush,
    TextPatching,
    Ipi(&'a str),
    Softirq(&'a str),
    OtherTask(&'a str),
    Work(&'a str),
    PageFault,
    Nmi,
    Other(&'a Named),
}

impl<'a> Advised<'a> {
    fn of(n: &'a Named) -> Advised<'a> {
        let d = n.detail.as_str();
        if n.class == "hw" {
            return Advised::NoKernelEntry;
        }
        let Some(class) = Class::from_name(&n.class) else {
            return Advised::Other(n);
        };
        let kind = Kind::from_name(&n.kind);
        match class {
            Class::Timer if d.contains("tick") => Advised::Tick,
            Class::Timer => Advised::Timer(d),
            Class::Irq => Advised::DeviceIrq(d),
            Class::Ipi if kind == Some(Kind::TlbFlush) || d.contains("tlb") => Advised::TlbFlush,
            Class::Ipi if d.contains("sync_core") || d.contains("text_poke") => {
                Advised::TextPatching
            }
            Class::Ipi => Advised::Ipi(d),
            Class::Softirq => Advised::Softirq(d),
            Class::Sched => Advised::OtherTask(d),
            Class::Workqueue => Advised::Work(d),
            Class::Exception if kind == Some(Kind::PageFault) => Advised::PageFault,
            Class::Nmi => Advised::Nmi,
            _ => Advised::Other(n),
        }
    }

    /// What the cause means and what to do about it, in a sentence.
    fn advice(self) -> String {
        match self {
            Advised::NoKernelEntry => "no kernel entry at all: the firmware (SMI), the hypervisor taking the CPU away, or the SMT sibling. On a VM ask for dedicated, pinned vCPUs; on metal check SMIs and disable the sibling thread".into(),
            Advised::Tick => "the scheduler tick still runs on this CPU: boot with nohz_full=<cpus> and keep one task per CPU".into(),
            Advised::Timer(detail) => format!("a timer callback ({detail}) runs here: move the timer's owner to a housekeeping CPU"),
            Advised::DeviceIrq(detail) => format!("a device interrupt ({detail}): steer its IRQ affinity away (`isol apply` does)"),
            Advised::TlbFlush => "TLB-flush IPIs: another thread of the process maps/unmaps memory while this one runs; preallocate, avoid munmap/mprotect in the hot process".into(),
            Advised::TextPatching => "kernel text patching (BPF JIT, tracepoints, static keys) IPIs every CPU: avoid loading BPF or tracing while latency matters".into(),
            Advised::Ipi(detail) => format!("an IPI from another CPU ({detail}); the report names the sender and its stack"),
            Advised::Softirq(detail) => format!("softirq {detail} runs here: move its source (timers, network queues) to housekeeping CPUs; rcu_nocbs= for RCU"),
            Advised::OtherTask(detail) => format!("another task ({detail}) ran on this CPU: isolcpus=/an isolated cpuset partition keep tasks off it"),
            Advised::Work(detail) => format!("a kworker ran {detail}: set the workqueue cpumask to housekeeping CPUs (`isol apply`)"),
            Advised::PageFault => "page faults of the measured program: prefault and mlock its memory".into(),
            Advised::Nmi => "NMIs (perf or the NMI watchdog): nmi_watchdog=0".into(),
            Advised::Other(n) => format!("{} {} {}", n.class, n.kind, n.detail),
        }
    }
}

fn cpu_lines(c: &CpuReport, duration_s: f64, attribution: bool) -> (Verdict, Vec<String>) {
    let verdict = if c.max_ns < 20_000 {
        Verdict::Quiet
    } else if c.max_ns < 100_000 && c.availability_pct >= 99.99 {
        Verdict::Good
    } else {
        Verdict::Noisy
    };
    let mut l = vec![format!(
        "CPU {}: {} in {:.0} s: the longest a pinned program was held up at once was {}; it had the CPU {:.3}% of the time; {} gaps over the threshold.",
        c.cpu,
        match verdict {
            Verdict::Quiet => "QUIET",
            Verdict::Good => "GOOD (short, rare interruptions)",
            Verdict::Noisy => "NOISY",
        },
        duration_s,
        fmt_ns(c.max_ns),
        c.availability_pct,
        c.gaps
    )];
    if attribution && c.noise_ns > 0 {
        for row in c.causes.iter().take(4) {
            l.push(format!(
                "  {:.0}% of the lost time ({} gaps, up to {}): {}",
                100.0 * row.total_ns as f64 / c.noise_ns as f64,
                row.count,
                fmt_ns(row.max_ns),
                Advised::of(&row.cause).advice()
            ));
        }
    }
    (verdict, l)
}

pub fn run(a: Args) -> Result<ExitCode> {
    let root = Root::default();
    let (cpus, chosen, isolated) = choose(a.cpus.clone())?;
    let audit = if isolated && a.cpus.is_none() {
        isol_tune::audit::verdict(&root).ok()
    } else {
        isol_tune::audit::audit(&root, Some(&cpus))
            .ok()
            .map(|r| r.verdict)
    };
    let inject = a
        .inject_stall
        .as_deref()
        .and_then(|s| s.split_once(':'))
        .and_then(|(x, y)| {
            Some((
                x.parse::<u64>().ok()? * 1_000_000,
                y.parse::<u64>().ok()? * 1000,
            ))
        });
    let opts = SessionOptions {
        mode: Mode::Synthetic {
            cpus: cpus.clone(),
            sampler: sampler::Config {
                threshold_ns: (a.threshold * 1000.0) as u64,
                inject_stall: inject,
                ..sampler::Config::default()
            },
        },
        duration: Some(Duration::from_secs_f64(a.duration)),
        attribution: Attribution::IfPossible,
        params: Params::default(),
        worst: 10,
        ring_bytes: 8 << 20,
        drain_ms: 50,
        on_threshold: None,
        inject: None,
    };
    if !a.json {
        println!("isol check: measuring {chosen} for {:.0} s ...", a.duration);
    }
    let stop = super::noise::ctrl_c()?;
    let report = session::run(&opts, &stop, &mut super::noise::progress_printer())?;
    let path = a.html.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        std::env::temp_dir().join(format!("isol-check-{t}.html"))
    });
    std::fs::write(&path, html::render(&report))?;

    let mut lines = Vec::new();
    let mut worst = Verdict::Quiet;
    for c in &report.per_cpu {
        let (v, l) = cpu_lines(c, report.duration_s, report.attribution);
        worst = worst.max(v);
        lines.extend(l);
    }
    if !isolated {
        lines.push("No CPU is isolated here, so every kind of noise can land on any CPU. To isolate one: `isol audit --cpus N` lists the boot parameters and runtime settings (`isol apply` makes the runtime ones).".into());
    }
    if let Some(v) = &audit {
        lines.push(format!(
            "Settings: {}{}",
            v.summary,
            if v.fail + v.warn > 0 {
                " (`isol audit` explains each item, `isol apply` fixes the runtime ones)"
            } else {
                ""
            }
        ));
    }
    for n in &report.notes {
        lines.push(format!("Note: {n}"));
    }
    if report.virtualized {
        lines.push("This machine is a virtual machine: gaps with no kernel entry (hw) are mostly the hypervisor's.".into());
    }
    let html_s = path.display().to_string();
    if a.json {
        json(&Check {
            schema: "isol.check/1",
            cpus,
            chosen,
            verdict: worst,
            lines,
            audit,
            html: html_s,
            noise: report,
        })?;
    } else {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
        println!(
            "\nVerdict: {}",
            match worst {
                Verdict::Quiet => "QUIET: fit for latency-critical work.",
                Verdict::Good => "GOOD: short, rare interruptions; fine for most latency-critical work.",
                Verdict::Noisy => "NOISY: a latency-critical program pinned here would be interrupted; the causes and fixes follow.",
            }
        );
        for l in &lines {
            println!("{l}");
        }
        println!("\nFull report (plots, worst gaps with their cause chains): {html_s}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(class: &str, kind: &str, detail: &str) -> Named {
        Named {
            class: class.into(),
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    /// Each cause class gets its own advice; `tlb_flush` once fell to the
    /// generic IPI line when its detail did not say "tlb".
    #[test]
    fn each_cause_class_gets_its_specific_advice() {
        let cases = [
            (
                named("hw", "no_kernel_entry", "x"),
                Advised::NoKernelEntry,
                "SMI",
            ),
            (
                named("timer", "local_timer", "tick"),
                Advised::Tick,
                "nohz_full=",
            ),
            (
                named("timer", "timer_fn", "delayed_work_timer_fn"),
                Advised::Timer("delayed_work_timer_fn"),
                "timer callback (delayed_work_timer_fn)",
            ),
            (
                named("irq", "device_irq", "eth0"),
                Advised::DeviceIrq("eth0"),
                "device interrupt (eth0)",
            ),
            (
                named("ipi", "tlb_flush", "flush_tlb_func"),
                Advised::TlbFlush,
                "TLB-flush IPIs",
            ),
            (
                named("ipi", "tlb_flush", "remote"),
                Advised::TlbFlush,
                "TLB-flush IPIs",
            ),
            (
                named("ipi", "call_function", "flush_tlb_func"),
                Advised::TlbFlush,
                "TLB-flush IPIs",
            ),
            (
                named("ipi", "call_function", "do_sync_core"),
                Advised::TextPatching,
                "text patching",
            ),
            (
                named("ipi", "call_function", "text_poke_sync"),
                Advised::TextPatching,
                "text patching",
            ),
            (
                named("ipi", "reschedule", "resched"),
                Advised::Ipi("resched"),
                "an IPI from another CPU (resched)",
            ),
            (
                named("softirq", "softirq", "RCU"),
                Advised::Softirq("RCU"),
                "softirq RCU",
            ),
            (
                named("sched", "preempt", "kworker/1:1"),
                Advised::OtherTask("kworker/1:1"),
                "another task (kworker/1:1)",
            ),
            (
                named("workqueue", "work", "vmstat_update"),
                Advised::Work("vmstat_update"),
                "kworker ran vmstat_update",
            ),
            (
                named("exception", "page_fault", "0x1000"),
                Advised::PageFault,
                "prefault and mlock",
            ),
            (named("nmi", "nmi", "perf"), Advised::Nmi, "nmi_watchdog=0"),
        ];
        for (n, want, says) in &cases {
            let a = Advised::of(n);
            assert_eq!(a, *want, "{n:?}");
            assert!(a.advice().contains(says), "{n:?}: {}", a.advice());
        }
        // What no advice covers is named as it is.
        let o = named("syscall", "syscall", "getppid");
        assert_eq!(Advised::of(&o).advice(), "syscall syscall getppid");
        // No two classes share a sentence.
        let mut all: Vec<String> = cases
            .iter()
            .map(|(n, ..)| Advised::of(n).advice())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), cases.len() - 3, "{all:#?}");
    }

    #[test]
    fn verdicts_serialize_as_before_and_rank_worst_last() {
        let j = |v| serde_json::to_value(v).unwrap();
        assert_eq!(j(Verdict::Quiet), "quiet");
        assert_eq!(j(Verdict::Good), "good");
        assert_eq!(j(Verdict::Noisy), "noisy");
        assert!(Verdict::Quiet < Verdict::Good && Verdict::Good < Verdict::Noisy);
    }
}
