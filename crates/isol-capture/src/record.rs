//! Records from the BPF side (the structs of isol-abi's capture.h) and
//! their decoded, named form (the JSON of `isol watch --events`).

use crate::cause::{softirq_name, tlb_reason, Class, Kind};
use crate::ksyms::Ksyms;
use crate::vmexit::{userspace_exit_name, Isa, VmExit};
use serde::Serialize;
use std::collections::HashMap;

use isol_abi::raw;

pub const MAX_CHAIN: usize = raw::MAX_CHAIN as usize;
pub const HIST_BUCKETS: usize = raw::HIST_BUCKETS as usize;

pub const REC_EXACT: u32 = raw::REC_EXACT;
pub const REC_TRUNCATED: u32 = raw::REC_TRUNCATED;
pub const REC_STRICT_BREAK: u32 = raw::REC_STRICT_BREAK;
pub const REC_NO_DURATION: u32 = raw::REC_NO_DURATION;
pub const REC_IDLE: u32 = raw::REC_IDLE;
pub const REC_VM_USERSPACE: u32 = raw::REC_VM_USERSPACE;
pub const REC_PRE_ACTIVATION: u32 = raw::REC_PRE_ACTIVATION;
pub const REC_IPI_BREAK: u32 = raw::REC_IPI_BREAK;

/// The structs of capture.h (generated; see crate isol-abi).
pub type RawCause = raw::cause;
pub type RawSender = raw::sender;
pub type RawRecord = raw::record;
pub type RawAggKey = raw::agg_key;
pub type RawAggVal = raw::agg_val;
pub type RawStrictCfg = raw::strict_cfg;
pub type RawStrictBreak = raw::strict_break;
pub type RawTickState = raw::tick_state;

pub use isol_abi::from_bytes;

/// The target architecture's syscall name for a number (`getppid`), or
/// `syscall N` (the syscalls crate's table for the target).
pub fn syscall_name(nr: u32) -> String {
    match syscalls::Sysno::new(nr as usize) {
        Some(s) => s.name().to_string(),
        None => format!("syscall {nr}"),
    }
}

pub fn comm(b: &[u8; 16]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(16);
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// A cause with names resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Cause {
    pub class: Class,
    pub kind: Kind,
    /// Handler, callback or function name; IRQ name; vector name.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nr: Option<u32>,
    /// A VM exit's reason, decoded, and whose doing it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_exit: Option<VmExit>,
}

#[derive(Debug, Clone)]
pub struct Sender {
    pub cpu: u32,
    /// Whose code sent it: `task` (then `pid`/`comm` are the sender), or
    /// `hardirq`/`softirq` (then they name whichever task was interrupted
    /// on the sending CPU, not a culprit). Judged from the stack.
    pub context: &'static str,
    pub pid: u32,
    pub comm: String,
    pub callsite: String,
    /// Left out of JSON when empty.
    pub function: String,
    /// Kernel stack of the sender, innermost first.
    pub stack: Vec<String>,
    /// Why there is no stack: `sampled` (not taken by choice, see
    /// `Options::all_stacks`) or `failed` (counted in `Drops::stack`).
    /// JSON then says `"stack": null` and this reason.
    pub stack_not_taken: Option<&'static str>,
    /// When it queued the IPI (CLOCK_MONOTONIC ns).
    pub sent_ns: u64,
}

impl Serialize for Sender {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = ser.serialize_struct("Sender", 9)?;
        s.serialize_field("cpu", &self.cpu)?;
        s.serialize_field("context", self.context)?;
        s.serialize_field("pid", &self.pid)?;
        s.serialize_field("comm", &self.comm)?;
        s.serialize_field("callsite", &self.callsite)?;
        if !self.function.is_empty() {
            s.serialize_field("function", &self.function)?;
        }
        match self.stack_not_taken {
            // An empty list would read as a stack with no frames.
            Some(why) => {
                s.serialize_field("stack", &None::<Vec<String>>)?;
                s.serialize_field("stack_not_taken", why)?;
            }
            None => s.serialize_field("stack", &self.stack)?,
        }
        s.serialize_field("sent_ns", &self.sent_ns)?;
        s.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub cpu: u32,
    pub tid: u32,
    pub pid: u32,
    pub comm: String,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// Bounded by context tracking (exact user/kernel boundary).
    pub exact: bool,
    /// The CPU was idle when interrupted.
    pub idle: bool,
    /// This interruption broke a strict-mode task.
    pub strict_break: bool,
    /// A point event: duration unknown (page fault outside nohz_full).
    pub no_duration: bool,
    /// More nested causes than the chain holds.
    pub truncated: bool,
    /// A VM exit KVM handed to the VMM: the duration ends at the return
    /// to user space, not at the next guest entry.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub vm_userspace: bool,
    /// An IPI to a registered task, queued before its activation: not a
    /// break, though its class is one the task breaks on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pre_activation: bool,
    pub cause: Cause,
    pub chain: Vec<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// The sender of another IPI of this interruption: a second one
    /// nested or run in the same vector, or a second sending of a vector
    /// the CPU took once (two reschedule kicks before it was handled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_sender: Option<Sender>,
}

/// Turns raw records into named ones.
pub struct Resolver {
    pub ksyms: Ksyms,
    pub irq_names: HashMap<u32, String>,
}

impl Resolver {
    pub fn new() -> Resolver {
        let irqs = isol_system::irq::Irqs::probe(&isol_system::Root::default());
        Resolver {
            ksyms: Ksyms::load(),
            irq_names: irqs.device.into_iter().map(|i| (i.irq, i.name)).collect(),
        }
    }

    pub fn cause(&self, c: &RawCause) -> Cause {
        let class = Class::from_raw(c.class);
        let kind = Kind::from_raw(c.kind);
        let mut out = Cause {
            class,
            kind,
            detail: String::new(),
            irq: None,
            vector: None,
            address: None,
            pid: None,
            nr: None,
            vm_exit: None,
        };
        let func = || self.ksyms.name(c.addr);
        out.detail = match kind {
            Kind::DeviceIrq => {
                out.irq = Some(c.arg);
                self.irq_names
                    .get(&c.arg)
                    .cloned()
                    .unwrap_or_else(|| format!("irq{}", c.arg))
            }
            Kind::LocalTimer => {
                out.vector = Some(c.arg);
                if c.addr != 0 {
                    func()
                } else {
                    "local_timer".into()
                }
            }
            Kind::CallFunction | Kind::CallFunctionSingle | Kind::Reschedule | Kind::IrqWork => {
                out.vector = Some(c.arg);
                if c.addr != 0 {
                    func()
                } else {
                    kind.name().into()
                }
            }
            Kind::TimerFn | Kind::HrtimerFn | Kind::CsdFunction | Kind::Work | Kind::Nmi => func(),
            Kind::Softirq => {
                out.vector = Some(c.arg);
                softirq_name(c.arg).into()
            }
            Kind::PageFault => {
                out.address = Some(format!("{:#x}", c.addr));
                format!("page fault (error {:#x})", c.arg)
            }
            Kind::TlbFlush => tlb_reason(c.arg).into(),
            Kind::Syscall => {
                out.nr = Some(c.arg);
                syscall_name(c.arg)
            }
            // Nothing ran: the task was runnable and the CPU idle.
            Kind::Preempt if c.arg == 0 => {
                out.pid = Some(0);
                "idle while runnable (throttled: RT or CFS bandwidth)".into()
            }
            Kind::Preempt => {
                out.pid = Some(c.arg);
                let comm = std::fs::read_to_string(format!("/proc/{}/comm", c.arg))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| format!("pid {}", c.arg));
                if c.addr != 0 {
                    format!("{comm}: {}", func())
                } else {
                    comm
                }
            }
            Kind::KernelEntry => "kernel entry with no traced cause".into(),
            Kind::IsolSignal => "isol's own strict-mode signal (irq_work)".into(),
            Kind::VmExit => {
                let e = VmExit::decode(Isa::from_raw(c.addr), c.arg);
                let name = e.reason.clone();
                out.vm_exit = Some(e);
                name
            }
            Kind::VmUserspace => userspace_exit_name(c.arg),
            Kind::None => String::new(),
        };
        out
    }

    /// The sender of an IPI (None when the capture did not see it).
    pub fn sender(&self, s: &RawSender, stack: impl Fn(i32) -> Vec<u64>) -> Option<Sender> {
        (s.valid != 0).then(|| {
            let stack: Vec<String> = if s.stack_id >= 0 {
                // The innermost frames are isol's own program and the
                // tracepoint trampoline: not the sender's.
                stack(s.stack_id)
                    .into_iter()
                    .map(|a| self.ksyms.name(a))
                    .skip_while(|f| {
                        f.starts_with("bpf_prog_")
                            || f.starts_with("bpf_trace_run")
                            || f.starts_with("bpf_trampoline_")
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Sender {
                cpu: s.cpu,
                context: match s.context {
                    1 => "task",
                    2 => "softirq",
                    3 => "hardirq",
                    4 => "nmi",
                    // A kernel without a known preempt count: the stack says.
                    _ => sender_context(&stack),
                },
                pid: s.pid,
                comm: comm(&s.comm),
                // A function hook (fentry) has no callsite argument: the
                // stack's first frame is the hooked function, then its caller.
                callsite: if s.callsite != 0 {
                    self.ksyms.name(s.callsite)
                } else {
                    stack.get(1).cloned().unwrap_or_default()
                },
                function: self.ksyms.name(s.func),
                stack_not_taken: match (s.stack_id >= 0, s.stack) {
                    (true, _) => None,
                    (false, x) if x == raw::SENDER_STACK_SAMPLED as u8 => Some("sampled"),
                    (false, _) => Some("failed"),
                },
                stack,
                sent_ns: s.sent_ns,
            }
        })
    }

    /// The first `n` causes of a chain, named.
    pub fn chain(&self, chain: &[RawCause], n: u32) -> Vec<Cause> {
        chain[..(n as usize).min(chain.len())]
            .iter()
            .map(|c| self.cause(c))
            .collect()
    }

    pub fn record(&self, r: &RawRecord, stack: impl Fn(i32) -> Vec<u64>) -> Record {
        let sender = self.sender(&r.sender, &stack);
        let other_sender = self.sender(&r.sender2, &stack);
        Record {
            cpu: r.cpu,
            tid: r.tid,
            pid: r.tgid,
            comm: comm(&r.comm),
            start_ns: r.start_ns,
            duration_ns: r.duration_ns,
            exact: r.flags & REC_EXACT != 0,
            idle: r.flags & REC_IDLE != 0,
            strict_break: r.flags & REC_STRICT_BREAK != 0,
            no_duration: r.flags & REC_NO_DURATION != 0,
            truncated: r.flags & REC_TRUNCATED != 0,
            vm_userspace: r.flags & REC_VM_USERSPACE != 0,
            pre_activation: r.flags & REC_PRE_ACTIVATION != 0,
            cause: self.cause(&r.primary),
            chain: self.chain(&r.chain, r.nchain),
            sender,
            other_sender,
        }
    }
}

/// The context the sender ran in, from its innermost entry frames
/// (symbol names, with or without `+0x..` offsets).
pub fn sender_context(stack: &[String]) -> &'static str {
    for f in stack {
        let f = f.split('+').next().unwrap_or("");
        if f.starts_with("handle_softirqs") || f == "__do_softirq" || f == "do_softirq" {
            return "softirq";
        }
        if f.starts_with("asm_sysvec_")
            || f.starts_with("asm_common_interrupt")
            || f.starts_with("sysvec_")
        {
            return "hardirq";
        }
        if f.starts_with("entry_SYSCALL")
            || f.starts_with("do_syscall")
            || f == "kthread"
            || f == "ret_from_fork"
        {
            return "task";
        }
    }
    if stack.is_empty() {
        "unknown"
    } else {
        "task"
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names() {
        assert_eq!(syscall_name(110), "getppid");
        assert_eq!(syscall_name(100_000), "syscall 100000");
    }

    #[test]
    fn names() {
        let r = Resolver {
            ksyms: Ksyms::parse("ffffffff81000100 t flush_tlb_func\n"),
            irq_names: HashMap::from([(26, "ttyS0".to_string())]),
        };
        let c = r.cause(&RawCause {
            class: 2,
            kind: 5,
            pad: 0,
            arg: 0xfc,
            addr: 0xffffffff81000100,
        });
        assert_eq!((c.class, c.kind), (Class::Ipi, Kind::CallFunction));
        assert_eq!(c.detail, "flush_tlb_func");
        let c = r.cause(&RawCause {
            class: 1,
            kind: 1,
            pad: 0,
            arg: 26,
            addr: 0,
        });
        assert_eq!(c.detail, "ttyS0");
        assert_eq!(c.irq, Some(26));
        let c = r.cause(&RawCause {
            class: 4,
            kind: 10,
            pad: 0,
            arg: 1,
            addr: 0,
        });
        assert_eq!(c.detail, "TIMER");
    }

    #[test]
    fn vm_exits_are_named_with_their_origin() {
        let r = Resolver {
            ksyms: Ksyms::parse(""),
            irq_names: HashMap::new(),
        };
        let raw = |kind, arg, addr| RawCause {
            class: raw::CLASS_VMEXIT as u8,
            kind: kind as u8,
            pad: 0,
            arg,
            addr,
        };
        let c = r.cause(&raw(raw::KIND_VM_EXIT, 0x60, raw::VM_ISA_SVM as u64));
        assert_eq!((c.class, c.kind), (Class::VmExit, Kind::VmExit));
        assert_eq!(c.detail, "INTR");
        let e = c.vm_exit.unwrap();
        assert_eq!((e.isa, e.origin), (Isa::Svm, crate::vmexit::Origin::Host));
        let c = r.cause(&raw(raw::KIND_VM_EXIT, 30, raw::VM_ISA_VMX as u64));
        assert_eq!(c.detail, "IO_INSTRUCTION");
        assert_eq!(c.vm_exit.unwrap().origin, crate::vmexit::Origin::Guest);
        let c = r.cause(&raw(raw::KIND_VM_USERSPACE, 5, 0));
        assert_eq!(
            (c.kind, c.detail.as_str()),
            (Kind::VmUserspace, "KVM_EXIT_HLT")
        );
        assert!(c.vm_exit.is_none());
    }
}
