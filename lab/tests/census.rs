//! `isol census` on every kernel of the matrix with CPU 1 isolated: the
//! built-in load yields at least one IPI of each class the IPI deferral
//! series' census saw on isolated CPUs (kernel TLB flush, text_poke's
//! do_sync_core, an smp_call_function user, a nohz_full kick where the
//! kernel has nohz_full) plus user TLB flushes, each attributed to its
//! callback and to the generator's sender stack; on 6.12 a compare of two
//! runs works. 5.10 has no nohz_full: no kick, and the census says why.

use isol_lab::{Flavour, KernelSpec, Lab, Series};
use serde_json::Value;

fn rows<'a>(r: &'a Value, table: &str) -> &'a Vec<Value> {
    r[table].as_array().unwrap()
}

fn count(r: &Value, callback: &str) -> u64 {
    rows(r, "callbacks")
        .iter()
        .find(|c| c["callback"] == callback)
        .map_or(0, |c| c["count"].as_u64().unwrap())
}

/// A sender row for one of `callbacks` whose stack names one of `frames`.
fn traced(r: &Value, callbacks: &[&str], frames: &[&str]) -> bool {
    rows(r, "senders").iter().any(|s| {
        callbacks.iter().any(|c| s["callback"] == *c)
            && s["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| frames.iter().any(|n| f.as_str().unwrap().contains(n)))
    })
}

/// [`traced`], or else its sender had no stack and a stack not taken was
/// counted (`drops.stack`): the stack table refuses a stack whose bucket
/// holds another (no BPF_F_REUSE_STACKID, which would give old records
/// the wrong stack), the same one every time within a boot (a CI run lost
/// all 6 of a vfree path's this way).
fn traced_or_counted(r: &Value, callbacks: &[&str], frames: &[&str]) -> bool {
    traced(r, callbacks, frames)
        || (r["drops"]["stack"].as_u64().unwrap_or(0) > 0
            && rows(r, "senders").iter().any(|s| {
                callbacks.iter().any(|c| s["callback"] == *c)
                    && s["stack"].as_array().is_none_or(|f| f.is_empty())
            }))
}

fn on(series: Series) {
    let spec = KernelSpec::new(series, Flavour::Cloud);
    let out = Lab::new()
        .unwrap()
        .kernel(spec)
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(480))
        .run_scenario("census")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    let a = out.json_section("census").unwrap();
    eprintln!(
        "{}",
        out.section("text").map(|s| s.text).unwrap_or_default()
    );
    let brief: Vec<String> = rows(&a, "callbacks")
        .iter()
        .map(|c| format!("{} {}", c["callback"], c["count"]))
        .collect();
    eprintln!("callbacks: {brief:?}");

    assert_eq!(a["load"]["victims"][0]["cpu"], 1);
    assert_eq!(a["load"]["victims"][0]["comm"], "census-victim");
    let not_nohz_full = a["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("not nohz_full"));
    assert_eq!(
        not_nohz_full,
        series == Series::V5_10,
        "{spec}: {}",
        a["notes"]
    );

    // smp_call_function user: membarrier.
    assert!(count(&a, "ipi_mb") > 0, "{spec}: {brief:?}");
    assert!(
        traced_or_counted(&a, &["ipi_mb"], &["membarrier"]),
        "{spec}"
    );
    // User TLB shootdown.
    // (5.10 names its callback flush_tlb_func_remote.)
    let tlb = ["flush_tlb_func", "flush_tlb_func_remote"];
    assert!(
        tlb.iter().map(|f| count(&a, f)).sum::<u64>() > 0,
        "{spec}: {brief:?}"
    );
    assert!(
        traced_or_counted(&a, &tlb, &["munmap", "mprotect"]),
        "{spec}"
    );
    // Kernel TLB flush from the vmalloc/vfree churn (the IPI deferral series'
    // do_flush_tlb_all / do_kernel_range_flush).
    assert!(count(&a, "do_flush_tlb_all") + count(&a, "do_kernel_range_flush") > 0);
    assert!(traced_or_counted(
        &a,
        &["do_flush_tlb_all", "do_kernel_range_flush"],
        &["purge_vmap_area", "vm_unmap_aliases", "vfree"]
    ));
    // text_poke: do_sync_core, traced to the static key flip (or the JIT).
    assert!(count(&a, "do_sync_core") > 0);
    assert!(traced_or_counted(
        &a,
        &["do_sync_core"],
        &["text_poke", "tracepoint_probe", "jit"]
    ));
    // nohz_full kick, traced to the POSIX CPU timer; none without nohz_full.
    if series == Series::V5_10 {
        assert_eq!(count(&a, "nohz_full_kick_func"), 0, "{spec}");
        return;
    }
    assert!(count(&a, "nohz_full_kick_func") > 0, "{spec}: {brief:?}");
    assert!(traced_or_counted(
        &a,
        &["nohz_full_kick_func"],
        &["posix_cpu_timer", "tick_nohz_dep_set", "timer_settime"]
    ));
    if series != Series::V6_12 {
        return;
    }

    // Compare: B ran only smp-call and nohz-kick.
    let b = out.json_section("census2").unwrap();
    assert!(count(&b, "ipi_mb") > 0);
    let c = out.json_section("compare").unwrap();
    let row = |k: &str| {
        rows(&c, "callbacks")
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
    };
    let mb = row("ipi_mb").expect("ipi_mb in the compare");
    assert_eq!(mb["a_count"], count(&a, "ipi_mb"));
    assert_eq!(mb["b_count"], count(&b, "ipi_mb"));
    if count(&b, "flush_tlb_func") == 0 {
        assert_eq!(row("flush_tlb_func").unwrap()["change"], "gone");
    }
}

#[test]
fn census_on_5_10() {
    on(Series::V5_10);
}

#[test]
fn census_on_6_1() {
    on(Series::V6_1);
}

#[test]
fn census_on_6_12_and_compare() {
    on(Series::V6_12);
}
