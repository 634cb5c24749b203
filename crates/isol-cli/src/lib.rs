//! The `isol` command. Thin: parses arguments and hands each subcommand
//! to its module in `cmd/`, which calls the library crates. A library so
//! that packaging/ generates the man pages and shell completions from the
//! same clap definitions (`Cli`, `chisol_args::Args`) the binaries parse.

pub mod chisol_args;
mod cmd;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "isol",
    version,
    about = "CPU isolation for latency-critical programs on stock Linux kernels"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: measure this machine's isolation and explain the verdict.
    Check(cmd::check::Args),
    /// Measure OS noise on CPUs (TSC loop) or a task, each gap with its cause.
    Noise(cmd::noise::Args),
    /// Show how this machine isolates CPUs and what still lands on them.
    Info(cmd::info::Args),
    /// Check that isol can capture on this machine; name what is missing.
    Doctor(cmd::doctor::Args),
    /// Watch every interruption of isolated CPUs (or a process), with its cause.
    Watch(cmd::watch::Args),
    /// Check the isolation settings of CPUs against the quiet-CPU checklist.
    Audit(cmd::audit::Args),
    /// Make the audit's runtime fixes (journaled); print boot parameters needed.
    Apply(cmd::apply::Args),
    /// Restore every value isol apply changed, byte for byte.
    Revert(cmd::revert::Args),
    /// IPI and interruption census of isolated CPUs under a housekeeping
    /// load; --import a trace-cmd report; --compare two runs.
    Census(cmd::census::Args),
    /// Run isold: watch the isolated CPUs continuously, export Prometheus metrics.
    Serve(cmd::serve::Args),
    /// Isolated tasks: mode, CPU, breaks so far and the last cause (from isold).
    Status(cmd::status::Args),
}

/// Run the parsed command line; errors are printed, exit status 2.
pub fn run(cli: Cli) -> ExitCode {
    let r = match cli.cmd {
        Command::Check(a) => cmd::check::run(a),
        Command::Noise(a) => cmd::noise::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Doctor(a) => cmd::doctor::run(a),
        Command::Watch(a) => cmd::watch::run(a),
        Command::Audit(a) => cmd::audit::run(a),
        Command::Apply(a) => cmd::apply::run(a),
        Command::Revert(a) => cmd::revert::run(a),
        Command::Census(a) => cmd::census::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Status(a) => cmd::status::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isol: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
