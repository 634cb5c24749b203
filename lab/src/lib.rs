//! isol lab: boot Debian's stock kernels (5.10, 6.1, 6.12; cloud, rt or
//! generic flavour) under QEMU (TCG) with isolation parameters and run shell
//! scenarios in a busybox initramfs holding a static `isol`.
//!
//! ```no_run
//! use isol_lab::{Flavour, KernelSpec, Lab, Series};
//! let out = Lab::new()?
//!     .kernel(KernelSpec::new(Series::V6_1, Flavour::Cloud)) // default: 6.12 cloud
//!     .quiet_cpu1() // CPU 1 isolated as far as this kernel can
//!     .run_scenario("info")?; // lab/scenarios/info.sh
//! out.ensure_success()?;
//! let info = out.json_section("info")?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Environment: `ISOL_LAB_CACHE` (kernel cache, default `lab/cache`),
//! `ISOL_LAB_KERNEL_VERSION` (pins per series, e.g. `5.10.0-30,6.12.117+deb12`),
//! `ISOL_LAB_KERNEL_REFRESH=1` (ask apt for a newer kernel than the cached
//! one), `ISOL_LAB_BIN` (prebuilt static isol), `ISOL_LAB_TIMEOUT` (seconds
//! per boot), `ISOL_LAB_KEEP=1` (keep the run directory with initrd and logs).

pub mod arch;
pub mod initramfs;
pub mod isol_bin;
pub mod kernel;
pub mod lock;
pub mod modules;
pub mod qemu;
pub mod scenario;
pub mod testprogs;

pub use kernel::{Flavour, Kernel, KernelSpec, Series};
pub use qemu::Channel;
pub use scenario::{Outcome, Scenario, Section};

use anyhow::{bail, Context, Result};
use initramfs::Source;
use std::path::{Path, PathBuf};
use std::time::Duration;

const INIT: &str = include_str!("../guest/init.sh");
const LIB_SH: &str = include_str!("../guest/lib.sh");

/// Mounts /init makes besides proc, sysfs and devtmpfs, unless told not to.
pub const DEFAULT_MOUNTS: &[&str] = &["tracefs", "debugfs", "bpffs", "cgroup2"];

/// Always on the kernel command line after the console
/// ([`arch::CONSOLE`]; the scenario has the second serial port): a panic
/// powers off at once (with -no-reboot) instead of waiting for the timeout.
pub const BASE_CMDLINE: &str = "quiet panic=-1";

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The lab's isolated machine: CPU 1 nohz_full, out of the scheduler
/// domains and away from managed IRQs, callbacks offloaded, device IRQs on
/// CPU 0; `tsc=reliable` keeps the clocksource watchdog timer (and its
/// nohz kick) from visiting CPU 1 twice a second, as on a tuned machine.
/// For kernels with NO_HZ_FULL and RCU_NOCB_CPU (every 6.1 and 6.12
/// flavour); [`quiet_cpu1_cmdline`] fits it to any kernel.
pub const QUIET_CPU1: &str =
    "nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0 tsc=reliable";

/// [`QUIET_CPU1`] on a kernel without NO_HZ_FULL and RCU_NOCB_CPU (every
/// 5.10 flavour): no nohz_full, no isolcpus nohz flag, no rcu_nocbs (the
/// kernel would not know the parameter and hand it to /init).
pub const QUIET_CPU1_NO_NOHZ_FULL: &str =
    "isolcpus=domain,managed_irq,1 irqaffinity=0 tsc=reliable";

/// The quiet-CPU-1 parameters for `kernel`, from its config: [`QUIET_CPU1`]
/// minus what the kernel is built without.
pub fn quiet_cpu1_cmdline(kernel: &Kernel) -> Result<String> {
    let nohz_full = kernel.config_enabled("CONFIG_NO_HZ_FULL")?;
    let nocb = kernel.config_enabled("CONFIG_RCU_NOCB_CPU")?;
    let mut p = Vec::new();
    if nohz_full {
        p.extend(["nohz_full=1", "isolcpus=nohz,domain,managed_irq,1"]);
    } else {
        p.push("isolcpus=domain,managed_irq,1");
    }
    if nocb {
        p.push("rcu_nocbs=1");
    }
    p.extend(["irqaffinity=0", "tsc=reliable"]);
    Ok(p.join(" "))
}

/// Modules the output channel needs (virtio-serial over PCI); built in on
/// 6.12, loadable on 5.10 and 6.1.
const OUTPUT_MODULES: &[&str] = &["virtio_pci", "virtio_console"];

/// A lab VM configuration; `run_*` boots it (one VM at a time per host).
#[derive(Clone, Debug)]
pub struct Lab {
    workspace: PathBuf,
    cache: PathBuf,
    kernel: KernelSpec,
    quiet_cpu1: bool,
    cmdline: Vec<String>,
    smp: u32,
    memory_mb: u32,
    timeout: Duration,
    files: Vec<(String, Source)>,
    env: Vec<(String, String)>,
    mounts: Vec<String>,
    isol: bool,
    interactive: bool,
    multithread: bool,
    virtio_output: bool,
}

impl Lab {
    /// Locate the workspace and the cache; nothing is fetched or built yet.
    pub fn new() -> Result<Lab> {
        let workspace = match std::env::var_os("ISOL_LAB_WORKSPACE") {
            Some(w) => PathBuf::from(w),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .context("lab crate has no parent directory")?
                .to_owned(),
        };
        let cache = match std::env::var_os("ISOL_LAB_CACHE") {
            Some(c) => PathBuf::from(c),
            None => workspace.join("lab/cache"),
        };
        let timeout = match std::env::var("ISOL_LAB_TIMEOUT") {
            Ok(s) => Duration::from_secs(
                s.parse()
                    .with_context(|| format!("ISOL_LAB_TIMEOUT={s:?}: not a number of seconds"))?,
            ),
            Err(_) => DEFAULT_TIMEOUT,
        };
        Ok(Lab {
            workspace,
            cache,
            kernel: KernelSpec::DEFAULT,
            quiet_cpu1: false,
            cmdline: Vec::new(),
            smp: 2,
            memory_mb: 1024,
            timeout,
            files: Vec::new(),
            env: Vec::new(),
            mounts: DEFAULT_MOUNTS.iter().map(|s| s.to_string()).collect(),
            isol: true,
            interactive: false,
            multithread: std::env::var("ISOL_LAB_TCG").is_ok_and(|v| v == "multi"),
            virtio_output: !std::env::var("ISOL_LAB_OUTPUT").is_ok_and(|v| v == "serial"),
        })
    }

    /// The quiet CPU 1 machine: 2 CPUs, booted with [`QUIET_CPU1`] fitted to
    /// the kernel ([`quiet_cpu1_cmdline`]: no nohz_full on 5.10). Keeps the
    /// kernel chosen with [`Lab::kernel`], before or after this call
    /// (default 6.12 cloud).
    pub fn quiet_cpu1(mut self) -> Self {
        self.quiet_cpu1 = true;
        self.smp(2)
    }

    /// Which kernel to boot: a [`KernelSpec`] (series × flavour), or a
    /// [`Flavour`] alone for that flavour of 6.12.
    pub fn kernel(mut self, kernel: impl Into<KernelSpec>) -> Self {
        self.kernel = kernel.into();
        self
    }

    pub fn kernel_spec(&self) -> KernelSpec {
        self.kernel
    }

    /// Extra kernel parameters (appended; may be called several times).
    pub fn cmdline(mut self, params: &str) -> Self {
        if !params.trim().is_empty() {
            self.cmdline.push(params.trim().to_owned());
        }
        self
    }

    /// Number of guest CPUs (default 2; TCG runs 4 fine on 2 host cores, slower).
    pub fn smp(mut self, cpus: u32) -> Self {
        self.smp = cpus;
        self
    }

    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Per-boot timeout (default 120 s or `ISOL_LAB_TIMEOUT`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Copy a host file (mode kept; e.g. a `gcc -static` test program) or a
    /// directory (recursively) into the guest at `guest`.
    pub fn file(mut self, host: impl Into<PathBuf>, guest: &str) -> Self {
        self.files
            .push((guest.to_owned(), Source::Host(host.into())));
        self
    }

    /// Put `data` into the guest at `guest` with `mode` (e.g. 0o755).
    pub fn bytes(mut self, guest: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((
            guest.to_owned(),
            Source::Bytes {
                data: data.into(),
                mode,
            },
        ));
        self
    }

    /// Environment variable exported to the scenario.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Do not mount one of [`DEFAULT_MOUNTS`] (to test isol without it).
    pub fn without_mount(mut self, name: &str) -> Self {
        self.mounts.retain(|m| m != name);
        self
    }

    /// Do not build or include `/bin/isol` (harness-only scenarios).
    pub fn without_isol(mut self) -> Self {
        self.isol = false;
        self
    }

    /// After the scenario, give an interactive shell on the console (stdio).
    pub fn interactive(mut self, yes: bool) -> Self {
        self.interactive = yes;
        self
    }

    /// Multi-threaded TCG (one host thread per vCPU; default single-threaded
    /// or `ISOL_LAB_TCG=multi`): for tests that need vCPUs to run truly in
    /// parallel. See qemu.rs for why it is not the default.
    pub fn tcg_multithread(mut self, yes: bool) -> Self {
        self.multithread = yes;
        self
    }

    /// The scenario's output through the virtio port (default) or, with
    /// `false` (or `ISOL_LAB_OUTPUT=serial`), through ttyS1 as before the
    /// port existed: to compare, or to rule the port out.
    pub fn virtio_output(mut self, yes: bool) -> Self {
        self.virtio_output = yes;
        self
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Fetch (or find in the cache) the configured kernel.
    pub fn fetch_kernel(&self) -> Result<Kernel> {
        kernel::fetch(self.kernel, &self.cache)
    }

    /// Run `lab/scenarios/NAME.sh`.
    pub fn run_scenario(&self, name: &str) -> Result<Outcome> {
        self.run(&Scenario::Named(name.to_owned()))
    }

    /// Run a script given as text.
    pub fn run_script(&self, script: &str) -> Result<Outcome> {
        self.run(&Scenario::Inline(script.to_owned()))
    }

    /// Boot once and run `scenario`. Err if the guest never reported the
    /// scenario's exit status (boot failure, panic, timeout); a scenario that
    /// fails is an Ok outcome with a nonzero `status`.
    pub fn run(&self, scenario: &Scenario) -> Result<Outcome> {
        let script = match scenario {
            Scenario::Named(name) => {
                let path = self
                    .workspace
                    .join("lab/scenarios")
                    .join(format!("{name}.sh"));
                std::fs::read_to_string(&path)
                    .with_context(|| format!("scenario {name}: reading {}", path.display()))?
            }
            Scenario::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?,
            Scenario::Inline(text) => text.clone(),
        };
        let kernel = self.fetch_kernel()?;
        let busybox = Path::new("/bin/busybox");
        isol_bin::ensure_static(busybox)
            .context("the lab needs a static /bin/busybox: apt-get install busybox-static")?;

        let modules = if self.virtio_output {
            kernel
                .modules(OUTPUT_MODULES)
                .context("modules for the output channel")?
        } else {
            Vec::new()
        };
        let mut entries: Vec<(String, Source)> = vec![
            ("/bin/busybox".into(), Source::Host(busybox.into())),
            ("/init".into(), bytes(INIT, 0o755)),
            ("/lab/lib.sh".into(), bytes(LIB_SH, 0o644)),
            (
                "/lab/config.sh".into(),
                bytes(&self.config_sh(&kernel, &modules), 0o644),
            ),
            ("/lab/scenario.sh".into(), bytes(&script, 0o755)),
        ];
        if self.isol {
            entries.push((
                "/bin/isol".into(),
                Source::Host(isol_bin::static_isol(&self.workspace)?),
            ));
            entries.push((
                "/bin/chisol".into(),
                Source::Host(isol_bin::static_chisol(&self.workspace)?),
            ));
        }
        for m in &modules {
            entries.push((
                format!("/lab/modules/{}", m.file_name()),
                Source::Bytes {
                    data: m.elf()?,
                    mode: 0o644,
                },
            ));
        }
        entries.extend(self.files.iter().cloned());

        let workdir = tempfile::Builder::new()
            .prefix("isol-lab-")
            .tempdir()
            .context("creating the run directory")?;
        let initrd = workdir.path().join("initrd.cpio");
        initramfs::write(&initrd, &entries)?;

        let mut cmdline = format!("{} {BASE_CMDLINE}", arch::CONSOLE);
        if self.quiet_cpu1 {
            cmdline.push(' ');
            cmdline.push_str(&quiet_cpu1_cmdline(&kernel)?);
        }
        for p in &self.cmdline {
            cmdline.push(' ');
            cmdline.push_str(p);
        }
        // Only 2 host cores: one VM at a time, across threads and processes.
        let waiting = std::time::Instant::now();
        let slot = lock::FileLock::exclusive(&std::env::temp_dir().join("isol-lab-vm.lock"))?;
        let slot_wait = waiting.elapsed();
        let boot = qemu::Boot {
            vmlinuz: &kernel.vmlinuz,
            initrd: &initrd,
            append: cmdline.clone(),
            smp: self.smp,
            memory_mb: self.memory_mb,
            timeout: self.timeout,
            workdir: workdir.path(),
            interactive: self.interactive,
            multithread: self.multithread,
            virtio_output: self.virtio_output,
        };
        let mut raw = qemu::boot(&boot)?;
        let mut boot_retries = 0;
        // A kernel crash before /init ran cannot come from the scenario: boot
        // once more rather than fail on emulator flakiness, and say so.
        if raw.boot_time.is_none() && !raw.timed_out && crashed(&raw.console) {
            eprintln!(
                "isol-lab: guest kernel crashed during boot; retrying once. Console tail:\n{}",
                tail(&raw.console, 15)
            );
            boot_retries = 1;
            raw = qemu::boot(&boot)?;
        }
        drop(slot);
        let (guest_uptime, stdout, status) = scenario::split_output(&raw.output);
        let mut outcome = Outcome {
            scenario: scenario.label(),
            status: status.unwrap_or(-1),
            stdout,
            console: raw.console,
            boot_time: raw.boot_time.unwrap_or(raw.total_time),
            guest_uptime,
            total_time: raw.total_time,
            kernel_release: kernel.release.clone(),
            kernel: kernel.spec,
            output_channel: raw.channel,
            cmdline,
            boot_retries,
            slot_wait,
        };
        if std::env::var("ISOL_LAB_KEEP").is_ok_and(|v| v == "1") {
            let kept = workdir.keep();
            outcome.stdout.push_str(&format!(
                "\n[isol-lab: run directory kept at {}]\n",
                kept.display()
            ));
        }
        if status.is_none() {
            let what = if raw.timed_out {
                format!("timed out after {:.0}s", self.timeout.as_secs_f64())
            } else if raw.boot_time.is_none() {
                format!(
                    "did not start: the guest stopped before /init ran ({:?})",
                    raw.qemu_status
                )
            } else {
                "ended without reporting an exit status (guest crashed or powered off)".into()
            };
            let mut report = outcome.report(&what);
            if !raw.qemu_stderr.trim().is_empty() {
                report.push_str(&format!(
                    "\n--- qemu stderr ---\n{}",
                    tail(&raw.qemu_stderr, 10)
                ));
            }
            bail!(report);
        }
        Ok(outcome)
    }

    /// Shell code sourced by /init before the scenario.
    fn config_sh(&self, kernel: &Kernel, modules: &[modules::Module]) -> String {
        let modules: Vec<String> = modules.iter().map(|m| m.file_name()).collect();
        let mut s = format!(
            "LAB_MOUNTS={}\nLAB_SHELL={}\nLAB_MODULES={}\nLAB_OUTPUT_PORT={}\n\
             export LAB_SMP={}\nexport LAB_FLAVOUR={}\nexport LAB_SERIES={}\n\
             export LAB_KERNEL={}\n",
            shell_quote(&self.mounts.join(" ")),
            u8::from(self.interactive),
            shell_quote(&modules.join(" ")),
            if self.virtio_output {
                qemu::OUTPUT_PORT
            } else {
                ""
            },
            self.smp,
            kernel.spec.flavour,
            kernel.spec.series,
            kernel.spec,
        );
        for (k, v) in &self.env {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        s
    }
}

/// Whether the console shows a kernel fault (not a deterministic panic such
/// as "Unable to mount root fs", which a retry would not fix).
fn crashed(console: &str) -> bool {
    [
        "Oops:",
        "BUG:",
        "general protection fault",
        "Fatal exception",
    ]
    .iter()
    .any(|m| console.contains(m))
}

fn bytes(text: &str, mode: u32) -> Source {
    Source::Bytes {
        data: text.as_bytes().to_vec(),
        mode,
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_with_config(dir: &Path, name: &str, config: &str) -> Kernel {
        let path = dir.join(name);
        std::fs::write(&path, config).unwrap();
        Kernel {
            spec: KernelSpec::DEFAULT,
            package: String::new(),
            version: String::new(),
            release: String::new(),
            vmlinuz: PathBuf::new(),
            modules_dir: PathBuf::new(),
            config: path,
        }
    }

    #[test]
    fn quiet_cpu1_follows_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let full = kernel_with_config(
            dir.path(),
            "full",
            "CONFIG_NO_HZ_FULL=y\nCONFIG_RCU_NOCB_CPU=y\nCONFIG_HZ=250\n",
        );
        assert_eq!(quiet_cpu1_cmdline(&full).unwrap(), QUIET_CPU1);
        // 5.10's configs: neither option is even mentioned.
        let none = kernel_with_config(dir.path(), "none", "CONFIG_NO_HZ_IDLE=y\n");
        assert_eq!(quiet_cpu1_cmdline(&none).unwrap(), QUIET_CPU1_NO_NOHZ_FULL);
        let off = kernel_with_config(
            dir.path(),
            "off",
            "# CONFIG_NO_HZ_FULL is not set\n# CONFIG_RCU_NOCB_CPU is not set\n",
        );
        assert_eq!(quiet_cpu1_cmdline(&off).unwrap(), QUIET_CPU1_NO_NOHZ_FULL);
        assert_eq!(off.config_value("CONFIG_HZ").unwrap(), None);
        assert_eq!(
            full.config_value("CONFIG_HZ").unwrap().as_deref(),
            Some("250")
        );
    }
}
