//! RCU callback offloading.

use super::with;
use crate::audit::Ctx;
use crate::item::Item;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let m = ctx.model;
    let it = Item::new(
        "rcu.nocbs",
        "RCU callbacks offloaded from the CPUs",
        "RCU callbacks and the RCU softirq (or rcuc/N kthread) run on the CPUs",
    );
    let rcuc: Vec<String> = m
        .per_cpu
        .iter()
        .filter(|r| c.contains(r.cpu))
        .flat_map(|r| r.kthreads.iter())
        .filter(|k| k.comm.starts_with("rcuc/"))
        .map(|k| k.comm.clone())
        .collect();
    let it = if c.is_subset(&m.cpus.rcu_nocbs) {
        it.pass(format!(
            "callbacks of {c} offloaded (rcu_nocbs or nohz_full)"
        ))
    } else {
        let want = with(m.boot.rcu_nocbs.as_ref(), c);
        let mut d = format!(
            "callbacks of CPUs {} are not offloaded",
            c.difference(&m.cpus.rcu_nocbs)
        );
        if !rcuc.is_empty() {
            d.push_str(&format!(" ({} present)", rcuc.join(", ")));
        }
        it.fail(d)
            .fix(format!(
                "boot with rcu_nocbs={want} (nohz_full= implies it)"
            ))
            .boot(format!("rcu_nocbs={want}"))
    };
    vec![it]
}
