//! `isol noise`: OS noise on chosen CPUs, measured by an oslat-class TSC
//! loop with every gap attributed to its cause by the capture engine; or,
//! with `--pid`, the interruptions a running task suffers (capture only).
//! Options follow rt-tests/rtla: -c, -D, -T, -s, bucket width/count.

use anyhow::{bail, Result};
use isol_cpulist::CpuSet;
use isol_noise::attribute::Params;
use isol_noise::report::{html, json, text};
use isol_noise::sampler;
use isol_noise::session::{self, Attribution, Mode, SessionOptions};
use isol_noise::{Progress, Report};
use isol_system::{Root, SystemModel};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to measure (default: the isolated CPUs).
    #[arg(short, long, conflicts_with = "pid")]
    cpus: Option<CpuSet>,
    /// Measure the interruptions of this running process instead (no
    /// synthetic loop; from the capture engine alone).
    #[arg(short, long)]
    pid: Option<u32>,
    /// Seconds to run (default: until Ctrl-C, which prints the report).
    #[arg(short = 'D', long, value_parser = super::args::parse_duration)]
    duration: Option<f64>,
    /// A loop delta above this many microseconds is a gap.
    #[arg(short = 'T', long, default_value_t = 5.0)]
    threshold: f64,
    /// Stop at the first gap above this many microseconds, keeping the
    /// trace of the moments before it; the threshold of --on-threshold.
    #[arg(short = 's', long)]
    stop_above: Option<f64>,
    #[command(flatten)]
    on: super::args::OnThreshold,
    /// How often records are drained from the ring buffer and gaps looked
    /// at, in ms (the most --on-threshold waits before acting).
    #[arg(long, default_value_t = 50)]
    drain_ms: u64,
    /// Histogram bucket width in ns (oslat -W).
    #[arg(short = 'W', long, default_value_t = 1000)]
    bucket_width: u64,
    /// Histogram bucket count (oslat -b).
    #[arg(short = 'b', long, default_value_t = 32)]
    bucket_size: usize,
    /// Run the loop SCHED_FIFO at this priority.
    #[arg(short = 'f', long)]
    priority: Option<i32>,
    /// The N worst gaps to analyse.
    #[arg(long, default_value_t = 10)]
    worst: usize,
    /// Gaps kept per CPU (more are counted, not kept).
    #[arg(long, default_value_t = 200_000)]
    max_gaps: usize,
    /// Print the report as JSON (schema isol.noise/3).
    #[arg(long)]
    json: bool,
    /// Also print oslat's histogram format.
    #[arg(long)]
    histogram: bool,
    /// Write a self-contained HTML report (plots) to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// Measure without the capture engine (no causes).
    #[arg(long)]
    no_attribution: bool,
    /// Ring buffer size in KiB (power of two).
    #[arg(long, default_value_t = 8192)]
    buffer_kb: u32,
    /// Test hook: `AT_MS:US` stalls the loop for US microseconds AT_MS
    /// into the run without entering the kernel.
    #[arg(long, hide = true, value_parser = parse_stall)]
    inject_stall: Option<(u64, u64)>,
    /// Inject known interference into the measured CPUs and report, per
    /// kind, the share of injections whose gap names the right kernel
    /// function (the recall): tlb, membarrier, perf, jit, timer, fault, all.
    #[arg(long, value_name = "KIND,...", conflicts_with = "pid")]
    inject: Option<String>,
    /// With --inject: one injection of each kind this often, ms.
    #[arg(long, default_value_t = 10, requires = "inject")]
    inject_every_ms: u64,
}

fn parse_stall(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once(':').ok_or("AT_MS:US")?;
    let at: u64 = a.parse().map_err(|e| format!("{a:?}: {e}"))?;
    let us: u64 = b.parse().map_err(|e| format!("{b:?}: {e}"))?;
    Ok((at * 1_000_000, us * 1_000))
}

/// A progress line on stderr (only on a terminal).
pub fn progress_printer() -> impl FnMut(&Progress) {
    let tty = std::io::stderr().is_terminal();
    move |p: &Progress| {
        if !tty {
            return;
        }
        let mut line = format!(
            "\r{:.0}{} s",
            p.elapsed_s,
            p.duration_s.map(|d| format!("/{d:.0}")).unwrap_or_default()
        );
        for (cpu, _loops, max, gaps) in &p.cpus {
            line += &format!(
                "  CPU {cpu}: max {}, {gaps} gaps",
                isol_noise::report::fmt_ns(*max)
            );
        }
        line += &format!("  records {}   ", p.records);
        let _ = write!(std::io::stderr(), "{line}");
        let _ = std::io::stderr().flush();
    }
}

pub fn ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !a.on.actions.is_empty() {
        if a.stop_above.is_none() {
            bail!("--on-threshold needs --stop-above US: the gap that runs the actions");
        }
        if a.pid.is_some() {
            bail!("--on-threshold needs the measuring loop: it acts on gaps, and --pid has none");
        }
    }
    let mode = match a.pid {
        Some(pid) => Mode::Pid {
            pid,
            bucket_width_ns: a.bucket_width,
            buckets: a.bucket_size,
        },
        None => {
            let cpus = match a.cpus {
                Some(c) => c,
                None => {
                    let model = SystemModel::probe(&Root::default());
                    if model.cpus.isolated.is_empty() {
                        bail!("this machine has no isolated CPUs; name the CPUs to measure with --cpus LIST (e.g. --cpus 1), or run `isol check`");
                    }
                    model.cpus.isolated
                }
            };
            Mode::Synthetic {
                cpus,
                sampler: sampler::Config {
                    threshold_ns: (a.threshold * 1000.0) as u64,
                    stop_above_ns: a.stop_above.map(|s| (s * 1000.0) as u64),
                    bucket_width_ns: a.bucket_width.max(1),
                    buckets: a.bucket_size.max(1),
                    max_gaps: a.max_gaps.max(1),
                    fifo_priority: a.priority,
                    inject_stall: a.inject_stall,
                    ..sampler::Config::default()
                },
            }
        }
    };
    let opts = SessionOptions {
        mode,
        duration: a.duration.map(Duration::from_secs_f64),
        attribution: if a.no_attribution {
            Attribution::Off
        } else {
            Attribution::Required
        },
        params: Params::default(),
        worst: a.worst,
        ring_bytes: a.buffer_kb.saturating_mul(1024),
        drain_ms: a.drain_ms,
        on_threshold: (!a.on.actions.is_empty()).then(|| session::OnThreshold {
            actions: a.on.actions.clone(),
            window_ns: a.on.trace_window_ms.saturating_mul(1_000_000),
            ring_bytes_per_cpu: a.on.trace_buffer_kb.saturating_mul(1024),
        }),
        inject: match &a.inject {
            Some(k) => Some(isol_noise::inject::Plan {
                kinds: isol_noise::inject::Kind::parse_list(k)
                    .map_err(|e| anyhow::anyhow!("--inject: {e}"))?,
                every_ns: a.inject_every_ms.max(1) * 1_000_000,
            }),
            None => None,
        },
    };
    let stop = ctrl_c()?;
    if !a.json && a.duration.is_none() {
        eprintln!("isol noise: measuring; Ctrl-C for the report");
    }
    let report = session::run(&opts, &stop, &mut progress_printer())?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    for h in report.on_threshold.iter().flat_map(|t| &t.hits) {
        eprintln!("isol: {}", h.describe());
    }
    print(&report, a.json, a.histogram)?;
    if let Some(p) = &a.html {
        std::fs::write(p, html::render(&report))?;
        eprintln!("isol noise: HTML report in {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print(r: &Report, as_json: bool, histogram: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", json::render(r))?;
    } else {
        write!(out, "{}", text::render(r))?;
        if histogram {
            writeln!(out)?;
            write!(out, "{}", text::oslat(r))?;
        }
    }
    Ok(())
}
