//! arm64 (AUDIT_ARCH_AARCH64): the generic syscall table has no fork or
//! vfork (clone does both), so those checks match nothing.

pub const AUDIT_ARCH: u32 = 0xc000_00b7;

pub fn sys_fork() -> u32 {
    u32::MAX
}
pub fn sys_vfork() -> u32 {
    u32::MAX
}
