//! Boot a lab scenario by hand:
//!   cargo run -p isol-lab -- --kernel 6.1-cloud --quiet-cpu1 info
//!   cargo run -p isol-lab -- --kernel 5.10-rt --cmdline 'isolcpus=1' lab/scenarios/info.sh
//!   cargo run -p isol-lab -- --shell --cmdline 'nohz_full=1'      # interactive busybox shell

use anyhow::Result;
use clap::Parser;
use isol_lab::{KernelSpec, Lab, Scenario};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Boot a Debian kernel under QEMU and run an isol lab scenario")]
struct Args {
    /// Kernel: SERIES-FLAVOUR, series 5.10, 6.1 or 6.12, flavour cloud, rt or
    /// amd64 (e.g. 5.10-cloud); a bare flavour means 6.12.
    #[arg(long, default_value = "6.12-cloud")]
    kernel: KernelSpec,
    /// Isolate CPU 1 as the lab's tests do, as far as the kernel can
    /// (nohz_full only where it is built in).
    #[arg(long)]
    quiet_cpu1: bool,
    /// Extra kernel parameters.
    #[arg(long, default_value = "")]
    cmdline: String,
    #[arg(long, default_value_t = 2)]
    smp: u32,
    /// Timeout in seconds (ignored with --shell).
    #[arg(long)]
    timeout: Option<u64>,
    /// Extra files, HOST:GUEST.
    #[arg(long = "file", value_name = "HOST:GUEST")]
    files: Vec<String>,
    /// Do not build or include /bin/isol.
    #[arg(long)]
    no_isol: bool,
    /// After the scenario, an interactive shell on the console (exit to power off).
    #[arg(long)]
    shell: bool,
    /// Print the full kernel console.
    #[arg(long)]
    console: bool,
    /// Scenario: a script path, or a name in lab/scenarios. Default: nothing.
    scenario: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut lab = Lab::new()?.kernel(args.kernel);
    if args.quiet_cpu1 {
        lab = lab.quiet_cpu1();
    }
    lab = lab
        .cmdline(&args.cmdline)
        .smp(args.smp)
        .interactive(args.shell);
    if let Some(t) = args.timeout {
        lab = lab.timeout(Duration::from_secs(t));
    }
    if args.no_isol {
        lab = lab.without_isol();
    }
    for f in &args.files {
        let (host, guest) = f
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--file {f:?}: expected HOST:GUEST"))?;
        lab = lab.file(host, guest);
    }
    let scenario = match args.scenario {
        None => Scenario::Inline(String::new()),
        Some(s) if PathBuf::from(&s).exists() => Scenario::File(s.into()),
        Some(s) => Scenario::Named(s.trim_end_matches(".sh").to_owned()),
    };
    let out = lab.run(&scenario)?;
    if args.console {
        eprintln!("--- kernel console ---\n{}", out.console);
    }
    print!("{}", out.stdout);
    eprintln!("{}", out.summary());
    std::process::exit(out.status);
}
