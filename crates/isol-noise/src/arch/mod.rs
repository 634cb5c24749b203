//! The measuring loop's architecture facts: its cycle counter and how
//! /proc/cpuinfo says the machine is a guest. A port adds `<arch>.rs`
//! (docs/arm64.md).

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "isol-noise knows x86_64's TSC only: a port adds src/arch/<arch>.rs (see docs/arm64.md)"
);
