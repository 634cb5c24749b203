//! `isol census`: the IPI deferral series' measurement in one command. A housekeeping
//! load runs on the CPUs that are not isolated while the capture engine
//! records every IPI and interruption of the isolated ones; the census
//! counts them by callback, by sender stack and per minute, imports the
//! same table from a trace-cmd report, and compares two runs.

pub mod compare;
pub mod import;
pub mod load;
pub mod report;
pub mod run;
pub mod table;

pub use compare::Comparison;
pub use report::Report;
pub use table::{Census, Event, EventSender};
