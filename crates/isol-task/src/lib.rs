//! The task isolation API of the kernel's task isolation patches for stock
//! and patched kernels: query features, configure (quiesce mask, one-shot
//! mask, inheritance, strict mode), activate and deactivate, read the last
//! break.
//!
//! On a kernel carrying the task isolation patch (proven by
//! /proc/self/task_isolation) its prctls do the work and hold the state.
//! Elsewhere the stock backend does it from user space: affinity check,
//! memory locking, THP off, quiescing, waiting for the tick to stop, and
//! registration with a watcher (isold, or an in-process one) that counts
//! breaks or, in strict mode, signals the task on the first one.
//!
//! State is per thread, like the patch's per-task state, and inherited as
//! the patch defines it: by a child of fork(2) and a thread of
//! pthread_create(3) as the configuration's inheritance says (conf, or conf
//! and activation), and across exec(2) always (chisol configures, the
//! program activates).

pub mod abi;
mod arch;
pub mod config;
pub mod error;
#[cfg(feature = "capture")]
mod inprocess;
pub mod log;
pub mod native;
pub mod page;
pub mod persist;
pub mod policy;
pub mod protocol;
pub mod registry;
#[cfg(feature = "capture")]
pub mod service;
pub mod spawn;
pub mod stock;
mod thread;
pub mod tick;
pub mod watcher;

#[cfg(test)]
mod fuzz;

pub use config::{Config, Inherit, Mode, Quiesce, Strict};
pub use error::{Error, Result};
pub use protocol::{BreakInfo, TaskStatus, TickReport};

use protocol::{Registration, Request, Response};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::Mutex;
use stock::quiesce::VmstatPlan;
use watcher::Watcher;

/// Which implementation serves this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The task isolation patch's PR_ISOL_* prctls.
    Native,
    /// isol's user-space implementation on a stock kernel.
    Stock,
}

#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub backend: Backend,
    /// Quiesce actions this backend supports.
    pub quiesce: Vec<&'static str>,
    /// The patch's feature mask (ISOL_F_QUIESCE) as the kernel reports it.
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

/// The default configuration for this backend: `Config::default()` with
/// the quiesce actions the backend has (a patched kernel has vmstat only).
pub fn default_config() -> Config {
    let mut c = Config::default();
    if let Some(p) = native::Proof::check() {
        if let Ok((_, bits)) = native::features(&p) {
            c.quiesce &= Quiesce::from_bits_truncate(bits);
        }
    }
    c
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
    /// How persistent mode finds out that the task entered the kernel
    /// (see [`quiesce_if_needed`]).
    pub entries: String,
    /// How long activation took, in ms (the tick wait included).
    pub took_ms: u64,
}

/// How a thread came by its state (for `isol status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    #[default]
    None,
    /// configure() in this thread.
    Configured,
    /// Inherited across exec (chisol, or the program's own exec).
    Exec,
    /// Inherited across fork.
    Fork,
    /// Inherited from the thread that created this one.
    Thread,
}

#[derive(Default, Clone)]
pub(crate) struct TaskState {
    config: Option<Config>,
    active: bool,
    /// Set: the state is known (first access done, or installed by
    /// inheritance).
    init: bool,
    origin: Origin,
    quiesces: u32,
    cpu: Option<u32>,
    watcher: Option<String>,
    registered: bool,
}

thread_local! {
    static STATE: RefCell<TaskState> = RefCell::new(TaskState::default());
}

static WATCHER: Mutex<Option<Watcher>> = Mutex::new(None);
static ATFORK: std::sync::Once = std::sync::Once::new();

/// What a child created by fork/clone gets from `parent`, as the patch's
/// `__copy_task_isol()`: the configuration with ISOL_INHERIT_CONF, the
/// activation too with ISOL_INHERIT_ACTIVE, nothing otherwise.
fn inherited(parent: &TaskState, origin: Origin) -> TaskState {
    match parent.config.as_ref().map(|c| c.inherit) {
        Some(Inherit::Conf) | Some(Inherit::Active) => TaskState {
            config: parent.config.clone(),
            active: parent.active && parent.config.as_ref().unwrap().inherit == Inherit::Active,
            init: true,
            origin,
            cpu: parent.cpu,
            watcher: parent.watcher.clone(),
            registered: parent.registered,
            ..Default::default()
        },
        _ => TaskState {
            init: true,
            ..Default::default()
        },
    }
}

/// fork(2): the child gets what the configuration's inheritance says; the
/// watcher connection is the parent's.
extern "C" fn atfork_child() {
    let child = STATE.with(|s| {
        s.try_borrow_mut().ok().map(|mut s| {
            let parent = ensure_init(&mut s).clone();
            *s = inherited(&parent, Origin::Fork);
            s.clone()
        })
    });
    if let Ok(mut w) = WATCHER.try_lock() {
        // Forget without closing anything the parent still uses; an
        // in-process watcher's thread does not exist in the child.
        std::mem::forget(w.take());
    }
    persist::after_fork();
    if let Some(c) = child.filter(|c| c.config.is_some()) {
        registry::publish(&c);
    }
}

fn ensure_atfork() {
    std::hint::black_box(thread::keep());
    ATFORK.call_once(|| {
        // SAFETY: registering a plain extern "C" handler.
        unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    });
}

pub fn gettid() -> u32 {
    // SAFETY: plain libc call.
    unsafe { libc::gettid() as u32 }
}

fn getpid() -> u32 {
    // SAFETY: plain libc call.
    unsafe { libc::getpid() as u32 }
}

/// The state a process's main thread starts with after exec: what
/// ISOL_TASK_CONFIG says (chisol, or this program's exec'ing ancestor).
/// Set for this very pid: the exec'd task's own state. Set for another
/// pid: this process descends from that task by fork, and gets what the
/// configuration's inheritance gives a child.
fn env_state() -> Result<TaskState> {
    let Some(c) = Config::from_env() else {
        return Ok(TaskState {
            init: true,
            ..Default::default()
        });
    };
    let c = c?;
    let active = std::env::var_os(config::ENV_ACTIVE).is_some();
    let for_pid: Option<u32> = std::env::var(config::ENV_PID)
        .ok()
        .and_then(|v| v.parse().ok());
    let own = TaskState {
        config: Some(c),
        active,
        init: true,
        origin: Origin::Exec,
        ..Default::default()
    };
    match for_pid {
        None => Ok(own),
        Some(p) if p == getpid() => Ok(own),
        Some(_) => Ok(inherited(&own, Origin::Exec)),
    }
}

fn ensure_init(s: &mut TaskState) -> &TaskState {
    if !s.init {
        *s = if gettid() == getpid() {
            env_state().unwrap_or_else(|_| TaskState {
                init: true,
                ..Default::default()
            })
        } else {
            TaskState {
                init: true,
                ..Default::default()
            }
        };
    }
    s
}

/// The calling thread's state (stock bookkeeping; see [`configuration`]
/// for what the patched kernel holds).
fn with_state<T>(f: impl FnOnce(&mut TaskState) -> T) -> T {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        ensure_init(&mut s);
        f(&mut s)
    })
}

/// For a thread being created by this one: what it inherits, if anything.
#[cfg_attr(not(feature = "inherit-threads"), allow(dead_code))]
pub(crate) fn snapshot_for_child() -> Option<TaskState> {
    STATE.with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        let me = ensure_init(&mut s);
        me.config.as_ref()?;
        let child = inherited(me, Origin::Thread);
        child.config.is_some().then_some(child)
    })
}

/// In a new thread, before its start routine: install what it inherited.
#[cfg_attr(not(feature = "inherit-threads"), allow(dead_code))]
pub(crate) fn install_inherited(st: TaskState) {
    let publish = st.clone();
    STATE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = st;
        }
    });
    ensure_atfork();
    registry::publish(&publish);
}

/// Set this thread's configuration (PR_ISOL_CFG_SET). On a patched kernel
/// the kernel holds it (and refuses what it cannot do); isol keeps its own
/// additions (strict mode, memory locking, timeouts) beside it.
pub fn configure(cfg: Config) -> Result<()> {
    cfg.validate()?;
    ensure_atfork();
    if let Some(p) = native::Proof::check() {
        native::configure_from(&p, &cfg)?;
    }
    let snap = with_state(|s| {
        s.config = Some(cfg.clone());
        s.origin = Origin::Configured;
        s.clone()
    });
    export_for_exec(&cfg, snap.active);
    registry::publish(&snap);
    Ok(())
}

/// Keep the configuration across this process's own exec (the patch keeps
/// a task's state across exec): in the environment, which only a
/// single-threaded process may change safely.
fn export_for_exec(cfg: &Config, active: bool) {
    if gettid() != getpid() || thread_count() != Some(1) {
        return;
    }
    std::env::set_var(config::ENV, cfg.to_env());
    std::env::set_var(config::ENV_PID, getpid().to_string());
    if active {
        std::env::set_var(config::ENV_ACTIVE, "1");
    } else {
        std::env::remove_var(config::ENV_ACTIVE);
    }
}

fn thread_count() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// This thread's configuration: set by `configure`, or inherited (fork
/// and thread creation as the inheritance says; exec always). On a patched
/// kernel the kernel's answer (PR_ISOL_CFG_GET), with isol's additions.
pub fn configuration() -> Result<Option<Config>> {
    let shadow = with_state(|s| s.config.clone());
    let Some(p) = native::Proof::check() else {
        return Ok(shadow);
    };
    let k = native::cfg_get(&p)?;
    if k.features & abi::ISOL_F_QUIESCE == 0 {
        return Ok(None);
    }
    let mut c = shadow.unwrap_or_else(|| Config {
        lock_memory: false,
        ..Config::default()
    });
    c.quiesce = Quiesce::from_bits_truncate(k.quiesce_mask);
    c.oneshot = Quiesce::from_bits_truncate(k.oneshot_mask) & c.quiesce;
    c.inherit = match k.inherit_mask.unwrap_or(0) {
        m if m & abi::ISOL_INHERIT_ACTIVE != 0 => Inherit::Active,
        m if m & abi::ISOL_INHERIT_CONF != 0 => Inherit::Conf,
        _ => Inherit::None,
    };
    Ok(Some(c))
}

/// Whether this thread is isolated: activated here, or inherited (fork and
/// threads with ISOL_INHERIT_ACTIVE, exec after chisol -a). On a patched
/// kernel, PR_ISOL_ACTIVATE_GET.
pub fn is_active() -> bool {
    if let Some(p) = native::Proof::check() {
        return matches!(native::active(&p), Ok(Some(m)) if m & abi::ISOL_F_QUIESCE != 0);
    }
    with_state(|s| s.active)
}

/// How this thread came by its state.
pub fn origin() -> Origin {
    with_state(|s| s.origin)
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
    use isol_abi::Class;
    let own_only = cfg.strict.is_some_and(|s| s.own_only);
    let mut v: Vec<Class> = if own_only {
        vec![]
    } else {
        Class::ASYNC.to_vec()
    };
    if cfg.strict.is_some_and(|s| s.syscalls) {
        v.extend_from_slice(Class::SYNC);
    }
    v.into_iter().map(|c| c.name().to_string()).collect()
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
    let native = native::Proof::check();

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
    // The stock vmstat step that lets the kernel's work run on the CPU:
    // before the watcher when the tick stops here (what the task does
    // later cannot wake the parked work), after the registration when the
    // tick keeps running (the chain must end after the task's last
    // system call), unless strict mode would take the work for a break.
    let plan = VmstatPlan::for_cpu(cpu);
    let vmstat_last = native.is_none()
        && cfg.quiesce.contains(Quiesce::VMSTAT)
        && plan == VmstatPlan::Settle
        && cfg.strict.is_none();
    if let Some(p) = &native {
        native::activate(p, abi::ISOL_F_QUIESCE)?;
        steps.push(Step {
            name: "native",
            detail: "PR_ISOL_ACTIVATE_SET: the kernel quiesces on return to user space".into(),
        });
    } else {
        let first = if vmstat_last {
            cfg.quiesce - Quiesce::VMSTAT
        } else {
            cfg.quiesce
        };
        steps.extend(stock::quiesce::run(first, plan)?);
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
    let timers = cfg.quiesce.contains(Quiesce::TIMERS);
    if !watcher && timers {
        return Err(Error::NoWatcher(format!(
            "the timers quiesce is a watcher's wait on a housekeeping CPU: {watcher_name}"
        )));
    }

    let mut tick = None;
    if watcher {
        let r = call(&Request::WaitTick {
            cpu,
            tid,
            timeout_ms: cfg.tick_timeout_ms,
            timers,
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
            if let Some(w) = &t.timers {
                steps.push(Step {
                    name: "timers",
                    detail: w.describe(),
                });
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
    let entries = if native.is_some() {
        "not needed: the kernel quiesces on every return to user space".to_string()
    } else if cfg.mode() == Mode::Persistent && cfg.entry_counter {
        persist::arm()
    } else if cfg.mode() == Mode::Persistent {
        persist::arm_always()
    } else {
        "not needed: not persistent".to_string()
    };
    let snap = with_state(|s| {
        s.active = true;
        s.quiesces = 1;
        s.cpu = Some(cpu);
        s.watcher = watcher.then(|| watcher_name.clone());
        s.registered = registered;
        s.clone()
    });
    registry::publish(&snap);
    export_for_exec(&cfg, true);
    // Last: every system call above may have dirtied the counters.
    if vmstat_last {
        steps.push(stock::quiesce::vmstat(plan)?);
    }
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
        entries,
        took_ms: t0.elapsed().as_millis() as u64,
    };
    keep(&report);
    // Last, the LRU again: the vmstat park's fresh page and this
    // function's own allocations (the report) may have faulted pages into
    // this CPU's LRU batch since its drain, and left there any CPU's
    // lru_add_drain_all() (compaction, mlock, migration) queues work here.
    // Not where the tick runs (settle): a drain that moves pages dirties
    // the counters after they settled, and the shepherd would come back.
    if native.is_none() && cfg.quiesce.contains(Quiesce::LRU) && plan != VmstatPlan::Settle {
        stock::quiesce::lru()?;
    }
    if registered && reg.pending {
        protocol::arm();
    }
    Ok(report)
}

/// Run the quiesce actions again (what the patched kernel does on every
/// return from a system call). One-shot actions are skipped: they run at
/// activation only. On a patched kernel the kernel does it: nothing here.
///
/// Per action on a stock kernel: the LRU batches are drained (the step
/// returned); vmstat needs nothing where activation parked the kernel's
/// work (nohz_full before 6.5) or the kernel skips the CPU (6.5+), and
/// cannot be done in time where the tick runs (a later dirtying syscall
/// brings the shepherd back within a stat interval); timers are waited for
/// at activation only. Returns the actions that ran.
pub fn quiesce() -> Result<Vec<Step>> {
    let cfg = configuration()?.ok_or(Error::NotConfigured)?;
    if !is_active() {
        return Err(Error::Other("not active: activate() first".into()));
    }
    let mut out = Vec::new();
    if native::Proof::check().is_none() {
        let mask = cfg.quiesce.difference(cfg.oneshot);
        if mask.contains(Quiesce::LRU) {
            out.push(stock::quiesce::lru()?);
        }
        // vmstat: nothing to run again. Where activation parked the
        // kernel's work (nohz_full before 6.5) the task's dirt stays
        // harmless while the tick is stopped; 6.5+ skips isolated CPUs;
        // where the tick runs, only the kernel's own work can fold, within
        // a stat interval of the dirtying call (see stock::quiesce).
    }
    persist::seen();
    with_state(|s| s.quiesces += 1);
    Ok(out)
}

/// Persistent mode without a call after every system call: re-quiesce
/// only if the task entered the kernel since the last quiesce. The check
/// is one load of a counter the kernel advances on each of the task's
/// system calls (a perf ring buffer's head, where the task may open one;
/// see [`persist`]); without one, every check re-quiesces. Returns whether
/// it re-quiesced.
pub fn quiesce_if_needed() -> Result<bool> {
    if !persist::armed() {
        // Inherited active (a child of fork, a new thread): arm this
        // thread's own check; this first time, quiesce.
        let persistent = with_state(|s| {
            s.active
                && s.config
                    .as_ref()
                    .is_some_and(|c| c.mode() == Mode::Persistent)
        });
        if !persistent || native::Proof::check().is_some() {
            return Ok(false);
        }
        persist::arm();
    } else if !persist::entered() {
        return Ok(false);
    }
    quiesce()?;
    Ok(true)
}

/// How many times this thread's quiesce actions ran (activation included).
pub fn quiesce_count() -> u32 {
    with_state(|s| s.quiesces)
}

/// Deactivate (PR_ISOL_ACTIVATE_SET with an empty mask).
pub fn deactivate() -> Result<()> {
    // Before anything that may enter the kernel: in strict mode counting
    // syscalls, leaving must not be the task's last break.
    protocol::leave();
    if let Some(p) = native::Proof::check() {
        native::activate(&p, 0)?;
    }
    persist::disarm();
    let (was, snap) = with_state(|s| {
        let was = std::mem::replace(&mut s.active, false);
        s.registered = false;
        (was, s.clone())
    });
    if was && WATCHER.lock().map(|w| w.is_some()).unwrap_or(false) {
        call(&Request::Unregister {
            id: gettid(),
            process: false,
        })?;
    }
    registry::publish(&snap);
    if let Some(c) = &snap.config {
        export_for_exec(c, false);
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

/// The calling thread's status page, from its watcher: call it once
/// isolation is active (it talks to the watcher), then read the page from
/// the isolated loop with plain loads.
pub fn status_page() -> Result<page::StatusPage> {
    let tid = gettid();
    match call(&Request::StatusPage { tid })? {
        Response::StatusPage {
            fd: protocol::Passed(Some(fd)),
            ..
        } => page::StatusPage::map(fd),
        Response::StatusPage { .. } => Err(Error::Other(
            "the watcher answered without the page's descriptor".into(),
        )),
        r => Err(Error::Other(format!("unexpected answer {r:?}"))),
    }
}

/// The calling thread's (or its process's) last break, if any.
pub fn last_break() -> Result<Option<BreakInfo>> {
    let tid = gettid();
    let pid = getpid();
    let tasks = status(Some(pid))?;
    let mine = tasks
        .iter()
        .filter(|t| t.id == tid || (t.process && t.id == pid))
        .filter_map(|t| t.last_break.clone())
        .max_by_key(|b| b.ts_ns);
    Ok(mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(inherit: Inherit, active: bool) -> TaskState {
        TaskState {
            config: Some(Config {
                inherit,
                ..Default::default()
            }),
            active,
            init: true,
            origin: Origin::Configured,
            ..Default::default()
        }
    }

    #[test]
    fn inheritance_follows_the_patch() {
        let none = inherited(&with(Inherit::None, true), Origin::Fork);
        assert!(none.config.is_none() && !none.active);
        let conf = inherited(&with(Inherit::Conf, true), Origin::Fork);
        assert!(conf.config.is_some() && !conf.active);
        assert_eq!(conf.origin, Origin::Fork);
        let act = inherited(&with(Inherit::Active, true), Origin::Thread);
        assert!(act.config.is_some() && act.active);
        let inactive = inherited(&with(Inherit::Active, false), Origin::Thread);
        assert!(inactive.config.is_some() && !inactive.active);
        // The inheritance itself is inherited (grandchildren too).
        assert_eq!(act.config.unwrap().inherit, Inherit::Active);
    }

    /// fork(2) with ISOL_INHERIT_CONF: the child has the configuration,
    /// not the activation; without inheritance it has nothing.
    #[test]
    fn forked_children_inherit_as_the_configuration_says() {
        let fork_and_check = |want_config: bool| {
            // SAFETY: the child reads its TLS state and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let c = configuration().map(|c| c.is_some()).unwrap_or(!want_config);
                let ok = c == want_config && !is_active() && (!c || origin() == Origin::Fork);
                unsafe { libc::_exit(if ok { 0 } else { 7 }) };
            }
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, 0) };
            libc::WEXITSTATUS(st)
        };
        std::thread::spawn(move || {
            configure(Config {
                inherit: Inherit::Conf,
                ..Default::default()
            })
            .unwrap();
            with_state(|s| s.active = true);
            assert_eq!(fork_and_check(true), 0, "INHERIT_CONF child");
            configure(Config::default()).unwrap();
            assert_eq!(fork_and_check(false), 0, "child without inheritance");
        })
        .join()
        .unwrap();
    }

    /// A child inheriting the activation does not use its parent's
    /// persistent-mode counter (not mapped in the child): it arms its own.
    #[test]
    fn a_forked_child_arms_its_own_persistent_check() {
        std::thread::spawn(|| {
            configure(Config {
                inherit: Inherit::Active,
                quiesce: Quiesce::LRU,
                entry_counter: true,
                ..Default::default()
            })
            .unwrap();
            with_state(|s| s.active = true);
            let what = persist::arm();
            // SAFETY: the child checks and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let first = quiesce_if_needed();
                let second = quiesce_if_needed();
                let ok = matches!(first, Ok(true))
                    && (what.starts_with("none") || matches!(second, Ok(false)));
                unsafe { libc::_exit(if ok { 0 } else { 9 }) };
            }
            let mut st = 0;
            unsafe { libc::waitpid(pid, &mut st, 0) };
            assert!(libc::WIFEXITED(st), "the child died: {st:#x}");
            assert_eq!(libc::WEXITSTATUS(st), 0, "{what}");
            persist::disarm();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threads_inherit_at_creation() {
        configure(Config {
            inherit: Inherit::Conf,
            allow_unisolated: true,
            ..Default::default()
        })
        .unwrap();
        let child = std::thread::spawn(|| (configuration().unwrap(), origin()))
            .join()
            .unwrap();
        if thread::INTERPOSED {
            let (c, o) = child;
            assert_eq!(c.unwrap().inherit, Inherit::Conf);
            assert_eq!(o, Origin::Thread);
        }
        // Without inheritance a new thread starts with nothing.
        configure(Config::default()).unwrap();
        let (c, _) = std::thread::spawn(|| (configuration().unwrap(), origin()))
            .join()
            .unwrap();
        assert!(c.is_none());
    }
}
