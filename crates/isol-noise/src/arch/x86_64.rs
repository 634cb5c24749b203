//! x86-64: the TSC, and the `hypervisor` CPU flag.

/// Read the TSC (no serialisation: oslat's choice; a loop iteration is a
/// few ns and reordering by a few instructions does not matter).
#[inline(always)]
pub fn ticks() -> u64 {
    // SAFETY: rdtsc has no memory effects; every x86_64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// /proc/cpuinfo says the machine runs under a hypervisor: the `flags`
/// line holds `hypervisor`.
pub fn cpuinfo_says_guest(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
}
