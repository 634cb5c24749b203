//! Requests to the watcher (isold over its unix socket, or the in-process
//! watcher thread), one JSON object per line each way.

use crate::config::Mode;
use serde::{Deserialize, Serialize};

/// Where isold listens unless its config or ISOL_SOCKET says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/isol/isold.sock";
pub const SOCKET_ENV: &str = "ISOL_SOCKET";

pub fn socket_path() -> std::path::PathBuf {
    std::env::var_os(SOCKET_ENV)
        .map(Into::into)
        .unwrap_or_else(|| DEFAULT_SOCKET.into())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Watch a task (or, with `process`, every thread of a process) on
    /// its isolated CPU: count its breaks, or signal it (strict).
    Register(Registration),
    Unregister {
        id: u32,
        process: bool,
    },
    /// Wait until the tick stops on `cpu` while `tid` runs there; name
    /// what keeps it if it does not within the timeout.
    WaitTick {
        cpu: u32,
        tid: u32,
        timeout_ms: u64,
        /// The timers quiesce: go on until no timer is pending on the CPU.
        #[serde(default)]
        timers: bool,
    },
    /// Registered tasks (all, or one process's) with their breaks.
    Status {
        pid: Option<u32>,
    },
    /// The status page of registered thread `tid`: answered with a
    /// read-only descriptor of it beside the reply (SCM_RIGHTS).
    StatusPage {
        tid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// tid, or pid with `process`.
    pub id: u32,
    pub process: bool,
    pub mode: Mode,
    /// 0 = count breaks only.
    pub signal: i32,
    /// Classes that break isolation (`ipi`, `syscall`, ... as in JSON).
    pub classes: Vec<String>,
    /// Children are registered too (ISOL_INHERIT_ACTIVE).
    pub inherit: bool,
    pub quiesce: Vec<String>,
    /// The task's own syscalls and faults count only once it calls
    /// [`arm`] (its talk with the watcher must not break it).
    #[serde(default)]
    pub pending: bool,
}

/// The capture engine's STRICT_ARM_MAGIC (capture.h).
pub const ARM_MAGIC: u64 = isol_abi::STRICT_ARM_MAGIC;

/// Arm the calling thread's pending registration: getcpu(2) ignores its
/// third argument, and the watcher's BPF program recognises this call.
/// From the next kernel entry on, the thread's own syscalls count.
pub fn arm() {
    // SAFETY: getcpu with NULL outputs; the third argument is unused.
    unsafe { libc::syscall(libc::SYS_getcpu, 0usize, 0usize, ARM_MAGIC as usize) };
}

/// End the calling thread's registration (or its process's) in the
/// watcher's BPF program, at once: the first thing deactivation does, so
/// that nothing it does after (reading /proc, talking to isold) can count
/// as a break. Harmless without a watcher: getcpu ignores its argument.
pub fn leave() {
    // SAFETY: getcpu with NULL outputs; the third argument is unused.
    unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            0usize,
            0usize,
            isol_abi::STRICT_LEAVE_MAGIC as usize,
        )
    };
}

/// A descriptor that travels beside a response (SCM_RIGHTS over isold's
/// socket; moved as it is to an in-process caller), never in its JSON.
#[derive(Debug, Clone, Default)]
pub struct Passed(pub Option<std::sync::Arc<std::os::fd::OwnedFd>>);

impl PartialEq for Passed {
    /// Responses compare by their JSON; the descriptor is not part of it.
    fn eq(&self, _: &Passed) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Registered {
        cpu: u32,
    },
    /// The page's descriptor is `fd` (never in the JSON).
    StatusPage {
        tid: u32,
        #[serde(skip)]
        fd: Passed,
    },
    Done,
    Tick(TickReport),
    Status {
        tasks: Vec<TaskStatus>,
    },
    Error {
        message: String,
    },
}

/// What stops the tick on a CPU (timer:tick_stop dependency bits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// posix_timer, perf_events, sched, clock_unstable, rcu, rcu_exp
    pub kind: String,
    /// Who and what to do about it.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickReport {
    pub cpu: u32,
    pub stopped: bool,
    pub waited_ms: u64,
    /// Why it did not stop (empty when it did).
    pub dependencies: Vec<Dependency>,
    /// High-resolution timers still queued on the CPU (besides the tick).
    pub pending_timers: Vec<String>,
    /// The timers quiesce's wait, when asked for.
    #[serde(default)]
    pub timers: Option<TimersWait>,
}

/// The timers quiesce: whether the CPU ended with no timer pending, and
/// the ones it could not wait out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimersWait {
    pub quiet: bool,
    pub waited_ms: u64,
    pub pending: Vec<PendingTimer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingTimer {
    /// The hrtimer's function, or "timer wheel" / "tick".
    pub function: String,
    pub expires_in_ms: Option<i64>,
    /// Whose it is likely to be and what to do.
    pub detail: String,
}

impl TimersWait {
    pub fn describe(&self) -> String {
        if self.quiet {
            return format!("no timer pending on the CPU (waited {} ms)", self.waited_ms);
        }
        let left: Vec<String> = self
            .pending
            .iter()
            .map(|p| match p.expires_in_ms {
                Some(ms) => format!("{} in {ms} ms ({})", p.function, p.detail),
                None => format!("{} ({})", p.function, p.detail),
            })
            .collect();
        format!(
            "could not wait out within {} ms: {}",
            self.waited_ms,
            left.join("; ")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakInfo {
    pub tid: u32,
    pub cpu: u32,
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    pub count: u32,
    /// 0 when the break was only counted.
    pub signal: u32,
    /// e.g. `ipi: flush_tlb_func`
    pub cause: String,
    /// Every handler of the interruption, outermost first, e.g.
    /// `ipi: call_function_single`, `ipi: flush_tlb_func`.
    #[serde(default)]
    pub chain: Vec<String>,
    /// More nested handlers than the chain holds.
    #[serde(default)]
    pub truncated: bool,
    /// Who sent the IPI, where the capture saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<BreakSender>,
}

/// The sender of the IPI that broke a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakSender {
    pub cpu: u32,
    /// `task` (then pid and comm are the culprit), `softirq`, `hardirq`
    /// or `nmi` (then they name whatever task ran on the sending CPU).
    pub context: String,
    pub pid: u32,
    pub comm: String,
    /// What the IPI ran (e.g. `flush_tlb_func`).
    pub function: String,
    /// Where the sender queued it.
    pub callsite: String,
    /// The top of the sender's kernel stack, innermost first.
    pub stack: Vec<String>,
}

/// Frames of the sender's stack kept in a break (the C API's fixed array).
pub const BREAK_STACK_FRAMES: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: u32,
    pub process: bool,
    pub uid: u32,
    pub cpu: Option<u32>,
    pub mode: Mode,
    pub quiesce: Vec<String>,
    pub inherit: bool,
    /// Still registered (a strict registration ends at its break).
    pub active: bool,
    pub breaks: u64,
    pub last_break: Option<BreakInfo>,
}
