//! Memory management: transparent huge pages (khugepaged) and KSM.

use crate::audit::Ctx;
use crate::item::{Change, Item};
use crate::sysfile::selected;

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let mut v = Vec::new();
    let it = Item::new(
        "mm.thp",
        "transparent huge pages never",
        "khugepaged scans and collapses, compaction, and the TLB-shootdown IPIs they send",
    );
    let path = ctx.sys("kernel/mm/transparent_hugepage/enabled");
    v.push(match ctx.read(&path) {
        None => it.skip("transparent huge pages not built in"),
        // A bare word (fixture trees) is the selection itself.
        Some(s) => match selected(&s).or((!s.contains(' ')).then_some(s.as_str())) {
            Some("never") => it.pass("THP never"),
            Some(w) => it.warn(format!("THP {w}")).changes(vec![Change::Write {
                path,
                value: "never".into(),
                select: true,
            }]),
            None => it.skip(format!("unexpected content {s:?}")),
        },
    });

    let it = Item::new(
        "mm.ksm",
        "KSM stopped",
        "ksmd page scanning and merging, and the TLB-shootdown IPIs of merged pages",
    );
    let path = ctx.sys("kernel/mm/ksm/run");
    v.push(match ctx.read(&path).as_deref() {
        None => it.skip("KSM not built in"),
        Some("0") => it.pass("KSM stopped"),
        Some(r) => it
            .warn(format!("ksm/run = {r}"))
            .changes(vec![Change::write(path, "0")]),
    });
    v
}
