//! Running a program isolated on a CPU (chisol -a): the child pins itself
//! to the CPU, quiesces there (or activates, on the patched kernel), and
//! execs the program only once its parent has registered it with the
//! watcher.
//!
//! That work cannot run between fork and exec: quiescing allocates,
//! formats and sleeps, and the program's environment names the child's own
//! pid, none of which is safe in the forked copy of a multithreaded process
//! (the in-process watcher runs threads). So the child is the caller's own
//! binary run again, whose `main` calls [`child_main`] first: `pre_exec`
//! only pins the new process and keeps the two handshake pipes open across
//! exec (async-signal-safe calls); the fresh single-threaded image does the
//! rest and execs the program with its environment set on a `Command`.
//!
//! The handshake: the child writes what it quiesced, one `name: detail`
//! line per step, and closes that pipe; the parent registers the pid and
//! writes `g` (go) or `x` (gave up) on the other.

use crate::config::{self, Config};
use anyhow::{bail, Context, Result};
use isol_cpulist::CpuSet;
use std::ffi::{CString, OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};

/// Set on the child only: `CPU READY_FD GO_FD`.
const CHILD_ENV: &str = "ISOL_SPAWN_CHILD";
/// Set on the child only: the library `--preload` names.
const PRELOAD_ENV: &str = "ISOL_SPAWN_PRELOAD";

/// What to run, where, and how.
pub struct Isolated<'a> {
    pub cpu: u32,
    pub config: &'a Config,
    /// A library (libisol) preloaded into the program, which then locks its
    /// own memory (mlockall does not survive exec).
    pub preload: Option<PathBuf>,
    /// The program and its arguments.
    pub argv: &'a [OsString],
}

/// A child that has quiesced and waits for [`Handshake::go`] to exec.
pub struct Handshake {
    child: Child,
    go: std::fs::File,
    /// What the child quiesced, `name: detail` (none on the patched
    /// kernel, where activation quiesces).
    pub steps: Vec<String>,
}

impl Handshake {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Let the child exec the program. The child is not reaped here: the
    /// caller waits for it by pid (see chisol, which keeps the zombie for
    /// the watcher's last status).
    pub fn go(mut self) -> std::io::Result<Child> {
        self.go.write_all(b"g")?;
        Ok(self.child)
    }

    /// Tell the child to give up without running the program, and reap it.
    pub fn abort(mut self) {
        let _ = self.go.write_all(b"x");
        drop(self.go);
        let _ = self.child.wait();
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    // CLOEXEC: neither end may reach the program; the child's two ends are
    // opened up for its exec of this binary only, in pre_exec.
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Start the child (this binary again, see the module documentation) and
/// wait until it has quiesced.
pub fn start(req: &Isolated) -> Result<Handshake> {
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (ready_fd, go_fd) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
    let mut cpus = nix::sched::CpuSet::new();
    cpus.set(req.cpu as usize)
        .with_context(|| format!("CPU {}", req.cpu))?;

    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.args(req.argv)
        .env(CHILD_ENV, format!("{} {ready_fd} {go_fd}", req.cpu))
        .env(config::ENV, req.config.to_env());
    match &req.preload {
        Some(p) => cmd.env(PRELOAD_ENV, p),
        None => cmd.env_remove(PRELOAD_ENV),
    };
    // SAFETY: only async-signal-safe calls (sched_setaffinity, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)?;
            for fd in [ready_fd, go_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .context("starting the child that runs the program")?;
    // Only the child's copies stay open: EOF on ready when it is done.
    drop(ready_w);
    drop(go_r);
    let mut steps = String::new();
    std::fs::File::from(ready_r).read_to_string(&mut steps)?;
    Ok(Handshake {
        child,
        go: std::fs::File::from(go_w),
        steps: steps.lines().map(str::to_owned).collect(),
    })
}

/// In the child that [`start`] runs, call first in `main`: it does the
/// child's part and execs the program, so it returns only with the reason
/// it could not (the caller reports it and exits). Elsewhere it returns
/// `None` at once.
pub fn child_main() -> Option<anyhow::Error> {
    let marker = std::env::var(CHILD_ENV).ok()?;
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    Some(match child(&marker, &argv) {
        Err(e) => e,
        Ok(never) => match never {},
    })
}

fn parse_marker(m: &str) -> Option<(u32, RawFd, RawFd)> {
    let mut w = m.split(' ');
    let r = (
        w.next()?.parse().ok()?,
        w.next()?.parse().ok()?,
        w.next()?.parse().ok()?,
    );
    w.next().is_none().then_some(r)
}

fn child(marker: &str, argv: &[OsString]) -> Result<std::convert::Infallible> {
    let (cpu, ready, go) =
        parse_marker(marker).with_context(|| format!("{CHILD_ENV}={marker:?}"))?;
    // SAFETY: start() handed these two descriptors to this process alone.
    let (ready, go) = unsafe { (OwnedFd::from_raw_fd(ready), OwnedFd::from_raw_fd(go)) };
    let cfg = Config::from_env().context("no configuration")??;
    let preload = std::env::var_os(PRELOAD_ENV);
    let Some(program) = argv.first() else {
        bail!("no program to run");
    };

    isol_system::affinity::pin_current_thread(&CpuSet::from_iter([cpu]))
        .map_err(anyhow::Error::msg)?;
    // SAFETY: plain libc calls.
    while unsafe { libc::sched_getcpu() } != cpu as i32 {
        unsafe { libc::sched_yield() };
    }
    if let Some(p) = crate::native::Proof::check() {
        crate::native::configure_from(&p, &cfg)?;
        crate::native::activate(&p, crate::abi::ISOL_F_QUIESCE)?;
        drop(ready);
    } else {
        crate::stock::memory::disable_thp()?;
        let plan = crate::stock::quiesce::VmstatPlan::for_cpu(cpu);
        let done = crate::stock::quiesce::run(cfg.quiesce, plan)?;
        let mut w = std::fs::File::from(ready);
        for d in done {
            writeln!(w, "{}: {}", d.name, d.detail)?;
        }
    }
    // Wait for the watcher's registration.
    let mut b = [0u8; 1];
    std::fs::File::from(go).read_exact(&mut b)?;
    if b[0] != b'g' {
        bail!("chisol's supervisor gave up");
    }

    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .env_remove(CHILD_ENV)
        .env_remove(PRELOAD_ENV)
        .env(config::ENV, cfg.to_env())
        .env(config::ENV_ACTIVE, "1")
        .env(config::ENV_PID, std::process::id().to_string());
    if let Some(lib) = preload {
        // libisol's constructor locks the new image's memory.
        let mut v = lib;
        if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
            v.push(":");
            v.push(old);
        }
        cmd.env("LD_PRELOAD", v).env(config::ENV_LOCK, "1");
    }
    // The program has always run with SIGPIPE ignored, as this binary's
    // Rust runtime left it (and as without -a); Command would reset it.
    // SAFETY: signal() is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            Ok(())
        });
    }
    let e = cmd.exec();
    let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
    bail!("cannot run {:?}: {errno}", c_name(program))
}

/// The program's name as the exec error has always shown it (a C string's
/// debug form).
fn c_name(p: &OsStr) -> CString {
    CString::new(p.as_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_three_numbers() {
        assert_eq!(parse_marker("3 7 9"), Some((3, 7, 9)));
        assert_eq!(parse_marker("3 7"), None);
        assert_eq!(parse_marker("3 7 9 1"), None);
        assert_eq!(parse_marker("x 7 9"), None);
    }

    #[test]
    fn the_exec_error_names_the_program_as_before() {
        let e = nix::errno::Errno::ENOENT;
        assert_eq!(
            format!("cannot run {:?}: {e}", c_name(OsStr::new("nope"))),
            "cannot run \"nope\": ENOENT: No such file or directory"
        );
    }
}
