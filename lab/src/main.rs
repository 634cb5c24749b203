//! Boot a lab scenario by hand:
//!   cargo run -p isol-lab -- --kernel cloud --cmdline 'nohz_full=1 ...' lab/scenarios/info.sh
//!   cargo run -p isol-lab -- --shell --cmdline 'nohz_full=1'      # interactive busybox shell

use anyhow::Result;
use clap::Parser;
use isol_lab::{Flavour, Lab, Scenario};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Boot a Debian kernel under QEMU and run an isol lab scenario")]
struct Args {
    /// Kernel flavour: cloud or rt.
    #[arg(long, default_value = "cloud")]
    kernel: Flavour,
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
    let mut lab = Lab::new()?
        .kernel(args.kernel)
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
