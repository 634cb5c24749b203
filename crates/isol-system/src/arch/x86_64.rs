//! x86-64: the local timer and the IPIs are system vectors, each with an
//! `irq_vectors` tracepoint pair and a /proc/interrupts line.

/// Tracepoints the capture engine attaches to that only x86 has, with
/// what each tells (see [`crate::features::TRACEPOINTS`] for the rest).
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("irq_vectors:local_timer_entry", "local timer interrupt"),
    ("irq_vectors:local_timer_exit", "local timer interrupt"),
    ("irq_vectors:call_function_entry", "call-function IPI"),
    (
        "irq_vectors:call_function_single_entry",
        "call-function-single IPI",
    ),
    ("irq_vectors:reschedule_entry", "reschedule IPI"),
    ("irq_vectors:irq_work_entry", "irq_work self-IPI"),
    ("exceptions:page_fault_user", "user page faults (x86)"),
    ("tlb:tlb_flush", "TLB flushes with reason (x86)"),
];

/// /proc/interrupts lines: local timer, call-function IPIs (single and
/// many), reschedule IPIs, irq_work self-IPIs.
pub const LOCAL_TIMER_LINE: &str = "LOC";
pub const CALL_FUNCTION_LINE: &str = "CAL";
pub const RESCHEDULE_LINE: &str = "RES";
pub const IRQ_WORK_LINE: &str = "IWI";
