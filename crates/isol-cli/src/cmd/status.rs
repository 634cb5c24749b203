//! `isol status [PID]`: tasks with task isolation state. isold's
//! registrations (mode, CPU, breaks, last cause); the tasks the library
//! knows that isold does not (configured but not active, watched by an
//! in-process watcher, or without a watcher: the /dev/shm registry); and,
//! on a patched kernel, /proc/PID/task_isolation.

use anyhow::Result;
use isol_task::native::{self, ProcState};
use isol_task::registry::Entry;
use isol_task::TaskStatus;
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Only this process (and its threads).
    pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Native {
    pid: u32,
    #[serde(flatten)]
    state: ProcState,
}

#[derive(Serialize)]
struct Out {
    schema: &'static str,
    /// isold's registrations; None when isold is not reachable.
    tasks: Option<Vec<TaskStatus>>,
    isold: String,
    /// Threads with isolation state as the library published them (those
    /// registered with isold included, with their configuration).
    local: Vec<Entry>,
    /// The patched kernel's view of PID (or of every configured process).
    task_isolation: Vec<Native>,
}

fn native_states(pid: Option<u32>) -> Vec<Native> {
    if native::Proof::check().is_none() {
        return pid
            .and_then(|p| native::proc_state(p).map(|state| Native { pid: p, state }))
            .into_iter()
            .collect();
    }
    let pids: Vec<u32> = match pid {
        Some(p) => vec![p],
        None => std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
    };
    pids.into_iter()
        .filter_map(|p| native::proc_state(p).map(|state| Native { pid: p, state }))
        .filter(|n| pid.is_some() || n.state.configured != "none")
        .collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    if let Some(p) = a.pid {
        anyhow::ensure!(
            std::path::Path::new(&format!("/proc/{p}")).exists(),
            "no such process: {p}"
        );
    }
    let native = native_states(a.pid);
    let local = isol_task::registry::list(a.pid);
    let (tasks, isold) = match isol_task::status(a.pid) {
        Ok(t) => (
            Some(t),
            format!("{}", isol_task::protocol::socket_path().display()),
        ),
        Err(e) => (None, e.to_string()),
    };
    let out = Out {
        schema: "isol.status/2",
        tasks,
        isold,
        local,
        task_isolation: native,
    };
    if a.json {
        crate::output::json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for n in &out.task_isolation {
        println!(
            "task_isolation of {}: configured {}; active {}; quiescing {}",
            n.pid, n.state.configured, n.state.active, n.state.quiescing
        );
    }
    match &out.tasks {
        None => println!("isold: {}", out.isold),
        Some(t) if t.is_empty() => println!("no isolated tasks registered with isold"),
        Some(t) => {
            println!(
                "{:>8} {:7} {:>6} {:>4} {:10} {:6} {:>7}  LAST BREAK",
                "ID", "SCOPE", "UID", "CPU", "MODE", "ACTIVE", "BREAKS"
            );
            for s in t {
                let last = s
                    .last_break
                    .as_ref()
                    .map(|b| format!("{} (tid {})", b.cause, b.tid))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:>8} {:7} {:>6} {:>4} {:10} {:6} {:>7}  {last}",
                    s.id,
                    if s.process { "process" } else { "thread" },
                    s.uid,
                    s.cpu.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    s.mode.name(),
                    crate::output::yes(s.active),
                    s.breaks,
                );
            }
        }
    }
    if out.local.is_empty() {
        println!("no thread published isolation state (/dev/shm/isol-task.*)");
    } else {
        println!("threads with isolation state (as their library published it):");
        println!(
            "{:>8} {:>8} {:>6} {:>4} {:10} {:6} {:18} {:8} {:>7}  WATCHER",
            "TID", "PID", "UID", "CPU", "MODE", "ACTIVE", "QUIESCE", "INHERIT", "BREAKS"
        );
        for e in &out.local {
            let c = e.config.as_ref();
            println!(
                "{:>8} {:>8} {:>6} {:>4} {:10} {:6} {:18} {:8} {:>7}  {}",
                e.tid,
                e.pid,
                e.uid,
                e.cpu.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                c.map(|c| c.mode().name()).unwrap_or("-"),
                crate::output::yes(e.active),
                c.map(|c| c.quiesce.names().join(","))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "-".into()),
                c.map(|c| format!("{:?}", c.inherit).to_lowercase())
                    .unwrap_or_else(|| "-".into()),
                e.breaks
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.watcher.as_deref().unwrap_or("none"),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
