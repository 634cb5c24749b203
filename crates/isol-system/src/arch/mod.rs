//! The architecture's names isol reads from the kernel: the tracepoints
//! only it has and the lines of /proc/interrupts for its local timer and
//! IPIs. A port adds `<arch>.rs` (docs/arm64.md).

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "isol-system knows x86_64's tracepoints and /proc/interrupts lines only: a port adds src/arch/<arch>.rs (see docs/arm64.md)"
);
