//! The apply journal: every original value, written atomically before the
//! change it guards.
//!
//! Layout (`isol.journal/1`, JSON): `entries` in the order apply made
//! them, each with the change, the exact original bytes, what to write to
//! get them back, and a state. A write goes to a temporary file in the
//! same directory, is fsynced, renamed over the journal, and the directory
//! is fsynced: at any instant the journal on disk is either the previous
//! or the next complete version, never a torn one.
//!
//! Invariant: an entry is on disk (state `pending`) before its change
//! starts. So whatever point apply dies at, every value it may have
//! changed has its original in the journal.

use crate::item::Change;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "isol.journal/1";
pub const DEFAULT_PATH: &str = "/var/lib/isol/journal.json";
pub const ENV: &str = "ISOL_JOURNAL";

/// The journal path: explicit, else `$ISOL_JOURNAL`, else the default.
pub fn path(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Journaled; the change may or may not have happened.
    Pending,
    /// Made and read back.
    Done,
    /// The kernel refused it (the value should be unchanged).
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub change: Change,
    /// Exact original bytes of the file, or the thread's
    /// `Cpus_allowed_list` as /proc printed it.
    pub original: String,
    /// What revert writes to get `original` back (for files: usually
    /// `original` itself; for bracketed choices: the chosen word).
    pub restore: String,
    /// Thread start time (stat field 22): revert leaves alone a thread
    /// that has since exited and whose id was reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starttime: Option<u64>,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub schema: String,
    /// CPUs of each apply that extended this journal, in order.
    pub applies: Vec<String>,
    pub entries: Vec<Entry>,
    #[serde(skip)]
    pub path: PathBuf,
}

fn jerr(path: &Path, msg: impl Into<String>) -> Error {
    Error::Journal {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

impl Journal {
    pub fn new(path: &Path) -> Journal {
        Journal {
            schema: SCHEMA.into(),
            applies: Vec::new(),
            entries: Vec::new(),
            path: path.to_path_buf(),
        }
    }

    /// `Ok(None)` if there is no journal. A journal that cannot be parsed
    /// is an error: isol never overwrites what it cannot understand.
    pub fn load(path: &Path) -> Result<Option<Journal>, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(jerr(path, e.to_string())),
        };
        let mut j: Journal = serde_json::from_str(&text).map_err(|e| {
            jerr(
                path,
                format!("unreadable ({e}); restore the values it lists by hand, then remove it"),
            )
        })?;
        if j.schema != SCHEMA {
            return Err(jerr(path, format!("unknown schema {:?}", j.schema)));
        }
        j.path = path.to_path_buf();
        Ok(Some(j))
    }

    pub fn find(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.change.key() == key)
    }

    /// Write the journal atomically: temp file, fsync, rename, fsync dir.
    pub fn save(&self) -> Result<(), Error> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| jerr(&self.path, e.to_string()))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "journal.json".into());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let body = serde_json::to_vec_pretty(self).map_err(|e| jerr(&self.path, e.to_string()))?;
        let io = |e: std::io::Error| jerr(&tmp, e.to_string());
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&body).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        sync_dir(dir).map_err(|e| jerr(&self.path, e.to_string()))
    }

    /// Remove the journal (after a complete revert) durably.
    pub fn remove(&self) -> Result<(), Error> {
        std::fs::remove_file(&self.path).map_err(|e| jerr(&self.path, e.to_string()))?;
        if let Some(d) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(d).map_err(|e| jerr(&self.path, e.to_string()))?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// An exclusive lock next to the journal, held for the whole apply or
/// revert, so two of them never interleave their journal writes.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    pub fn take(journal: &Path) -> Result<Lock, Error> {
        let lock = journal.with_extension("lock");
        if let Some(d) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| jerr(journal, e.to_string()))?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| jerr(&lock, e.to_string()))?;
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { nix::libc::flock(f.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
        if r != 0 {
            return Err(jerr(
                journal,
                "another isol apply or revert is running (lock held)",
            ));
        }
        Ok(Lock { _file: f })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_roundtrip_and_no_temp_left() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/journal.json");
        let mut j = Journal::new(&p);
        j.applies.push("1".into());
        j.entries.push(Entry {
            change: Change::write("/proc/sys/kernel/timer_migration".into(), "0"),
            original: "1\n".into(),
            restore: "1\n".into(),
            starttime: None,
            state: State::Pending,
            error: None,
        });
        j.save().unwrap();
        let back = Journal::load(&p).unwrap().unwrap();
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].original, "1\n");
        assert_eq!(back.entries[0].state, State::Pending);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["journal.json"]);
        back.remove().unwrap();
        assert!(Journal::load(&p).unwrap().is_none());
    }

    #[test]
    fn corrupt_journal_is_an_error_not_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal.json");
        std::fs::write(&p, "{\"schema\": \"isol.journal/1\", \"entr").unwrap();
        assert!(Journal::load(&p).is_err());
    }

    #[test]
    fn lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal.json");
        let l = Lock::take(&p).unwrap();
        assert!(Lock::take(&p).is_err());
        drop(l);
        assert!(Lock::take(&p).is_ok());
    }
}
