//! The seccomp filter's architecture facts: the audit architecture its
//! first check demands, and the system calls that create a task (their
//! numbers come from libc for the target). A port adds `<arch>.rs`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("isol-task-emu: no src/arch/<arch>.rs for this architecture (see docs/arm64.md)");
