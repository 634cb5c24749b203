//! The capture engine on the Debian 6.12 cloud kernel with CPU 1 nohz_full:
//! an idle isolated CPU sees nothing caused by isol; a TLB-flush IPI on
//! the victim has an exact (context-tracking) duration and the munmap
//! sender; a strict victim is killed on the first TLB-flush IPI after it
//! registers and runs no further iteration.

use isol_lab::{testprogs::testprog, Lab};

use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn watch_idle_tlb_and_strict_on_nohz_full() {
    let out = Lab::new()
        .unwrap()
        .quiet_cpu1()
        // Three captures; ~45 s in all on an idle host since isol loads
        // while the victims are stopped (see watch.sh). Before, a victim
        // spinning under TCG stretched each load to minutes.
        .timeout(std::time::Duration::from_secs(540))
        .file(testprog("noisegen").unwrap(), "/bin/noisegen")
        .run_scenario("watch")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();

    // 1. Idle: no record caused by isol (its own task on CPU 1, an IPI it
    // sent from task context, or an irq_work with no remote sender, which
    // is what a ring-buffer wakeup would look like).
    let idle = lines(&out.section("idle").unwrap().text);
    let summary = idle
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("idle summary");
    assert!(summary["attached"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "context_tracking:user_exit"));
    for r in idle.iter().filter(|v| v["type"] == "interruption") {
        assert_ne!(r["comm"], "isol", "isol ran on the watched CPU: {r}");
        assert!(
            !(r["sender"]["comm"] == "isol" && r["sender"]["context"] == "task"),
            "isol sent an IPI to the watched CPU: {r}"
        );
        assert!(
            !(r["cause"]["kind"] == "irq_work" && r["sender"].is_null()),
            "self irq_work on the idle watched CPU: {r}"
        );
    }

    // 2. TLB-flush IPIs on the victim: exact durations, function and sender.
    let tlb = lines(&out.section("tlb").unwrap().text);
    let victim: Vec<&Value> = tlb
        .iter()
        .filter(|r| r["type"] == "interruption" && r["comm"] == "noisegen" && r["cpu"] == 1)
        .collect();
    let flushes: Vec<&&Value> = victim
        .iter()
        .filter(|r| r["cause"]["class"] == "ipi" && r["cause"]["detail"] == "flush_tlb_func")
        .collect();
    assert!(
        !flushes.is_empty(),
        "no flush_tlb_func IPI among {} victim records",
        victim.len()
    );
    for r in &flushes {
        assert_eq!(r["exact"], true, "not bounded by context tracking: {r}");
        assert!(r["duration_ns"].as_u64().unwrap() > 0);
    }
    assert!(
        flushes.iter().any(|r| r["sender"]["stack"]
            .as_array()
            .is_some_and(|s| s.iter().any(|f| f.as_str().unwrap().contains("munmap")
                || f.as_str().unwrap().contains("mprotect")))),
        "no sender stack names munmap/mprotect"
    );

    // 3. Strict: SIGKILL on the first TLB-flush IPI, counter unchanged since.
    assert!(
        out.stdout.contains("victim_status=137"),
        "victim not killed by SIGKILL:\n{}",
        out.stdout
    );
    let strict = lines(&out.section("strict").unwrap().text);
    let summary = strict
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("strict summary");
    let b = &summary["breaks"].as_array().expect("breaks")[0];
    let rec = strict
        .iter()
        .find(|r| r["strict_break"] == true)
        .unwrap_or_else(|| panic!("no record flagged strict_break: {b}"));
    assert_eq!(b["cpu"], 1);
    assert_eq!(b["signal"], 9);
    assert_eq!(b["cause"]["class"], "ipi", "{b}");
    assert_eq!(b["cause"]["detail"], "flush_tlb_func", "{b}");
    // The whole break: the IPI, then the function it ran, and who sent
    // it; the record the ring carried says the same.
    let links = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["chain"]
            .as_array()
            .unwrap_or_else(|| panic!("no chain: {v}"))
            .iter()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap().to_string(),
                    c["detail"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let chain = links(b);
    let f = chain
        .iter()
        .position(|(k, d)| k == "csd_function" && d == "flush_tlb_func")
        .unwrap_or_else(|| panic!("flush_tlb_func not in the break's chain: {b}"));
    assert!(f > 0 && chain[f - 1].0.starts_with("call_function"), "{b}");
    assert_eq!(b["sender"]["cpu"], 0, "{b}");
    assert_eq!(b["sender"]["comm"], "noisegen", "{b}");
    assert_eq!(b["sender"]["function"], "flush_tlb_func", "{b}");
    assert_eq!(links(rec)[..=f], chain[..=f], "record {rec}\nbreak {b}");
    assert_eq!(
        rec["sender"]["pid"], b["sender"]["pid"],
        "record {rec}\nbreak {b}"
    );
    let counter: u64 = out.section("counter").unwrap().text.trim().parse().unwrap();
    assert!(counter > 0);
    assert_eq!(
        b["progress"].as_u64().unwrap(),
        counter,
        "the victim ran on after the break"
    );

    // 4. Why the tick runs: the victim's ITIMER_PROF is named.
    let tick: serde_json::Value = serde_json::from_str(&out.section("tick").unwrap().text)
        .expect("isol watch --json summary");
    let t = tick["tick"]
        .as_array()
        .expect("tick facts")
        .iter()
        .find(|t| t["cpu"] == 1)
        .unwrap_or_else(|| panic!("nothing said about CPU 1's tick: {}", tick["tick"]));
    eprintln!("tick on CPU 1: {t}");
    let deps = t["dependencies"].as_array().unwrap();
    assert!(
        deps.iter()
            .any(|d| d["kind"] == "posix_timer"
                && d["detail"].as_str().unwrap().contains("noisegen")),
        "the CPU-time timer keeping the tick is not named: {t}"
    );
    assert!(t["failures"].as_u64().unwrap() > 0, "{t}");
}
