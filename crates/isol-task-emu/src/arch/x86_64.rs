//! x86-64 (AUDIT_ARCH_X86_64); fork and vfork exist beside clone.

pub const AUDIT_ARCH: u32 = 0xc000_003e;

/// The task-creating calls besides clone and clone3.
pub fn sys_fork() -> u32 {
    libc::SYS_fork as u32
}
pub fn sys_vfork() -> u32 {
    libc::SYS_vfork as u32
}
