//! `isol doctor`: can isol capture here? Exit 0 if yes; otherwise exit 1
//! and name each missing privilege or kernel feature with its fix.

use crate::output::json;
use isol_system::{Root, SystemModel};
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    ready: bool,
    /// Blocks capture (watch, noise, census, strict mode).
    capture: &'a [isol_system::Missing],
    /// Limits isolation itself, but capture still works.
    isolation: &'a [isol_system::Missing],
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let m = SystemModel::probe(&Root::default());
    let capture = m.features.missing_for_capture();
    let isolation = m.features.missing_for_isolation();
    let ready = capture.is_empty();
    if a.json {
        json(&Report {
            schema: "isol.doctor/1",
            ready,
            capture: &capture,
            isolation: &isolation,
        })?;
    } else {
        for x in &capture {
            eprintln!("isol: missing {}: {}\n  fix: {}", x.what, x.why, x.fix);
        }
        for x in &isolation {
            eprintln!("isol: note ({}): {}\n  fix: {}", x.what, x.why, x.fix);
        }
        if ready {
            println!("ready: isol can capture on this machine");
        }
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
