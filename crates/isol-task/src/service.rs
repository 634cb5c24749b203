//! The watcher's side of the API: registrations in the capture engine,
//! checked against a [`Policy`]. isold serves it on its unix socket; a
//! privileged program runs it on an in-process thread.

use crate::policy::{task_facts, Policy};
use crate::protocol::{
    BreakInfo, BreakSender, Passed, Registration, Request, Response, TaskStatus,
};
use crate::tick::TickSeen;
use isol_capture::{Capture, Class, StatusPage, StrictConfig};
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Debug, Clone)]
struct Reg {
    uid: u32,
    cpu: u32,
    r: Registration,
    /// The task's start time at registration: a later task with the same
    /// id is not the registered one.
    start: Option<u64>,
    /// A process registration's pidfd: it answers for exactly that
    /// process. The start time is in clock ticks, and a process that
    /// exits and a new one given its pid within one tick look the same
    /// by it (CI saw one). None for a thread (pidfd_open takes a process
    /// before 6.9) or where pidfd_open fails: the start time then.
    pidfd: Option<Rc<std::os::fd::OwnedFd>>,
    /// A thread's status page, or why it has none.
    page: Result<Rc<StatusPage>, String>,
}

/// Registrations known to the watcher, keyed by (id, process).
#[derive(Default)]
pub struct Service {
    regs: BTreeMap<(u32, bool), Reg>,
}

impl Service {
    pub fn new() -> Service {
        Service::default()
    }

    /// Handle one request from `uid`. WaitTick is not handled here (it
    /// blocks): see [`crate::tick::wait`] and [`tick_seen`].
    pub fn handle(&mut self, cap: &Capture, policy: &Policy, uid: u32, req: &Request) -> Response {
        match self.try_handle(cap, policy, uid, req) {
            Ok(r) => r,
            Err(message) => Response::Error { message },
        }
    }

    fn try_handle(
        &mut self,
        cap: &Capture,
        policy: &Policy,
        uid: u32,
        req: &Request,
    ) -> Result<Response, String> {
        match req {
            Request::Register(r) => {
                let cpu = policy.check_register(uid, r.id, r.process)?;
                let mut classes = Vec::new();
                for c in &r.classes {
                    classes
                        .push(Class::from_name(c).ok_or_else(|| format!("unknown class {c:?}"))?);
                }
                if r.signal < 0 || r.signal > 64 {
                    return Err(format!("signal {} is not a signal number", r.signal));
                }
                let cfg = StrictConfig {
                    signal: r.signal,
                    classes,
                    progress_addr: 0,
                    inherit: r.inherit,
                    pending: r.pending,
                };
                // A new activation starts with no breaks.
                if r.process {
                    if let Ok(d) = std::fs::read_dir(format!("/proc/{}/task", r.id)) {
                        for t in d.flatten() {
                            if let Ok(tid) = t.file_name().to_string_lossy().parse() {
                                cap.clear_break(tid);
                            }
                        }
                    }
                } else {
                    cap.clear_break(r.id);
                }
                let start = crate::policy::start_time(r.id);
                let pidfd = r.process.then(|| pidfd_open(r.id)).flatten().map(Rc::new);
                // A re-registration starts a new page.
                if let Some(old) = self.regs.remove(&(r.id, r.process)) {
                    release(cap, old);
                }
                let page = if r.process {
                    Err("a process registration has no status page (each thread's would)".into())
                } else {
                    cap.new_status_page(r.id, r.pending)
                        .map(Rc::new)
                        .map_err(|e| format!("{e:#}"))
                };
                if let Err(e) = cap.register_strict(r.id, r.process, &cfg, page.as_deref().ok()) {
                    if let Ok(p) = page {
                        release_page(cap, p);
                    }
                    return Err(format!("{e:#}"));
                }
                // The task may have exited (and its id been taken) between
                // the checks and the registration: undo rather than watch
                // the wrong task. (Its exit already removed the kernel key
                // if it exited after; this covers exiting before.)
                if start.is_none() || crate::policy::start_time(r.id) != start {
                    cap.unregister_strict(r.id, r.process);
                    if let Ok(p) = page {
                        release_page(cap, p);
                    }
                    return Err(format!("task {} exited while being registered", r.id));
                }
                self.regs.insert(
                    (r.id, r.process),
                    Reg {
                        uid,
                        cpu,
                        r: r.clone(),
                        start,
                        pidfd,
                        page,
                    },
                );
                Ok(Response::Registered { cpu })
            }
            Request::Unregister { id, process } => {
                let owner = self.regs.get(&(*id, *process)).map(|g| g.uid);
                match owner {
                    Some(o) if policy.trusted || uid == 0 || o == uid => {}
                    Some(_) => return Err(format!("registration {id} belongs to another user")),
                    None => {
                        // Inherited in the kernel only: the task's owner may end it.
                        let t = task_facts(*id).ok_or_else(|| format!("no task {id}"))?;
                        policy.check_owner(uid, *id, &t)?;
                    }
                }
                cap.unregister_strict(*id, *process);
                if let Some(old) = self.regs.remove(&(*id, *process)) {
                    release(cap, old);
                }
                Ok(Response::Done)
            }
            Request::StatusPage { tid } => {
                let reg = self
                    .regs
                    .get(&(*tid, false))
                    .ok_or_else(|| format!("task {tid} is not registered (by this watcher)"))?;
                if !(policy.trusted || uid == 0 || reg.uid == uid) {
                    return Err(format!("registration {tid} belongs to another user"));
                }
                let page = reg
                    .page
                    .as_ref()
                    .map_err(|e| format!("no status page: {e}"))?;
                let fd = page.task_fd().map_err(|e| format!("{e:#}"))?;
                Ok(Response::StatusPage {
                    tid: *tid,
                    fd: Passed(Some(std::sync::Arc::new(fd))),
                })
            }
            Request::Status { pid } => Ok(Response::Status {
                tasks: self.status(cap, policy, uid, *pid),
            }),
            Request::WaitTick { .. } => {
                Err("wait_tick is served by the connection, not here".into())
            }
        }
    }

    /// Every registration's status (the in-process watcher's own view).
    pub fn status_all(&mut self, cap: &Capture, policy: &Policy) -> Vec<TaskStatus> {
        self.status(cap, policy, 0, None)
    }

    /// Drop registrations of tasks that are gone (user table and kernel
    /// map). The kernel's own entries go at the task's exit (the capture's
    /// sched_process_exit program); here the user table follows, by start
    /// time, so a new task with a reused id is not taken for the old one.
    pub fn prune(&mut self, cap: &Capture) {
        let gone: Vec<(u32, bool)> = self
            .regs
            .iter()
            .filter(|((id, _), g)| match &g.pidfd {
                Some(fd) => exited(fd),
                None => g.start.is_none() || crate::policy::start_time(*id) != g.start,
            })
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(g) = self.regs.remove(&k) {
                release(cap, g);
            }
        }
        for (id, process) in cap.registrations() {
            if !std::path::Path::new(&format!("/proc/{id}")).exists() {
                cap.unregister_strict(id, process);
            }
        }
    }

    fn status(
        &mut self,
        cap: &Capture,
        policy: &Policy,
        uid: u32,
        pid: Option<u32>,
    ) -> Vec<TaskStatus> {
        self.prune(cap);
        let breaks = cap.breaks();
        let mut out = Vec::new();
        let mut keys: Vec<(u32, bool)> = self.regs.keys().copied().collect();
        for k in cap.registrations() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for (id, process) in keys {
            let facts = task_facts(id);
            let reg = self.regs.get(&(id, process)).cloned();
            // The task's owner (root may register anyone's task); who
            // registered it only once the task is gone.
            let registrant = reg.as_ref().map(|g| g.uid);
            let task_uid = facts.as_ref().map(|f| f.uid).or(registrant).unwrap_or(0);
            // Registered by fork inheritance in the kernel: take the mode of
            // an inheriting registration by or of the same user.
            let template = reg.clone().or_else(|| {
                self.regs
                    .values()
                    .find(|g| {
                        g.r.inherit
                            && (g.uid == task_uid
                                || task_facts(g.r.id).is_some_and(|f| f.uid == task_uid))
                    })
                    .cloned()
            });
            let Some(tpl) = template else { continue };
            // A user sees its own tasks and the registrations it made.
            if !policy.trusted && uid != 0 && task_uid != uid && registrant != Some(uid) {
                continue;
            }
            let tgid = facts.as_ref().map(|f| f.tgid).unwrap_or(id);
            if let Some(p) = pid {
                if p != id && p != tgid {
                    continue;
                }
            }
            let mine: Vec<_> = breaks
                .iter()
                .filter(|b| {
                    if process {
                        b.tid == id
                            || std::path::Path::new(&format!("/proc/{id}/task/{}", b.tid)).exists()
                    } else {
                        b.tid == id
                    }
                })
                .collect();
            let last = mine.iter().max_by_key(|b| b.ts_ns).map(|b| BreakInfo {
                tid: b.tid,
                cpu: b.cpu,
                ts_ns: b.ts_ns,
                count: b.count,
                signal: b.signal,
                cause: describe(&b.cause),
                chain: b.chain.iter().map(describe).collect(),
                truncated: b.truncated,
                sender: b.sender.as_ref().map(|s| BreakSender {
                    cpu: s.cpu,
                    context: s.context.into(),
                    pid: s.pid,
                    comm: s.comm.clone(),
                    function: s.function.clone(),
                    callsite: s.callsite.clone(),
                    stack: s
                        .stack
                        .iter()
                        .take(crate::protocol::BREAK_STACK_FRAMES)
                        .cloned()
                        .collect(),
                }),
            });
            out.push(TaskStatus {
                id,
                process,
                uid: task_uid,
                cpu: reg.as_ref().map(|g| g.cpu).or_else(|| {
                    facts.as_ref().and_then(|f| {
                        (f.allowed.len() == 1).then(|| f.allowed.iter().next().unwrap())
                    })
                }),
                mode: tpl.r.mode,
                quiesce: tpl.r.quiesce.clone(),
                inherit: tpl.r.inherit,
                active: cap.is_registered(id, process),
                breaks: mine.iter().map(|b| b.count as u64).sum(),
                last_break: last,
            });
        }
        out
    }
}

/// The capture stops writing a forgotten registration's page.
fn release(cap: &Capture, g: Reg) {
    if let Ok(p) = g.page {
        release_page(cap, p);
    }
}

fn release_page(cap: &Capture, p: Rc<StatusPage>) {
    // Still shared (a status answer being built) cannot happen between
    // requests; were it so, the slot would merely stay taken.
    if let Ok(p) = Rc::try_unwrap(p) {
        cap.release_status_page(p);
    }
}

/// "ipi: flush_tlb_func" style.
pub fn describe(c: &isol_capture::Cause) -> String {
    if c.detail.is_empty() {
        format!("{}: {:?}", c.class.name(), c.kind)
    } else {
        format!("{}: {}", c.class.name(), c.detail)
    }
}

pub fn tick_seen(cap: &Capture, cpu: u32) -> Option<TickSeen> {
    cap.tick_state(cpu).map(|t| TickSeen {
        fail_ts_ns: t.fail_ts_ns,
        fail_dependency: t.fail_dependency,
    })
}

/// A pidfd for process `pid` (Linux 5.3+). Hand-written: nix 0.31 has no
/// pidfd_open, and two libc calls do not justify another crate.
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: as above.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// The pidfd's process has exited (a zombie too): it is readable then.
fn exited(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(test)]
#[test]
fn a_pidfd_tells_an_exited_process_from_a_live_one() {
    let mut c = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let fd = pidfd_open(c.id()).expect("pidfd_open");
    assert!(!exited(&fd));
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(exited(&fd));
}
