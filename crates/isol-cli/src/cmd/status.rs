//! `isol status [PID]`: isolated tasks as isold sees them (mode, CPU,
//! breaks, last cause) and, on a patched kernel, /proc/PID/task_isolation.

use anyhow::{bail, Result};
use isol_task::native::{self, ProcState};
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
struct Out {
    schema: &'static str,
    /// isold's registrations; None when isold is not reachable.
    tasks: Option<Vec<TaskStatus>>,
    isold: String,
    /// The patched kernel's view of PID.
    task_isolation: Option<ProcState>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let native = a.pid.and_then(native::proc_state);
    let (tasks, isold) = match isol_task::status(a.pid) {
        Ok(t) => (
            Some(t),
            format!("{}", isol_task::protocol::socket_path().display()),
        ),
        Err(e) => (None, e.to_string()),
    };
    if tasks.is_none() && native.is_none() {
        bail!("{isold}");
    }
    let out = Out {
        schema: "isol.status/1",
        tasks,
        isold,
        task_isolation: native,
    };
    if a.json {
        crate::output::json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = &out.task_isolation {
        println!(
            "task_isolation: configured {}; active {}; quiescing {}",
            n.configured, n.active, n.quiescing
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
    Ok(ExitCode::SUCCESS)
}
