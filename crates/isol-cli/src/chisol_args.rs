//! chisol's command line, in the library so that packaging/ generates its
//! man page and completions from the definition the binary parses.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "chisol", version, about = "Run a program under task isolation")]
pub struct Args {
    /// Kernel activities to quiesce: vmstat_sync, lru_drain, timers, all.
    #[arg(short = 'q', long, default_value = "vmstat_sync")]
    pub quiesce: String,
    /// Of those, the ones done at activation only (one-shot mode).
    #[arg(short = 'o', long, default_value = "")]
    pub oneshot: String,
    /// Activate isolation before running the program.
    #[arg(short = 'a', long)]
    pub activate: bool,
    /// What the program's children inherit: conf, or active (implies conf).
    #[arg(short = 'I', long)]
    pub inherit: Option<String>,
    /// Show the task isolation features and the inherited configuration.
    #[arg(short = 'i', long)]
    pub info: bool,
    /// CPU to run on (default: the one CPU this shell is pinned to, or the
    /// first isolated CPU).
    #[arg(short = 'c', long)]
    pub cpu: Option<u32>,
    /// Strict mode: the first interruption signals the program.
    #[arg(long)]
    pub strict: bool,
    /// Signal for strict mode (number or name, default KILL).
    #[arg(long, default_value = "KILL")]
    pub signal: String,
    /// How long to wait for the tick to stop (ms).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Accept a CPU the kernel does not isolate (tests on ordinary machines).
    #[arg(long)]
    pub allow_unisolated: bool,
    /// With -a: preload this libisol.so into the program so that its memory
    /// is locked and prefaulted in the new image (mlockall does not survive
    /// exec). Dynamically linked programs only.
    #[arg(long, value_name = "LIBISOL_SO", requires = "activate")]
    pub preload: Option<std::path::PathBuf>,
    /// Act on a running process instead of starting one (needs isold): it
    /// must already be pinned to one CPU. Registers it (with -a) or, with
    /// --deactivate, ends its registration.
    #[arg(short = 'p', long)]
    pub pid: Option<u32>,
    /// With --pid: end the process's isolation.
    #[arg(short = 'd', long, requires = "pid")]
    pub deactivate: bool,
    /// With --pid: act on the process's threads whose name matches this
    /// glob, each registered on the CPU it is pinned to, not on the whole
    /// process: a VMM's vCPU threads (QEMU names them `CPU 0/KVM`, ...).
    #[arg(long, value_name = "GLOB", requires = "pid")]
    pub threads: Option<String>,
    /// Print the activation report and the final status as JSON (stderr).
    #[arg(long)]
    pub json: bool,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
}
