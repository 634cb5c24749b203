//! `isol revert`: restore every value the journal recorded, byte for
//! byte. Exit 0 when all is restored (the journal is then removed), 1 if
//! something could not be (the journal is kept for another try).

use super::audit::RootArg;
use crate::output::json;
use isol_tune::journal;
use isol_tune::revert::Outcome;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Journal path (default $ISOL_JOURNAL or /var/lib/isol/journal.json).
    #[arg(long)]
    journal: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    root: RootArg,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = a.root.root();
    let path = journal::path(a.journal.as_deref());
    let r = isol_tune::revert(&root, &path)?;
    if a.json {
        json(&r)?;
    } else if !r.found {
        println!(
            "isol revert: no journal at {}: nothing to restore",
            path.display()
        );
    } else {
        for e in &r.entries {
            let what = match e.outcome {
                Outcome::Restored => "restored ",
                Outcome::Unchanged => "unchanged",
                Outcome::Gone => "gone     ",
                Outcome::Failed => "FAILED   ",
            };
            let target = match &e.change {
                isol_tune::Change::Write { path, .. } => path.display().to_string(),
                isol_tune::Change::Affinity { tid, comm, .. } => {
                    format!("affinity of {comm} (tid {tid})")
                }
            };
            println!("{what} {target} = {}", e.original.trim_end());
            if let Some(err) = &e.error {
                println!("          error: {err}");
            }
        }
        if r.complete {
            println!("all values restored; journal {} removed", path.display());
        } else {
            println!(
                "some values could not be restored; journal {} kept",
                path.display()
            );
        }
    }
    Ok(if r.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
