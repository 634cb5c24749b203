//! Who may isolate which task on which CPU. isold checks every request
//! with the caller's peer credentials: a user acts only on its own tasks,
//! on CPUs the administrator allowed; root on any watched CPU.

use isol_cpulist::CpuSet;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// CPUs the watcher watches: registrations elsewhere are refused.
    pub watched: CpuSet,
    /// uid -> CPUs that user may isolate tasks on.
    pub users: BTreeMap<u32, CpuSet>,
    /// The caller is the process itself (in-process watcher): no uid checks.
    pub trusted: bool,
}

/// Facts about a task from /proc.
#[derive(Debug, Clone)]
pub struct TaskFacts {
    /// When the task started (clock ticks since boot): with the id, it
    /// names one task, not whichever later reuses the number.
    pub start: u64,
    pub uid: u32,
    pub tgid: u32,
    pub allowed: CpuSet,
}

pub fn task_facts(id: u32) -> Option<TaskFacts> {
    let s = std::fs::read_to_string(format!("/proc/{id}/status")).ok()?;
    let field = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    Some(TaskFacts {
        start: start_time(id)?,
        uid: field("Uid:")?.split_whitespace().next()?.parse().ok()?,
        tgid: field("Tgid:")?.parse().ok()?,
        allowed: field("Cpus_allowed_list:")?.parse().ok()?,
    })
}

/// A task's start time, /proc/ID/stat's 22nd field (counted after the
/// command, which may hold spaces and parentheses: after the last ')').
/// By hand: one field, and libisol links this crate, so no procfs here.
pub fn start_time(id: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    parse_start_time(&s)
}

pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // rest: " S ppid ..." = fields 3.. ; starttime is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
#[test]
fn start_time_survives_odd_command_names() {
    let stat = "4242 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 98765 200";
    assert_eq!(parse_start_time(stat), Some(98765));
    assert_eq!(parse_start_time("4242 (x"), None);
    let me = start_time(std::process::id()).unwrap();
    assert!(me > 0 && me == start_time(std::process::id()).unwrap());
}

impl Policy {
    /// The CPU `id` (a tid, or a pid with `process`) is isolated on, if
    /// `uid` may register it.
    pub fn check_register(&self, uid: u32, id: u32, process: bool) -> Result<u32, String> {
        let what = if process { "process" } else { "task" };
        let t = task_facts(id).ok_or_else(|| format!("no {what} {id}"))?;
        if process && t.tgid != id {
            return Err(format!(
                "{id} is a thread, not a process (its process is {})",
                t.tgid
            ));
        }
        self.check_owner(uid, id, &t)?;
        if t.allowed.len() != 1 {
            return Err(format!(
                "{what} {id} may run on CPUs {}: pin it to exactly one isolated CPU first (taskset -c CPU)",
                t.allowed
            ));
        }
        let cpu = t.allowed.iter().next().unwrap();
        if !self.watched.contains(cpu) {
            return Err(format!(
                "CPU {cpu} is not one the watcher watches ({}): add it to isold's cpus",
                self.watched
            ));
        }
        if !self.trusted && uid != 0 {
            match self.users.get(&uid) {
                None => {
                    return Err(format!(
                        "uid {uid} may not isolate tasks: the administrator lists allowed users in isold's [users] table"
                    ))
                }
                Some(c) if !c.contains(cpu) => {
                    return Err(format!("uid {uid} may not use CPU {cpu} (allowed: {c})"))
                }
                Some(_) => {}
            }
        }
        Ok(cpu)
    }

    pub fn check_owner(&self, uid: u32, id: u32, t: &TaskFacts) -> Result<(), String> {
        if self.trusted || uid == 0 || t.uid == uid {
            return Ok(());
        }
        Err(format!(
            "task {id} belongs to uid {}, not to uid {uid}: a user may only isolate its own tasks",
            t.uid
        ))
    }
}
