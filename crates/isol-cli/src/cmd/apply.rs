//! `isol apply --cpus LIST [--dry-run]`: make the audit's runtime fixes,
//! journaling each original value first; print the boot parameters still
//! needed. Exit 0 if every change was made, 1 if the kernel refused some.

use super::audit::{print_boot, RootArg};
use crate::output::json;
use isol_cpulist::CpuSet;
use isol_tune::apply::{ApplyOptions, Outcome};
use isol_tune::journal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to make quiet.
    #[arg(long)]
    cpus: CpuSet,
    /// Show what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
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
    let opts = ApplyOptions {
        journal: journal::path(a.journal.as_deref()),
        dry_run: a.dry_run,
        fault_after: None,
    };
    let r = isol_tune::apply(&root, &a.cpus, &opts)?;
    if a.json {
        json(&r)?;
    } else {
        if r.changes.is_empty() {
            println!("isol apply: CPUs {}: no runtime change needed", r.cpus);
        }
        for c in &r.changes {
            let what = match c.outcome {
                Outcome::Planned => "would",
                Outcome::Applied => "done ",
                Outcome::Failed => "FAIL ",
            };
            let orig = c
                .original
                .as_deref()
                .map(|o| format!("  (was {})", o.trim_end()))
                .unwrap_or_default();
            println!("{what} {:<26} {}{orig}", c.item, c.command);
            if let Some(e) = &c.error {
                println!("      error: {e}");
            }
        }
        println!();
        print_boot(&r.boot);
        if !r.remaining.is_empty() {
            println!(
                "still failing, not fixable at run time: {}",
                r.remaining.join(", ")
            );
        }
        if !r.dry_run && !r.changes.is_empty() {
            println!(
                "journal: {} (isol revert restores every value)",
                r.journal.display()
            );
        }
    }
    Ok(if r.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
