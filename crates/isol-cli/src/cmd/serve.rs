//! `isol serve`: the isold daemon (see crates/isol-daemon).

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); re-read on SIGHUP.
    #[arg(short, long, default_value = isol_daemon::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Listen address for /metrics, overriding the config (default
    /// 127.0.0.1:9977: loopback only unless you choose otherwise).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Stop after this many seconds (default: until SIGTERM).
    #[arg(short = 'D', long)]
    duration: Option<f64>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    isol_daemon::serve(isol_daemon::ServeOptions {
        config: a.config,
        listen: a.listen,
        duration: a.duration.map(Duration::from_secs_f64),
    })?;
    Ok(ExitCode::SUCCESS)
}
