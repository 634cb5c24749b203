//! Registered tasks. Strict mode (the task isolation series, Metcalf's and Belits' versions): the first interruption
//! of a registered task sends it a signal before it returns to user space,
//! and clears its registration. With no signal (persistent and one-shot
//! isolation) each break is counted and the registration stays. Which
//! entries count is configurable.

use crate::cause::Class;
use crate::record::{Cause, Sender};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct StrictConfig {
    /// Signal to send (default SIGKILL, as in the task isolation series); 0 counts breaks
    /// without signalling.
    pub signal: i32,
    /// Classes that break isolation.
    pub classes: Vec<Class>,
    /// User address of a u64 read at the moment of the break (e.g. a loop
    /// counter), kept with the break: proof of how far the task got.
    pub progress_addr: u64,
    /// Children created by fork/clone are registered too (the task isolation series'
    /// ISOL_INHERIT_ACTIVE).
    pub inherit: bool,
    /// The task's own syscalls and faults do not count until it arms
    /// itself with getcpu(0, 0, ARM_MAGIC) (it is still talking to its watcher).
    pub pending: bool,
}

/// STRICT_ARM_MAGIC of capture.h.
pub const ARM_MAGIC: u64 = isol_abi::STRICT_ARM_MAGIC;

impl StrictConfig {
    /// Asynchronous interruptions only: the task's own syscalls and page
    /// faults are allowed.
    pub fn asynchronous(signal: i32) -> Self {
        StrictConfig {
            signal,
            classes: Class::ASYNC.to_vec(),
            progress_addr: 0,
            inherit: false,
            pending: false,
        }
    }
    /// Every kernel entry, as the task isolation series' strict mode.
    pub fn all(signal: i32) -> Self {
        let mut c = Self::asynchronous(signal);
        c.classes.extend_from_slice(Class::SYNC);
        c
    }
    pub fn classes_mask(&self) -> u32 {
        self.classes.iter().fold(0, |m, c| m | c.bit())
    }
    pub fn includes_syscalls(&self) -> bool {
        self.classes.contains(&Class::Syscall)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StrictBreak {
    pub tid: u32,
    pub cpu: u32,
    pub ts_ns: u64,
    pub signal: u32,
    pub progress: u64,
    /// Breaks of this task so far (a counting registration goes on).
    pub count: u32,
    /// The primary cause, as a record's (e.g. the function an IPI ran).
    pub cause: Cause,
    /// Every handler of the interruption, outermost first.
    pub chain: Vec<Cause>,
    /// More nested causes than the chain holds.
    pub truncated: bool,
    /// Who sent the IPI, where the capture saw it.
    pub sender: Option<Sender>,
}

/// The tick on one CPU as timer:tick_stop saw it (CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TickState {
    pub stop_ts_ns: u64,
    pub fail_ts_ns: u64,
    /// TICK_DEP_MASK_* bits of the last failure to stop.
    pub fail_dependency: u32,
    pub fails: u32,
}
