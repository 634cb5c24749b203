//! The `isol` binary; the command line and its dispatch are in lib.rs.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    isol_cli::run(isol_cli::Cli::parse())
}
