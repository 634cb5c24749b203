//! `isol census`: the IPI deferral series' IPI census in one command. A housekeeping
//! load (built-in, or the command after `--`) runs on the CPUs that are
//! not counted while the capture engine records every IPI and
//! interruption of the isolated ones; then the table by callback, by
//! sender stack and per minute. `--import` builds the same tables from a
//! trace-cmd recording, `--compare` sets two reports side by side.

use crate::output::json;
use anyhow::{Context, Result};
use isol_census::load::Class;
use isol_census::run::RunOptions;
use isol_census::{compare, import, Report};
use isol_cpulist::CpuSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// Isolated CPUs to count (default: the machine's isolated CPUs).
    #[arg(short, long)]
    cpus: Option<CpuSet>,
    /// How long the load runs: 90, 90s, 20m, 1h (default 60s; with a
    /// command: until it exits).
    #[arg(short = 'D', long, value_parser = super::args::parse_duration)]
    duration: Option<f64>,
    /// Housekeeping load: `builtin` or `none` (a command after `--` is
    /// the load instead).
    #[arg(long, default_value = "builtin", value_parser = ["builtin", "none"])]
    load: String,
    /// Built-in load classes, comma-separated (default all): kernel-tlb,
    /// text-poke, smp-call, nohz-kick, user-tlb, pressure.
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Do not run isol's own spinning victim thread on each counted CPU
    /// (when your workload runs there). Without a task sharing the
    /// load's mm there, user TLB flushes and membarrier IPIs cannot reach it.
    #[arg(long)]
    no_victim: bool,
    /// Print the report as JSON (schema isol.census/1).
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to FILE.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Sender stacks (or compare rows) shown in the text report.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Compare two census JSON reports (runs, kernels, patch versions).
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    compare: Vec<PathBuf>,
    /// Build the census from a trace-cmd recording: `trace-cmd report`
    /// text (with -T stacks if recorded) or a trace.dat.
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    import: Option<PathBuf>,
    /// Run the built-in load (and victims) without capturing: to run
    /// another tracer on the same load.
    #[arg(long, hide = true)]
    load_only: bool,
    /// Ring buffer size in KiB (power of two).
    #[arg(long, default_value_t = 8192)]
    buffer_kb: u32,
    /// The housekeeping load: a command run on the housekeeping CPUs.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn emit(r: &Report, a: &Args) -> Result<()> {
    if let Some(p) = &a.output {
        std::fs::write(p, serde_json::to_string_pretty(r)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if a.json {
        json(r)
    } else {
        print!("{}", r.text(a.top));
        Ok(())
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !a.compare.is_empty() {
        let read = |p: &PathBuf| -> Result<Report> {
            let t =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Report::from_json(&t)
                .with_context(|| format!("{}: not an isol census report", p.display()))
        };
        let (ra, rb) = (read(&a.compare[0])?, read(&a.compare[1])?);
        let label = |p: &PathBuf| p.display().to_string();
        let c = compare::compare(&ra, &rb, &label(&a.compare[0]), &label(&a.compare[1]));
        if a.json {
            json(&c)?;
        } else {
            print!("{}", c.text(a.top));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(p) = &a.import {
        let r = import::import_path(p, &a.cpus.clone().unwrap_or_default())?;
        emit(&r, &a)?;
        return Ok(ExitCode::SUCCESS);
    }

    let classes: Vec<Class> = if a.classes.is_empty() {
        Class::ALL.to_vec()
    } else {
        a.classes
            .iter()
            .map(|c| Class::parse(c))
            .collect::<Result<_>>()?
    };
    let builtin = a.command.is_empty() && a.load == "builtin";
    let o = RunOptions {
        cpus: a.cpus.clone(),
        duration: match (a.duration, a.command.is_empty()) {
            (Some(d), _) => Some(d),
            (None, true) => Some(60.0),
            (None, false) => None,
        },
        builtin,
        classes,
        victims: !a.no_victim,
        command: a.command.clone(),
        capture: !a.load_only,
        buffer_kb: a.buffer_kb,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let report = isol_census::run::run(&o, &stop, |p| {
        if !a.json {
            eprintln!(
                "isol census: CPUs {}, load {} on CPUs {}{}{}",
                p.cpus,
                if builtin {
                    "builtin".to_string()
                } else if a.command.is_empty() {
                    "none".to_string()
                } else {
                    a.command.join(" ")
                },
                p.housekeeping,
                o.duration.map_or(String::new(), |d| format!(", {d:.0} s")),
                if a.no_victim {
                    ""
                } else {
                    ", census victims spinning on the counted CPUs"
                }
            );
        }
    })?;
    emit(&report, &a)?;
    Ok(ExitCode::SUCCESS)
}
