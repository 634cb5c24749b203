//! `isol census` on the host (CPU 1 counted, load and isol on CPU 0): the
//! built-in load's classes each show up under their callback with the
//! generator's sender stack; compare tells two runs apart; a real
//! trace-cmd recording of the same load imports into the same tables.
//! Needs root, BPF, tracefs and trace-cmd: CI runs as root.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn census(args: &[&str], out: &Path) -> Value {
    stay_on_housekeeping();
    let o = Command::new(ISOL)
        .arg("census")
        .args(args)
        .arg("--json")
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "isol census failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let f: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(v, f, "-o writes the same report as --json");
    assert_eq!(v["schema"], "isol.census/1");
    v
}

fn sender<'a>(r: &'a Value, callback: &str, comm: &str, frames: &[&str]) -> Option<&'a Value> {
    r["senders"].as_array().unwrap().iter().find(|s| {
        s["callback"] == callback
            && s["comms"].get(comm).is_some()
            && s["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| frames.iter().any(|n| f.as_str().unwrap().contains(n)))
    })
}

fn callback_count(r: &Value, name: &str) -> u64 {
    r["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["callback"] == name)
        .map_or(0, |c| c["count"].as_u64().unwrap())
}

/// Unbound workqueues kept off CPU 1 while it lives, as on an isolated
/// machine (`isol apply` does the same), then restored. The kernel-TLB
/// class's flush runs in a kworker: on CPU 1 itself it would flush
/// locally, with no IPI to count.
struct UnboundWorkqueuesOn0(String);

impl UnboundWorkqueuesOn0 {
    const PATH: &str = "/sys/devices/virtual/workqueue/cpumask";
    fn new() -> Self {
        let old = std::fs::read_to_string(Self::PATH).unwrap();
        std::fs::write(Self::PATH, "1").unwrap();
        UnboundWorkqueuesOn0(old.trim().to_string())
    }
}

impl Drop for UnboundWorkqueuesOn0 {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

#[test]
fn builtin_load_classes_are_attributed_and_two_runs_compare() {
    let _serial = serial();
    let _wq = UnboundWorkqueuesOn0::new();
    let dir = tempfile::tempdir().unwrap();
    let a_path = dir.path().join("a.json");
    let a = census(&["--cpus", "1", "-D", "4"], &a_path);

    // The census victim is labelled, on the counted CPU, and it ran.
    let v = &a["load"]["victims"][0];
    assert_eq!(v["cpu"], 1);
    assert_eq!(v["comm"], "census-victim");
    assert!(v["loops"].as_u64().unwrap() > 0);
    for c in a["load"]["classes"].as_array().unwrap() {
        assert!(c["ops"].as_u64().unwrap() > 0, "class did nothing: {c}");
    }

    // smp_call_function users: membarrier -> ipi_mb.
    assert!(callback_count(&a, "ipi_mb") > 0);
    assert!(
        sender(&a, "ipi_mb", "census-mb", &["membarrier"]).is_some(),
        "no ipi_mb row from census-mb's membarrier"
    );
    // User TLB shootdowns beside the victim.
    assert!(
        sender(&a, "flush_tlb_func", "census-utlb", &["munmap", "mprotect"]).is_some(),
        "no flush_tlb_func row from census-utlb"
    );
    // Kernel TLB flush: the lazy vmap purge of the BPF map churn.
    assert!(
        callback_count(&a, "do_flush_tlb_all") + callback_count(&a, "do_kernel_range_flush") > 0
    );
    let purge = a["senders"].as_array().unwrap().iter().any(|s| {
        (s["callback"] == "do_flush_tlb_all" || s["callback"] == "do_kernel_range_flush")
            && s["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f.as_str().unwrap().contains("purge_vmap_area"))
    });
    assert!(purge, "no kernel TLB flush traced to the vmap purge");
    // text_poke: static key flips of the perf tracepoint -> do_sync_core.
    assert!(
        sender(
            &a,
            "do_sync_core",
            "census-skey",
            &["tracepoint_probe_register", "tracepoint_probe_unregister"]
        )
        .is_some(),
        "no do_sync_core row from the static key flips"
    );
    // BPF JIT: the XDP dispatcher re-JITed and its jump patched at every
    // attach/detach -> do_sync_core, sender stack through the dispatcher.
    assert!(
        sender(
            &a,
            "do_sync_core",
            "census-jit",
            &["bpf_dispatcher_change_prog"]
        )
        .is_some(),
        "no do_sync_core row from census-jit's XDP dispatcher patching"
    );
    // The tables agree with each other.
    let by_cb: u64 = a["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    let by_stack: u64 = a["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_cb, a["ipis"].as_u64().unwrap());
    assert_eq!(by_stack, by_cb);
    for c in a["callbacks"].as_array().unwrap() {
        let pm: u64 = c["per_minute"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(
            pm,
            c["count"].as_u64().unwrap(),
            "per-minute counts add up: {c}"
        );
    }

    // A second run with membarrier only: the static-key do_sync_core IPIs
    // are gone in B, ipi_mb remains.
    let b_path = dir.path().join("b.json");
    let b = census(
        &["--cpus", "1", "-D", "3", "--classes", "smp-call"],
        &b_path,
    );
    assert!(callback_count(&b, "ipi_mb") > 0);
    let o = Command::new(ISOL)
        .args(["census", "--json", "--compare"])
        .arg(&a_path)
        .arg(&b_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = |k: &str| {
        c["callbacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .cloned()
            .unwrap_or(Value::Null)
    };
    if callback_count(&b, "do_sync_core") == 0 {
        assert_eq!(row("do_sync_core")["change"], "gone", "{c}");
    }
    assert_eq!(row("ipi_mb")["b_count"], callback_count(&b, "ipi_mb"));
    assert_ne!(row("ipi_mb")["change"], "gone");
    let text = Command::new(ISOL)
        .args(["census", "--compare"])
        .arg(&a_path)
        .arg(&b_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("IPIs by callback") && text.contains("ipi_mb"),
        "{text}"
    );
}

/// `trace-cmd record` of the IPI deferral series' events; on kernels that deny the
/// function-tracer files (this CI host), through bench/trace-cmd-shim.c.
fn trace_cmd_record(dir: &Path, dat: &Path, load: &[&str]) {
    let args = |c: &mut Command| {
        c.args([
            "record",
            "-q",
            "-e",
            "ipi:ipi_send_cpu",
            "-f",
            "cpu & CPUS{1}",
            "-e",
            "ipi:ipi_send_cpumask",
            "-f",
            "cpumask & CPUS{1}",
            "-e",
            "csd:csd_queue_cpu",
            "-f",
            "cpu & CPUS{1}",
            "-T",
            "-o",
        ])
        .arg(dat)
        .arg("--")
        .args(load);
    };
    let mut c = Command::new("trace-cmd");
    args(&mut c);
    let o = c.output().expect("trace-cmd (apt-get install trace-cmd)");
    if o.status.success() && dat.exists() {
        return;
    }
    let shim = dir.join("shim.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/trace-cmd-shim.c");
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&shim)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap();
    assert!(st.success());
    let mut c = Command::new("trace-cmd");
    c.env("LD_PRELOAD", &shim);
    args(&mut c);
    let o = c.output().unwrap();
    assert!(
        o.status.success() && dat.exists(),
        "trace-cmd record failed even with the shim: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_trace_cmd_recording_of_the_same_load_imports_into_the_same_tables() {
    let _serial = serial();
    stay_on_housekeeping();
    let dir = tempfile::tempdir().unwrap();
    let dat = dir.path().join("trace.dat");
    trace_cmd_record(
        dir.path(),
        &dat,
        &[
            ISOL,
            "census",
            "--load-only",
            "--cpus",
            "1",
            "-D",
            "2",
            "--classes",
            "smp-call",
            "--json",
        ],
    );
    // The trace.dat directly, and its report text.
    let o = Command::new(ISOL)
        .args(["census", "--json", "--cpus", "1", "--import"])
        .arg(&dat)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["source"], "trace-cmd");
    assert!(
        callback_count(&r, "ipi_mb") > 0,
        "membarrier IPIs not named: {}",
        r["callbacks"]
    );
    assert!(sender(&r, "ipi_mb", "census-mb", &["membarrier"]).is_some());
    let txt = dir.path().join("report.txt");
    let rep = Command::new("trace-cmd")
        .arg("report")
        .arg("-i")
        .arg(&dat)
        .output()
        .unwrap();
    std::fs::write(&txt, &rep.stdout).unwrap();
    let seed_awk = String::from_utf8_lossy(&rep.stdout)
        .lines()
        .filter(|l| l.contains("callback="))
        .count();
    let o = Command::new(ISOL)
        .args(["census", "--json", "--cpus", "1", "--import"])
        .arg(&txt)
        .output()
        .unwrap();
    let t: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(t["ipis"], r["ipis"], "text and trace.dat import agree");
    assert_eq!(
        t["ipis"].as_u64().unwrap() as usize,
        seed_awk,
        "same IPI count as the IPI deferral series' grep callback"
    );
}

#[test]
fn bad_inputs_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"schema\": \"isol.watch/1\"}").unwrap();
    let o = Command::new(ISOL)
        .args(["census", "--compare"])
        .arg(&junk)
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an isol census report"));
    let o = Command::new(ISOL)
        .args(["census", "--cpus", "1", "--classes", "bogus"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown load class"));
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "cpus=2\n").unwrap();
    let o = Command::new(ISOL)
        .args(["census", "--import"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no trace-cmd events"));
}
