//! The task isolation prctl ABI of the task isolation prctl series (v7..v12, never merged).
//!
//! These numbers collide with upstream prctl options (67 is
//! PR_SET_MEMORY_MERGE: it enables KSM for the whole process): only
//! `native.rs` uses them, and only behind a proof that the running kernel
//! carries the patch.

pub const PR_ISOL_FEAT_GET: i32 = 63;
pub const PR_ISOL_CFG_GET: i32 = 64;
pub const PR_ISOL_CFG_SET: i32 = 65;
pub const PR_ISOL_ACTIVATE_GET: i32 = 66;
pub const PR_ISOL_ACTIVATE_SET: i32 = 67;

pub const I_CFG_FEAT: u64 = 1;
pub const I_CFG_INHERIT: u64 = 2;

pub const ISOL_F_QUIESCE: u64 = 1 << 0;
pub const ISOL_F_QUIESCE_VMSTATS: u64 = 1 << 0;
pub const QUIESCE_CONTROL: u64 = 1 << 0;

pub const ISOL_INHERIT_CONF: u8 = 1 << 0;
pub const ISOL_INHERIT_ACTIVE: u8 = 1 << 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TaskIsolQuiesceExtensions {
    pub flags: u64,
    pub supported_quiesce_bits: u64,
    pub pad: [u64; 6],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TaskIsolQuiesceControl {
    pub flags: u64,
    pub quiesce_mask: u64,
    pub quiesce_oneshot_mask: u64,
    pub pad: [u64; 5],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TaskIsolInheritControl {
    pub inherit_mask: u8,
    pub flags: u8,
    pub pad: [u8; 6],
}

/// Present only on kernels with the patch: the proof `native` needs.
pub const PROC_SELF_TASK_ISOLATION: &str = "/proc/self/task_isolation";

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn struct_sizes_match_the_patch() {
        assert_eq!(std::mem::size_of::<TaskIsolQuiesceExtensions>(), 64);
        assert_eq!(std::mem::size_of::<TaskIsolQuiesceControl>(), 64);
        assert_eq!(std::mem::size_of::<TaskIsolInheritControl>(), 8);
    }
}
