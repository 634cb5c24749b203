//! The task API's architecture facts. The system calls it makes take
//! their numbers from libc for the target, and the arming syscall's magic
//! travels as the third argument, which the capture's BPF side reads from
//! the architecture's register for it (isol-capture's `arch.h`). What is
//! left is the page size the mappings assume. A port adds `<arch>.rs`
//! (docs/arm64.md).

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "isol-task knows x86_64's page size only: a port adds src/arch/<arch>.rs (see docs/arm64.md)"
);
