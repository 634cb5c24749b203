//! isol's model of a machine's CPU isolation state.
//!
//! Every command (info, audit, watch, check) reads the machine through
//! [`SystemModel::probe`], so they agree on what "isolated" means. All
//! readers take a [`Root`], so tests run them on fixture trees.

pub mod affinity;
pub mod arch;
pub mod cgroup;
pub mod clock;
pub mod cmdline;
pub mod error;
pub mod features;
pub mod irq;
pub mod model;
pub mod root;
pub mod select;
pub mod signal;
pub mod tasks;
pub mod topology;
pub mod tracefs;
pub mod units;

pub use error::{Error, Missing};
pub use isol_cpulist::CpuSet;
pub use model::SystemModel;
pub use root::Root;
