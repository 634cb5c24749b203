//! `isol revert`: restore every journaled value, newest first, and check
//! each reads back exactly as it did before apply.

use crate::item::Change;
use crate::journal::{Journal, Lock};
use crate::sysfile;
use crate::Error;
use isol_system::Root;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written back and verified.
    Restored,
    /// Already the original value (change failed or never happened).
    Unchanged,
    /// The thread exited (or its id now belongs to another thread).
    Gone,
    /// Could not be restored; the journal is kept.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryReport {
    pub change: Change,
    pub original: String,
    pub outcome: Outcome,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    pub schema: &'static str,
    pub journal: PathBuf,
    /// There was a journal to revert.
    pub found: bool,
    pub entries: Vec<EntryReport>,
    /// Every entry restored and the journal removed.
    pub complete: bool,
}

fn restore_one(root: &Root, e: &crate::journal::Entry) -> (Outcome, Option<String>) {
    match &e.change {
        Change::Write { path, .. } => {
            match sysfile::read_exact(path) {
                Ok(cur) if cur == e.original => return (Outcome::Unchanged, None),
                Ok(_) => {}
                Err(err) => return (Outcome::Failed, Some(format!("read: {err}"))),
            }
            if let Err(err) = sysfile::write_bytes(path, &e.restore) {
                return (Outcome::Failed, Some(format!("write: {err}")));
            }
            match sysfile::read_exact(path) {
                Ok(cur) if cur == e.original => (Outcome::Restored, None),
                Ok(cur) => (
                    Outcome::Failed,
                    Some(format!("reads back {cur:?}, expected {:?}", e.original)),
                ),
                Err(err) => (Outcome::Failed, Some(format!("read back: {err}"))),
            }
        }
        Change::Affinity { pid, tid, .. } => {
            let same = |s: &sysfile::TaskState| e.starttime.is_none_or(|t| t == s.starttime);
            match sysfile::task_state(&root.proc, *pid, *tid) {
                None => return (Outcome::Gone, None),
                Some(s) if !same(&s) => return (Outcome::Gone, None),
                Some(s) if s.allowed == e.original => return (Outcome::Unchanged, None),
                Some(_) => {}
            }
            let set = match isol_cpulist::CpuSet::parse(&e.original) {
                Ok(s) => s,
                Err(err) => return (Outcome::Failed, Some(err.to_string())),
            };
            if let Err(err) = sysfile::set_affinity(*tid, &set) {
                // The thread may have exited between the two reads.
                if sysfile::task_state(&root.proc, *pid, *tid).is_none() {
                    return (Outcome::Gone, None);
                }
                return (Outcome::Failed, Some(format!("sched_setaffinity: {err}")));
            }
            match sysfile::task_state(&root.proc, *pid, *tid) {
                None => (Outcome::Gone, None),
                Some(s) if s.allowed == e.original => (Outcome::Restored, None),
                Some(s) => (
                    Outcome::Failed,
                    Some(format!(
                        "allowed {} after restore, expected {}",
                        s.allowed, e.original
                    )),
                ),
            }
        }
    }
}

/// Restore everything in the journal at `path`. The journal is removed
/// only when every entry is back; otherwise it stays for another try.
pub fn revert(root: &Root, path: &Path) -> Result<RevertReport, Error> {
    let _lock = Lock::take(path)?;
    let mut rep = RevertReport {
        schema: "isol.revert/1",
        journal: path.to_path_buf(),
        found: false,
        entries: Vec::new(),
        complete: true,
    };
    let Some(j) = Journal::load(path)? else {
        return Ok(rep);
    };
    rep.found = true;
    for e in j.entries.iter().rev() {
        let (outcome, error) = restore_one(root, e);
        if outcome == Outcome::Failed {
            rep.complete = false;
        }
        rep.entries.push(EntryReport {
            change: e.change.clone(),
            original: e.original.clone(),
            outcome,
            error,
        });
    }
    if rep.complete {
        j.remove()?;
    }
    Ok(rep)
}
