//! The lab's architecture facts: which QEMU boots the guest and how, the
//! guest's console, the Debian architecture of its kernels, and the Rust
//! target of the static isol it runs. A port adds `<arch>.rs`
//! (docs/arm64.md).

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "isol-lab boots x86_64 guests only: a port adds lab/src/arch/<arch>.rs (see docs/arm64.md)"
);
