//! One module per area of the quiet-CPU checklist (REFERENCE.md §4).
//! Each returns items; runtime-fixable ones carry their changes.

pub mod boot;
pub mod cgroup;
pub mod cpufreq;
pub mod idle;
pub mod irq;
pub mod kthreads;
pub mod kvm;
pub mod mm;
pub mod rcu;
pub mod services;
pub mod sysctl;
pub mod tasks;
pub mod workqueue;

use crate::audit::Ctx;
use crate::item::Item;
use isol_cpulist::CpuSet;

/// Every check, in checklist order.
pub fn all(ctx: &Ctx) -> Vec<Item> {
    let mut v = Vec::new();
    v.extend(boot::check(ctx));
    v.extend(irq::check(ctx));
    v.extend(workqueue::check(ctx));
    v.extend(kthreads::check(ctx));
    v.extend(kvm::check(ctx));
    v.extend(rcu::check(ctx));
    v.extend(sysctl::check(ctx));
    v.extend(mm::check(ctx));
    v.extend(cpufreq::check(ctx));
    v.extend(idle::check(ctx));
    v.extend(services::check(ctx));
    v.extend(cgroup::check(ctx));
    v.extend(tasks::check(ctx));
    v
}

/// `a` with `b` added: a boot list that keeps what the command line has.
pub(crate) fn with(existing: Option<&CpuSet>, add: &CpuSet) -> CpuSet {
    existing.cloned().unwrap_or_default().union(add)
}

/// `allowed` without `cpus`, or the housekeeping CPUs if nothing is left:
/// a new affinity that keeps any other restriction the owner chose.
pub(crate) fn away(allowed: &CpuSet, cpus: &CpuSet, hk: &CpuSet) -> CpuSet {
    let left = allowed.difference(cpus);
    if left.is_empty() {
        hk.clone()
    } else {
        left
    }
}

/// `a, b, c and 4 more`.
pub(crate) fn some<T: ToString>(v: impl IntoIterator<Item = T>, n: usize) -> String {
    let all: Vec<String> = v.into_iter().map(|x| x.to_string()).collect();
    if all.len() <= n {
        all.join(", ")
    } else {
        format!("{} and {} more", all[..n].join(", "), all.len() - n)
    }
}
