//! The capture's architecture facts, in one place: the interrupt entry
//! tracepoints and sender functions it hooks, the per-CPU symbols it
//! reads, the TLB flush reasons and the VM exit reasons it names. The BPF
//! side's are in `src/bpf/arch/<arch>/` (vmlinux.h, arch.h). A port adds
//! its own files beside these (docs/arm64.md).

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::*;

#[cfg(target_arch = "x86_64")]
#[path = "x86_64_vmexit.rs"]
pub mod vmexit;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "isol-capture knows x86_64 only: a port adds src/arch/<arch>.rs and src/bpf/arch/<arch>/ (see docs/arm64.md)"
);
