//! One census run: the victims on the counted CPUs, the capture, the load
//! on the housekeeping CPUs, the window; the front end only parses
//! arguments and prints.

use crate::load::{self, Class, Load};
use crate::report::Load as LoadInfo;
use crate::{Census, Event, Report};
use anyhow::{Context, Result};
use isol_capture::{Capture, Options};
use isol_cpulist::CpuSet;
use isol_system::clock::monotonic_ns;
use isol_system::select::{select, WhenNoneIsolated};
use isol_system::Root;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// CPUs to count (default: the isolated CPUs).
    pub cpus: Option<CpuSet>,
    /// How long the load runs; None: until the command exits.
    pub duration: Option<f64>,
    /// Run the built-in load's generators.
    pub builtin: bool,
    pub classes: Vec<Class>,
    /// Spin a census victim on each counted CPU.
    pub victims: bool,
    /// The load as a command run on the housekeeping CPUs.
    pub command: Vec<String>,
    /// Capture (false: only run the load, for another tracer).
    pub capture: bool,
    pub buffer_kb: u32,
}

/// What the run is about to do, for the front end to announce.
pub struct Plan {
    pub cpus: CpuSet,
    pub housekeeping: CpuSet,
}

/// Run a census until the duration ends, the command exits or `stop` is
/// set; `started` is called once the window opens.
pub fn run(o: &RunOptions, stop: &AtomicBool, started: impl FnOnce(&Plan)) -> Result<Report> {
    let sel = select(&Root::default(), o.cpus.as_ref(), WhenNoneIsolated::Refuse)
        .map_err(|e| anyhow::anyhow!("--cpus: {e}"))?;
    let (cpus, hk) = (sel.watched, sel.housekeeping);
    // isol and everything it starts (load threads, the command) run on
    // the housekeeping CPUs; only census victims are pinned elsewhere.
    isol_system::affinity::pin_current_thread(&hk).map_err(anyhow::Error::msg)?;
    let lo = load::Options {
        isolated: cpus.clone(),
        housekeeping: hk.clone(),
        classes: o.classes.clone(),
        generators: false,
        victims: o.victims,
    };

    // Attach first (isol's own text patching lands before the census
    // window, and loading is not slowed by a victim spinning on a counted
    // CPU: every cross-CPU call of the load would wait for it on a
    // virtual machine), then the victims, then the load.
    let mut cap = if o.capture {
        Some(Capture::start(Options {
            cpus: cpus.clone(),
            ring_bytes: o.buffer_kb.saturating_mul(1024),
            // The census counts IPIs by sender stack: every one needs it.
            all_stacks: true,
            ..Default::default()
        })?)
    } else {
        None
    };
    let mut ld = Load::start(&lo)?;
    let mut census = Census::new();
    let (mut before, mut after) = (0u64, 0u64);
    if let Some(c) = cap.as_mut() {
        // Let the attach's IPIs land, then leave them out.
        std::thread::sleep(Duration::from_millis(100));
        before += c.drain_raw().len() as u64;
    }
    let t0 = monotonic_ns();
    let t_start = Instant::now();
    if o.builtin {
        ld.start_generators(&lo)?;
    }
    let mut child = match o.command.split_first() {
        None => None,
        Some((cmd, args)) => Some(
            std::process::Command::new(cmd)
                .args(args)
                .spawn()
                .with_context(|| format!("starting {cmd}"))?,
        ),
    };
    started(&Plan {
        cpus: cpus.clone(),
        housekeeping: hk.clone(),
    });

    let end = o.duration.map(|d| t_start + Duration::from_secs_f64(d));
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
    let mut child_status = None;
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
        std::thread::sleep(Duration::from_millis(50));
        if let Some(c) = cap.as_mut() {
            add(c, &mut census, None, &mut before, &mut after);
        }
    }
    ld.stop_generators();
    if let Some(mut ch) = child.take() {
        if child_status.is_none() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(ch.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            child_status = Some(ch.wait()?);
        }
    }
    let t1 = monotonic_ns();
    let elapsed = t_start.elapsed().as_secs_f64();
    let mut report = Report::new("isol");
    if let Some(c) = cap.as_mut() {
        add(c, &mut census, Some(t1), &mut before, &mut after);
        let d = c.drops();
        report.drops = d
            .reasons()
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
    report.duration_s = t1.saturating_sub(t0) as f64 / 1e9;
    report.load = LoadInfo {
        kind: if o.builtin {
            "builtin"
        } else if o.command.is_empty() {
            "none"
        } else {
            "command"
        }
        .into(),
        command: o.command.clone(),
        classes: stats,
        victims,
    };
    report.excluded.before_load = before;
    report.excluded.after_load = after;
    if !cpus.is_subset(&sel.nohz_full) {
        report.notes.push(format!(
            "CPUs {} are not nohz_full: no nohz_full kicks, and the tick shows up as timer interruptions",
            cpus.difference(&sel.nohz_full)
        ));
    }
    if let Some(s) = child_status.filter(|s| !s.success()) {
        report
            .notes
            .push(format!("the load command ended with {s}"));
    }
    if o.capture {
        census.finish(&mut report);
    } else {
        report.source = "load-only".into();
        report
            .notes
            .push(format!("load only, nothing captured ({elapsed:.1} s)"));
    }
    Ok(report)
}
