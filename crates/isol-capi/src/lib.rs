//! libisol: the C face of the task isolation API (crates/isol-task).
//!
//! Every function returns 0 (or a count) on success and a negative errno
//! on failure; `isol_last_error()` then says what went wrong in words
//! (the missing privilege, kernel feature or bad argument). State is per
//! thread, like the kernel patch's per-task prctl state.

#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use isol_task::{Config, Inherit, Quiesce, Strict};
use libc::{c_char, c_int, size_t};
use std::cell::RefCell;
use std::ffi::{CStr, CString};

/// Quiesce the per-CPU VM statistics (the kernel patch's ISOL_F_QUIESCE_VMSTATS).
pub const ISOL_QUIESCE_VMSTAT: u64 = 1 << 0;
/// Drain this CPU's LRU and mlock page batches.
pub const ISOL_QUIESCE_LRU: u64 = 1 << 1;
/// Activation waits until no timer is pending on the CPU (a watcher's
/// wait on a housekeeping CPU) and names the ones it could not wait out.
pub const ISOL_QUIESCE_TIMERS: u64 = 1 << 2;

/// Children inherit the configuration (the kernel patch's ISOL_INHERIT_CONF).
pub const ISOL_INHERIT_CONF: u32 = 1 << 0;
/// Children inherit the activation too (requires ISOL_INHERIT_CONF).
pub const ISOL_INHERIT_ACTIVE: u32 = 1 << 1;

/// Strict mode: the first interruption sends `strict_signal`.
pub const ISOL_CFG_STRICT: u32 = 1 << 0;
/// In strict mode the task's own syscalls and page faults break too.
pub const ISOL_CFG_STRICT_SYSCALLS: u32 = 1 << 1;
/// In strict mode only the task's own syscalls and page faults break it
/// (with ISOL_CFG_STRICT_SYSCALLS): finds where a hot loop enters the kernel.
pub const ISOL_CFG_STRICT_OWN_ONLY: u32 = 1 << 4;
/// Do not mlockall/prefault at activation.
pub const ISOL_CFG_NO_MLOCK: u32 = 1 << 2;
/// Persistent mode: open a per-thread system-call counter so that
/// isol_quiesce_if_needed() costs one load when the thread made no system
/// call (needs CAP_PERFMON). Its tracepoint is switched by patching kernel
/// text: an IPI to every CPU when the first such counter opens and the
/// last one closes. Without it every check re-quiesces.
pub const ISOL_CFG_ENTRY_COUNTER: u32 = 1 << 5;
/// Accept a CPU the kernel does not isolate (tests on ordinary machines).
pub const ISOL_CFG_ALLOW_UNISOLATED: u32 = 1 << 3;

/// The task isolation patch's prctl interface on a patched kernel.
pub const ISOL_BACKEND_NATIVE: u32 = 1;
/// isol's user-space implementation on a stock kernel.
pub const ISOL_BACKEND_STOCK: u32 = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct isol_config {
    /// ISOL_QUIESCE_* to quiesce at activation (and at isol_quiesce()).
    pub quiesce_mask: u64,
    /// Subset of quiesce_mask done at activation only (one-shot).
    pub oneshot_mask: u64,
    /// ISOL_INHERIT_*.
    pub inherit_mask: u32,
    /// ISOL_CFG_*.
    pub flags: u32,
    /// Signal for strict mode (0 means SIGKILL).
    pub strict_signal: c_int,
    /// How long activation waits for the tick to stop (0 means 2000 ms).
    pub tick_timeout_ms: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct isol_features {
    /// ISOL_BACKEND_*.
    pub backend: u32,
    /// 1 if isold is reachable (strict mode and break counting for
    /// unprivileged programs).
    pub isold: u32,
    /// ISOL_QUIESCE_* this backend supports.
    pub quiesce_mask: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct isol_break {
    pub tid: u32,
    pub cpu: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Breaks so far of this task.
    pub count: u32,
    /// Signal sent, or 0 when the break was only counted.
    pub signal: u32,
    /// e.g. "ipi: flush_tlb_func", NUL-terminated.
    pub cause: [c_char; 64],
}

/// Layout version of `struct isol_break_record` (fields are only ever
/// appended; `size` says how much of them the caller's header has).
pub const ISOL_BREAK_RECORD_VERSION: u32 = 1;
/// Handlers kept of a break's chain.
pub const ISOL_BREAK_CHAIN: usize = 8;
/// Frames kept of the sender's kernel stack.
pub const ISOL_BREAK_FRAMES: usize = 8;
/// Length of each name (NUL included; longer names are cut).
pub const ISOL_NAME_LEN: usize = 64;

/// The whole interruption that broke isolation, as `isol watch` tells
/// it: every handler, and for an IPI who sent it and from where.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct isol_break_record {
    /// Set by the caller to `sizeof(struct isol_break_record)`: a program
    /// built against an older header gets the fields its header has.
    pub size: u32,
    /// Filled: ISOL_BREAK_RECORD_VERSION of the library.
    pub version: u32,
    pub tid: u32,
    pub cpu: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Breaks so far of this task.
    pub count: u32,
    /// Signal sent, or 0 when the break was only counted.
    pub signal: u32,
    /// The primary cause, e.g. "ipi: flush_tlb_func".
    pub cause: [c_char; ISOL_NAME_LEN],
    /// Handlers in `chain`, outermost first.
    pub nchain: u32,
    /// 1 if there were more than ISOL_BREAK_CHAIN.
    pub truncated: u32,
    /// e.g. "ipi: call_function_single", then "ipi: flush_tlb_func".
    pub chain: [[c_char; ISOL_NAME_LEN]; ISOL_BREAK_CHAIN],
    /// 1 if the sender fields below are filled (an IPI whose sender the
    /// capture saw).
    pub has_sender: u32,
    pub sender_cpu: u32,
    /// The sending task (with context "task"), else whatever ran there.
    pub sender_pid: u32,
    /// Frames in `sender_stack`.
    pub sender_nframes: u32,
    pub sender_comm: [c_char; 16],
    /// "task", "softirq", "hardirq" or "nmi".
    pub sender_context: [c_char; 16],
    /// What the IPI ran, e.g. "flush_tlb_func".
    pub sender_function: [c_char; ISOL_NAME_LEN],
    /// Where the sender queued it.
    pub sender_callsite: [c_char; ISOL_NAME_LEN],
    /// The top of the sender's kernel stack, innermost first.
    pub sender_stack: [[c_char; ISOL_NAME_LEN]; ISOL_BREAK_FRAMES],
}

/// ISOL_STATE_*: a thread's state on its status page.
pub const ISOL_STATE_NONE: u32 = 0;
/// Registered; its own kernel entries do not count until armed.
pub const ISOL_STATE_PENDING: u32 = 1;
pub const ISOL_STATE_ACTIVE: u32 = 2;
/// A strict break: signalled, the registration ended.
pub const ISOL_STATE_BROKEN: u32 = 3;
/// Left isolation.
pub const ISOL_STATE_ENDED: u32 = 4;
/// Length of each `chain` entry of struct isol_status.
pub const ISOL_WORDS_LEN: usize = 40;

/// The calling thread's status page, as isol_status_read() copies it: no
/// system call, no allocation, no signal.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct isol_status {
    /// Set by the caller to `sizeof(struct isol_status)`.
    pub size: u32,
    /// ISOL_STATE_*.
    pub state: u32,
    pub tid: u32,
    /// Breaks counted so far.
    pub breaks: u32,
    /// CLOCK_MONOTONIC ns of the thread's last kernel entry seen, 0 if none.
    pub last_entry_ns: u64,
    /// CLOCK_MONOTONIC ns of the last break, 0 if none.
    pub break_ns: u64,
    pub break_cpu: u32,
    /// Entries in `chain`.
    pub nchain: u32,
    /// The last break's handlers as "class: kind" (e.g. "ipi:
    /// csd_function"); isol_last_break_record() names the functions.
    pub chain: [[c_char; ISOL_WORDS_LEN]; ISOL_BREAK_CHAIN],
    /// 1 if the sender fields are filled (an IPI whose sender was seen).
    pub has_sender: u32,
    pub sender_cpu: u32,
    pub sender_pid: u32,
    /// IPIs queued before the activation and handled after it: not
    /// breaks (counted here, never signalled).
    pub pre_activation: u32,
    pub sender_comm: [c_char; 16],
    /// CLOCK_MONOTONIC ns when isolation began (the arming of the
    /// activation); an IPI queued before it is not a break.
    pub active_ns: u64,
    /// ISOL_BREAK_* flags of the last break.
    pub break_flags: u32,
    pub pad2: u32,
    /// CLOCK_MONOTONIC ns when the sender queued the IPI (has_sender).
    pub sender_sent_ns: u64,
}

/// isol_status.break_flags: the last break was an IPI queued after the
/// activation, and the sender fields name that IPI's sender.
/// (A literal, so that cbindgen writes it; a test ties it to capture.h.)
pub const ISOL_BREAK_IPI: u32 = 1 << 7;

thread_local! {
    static PAGE: RefCell<Option<isol_task::page::StatusPage>> = const { RefCell::new(None) };
}

/// Map the calling thread's status page (it talks to the watcher: call it
/// once isolation is active, before the loop that reads the page). 0, or
/// <0 on error.
#[no_mangle]
pub extern "C" fn isol_status_page() -> c_int {
    match isol_task::status_page() {
        Ok(p) => {
            PAGE.with(|g| *g.borrow_mut() = Some(p));
            ok()
        }
        Err(e) => fail(e),
    }
}

/// Copy the calling thread's status page into `*s` with plain loads: no
/// system call. 0, -ENOENT if isol_status_page() did not map it, -EINVAL
/// for a NULL `s` or a `size` too small.
#[no_mangle]
pub unsafe extern "C" fn isol_status_read(s: *mut isol_status) -> c_int {
    if s.is_null() || ((*s).size as usize) < std::mem::offset_of!(isol_status, chain) {
        return -libc::EINVAL;
    }
    PAGE.with(|g| {
        let g = g.borrow();
        let Some(page) = g.as_ref() else {
            return -libc::ENOENT;
        };
        let p = page.read();
        let mut out = isol_status {
            size: (*s).size,
            state: p.state,
            tid: p.tid,
            breaks: p.breaks,
            last_entry_ns: p.last_entry_ns,
            break_ns: p.break_ns,
            break_cpu: p.break_cpu,
            nchain: p.nchain.min(ISOL_BREAK_CHAIN as u32),
            chain: [[0; ISOL_WORDS_LEN]; ISOL_BREAK_CHAIN],
            has_sender: (p.sender.valid != 0) as u32,
            sender_cpu: p.sender.cpu,
            sender_pid: p.sender.pid,
            pre_activation: p.pre_activation,
            sender_comm: [0; 16],
            active_ns: p.active_ns,
            break_flags: p.flags & ISOL_BREAK_IPI,
            pad2: 0,
            sender_sent_ns: p.sender.sent_ns,
        };
        for (d, c) in out.chain.iter_mut().zip(&p.chain[..out.nchain as usize]) {
            let (class, kind) = isol_task::page::cause_words(c);
            // "class: kind" into the array, by bytes (no allocation).
            let words = class.bytes().chain(*b": ").chain(kind.bytes());
            for (d, b) in d.iter_mut().take(ISOL_WORDS_LEN - 1).zip(words) {
                *d = b as c_char;
            }
        }
        for (d, b) in out
            .sender_comm
            .iter_mut()
            .zip(p.sender.comm.iter().take(15))
        {
            *d = *b as c_char;
        }
        let n = ((*s).size as usize).min(std::mem::size_of::<isol_status>());
        std::ptr::copy_nonoverlapping(&out as *const isol_status as *const u8, s as *mut u8, n);
        0
    })
}

/// Give the calling thread a log ring of `bytes` (0: 1 MiB) for
/// isol_log(), and start the drain thread (stderr, or the file
/// ISOL_LOG_FILE names). Call before the isolated loop. 0, or <0.
#[no_mangle]
pub extern "C" fn isol_log_init(bytes: size_t) -> c_int {
    let bytes = if bytes == 0 { 1 << 20 } else { bytes };
    match isol_task::log::init(bytes) {
        Ok(()) => ok(),
        Err(e) => fail(e),
    }
}

/// Log `msg` from an isolated loop: no system call, no allocation, no
/// lock. 0; -ENOBUFS if the ring was full (the drop is counted and
/// reported by the drain thread); -ENOENT without isol_log_init().
#[no_mangle]
pub unsafe extern "C" fn isol_log(msg: *const c_char) -> c_int {
    if msg.is_null() {
        return -libc::EINVAL;
    }
    let m = CStr::from_ptr(msg).to_bytes();
    // Lossy for non-UTF-8 bytes, without allocating: the valid prefix.
    let text = match std::str::from_utf8(m) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&m[..e.valid_up_to()]).unwrap_or(""),
    };
    let has = isol_task::log::has_ring();
    if !has {
        return -libc::ENOENT;
    }
    if isol_task::log!("{text}") {
        0
    } else {
        -libc::ENOBUFS
    }
}

/// Write out everything logged so far (it enters the kernel: call it
/// after the isolated part, e.g. before exiting).
#[no_mangle]
pub extern "C" fn isol_log_flush() {
    isol_task::log::flush();
}

/// A NUL-terminated copy of `s` cut to the array.
fn c_name<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (d, b) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *d = b as c_char;
    }
    out
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_REPORT: RefCell<String> = const { RefCell::new(String::new()) };
}

fn fail(e: isol_task::Error) -> c_int {
    let msg = CString::new(e.to_string().replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
    e.code()
}

fn ok() -> c_int {
    0
}

/// Loaded by `chisol -a --preload libisol.so` into an unmodified program:
/// lock and prefault its memory and keep THP away, as activation would
/// (chisol did the rest before exec). Nothing happens otherwise.
extern "C" fn preload_lock() {
    if std::env::var_os(isol_task::config::ENV_LOCK).is_none() {
        return;
    }
    let r = isol_task::stock::memory::disable_thp().and_then(|_| isol_task::stock::memory::lock());
    if let Err(e) = r {
        eprintln!("libisol (preloaded by chisol): {e}");
    }
}

#[used]
#[link_section = ".init_array"]
static PRELOAD_LOCK: extern "C" fn() = preload_lock;

/// What went wrong in the last failed call on this thread.
#[no_mangle]
pub extern "C" fn isol_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

#[no_mangle]
pub unsafe extern "C" fn isol_features(out: *mut isol_features) -> c_int {
    if out.is_null() {
        return fail(isol_task::Error::Config("isol_features: NULL".into()));
    }
    match isol_task::features() {
        Err(e) => fail(e),
        Ok(f) => {
            let q = f
                .quiesce
                .iter()
                .filter_map(|n| Quiesce::parse(n).ok())
                .fold(Quiesce::empty(), |a, b| a | b);
            *out = isol_features {
                backend: match f.backend {
                    isol_task::Backend::Native => ISOL_BACKEND_NATIVE,
                    isol_task::Backend::Stock => ISOL_BACKEND_STOCK,
                },
                isold: f.isold as u32,
                quiesce_mask: q.bits(),
            };
            ok()
        }
    }
}

/// Fill `cfg` with the defaults: vmstat and LRU quiesced (on a patched
/// kernel: what it supports, vmstat), memory locked, no inheritance, not
/// strict.
#[no_mangle]
pub unsafe extern "C" fn isol_config_default(cfg: *mut isol_config) {
    if !cfg.is_null() {
        *cfg = to_c(&isol_task::default_config());
    }
}

fn to_c(c: &Config) -> isol_config {
    let mut flags = 0;
    if let Some(s) = c.strict {
        flags |= ISOL_CFG_STRICT;
        if s.syscalls {
            flags |= ISOL_CFG_STRICT_SYSCALLS;
        }
        if s.own_only {
            flags |= ISOL_CFG_STRICT_OWN_ONLY;
        }
    }
    if !c.lock_memory {
        flags |= ISOL_CFG_NO_MLOCK;
    }
    if c.allow_unisolated {
        flags |= ISOL_CFG_ALLOW_UNISOLATED;
    }
    if c.entry_counter {
        flags |= ISOL_CFG_ENTRY_COUNTER;
    }
    isol_config {
        quiesce_mask: c.quiesce.bits(),
        oneshot_mask: c.oneshot.bits(),
        inherit_mask: c.inherit.abi_mask() as u32,
        flags,
        strict_signal: c.strict.map(|s| s.signal).unwrap_or(0),
        tick_timeout_ms: c.tick_timeout_ms as u32,
    }
}

fn from_c(c: &isol_config) -> Result<Config, isol_task::Error> {
    let bad = |m: String| isol_task::Error::Config(m);
    let quiesce = Quiesce::from_bits(c.quiesce_mask)
        .ok_or_else(|| bad(format!("unknown quiesce bits {:#x}", c.quiesce_mask)))?;
    let oneshot = Quiesce::from_bits(c.oneshot_mask)
        .ok_or_else(|| bad(format!("unknown one-shot bits {:#x}", c.oneshot_mask)))?;
    let inherit = match c.inherit_mask {
        0 => Inherit::None,
        ISOL_INHERIT_CONF => Inherit::Conf,
        m if m == ISOL_INHERIT_CONF | ISOL_INHERIT_ACTIVE => Inherit::Active,
        ISOL_INHERIT_ACTIVE => {
            return Err(bad("ISOL_INHERIT_ACTIVE requires ISOL_INHERIT_CONF".into()))
        }
        m => return Err(bad(format!("unknown inherit bits {m:#x}"))),
    };
    let known = ISOL_CFG_STRICT
        | ISOL_CFG_STRICT_SYSCALLS
        | ISOL_CFG_STRICT_OWN_ONLY
        | ISOL_CFG_NO_MLOCK
        | ISOL_CFG_ALLOW_UNISOLATED
        | ISOL_CFG_ENTRY_COUNTER;
    if c.flags & !known != 0 {
        return Err(bad(format!("unknown flags {:#x}", c.flags & !known)));
    }
    let cfg = Config {
        quiesce,
        oneshot,
        inherit,
        strict: (c.flags & ISOL_CFG_STRICT != 0).then_some(Strict {
            signal: if c.strict_signal == 0 {
                libc::SIGKILL
            } else {
                c.strict_signal
            },
            syscalls: c.flags & ISOL_CFG_STRICT_SYSCALLS != 0,
            own_only: c.flags & ISOL_CFG_STRICT_OWN_ONLY != 0,
        }),
        lock_memory: c.flags & ISOL_CFG_NO_MLOCK == 0,
        tick_timeout_ms: if c.tick_timeout_ms == 0 {
            2000
        } else {
            c.tick_timeout_ms as u64
        },
        allow_unisolated: c.flags & ISOL_CFG_ALLOW_UNISOLATED != 0,
        entry_counter: c.flags & ISOL_CFG_ENTRY_COUNTER != 0,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Set this thread's configuration (PR_ISOL_CFG_SET).
#[no_mangle]
pub unsafe extern "C" fn isol_configure(cfg: *const isol_config) -> c_int {
    if cfg.is_null() {
        return fail(isol_task::Error::Config("isol_configure: NULL".into()));
    }
    match from_c(&*cfg).and_then(isol_task::configure) {
        Ok(()) => ok(),
        Err(e) => fail(e),
    }
}

/// This thread's configuration, set by isol_configure() or inherited: by
/// a child of fork() and a thread of pthread_create() as the inheritance
/// says, across exec always (chisol -q ... PROG). On a patched kernel the
/// kernel's (PR_ISOL_CFG_GET). Returns 1 if there is one, 0 if not.
#[no_mangle]
pub unsafe extern "C" fn isol_get_config(cfg: *mut isol_config) -> c_int {
    match isol_task::configuration() {
        Err(e) => fail(e),
        Ok(None) => 0,
        Ok(Some(c)) => {
            if !cfg.is_null() {
                *cfg = to_c(&c);
            }
            1
        }
    }
}

/// Activate isolation for the calling thread: check its affinity (one
/// isolated CPU), lock memory, quiesce, wait for the tick to stop, and
/// register with the watcher (PR_ISOL_ACTIVATE_SET on a patched kernel).
#[no_mangle]
pub extern "C" fn isol_activate() -> c_int {
    let keep = |r: &isol_task::ActivationReport| {
        let j = serde_json::to_string(r).unwrap_or_default();
        LAST_REPORT.with(|l| *l.borrow_mut() = j);
    };
    match isol_task::activate_then(keep) {
        Ok(_) => ok(),
        Err(e) => fail(e),
    }
}

#[no_mangle]
pub extern "C" fn isol_deactivate() -> c_int {
    match isol_task::deactivate() {
        Ok(()) => ok(),
        Err(e) => fail(e),
    }
}

/// Quiesce again (what a patched kernel does on each return from a
/// syscall); one-shot actions are skipped. Returns how many actions ran.
#[no_mangle]
pub extern "C" fn isol_quiesce() -> c_int {
    match isol_task::quiesce() {
        Ok(v) => v.len() as c_int,
        Err(e) => fail(e),
    }
}

/// Persistent mode's check: re-quiesce only if this thread entered the
/// kernel since its last quiesce (one load of a counter the kernel
/// advances on its system calls, where the thread may open one; the
/// activation report's "entries" says which). Returns 1 if it re-quiesced,
/// 0 if nothing was needed, <0 on error.
#[no_mangle]
pub extern "C" fn isol_quiesce_if_needed() -> c_int {
    match isol_task::quiesce_if_needed() {
        Ok(r) => r as c_int,
        Err(e) => fail(e),
    }
}

/// 1 if this thread's isolation is active (activated here, inherited
/// across fork with ISOL_INHERIT_ACTIVE, or by chisol -a across exec).
#[no_mangle]
pub extern "C" fn isol_is_active() -> c_int {
    isol_task::is_active() as c_int
}

/// The last break of this thread or process: 1 and `*b` filled, 0 if
/// none, <0 on error.
#[no_mangle]
pub unsafe extern "C" fn isol_last_break(b: *mut isol_break) -> c_int {
    match isol_task::last_break() {
        Err(e) => fail(e),
        Ok(None) => 0,
        Ok(Some(x)) => {
            if !b.is_null() {
                let cause = c_name(&x.cause);
                *b = isol_break {
                    tid: x.tid,
                    cpu: x.cpu,
                    ts_ns: x.ts_ns,
                    count: x.count,
                    signal: x.signal,
                    cause,
                };
            }
            1
        }
    }
}

/// The last break of this thread or process with its whole cause: 1 and
/// `*r` filled (as much of it as `r->size` covers), 0 if none, <0 on
/// error (-EINVAL: `r` is NULL or `r->size` too small for the fields up
/// to `cause`).
#[no_mangle]
pub unsafe extern "C" fn isol_last_break_record(r: *mut isol_break_record) -> c_int {
    let min = std::mem::offset_of!(isol_break_record, nchain);
    if r.is_null() || ((*r).size as usize) < min {
        return fail(isol_task::Error::Invalid(format!(
            "isol_last_break_record: set size to sizeof(struct isol_break_record) (at least {min})"
        )));
    }
    let x = match isol_task::last_break() {
        Err(e) => return fail(e),
        Ok(None) => return 0,
        Ok(Some(x)) => x,
    };
    let mut full = isol_break_record {
        size: (*r).size,
        version: ISOL_BREAK_RECORD_VERSION,
        tid: x.tid,
        cpu: x.cpu,
        ts_ns: x.ts_ns,
        count: x.count,
        signal: x.signal,
        cause: c_name(&x.cause),
        nchain: x.chain.len().min(ISOL_BREAK_CHAIN) as u32,
        truncated: (x.truncated || x.chain.len() > ISOL_BREAK_CHAIN) as u32,
        chain: [[0; ISOL_NAME_LEN]; ISOL_BREAK_CHAIN],
        has_sender: 0,
        sender_cpu: 0,
        sender_pid: 0,
        sender_nframes: 0,
        sender_comm: [0; 16],
        sender_context: [0; 16],
        sender_function: [0; ISOL_NAME_LEN],
        sender_callsite: [0; ISOL_NAME_LEN],
        sender_stack: [[0; ISOL_NAME_LEN]; ISOL_BREAK_FRAMES],
    };
    for (d, c) in full.chain.iter_mut().zip(&x.chain) {
        *d = c_name(c);
    }
    if let Some(s) = &x.sender {
        full.has_sender = 1;
        full.sender_cpu = s.cpu;
        full.sender_pid = s.pid;
        full.sender_comm = c_name(&s.comm);
        full.sender_context = c_name(&s.context);
        full.sender_function = c_name(&s.function);
        full.sender_callsite = c_name(&s.callsite);
        full.sender_nframes = s.stack.len().min(ISOL_BREAK_FRAMES) as u32;
        for (d, f) in full.sender_stack.iter_mut().zip(&s.stack) {
            *d = c_name(f);
        }
    }
    // Only the prefix the caller's struct has.
    let n = ((*r).size as usize).min(std::mem::size_of::<isol_break_record>());
    std::ptr::copy_nonoverlapping(
        &full as *const isol_break_record as *const u8,
        r as *mut u8,
        n,
    );
    1
}

/// The last activation report of this thread as JSON (steps, tick,
/// watcher), copied into `buf`. Returns its length (truncated to len-1).
#[no_mangle]
pub unsafe extern "C" fn isol_report_json(buf: *mut c_char, len: size_t) -> c_int {
    LAST_REPORT.with(|l| {
        let s = l.borrow();
        if !buf.is_null() && len > 0 {
            let n = s.len().min(len - 1);
            std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, buf, n);
            *buf.add(n) = 0;
        }
        s.len() as c_int
    })
}

#[cfg(test)]
mod abi {
    #[test]
    fn break_flags_are_the_captures() {
        assert_eq!(super::ISOL_BREAK_IPI, isol_abi::raw::REC_IPI_BREAK);
    }
}

#[cfg(test)]
mod fuzz {
    //! The C API's inputs are whatever a C program puts in them. Fuzzed on
    //! stable Rust (proptest; PROPTEST_CASES raises the count).
    use super::*;
    use proptest::prelude::*;

    fn masks() -> impl Strategy<Value = u64> {
        prop_oneof![any::<u64>(), 0u64..16, Just(Quiesce::all().bits())]
    }

    proptest! {
        /// Any isol_config is refused with a reason or accepted, never a
        /// panic across the FFI; what is accepted survives the way back
        /// (isol_get_config) unchanged in meaning.
        #[test]
        fn any_isol_config_is_refused_or_round_trips(
            quiesce_mask in masks(),
            oneshot_mask in masks(),
            inherit_mask in prop_oneof![any::<u32>(), 0u32..4],
            flags in prop_oneof![any::<u32>(), 0u32..64],
            strict_signal in prop_oneof![any::<i32>(), -2i32..70],
            tick_timeout_ms in any::<u32>(),
        ) {
            let c = isol_config {
                quiesce_mask, oneshot_mask, inherit_mask, flags, strict_signal, tick_timeout_ms,
            };
            match from_c(&c) {
                Err(e) => prop_assert!(!e.to_string().is_empty()),
                Ok(cfg) => {
                    prop_assert!(cfg.validate().is_ok());
                    let back = from_c(&to_c(&cfg)).unwrap();
                    prop_assert_eq!(back, cfg);
                }
            }
        }

        /// isol_report_json into any buffer length: NUL-terminated within
        /// the buffer, never past it.
        #[test]
        fn report_json_never_writes_past_the_buffer(len in 0usize..64, report in "\\PC{0,80}") {
            LAST_REPORT.with(|l| *l.borrow_mut() = report.clone());
            let mut buf = vec![0x55 as c_char; 80];
            // SAFETY: buf holds at least len bytes.
            let n = unsafe { isol_report_json(buf.as_mut_ptr(), len) };
            prop_assert_eq!(n as usize, report.len());
            prop_assert!(buf[len..].iter().all(|&b| b == 0x55 as c_char));
            if len > 0 {
                prop_assert!(buf[..len].contains(&0));
            }
        }
    }
}
