//! One module per subcommand, as rtla has one file per tool mode.

pub mod doctor;
pub mod info;
