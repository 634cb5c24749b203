//! `isol noise` and `isol check`: measure OS noise on chosen CPUs with a
//! tight TSC loop (oslat class) and name the cause of every gap from the
//! capture engine's records; or, for a running task (`--pid`), report the
//! interruptions it suffers from the capture engine alone.
//!
//! - [`clock`]: the TSC, its calibration and its mapping to CLOCK_MONOTONIC
//! - [`sampler`]: the measuring loop (gaps into preallocated memory, histogram)
//! - [`histogram`]: fixed-width buckets of loop deltas (oslat's format)
//! - [`attribute`]: gap x kernel-entry matching, `hw` for gaps with none
//! - [`inject`]: known interference at known times, for the recall
//! - [`session`]: capture + samplers + draining from a housekeeping CPU
//! - [`report`]: the report model, text (oslat histogram), JSON and HTML

mod arch;
pub mod attribute;
pub mod clock;
pub mod histogram;
pub mod inject;
pub mod report;
pub mod sampler;
pub mod session;

pub use report::Report;
pub use session::{Mode, Progress, SessionOptions};
