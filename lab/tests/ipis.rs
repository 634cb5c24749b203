//! IPIs on every kernel of the matrix (scenario lab/scenarios/ipis.sh): on
//! Debian 11's 5.10 (no NO_HZ_FULL: isolcpus without context tracking),
//! Debian 12's 6.1 (nohz_full, but no ipi/csd tracepoints) and 6.12 (all
//! of them), with TLB-flush, membarrier and perf-event generators aimed at
//! a victim on CPU 1:
//! - each IPI's function and its sender, with a stack naming the syscall
//!   that caused it; a remote wake-up's (sched_ttwu_pending) too;
//! - isol's per-vector counts equal /proc/interrupts over the same run,
//!   nothing dropped;
//! - strict mode kills the victim on its first TLB-flush IPI, with no
//!   further loop iteration; and the break names that IPI when it lands
//!   inside the victim's own system call (or, as a CI run once had it on
//!   5.10, inside a softirq), not the handler it interrupted.

use isol_lab::{testprogs::testprog, Flavour, KernelSpec, Lab, Series};
use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stack_has(r: &Value, frame: &str) -> bool {
    r["sender"]["stack"]
        .as_array()
        .is_some_and(|s| s.iter().any(|f| f.as_str().unwrap().contains(frame)))
}

fn on(series: Series) {
    let spec = KernelSpec::new(series, Flavour::Cloud);
    let out = Lab::new()
        .unwrap()
        .kernel(spec)
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(400))
        .file(testprog("noisegen").unwrap(), "/bin/noisegen")
        .run_scenario("ipis")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();

    let recs = lines(&out.section("ipis").unwrap().text);
    let summary = recs
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("summary");
    let victim: Vec<&Value> = recs
        .iter()
        .filter(|r| r["type"] == "interruption" && r["comm"] == "noisegen" && r["cpu"] == 1)
        .collect();
    eprintln!("{spec}: sources {}", summary["sources"]);

    // Each generator's IPI: its function, sent by noisegen from CPU 0,
    // the stack naming the syscall. 5.10 names its TLB flush callback
    // flush_tlb_func_remote.
    for (function, syscall) in [
        ("flush_tlb_func", "munmap"),
        ("ipi_mb", "membarrier"),
        ("remote_function", "perf_event_open"),
    ] {
        let named: Vec<&&Value> = victim
            .iter()
            .filter(|r| {
                r["cause"]["class"] == "ipi"
                    && r["cause"]["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with(function))
            })
            .collect();
        assert!(
            !named.is_empty(),
            "{spec}: no IPI running {function} on the victim among {} records",
            victim.len()
        );
        let r = named
            .iter()
            .find(|r| stack_has(r, syscall))
            .unwrap_or_else(|| {
                panic!(
                    "{spec}: no {function} IPI whose sender stack names {syscall}: {}",
                    named[0]
                )
            });
        assert_eq!(r["sender"]["comm"], "noisegen", "{spec}: {r}");
        assert_eq!(r["sender"]["cpu"], 0, "{spec}: {r}");
        assert_eq!(r["sender"]["context"], "task", "{spec}: {r}");
    }

    // Every vector counted, as the kernel counts it.
    let drops = &summary["drops"];
    for d in ["ringbuf", "aggregation", "sender", "nesting", "displaced"] {
        assert_eq!(drops[d], 0, "{spec}: {drops}");
    }
    let v = &summary["vectors"].as_array().unwrap()[0];
    assert_eq!(v["cpu"], 1);
    for vec in ["local_timer", "call_function", "reschedule", "irq_work"] {
        let (isol, lo, hi) = (
            v["isol"][vec].as_u64().unwrap(),
            v["kernel"][vec].as_u64().unwrap(),
            v["kernel_max"][vec].as_u64().unwrap(),
        );
        // /proc/interrupts is read around both ends of isol's counting.
        assert!(
            lo <= isol && isol <= hi,
            "{spec}: {vec}: isol counted {isol}, /proc/interrupts {lo}..{hi}: {v}"
        );
    }
    assert!(
        v["isol"]["call_function"].as_u64().unwrap() > 0,
        "{spec}: {v}"
    );

    // A remote wake-up of the reader on the idle CPU 1: an IPI sent by the
    // pipe's writer, its stack naming pipe_write. 6.0 on queues the wakee
    // on the idle CPU's wake list (sched_ttwu_pending); 5.10 does that only
    // across caches, and otherwise sends a reschedule.
    let wake = lines(&out.section("wake").unwrap().text);
    let woken: Vec<&Value> = wake
        .iter()
        .filter(|r| {
            r["type"] == "interruption"
                && r["cpu"] == 1
                && r["cause"]["class"] == "ipi"
                && r["sender"]["comm"] == "noisegen"
                && stack_has(r, "pipe_write")
        })
        .collect();
    assert!(
        !woken.is_empty(),
        "{spec}: no IPI from the pipe's writer among {} records",
        wake.len()
    );
    let named = |d: &str| woken.iter().any(|r| r["cause"]["detail"] == d);
    eprintln!(
        "{spec}: wake-up IPIs: {} sched_ttwu_pending, {} reschedule",
        woken
            .iter()
            .filter(|r| r["cause"]["detail"] == "sched_ttwu_pending")
            .count(),
        woken
            .iter()
            .filter(|r| r["cause"]["detail"] == "reschedule")
            .count()
    );
    if series == Series::V5_10 {
        assert!(
            named("sched_ttwu_pending") || named("reschedule"),
            "{spec}: {}",
            woken[0]
        );
    } else {
        assert!(named("sched_ttwu_pending"), "{spec}: {}", woken[0]);
    }

    // Strict: killed by the first TLB-flush IPI, its counter unchanged since.
    let b = strict_break(&out, &spec, "victim_status", "strict", "counter");
    assert_tlb_flush_from_noisegen(&spec, &b);

    // Again with the victim in its own system calls, watched with
    // --syscalls: where context tracking bounds them, the IPI is nested in
    // the call's episode (the call first in the chain), and the break
    // names the IPI all the same, with its sender. The first IPI is the
    // generator's TLB flush, or RCU's reschedule when the call kept the
    // CPU in the kernel long enough for RCU to ask for a quiescent state
    // (a 64 MiB read, 6.1): either is an IPI the victim did not ask for.
    let b = strict_break(
        &out,
        &spec,
        "syscall_victim_status",
        "strict_syscall",
        "counter_syscall",
    );
    let chain = b["chain"].as_array().expect("chain");
    if summary["sources"]["boundaries"]
        .as_str()
        .unwrap()
        .starts_with("context tracking")
    {
        assert_eq!(chain[0]["class"], "syscall", "{spec}: {b}");
        assert_eq!(chain[0]["detail"], "read", "{spec}: {b}");
    }
    let first_ipi = chain
        .iter()
        .find(|c| c["class"] == "ipi")
        .unwrap_or_else(|| panic!("{spec}: no IPI in the chain: {b}"));
    assert_eq!(b["cause"]["class"], "ipi", "{spec}: {b}");
    assert_eq!(first_ipi["class"], "ipi", "{spec}: {b}");
    assert_eq!(b["cause"]["kind"], first_ipi["kind"], "{spec}: {b}");
    match b["cause"]["kind"].as_str().unwrap() {
        "reschedule" => assert!(b["sender"]["comm"].is_string(), "{spec}: {b}"),
        _ => assert_tlb_flush_from_noisegen(&spec, &b),
    }
}

/// The break names a TLB flush IPI sent by noisegen's generator on CPU 0.
fn assert_tlb_flush_from_noisegen(spec: &KernelSpec, b: &Value) {
    assert_eq!(b["cause"]["class"], "ipi", "{spec}: {b}");
    assert!(
        b["cause"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("flush_tlb_func"),
        "{spec}: {b}"
    );
    assert_eq!(b["sender"]["comm"], "noisegen", "{spec}: {b}");
    assert_eq!(b["sender"]["cpu"], 0, "{spec}: {b}");
}

/// The strict break of the victim whose exit status the line `status`
/// gives (section `strict`, its counter in section `counter`): SIGKILLed,
/// with no loop iteration after the break.
fn strict_break(
    out: &isol_lab::Outcome,
    spec: &KernelSpec,
    status: &str,
    strict: &str,
    counter: &str,
) -> Value {
    assert!(
        out.stdout.lines().any(|l| l == format!("{status}=137")),
        "{spec}: victim ({status}) not killed by SIGKILL:\n{}",
        out.stdout
    );
    let strict = lines(&out.section(strict).unwrap().text);
    let summary = strict
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("strict summary");
    let b = summary["breaks"].as_array().expect("breaks")[0].clone();
    assert_eq!(b["cpu"], 1, "{spec}: {b}");
    assert_eq!(b["signal"], 9, "{spec}: {b}");
    let counter: u64 = out.section(counter).unwrap().text.trim().parse().unwrap();
    assert!(counter > 0, "{spec}: {status}: no progress");
    assert_eq!(
        b["progress"].as_u64().unwrap(),
        counter,
        "{spec}: {status}: the victim ran on after the break"
    );
    b
}

#[test]
fn debian_11_5_10() {
    on(Series::V5_10);
}

#[test]
fn debian_12_6_1() {
    on(Series::V6_1);
}

#[test]
fn debian_13_6_12() {
    on(Series::V6_12);
}
