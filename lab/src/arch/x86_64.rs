//! x86-64 guests: QEMU's default PC machine, a 16550 UART console.

pub const QEMU: &str = "qemu-system-x86_64";
/// The Debian package that holds [`QEMU`].
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// Machine and CPU (the PC machine is QEMU's default: no `-M`).
pub const QEMU_MACHINE: &[&str] = &["-cpu", "max"];
/// The kernel console: the first serial port (the scenario has the second).
pub const CONSOLE: &str = "console=ttyS0";
/// Debian's name for the architecture (kernel packages, apt's arch=).
pub const DEBIAN_ARCH: &str = "amd64";
/// The Rust target of the static isol and chisol the guest runs.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";
