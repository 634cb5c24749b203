//! isol on many CPUs, most of them isolated (Debian 6.12 cloud, QEMU TCG;
//! 8 and 16 CPUs, all but the first and last isolated), one `isol watch`
//! over two phases (lab/scenarios/scale.sh): IPIs aimed at every isolated
//! CPU while it idles, then membarrier and TLB-flush storms hitting all of
//! them while each runs a thread busy in user space. Per CPU, isol's
//! call-function count equals /proc/interrupts' and its other vector
//! counts lie within it; nothing is dropped; every call-function IPI is
//! named with its function (the idle CPUs' too). isol's peak RSS and BPF
//! map sizes are printed.

use isol_lab::{testprogs::testprog, Lab, Outcome};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One /proc/interrupts line's per-CPU counts.
fn irq_line(text: &str, name: &str, ncpus: usize) -> Vec<u64> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} line in /proc/interrupts:\n{text}"));
    line.split_whitespace()
        .skip(1)
        .take(ncpus)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// BPF maps as the guest's fdinfo shows them: one field map per map.
fn maps(out: &Outcome) -> Vec<BTreeMap<String, u64>> {
    let mut maps: Vec<BTreeMap<String, u64>> = Vec::new();
    for l in out.section("maps").unwrap().text.lines() {
        if l == "map" {
            maps.push(BTreeMap::new());
        } else if let (Some(m), Some((k, v))) = (maps.last_mut(), l.split_once(':')) {
            if let Ok(v) = v.trim().parse() {
                m.insert(k.to_owned(), v);
            }
        }
    }
    maps
}

/// Per-CPU map types: BPF_MAP_TYPE_PERCPU_HASH, _PERCPU_ARRAY,
/// _LRU_PERCPU_HASH, _PERCPU_CGROUP_STORAGE.
const PER_CPU_MAP_TYPES: [u64; 4] = [5, 6, 10, 21];

#[test]
fn eight_cpus_six_isolated_every_ipi_counted_and_named() {
    scale(8);
}

#[test]
fn sixteen_cpus_fourteen_isolated_every_ipi_counted_and_named() {
    scale(16);
}

/// `n` CPUs, 1 to n-2 isolated and watched (the idle phase, then the
/// storms: lab/scenarios/scale.sh).
fn scale(n: u32) {
    let (last, iso) = (n - 1, n - 2);
    let out = Lab::new()
        .unwrap()
        .smp(n)
        .cmdline(&format!(
            "nohz_full=1-{iso} isolcpus=nohz,domain,managed_irq,1-{iso} rcu_nocbs=1-{iso} \
             irqaffinity=0,{last} tsc=reliable"
        ))
        .timeout(Duration::from_secs(300 * u64::from(n.div_ceil(8))))
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
    let phases = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("phases: "))
        .expect("phases line");
    eprintln!(
        "{n} CPUs, 1-{iso} watched; phases {phases}; {} records; max_rss_kb {}; drops {}",
        summary["records"], summary["max_rss_kb"], summary["drops"]
    );

    // isol's memory: its BPF maps, per-CPU ones apart (they grow with the
    // possible CPUs).
    let maps = maps(&out);
    let memlock = |per_cpu: bool| -> u64 {
        maps.iter()
            .filter(|m| PER_CPU_MAP_TYPES.contains(&m["map_type"]) == per_cpu)
            .map(|m| m["memlock"])
            .sum()
    };
    for m in &maps {
        eprintln!(
            "map type {:>2} entries {:>8} value {:>4} B memlock {:>9} B",
            m["map_type"], m["max_entries"], m["value_size"], m["memlock"]
        );
    }
    let per_cpu = maps
        .iter()
        .filter(|m| PER_CPU_MAP_TYPES.contains(&m["map_type"]))
        .count();
    eprintln!(
        "{} maps, memlock {} B; {per_cpu} per-CPU maps, memlock {} B",
        maps.len(),
        memlock(false) + memlock(true),
        memlock(true)
    );
    assert!(per_cpu > 0, "no per-CPU map among isol's: {maps:?}");

    // Nothing lost ("stack", a sender stack not captured, is not a lost
    // record).
    for d in ["ringbuf", "aggregation", "sender", "nesting", "displaced"] {
        assert_eq!(summary["drops"][d], 0, "{}", summary["drops"]);
    }

    // Per CPU, each vector as the kernel counts it. /proc/interrupts is
    // read around both ends of isol's counting; no call-function IPI comes
    // while it is read (both phases are over), so there the range is one
    // figure, isol's.
    let vectors = summary["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), iso as usize, "{vectors:?}");
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
            if vec == "call_function" {
                assert_eq!(
                    (lo, hi),
                    (isol, isol),
                    "CPU {}: call_function: isol counted {isol}, /proc/interrupts {lo}..{hi}",
                    v["cpu"]
                );
            }
        }
    }

    let ipi_named = |cpu: u64, function: &str, idle: Option<bool>| {
        recs.iter()
            .filter(|r| {
                r["type"] == "interruption"
                    && r["cpu"] == cpu
                    && r["cause"]["class"] == "ipi"
                    && r["cause"]["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with(function))
                    && idle.is_none_or(|i| r["idle"] == i)
            })
            .count()
    };
    let ncpus = n as usize;
    let before = &out.section("irq_before").unwrap().text;
    let after = &out.section("irq_after").unwrap().text;
    let tlb: Vec<u64> = irq_line(after, "TLB", ncpus)
        .iter()
        .zip(irq_line(before, "TLB", ncpus))
        .map(|(a, b)| a - b)
        .collect();
    eprintln!("{n} CPUs:\nCPU  CAL(isol=/proc)  TLB(/proc)  flush_tlb_func  ipi_mb  remote_function(idle)");
    for v in vectors {
        let cpu = v["cpu"].as_u64().unwrap();
        let (flush, mb, remote) = (
            ipi_named(cpu, "flush_tlb_func", None),
            ipi_named(cpu, "ipi_mb", None),
            ipi_named(cpu, "remote_function", Some(true)),
        );
        eprintln!(
            "{cpu:>3}  {:>15}  {:>10}  {flush:>14}  {mb:>6}  {remote:>21}",
            v["isol"]["call_function"], tlb[cpu as usize]
        );
        // Idle phase: its generator's IPIs found the CPU idle, named.
        assert!(
            remote > 0,
            "CPU {cpu}: no remote_function IPI named while idle"
        );
        // Storm: both storms reached every isolated CPU, named. A record
        // names the first function its IPI ran, so no more TLB flushes
        // than the kernel ran for other CPUs' requests.
        assert!(flush > 0, "CPU {cpu}: no flush_tlb_func IPI named");
        assert!(mb > 0, "CPU {cpu}: no ipi_mb IPI named");
        assert!(
            flush as u64 <= tlb[cpu as usize],
            "CPU {cpu}: {flush} flush_tlb_func records, {} TLB shootdowns",
            tlb[cpu as usize]
        );
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
