//! isol on 8 CPUs with 6 isolated (Debian 6.12 cloud, QEMU TCG), IPIs
//! aimed at every isolated CPU while it idles: per CPU, isol's vector
//! counts agree with /proc/interrupts, nothing is dropped, and every
//! call-function IPI is named with its function (the idle CPUs' too).

use isol_lab::{testprogs::testprog, Lab};
use serde_json::Value;

#[test]
fn six_isolated_cpus_of_eight_every_ipi_counted_and_named() {
    let out = Lab::new()
        .unwrap()
        .smp(8)
        .cmdline("nohz_full=1-6 isolcpus=nohz,domain,managed_irq,1-6 rcu_nocbs=1-6 irqaffinity=0,7 tsc=reliable")
        .timeout(std::time::Duration::from_secs(480))
        .file(testprog("noisegen").unwrap(), "/bin/noisegen")
        .run_scenario("scale")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    let recs: Vec<Value> = out
        .section("scale")
        .unwrap()
        .text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let summary = recs
        .iter()
        .find(|v| v["type"] == "summary")
        .expect("summary");
    eprintln!(
        "max_rss_kb {} drops {}",
        summary["max_rss_kb"], summary["drops"]
    );
    for d in ["ringbuf", "aggregation", "sender", "nesting"] {
        assert_eq!(summary["drops"][d], 0, "{}", summary["drops"]);
    }
    let vectors = summary["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 6, "{vectors:?}");
    for v in vectors {
        for vec in ["local_timer", "call_function", "reschedule", "irq_work"] {
            let (isol, lo, hi) = (
                v["isol"][vec].as_u64().unwrap(),
                v["kernel"][vec].as_u64().unwrap(),
                v["kernel_max"][vec].as_u64().unwrap(),
            );
            assert!(
                lo <= isol && isol <= hi,
                "CPU {}: {vec}: isol counted {isol}, /proc/interrupts {lo}..{hi}",
                v["cpu"]
            );
        }
    }
    // Every CPU got its generator's remote_function IPIs, named.
    for cpu in 1..=6u64 {
        let named = recs
            .iter()
            .filter(|r| {
                r["type"] == "interruption"
                    && r["cpu"] == cpu
                    && r["cause"]["detail"] == "remote_function"
            })
            .count();
        assert!(named > 0, "CPU {cpu}: no remote_function IPI named");
    }
    // No call-function IPI left without its function.
    let unnamed: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["type"] == "interruption"
                && r["cause"]["class"] == "ipi"
                && (r["cause"]["detail"] == "call_function_single"
                    || r["cause"]["detail"] == "call_function")
        })
        .collect();
    let ipis = recs
        .iter()
        .filter(|r| r["type"] == "interruption" && r["cause"]["class"] == "ipi")
        .count();
    eprintln!("{ipis} IPI records, {} without a function", unnamed.len());
    assert!(
        unnamed.is_empty(),
        "{} of {ipis} call-function IPIs without a function, e.g. {}",
        unnamed.len(),
        unnamed[0]
    );
}
