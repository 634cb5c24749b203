//! chisol: run a program under task isolation (the util-linux patch's
//! tool, on stock kernels too).
//!
//!   chisol -q vmstat_sync -I conf ./app          # configure; the app activates
//!   chisol -a -q vmstat_sync --cpu 3 -- ./app    # activate an unmodified app
//!
//! With -a, chisol starts a child (`isol_task::spawn`) that pins itself to
//! the CPU, quiesces there and execs the program once the watcher has
//! registered it; chisol stays
//! on a housekeeping CPU, reports when the tick stopped, and at the end
//! the breaks the program suffered. It exits with the program's status.

use anyhow::{bail, Context, Result};
use clap::Parser;
use isol_cli::chisol_args::Args;
use isol_cpulist::CpuSet;
use isol_task::protocol::{Request, Response, TaskStatus};
use isol_task::spawn;
use isol_task::{Config, Inherit, Quiesce, Strict};
use std::ffi::{CString, OsString};
use std::process::ExitCode;
use std::time::Duration;

fn signal_number(s: &str) -> Result<i32> {
    isol_system::signal::parse(s).with_context(|| format!("unknown signal {s:?}"))
}

fn config_from(a: &Args) -> Result<Config> {
    let quiesce = Quiesce::parse(&a.quiesce)?;
    let c = Config {
        quiesce,
        oneshot: Quiesce::parse(&a.oneshot)?,
        inherit: a
            .inherit
            .as_deref()
            .map(Inherit::parse)
            .transpose()?
            .unwrap_or_default(),
        strict: a
            .strict
            .then(|| {
                signal_number(&a.signal).map(|signal| Strict {
                    signal,
                    ..Default::default()
                })
            })
            .transpose()?,
        // mlockall does not survive exec: a program linked with libisol
        // locks its own memory when it activates.
        lock_memory: false,
        tick_timeout_ms: a.timeout_ms,
        allow_unisolated: a.allow_unisolated,
        entry_counter: false,
    };
    c.validate()?;
    Ok(c)
}

fn pick_cpu(a: &Args) -> Result<u32> {
    if let Some(c) = a.cpu {
        return Ok(c);
    }
    let aff = isol_task::stock::current_affinity()?;
    if aff.len() == 1 {
        return Ok(aff.iter().next().unwrap());
    }
    isol_task::stock::kernel_isolated()
        .intersection(&aff)
        .iter()
        .next()
        .context("no CPU given and this machine isolates none: use --cpu N")
}

fn pin(cpus: &CpuSet) -> Result<()> {
    isol_system::affinity::pin_current_thread(cpus).map_err(anyhow::Error::msg)
}

fn main() -> ExitCode {
    // The child that `chisol -a` runs: it execs the program or says why not.
    if let Some(e) = spawn::child_main() {
        eprintln!("chisol: error: {e:#}");
        return ExitCode::from(125);
    }
    match run(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chisol: error: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn run(a: Args) -> Result<ExitCode> {
    if a.info {
        let f = isol_task::features()?;
        let inherited = isol_task::configuration()?;
        let native = isol_task::native::proc_state(std::process::id());
        if a.json {
            println!(
                "{}",
                serde_json::json!({"features": f, "configuration": inherited, "task_isolation": native})
            );
        } else {
            println!("backend: {:?}", f.backend);
            println!("quiesce: {}", f.quiesce.join(", "));
            println!(
                "isold: {}",
                if f.isold { "reachable" } else { "not running" }
            );
            if let Some(n) = native {
                println!(
                    "configured: {}\nactive: {}\nquiescing: {}",
                    n.configured, n.active, n.quiescing
                );
            }
            match inherited {
                Some(c) => println!(
                    "inherited configuration: {} ({})",
                    c.quiesce.names().join(","),
                    c.mode().name()
                ),
                None => println!("inherited configuration: none"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(pid) = a.pid {
        return existing(&a, pid);
    }
    if a.command.is_empty() {
        bail!("no program to run (chisol [options] -- PROGRAM [ARGS...])");
    }
    let cfg = config_from(&a)?;
    let argv: Vec<CString> = a
        .command
        .iter()
        .map(|s| CString::new(s.as_str()))
        .collect::<Result<_, _>>()
        .context("an argument holds a NUL byte")?;

    if !a.activate {
        // Configuration only: the program (linked with libisol) activates.
        // chisol configures itself (the kernel's prctl where the patch
        // is; the environment, ISOL_TASK_CONFIG for this pid, elsewhere)
        // and execs, which keeps it, as the patch's chisol does.
        if let Some(cpu) = a.cpu {
            pin(&CpuSet::from_iter([cpu]))?;
        }
        isol_task::configure(cfg)?;
        return Err(exec(&argv));
    }
    activate_and_run(&a, cfg)
}

fn exec(argv: &[CString]) -> anyhow::Error {
    let e = nix::unistd::execvp(&argv[0], argv).unwrap_err();
    anyhow::anyhow!("cannot run {:?}: {e}", argv[0])
}

fn activate_and_run(a: &Args, cfg: Config) -> Result<ExitCode> {
    let cpu = pick_cpu(a)?;
    let allow = cfg.allow_unisolated || std::env::var_os("ISOL_ALLOW_UNISOLATED").is_some();
    let isolated = isol_task::stock::kernel_isolated();
    if !isolated.contains(cpu) && !allow {
        bail!("CPU {cpu} is not isolated by the kernel (nohz_full=/isolcpus=): `isol audit` says how; --allow-unisolated to try anyway");
    }
    let online: CpuSet = std::fs::read_to_string("/sys/devices/system/cpu/online")?
        .trim()
        .parse()?;
    let hk = online.difference(&CpuSet::from_iter([cpu]));
    if hk.is_empty() {
        bail!(
            "CPU {cpu} is the only online CPU: chisol needs a housekeeping CPU to supervise from"
        );
    }
    // Connect first: the in-process watcher loads BPF, which patches
    // kernel text (IPIs everywhere) — before anything is isolated. It
    // watches the CPU its caller runs on (its thread leaves it at once):
    // connect from `cpu`, then leave it for a housekeeping CPU.
    pin(&CpuSet::from_iter([cpu]))?;
    let mut watcher = isol_task::watcher::Watcher::connect(true);
    pin(&hk)?;
    if let (Err(e), true) = (&watcher, cfg.strict.is_some()) {
        bail!("strict mode needs a watcher: {e}");
    }
    let argv: Vec<OsString> = a.command.iter().map(OsString::from).collect();
    let child = spawn::start(&spawn::Isolated {
        cpu,
        config: &cfg,
        preload: a.preload.clone(),
        argv: &argv,
    })?;
    parent(a, cfg, cpu, &mut watcher, child)
}

fn parent(
    a: &Args,
    cfg: Config,
    cpu: u32,
    watcher: &mut Result<isol_task::watcher::Watcher, isol_task::Error>,
    handshake: spawn::Handshake,
) -> Result<ExitCode> {
    let pid = handshake.pid();
    let child = nix::unistd::Pid::from_raw(pid as i32);
    let mut report = serde_json::json!({"pid": pid, "cpu": cpu, "mode": cfg.mode(), "quiesce": cfg.quiesce.names(), "steps": handshake.steps});
    match watcher {
        Ok(w) => {
            let reg = isol_task::registration(&cfg, pid, true);
            if let Err(e) = w.call(&Request::Register(reg)) {
                handshake.abort();
                bail!("registering the program with {}: {e}", w.describe());
            }
            report["watcher"] = w.describe().into();
        }
        Err(e) => report["watcher"] = format!("none: {e}").into(),
    }
    // Not reaped through Child: waited for by pid below.
    drop(handshake.go()?);
    // chisol itself must not be stopped by the terminal's Ctrl-C before
    // the program: the program gets it, chisol reports after.
    // SAFETY: installing SIG_IGN.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };

    if let Ok(w) = watcher {
        if let Ok(Response::Tick(t)) = w.call(&Request::WaitTick {
            cpu,
            tid: pid,
            timeout_ms: cfg.tick_timeout_ms,
            timers: cfg.quiesce.contains(Quiesce::TIMERS),
        }) {
            if !a.json {
                if t.stopped {
                    eprintln!(
                        "chisol: pid {pid} isolated on CPU {cpu} ({}), tick stopped after {} ms",
                        cfg.mode().name(),
                        t.waited_ms
                    );
                } else {
                    eprintln!(
                        "chisol: pid {pid} on CPU {cpu}: the tick did not stop within {} ms:",
                        t.waited_ms
                    );
                    for d in &t.dependencies {
                        eprintln!("chisol:   {}: {}", d.kind, d.detail);
                    }
                }
                if let Some(w) = &t.timers {
                    eprintln!("chisol: timers: {}", w.describe());
                }
            }
            report["tick"] = serde_json::to_value(&t)?;
        }
    }

    // Wait for the program to end without reaping it: as a zombie its
    // /proc entry remains, so the watcher can still name it in the status.
    use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
    loop {
        let f = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        match waitid(Id::Pid(child), f)? {
            WaitStatus::StillAlive => std::thread::sleep(Duration::from_millis(20)),
            _ => break,
        }
    }
    let mut last: Vec<TaskStatus> = Vec::new();
    if let Ok(w) = watcher {
        if let Ok(Response::Status { tasks }) = w.call(&Request::Status { pid: Some(pid) }) {
            last = tasks;
        }
    }
    let status = waitpid(child, None)?;
    let breaks: u64 = last.iter().map(|t| t.breaks).sum();
    let last_break = last
        .iter()
        .filter_map(|t| t.last_break.clone())
        .max_by_key(|b| b.ts_ns);
    let (code, how) = match status {
        WaitStatus::Exited(_, c) => (c as u8, format!("exited {c}")),
        WaitStatus::Signaled(_, s, _) => (128 + s as u8, format!("killed by {s:?}")),
        s => (125, format!("{s:?}")),
    };
    report["exit"] = how.clone().into();
    report["breaks"] = breaks.into();
    report["last_break"] = serde_json::to_value(&last_break)?;
    if a.json {
        eprintln!("{}", serde_json::to_string(&report)?);
    } else {
        let tail = match &last_break {
            Some(b) => format!("; last: {} on CPU {} (tid {})", b.cause, b.cpu, b.tid),
            None => String::new(),
        };
        eprintln!("chisol: {} {how}; breaks: {breaks}{tail}", a.command[0]);
    }
    Ok(ExitCode::from(code))
}

/// chisol -p PID: register (or, with -d, unregister) a running process
/// with isold, which checks that the caller owns it and may use its CPU.
fn existing(a: &Args, pid: u32) -> Result<ExitCode> {
    if let Some(glob) = &a.threads {
        return threads(a, pid, glob);
    }
    let mut w = isol_task::watcher::Watcher::connect(false)?;
    if a.deactivate {
        w.call(&Request::Unregister {
            id: pid,
            process: true,
        })?;
        eprintln!("chisol: pid {pid} no longer isolated");
        return Ok(ExitCode::SUCCESS);
    }
    if !a.activate {
        bail!("with --pid, say -a (activate) or -d (deactivate)");
    }
    let cfg = config_from(a)?;
    let cpu = match w.call(&Request::Register(isol_task::registration(&cfg, pid, true)))? {
        Response::Registered { cpu } => cpu,
        r => bail!("unexpected answer from isold: {r:?}"),
    };
    let tick = match w.call(&Request::WaitTick {
        cpu,
        tid: pid,
        timeout_ms: cfg.tick_timeout_ms,
        timers: cfg.quiesce.contains(Quiesce::TIMERS),
    })? {
        Response::Tick(t) => Some(t),
        _ => None,
    };
    if a.json {
        eprintln!(
            "{}",
            serde_json::json!({"pid": pid, "cpu": cpu, "mode": cfg.mode(), "tick": tick})
        );
    } else {
        eprintln!(
            "chisol: pid {pid} isolated on CPU {cpu} ({})",
            cfg.mode().name()
        );
        if let Some(t) = tick.filter(|t| !t.stopped) {
            for d in &t.dependencies {
                eprintln!("chisol:   tick: {}: {}", d.kind, d.detail);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The threads of `pid` whose name matches `glob`, as (tid, name).
fn matching_threads(pid: u32, glob: &glob::Pattern) -> Result<Vec<(u32, String)>> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for e in
        std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("{dir}: {e} (no process {pid}?)"))?
    {
        let Ok(tid) = e?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("{dir}/{tid}/comm")) else {
            continue; // exited meanwhile
        };
        let comm = comm.trim_end_matches('\n').to_string();
        if glob.matches(&comm) {
            out.push((tid, comm));
        }
    }
    out.sort();
    Ok(out)
}

/// chisol -p PID --threads GLOB: each matching thread registered (or, with
/// -d, unregistered) on its own CPU, as the task isolation series' QEMU
/// patch activated isolation from each vCPU thread.
fn threads(a: &Args, pid: u32, pattern: &str) -> Result<ExitCode> {
    let glob =
        glob::Pattern::new(pattern).map_err(|e| anyhow::anyhow!("--threads {pattern:?}: {e}"))?;
    let found = matching_threads(pid, &glob)?;
    if found.is_empty() {
        bail!("no thread of process {pid} is named like {pattern:?}");
    }
    if !a.activate && !a.deactivate {
        bail!("with --pid, say -a (activate) or -d (deactivate)");
    }
    let mut w = isol_task::watcher::Watcher::connect(false)?;
    let cfg = config_from(a)?;
    let mut report: Vec<serde_json::Value> = Vec::new();
    for (tid, name) in &found {
        if a.deactivate {
            w.call(&Request::Unregister {
                id: *tid,
                process: false,
            })?;
            eprintln!("chisol: thread {tid} ({name}) no longer isolated");
            continue;
        }
        let cpu = match w.call(&Request::Register(isol_task::registration(
            &cfg, *tid, false,
        ))) {
            Ok(Response::Registered { cpu }) => cpu,
            other => {
                // All or none: the threads registered so far are released.
                for r in &report {
                    let _ = w.call(&Request::Unregister {
                        id: r["tid"].as_u64().unwrap_or(0) as u32,
                        process: false,
                    });
                }
                match other {
                    Err(e) => bail!("thread {tid} ({name}): {e}; none registered"),
                    Ok(r) => bail!("unexpected answer from isold: {r:?}"),
                }
            }
        };
        let tick = match w.call(&Request::WaitTick {
            cpu,
            tid: *tid,
            timeout_ms: cfg.tick_timeout_ms,
            timers: cfg.quiesce.contains(Quiesce::TIMERS),
        })? {
            Response::Tick(t) => Some(t),
            _ => None,
        };
        if !a.json {
            eprintln!(
                "chisol: thread {tid} ({name}) of pid {pid} isolated on CPU {cpu} ({})",
                cfg.mode().name()
            );
        }
        report.push(serde_json::json!({"tid": tid, "name": name, "cpu": cpu, "tick": tick}));
    }
    if a.json && a.activate {
        eprintln!(
            "{}",
            serde_json::json!({"pid": pid, "mode": cfg.mode(), "threads": report})
        );
    }
    Ok(ExitCode::SUCCESS)
}
