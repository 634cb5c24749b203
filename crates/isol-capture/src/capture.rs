//! Loading, attaching and reading the capture programs.
//!
//! The reader never waits on the ring buffer (records are submitted with
//! BPF_RB_NO_WAKEUP so the watched CPU takes no wakeup IPI); it drains it
//! on a period from a housekeeping CPU.

use crate::arch;
use crate::cause::Kind;
use crate::kvm::VmStatus;
use crate::page::StatusPage;
use crate::record::{
    self, RawAggKey, RawRecord, RawStrictBreak, RawStrictCfg, RawTickState, Record, Resolver,
};
use crate::skel::{CaptureSkel, CaptureSkelBuilder, OpenCaptureSkel};
use crate::strict::{StrictBreak, StrictConfig, TickState};
use crate::{Aggregate, Drops};
use anyhow::{bail, Context, Result};
use isol_abi::raw::kvm_layout as RawKvmLayout;
use isol_cpulist::CpuSet;
use isol_system::features::Features;
use isol_system::tracefs::{self, Tracefs};
use isol_system::Root;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBuffer, RingBufferBuilder};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::rc::Rc;

/// Where a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// A tracepoint, `system:event`.
    Tp(&'static str),
    /// A kernel function (fentry): needs it traceable on this kernel.
    Func(&'static str),
}

impl Hook {
    fn name(self) -> String {
        match self {
            Hook::Tp(t) => t.to_string(),
            Hook::Func(f) => format!("fentry:{f}"),
        }
    }
}

/// When a program is wanted, besides its hook existing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Always,
    /// raw_syscalls:sys_enter costs every syscall on every CPU.
    Syscalls,
    /// csd_function_entry: only where the queue walk cannot run.
    NoWalk,
    /// A sender hook for kernels without csd_queue_cpu.
    NoCsdQueueTp,
    /// A sender hook for kernels without ipi_send_cpu.
    NoIpiSendTp,
    /// user_exit/user_enter read the task's registers with
    /// bpf_task_pt_regs() (5.15).
    TaskPtRegs,
}

/// Each program, its hook, and when it is loaded. A program whose hook
/// this kernel lacks is left out (listed as skipped), never a load failure.
const PROGRAMS: &[(&str, Hook, Want)] = &[
    ("irq_entry", Hook::Tp("irq:irq_handler_entry"), Want::Always),
    ("irq_exit", Hook::Tp("irq:irq_handler_exit"), Want::Always),
    ("softirq_entry", Hook::Tp("irq:softirq_entry"), Want::Always),
    ("softirq_exit", Hook::Tp("irq:softirq_exit"), Want::Always),
    (
        "local_timer_entry",
        Hook::Tp(arch::LOCAL_TIMER_ENTRY),
        Want::Always,
    ),
    (
        "local_timer_exit",
        Hook::Tp(arch::LOCAL_TIMER_EXIT),
        Want::Always,
    ),
    (
        "call_function_entry",
        Hook::Tp(arch::CALL_FUNCTION_ENTRY),
        Want::Always,
    ),
    (
        "call_function_exit",
        Hook::Tp(arch::CALL_FUNCTION_EXIT),
        Want::Always,
    ),
    (
        "call_function_single_entry",
        Hook::Tp(arch::CALL_FUNCTION_SINGLE_ENTRY),
        Want::Always,
    ),
    (
        "call_function_single_exit",
        Hook::Tp(arch::CALL_FUNCTION_SINGLE_EXIT),
        Want::Always,
    ),
    (
        "reschedule_entry",
        Hook::Tp(arch::RESCHEDULE_ENTRY),
        Want::Always,
    ),
    (
        "reschedule_exit",
        Hook::Tp(arch::RESCHEDULE_EXIT),
        Want::Always,
    ),
    (
        "irq_work_entry",
        Hook::Tp(arch::IRQ_WORK_ENTRY),
        Want::Always,
    ),
    ("irq_work_exit", Hook::Tp(arch::IRQ_WORK_EXIT), Want::Always),
    ("csd_queue_cpu", Hook::Tp(CSD_QUEUE_TP), Want::Always),
    ("ipi_send_cpu", Hook::Tp(IPI_SEND_TP), Want::Always),
    (
        "csd_function_entry",
        Hook::Tp("csd:csd_function_entry"),
        Want::NoWalk,
    ),
    (
        "smp_single_queue",
        Hook::Func("__smp_call_single_queue"),
        Want::NoCsdQueueTp,
    ),
    (
        "smp_exec_single",
        Hook::Func("generic_exec_single"),
        Want::NoCsdQueueTp,
    ),
    (
        "smp_many_cond",
        Hook::Func("smp_call_function_many_cond"),
        Want::NoCsdQueueTp,
    ),
    (
        "smp_send_reschedule",
        Hook::Func(arch::SEND_RESCHEDULE_FN),
        Want::NoIpiSendTp,
    ),
    (
        "timer_expire_entry",
        Hook::Tp("timer:timer_expire_entry"),
        Want::Always,
    ),
    (
        "hrtimer_expire_entry",
        Hook::Tp("timer:hrtimer_expire_entry"),
        Want::Always,
    ),
    (
        "workqueue_execute_start",
        Hook::Tp("workqueue:workqueue_execute_start"),
        Want::Always,
    ),
    ("tlb_flush", Hook::Tp(arch::TLB_FLUSH), Want::Always),
    (
        "page_fault_user",
        Hook::Tp(arch::PAGE_FAULT_USER),
        Want::Always,
    ),
    ("nmi_handler", Hook::Tp("nmi:nmi_handler"), Want::Always),
    ("sched_switch", Hook::Tp("sched:sched_switch"), Want::Always),
    ("user_exit", Hook::Tp(USER_EXIT_TP), Want::TaskPtRegs),
    (
        "user_enter",
        Hook::Tp("context_tracking:user_enter"),
        Want::TaskPtRegs,
    ),
    (
        "sys_enter",
        Hook::Tp("raw_syscalls:sys_enter"),
        Want::Syscalls,
    ),
    (
        "process_fork",
        Hook::Tp("sched:sched_process_fork"),
        Want::Always,
    ),
    (
        "process_exit",
        Hook::Tp("sched:sched_process_exit"),
        Want::Always,
    ),
    ("tick_stop", Hook::Tp(TICK_STOP_TP), Want::Always),
];

/// Without these there is no capture to speak of: a kernel that hides
/// them (lockdown, a stripped config) is refused, not watched blindly.
const ESSENTIAL: &[&str] = &[
    "irq:irq_handler_entry",
    arch::LOCAL_TIMER_ENTRY,
    arch::CALL_FUNCTION_SINGLE_ENTRY,
    "sched:sched_switch",
];

/// Why tracepoints may be hidden: kernel lockdown restricts tracefs.
fn lockdown_note(root: &Root) -> String {
    let state = std::fs::read_to_string(root.sys("kernel/security/lockdown")).unwrap_or_default();
    match state.split_whitespace().find(|w| w.starts_with('[')) {
        Some(m) if m != "[none]" => format!(
            ": the kernel is locked down ({}), which restricts tracefs and BPF's reading of kernel memory; isol cannot capture under lockdown (boot with lockdown=none, or without Secure Boot enforcing it)",
            m.trim_matches(['[', ']'])
        ),
        _ => ": check that tracefs is readable and the kernel has CONFIG_TRACEPOINTS".into(),
    }
}

const CSD_QUEUE_TP: &str = "csd:csd_queue_cpu";
const IPI_SEND_TP: &str = "ipi:ipi_send_cpu";
const USER_EXIT_TP: &str = "context_tracking:user_exit";
const TICK_STOP_TP: &str = "timer:tick_stop";

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Watched CPUs. Ignored when `pid` is set.
    pub cpus: CpuSet,
    /// Follow one process wherever it runs.
    pub pid: Option<u32>,
    /// Report the watched tasks' own syscalls, and attach
    /// raw_syscalls:sys_enter (costs every syscall on every CPU).
    pub syscalls: bool,
    /// Attach sys_enter for strict mode on CPUs without context tracking.
    pub strict_syscalls: bool,
    /// Ring buffer size in bytes (power of two, at least a page); 0 for
    /// the default 8 MiB. Bigger survives longer bursts between drains.
    pub ring_bytes: u32,
    /// Take every IPI sender's kernel stack. Otherwise (the default) the
    /// first 16 per callsite, function and task every 100 ms and one in
    /// 64 of the rest are taken, the others marked and counted as
    /// sampled (`Drops::stack_sampled`):
    /// a stack costs the sending CPU more than the rest of naming an IPI
    /// (capture.bpf.c, want_stack). Strict registrations take them all.
    pub all_stacks: bool,
}

/// How this kernel gives each fact isol reports: chosen at load time from
/// what the kernel has, and said (by `isol doctor`, in every summary).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sources {
    /// Interruption boundaries: exact user/kernel transitions (context
    /// tracking, nohz_full CPUs) or handler entry/exit.
    pub boundaries: &'static str,
    /// The function an IPI ran on the watched CPU; None: not named.
    pub ipi_function: Option<&'static str>,
    /// Who sent an IPI (CPU, task, stack); None: not known.
    pub ipi_sender: Option<&'static str>,
    /// Whether the sender ran in a task or an interrupt.
    pub sender_context: &'static str,
    /// Why the tick does not stop; None: not known.
    pub tick_stop: Option<&'static str>,
    /// The kernel has context tracking's tracepoints (nohz_full CPUs).
    #[serde(skip)]
    context_tracking: bool,
    /// bpf_task_pt_regs() is there (5.15).
    #[serde(skip)]
    task_pt_regs: bool,
    /// Per-CPU variables readable through kallsyms (CONFIG_KALLSYMS_ALL).
    #[serde(skip)]
    kallsyms_all: bool,
    /// How the task's own syscalls are seen, if they are.
    #[serde(skip)]
    syscalls: Option<&'static str>,
}

/// One thing isol can tell on this kernel, and how (or why not): what
/// `isol doctor` prints, and README's table of kernels.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capability {
    /// Stable id: exact_boundaries, ipi_function, ipi_sender,
    /// sender_context, tick_stop_reason, strict_mode, strict_syscalls.
    pub name: &'static str,
    pub available: bool,
    /// The mechanism, or why it is missing.
    pub how: String,
}

impl Sources {
    pub fn capabilities(&self) -> Vec<Capability> {
        let cap = |name, got: Option<&str>, why_not: &str| Capability {
            name,
            available: got.is_some(),
            how: got.map_or_else(|| why_not.to_string(), str::to_string),
        };
        let exact = if !self.context_tracking {
            "no context tracking on this kernel (built without NO_HZ_FULL, or no nohz_full CPUs): interruptions are bounded by their handlers"
        } else if !self.task_pt_regs {
            "context tracking is there, but bpf_task_pt_regs() (5.15) is not: interruptions are bounded by their handlers"
        } else {
            ""
        };
        vec![
            cap(
                "exact_boundaries",
                (exact.is_empty()).then_some(self.boundaries),
                exact,
            ),
            cap(
                "ipi_function",
                self.ipi_function,
                "neither csd:csd_function_entry (6.4) nor the call-function queue (needs CONFIG_KALLSYMS_ALL): IPIs are named by vector only",
            ),
            cap(
                "ipi_sender",
                self.ipi_sender,
                "neither csd:csd_queue_cpu (6.4) nor the sender functions (fentry, and CONFIG_KALLSYMS_ALL) are available",
            ),
            Capability {
                name: "sender_context",
                available: true,
                how: self.sender_context.to_string(),
            },
            cap(
                "tick_stop_reason",
                self.tick_stop,
                "no timer:tick_stop tracepoint (kernel without NO_HZ_COMMON)",
            ),
            Capability {
                name: "strict_mode",
                available: true,
                how: "a signal sent from the first interrupting handler (bpf_send_signal_thread), before the task runs again".into(),
            },
            cap(
                "strict_syscalls",
                self.syscalls,
                "no raw_syscalls:sys_enter tracepoint",
            ),
        ]
    }
}

/// The loaded object, owned: the skeleton borrows the open object's
/// storage, so both live in one heap allocation pair and are dropped
/// together, skeleton first (its links detach every program, then the
/// object closes its maps).
struct Loaded {
    skel: std::mem::ManuallyDrop<Box<CaptureSkel<'static>>>,
    _storage: Box<MaybeUninit<libbpf_rs::OpenObject>>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, before the storage it borrows.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.skel) };
    }
}

/// Entries of the aggregation map for `watched` CPUs: 256 causes per CPU,
/// at least the 16384 a small machine always had (preallocated, 4.6 MiB),
/// at most 1M. Above 16384 entries are allocated as causes appear
/// (BPF_F_NO_PREALLOC): 1024 watched CPUs would otherwise pin 80 MiB of
/// kernel memory for keys a quiet machine never uses.
pub fn agg_size(watched: usize) -> (u32, bool) {
    const MIN: u32 = 16384;
    let n = (watched.max(1) as u64 * 256).clamp(MIN as u64, 1 << 20) as u32;
    (n, n == MIN)
}

/// A running capture. Dropping it detaches every program and frees its
/// maps.
pub struct Capture {
    // Field order is drop order: the ring reads a map of the object.
    ring: RingBuffer<'static>,
    /// The kvm tracepoints' links (detached before the object closes).
    vm_links: Vec<libbpf_rs::Link>,
    loaded: Loaded,
    queue: Rc<RefCell<VecDeque<RawRecord>>>,
    strict_count: *mut u32,
    armed: *mut u32,
    /// Slots of `pages` in use.
    pages_used: RefCell<Vec<bool>>,
    pub resolver: Resolver,
    /// Hooks attached (tracepoints as `system:event`, functions as
    /// `fentry:name`).
    pub attached: Vec<String>,
    /// Hooks this kernel lacks (their programs were not loaded).
    pub skipped: Vec<String>,
    pub sources: Sources,
    pub options: Options,
    /// /proc/interrupts for the watched CPUs just before and just after
    /// the programs were armed.
    vectors_at_arm: (Vec<VectorCounts>, Vec<VectorCounts>),
    /// VM exits: captured, or why not.
    pub vm: VmStatus,
    kvm_layout: *mut RawKvmLayout,
    tracefs: std::path::PathBuf,
    release: String,
    vm_polled: Option<std::time::Instant>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        // Disarm before detaching: detaching patches kernel text, which
        // IPIs every CPU, and that must not count as a registered task's
        // break (isol's own doing, not the application's).
        self.set_armed(false);
    }
}

/// Kernel symbols the programs use, from /proc/kallsyms.
struct KernelSymbols {
    per_cpu_offset: Option<u64>,
    preempt_count: Option<u64>,
    pcpu_hot: Option<u64>,
    call_single_queue: Option<u64>,
    cfd_data: Option<u64>,
    sched_ttwu_pending: Option<u64>,
}

impl KernelSymbols {
    fn read() -> KernelSymbols {
        let a = crate::ksyms::Ksyms::addresses(&[
            "__per_cpu_offset",
            arch::PREEMPT_COUNT_SYM,
            arch::PCPU_HOT_SYM,
            "call_single_queue",
            "cfd_data",
            "sched_ttwu_pending",
        ]);
        KernelSymbols {
            per_cpu_offset: a[0],
            preempt_count: a[1],
            pcpu_hot: a[2],
            call_single_queue: a[3],
            cfd_data: a[4],
            sched_ttwu_pending: a[5],
        }
    }
    /// Per-CPU variables can be read (needs CONFIG_KALLSYMS_ALL).
    fn per_cpu(&self) -> bool {
        self.per_cpu_offset.is_some()
    }
    fn can_walk_queue(&self) -> bool {
        self.per_cpu() && self.call_single_queue.is_some() && self.sched_ttwu_pending.is_some()
    }
}

/// Functions fentry can attach to on this kernel.
fn traceable_functions(tfs: &std::path::Path) -> std::collections::HashSet<String> {
    std::fs::read_to_string(tfs.join("available_filter_functions"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whether this kernel has a BPF helper, probed with a kprobe program
/// (libbpf cannot probe tracing programs; the helpers asked about came to
/// both in the same release).
fn has_helper(helper: libbpf_rs::libbpf_sys::bpf_func_id) -> bool {
    use libbpf_rs::libbpf_sys as sys;
    // SAFETY: a probe with no options.
    unsafe {
        sys::libbpf_probe_bpf_helper(sys::BPF_PROG_TYPE_KPROBE, helper, std::ptr::null()) == 1
    }
}

/// Whether bpf_get_current_task_btf() exists (5.11): the programs then
/// read the current task's ids and name by plain loads.
fn has_current_task_btf() -> bool {
    has_helper(libbpf_rs::libbpf_sys::BPF_FUNC_get_current_task_btf)
}

/// bpf_task_pt_regs() (5.15) can be called by tracing programs here.
fn has_task_pt_regs() -> bool {
    has_helper(libbpf_rs::libbpf_sys::BPF_FUNC_task_pt_regs)
}

impl Capture {
    /// Check privileges and kernel features, mount tracefs if needed,
    /// load and attach. Errors name what is missing.
    pub fn start(opts: Options) -> Result<Capture> {
        let root = Root::default();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let features = Features::probe(&root, release.trim());
        let missing = features.missing_for_capture();
        if !missing.is_empty() {
            bail!(isol_system::Error::Missing(missing));
        }
        let tfs = Tracefs::ensure_mounted(&root, features.capabilities.cap_sys_admin)?;
        if opts.pid.is_none() && opts.cpus.is_empty() {
            bail!("no CPUs to watch: this machine has no isolated CPUs; name some with --cpus LIST (e.g. --cpus 1)");
        }
        if let Some(bad) = opts.cpus.iter().find(|c| *c as usize >= 128 * 64) {
            bail!("CPU {bad} is beyond the 8192 CPUs isol can watch");
        }
        if opts.ring_bytes != 0 && (!opts.ring_bytes.is_power_of_two() || opts.ring_bytes < 4096) {
            bail!(
                "ring buffer size {} is not a power of two of at least 4096 bytes",
                opts.ring_bytes
            );
        }

        let mut storage: Box<MaybeUninit<libbpf_rs::OpenObject>> = Box::new(MaybeUninit::uninit());
        // SAFETY: the storage is heap-allocated, never moved, and outlives
        // the skeleton (see `Loaded`), so extending the borrow is sound.
        let storage_ref: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            unsafe { &mut *(storage.as_mut() as *mut _) };
        let mut open: OpenCaptureSkel<'static> = CaptureSkelBuilder::default()
            .open(storage_ref)
            .context("opening the BPF object")?;

        let syms = KernelSymbols::read();
        let has = |t: &str| tracefs::has_event(&tfs, t);
        let walk = syms.can_walk_queue();
        let funcs = traceable_functions(&tfs);
        let pt_regs = has_task_pt_regs();
        let rodata = open.maps.rodata_data.as_deref_mut().context("no rodata")?;
        for c in opts.cpus.iter() {
            rodata.watch_mask[(c / 64) as usize] |= 1u64 << (c % 64);
        }
        if let Some(p) = opts.pid {
            rodata.target_tgid = p;
        }
        rodata.want_syscalls = opts.syscalls as u8;
        rodata.task_btf = has_current_task_btf() as u8;
        rodata.all_stacks = opts.all_stacks as u8;
        rodata.kallsyms_per_cpu_offset = syms.per_cpu_offset.unwrap_or(0);
        rodata.kallsyms_preempt_count = syms.preempt_count.unwrap_or(0);
        rodata.kallsyms_pcpu_hot = syms.pcpu_hot.unwrap_or(0);
        rodata.kallsyms_call_single_queue = syms.call_single_queue.unwrap_or(0);
        rodata.kallsyms_cfd_data = syms.cfd_data.unwrap_or(0);
        rodata.kallsyms_sched_ttwu_pending = syms.sched_ttwu_pending.unwrap_or(0);
        rodata.walk_csd_queue = walk as u8;
        // Then csd_queue_cpu keeps only each csd's own sender, and the
        // fentry hooks that would write the per-CPU one are not attached.
        rodata.csd_last_used = !(walk && has(CSD_QUEUE_TP)) as u8;
        rodata.cpumask_words = isol_system::topology::possible_cpus(&root)
            .and_then(|p| p.last())
            .map_or(1, |last| last / 64 + 1);

        if opts.ring_bytes != 0 {
            open.maps.events.set_max_entries(opts.ring_bytes)?;
        }
        // Distinct (CPU, cause) keys grow with the watched CPUs (--pid
        // follows a process onto any of them).
        let watched = if opts.cpus.is_empty() {
            isol_system::topology::possible_cpus(&root).map_or(1, |p| p.len())
        } else {
            opts.cpus.len()
        };
        let (entries, prealloc) = agg_size(watched);
        open.maps.agg.set_max_entries(entries)?;
        if !prealloc {
            open.maps
                .agg
                .set_map_flags(libbpf_rs::libbpf_sys::BPF_F_NO_PREALLOC)?;
        }
        let mut attached = Vec::new();
        let mut skipped = Vec::new();
        for mut prog in open.open_object_mut().progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            // The kvm module's raw tracepoints: loaded now (a raw_tp needs
            // no BTF of its target), attached once the module is there.
            if crate::kvm::PROGRAMS.contains(&name.as_str()) {
                prog.set_autoattach(false);
                continue;
            }
            let Some(&(_, hook, want)) = PROGRAMS.iter().find(|(p, _, _)| *p == name) else {
                continue;
            };
            let present = match hook {
                Hook::Tp(t) => has(t),
                Hook::Func(f) => funcs.contains(f),
            };
            let wanted = match want {
                Want::Always => true,
                Want::Syscalls => opts.syscalls || opts.strict_syscalls,
                Want::NoWalk => !walk,
                Want::NoCsdQueueTp => !has(CSD_QUEUE_TP),
                Want::NoIpiSendTp => !has(IPI_SEND_TP),
                Want::TaskPtRegs => pt_regs,
            };
            if !present && wanted {
                skipped.push(hook.name());
            }
            if wanted && present {
                attached.push(hook.name());
            } else {
                prog.set_autoload(false);
            }
        }
        let missing: Vec<&str> = ESSENTIAL.iter().copied().filter(|e| !has(e)).collect();
        if !missing.is_empty() {
            bail!(
                "this kernel does not expose the tracepoints isol's capture stands on ({}){}",
                missing.join(", "),
                lockdown_note(&root)
            );
        }
        let on = |h: &str| attached.iter().any(|a| a == h);
        let sources = Sources {
            boundaries: if on(USER_EXIT_TP) {
                "context tracking (exact user/kernel transitions on nohz_full CPUs)"
            } else {
                "interrupt and exception handler entry/exit tracepoints"
            },
            ipi_function: if walk {
                Some("call-function queue read at the vector (kallsyms)")
            } else if on("csd:csd_function_entry") {
                Some("csd:csd_function_entry")
            } else {
                None
            },
            ipi_sender: if on(CSD_QUEUE_TP) {
                Some("csd:csd_queue_cpu and ipi:ipi_send_cpu")
            } else if on("fentry:__smp_call_single_queue")
                && on("fentry:smp_call_function_many_cond")
                && syms.per_cpu()
            {
                Some("fentry on __smp_call_single_queue, generic_exec_single, smp_call_function_many_cond, native_smp_send_reschedule")
            } else {
                None
            },
            sender_context: if syms.per_cpu()
                && (syms.preempt_count.is_some() || syms.pcpu_hot.is_some())
            {
                "preempt count (kallsyms)"
            } else {
                "sender stack (no CONFIG_KALLSYMS_ALL)"
            },
            tick_stop: on(TICK_STOP_TP).then_some(TICK_STOP_TP),
            context_tracking: has(USER_EXIT_TP),
            task_pt_regs: pt_regs,
            kallsyms_all: syms.per_cpu(),
            syscalls: if on(USER_EXIT_TP) {
                Some("context tracking (user_exit) on nohz_full CPUs; raw_syscalls:sys_enter elsewhere, attached only when asked")
            } else if has("raw_syscalls:sys_enter") {
                Some("raw_syscalls:sys_enter, attached only when asked (it costs every syscall on every CPU)")
            } else {
                None
            },
        };

        let mut skel = open.load().context("loading the BPF programs (verifier)")?;
        let bss = skel.maps.bss_data.as_deref_mut().context("no bss")?;
        let strict_count = &mut bss.strict_count as *mut u32;
        let armed = &mut bss.armed as *mut u32;
        // The skeleton has its own copy of the header's struct: same layout.
        let kvm_layout = &mut bss.kvm_layout as *mut _ as *mut RawKvmLayout;
        skel.attach().context("attaching the BPF programs")?;
        // SAFETY: .bss is mmap'ed for the object's lifetime (owned below).
        let before_arm = kernel_vectors(&opts.cpus);
        unsafe { std::ptr::write_volatile(armed, 1) };
        let vectors_at_arm = (before_arm, kernel_vectors(&opts.cpus));
        let loaded = Loaded {
            skel: std::mem::ManuallyDrop::new(Box::new(skel)),
            _storage: storage,
        };

        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let q = queue.clone();
        let mut rb = RingBufferBuilder::new();
        // SAFETY: the skeleton is boxed (stable address) and outlives the
        // ring, which is dropped first (field order of Capture).
        let events: &'static libbpf_rs::MapMut<'static> =
            unsafe { &*(&loaded.skel.maps.events as *const libbpf_rs::MapMut<'static>) };
        rb.add(events, move |data: &[u8]| {
            if let Some(r) = record::from_bytes::<RawRecord>(data) {
                q.borrow_mut().push_back(r);
            }
            0
        })?;
        let ring = rb.build()?;
        let mut cap = Capture {
            ring,
            vm_links: Vec::new(),
            loaded,
            queue,
            strict_count,
            armed,
            pages_used: RefCell::new(vec![false; crate::page::MAX_PAGES as usize]),
            resolver: Resolver::new(),
            attached,
            skipped,
            sources,
            options: opts,
            vectors_at_arm,
            vm: VmStatus::NoKvm,
            kvm_layout,
            tracefs: tfs,
            release: release.trim().to_string(),
            vm_polled: None,
        };
        cap.poll_vm();
        Ok(cap)
    }

    /// Attach the VM exit programs if the kvm module is there and they
    /// are not attached yet (it may load after isol starts), and name
    /// exit reasons once the vendor module (kvm_amd, kvm_intel) is there
    /// too; checks at most once a second. True when what isol captures of
    /// VM exits changed just now (`vm` says how).
    pub fn poll_vm(&mut self) -> bool {
        if matches!(
            self.vm,
            VmStatus::Failed { .. } | VmStatus::Attached { reasons: true, .. }
        ) || self
            .vm_polled
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
        {
            return false;
        }
        self.vm_polled = Some(std::time::Instant::now());
        // A module still initializing has its tracefs events but not yet
        // its raw tracepoints (attaching then fails with ENOENT).
        if !crate::kvm::present(&self.tracefs) || !crate::kvm::live("kvm") {
            return false;
        }
        // Attached, and no other vendor module since: nothing new to read
        // (spares loading vmlinux's BTF every second where none will come,
        // as on a kernel with kvm built in and a vendor isol does not know).
        if let VmStatus::Attached { isa, .. } = self.vm {
            if crate::kvm::vendor().map_or(crate::vmexit::Isa::Unknown, |v| v.1) == isa {
                return false;
            }
        }
        let (layout, isa) = crate::kvm::layout(&self.release);
        // SAFETY: .bss is mapped as long as `loaded` lives.
        unsafe { std::ptr::write_volatile(self.kvm_layout, layout) };
        let status = VmStatus::Attached {
            isa,
            reasons: crate::kvm::names_reasons(&layout, isa),
        };
        if matches!(self.vm, VmStatus::Attached { .. }) {
            // Attached before the vendor module loaded: only the layout
            // was missing.
            let changed = self.vm != status;
            self.vm = status;
            return changed;
        }
        // Attaching patches kernel text, which IPIs every CPU: isol's own
        // doing, not counted (nor a strict task's break).
        // SAFETY: as above.
        let was_armed = unsafe { std::ptr::read_volatile(self.armed) } != 0;
        self.set_armed(false);
        let mut links = Vec::new();
        let mut error = None;
        let progs = &self.skel().progs;
        for tp in crate::kvm::TRACEPOINTS {
            let p = match tp {
                "kvm_entry" => &progs.kvm_entry,
                "kvm_userspace_exit" => &progs.kvm_userspace_exit,
                _ if layout.reason_in_arg0 != 0 => &progs.kvm_exit_old,
                _ => &progs.kvm_exit,
            };
            match p.attach_raw_tracepoint(tp) {
                Ok(l) => links.push(l),
                Err(e) => {
                    error = Some(format!("kvm:{tp}: {e}"));
                    break;
                }
            }
        }
        self.set_armed(was_armed);
        match error {
            Some(error) => {
                drop(links);
                self.vm = VmStatus::Failed { error };
                true
            }
            None => {
                self.attached
                    .extend(crate::kvm::TRACEPOINTS.iter().map(|tp| format!("kvm:{tp}")));
                self.vm_links = links;
                self.vm = status;
                true
            }
        }
    }

    /// isol's vector counts beside the kernel's own (/proc/interrupts
    /// deltas). The kernel is read around each end of isol's counting, so
    /// its figure is a range: `kernel` counts from just after arming to
    /// just before isol's read (no more than isol can have seen),
    /// `kernel_max` from just before arming to just after it (no less).
    /// Nothing was lost when `kernel <= isol <= kernel_max`.
    pub fn vector_check(&self) -> Vec<VectorCheck> {
        let before = kernel_vectors(&self.options.cpus);
        let isol = self.vector_counts();
        let after = kernel_vectors(&self.options.cpus);
        let (arm0, arm1) = &self.vectors_at_arm;
        let delta = |a: &VectorCounts, b: &VectorCounts| VectorCounts {
            cpu: a.cpu,
            local_timer: a.local_timer.saturating_sub(b.local_timer),
            call_function: a.call_function.saturating_sub(b.call_function),
            reschedule: a.reschedule.saturating_sub(b.reschedule),
            irq_work: a.irq_work.saturating_sub(b.irq_work),
        };
        isol.into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                Some(VectorCheck {
                    cpu: v.cpu,
                    isol: v,
                    kernel: delta(before.get(i)?, arm1.get(i)?),
                    kernel_max: delta(after.get(i)?, arm0.get(i)?),
                })
            })
            .collect()
    }

    /// Arm or disarm every program. Disarmed, they ignore everything: do
    /// it before anything of isol's patches kernel text (attaching another
    /// capture IPIs every CPU, which must not break a registered task).
    pub fn set_armed(&self, on: bool) {
        // SAFETY: .bss is mapped as long as `loaded` lives.
        unsafe { std::ptr::write_volatile(self.armed, on as u32) };
    }

    fn skel(&self) -> &CaptureSkel<'static> {
        &self.loaded.skel
    }

    /// Per watched CPU, how many times each vector's handler began since
    /// the capture started: local timer, call function (single and
    /// many), reschedule, irq_work (isol's own included).
    pub fn vector_counts(&self) -> Vec<VectorCounts> {
        let m = &self.skel().maps.kind_counts;
        let per_cpu = |k: Kind| -> Vec<u64> {
            m.lookup_percpu(&(k as u32).to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| {
                    v.iter()
                        .map(|b| record::from_bytes::<u64>(b).unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default()
        };
        let timer = per_cpu(Kind::LocalTimer);
        let cf = per_cpu(Kind::CallFunction);
        let cfs = per_cpu(Kind::CallFunctionSingle);
        let res = per_cpu(Kind::Reschedule);
        let iw = per_cpu(Kind::IrqWork);
        let isol = per_cpu(Kind::IsolSignal);
        let at = |v: &Vec<u64>, c: u32| v.get(c as usize).copied().unwrap_or(0);
        self.options
            .cpus
            .iter()
            .map(|c| VectorCounts {
                cpu: c,
                local_timer: at(&timer, c),
                call_function: at(&cf, c) + at(&cfs, c),
                reschedule: at(&res, c),
                irq_work: at(&iw, c) + at(&isol, c),
            })
            .collect()
    }

    /// Drain the ring buffer without blocking; returns raw records.
    pub fn drain_raw(&mut self) -> Vec<RawRecord> {
        // Every consumer gets VM exits once the kvm module is there.
        self.poll_vm();
        let _ = self.ring.consume();
        self.queue.borrow_mut().drain(..).collect()
    }

    /// Drain and name.
    pub fn drain(&mut self) -> Vec<Record> {
        let raw = self.drain_raw();
        raw.iter().map(|r| self.resolve(r)).collect()
    }

    pub fn resolve(&self, r: &RawRecord) -> Record {
        self.resolver.record(r, |id| self.stack(id))
    }

    /// A kernel stack from the stack map, innermost first.
    pub fn stack(&self, id: i32) -> Vec<u64> {
        let Ok(Some(b)) = self
            .skel()
            .maps
            .stacks
            .lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY)
        else {
            return Vec::new();
        };
        b.chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .take_while(|a| *a != 0)
            .collect()
    }

    /// In-kernel aggregates per CPU x primary cause, merged by resolved
    /// name (one row per kthread name rather than per pid).
    pub fn aggregates(&self) -> Vec<Aggregate> {
        let m = &self.skel().maps.agg;
        let mut rows: Vec<Aggregate> = Vec::new();
        for k in m.keys() {
            let Some(key) = record::from_bytes::<RawAggKey>(&k) else {
                continue;
            };
            let Ok(Some(v)) = m.lookup(&k, MapFlags::ANY) else {
                continue;
            };
            let Some(v) = record::from_bytes::<record::RawAggVal>(&v) else {
                continue;
            };
            let mut cause = self.resolver.cause(&record::RawCause {
                class: key.class,
                kind: key.kind,
                pad: 0,
                arg: key.arg,
                addr: key.addr,
            });
            cause.pid = None;
            match rows
                .iter_mut()
                .find(|r| r.cpu == key.cpu && r.cause == cause)
            {
                Some(r) => {
                    r.count += v.count;
                    r.total_ns += v.total_ns;
                    r.max_ns = r.max_ns.max(v.max_ns);
                    for (a, b) in r.hist.iter_mut().zip(v.hist.iter()) {
                        *a += b;
                    }
                }
                None => rows.push(Aggregate {
                    cpu: key.cpu,
                    cause,
                    count: v.count,
                    total_ns: v.total_ns,
                    max_ns: v.max_ns,
                    hist: v.hist.to_vec(),
                }),
            }
        }
        rows.sort_by(|a, b| {
            (a.cpu, std::cmp::Reverse(a.total_ns)).cmp(&(b.cpu, std::cmp::Reverse(b.total_ns)))
        });
        rows
    }

    /// Everything dropped so far, summed over CPUs.
    pub fn drops(&self) -> Drops {
        let m = &self.skel().maps.drops;
        let get = |i: u32| -> u64 {
            m.lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| v.iter().filter_map(|b| record::from_bytes::<u64>(b)).sum())
                .unwrap_or(0)
        };
        use isol_abi::raw;
        Drops {
            ringbuf: get(raw::DROP_RINGBUF),
            aggregation: get(raw::DROP_AGG),
            stack: get(raw::DROP_STACK),
            sender: get(raw::DROP_SENDER),
            nesting: get(raw::DROP_NESTING),
            displaced: get(raw::DROP_DISPLACED),
            stack_sampled: get(raw::DROP_STACK_SAMPLED),
            extra_sender: get(raw::DROP_EXTRA_SENDER),
        }
    }

    /// Register a task (tid) or a whole process (pid, `process = true`):
    /// its next interruption of a class in `cfg` signals it (strict), or
    /// is counted (`cfg.signal == 0`).
    /// A status page for thread `tid` (see [`crate::page`]), in a free
    /// slot of `pages`; give it to [`Capture::register_strict`].
    pub fn new_status_page(&self, tid: u32, pending: bool) -> Result<StatusPage> {
        let mut used = self.pages_used.borrow_mut();
        let slot = used
            .iter()
            .position(|u| !u)
            .with_context(|| format!("all {} status pages are in use", used.len()))?;
        let page = StatusPage::create(slot as u32, tid, pending)?;
        self.skel()
            .maps
            .pages
            .update(
                &(slot as u32).to_ne_bytes(),
                &page.fd_bytes(),
                MapFlags::ANY,
            )
            .context("installing the status page")?;
        used[slot] = true;
        Ok(page)
    }

    /// The capture stops writing the page; the task keeps what it mapped.
    pub fn release_status_page(&self, page: StatusPage) {
        let _ = self.skel().maps.pages.delete(&page.slot.to_ne_bytes());
        if let Some(u) = self.pages_used.borrow_mut().get_mut(page.slot as usize) {
            *u = false;
        }
    }

    pub fn register_strict(
        &self,
        id: u32,
        process: bool,
        cfg: &StrictConfig,
        page: Option<&StatusPage>,
    ) -> Result<()> {
        let key = isol_abi::strict_key(id, process);
        let v = RawStrictCfg {
            signal: cfg.signal as u32,
            flags: process as u32 | (cfg.inherit as u32) << 1 | (cfg.pending as u32) << 2,
            classes: cfg.classes_mask(),
            page: page.map_or(0, |p| p.slot + 1),
            progress_addr: cfg.progress_addr,
            // A pending registration begins at its arming syscall (the
            // BPF side stamps it); any other now, on the BPF clock.
            active_ns: if cfg.pending {
                0
            } else {
                isol_system::clock::monotonic_ns()
            },
        };
        self.skel()
            .maps
            .strict
            .update(
                &key.to_ne_bytes(),
                isol_abi::bytemuck::bytes_of(&v),
                MapFlags::ANY,
            )
            .context("registering the strict task")?;
        // SAFETY: points into the loaded object's mmap'ed .bss, alive as
        // long as `loaded`.
        unsafe { std::ptr::write_volatile(self.strict_count, 1) };
        Ok(())
    }

    pub fn unregister_strict(&self, id: u32, process: bool) {
        let key = isol_abi::strict_key(id, process);
        let _ = self.skel().maps.strict.delete(&key.to_ne_bytes());
    }

    /// Whether the registration for `id` is still there (a strict one
    /// ends at its break).
    pub fn is_registered(&self, id: u32, process: bool) -> bool {
        let key = isol_abi::strict_key(id, process);
        matches!(
            self.skel()
                .maps
                .strict
                .lookup(&key.to_ne_bytes(), MapFlags::ANY),
            Ok(Some(_))
        )
    }

    /// Registration keys present (tid, or pid with the process bit).
    pub fn registrations(&self) -> Vec<(u32, bool)> {
        self.skel()
            .maps
            .strict
            .keys()
            .filter_map(|k| record::from_bytes::<u32>(&k))
            .map(isol_abi::strict_key_parts)
            .collect()
    }

    /// Forget the break record of a task (before it registers again).
    pub fn clear_break(&self, tid: u32) {
        let _ = self.skel().maps.breaks.delete(&tid.to_ne_bytes());
    }

    /// The tick on `cpu` as timer:tick_stop saw it; None when the
    /// tracepoint is missing or the CPU is not watched.
    pub fn tick_state(&self, cpu: u32) -> Option<TickState> {
        if !self.attached.iter().any(|a| a == TICK_STOP_TP) {
            return None;
        }
        let v = self
            .skel()
            .maps
            .ticks
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten()?;
        let t = record::from_bytes::<RawTickState>(v.get(cpu as usize)?)?;
        Some(TickState {
            stop_ts_ns: t.stop_ts_ns,
            fail_ts_ns: t.fail_ts_ns,
            fail_dependency: t.fail_dependency,
            fails: t.fails,
        })
    }

    /// Breaks recorded so far (tid -> cause), named.
    pub fn breaks(&self) -> Vec<StrictBreak> {
        let m = &self.skel().maps.breaks;
        let mut out = Vec::new();
        for k in m.keys() {
            let Ok(Some(v)) = m.lookup(&k, MapFlags::ANY) else {
                continue;
            };
            let Some(b) = record::from_bytes::<RawStrictBreak>(&v) else {
                continue;
            };
            out.push(StrictBreak {
                tid: b.tid,
                cpu: b.cpu,
                ts_ns: b.ts_ns,
                signal: b.signal,
                progress: b.progress,
                count: b.count,
                cause: self.resolver.cause(&b.cause),
                chain: self.resolver.chain(&b.chain, b.nchain),
                truncated: b.flags & record::REC_TRUNCATED != 0,
                sender: self.resolver.sender(&b.sender, |id| self.stack(id)),
            });
        }
        out
    }
}

/// Vector entries on one watched CPU, as isol counted them: the figures
/// /proc/interrupts shows as LOC, CAL, RES and IWI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct VectorCounts {
    pub cpu: u32,
    pub local_timer: u64,
    pub call_function: u64,
    pub reschedule: u64,
    pub irq_work: u64,
}

/// One watched CPU's vectors: isol's counts and the kernel's, over the
/// same run: `kernel <= isol <= kernel_max` when nothing was lost.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VectorCheck {
    pub cpu: u32,
    pub isol: VectorCounts,
    /// /proc/interrupts LOC, CAL, RES and IWI deltas over the part of the
    /// run isol surely saw...
    pub kernel: VectorCounts,
    /// ...and over a span that surely holds all of it.
    pub kernel_max: VectorCounts,
}

/// The vector lines of /proc/interrupts for `cpus`.
fn kernel_vectors(cpus: &CpuSet) -> Vec<VectorCounts> {
    let arch = isol_system::irq::arch_interrupts(&Root::default());
    let get = |name: &str, cpu: u32| {
        arch.iter()
            .find(|l| l.name == name)
            .and_then(|l| l.counts.get(&cpu).copied())
            .unwrap_or(0)
    };
    cpus.iter()
        .map(|cpu| VectorCounts {
            cpu,
            local_timer: get(isol_system::arch::LOCAL_TIMER_LINE, cpu),
            call_function: get(isol_system::arch::CALL_FUNCTION_LINE, cpu),
            reschedule: get(isol_system::arch::RESCHEDULE_LINE, cpu),
            irq_work: get(isol_system::arch::IRQ_WORK_LINE, cpu),
        })
        .collect()
}

#[cfg(test)]
#[test]
fn the_aggregation_map_grows_with_the_watched_cpus() {
    assert_eq!(agg_size(1), (16384, true));
    assert_eq!(agg_size(64), (16384, true));
    // 256 causes per CPU from there, allocated on demand.
    assert_eq!(agg_size(1024), (262_144, false));
    assert_eq!(agg_size(8192), (1 << 20, false));
}
