//! isol's capture engine: BPF programs on the kernel's entry tracepoints
//! record every interruption of the watched CPUs with its cause chain and,
//! for IPIs, the sender's CPU, task, callsite and stack; strict mode
//! signals a registered task on its first interruption.

mod skel {
    #![allow(clippy::all, unused_imports, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/capture.skel.rs"));
}

pub mod arch;
pub mod capture;
pub mod cause;
pub mod ksyms;
pub mod kvm;
pub mod page;
pub mod record;
pub mod strict;
pub mod threshold;
pub use arch::vmexit;

pub use capture::{Capture, Options};
pub use cause::{Class, Kind};
pub use page::StatusPage;
pub use record::{Cause, Record};
pub use strict::{StrictBreak, StrictConfig, TickState};

use serde::Serialize;

/// In-kernel aggregate for one CPU and primary cause.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    pub cpu: u32,
    pub cause: Cause,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Counts per log2(ns) bucket: bucket i holds [2^i, 2^(i+1)) ns.
    pub hist: Vec<u64>,
}

/// What was dropped, by reason. Never silently: `isol watch` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    /// Records lost because the ring buffer was full (aggregates kept).
    pub ringbuf: u64,
    /// Interruptions not aggregated because the table was full.
    pub aggregation: u64,
    /// Sender stacks not captured.
    pub stack: u64,
    /// Senders not remembered (table full).
    pub sender: u64,
    /// Unbalanced handler exits seen (e.g. attached mid-handler).
    pub nesting: u64,
    /// Preempted tasks whose wait was not timed (their table was full).
    pub displaced: u64,
    /// Sender stacks not taken by choice (sampled; see
    /// `Options::all_stacks`): the IPI and its sender, callsite and
    /// function are there, the stack is not. Not a loss of records: not
    /// in [`Drops::total`].
    pub stack_sampled: u64,
    /// Senders of IPIs that their interruption's record had no room for
    /// (it keeps two): the IPIs are counted and named all the same.
    pub extra_sender: u64,
}

impl Drops {
    /// Every reason with its count, named as in JSON and metrics.
    pub fn reasons(&self) -> [(&'static str, u64); 8] {
        [
            ("ringbuf", self.ringbuf),
            ("aggregation", self.aggregation),
            ("stack", self.stack),
            ("sender", self.sender),
            ("nesting", self.nesting),
            ("displaced", self.displaced),
            ("stack_sampled", self.stack_sampled),
            ("extra_sender", self.extra_sender),
        ]
    }

    /// Everything lost (sampled stacks are not: they were not taken).
    pub fn total(&self) -> u64 {
        self.reasons()
            .iter()
            .filter(|r| r.0 != "stack_sampled")
            .map(|r| r.1)
            .sum()
    }
}
