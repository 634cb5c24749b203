//! The boundary between isol's BPF programs and Rust (as sched-ext/scx
//! keeps its `intf.h`): [`raw`] is generated from `capture.h` at build
//! time (bindgen; the structs derive bytemuck's `Pod`), and the cause
//! vocabulary ([`Class`], [`Kind`]) takes its values from the header's
//! enums, so the two sides cannot drift apart. No BPF here: the task
//! isolation API builds on this crate without libbpf.

use serde::{Serialize, Serializer};

/// capture.h, as bindgen generates it: structs (`record`, `cause`,
/// `sender`, `agg_key`, `agg_val`, `strict_cfg`, `strict_break`,
/// `tick_state`), enum values and #defines.
#[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
pub mod raw {
    include!(concat!(env!("OUT_DIR"), "/capture.rs"));
}

pub use bytemuck;

/// An enum over the values of one of the header's enums: its variants are
/// the header's constants, its names the JSON's.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $raw:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $($variant = raw::$raw as u8,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value the BPF side wrote; unknown values are `None`.
            pub fn from_raw(v: u8) -> $name {
                match v {
                    $(x if x == raw::$raw as u8 => $name::$variant,)*
                    _ => $name::None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The variant named `name` (as in JSON).
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|c| c.name() == name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
    };
}

vocabulary! {
    /// What interrupted the CPU, broadly (enum isol_class).
    Class {
        None = CLASS_NONE => "none",
        Irq = CLASS_IRQ => "irq",
        Ipi = CLASS_IPI => "ipi",
        Timer = CLASS_TIMER => "timer",
        Softirq = CLASS_SOFTIRQ => "softirq",
        Nmi = CLASS_NMI => "nmi",
        Exception = CLASS_EXCEPTION => "exception",
        Syscall = CLASS_SYSCALL => "syscall",
        Sched = CLASS_SCHED => "sched",
        Workqueue = CLASS_WORKQUEUE => "workqueue",
        VmExit = CLASS_VMEXIT => "vmexit",
    }
}

vocabulary! {
    /// What exactly, within a class (enum isol_kind).
    Kind {
        None = KIND_NONE => "none",
        DeviceIrq = KIND_DEVICE_IRQ => "device_irq",
        LocalTimer = KIND_LOCAL_TIMER => "local_timer",
        TimerFn = KIND_TIMER_FN => "timer_fn",
        HrtimerFn = KIND_HRTIMER_FN => "hrtimer_fn",
        CallFunction = KIND_CALL_FUNCTION => "call_function",
        CallFunctionSingle = KIND_CALL_FUNCTION_SINGLE => "call_function_single",
        Reschedule = KIND_RESCHEDULE => "reschedule",
        IrqWork = KIND_IRQ_WORK => "irq_work",
        CsdFunction = KIND_CSD_FUNCTION => "csd_function",
        Softirq = KIND_SOFTIRQ => "softirq",
        Nmi = KIND_NMI => "nmi",
        PageFault = KIND_PAGE_FAULT => "page_fault",
        TlbFlush = KIND_TLB_FLUSH => "tlb_flush",
        Syscall = KIND_SYSCALL => "syscall",
        Preempt = KIND_PREEMPT => "preempt",
        Work = KIND_WORK => "work",
        KernelEntry = KIND_KERNEL_ENTRY => "kernel_entry",
        IsolSignal = KIND_ISOL_SIGNAL => "isol_signal",
        VmExit = KIND_VM_EXIT => "vm_exit",
        VmUserspace = KIND_VM_USERSPACE => "vm_userspace",
    }
}

vocabulary! {
    /// A registered thread's state on its status page (enum isol_page_state).
    PageState {
        None = PAGE_NONE => "none",
        Pending = PAGE_PENDING => "pending",
        Active = PAGE_ACTIVE => "active",
        Broken = PAGE_BROKEN => "broken",
        Ended = PAGE_ENDED => "ended",
    }
}

impl Class {
    /// Bit for `strict_cfg.classes`.
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
    /// Interruptions the task did not ask for (strict mode without
    /// syscalls): interrupts, IPIs, timers, softirqs, NMIs, preemption,
    /// work items.
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

/// The strict-mode arming syscall: getcpu(0, 0, STRICT_ARM_MAGIC).
pub const STRICT_ARM_MAGIC: u64 = raw::STRICT_ARM_MAGIC as u64;
pub const STRICT_ARM_NR: u32 = raw::STRICT_ARM_NR;
/// The explicit exit: getcpu(0, 0, STRICT_LEAVE_MAGIC) ends the caller's
/// registration before anything else deactivation does enters the kernel.
pub const STRICT_LEAVE_MAGIC: u64 = raw::STRICT_LEAVE_MAGIC as u64;

/// The key of a registration: the tid, or the process id with
/// STRICT_KEY_PROCESS set.
pub fn strict_key(id: u32, process: bool) -> u32 {
    if process {
        id | raw::STRICT_KEY_PROCESS
    } else {
        id
    }
}

/// (id, process) of a registration key.
pub fn strict_key_parts(key: u32) -> (u32, bool) {
    (
        key & !raw::STRICT_KEY_PROCESS,
        key & raw::STRICT_KEY_PROCESS != 0,
    )
}

/// Read a value of a header struct out of map or ring bytes (any
/// alignment); None if too short.
pub fn from_bytes<T: bytemuck::Pod>(b: &[u8]) -> Option<T> {
    b.get(..std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::from_raw(*c as u8), *c);
            assert_eq!(Class::from_name(c.name()), Some(*c));
        }
        for k in Kind::ALL {
            assert_eq!(Kind::from_raw(*k as u8), *k);
        }
        assert_eq!(Kind::ALL.len() as u32, raw::KIND_MAX);
        assert_eq!(Class::from_raw(200), Class::None);
        assert_eq!(strict_key_parts(strict_key(42, true)), (42, true));
        assert_eq!(strict_key_parts(strict_key(42, false)), (42, false));
    }

    #[test]
    fn records_read_from_unaligned_bytes() {
        let mut r = raw::record {
            cpu: 3,
            ..Default::default()
        };
        r.chain[7].addr = 0xdead;
        let mut buf = vec![0u8; 1];
        buf.extend_from_slice(bytemuck::bytes_of(&r));
        let back: raw::record = from_bytes(&buf[1..]).unwrap();
        assert_eq!((back.cpu, back.chain[7].addr), (3, 0xdead));
        assert!(from_bytes::<raw::record>(&buf[1..100]).is_none());
    }
}
