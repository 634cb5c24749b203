//! Names for the causes the BPF side records (enums in bpf/capture.h).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    None,
    Irq,
    Ipi,
    Timer,
    Softirq,
    Nmi,
    Exception,
    Syscall,
    Sched,
    Workqueue,
}

impl Class {
    pub fn from_raw(v: u8) -> Class {
        use Class::*;
        [
            None, Irq, Ipi, Timer, Softirq, Nmi, Exception, Syscall, Sched, Workqueue,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(None)
    }
    pub fn name(self) -> &'static str {
        use Class::*;
        match self {
            None => "none",
            Irq => "irq",
            Ipi => "ipi",
            Timer => "timer",
            Softirq => "softirq",
            Nmi => "nmi",
            Exception => "exception",
            Syscall => "syscall",
            Sched => "sched",
            Workqueue => "workqueue",
        }
    }
    /// The class named `name` (`irq`, `ipi`, ... as in JSON).
    pub fn from_name(name: &str) -> Option<Class> {
        (1..=9).map(Class::from_raw).find(|c| c.name() == name)
    }
    /// Bit for `strict_cfg.classes`.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
    /// Interruptions the task did not ask for (seed 002's strict mode
    /// without syscalls): interrupts, IPIs, timers, softirqs, NMIs, preemption.
    pub const ASYNC: &'static [Class] = &[
        Class::Irq,
        Class::Ipi,
        Class::Timer,
        Class::Softirq,
        Class::Nmi,
        Class::Sched,
        Class::Workqueue,
    ];
    /// Entries the task causes itself.
    pub const SYNC: &'static [Class] = &[Class::Exception, Class::Syscall];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    None,
    DeviceIrq,
    LocalTimer,
    TimerFn,
    HrtimerFn,
    CallFunction,
    CallFunctionSingle,
    Reschedule,
    IrqWork,
    CsdFunction,
    Softirq,
    Nmi,
    PageFault,
    TlbFlush,
    Syscall,
    Preempt,
    Work,
    KernelEntry,
    IsolSignal,
}

impl Kind {
    pub fn from_raw(v: u8) -> Kind {
        use Kind::*;
        [
            None,
            DeviceIrq,
            LocalTimer,
            TimerFn,
            HrtimerFn,
            CallFunction,
            CallFunctionSingle,
            Reschedule,
            IrqWork,
            CsdFunction,
            Softirq,
            Nmi,
            PageFault,
            TlbFlush,
            Syscall,
            Preempt,
            Work,
            KernelEntry,
            IsolSignal,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(None)
    }
    pub fn name(self) -> &'static str {
        use Kind::*;
        match self {
            None => "none",
            DeviceIrq => "device_irq",
            LocalTimer => "local_timer",
            TimerFn => "timer_fn",
            HrtimerFn => "hrtimer_fn",
            CallFunction => "call_function",
            CallFunctionSingle => "call_function_single",
            Reschedule => "reschedule",
            IrqWork => "irq_work",
            CsdFunction => "csd_function",
            Softirq => "softirq",
            Nmi => "nmi",
            PageFault => "page_fault",
            TlbFlush => "tlb_flush",
            Syscall => "syscall",
            Preempt => "preempt",
            Work => "work",
            KernelEntry => "kernel_entry",
            IsolSignal => "isol_signal",
        }
    }
}

/// include/linux/interrupt.h softirq vectors.
pub fn softirq_name(vec: u32) -> &'static str {
    const N: [&str; 10] = [
        "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER",
        "RCU",
    ];
    N.get(vec as usize).copied().unwrap_or("?")
}

/// arch/x86 enum tlb_flush_reason.
pub fn tlb_reason(r: u32) -> &'static str {
    const N: [&str; 5] = [
        "task_switch",
        "remote_shootdown",
        "local_shootdown",
        "local_mm_shootdown",
        "remote_send_ipi",
    ];
    N.get(r as usize).copied().unwrap_or("?")
}
