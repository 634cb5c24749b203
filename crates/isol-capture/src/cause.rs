//! Names for the causes the BPF side records (enums in isol-abi's capture.h).

pub use isol_abi::{Class, Kind};

/// include/linux/interrupt.h softirq vectors.
pub fn softirq_name(vec: u32) -> &'static str {
    const N: [&str; 10] = [
        "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER",
        "RCU",
    ];
    N.get(vec as usize).copied().unwrap_or("?")
}

pub use crate::arch::tlb_reason;
