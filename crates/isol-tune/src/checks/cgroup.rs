//! cgroup v2 cpuset partitions.

use crate::audit::Ctx;
use crate::item::Item;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let cg = &ctx.model.cgroups;
    let it = Item::new(
        "cgroup.partition",
        "CPUs in an isolated cpuset partition (or isolcpus=domain)",
        "tasks of any cgroup may be placed and balanced onto the CPUs",
    );
    let invalid: Vec<String> = cg
        .partitions
        .iter()
        .filter(|p| !p.valid)
        .map(|p| format!("{}: {}", p.path, p.state))
        .collect();
    let it = if !invalid.is_empty() {
        it.fail(format!("invalid partitions: {}", invalid.join("; ")))
            .fix("fix each partition's cpuset.cpus (exclusive, within the parent's) or set cpuset.cpus.partition back to member")
    } else if c.is_subset(
        ctx.model
            .sysfs
            .isolated
            .as_ref()
            .unwrap_or(&Default::default()),
    ) {
        it.pass("isolcpus=domain takes the CPUs out of load balancing; no partition needed")
    } else if c.is_subset(&ctx.model.cpus.cgroup_isolated) {
        let p: Vec<String> = cg
            .partitions
            .iter()
            .filter(|p| p.cpus.intersects(c))
            .map(|p| format!("{} ({})", p.path, p.cpus))
            .collect();
        it.pass(format!("isolated partition: {}", p.join(", ")))
    } else if c.is_subset(&ctx.model.cpus.domain) {
        it.pass("the CPUs are out of load balancing")
    } else if !cg.cpuset_v2 {
        it.skip("no cgroup v2 cpuset controller (cgroup v1 or cpuset bound to v1); see boot.isolcpus_domain")
    } else {
        let mnt = cg
            .mount
            .as_ref()
            .map(|m| m.display().to_string())
            .unwrap_or_else(|| "/sys/fs/cgroup".into());
        it.warn(format!("CPUs {} are in no isolated partition", c.difference(&ctx.model.cpus.cgroup_isolated)))
            .fix(format!(
                "echo +cpuset > {mnt}/cgroup.subtree_control && mkdir -p {mnt}/isol && echo {c} > {mnt}/isol/cpuset.cpus && echo isolated > {mnt}/isol/cpuset.cpus.partition  (then run the workload in {mnt}/isol)"
            ))
    };
    vec![it]
}
