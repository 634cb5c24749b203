//! A stock kernel made to look like one carrying the task isolation patch,
//! for one process tree, so that isol's native backend (the prctls 63..67
//! that mean other things on stock kernels) can be tested.
//!
//! [`spawn`] starts a command under a seccomp filter (installed between
//! fork and exec, inherited by every descendant) that hands to a
//! supervisor thread in the calling process, as seccomp user notifications
//! (Linux 5.5+; opening a file for the task needs 5.14+):
//!
//! - `prctl(63..=67, ...)`: answered by [`rules`] against the calling
//!   task's emulated state, reading and writing its argument structs in
//!   its memory, exactly as documented (sizes, flags, masks, errors);
//! - `openat` of `/proc/self/task_isolation` or `/proc/PID/task_isolation`:
//!   answered with a file of the patch's format showing that task's state
//!   (every other open goes on untouched);
//! - `clone`, `clone3`, `fork`, `vfork`: the creating task's state is
//!   taken, and the first new task of its process (or, for a new process,
//!   of its parent) to be seen gets what the patch's fork code would give
//!   it; exec keeps a task's state, as in the kernel.
//!
//! Every prctl is logged ([`Log`]), so a test can also say which calls the
//! program made.

mod arch;
pub mod rules;

use arch::{sys_fork, sys_vfork, AUDIT_ARCH};
use rules::Info;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One prctl the program made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub tid: u32,
    pub args: [u64; 5],
    /// Ok(return value) or Err(errno).
    pub result: Result<i64, i32>,
}

#[derive(Debug, Clone, Default)]
pub struct Log {
    pub calls: Vec<Call>,
    /// task_isolation files opened, with what they said.
    pub proc_reads: Vec<(String, String)>,
}

impl Log {
    pub fn ops(&self) -> Vec<u64> {
        self.calls.iter().map(|c| c.args[0]).collect()
    }
}

#[derive(Default)]
struct State {
    tasks: HashMap<u32, Option<Info>>,
    /// (creating process, what its child gets), oldest first.
    pending: VecDeque<(u32, Option<Info>)>,
    log: Log,
}

fn status_field(tid: u32, key: &str) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .parse()
        .ok()
}

impl State {
    /// `tid`'s state; a task seen for the first time takes what its
    /// creator's clone left for it.
    fn of(&mut self, tid: u32) -> Option<Info> {
        if let Some(s) = self.tasks.get(&tid) {
            return *s;
        }
        let tgid = status_field(tid, "Tgid:").unwrap_or(tid);
        let creator = if tgid == tid {
            status_field(tid, "PPid:").and_then(|p| status_field(p, "Tgid:"))
        } else {
            Some(tgid)
        };
        let got = creator
            .and_then(|c| self.pending.iter().position(|(p, _)| *p == c))
            .and_then(|i| self.pending.remove(i))
            .and_then(|(_, s)| s);
        self.tasks.insert(tid, got);
        got
    }
}

/// A process tree running under the imitation.
pub struct Emulated {
    child: Option<Child>,
    state: Arc<Mutex<State>>,
    supervisor: Option<JoinHandle<()>>,
}

impl Emulated {
    /// Wait for the command (its descendants may outlive it: the
    /// supervisor serves until the last task under the filter is gone).
    pub fn wait_with_output(mut self) -> io::Result<(Output, Log)> {
        let out = self.child.take().expect("waited once").wait_with_output()?;
        if let Some(h) = self.supervisor.take() {
            let _ = h.join();
        }
        let log = self.state.lock().unwrap().log.clone();
        Ok((out, log))
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("not waited for")
    }

    pub fn log(&self) -> Log {
        self.state.lock().unwrap().log.clone()
    }
}

/// Run `cmd` under the imitation and wait for it.
pub fn run(cmd: &mut Command) -> io::Result<(Output, Log)> {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    spawn(cmd)?.wait_with_output()
}

/// The filter: the task isolation prctls, openat and task creation go to
/// the supervisor; anything else is allowed; a foreign architecture's
/// system call kills (its numbers would mean other things).
fn filter() -> [libc::sock_filter; 16] {
    const LD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15;
    const JGE: u16 = 0x35;
    const JGT: u16 = 0x25;
    const RET: u16 = 0x06;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        f(LD, 0, 0, 4),
        f(JEQ, 1, 0, AUDIT_ARCH),
        f(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        f(LD, 0, 0, 0),
        f(JEQ, 6, 0, libc::SYS_prctl as u32),
        f(JEQ, 8, 0, libc::SYS_openat as u32),
        f(JEQ, 7, 0, libc::SYS_clone as u32),
        f(JEQ, 6, 0, libc::SYS_clone3 as u32),
        f(JEQ, 5, 0, sys_fork()),
        f(JEQ, 4, 0, sys_vfork()),
        f(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
        f(LD, 0, 0, 16), // args[0], low half: prctl's option is an int
        f(JGE, 0, 2, 63),
        f(JGT, 1, 0, 67),
        f(RET, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
        f(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Between fork and exec: install the filter and send its listener to the
/// supervisor over `sock`. Only system calls, no allocation.
fn install(sock: RawFd) -> io::Result<()> {
    let prog = filter();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: plain system calls with pointers to live locals.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = fd as RawFd;
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cbuf = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
        let r = libc::sendmsg(sock, &msg, 0);
        libc::close(fd);
        if r != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn recv_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    // SAFETY: recvmsg into live locals; the descriptor received is ours.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cbuf = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        if libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) != 1 {
            return Err(io::Error::other(
                "the child sent no seccomp listener (did it exec?)",
            ));
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("no SCM_RIGHTS from the child"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Start `cmd` under the imitation.
pub fn spawn(cmd: &mut Command) -> io::Result<Emulated> {
    let (ours, theirs) = UnixStream::pair()?;
    let sock = theirs.as_raw_fd();
    // SAFETY: install() makes system calls only.
    unsafe { cmd.pre_exec(move || install(sock)) };
    let child = cmd.spawn()?;
    drop(theirs);
    let listener = recv_fd(&ours)?;
    let state = Arc::new(Mutex::new(State::default()));
    let st = state.clone();
    let supervisor = std::thread::Builder::new()
        .name("isol-task-emu".into())
        .spawn(move || supervise(listener, st))?;
    Ok(Emulated {
        child: Some(child),
        state,
        supervisor: Some(supervisor),
    })
}

struct Remote(u32);

impl rules::Mem for Remote {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: reading another process's memory into our buffer.
        let n = unsafe { libc::process_vm_readv(self.0 as i32, &local, 1, &remote, 1, 0) };
        n == buf.len() as isize
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let local = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: data.len(),
        };
        // SAFETY: writing our buffer into the calling task's memory, at
        // the address it passed, as the kernel's copy_to_user would.
        let n = unsafe { libc::process_vm_writev(self.0 as i32, &local, 1, &remote, 1, 0) };
        n == data.len() as isize
    }
}

/// A NUL-terminated path from the task's memory.
fn read_path(tid: u32, addr: u64) -> Option<String> {
    let mut out = Vec::new();
    let mut m = Remote(tid);
    let mut a = addr;
    while out.len() < 4096 {
        // Up to the end of the page, so a read never crosses into an
        // unmapped one.
        let n = (4096 - (a % 4096)) as usize;
        let mut buf = vec![0u8; n];
        if !rules::Mem::read(&mut m, a, &mut buf) {
            return None;
        }
        if let Some(z) = buf.iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..z]);
            return String::from_utf8(out).ok();
        }
        out.extend_from_slice(&buf);
        a += n as u64;
    }
    None
}

/// Which task's state a task_isolation path shows, if it is one.
fn proc_target(path: &str, caller: u32) -> Option<u32> {
    let rest = path
        .strip_prefix("/proc/")?
        .strip_suffix("/task_isolation")?;
    if rest == "self" {
        return status_field(caller, "Tgid:");
    }
    let pid: u32 = rest.parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

fn respond(fd: RawFd, id: u64, val: i64, error: i32, flags: u32) {
    let mut r = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: ioctl with a live response struct.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut r) };
}

fn supervise(listener: OwnedFd, state: Arc<Mutex<State>>) {
    let fd = listener.as_raw_fd();
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one live pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 500) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if p.revents & libc::POLLIN == 0 {
            if p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                // No task uses the filter any more.
                return;
            }
            continue;
        }
        // SAFETY: the kernel wants a zeroed struct.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) } != 0 {
            continue;
        }
        let tid = n.pid;
        let nr = n.data.nr as i64;
        let a = n.data.args;
        let mut st = state.lock().unwrap();
        if nr == libc::SYS_prctl {
            let mut info = st.of(tid);
            let args = [a[0] & 0xffff_ffff, a[1], a[2], a[3], a[4]];
            let result = rules::prctl(&mut info, args, &mut Remote(tid));
            st.tasks.insert(tid, info);
            st.log.calls.push(Call { tid, args, result });
            match result {
                Ok(v) => respond(fd, n.id, v, 0, 0),
                Err(e) => respond(fd, n.id, 0, -e, 0),
            }
        } else if nr == libc::SYS_openat {
            let target = read_path(tid, a[1]).and_then(|p| proc_target(&p, tid).map(|t| (p, t)));
            let Some((path, target)) = target else {
                respond(
                    fd,
                    n.id,
                    0,
                    0,
                    libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
                );
                continue;
            };
            let text = rules::proc_text(st.of(target));
            st.log.proc_reads.push((path, text.clone()));
            drop(st);
            open_for(fd, n.id, &text, a[2] as i32);
        } else {
            // Task creation: what the new task will get from this one.
            let parent = st.of(tid);
            let creator = status_field(tid, "Tgid:").unwrap_or(tid);
            st.pending.push_back((creator, rules::inherit(parent)));
            respond(
                fd,
                n.id,
                0,
                0,
                libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            );
        }
    }
}

/// Answer an openat with a new file holding `text`.
fn open_for(fd: RawFd, id: u64, text: &str, flags: i32) {
    // SAFETY: memfd_create/write/lseek on our own new descriptor.
    let mfd = unsafe { libc::memfd_create(c"task_isolation".as_ptr(), libc::MFD_CLOEXEC) };
    if mfd < 0 {
        respond(fd, id, 0, -libc::ENOMEM, 0);
        return;
    }
    unsafe {
        libc::write(mfd, text.as_ptr().cast(), text.len());
        libc::lseek(mfd, 0, libc::SEEK_SET);
    }
    let mut add = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: mfd as u32,
        newfd: 0,
        newfd_flags: (flags & libc::O_CLOEXEC) as u32,
    };
    // SAFETY: ioctl with a live struct; with SEND it answers the openat.
    if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &mut add) } < 0 {
        respond(fd, id, 0, -libc::EIO, 0);
    }
    unsafe { libc::close(mfd) };
}
