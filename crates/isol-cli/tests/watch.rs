//! The capture engine on the host (CPU 1 watched; isol and the noise
//! generators' senders on CPU 0): each interference is attributed to the
//! right class and detail, strict mode stops the victim at once, floods
//! drop records visibly, and isol itself adds nothing on the watched CPU.
//! Needs root, BPF and tracefs: CI runs as root.

mod common;
use common::*;
use serde_json::Value;

fn victim_records(recs: &[Value], tid: u32) -> Vec<&Value> {
    recs.iter().filter(|r| r["tid"] == tid).collect()
}

#[test]
fn tlb_flush_ipi_names_its_function_and_the_munmap_sender() {
    let _serial = serial();
    let v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "60"]);
    let (recs, _) = watch_events(&["--cpus", "1", "-D", "2"]);
    let mine = victim_records(&recs, v.tid);
    let tlb: Vec<_> = mine
        .iter()
        .filter(|r| r["cause"]["class"] == "ipi" && r["cause"]["detail"] == "flush_tlb_func")
        .collect();
    assert!(
        !tlb.is_empty(),
        "no flush_tlb_func IPI on the victim among {} records",
        mine.len()
    );
    let r = tlb
        .iter()
        .find(|r| stack_has(r, &["munmap", "mprotect"]))
        .expect("no TLB IPI whose sender stack names munmap/mprotect");
    assert_ne!(
        r["sender"]["cpu"], 1,
        "the sender runs on the housekeeping CPU"
    );
    assert_eq!(r["sender"]["comm"], "noisegen");
    assert!(r["chain"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "csd_function"));
    assert!(r["duration_ns"].as_u64().unwrap() > 0);
}

#[test]
fn a_remote_wake_up_of_the_idle_cpu_is_sched_ttwu_pending_from_its_waker() {
    // Since 6.0 (not on PREEMPT_RT), waking a task whose CPU is idle puts
    // it on that CPU's wake list and IPIs it: the IPI runs
    // sched_ttwu_pending, and its sender is the waker (here noisegen's
    // pipe writer on CPU 0, every 20 ms, the reader blocked on CPU 1).
    let _serial = serial();
    let _v = Victim::start(&[
        "--cpu",
        "1",
        "--wake",
        "--sleep",
        "--period-us",
        "20000",
        "--duration",
        "60",
    ]);
    let (recs, _) = watch_events(&["--cpus", "1", "-D", "2"]);
    let wakes: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            r["cpu"] == 1
                && r["cause"]["class"] == "ipi"
                && r["cause"]["detail"] == "sched_ttwu_pending"
                && r["sender"]["comm"] == "noisegen"
        })
        .collect();
    let r = wakes
        .iter()
        .find(|r| stack_has(r, &["pipe_write"]))
        .unwrap_or_else(|| {
            panic!(
                "no sched_ttwu_pending IPI from noisegen whose stack names pipe_write among {} ({} records)",
                wakes.len(),
                recs.len()
            )
        });
    assert_eq!(r["idle"], true, "{r}");
    assert_ne!(r["sender"]["cpu"], 1, "{r}");
    assert!(
        r["sender"]["callsite"]
            .as_str()
            .unwrap()
            .starts_with("ttwu_queue_wakelist"),
        "{r}"
    );
}

#[test]
fn bpf_jit_text_patching_ipi_is_traced_to_the_xdp_attach() {
    let _serial = serial();
    let v = Victim::start(&["--cpu", "1", "--jit", "--duration", "60"]);
    let (recs, _) = watch_events(&["--cpus", "1", "-D", "2"]);
    let mine = victim_records(&recs, v.tid);
    // Each XDP attach/detach regenerates the JIT'd dispatcher and patches
    // the jump to it: do_sync_core on every CPU, sent by noisegen.
    let r = mine
        .iter()
        .find(|r| {
            r["cause"]["class"] == "ipi"
                && r["cause"]["detail"] == "do_sync_core"
                && stack_has(r, &["bpf_dispatcher_change_prog"])
        })
        .unwrap_or_else(|| {
            panic!(
                "no do_sync_core IPI on the victim traced to the XDP dispatcher among {} records",
                mine.len()
            )
        });
    assert_eq!(r["sender"]["comm"], "noisegen", "{r}");
    assert_ne!(r["sender"]["cpu"], 1, "{r}");
    assert!(
        stack_has(
            r,
            &["bpf_xdp_link_attach", "bpf_link_release", "bpf_link_free"]
        ),
        "{r}"
    );
}

/// Sender stacks are sampled, never lost or borrowed: under a storm of
/// identical IPIs from one task every IPI is still named by its function
/// and sender, a few carry their own stack, the others say it was not
/// taken (and the summary counts them); a task that starts sending later
/// has its stack from its first IPI.
#[test]
fn a_storm_of_identical_ipis_samples_sender_stacks_and_counts_the_rest() {
    let _serial = serial();
    // SCHED_FIFO: the victim keeps CPU 1 (and its mm live there, so that
    // every munmap IPIs it) on a machine busy with other work.
    let _storm = Victim::start(&[
        "--cpu",
        "1",
        "--ipi-storm",
        "--fifo",
        "10",
        "--duration",
        "60",
    ]);
    stay_on_housekeeping();
    let watch = LiveWatch::start(&[
        "--cpus",
        "1",
        "--events",
        "-D",
        "120",
        "--buffer-kb",
        "65536",
    ]);
    let t0 = std::time::Instant::now();
    // Another task, another function, once the watch is on: perf
    // installing an event on CPU 1 (remote_function), from CPU 0, with no
    // task of its own there.
    let late = Victim::start(&["--cpu", "1", "--perf", "--sleep", "--duration", "60"]);
    // Until it has sent a few (each install sleeps 1 ms after it: its
    // voluntary switches count them), with a deadline.
    let switches = |pid: u32| -> u64 {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
                    .filter_map(|st| {
                        st.lines()
                            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = t0 + std::time::Duration::from_secs(60);
    while (switches(late.child.id()) < 200 || t0.elapsed().as_secs() < 2)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!(
        "late sender: {} switches after {:?}",
        switches(late.child.id()),
        t0.elapsed()
    );
    let out = watch.stop();
    let watched = t0.elapsed();
    let mut recs = Vec::new();
    let mut s = Value::Null;
    for l in out.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        match v["type"].as_str() {
            Some("interruption") => recs.push(v),
            Some("summary") => s = v,
            _ => {}
        }
    }
    let late_pid = late.child.id();
    let of_late = |pid: u64| std::path::Path::new(&format!("/proc/{late_pid}/task/{pid}")).exists();
    // By the sender's function: a flush that reached CPU 1 while another
    // task displaced the victim is part of that displacement's record.
    let senders: Vec<&Value> = recs
        .iter()
        .map(|r| &r["sender"])
        .filter(|s| s["comm"] == "noisegen" && s["function"] == "flush_tlb_func")
        .collect();
    let has_stack = |s: &Value| s["stack"].as_array().is_some_and(|a| !a.is_empty());
    // Every one is named, with a stack or the reason it has none.
    for s in &senders {
        assert_eq!(s["function"], "flush_tlb_func", "{s}");
        assert!(!s["callsite"].as_str().unwrap().is_empty(), "{s}");
        assert!(
            has_stack(s) || (s["stack"].is_null() && s["stack_not_taken"].is_string()),
            "{s}"
        );
    }
    let storm: Vec<&&Value> = senders
        .iter()
        .filter(|s| !of_late(s["pid"].as_u64().unwrap()))
        .collect();
    let taken = storm.iter().filter(|s| has_stack(s)).count();
    let sampled = storm
        .iter()
        .filter(|s| s["stack_not_taken"] == "sampled")
        .count();
    let failed = storm
        .iter()
        .filter(|s| s["stack_not_taken"] == "failed")
        .count();
    let mut by_pid = std::collections::BTreeMap::new();
    for s in &senders {
        *by_pid.entry(s["pid"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert!(
        storm.len() > 1000,
        "only {} storm IPIs among {} records (flush_tlb_func by sender: {by_pid:?}, late pid {late_pid})",
        storm.len(),
        recs.len(),
    );
    assert_eq!(taken + sampled + failed, storm.len());
    assert!(taken > 0, "no storm IPI kept its stack");
    assert!(
        sampled > 0,
        "every one of {taken} storm IPIs took its stack"
    );
    // 16 per 100 ms and one in 256 of the rest (capture.bpf.c: STACK_BUDGET
    // per STACK_WINDOW_NS, STACK_ODDS), with room for chance: twice the
    // odds. (A key that left the sending CPU's cache for another sender's
    // and came back once took a new budget each time: 4 times the odds.)
    assert!(
        taken as u128 <= 16 * (watched.as_millis() / 100 + 5) + storm.len() as u128 / 128
            && taken < storm.len(),
        "{taken} of {} storm IPIs took their stack",
        storm.len()
    );
    // The ones taken are each IPI's own: the munmap path.
    let munmap = storm
        .iter()
        .filter(|s| has_stack(s))
        .filter(|s| {
            s["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f.as_str().unwrap().contains("munmap"))
        })
        .count();
    assert!(
        munmap * 10 >= taken * 9,
        "{munmap} of {taken} stacks name munmap"
    );
    // Counted, not silently missing: every sampled sender was counted in
    // the kernel (more, for IPIs whose records were not kept).
    let counted = s["drops"]["stack_sampled"].as_u64().unwrap();
    assert!(
        counted >= sampled as u64,
        "{counted} counted < {sampled} sampled records"
    );
    assert!(
        s["drops"]["stack"].as_u64().unwrap() >= failed as u64,
        "{}",
        s["drops"]
    );
    // The late task: its first IPI (unless the ring lost records) has its stack.
    let mut mine: Vec<&Value> = recs
        .iter()
        .map(|r| &r["sender"])
        .filter(|s| s.is_object() && of_late(s["pid"].as_u64().unwrap()))
        .collect();
    assert!(!mine.is_empty(), "no IPI from the task started later");
    mine.sort_by_key(|s| s["sent_ns"].as_u64().unwrap());
    if s["drops"]["ringbuf"].as_u64().unwrap() == 0 {
        assert!(has_stack(mine[0]), "the late task's first IPI: {}", mine[0]);
    } else {
        assert!(mine.iter().any(|s| has_stack(s)));
    }
}

#[test]
fn page_faults_of_the_victim_are_exceptions() {
    let _serial = serial();
    let v = Victim::start(&["--cpu", "1", "--fault", "--duration", "60"]);
    let (recs, _) = watch_events(&["--cpus", "1", "-D", "2"]);
    let faults = victim_records(&recs, v.tid)
        .into_iter()
        .filter(|r| r["cause"]["class"] == "exception" && r["cause"]["kind"] == "page_fault")
        .count();
    // One fault per millisecond while the victim runs: up to 2000 in two
    // seconds, fewer when a busy machine shares CPU 1 with it.
    assert!(faults > 50, "only {faults} page faults attributed");
}

#[test]
fn a_posix_timer_in_the_victim_is_a_timer_interrupt_running_posix_timer_fn() {
    let _serial = serial();
    let _v = Victim::start(&["--cpu", "1", "--timer", "--duration", "60"]);
    let (recs, _) = watch_events(&["--cpus", "1", "-D", "2"]);
    // The timer fires on CPU 1 every 10 ms whichever task runs there at
    // that moment (a busy CI machine shares CPU 1), so count them all.
    let n = recs
        .iter()
        .filter(|r| r["cause"]["class"] == "timer" && r["cause"]["detail"] == "posix_timer_fn")
        .count();
    assert!(
        n >= 20,
        "only {n} posix_timer_fn interrupts in 2 s of a 100 Hz timer"
    );
}

#[test]
fn strict_victim_is_killed_on_its_first_interruption_and_runs_no_further() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctr = dir.path().join("counter");
    let mut v = Victim::start(&[
        "--cpu",
        "1",
        "--tlb",
        "--duration",
        "20",
        "--counter",
        ctr.to_str().unwrap(),
    ]);
    let tid = v.tid.to_string();
    let out = std::process::Command::new(ISOL)
        .args([
            "watch",
            "--cpus",
            "1",
            "-D",
            "2",
            "--json",
            "--strict",
            &tid,
            "--progress-addr",
            &v.counter,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = v.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "victim was not SIGKILLed: {status:?}"
    );
    let b = &s["breaks"].as_array().unwrap()[0];
    assert_eq!(b["tid"], v.tid);
    assert_eq!(b["cpu"], 1);
    assert_eq!(b["signal"], 9);
    let class = b["cause"]["class"].as_str().unwrap();
    assert!(
        ["irq", "ipi", "timer", "softirq", "nmi", "sched"].contains(&class),
        "{b}"
    );
    let bytes = std::fs::read(&ctr).unwrap();
    let final_count = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert!(final_count > 0);
    assert_eq!(
        b["progress"].as_u64().unwrap(),
        final_count,
        "the victim ran further after the break"
    );
}

#[test]
fn a_flood_drops_records_visibly_and_keeps_counting() {
    let _serial = serial();
    let _v = Victim::start(&["--cpu", "1", "--ipi-storm", "--duration", "60"]);
    // A 64 KiB ring drained every 2 s cannot hold a storm: drops must show.
    let (recs, s) = watch_events(&[
        "--cpus",
        "1",
        "-D",
        "3",
        "--buffer-kb",
        "64",
        "--drain-ms",
        "2000",
    ]);
    let dropped = s["drops"]["ringbuf"].as_u64().unwrap();
    assert!(dropped > 0, "no ring buffer drops reported: {}", s["drops"]);
    assert_eq!(s["records"].as_u64().unwrap(), recs.len() as u64);
    // The in-kernel aggregates still count every interruption.
    let counted: u64 = s["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert!(
        counted >= recs.len() as u64 + dropped,
        "aggregates {counted} < records + drops"
    );
    // Memory stays bounded.
    assert!(
        s["max_rss_kb"].as_u64().unwrap() < 256 * 1024,
        "isol used {} KiB",
        s["max_rss_kb"]
    );
}

#[test]
fn isol_itself_makes_no_noise_on_the_watched_cpu() {
    let _serial = serial();
    // The reader of isol's output on CPU 0, as a user's would be: reading
    // on CPU 1, this test thread was woken there by isol's pipe writes
    // (reschedule IPIs that isol sent, in task context: CI saw them).
    let mut cpu0 = nix::sched::CpuSet::new();
    cpu0.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu0).unwrap();
    let (recs, s) = watch_events(&["--cpus", "1", "-D", "3"]);
    // A sender in interrupt context merely interrupted isol on CPU 0. Its
    // context comes from the preempt count, or (kernels without
    // KALLSYMS_ALL) from the stack; "unknown" only when that stack was
    // lost, which must then be counted, or not taken (sampled: the first
    // of each sender, callsite and function is always taken, so an IPI of
    // isol's own would show with its stack all the same).
    let stack_drops = s["drops"]["stack"].as_u64().unwrap();
    let me = |r: &&Value| {
        let ctx = &r["sender"]["context"];
        let sampled = r["sender"]["stack_not_taken"] == "sampled";
        r["comm"] == "isol"
            || (r["sender"]["comm"] == "isol"
                && (ctx == "task" || (ctx == "unknown" && stack_drops == 0 && !sampled)))
    };
    let ours: Vec<_> = recs.iter().filter(me).collect();
    assert!(
        ours.is_empty(),
        "isol interrupted the watched CPU: {:?}",
        ours
    );
    // Whatever else ran there was seen: records, or drops that are counted
    // (a busy machine's page faults can outrun the ring; never silently).
    assert!(!recs.is_empty() || s["drops"]["ringbuf"].as_u64().unwrap() > 0);
}

#[test]
fn pid_mode_follows_one_process_only() {
    let _serial = serial();
    let v = Victim::start(&["--cpu", "1", "--fault", "--duration", "60"]);
    let pid = v.child.id().to_string();
    let (recs, s) = watch_events(&["--pid", &pid, "-D", "2"]);
    assert_eq!(s["pid"].as_u64().unwrap().to_string(), pid);
    assert!(
        recs.len() > 100,
        "only {} records for the victim",
        recs.len()
    );
    for r in &recs {
        assert_eq!(
            r["pid"].as_u64().unwrap().to_string(),
            pid,
            "record of another process: {r}"
        );
    }
    assert!(recs.iter().any(|r| r["cause"]["kind"] == "page_fault"));
}

#[test]
fn strict_break_on_all_counts_the_tasks_own_page_fault() {
    let _serial = serial();
    // CPU 1 is not isolated here: another task or interrupt may reach the
    // victim before its own fault and rightly break it first. Retry a few
    // times; the fault must win at least once, and each other first break
    // is reported.
    let mut seen = Vec::new();
    for _ in 0..5 {
        // A fault every 10 us: far more often than any tick or IPI.
        let mut v = Victim::start(&[
            "--cpu",
            "1",
            "--fault",
            "--period-us",
            "10",
            "--duration",
            "20",
        ]);
        let tid = v.tid.to_string();
        let out = std::process::Command::new(ISOL)
            .args([
                "watch",
                "--cpus",
                "1",
                "-D",
                "2",
                "--json",
                "--strict",
                &tid,
                "--break-on",
                "all",
                "--signal",
                "USR1",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        use std::os::unix::process::ExitStatusExt;
        // noisegen has no SIGUSR1 handler: the configured signal kills it.
        assert_eq!(v.child.wait().unwrap().signal(), Some(10));
        let b = &s["breaks"].as_array().unwrap()[0];
        assert_eq!(b["signal"], 10);
        assert_eq!(b["tid"], v.tid);
        if b["cause"]["class"] == "exception" && b["cause"]["kind"] == "page_fault" {
            return;
        }
        seen.push(b["cause"].clone());
    }
    panic!("the victim's own page fault never broke it first; first breaks: {seen:?}");
}

#[test]
fn strict_break_on_async_ignores_the_tasks_own_faults() {
    let _serial = serial();
    let _v = Victim::start(&["--cpu", "1", "--fault", "--duration", "20"]);
    let tid = _v.tid.to_string();
    let out = std::process::Command::new(ISOL)
        .args([
            "watch", "--cpus", "1", "-D", "2", "--json", "--strict", &tid, "--signal", "USR1",
        ])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    for b in s["breaks"].as_array().unwrap() {
        assert_ne!(
            b["cause"]["class"], "exception",
            "a page fault broke async-only strict mode: {b}"
        );
    }
}

#[test]
fn syscalls_are_reported_only_when_asked() {
    let _serial = serial();
    // The victim's clock reads are vDSO; --timer makes it take signals,
    // and returning from a handler is rt_sigreturn (15) every 10 ms.
    let v = Victim::start(&["--cpu", "1", "--timer", "--duration", "60"]);
    let (recs, _) = watch_events(&["--cpus", "1", "-D", "2"]);
    assert!(!victim_records(&recs, v.tid)
        .iter()
        .any(|r| r["cause"]["class"] == "syscall"));
    let (recs, s) = watch_events(&["--cpus", "1", "-D", "2", "--syscalls"]);
    assert!(s["attached"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "raw_syscalls:sys_enter"));
    let sigreturns = victim_records(&recs, v.tid)
        .into_iter()
        .filter(|r| r["cause"]["class"] == "syscall" && r["cause"]["nr"] == 15)
        .count();
    assert!(sigreturns >= 50, "only {sigreturns} rt_sigreturn records");
}

/// A task preempted by another user task: its wait is one record of its
/// own, naming the task that preempted it, and the kernel entries of that
/// task while it runs are that task's own records, not folded into the
/// wait (the capture once kept the wait open as an episode and swallowed
/// them: an `isol noise` loop preempting a waiting task lost its IPIs).
/// Here a SCHED_FIFO noisegen takes CPU 1 from a spinning one for half a
/// second while its housekeeping thread sends it TLB-flush IPIs: every
/// flush is a record of the preempter, and the spinner's wait spans them.
#[test]
fn a_preempted_tasks_wait_is_its_own_and_the_preempters_ipis_are_its_own() {
    use std::time::{Duration, Instant};
    let _serial = serial();
    stay_on_housekeeping();
    let waiter = Victim::start(&["--cpu", "1", "--duration", "60"]);
    let watch = LiveWatch::start(&["--cpus", "1", "--events", "-D", "30"]);
    let mut preempter = Victim::start(&[
        "--cpu",
        "1",
        "--hk",
        "0",
        "--fifo",
        "10",
        "--tlb",
        "--duration",
        "0.5",
    ]);
    assert!(
        preempter.child.wait().unwrap().success(),
        "the preempter failed"
    );
    // The waiter runs again once the preempter is gone: its record comes
    // then. Wait for it (deadline), then stop the watch.
    let deadline = Instant::now() + Duration::from_secs(20);
    // utime (clock ticks), the 14th field of /proc/TID/stat.
    let utime = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/task/{}/stat", waiter.tid, waiter.tid))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(11)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    let utime0 = utime();
    while utime() <= utime0 + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let recs = watch.stop_records();
    let (w, p) = (waiter.tid, preempter.tid);
    // The preempter's TLB flushes: its own records, not part of a wait.
    let flushes: Vec<(u64, u64)> = recs
        .iter()
        .filter(|r| r["tid"] == p && r["cause"]["detail"] == "flush_tlb_func")
        .map(|r| {
            (
                r["start_ns"].as_u64().unwrap(),
                r["duration_ns"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        flushes.len() >= 50,
        "only {} TLB-flush records of the preempter {p}",
        flushes.len()
    );
    // The spinner waited all along (it may have been preempted first by
    // some other task of this busy machine: the record names that one).
    let covered = |r: &&Value| {
        let (s, d) = (
            r["start_ns"].as_u64().unwrap(),
            r["duration_ns"].as_u64().unwrap(),
        );
        flushes
            .iter()
            .filter(|f| f.0 >= s && f.0 + f.1 <= s + d)
            .count()
    };
    let wait = recs
        .iter()
        .filter(|r| r["tid"] == w && r["cause"]["class"] == "sched")
        .max_by_key(covered)
        .unwrap_or_else(|| panic!("no wait of the spinner {w}"));
    assert!(
        covered(&wait) * 10 >= flushes.len() * 9,
        "the spinner's longest wait holds {} of {} flushes: {wait}",
        covered(&wait),
        flushes.len()
    );
    assert!(
        wait["duration_ns"].as_u64().unwrap() >= 400_000_000,
        "{wait}"
    );
    assert_eq!(
        wait["chain"].as_array().unwrap().len(),
        1,
        "entries folded into the wait: {wait}"
    );
}

/// RT throttling (kernel.sched_rt_runtime_us below the period; on 6.12
/// and later the fair server) takes a spinning SCHED_FIFO task off its
/// CPU for part of each period, and the CPU may go idle meanwhile, before
/// or after a kernel thread ran there: every such wait is recorded (once
/// only a switch to another task was; then a wait that began with a
/// kworker ended when the kworker left). The truth is the kernel's own:
/// the task's run-queue delay in /proc/TID/schedstat.
#[test]
fn a_throttled_fifo_task_waits_and_the_wait_is_recorded() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let _serial = serial();
    let read = |f: &str| -> i64 {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (runtime, period) = (read("sched_rt_runtime_us"), read("sched_rt_period_us"));
    assert!(
        runtime >= 0 && runtime < period,
        "this test needs RT throttling (kernel.sched_rt_runtime_us {runtime} of {period})"
    );
    let throttled_ns = ((period - runtime) * 1000) as u64;
    let v = Victim::start(&["--cpu", "1", "--fifo", "10", "--duration", "60"]);
    // (time waiting on a run queue, ns): the second field; the kernel adds
    // a wait when it ends, as the capture writes its record.
    let schedstat = |field: usize| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/task/{}/schedstat", v.tid, v.tid))
            .expect("/proc/TID/schedstat (CONFIG_SCHED_INFO)");
        s.split_whitespace().nth(field).unwrap().parse().unwrap()
    };
    let run_delay = || schedstat(1);
    let mono = || -> u64 {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    };
    let watch = LiveWatch::start(&["--cpus", "1", "--events", "-D", "60"]);
    // Work queued on CPU 1 meanwhile: its kworker runs only when the FIFO
    // task yields the CPU, and the CPU may go idle after it while the task
    // is still held off. A vmstat refresh runs work on every CPU and
    // returns once it has run.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let refresher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Negative per-CPU drift may make it answer EINVAL after
                // the work ran: the work is what counts here.
                let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
                n += 1;
                // Not a flood: a flood turns every stretch into thousands
                // of short waits, which the kernel's figure times loosely.
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    // The window opens as a wait ends, so every wait the kernel adds
    // after began under the watch; it closes once the task has waited
    // three throttled stretches' worth (deadline).
    let deadline = Instant::now() + Duration::from_micros(20 * period as u64);
    let first = run_delay();
    while run_delay() == first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let (d0, t0, n0) = (run_delay(), mono(), schedstat(2));
    while run_delay() < d0 + 3 * throttled_ns && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (d1, t1, n1) = (run_delay(), mono(), schedstat(2));
    let recs = watch.stop_records();
    stop.store(true, Ordering::Relaxed);
    let refreshes = refresher.join().unwrap();
    assert!(refreshes >= 2, "{refreshes} vmstat refreshes");
    let expected = d1 - d0;
    assert!(
        expected >= 2 * throttled_ns,
        "the FIFO task waited {expected} ns in the window, not two throttled stretches"
    );
    // The task's waits that ended inside the window: those whose chain
    // holds a switch (an interrupt that ended in a preemption is one).
    let waits: Vec<&Value> = victim_records(&recs, v.tid)
        .into_iter()
        .filter(|r| {
            let end = r["start_ns"].as_u64().unwrap() + r["duration_ns"].as_u64().unwrap();
            end > t0
                && end <= t1
                && r["chain"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["class"] == "sched")
        })
        .collect();
    let total: u64 = waits
        .iter()
        .map(|r| r["duration_ns"].as_u64().unwrap())
        .sum();
    eprintln!(
        "recorded waits {total} ns in {} records, the kernel counted {expected} ns in {} waits",
        waits.len(),
        n1 - n0
    );
    // The window opened after a wait that began under the watch, so every
    // wait in the kernel's figure is one the capture saw. That figure runs
    // up to tens of µs per wait above the switches themselves (its run-
    // queue clock is not always updated at a switch: on 6.18 a flood of
    // refreshes gave 202 ms where sched_switch showed 189.7 and isol
    // recorded 189.5; 11 to 16 µs per wait), hence 25 µs per wait of
    // room below; nothing may count twice above.
    let room = (n1 - n0) * 25_000 + 5_000_000;
    assert!(
        total + room >= expected && total <= expected + expected / 20 + 2_000_000,
        "the FIFO task's recorded waits total {total} ns, the kernel counted {expected} ns \
         in {} waits (throttled stretches of {throttled_ns} ns): {waits:?}",
        n1 - n0
    );
    assert!(
        waits.iter().any(|r| r["chain"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["detail"] == "refresh_vm_stats")),
        "no vmstat refresh work ran while the FIFO task waited: {waits:?}"
    );
    for r in &waits {
        if r["cause"]["pid"] == 0 {
            let d = r["cause"]["detail"].as_str().unwrap();
            assert!(d.starts_with("idle while runnable"), "{r}");
        }
    }
}
