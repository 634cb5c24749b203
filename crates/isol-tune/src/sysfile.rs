//! Reading and writing procfs/sysfs files and thread affinities the way
//! apply and revert need: exact bytes in, `echo`-style writes out.

use isol_cpulist::CpuSet;
use std::io::Write;
use std::path::Path;

/// The file's exact content. Kernel files are ASCII; anything else is an
/// error, so the journal never holds a lossy copy.
pub fn read_exact(path: &Path) -> std::io::Result<String> {
    let b = std::fs::read(path)?;
    String::from_utf8(b).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "content is not UTF-8; isol cannot journal it",
        )
    })
}

/// Write `bytes` in one write(2) at offset 0, as a shell redirection does
/// (procfs and sysfs parse one write; regular fixture files are truncated).
pub fn write_bytes(path: &Path, bytes: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes.as_bytes())
}

/// `echo value > path`.
pub fn echo(path: &Path, value: &str) -> std::io::Result<()> {
    write_bytes(path, &format!("{value}\n"))
}

/// The bracketed word of `always [madvise] never`.
pub fn selected(content: &str) -> Option<&str> {
    let s = content.find('[')?;
    let e = content[s..].find(']')? + s;
    Some(&content[s + 1..e])
}

/// A live thread as revert needs to recognise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// `Cpus_allowed_list` exactly as /proc prints it.
    pub allowed: String,
    /// Field 22 of stat: tells a thread from a later one with the same id.
    pub starttime: u64,
}

pub fn task_state(proc: &Path, pid: i32, tid: i32) -> Option<TaskState> {
    let dir = proc.join(format!("{pid}/task/{tid}"));
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let starttime = after.split_whitespace().nth(19)?.parse().ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .to_string();
    Some(TaskState { allowed, starttime })
}

pub fn set_affinity(tid: i32, cpus: &CpuSet) -> std::io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    for c in cpus.iter() {
        set.set(c as usize).map_err(std::io::Error::from)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set)
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_choice() {
        assert_eq!(selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected("[never]"), Some("never"));
        assert_eq!(selected("1\n"), None);
    }

    #[test]
    fn own_thread_state_is_readable() {
        let me = std::process::id() as i32;
        let s = task_state(Path::new("/proc"), me, me).unwrap();
        assert!(CpuSet::parse(&s.allowed).is_ok());
        assert!(s.starttime > 0);
    }
}
