//! Where `isol status` finds tasks that isold does not know: configured
//! but not active, watched by an in-process watcher, or running without a
//! watcher. Each thread with isolation state has a small JSON file in
//! /dev/shm (any user may create one there), rewritten when the thread
//! configures, activates or deactivates, and by an in-process watcher as
//! breaks come. A file whose thread is gone (or whose tid now belongs to
//! a thread started later) is stale and ignored.

use crate::protocol::BreakInfo;
use crate::{Backend, Config, Origin, TaskState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const DIR: &str = "/dev/shm";
const PREFIX: &str = "isol-task.";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub pid: u32,
    pub tid: u32,
    /// The thread's start time (/proc/TID/stat field 22), against tid reuse.
    pub start: u64,
    pub uid: u32,
    pub backend: Backend,
    pub config: Option<Config>,
    pub active: bool,
    pub origin: Origin,
    pub cpu: Option<u32>,
    /// "isold at ...", "in-process watcher", or None.
    pub watcher: Option<String>,
    pub registered: bool,
    /// Counted by an in-process watcher (isold's count is in its status).
    pub breaks: Option<u64>,
    pub last_break: Option<BreakInfo>,
}

fn path(tid: u32) -> PathBuf {
    Path::new(DIR).join(format!("{PREFIX}{tid}.json"))
}

/// Field 22 of /proc/self/task/TID/stat (or /proc/TID/stat).
pub fn start_time(pid: u32, tid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    crate::policy::parse_start_time(&s)
}

static LOCK: Mutex<()> = Mutex::new(());

/// Removes the calling thread's file when the thread exits (a process's
/// exit leaves its main thread's: `list` drops it as stale).
struct Owned(u32);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(path(self.0));
    }
}

thread_local! {
    static OWNED: std::cell::RefCell<Option<Owned>> = const { std::cell::RefCell::new(None) };
}

fn write(e: &Entry) {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let p = path(e.tid);
    let tmp = p.with_extension(format!("tmp{}", e.tid));
    let Ok(text) = serde_json::to_vec(e) else {
        return;
    };
    // Best effort: a machine without a writable /dev/shm only loses the
    // entry in `isol status`.
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &p).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Publish the calling thread's state.
pub(crate) fn publish(s: &TaskState) {
    let tid = crate::gettid();
    let pid = crate::getpid();
    let Some(start) = start_time(pid, tid) else {
        return;
    };
    let old = read(tid);
    let _ = OWNED.try_with(|o| {
        if let Ok(mut o) = o.try_borrow_mut() {
            o.get_or_insert(Owned(tid));
        }
    });
    write(&Entry {
        pid,
        tid,
        start,
        // SAFETY: plain libc call.
        uid: unsafe { libc::getuid() },
        backend: crate::backend(),
        config: s.config.clone(),
        active: s.active,
        origin: s.origin,
        cpu: s.cpu,
        watcher: s.watcher.clone(),
        registered: s.registered,
        breaks: old.as_ref().and_then(|o| o.breaks),
        last_break: old.and_then(|o| o.last_break),
    });
}

/// An in-process watcher's count for `tid` (of this process).
pub fn update_breaks(tid: u32, breaks: u64, last: Option<BreakInfo>) {
    if let Some(mut e) = read(tid) {
        if e.breaks != Some(breaks) || e.last_break != last {
            e.breaks = Some(breaks);
            e.last_break = last;
            write(&e);
        }
    }
}

/// An entry is a file any user could have put in /dev/shm: read at most
/// this much of it (a real one is a few hundred bytes).
const MAX_ENTRY: u64 = 64 * 1024;

fn read(tid: u32) -> Option<Entry> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::open(path(tid)).ok()?;
    let owner = f.metadata().ok()?.uid();
    let mut buf = Vec::new();
    f.take(MAX_ENTRY + 1).read_to_end(&mut buf).ok()?;
    if buf.len() as u64 > MAX_ENTRY {
        return None;
    }
    let e: Entry = serde_json::from_slice(&buf).ok()?;
    // Written by the thread's own user (or root), about a thread that is
    // still the one it names: another user cannot forge a task's status.
    let task_owner = crate::policy::task_facts(e.tid)?.uid;
    let honest = e.tid == tid && (owner == 0 || (owner == e.uid && owner == task_owner));
    (honest && start_time(e.pid, e.tid) == Some(e.start)).then_some(e)
}

/// Entries of live threads (of process `pid` if given), readable by the
/// caller.
pub fn list(pid: Option<u32>) -> Vec<Entry> {
    let mut out = Vec::new();
    let Ok(d) = std::fs::read_dir(DIR) else {
        return out;
    };
    for f in d.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        let Some(tid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_suffix(".json"))
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        match read(tid) {
            Some(e) if pid.is_none_or(|p| p == e.pid) => out.push(e),
            Some(_) => {}
            None => {
                // Stale: its thread is gone. Whoever may remove it does.
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
    out.sort_by_key(|e| (e.pid, e.tid));
    out
}

#[cfg(test)]
mod tests {
    /// A file another user planted in /dev/shm about this thread is not
    /// believed; nor is an oversized one. (chown needs root: CI runs it.)
    #[test]
    fn a_forged_or_oversized_entry_is_not_believed() {
        let tid = crate::gettid();
        let pid = std::process::id();
        let e = super::Entry {
            pid,
            tid,
            start: super::start_time(pid, tid).unwrap(),
            // SAFETY: plain libc call.
            uid: unsafe { libc::getuid() },
            backend: crate::backend(),
            config: None,
            active: true,
            origin: Default::default(),
            cpu: Some(1),
            watcher: None,
            registered: true,
            breaks: Some(0),
            last_break: None,
        };
        super::write(&e);
        let p = super::path(tid);
        assert_eq!(super::read(tid).as_ref(), Some(&e), "our own entry");
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            super::read(tid),
            None,
            "an entry written by nobody about root's thread"
        );
        std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
        let mut big = serde_json::to_vec(&e).unwrap();
        big.pop();
        big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(100_000)).bytes());
        std::fs::write(&p, &big).unwrap();
        assert_eq!(super::read(tid), None, "a 100 kB entry");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn own_start_time_is_read() {
        let pid = std::process::id();
        let t = super::start_time(pid, crate::gettid());
        assert!(t.is_some_and(|t| t > 0), "{t:?}");
    }
}
