//! `isol apply`: make the runtime changes the audit lists, journaling each
//! original value first (see [`crate::journal`]).
//!
//! Policy when a journal already exists (an apply not yet reverted): apply
//! *extends* it. An entry already in the journal keeps the original it
//! recorded first, so the journal always holds the values from before the
//! first apply, and `revert` returns to them however many applies (or
//! crashed applies) came in between. Nothing else is refused.
//!
//! Idempotent: a change is planned only when the audit finds the value
//! wrong, so a second apply makes no change.

use crate::audit::{self, BootAdvice};
use crate::item::Change;
use crate::journal::{Entry, Journal, Lock, State};
use crate::sysfile;
use crate::Error;
use isol_cpulist::CpuSet;
use isol_system::Root;
use serde::Serialize;
use std::path::PathBuf;

/// Fault injection: `ISOL_FAULT_AFTER=N` makes apply SIGKILL itself after
/// its N-th step. Each change has three steps: journal the original
/// (pending), make the change, journal the outcome.
pub const FAULT_ENV: &str = "ISOL_FAULT_AFTER";

pub struct ApplyOptions {
    pub journal: PathBuf,
    pub dry_run: bool,
    /// Overrides `ISOL_FAULT_AFTER` (tests).
    pub fault_after: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dry run: would be made.
    Planned,
    Applied,
    /// The kernel refused (managed or per-CPU IRQ, thread gone ...).
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    /// The audit item this change fixes.
    pub item: String,
    pub change: Change,
    pub command: String,
    pub original: Option<String>,
    pub outcome: Outcome,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub schema: &'static str,
    pub cpus: CpuSet,
    pub dry_run: bool,
    pub journal: PathBuf,
    pub changes: Vec<ChangeReport>,
    /// Boot parameters still needed (apply cannot set them).
    pub boot: BootAdvice,
    /// Items still failing that no runtime change can fix.
    pub remaining: Vec<String>,
}

impl ApplyReport {
    pub fn failed(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .count()
    }
}

struct Fault {
    after: Option<u64>,
    steps: u64,
}

impl Fault {
    fn step(&mut self) {
        self.steps += 1;
        if self.after == Some(self.steps) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
            // SIGKILL cannot be caught; never reached.
            std::process::abort();
        }
    }
}

/// The original value and how to restore it, read just before the change.
fn snapshot(root: &Root, c: &Change) -> Result<(String, String, Option<u64>), String> {
    match c {
        Change::Write { path, select, .. } => {
            let orig = sysfile::read_exact(path).map_err(|e| e.to_string())?;
            // `always [madvise] never` is restored by writing `madvise`.
            let restore = match sysfile::selected(&orig) {
                Some(w) if *select => format!("{w}\n"),
                _ => orig.clone(),
            };
            Ok((orig, restore, None))
        }
        Change::Affinity { pid, tid, .. } => {
            let s = sysfile::task_state(&root.proc, *pid, *tid).ok_or("thread has exited")?;
            Ok((s.allowed.clone(), s.allowed, Some(s.starttime)))
        }
    }
}

fn perform(c: &Change) -> Result<(), String> {
    match c {
        Change::Write { path, value, .. } => {
            sysfile::echo(path, value).map_err(|e| format!("write {value:?}: {e}"))
        }
        Change::Affinity { tid, cpus, .. } => {
            sysfile::set_affinity(*tid, cpus).map_err(|e| format!("sched_setaffinity: {e}"))
        }
    }
}

pub fn apply(root: &Root, cpus: &CpuSet, opts: &ApplyOptions) -> Result<ApplyReport, Error> {
    let report = audit::audit(root, Some(cpus))?;
    let planned: Vec<(String, Change)> = report
        .items
        .iter()
        .flat_map(|i| i.changes.iter().map(move |c| (i.id.clone(), c.clone())))
        .collect();
    let runtime: std::collections::BTreeSet<&str> = report
        .items
        .iter()
        .filter(|i| !i.changes.is_empty())
        .map(|i| i.id.as_str())
        .collect();
    let mut out = ApplyReport {
        schema: "isol.apply/1",
        cpus: report.cpus.clone(),
        dry_run: opts.dry_run,
        journal: opts.journal.clone(),
        changes: Vec::new(),
        boot: report.boot.clone(),
        remaining: report
            .verdict
            .failing
            .iter()
            .filter(|id| !runtime.contains(id.as_str()))
            .cloned()
            .collect(),
    };
    if opts.dry_run {
        for (item, c) in planned {
            out.changes.push(ChangeReport {
                item,
                command: c.command(),
                original: snapshot(root, &c).ok().map(|s| s.0),
                change: c,
                outcome: Outcome::Planned,
                error: None,
            });
        }
        return Ok(out);
    }

    let _lock = Lock::take(&opts.journal)?;
    let mut j = Journal::load(&opts.journal)?.unwrap_or_else(|| Journal::new(&opts.journal));
    if planned.is_empty() {
        return Ok(out);
    }
    j.applies.push(cpus.to_string());
    let mut fault = Fault {
        after: opts.fault_after.or_else(|| {
            std::env::var(FAULT_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
        }),
        steps: 0,
    };
    for (item, c) in planned {
        let mut rep = ChangeReport {
            item,
            command: c.command(),
            change: c.clone(),
            original: None,
            outcome: Outcome::Failed,
            error: None,
        };
        let snap = match snapshot(root, &c) {
            Ok(s) => s,
            Err(e) => {
                rep.error = Some(e);
                out.changes.push(rep);
                continue;
            }
        };
        rep.original = Some(snap.0.clone());
        // 1. Journal the original before touching anything.
        let idx = match j.find(&c.key()) {
            Some(i) => {
                // Keep the first original; record the new intent.
                j.entries[i].change = c.clone();
                j.entries[i].state = State::Pending;
                j.entries[i].error = None;
                i
            }
            None => {
                j.entries.push(Entry {
                    change: c.clone(),
                    original: snap.0,
                    restore: snap.1,
                    starttime: snap.2,
                    state: State::Pending,
                    error: None,
                });
                j.entries.len() - 1
            }
        };
        j.save()?;
        fault.step();
        // 2. The change.
        let r = perform(&c);
        fault.step();
        // 3. Its outcome.
        match r {
            Ok(()) => {
                j.entries[idx].state = State::Done;
                rep.outcome = Outcome::Applied;
            }
            Err(e) => {
                j.entries[idx].state = State::Failed;
                j.entries[idx].error = Some(e.clone());
                rep.error = Some(e);
            }
        }
        j.save()?;
        fault.step();
        out.changes.push(rep);
    }
    Ok(out)
}
