//! Unbound workqueue cpumasks.

use super::away;
use crate::audit::Ctx;
use crate::item::{Change, Item};
use isol_cpulist::CpuSet;

const WQ: &str = "devices/virtual/workqueue";

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let hk = &ctx.hk;
    let mut v = Vec::new();
    let mask = |p: &std::path::Path| ctx.read(p).and_then(|s| CpuSet::parse_mask(&s).ok());

    let it = Item::new(
        "workqueue.cpumask",
        "unbound workqueues kept off the CPUs",
        "unbound kworkers (writeback, flush, async work) run on the CPUs",
    );
    let path = ctx.sys(&format!("{WQ}/cpumask"));
    let global = mask(&path);
    v.push(match &global {
        None => it.skip(format!("{} unreadable", path.display())),
        Some(m) if !m.intersects(c) => it.pass(format!("unbound workqueue cpumask {m}")),
        Some(m) => it
            .fail(format!(
                "unbound workqueue cpumask {m} includes {}",
                m.intersection(c)
            ))
            .changes(vec![Change::write(path, away(m, c, hk).to_mask())]),
    });

    // Workqueues registered with WQ_SYSFS have their own cpumask; the
    // kernel intersects it with the global one, but a later change of the
    // global mask would let them back, so set them too.
    let it = Item::new(
        "workqueue.per_workqueue",
        "per-workqueue cpumasks kept off the CPUs",
        "kworkers of that workqueue (e.g. writeback) run on the CPUs",
    );
    let mut bad = Vec::new();
    let mut changes = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(ctx.sys(WQ))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("cpumask").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        let p = ctx.sys(&format!("{WQ}/{n}/cpumask"));
        if let Some(m) = mask(&p) {
            if m.intersects(c) {
                bad.push(format!("{n} ({m})"));
                changes.push(Change::write(p, away(&m, c, hk).to_mask()));
            }
        }
    }
    v.push(if names.is_empty() {
        it.skip("no workqueue exposes its own cpumask")
    } else if bad.is_empty() {
        it.pass(format!(
            "{} workqueue(s) off the CPUs: {}",
            names.len(),
            names.join(", ")
        ))
    } else {
        it.warn(format!("include the CPUs: {}", bad.join(", ")))
            .changes(changes)
    });
    v
}
