//! The task isolation API of seeds 000/002/003 for stock and patched
//! kernels: query features, configure (quiesce mask, one-shot mask,
//! inheritance, strict mode), activate and deactivate, read the last break.
//!
//! On a kernel carrying the task isolation patch (proven by
//! /proc/self/task_isolation) the seed's prctls do the work. Elsewhere the
//! stock backend does it from user space: affinity check, memory locking,
//! THP off, quiescing, waiting for the tick to stop, and registration with
//! a watcher (isold, or an in-process one) that counts breaks or, in
//! strict mode, signals the task on the first one.
//!
//! State is per thread, like the prctl's per-task state.

pub mod abi;
pub mod config;
pub mod error;
#[cfg(feature = "capture")]
mod inprocess;
pub mod native;
pub mod policy;
pub mod protocol;
#[cfg(feature = "capture")]
pub mod service;
pub mod stock;
pub mod tick;
pub mod watcher;

pub use config::{Config, Inherit, Mode, Quiesce, Strict};
pub use error::{Error, Result};
pub use protocol::{BreakInfo, TaskStatus, TickReport};

use protocol::{Registration, Request, Response};
use serde::Serialize;
use std::cell::RefCell;
use std::sync::Mutex;
use watcher::Watcher;

/// Which implementation serves this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The seed's PR_ISOL_* prctls.
    Native,
    /// isol's user-space implementation on a stock kernel.
    Stock,
}

#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub backend: Backend,
    /// Quiesce actions this backend supports.
    pub quiesce: Vec<&'static str>,
    /// The seed's feature mask (ISOL_F_QUIESCE) as the kernel reports it.
    pub native_features: Option<u64>,
    /// Strict mode and break counting need a watcher: isold reachable?
    pub isold: bool,
}

pub fn backend() -> Backend {
    if native::Proof::check().is_some() {
        Backend::Native
    } else {
        Backend::Stock
    }
}

pub fn features() -> Result<Features> {
    let isold = std::os::unix::net::UnixStream::connect(protocol::socket_path()).is_ok();
    Ok(match native::Proof::check() {
        Some(p) => {
            let (feat, bits) = native::features(&p)?;
            Features {
                backend: Backend::Native,
                quiesce: Quiesce::from_bits_truncate(bits).names(),
                native_features: Some(feat),
                isold,
            }
        }
        None => Features {
            backend: Backend::Stock,
            quiesce: Quiesce::all().names(),
            native_features: None,
            isold,
        },
    })
}

/// One activation step and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActivationReport {
    pub backend: Backend,
    pub tid: u32,
    pub cpu: u32,
    pub mode: Mode,
    /// The kernel isolates the CPU (nohz_full/isolcpus/cpuset).
    pub kernel_isolated: bool,
    pub steps: Vec<Step>,
    pub tick: Option<TickReport>,
    /// Who counts breaks (and signals, in strict mode), or why nobody does.
    pub watcher: String,
    pub registered: bool,
    /// How long activation took, in ms (the tick wait included).
    pub took_ms: u64,
}

#[derive(Default)]
struct TaskState {
    config: Option<Config>,
    /// Read ISOL_TASK_CONFIG already.
    env_read: bool,
    active: bool,
    quiesces: u32,
}

thread_local! {
    static STATE: RefCell<TaskState> = RefCell::new(TaskState::default());
}

static WATCHER: Mutex<Option<Watcher>> = Mutex::new(None);
static ATFORK: std::sync::Once = std::sync::Once::new();

/// fork(2): the child gets what the configuration's inheritance says
/// (ISOL_INHERIT_CONF / _ACTIVE); the watcher connection is the parent's.
extern "C" fn atfork_child() {
    STATE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            match s.config.as_ref().map(|c| c.inherit) {
                Some(Inherit::Active) => {}
                Some(Inherit::Conf) => s.active = false,
                _ => {
                    s.config = None;
                    s.active = false;
                }
            }
            s.env_read = true;
        }
    });
    if let Ok(mut w) = WATCHER.try_lock() {
        // Forget without closing anything the parent still uses.
        std::mem::forget(w.take());
    }
}

fn ensure_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registering a plain extern "C" handler.
        unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    });
}

pub fn gettid() -> u32 {
    // SAFETY: plain libc call.
    unsafe { libc::gettid() as u32 }
}

/// Set this thread's configuration (PR_ISOL_CFG_SET).
pub fn configure(cfg: Config) -> Result<()> {
    cfg.validate()?;
    ensure_atfork();
    if let Some(p) = native::Proof::check() {
        native::configure_from(&p, &cfg)?;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.config = Some(cfg);
        s.env_read = true;
    });
    Ok(())
}

/// This thread's configuration: set by `configure`, or inherited across
/// exec from ISOL_TASK_CONFIG (chisol).
pub fn configuration() -> Result<Option<Config>> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if !s.env_read {
            s.env_read = true;
            if let Some(c) = Config::from_env() {
                s.config = Some(c?);
                s.active = std::env::var_os(config::ENV_ACTIVE).is_some();
            }
        }
        Ok(s.config.clone())
    })
}

pub fn is_active() -> bool {
    let _ = configuration();
    STATE.with(|s| s.borrow().active)
}

fn with_watcher<T>(f: impl FnOnce(&mut Watcher) -> Result<T>, in_process: bool) -> Result<T> {
    let mut g = WATCHER.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(Watcher::connect(in_process)?);
    }
    f(g.as_mut().unwrap())
}

fn call(req: &Request) -> Result<Response> {
    with_watcher(|w| w.call(req), false)
}

fn classes(cfg: &Config) -> Vec<String> {
    use isol_capture_names::*;
    let own_only = cfg.strict.is_some_and(|s| s.own_only);
    let mut v: Vec<String> = if own_only {
        vec![]
    } else {
        ASYNC.iter().map(|s| s.to_string()).collect()
    };
    if cfg.strict.is_some_and(|s| s.syscalls) {
        v.extend(SYNC.iter().map(|s| s.to_string()));
    }
    v
}

/// Class names as the capture engine spells them (kept here so the API
/// builds without it).
mod isol_capture_names {
    pub const ASYNC: &[&str] = &[
        "irq",
        "ipi",
        "timer",
        "softirq",
        "nmi",
        "sched",
        "workqueue",
    ];
    pub const SYNC: &[&str] = &["exception", "syscall"];
}

/// The registration `cfg` asks for, for a task or a whole process.
pub fn registration(cfg: &Config, id: u32, process: bool) -> Registration {
    Registration {
        id,
        process,
        mode: cfg.mode(),
        signal: cfg.strict.map(|s| s.signal).unwrap_or(0),
        classes: classes(cfg),
        inherit: cfg.inherit == Inherit::Active,
        quiesce: cfg.quiesce.names().into_iter().map(String::from).collect(),
        // The task registering itself keeps talking to its watcher
        // until activate() returns: it arms itself last.
        pending: !process && cfg.strict.is_some_and(|s| s.syscalls),
    }
}

/// Activate isolation for the calling thread (PR_ISOL_ACTIVATE_SET).
pub fn activate() -> Result<ActivationReport> {
    activate_then(|_| ())
}

/// Activate, and run `keep` on the report before the last step: in strict
/// mode counting syscalls, arming makes the thread's next syscall a break,
/// so whatever the caller does with the report (allocate, copy) happens first.
pub fn activate_then(keep: impl FnOnce(&ActivationReport)) -> Result<ActivationReport> {
    let t0 = std::time::Instant::now();
    let cfg = configuration()?.ok_or(Error::NotConfigured)?;
    ensure_atfork();
    let tid = gettid();
    let allow = cfg.allow_unisolated || std::env::var_os("ISOL_ALLOW_UNISOLATED").is_some();
    let (cpu, kernel_isolated) = stock::check_affinity(allow)?;
    let mut steps = Vec::new();
    let backend = backend();

    if let Some(p) = native::Proof::check() {
        native::activate(&p, true)?;
        steps.push(Step {
            name: "native",
            detail: "PR_ISOL_ACTIVATE_SET: the kernel quiesces on return to user space".into(),
        });
    } else {
        steps.push(Step {
            name: "thp",
            detail: stock::memory::disable_thp()?,
        });
        if cfg.lock_memory {
            steps.push(Step {
                name: "memory",
                detail: stock::memory::lock()?,
            });
        }
        steps.extend(stock::quiesce::run(cfg.quiesce, kernel_isolated)?);
    }

    // isold, or (privileged programs) a watcher of their own.
    let (watcher, watcher_name) = match with_watcher(|w| Ok(w.describe()), true) {
        Ok(d) => (true, d),
        Err(e) => (false, e.to_string()),
    };
    if !watcher && cfg.strict.is_some() {
        return Err(Error::NoWatcher(format!(
            "strict mode needs a watcher to signal the task: {watcher_name}"
        )));
    }

    let mut tick = None;
    if watcher {
        let r = call(&Request::WaitTick {
            cpu,
            tid,
            timeout_ms: cfg.tick_timeout_ms,
        })?;
        if let Response::Tick(t) = r {
            if !t.stopped && cfg.strict.is_some() && kernel_isolated {
                let why: Vec<String> = t
                    .dependencies
                    .iter()
                    .map(|d| format!("{}: {}", d.kind, d.detail))
                    .collect();
                return Err(Error::Tick(format!(
                    "the tick did not stop on CPU {cpu} within {} ms, and in strict mode the next tick would break isolation: {}",
                    t.waited_ms,
                    why.join("; ")
                )));
            }
            tick = Some(t);
        }
    }

    let mut registered = false;
    let reg = registration(&cfg, tid, false);
    if watcher {
        call(&Request::Register(reg.clone()))?;
        registered = true;
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.active = true;
        s.quiesces = 1;
    });
    let report = ActivationReport {
        backend,
        tid,
        cpu,
        mode: cfg.mode(),
        kernel_isolated,
        steps,
        tick,
        watcher: watcher_name,
        registered,
        took_ms: t0.elapsed().as_millis() as u64,
    };
    keep(&report);
    if registered && reg.pending {
        protocol::arm();
    }
    Ok(report)
}

/// Run the quiesce actions again (what the patched kernel does on every
/// return from a syscall; stock kernels give user space no hook there, so
/// a persistent task calls this after its syscalls). One-shot actions are
/// skipped: they run at activation only.
pub fn quiesce() -> Result<Vec<Step>> {
    let cfg = configuration()?.ok_or(Error::NotConfigured)?;
    if !is_active() {
        return Err(Error::Other("not active: activate() first".into()));
    }
    let mask = cfg.quiesce.difference(cfg.oneshot);
    let out = stock::quiesce::run(mask, stock::kernel_isolated().contains(current_cpu()))?;
    STATE.with(|s| s.borrow_mut().quiesces += 1);
    Ok(out)
}

/// How many times this thread's quiesce actions ran (activation included).
pub fn quiesce_count() -> u32 {
    STATE.with(|s| s.borrow().quiesces)
}

fn current_cpu() -> u32 {
    // SAFETY: plain libc call.
    unsafe { libc::sched_getcpu() as u32 }
}

/// Deactivate (PR_ISOL_ACTIVATE_SET with an empty mask).
pub fn deactivate() -> Result<()> {
    if let Some(p) = native::Proof::check() {
        native::activate(&p, false)?;
    }
    let was = STATE.with(|s| std::mem::replace(&mut s.borrow_mut().active, false));
    if was && WATCHER.lock().map(|w| w.is_some()).unwrap_or(false) {
        call(&Request::Unregister {
            id: gettid(),
            process: false,
        })?;
    }
    Ok(())
}

/// The watcher's registrations (all of this user's, or one process's).
pub fn status(pid: Option<u32>) -> Result<Vec<TaskStatus>> {
    match call(&Request::Status { pid })? {
        Response::Status { tasks } => Ok(tasks),
        r => Err(Error::Other(format!("unexpected answer {r:?}"))),
    }
}

/// The calling thread's (or its process's) last break, if any.
pub fn last_break() -> Result<Option<BreakInfo>> {
    let tid = gettid();
    // SAFETY: plain libc call.
    let pid = unsafe { libc::getpid() } as u32;
    let tasks = status(Some(pid))?;
    let mine = tasks
        .iter()
        .filter(|t| t.id == tid || (t.process && t.id == pid))
        .filter_map(|t| t.last_break.clone())
        .max_by_key(|b| b.ts_ns);
    Ok(mine)
}
