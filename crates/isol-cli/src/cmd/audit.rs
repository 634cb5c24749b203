//! `isol audit [--cpus LIST] [--json]`: every item of the quiet-CPU
//! checklist for the CPUs, with the noise it causes and the exact fix.
//! Exit 0 if nothing fails, 1 if an item fails, 2 on error.
//! JSON schema `isol.audit/1`: docs/json/audit.md.

use crate::output::json;
use isol_cpulist::CpuSet;
use isol_system::Root;
use isol_tune::{audit, Status};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// CPUs to check (default: the isolated ones).
    #[arg(long)]
    cpus: Option<CpuSet>,
    #[arg(long)]
    json: bool,
    /// Show the detail of passing items too.
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    root: RootArg,
}

/// Hidden: read and write a fixture tree instead of / (tests). Also
/// `ISOL_ROOT`.
#[derive(clap::Args, Clone)]
pub struct RootArg {
    #[arg(long = "root", hide = true)]
    pub dir: Option<PathBuf>,
}

impl RootArg {
    pub fn root(&self) -> Root {
        self.dir
            .clone()
            .or_else(|| std::env::var_os("ISOL_ROOT").map(PathBuf::from))
            .map(Root::at)
            .unwrap_or_default()
    }
}

pub fn tag(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
        Status::Skip => "skip",
    }
}

pub fn print_boot(b: &isol_tune::audit::BootAdvice) {
    if b.params.is_empty() {
        println!("boot parameters: nothing missing");
    } else {
        println!("boot parameters still needed: {}", b.params.join(" "));
        print!("{}", b.grub);
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = a.root.root();
    let r = audit(&root, a.cpus.as_ref())?;
    if a.json {
        json(&r)?;
    } else {
        println!(
            "isol audit: CPUs {} (housekeeping {}), kernel {}",
            r.cpus, r.housekeeping, r.kernel
        );
        // Failures first, then warnings, then the rest, in checklist order.
        let mut items: Vec<_> = r.items.iter().collect();
        items.sort_by_key(|i| std::cmp::Reverse(i.status));
        for i in items {
            let quiet = matches!(i.status, Status::Pass | Status::Skip);
            println!("{}  {:<30} {}", tag(i.status), i.id, i.title);
            if quiet {
                if a.verbose && !i.detail.is_empty() {
                    println!("      {}", i.detail);
                }
                continue;
            }
            println!("      found: {}", i.detail);
            println!("      noise: {}", i.noise);
            if let Some(f) = &i.fix {
                for (n, l) in f.lines().enumerate() {
                    println!("      {} {l}", if n == 0 { "fix:" } else { "    " });
                }
            }
        }
        println!();
        print_boot(&r.boot);
        if r.items.iter().any(|i| !i.changes.is_empty()) {
            println!(
                "runtime fixes: isol apply --cpus {} (journaled; undo with isol revert)",
                r.cpus
            );
        }
        println!("verdict: {}", r.verdict.summary);
    }
    Ok(if r.verdict.status == Status::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
