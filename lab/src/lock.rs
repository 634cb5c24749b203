//! flock(2)-based locks. Each acquisition opens the lock file anew, so two
//! threads of one process exclude each other as two processes do.

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::path::Path;

/// Held until dropped.
pub struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("flock {}", path.display()))?;
        Ok(FileLock { _lock: lock })
    }
}

/// The host's CPU 1, which the host tests watch and run victims on: held
/// by one test at a time across processes (several test binaries, or
/// several checkouts of the project, on one machine), since a victim or a
/// SCHED_FIFO loop of one test would starve or interrupt another's.
pub fn host_cpu1() -> Result<FileLock> {
    FileLock::exclusive(&std::env::temp_dir().join("isol-host-cpu1.lock"))
}
