//! `isol doctor`: can isol capture here, and what can it tell? It checks
//! privileges and kernel features, then loads and attaches the capture it
//! would use (and detaches it) and prints, per capability, what this
//! kernel gives and how. Exit 0 only when the capture really works here;
//! otherwise 1, naming why.

use crate::output::json;
use isol_capture::capture::Capability;
use isol_capture::{Capture, Options};
use isol_system::select::{select, WhenNoneIsolated};
use isol_system::{Root, SystemModel};
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    json: bool,
    /// Only check privileges and kernel features; do not load the capture
    /// (loading patches kernel text, which interrupts every CPU once).
    #[arg(long)]
    no_load: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    ready: bool,
    kernel: &'a str,
    /// Blocks capture (watch, noise, census, strict mode).
    capture: &'a [isol_system::Missing],
    /// Limits isolation itself, but capture still works.
    isolation: &'a [isol_system::Missing],
    /// The capture was loaded, attached and detached (CPUs it watched).
    loaded_on: Option<String>,
    /// Why loading the capture failed.
    load_error: Option<String>,
    /// What this kernel gives, and how.
    capabilities: Vec<Capability>,
    /// Hooks this kernel lacks (their programs are left out).
    skipped: Vec<String>,
    /// Whether VM exits of vCPU threads can be captured, from what.
    vm: isol_capture::kvm::VmSupport,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let root = Root::default();
    let m = SystemModel::probe(&root);
    let capture = m.features.missing_for_capture();
    let isolation = m.features.missing_for_isolation();
    let mut loaded_on = None;
    let mut load_error = None;
    let mut capabilities = Vec::new();
    let mut skipped = Vec::new();
    let mut vm_status = None;
    if capture.is_empty() && !a.no_load {
        match select(&root, None, WhenNoneIsolated::LastOnline) {
            Err(e) => load_error = Some(e),
            Ok(sel) => {
                isol_system::affinity::pin_current_thread(&sel.housekeeping)
                    .map_err(anyhow::Error::msg)?;
                match Capture::start(Options {
                    cpus: sel.watched.clone(),
                    ..Default::default()
                }) {
                    Ok(cap) => {
                        capabilities = cap.sources.capabilities();
                        skipped = cap.skipped.clone();
                        vm_status = Some(cap.vm.clone());
                        loaded_on = Some(sel.watched.to_string());
                        // Dropping it detaches every program.
                    }
                    Err(e) => load_error = Some(format!("{e:#}")),
                }
            }
        }
    }
    let ready = capture.is_empty() && load_error.is_none();
    // Probed again: loading the capture may have mounted tracefs. Without
    // it (unprivileged) the kvm events cannot be seen, as by the capture.
    let tfs = isol_system::tracefs::Tracefs::probe(&root, false)
        .path()
        .map(|p| p.to_path_buf());
    let vm = isol_capture::kvm::support(tfs.as_deref(), &m.kernel.release, vm_status.as_ref());
    if a.json {
        json(&Report {
            schema: "isol.doctor/2",
            ready,
            kernel: &m.kernel.release,
            capture: &capture,
            isolation: &isolation,
            loaded_on,
            load_error,
            capabilities,
            skipped,
            vm,
        })?;
    } else {
        for x in &capture {
            eprintln!("isol: missing {}: {}\n  fix: {}", x.what, x.why, x.fix);
        }
        if let Some(e) = &load_error {
            eprintln!(
                "isol: the capture does not load on this kernel ({}): {e}",
                m.kernel.release
            );
        }
        for x in &isolation {
            eprintln!("isol: note ({}): {}\n  fix: {}", x.what, x.why, x.fix);
        }
        for c in &capabilities {
            println!(
                "{:<17} {:<3} {}",
                c.name,
                if c.available { "yes" } else { "no" },
                c.how
            );
        }
        println!(
            "{:<17} {:<3} {}",
            "vm_exits",
            if vm.available { "yes" } else { "no" },
            vm.how
        );
        if ready {
            match &loaded_on {
                Some(c) => println!(
                    "ready: isol can capture on this machine ({}; loaded and detached on CPU {c})",
                    m.kernel.release
                ),
                None => println!(
                    "ready (not loaded: --no-load): privileges and kernel features are there"
                ),
            }
        }
    }
    Ok(if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
