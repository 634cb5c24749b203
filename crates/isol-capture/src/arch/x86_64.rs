//! x86-64: interrupts and IPIs arrive on system vectors, each with its
//! own `irq_vectors` tracepoint pair.

/// The local APIC timer's entry and exit.
pub const LOCAL_TIMER_ENTRY: &str = "irq_vectors:local_timer_entry";
pub const LOCAL_TIMER_EXIT: &str = "irq_vectors:local_timer_exit";
/// The IPI vectors' entries and exits.
pub const CALL_FUNCTION_ENTRY: &str = "irq_vectors:call_function_entry";
pub const CALL_FUNCTION_EXIT: &str = "irq_vectors:call_function_exit";
pub const CALL_FUNCTION_SINGLE_ENTRY: &str = "irq_vectors:call_function_single_entry";
pub const CALL_FUNCTION_SINGLE_EXIT: &str = "irq_vectors:call_function_single_exit";
pub const RESCHEDULE_ENTRY: &str = "irq_vectors:reschedule_entry";
pub const RESCHEDULE_EXIT: &str = "irq_vectors:reschedule_exit";
pub const IRQ_WORK_ENTRY: &str = "irq_vectors:irq_work_entry";
pub const IRQ_WORK_EXIT: &str = "irq_vectors:irq_work_exit";

/// Where a reschedule IPI is sent, for kernels without ipi:ipi_send_cpu.
pub const SEND_RESCHEDULE_FN: &str = "native_smp_send_reschedule";

/// TLB flushes with their reason (`tlb_reason`) and user page faults:
/// x86's own tracepoints.
pub const TLB_FLUSH: &str = "tlb:tlb_flush";
pub const PAGE_FAULT_USER: &str = "exceptions:page_fault_user";

/// The per-CPU symbols holding the preempt count: `__preempt_count`
/// (5.10-6.1, 6.15+) or the `pcpu_hot` struct (6.2-6.14).
pub const PREEMPT_COUNT_SYM: &str = "__preempt_count";
pub const PCPU_HOT_SYM: &str = "pcpu_hot";

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
