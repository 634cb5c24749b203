//! One module per subcommand, as rtla has one file per tool mode.

pub mod apply;
pub mod args;
pub mod audit;
pub mod census;
pub mod check;
pub mod doctor;
pub mod info;
pub mod noise;
pub mod revert;
pub mod serve;
pub mod status;
pub mod watch;
