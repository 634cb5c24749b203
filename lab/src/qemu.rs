//! Boot a kernel + initramfs under QEMU (TCG) and collect its output.
//!
//! ttyS0 (kernel console) -> `console.log`; the scenario's output (see
//! guest/init.sh) -> `output.log` through a virtio-serial port named
//! [`OUTPUT_PORT`]: the emulated 16550 UART costs a trapped port write per
//! byte and an interrupt per 16 (1 MB in ~2.7 s under TCG; the port takes
//! it in ~0.5 s). ttyS1 ->
//! `serial1.log` is the fallback when the guest finds no port (a kernel
//! whose virtio modules did not load).
//! `-nodefaults -display none` instead of `-nographic`: nothing is
//! multiplexed on QEMU's stdio, so QEMU cannot block on or eat the test's
//! terminal.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::arch::QEMU;

/// Marker init prints on the output channel right before the scenario starts.
pub const READY_MARKER: &str = "@@ISOL-LAB-READY";

/// Name of the virtio-serial port for the scenario's output (the guest finds
/// its /dev/vportNpM by this name in /sys/class/virtio-ports).
pub const OUTPUT_PORT: &str = "isol-lab.out";

/// Which way the scenario's output reached the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The virtio-serial port [`OUTPUT_PORT`].
    Virtio,
    /// ttyS1, the fallback.
    Serial,
}

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub append: String,
    pub smp: u32,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// Where the logs are written.
    pub workdir: &'a Path,
    /// Console on QEMU's stdio (interactive `--shell`); no timeout.
    pub interactive: bool,
    /// One host thread per vCPU (MTTCG) instead of one for all.
    pub multithread: bool,
    /// Offer the virtio output port (else the guest writes to ttyS1).
    pub virtio_output: bool,
}

pub struct Raw {
    pub console: String,
    /// The scenario's output from the channel that carried the ready marker.
    pub output: String,
    /// None if the guest never got as far as the ready marker.
    pub channel: Option<Channel>,
    /// Host time from spawning QEMU until the ready marker appeared.
    pub boot_time: Option<Duration>,
    pub total_time: Duration,
    pub timed_out: bool,
    pub qemu_status: Option<std::process::ExitStatus>,
    pub qemu_stderr: String,
}

/// Kills QEMU if the run is abandoned (timeout, error, panic in the caller).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn find_qemu() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(QEMU))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{QEMU} not found: apt-get install {}",
                crate::arch::QEMU_PACKAGE
            )
        })
}

pub fn boot(b: &Boot) -> Result<Raw> {
    let qemu = find_qemu()?;
    let console_log = b.workdir.join("console.log");
    let output_log = b.workdir.join("output.log");
    let serial_log = b.workdir.join("serial1.log");
    let stderr_log = b.workdir.join("qemu.stderr");
    let mut cmd = Command::new(qemu);
    // KVM cannot boot stock kernels on these hosts: always TCG. Single-threaded
    // TCG by default: it booted faster here (2.7 s vs 3.1 s guest uptime), leaves
    // a host core free, and avoids a rare guest oops seen with MTTCG (a jump
    // into the middle of a just-patched static branch in enqueue_timer: a
    // cross-vCPU code-patching race in QEMU 7.2's multi-threaded TCG).
    let accel = if b.multithread {
        "tcg,thread=multi"
    } else {
        "tcg,thread=single"
    };
    cmd.args(["-accel", accel])
        .args(crate::arch::QEMU_MACHINE)
        .args(["-smp", &b.smp.to_string()])
        .args(["-m", &format!("{}M", b.memory_mb)])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initrd)
        .args(["-append", &b.append]);
    if b.interactive {
        cmd.args(["-serial", "mon:stdio"]);
        cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit());
    } else {
        cmd.arg("-serial")
            .arg(format!("file:{}", console_log.display()))
            .args(["-monitor", "none"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
    }
    cmd.arg("-serial")
        .arg(format!("file:{}", serial_log.display()));
    if b.virtio_output {
        cmd.args(["-device", "virtio-serial-pci,id=labser"])
            .arg("-chardev")
            .arg(format!("file,id=labout,path={}", output_log.display()))
            .args([
                "-device",
                &format!("virtserialport,bus=labser.0,chardev=labout,name={OUTPUT_PORT}"),
            ]);
    }
    cmd.stderr(std::fs::File::create(&stderr_log)?);
    // A test killed outright (a timeout, a signal) never drops the child:
    // the VM must not outlive it, spinning a core the next VM needs.
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let start = Instant::now();
    let mut child = KillOnDrop(cmd.spawn().with_context(|| format!("starting {QEMU}"))?);
    let mut boot_time = None;
    let mut channel = None;
    let mut timed_out = false;
    let mut seen = [
        (Channel::Virtio, output_log.as_path(), Vec::new()),
        (Channel::Serial, serial_log.as_path(), Vec::new()),
    ];
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break Some(status);
        }
        if boot_time.is_none() {
            // Read what is new on either channel to time the boot.
            for (ch, path, seen) in &mut seen {
                if let Ok(mut f) = std::fs::File::open(path) {
                    use std::io::{Seek, SeekFrom};
                    f.seek(SeekFrom::Start(seen.len() as u64))?;
                    f.read_to_end(seen)?;
                    if contains(seen, READY_MARKER.as_bytes()) {
                        boot_time = Some(start.elapsed());
                        channel = Some(*ch);
                    }
                }
            }
        }
        if !b.interactive && start.elapsed() > b.timeout {
            timed_out = true;
            let _ = child.0.kill();
            let _ = child.0.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total_time = start.elapsed();
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|d| String::from_utf8_lossy(&d).replace("\r\n", "\n"))
            .unwrap_or_default()
    };
    // No ready marker: whatever either channel got, for the report.
    let output = match channel {
        Some(Channel::Virtio) => read(&output_log),
        Some(Channel::Serial) | None => read(&serial_log) + &read(&output_log),
    };
    let raw = Raw {
        console: read(&console_log),
        output,
        channel,
        boot_time,
        total_time,
        timed_out,
        qemu_status: status,
        qemu_stderr: read(&stderr_log),
    };
    if let Some(s) = status {
        if !s.success() && raw.output.is_empty() {
            bail!("qemu failed ({s}): {}", raw.qemu_stderr.trim());
        }
    }
    Ok(raw)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
