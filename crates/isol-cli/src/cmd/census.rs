//! `isol census`: seed 004's IPI census in one command. A housekeeping
//! load (built-in, or the command after `--`) runs on the CPUs that are
//! not counted while the capture engine records every IPI and
//! interruption of the isolated ones; then the table by callback, by
//! sender stack and per minute. `--import` builds the same tables from a
//! trace-cmd recording, `--compare` sets two reports side by side.

use crate::output::json;
use anyhow::{bail, Context, Result};
use isol_capture::{Capture, Options};
use isol_census::load::{self, Class, Load};
use isol_census::report::Load as LoadInfo;
use isol_census::{compare, import, Census, Event, Report};
use isol_cpulist::CpuSet;
use isol_system::{Root, SystemModel};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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

    let model = SystemModel::probe(&Root::default());
    let cpus = match &a.cpus {
        Some(c) => {
            let off = c.difference(&model.cpus.online);
            if !off.is_empty() {
                bail!(
                    "--cpus {c}: CPU {off} is not online (online: {})",
                    model.cpus.online
                );
            }
            c.clone()
        }
        None => {
            if model.cpus.isolated.is_empty() {
                bail!("this machine has no isolated CPUs; name the CPUs to count with --cpus LIST (e.g. --cpus 1)");
            }
            model.cpus.isolated.clone()
        }
    };
    let hk = model.cpus.online.difference(&cpus);
    if hk.is_empty() {
        bail!("every online CPU is counted; leave at least one housekeeping CPU for the load and isol");
    }
    // isol and everything it starts (load threads, the command) run on
    // the housekeeping CPUs; only census victims are pinned elsewhere.
    isol_system::affinity::pin_current_thread(&hk).map_err(anyhow::Error::msg)?;

    let classes: Vec<Class> = if a.classes.is_empty() {
        Class::ALL.to_vec()
    } else {
        a.classes
            .iter()
            .map(|c| Class::parse(c))
            .collect::<Result<_>>()?
    };
    let builtin = a.command.is_empty() && a.load == "builtin";
    let lo = load::Options {
        isolated: cpus.clone(),
        housekeeping: hk.clone(),
        classes: classes.clone(),
        generators: false,
        victims: !a.no_victim,
    };
    let duration = match (a.duration, a.command.is_empty()) {
        (Some(d), _) => Some(d),
        (None, true) => Some(60.0),
        (None, false) => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }

    // Victims first, then attach (isol's own text patching lands before
    // the census window), then the load.
    let mut ld = Load::start(&lo)?;
    let mut cap = if a.load_only {
        None
    } else {
        Some(Capture::start(Options {
            cpus: cpus.clone(),
            ring_bytes: a.buffer_kb.saturating_mul(1024),
            ..Default::default()
        })?)
    };
    let mut census = Census::new();
    let mut before = 0u64;
    let mut after = 0u64;
    if let Some(c) = cap.as_mut() {
        // Let the attach's IPIs land, then leave them out.
        std::thread::sleep(Duration::from_millis(100));
        before += c.drain_raw().len() as u64;
    }
    let t0 = monotonic_ns();
    let started = Instant::now();
    if builtin {
        ld.start_generators(&lo)?;
    }
    let mut child = if a.command.is_empty() {
        None
    } else {
        Some(
            std::process::Command::new(&a.command[0])
                .args(&a.command[1..])
                .spawn()
                .with_context(|| format!("starting {}", a.command[0]))?,
        )
    };
    if !a.json {
        eprintln!(
            "isol census: CPUs {cpus}, load {} on CPUs {hk}{}{}",
            if builtin {
                "builtin".to_string()
            } else if a.command.is_empty() {
                "none".to_string()
            } else {
                a.command.join(" ")
            },
            duration.map_or(String::new(), |d| format!(", {d:.0} s")),
            if a.no_victim {
                ""
            } else {
                ", census victims spinning on the counted CPUs"
            }
        );
    }

    let end = duration.map(|d| started + Duration::from_secs_f64(d));
    let tick = Duration::from_millis(50);
    let mut child_status = None;
    let add = |cap: &mut Capture,
               census: &mut Census,
               t1: Option<u64>,
               before: &mut u64,
               after: &mut u64| {
        for r in cap.drain() {
            if r.start_ns < t0 {
                *before += 1;
            } else if t1.is_some_and(|t1| r.start_ns > t1) {
                *after += 1;
            } else {
                census.add(&Event::from_record(&r, t0));
            }
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        if let Some(ch) = child.as_mut() {
            if let Some(s) = ch.try_wait()? {
                child_status = Some(s);
                break;
            }
        }
        std::thread::sleep(tick);
        if let Some(c) = cap.as_mut() {
            add(c, &mut census, None, &mut before, &mut after);
        }
    }
    ld.stop_generators();
    if let Some(mut ch) = child.take() {
        if child_status.is_none() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(ch.id() as i32, libc::SIGTERM) };
            child_status = Some(ch.wait()?);
        }
    }
    let t1 = monotonic_ns();
    let elapsed = started.elapsed().as_secs_f64();
    let mut report = Report::new("isol");
    if let Some(c) = cap.as_mut() {
        add(c, &mut census, Some(t1), &mut before, &mut after);
        let d = c.drops();
        report.drops = [
            ("ringbuf", d.ringbuf),
            ("aggregation", d.aggregation),
            ("stack", d.stack),
            ("sender", d.sender),
            ("nesting", d.nesting),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    }
    drop(cap);
    let (stats, victims) = ld.finish();
    report.kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    report.cpus = cpus.clone();
    report.housekeeping = hk;
    report.duration_s = (t1.saturating_sub(t0)) as f64 / 1e9;
    report.load = LoadInfo {
        kind: if builtin {
            "builtin"
        } else if a.command.is_empty() {
            "none"
        } else {
            "command"
        }
        .into(),
        command: a.command.clone(),
        classes: stats,
        victims,
    };
    report.excluded.before_load = before;
    report.excluded.after_load = after;
    if !cpus.is_subset(&model.cpus.nohz_full) {
        report.notes.push(format!(
            "CPUs {} are not nohz_full: no nohz_full kicks, and the tick shows up as timer interruptions",
            cpus.difference(&model.cpus.nohz_full)
        ));
    }
    if let Some(s) = child_status {
        if !s.success() {
            report
                .notes
                .push(format!("the load command ended with {s}"));
        }
    }
    if a.load_only {
        report.source = "load-only".into();
        report
            .notes
            .push(format!("load only, nothing captured ({elapsed:.1} s)"));
    } else {
        census.finish(&mut report);
    }
    emit(&report, &a)?;
    Ok(ExitCode::SUCCESS)
}
