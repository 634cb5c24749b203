//! Loading, attaching and reading the capture programs.
//!
//! The reader never waits on the ring buffer (records are submitted with
//! BPF_RB_NO_WAKEUP so the watched CPU takes no wakeup IPI); it drains it
//! on a period from a housekeeping CPU.

use crate::record::{
    self, RawAggKey, RawRecord, RawStrictBreak, RawStrictCfg, RawTickState, Record, Resolver,
};
use crate::skel::{CaptureSkel, CaptureSkelBuilder, OpenCaptureSkel};
use crate::strict::{StrictBreak, StrictConfig, TickState};
use crate::{Aggregate, Drops};
use anyhow::{bail, Context, Result};
use isol_cpulist::CpuSet;
use isol_system::features::Features;
use isol_system::tracefs::{self, Tracefs};
use isol_system::Root;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBuffer, RingBufferBuilder};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::rc::Rc;

/// Each program and the tracepoint it needs; programs whose tracepoint
/// this kernel lacks are not loaded (and listed as skipped).
const PROGRAMS: &[(&str, &str)] = &[
    ("irq_entry", "irq:irq_handler_entry"),
    ("irq_exit", "irq:irq_handler_exit"),
    ("softirq_entry", "irq:softirq_entry"),
    ("softirq_exit", "irq:softirq_exit"),
    ("local_timer_entry", "irq_vectors:local_timer_entry"),
    ("local_timer_exit", "irq_vectors:local_timer_exit"),
    ("call_function_entry", "irq_vectors:call_function_entry"),
    ("call_function_exit", "irq_vectors:call_function_exit"),
    (
        "call_function_single_entry",
        "irq_vectors:call_function_single_entry",
    ),
    (
        "call_function_single_exit",
        "irq_vectors:call_function_single_exit",
    ),
    ("reschedule_entry", "irq_vectors:reschedule_entry"),
    ("reschedule_exit", "irq_vectors:reschedule_exit"),
    ("irq_work_entry", "irq_vectors:irq_work_entry"),
    ("irq_work_exit", "irq_vectors:irq_work_exit"),
    ("csd_queue_cpu", "csd:csd_queue_cpu"),
    ("ipi_send_cpu", "ipi:ipi_send_cpu"),
    ("csd_function_entry", "csd:csd_function_entry"),
    ("timer_expire_entry", "timer:timer_expire_entry"),
    ("hrtimer_expire_entry", "timer:hrtimer_expire_entry"),
    (
        "workqueue_execute_start",
        "workqueue:workqueue_execute_start",
    ),
    ("tlb_flush", "tlb:tlb_flush"),
    ("page_fault_user", "exceptions:page_fault_user"),
    ("nmi_handler", "nmi:nmi_handler"),
    ("sched_switch", "sched:sched_switch"),
    ("user_exit", "context_tracking:user_exit"),
    ("user_enter", "context_tracking:user_enter"),
    ("sys_enter", "raw_syscalls:sys_enter"),
    ("process_fork", "sched:sched_process_fork"),
    ("tick_stop", "timer:tick_stop"),
];

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
}

/// A running capture. Detaches everything when dropped.
pub struct Capture {
    skel: &'static CaptureSkel<'static>,
    ring: RingBuffer<'static>,
    queue: Rc<RefCell<VecDeque<RawRecord>>>,
    strict_count: *mut u32,
    pub resolver: Resolver,
    /// Programs attached, by tracepoint.
    pub attached: Vec<&'static str>,
    /// Tracepoints this kernel lacks (their programs were not loaded).
    pub skipped: Vec<&'static str>,
    pub options: Options,
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

        let obj = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open: OpenCaptureSkel<'static> = CaptureSkelBuilder::default()
            .open(obj)
            .context("opening the BPF object")?;

        let rodata = open.maps.rodata_data.as_deref_mut().context("no rodata")?;
        for c in opts.cpus.iter() {
            rodata.watch_mask[(c / 64) as usize] |= 1u64 << (c % 64);
        }
        if let Some(p) = opts.pid {
            rodata.target_tgid = p;
        }
        rodata.want_syscalls = opts.syscalls as u8;

        if opts.ring_bytes != 0 {
            let page = 4096u32;
            if !opts.ring_bytes.is_power_of_two() || opts.ring_bytes < page {
                bail!(
                    "ring buffer size {} is not a power of two of at least {page} bytes",
                    opts.ring_bytes
                );
            }
            open.maps.events.set_max_entries(opts.ring_bytes)?;
        }
        let mut attached = Vec::new();
        let mut skipped = Vec::new();
        for mut prog in open.open_object_mut().progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let Some(&(_, event)) = PROGRAMS.iter().find(|(p, _)| *p == name) else {
                continue;
            };
            let wanted = event != "raw_syscalls:sys_enter" || opts.syscalls || opts.strict_syscalls;
            let present = tracefs::has_event(&tfs, event);
            if !present {
                skipped.push(event);
            }
            if wanted && present {
                attached.push(event);
            } else {
                prog.set_autoload(false);
            }
        }

        let mut skel = open.load().context("loading the BPF programs (verifier)")?;
        let bss = skel.maps.bss_data.as_deref_mut().context("no bss")?;
        let strict_count = &mut bss.strict_count as *mut u32;
        let armed = &mut bss.armed as *mut u32;
        skel.attach().context("attaching the BPF programs")?;
        // SAFETY: .bss is mmap'ed for the object's lifetime (leaked below).
        unsafe { std::ptr::write_volatile(armed, 1) };
        let skel: &'static CaptureSkel<'static> = Box::leak(Box::new(skel));

        let queue = Rc::new(RefCell::new(VecDeque::new()));
        let q = queue.clone();
        let mut rb = RingBufferBuilder::new();
        rb.add(&skel.maps.events, move |data: &[u8]| {
            if let Some(r) = record::from_bytes::<RawRecord>(data) {
                q.borrow_mut().push_back(r);
            }
            0
        })?;
        let ring = rb.build()?;
        Ok(Capture {
            skel,
            ring,
            queue,
            strict_count,
            resolver: Resolver::new(),
            attached,
            skipped,
            options: opts,
        })
    }

    /// Drain the ring buffer without blocking; returns raw records.
    pub fn drain_raw(&mut self) -> Vec<RawRecord> {
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
            .skel
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
        let m = &self.skel.maps.agg;
        let mut rows: Vec<Aggregate> = Vec::new();
        for k in m.keys() {
            let Some(key) = record::from_bytes::<RawAggKey>(&k) else {
                continue;
            };
            let Ok(Some(v)) = m.lookup(&k, MapFlags::ANY) else {
                continue;
            };
            let Some(v) = record::agg_val(&v) else {
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
        let m = &self.skel.maps.drops;
        let get = |i: u32| -> u64 {
            m.lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                .ok()
                .flatten()
                .map(|v| v.iter().filter_map(|b| record::from_bytes::<u64>(b)).sum())
                .unwrap_or(0)
        };
        Drops {
            ringbuf: get(0),
            aggregation: get(1),
            stack: get(2),
            sender: get(3),
            nesting: get(4),
        }
    }

    /// Register a task (tid) or a whole process (pid, `process = true`):
    /// its next interruption of a class in `cfg` signals it (strict), or
    /// is counted (`cfg.signal == 0`).
    pub fn register_strict(&self, id: u32, process: bool, cfg: &StrictConfig) -> Result<()> {
        let key = if process { id | 0x8000_0000 } else { id };
        let v = RawStrictCfg {
            signal: cfg.signal as u32,
            flags: process as u32 | (cfg.inherit as u32) << 1 | (cfg.pending as u32) << 2,
            classes: cfg.classes_mask(),
            pad: 0,
            progress_addr: cfg.progress_addr,
        };
        self.skel
            .maps
            .strict
            .update(&key.to_ne_bytes(), record::as_bytes(&v), MapFlags::ANY)
            .context("registering the strict task")?;
        // SAFETY: points into the loaded object's mmap'ed .bss, alive as
        // long as the leaked skeleton.
        unsafe { std::ptr::write_volatile(self.strict_count, 1) };
        Ok(())
    }

    pub fn unregister_strict(&self, id: u32, process: bool) {
        let key = if process { id | 0x8000_0000 } else { id };
        let _ = self.skel.maps.strict.delete(&key.to_ne_bytes());
    }

    /// Whether the registration for `id` is still there (a strict one
    /// ends at its break).
    pub fn is_registered(&self, id: u32, process: bool) -> bool {
        let key = if process { id | 0x8000_0000 } else { id };
        matches!(
            self.skel
                .maps
                .strict
                .lookup(&key.to_ne_bytes(), MapFlags::ANY),
            Ok(Some(_))
        )
    }

    /// Registration keys present (tid, or pid with the process bit).
    pub fn registrations(&self) -> Vec<(u32, bool)> {
        self.skel
            .maps
            .strict
            .keys()
            .filter_map(|k| record::from_bytes::<u32>(&k))
            .map(|k| (k & 0x7fff_ffff, k & 0x8000_0000 != 0))
            .collect()
    }

    /// Forget the break record of a task (before it registers again).
    pub fn clear_break(&self, tid: u32) {
        let _ = self.skel.maps.breaks.delete(&tid.to_ne_bytes());
    }

    /// The tick on `cpu` as timer:tick_stop saw it; None when the
    /// tracepoint is missing or the CPU is not watched.
    pub fn tick_state(&self, cpu: u32) -> Option<TickState> {
        if !self.attached.contains(&"timer:tick_stop") {
            return None;
        }
        let v = self
            .skel
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
        let m = &self.skel.maps.breaks;
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
            });
        }
        out
    }
}
