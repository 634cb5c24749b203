//! `--on-threshold` on the host (CPU 1 watched or measured; isol and the
//! generators' senders on CPU 0): the actions run for the event that
//! reached the threshold, with its facts, from a housekeeping CPU, and the
//! command stops after them. Needs root, BPF and tracefs: CI runs as root.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits for `child` up to `limit`; kills it and fails past that.
fn wait_deadline(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `isol SUB ARGS` with stdout to a file (a long event stream must not
/// block on a pipe) and waits for it, deadline `limit`.
fn isol_run(sub: &str, args: &[&str], dir: &Path, limit: Duration) -> (String, String) {
    stay_on_housekeeping();
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let mut child = Command::new(ISOL)
        .arg(sub)
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = wait_deadline(&mut child, limit, &format!("isol {sub}"));
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.success(), "isol {sub} failed: {stderr}");
    (stdout, stderr)
}

fn env_file(path: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the shell action left no {}: {e}", path.display()))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(['=', ':'])?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// What the shell action writes: the ISOL_* variables and the CPUs it may
/// run on.
fn shell_probe(out: &Path) -> String {
    format!(
        "env | grep ^ISOL_ > {0}; grep Cpus_allowed_list /proc/self/status >> {0}",
        out.display()
    )
}

fn cpus_of(list: &str) -> Vec<u32> {
    list.parse::<isol_cpulist::CpuSet>()
        .unwrap()
        .iter()
        .collect()
}

#[test]
fn watch_traces_the_window_runs_the_shell_for_that_event_and_stops() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let envf = dir.path().join("env");
    // Page faults every 100 us fill the window before any crossing; the
    // TLB IPIs and the tick are interruptions that last more than 1 us.
    let _v = Victim::start(&[
        "--cpu",
        "1",
        "--tlb",
        "--fault",
        "--period-us",
        "100",
        "--duration",
        "120",
    ]);
    let t0 = Instant::now();
    let (stdout, stderr) = isol_run(
        "watch",
        &[
            "--cpus",
            "1",
            "-D",
            "60",
            "--events",
            "--threshold-us",
            "1",
            "--trace-window-ms",
            "200",
            "--on-threshold",
            &format!("trace,file={}", trace.display()),
            "--on-threshold",
            &format!("shell,command={}", shell_probe(&envf)),
        ],
        dir.path(),
        Duration::from_secs(90),
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let on = &summary["on_threshold"];
    assert_eq!(on["threshold_ns"], 1000);
    // Stopped after the actions: one hit, long before -D 60 ran out.
    assert_eq!(on["stopped"], true, "{on}");
    let hits = on["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{on}");
    assert!(
        summary["duration_s"].as_f64().unwrap() < 50.0 && t0.elapsed() < Duration::from_secs(55),
        "watch did not stop after the actions: {}",
        summary["duration_s"]
    );
    let hit = &hits[0];
    let ran: Vec<&str> = hit["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["ok"], true, "{a}");
            a["action"].as_str().unwrap()
        })
        .collect();
    assert!(ran[0].starts_with("trace,file=") && ran[1].starts_with("shell,command="));
    assert_eq!(ran.len(), 2);
    assert!(stderr.contains("reached the threshold"), "{stderr}");
    let ev = &hit["event"];
    let (cpu, start, dur) = (
        ev["cpu"].as_u64().unwrap(),
        ev["start_ns"].as_u64().unwrap(),
        ev["duration_ns"].as_u64().unwrap(),
    );
    assert_eq!(cpu, 1);
    assert!(dur >= 1000, "{ev}");

    // The trace: CPU 1's records, in time order, ending with the crossing
    // record, none ending more than the window before it.
    let recs: Vec<Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let crossed: Vec<&Value> = recs.iter().filter(|r| r["crossed"] == true).collect();
    assert_eq!(crossed.len(), 1, "one crossing record in the trace");
    let c = crossed[0];
    assert_eq!(c["cpu"], 1);
    assert_eq!(c["start_ns"].as_u64().unwrap(), start);
    assert_eq!(c["duration_ns"].as_u64().unwrap(), dur);
    assert!(c["duration_ns"].as_u64().unwrap() >= 1000);
    assert!(
        recs.len() >= 2,
        "no record before the crossing within the window: {recs:?}"
    );
    let end = start + dur;
    let mut last = 0;
    for r in &recs {
        assert_eq!(r["cpu"], 1, "another CPU's record in the trace: {r}");
        let s = r["start_ns"].as_u64().unwrap();
        let e = s + r["duration_ns"].as_u64().unwrap();
        assert!(s >= last, "trace not in time order");
        last = s;
        assert!(
            e <= end && e + 200_000_000 >= end,
            "outside the window: {r}"
        );
    }
    assert_eq!(recs.last().unwrap()["crossed"], true);
    // Every CPU 1 record the event stream shows in that window is in the
    // trace (the ring dropped none).
    assert_eq!(on["trace_dropped"], 0);
    let in_window = lines
        .iter()
        .filter(|r| r["type"] == "interruption" && r["cpu"] == 1)
        .filter(|r| {
            let e = r["start_ns"].as_u64().unwrap() + r["duration_ns"].as_u64().unwrap();
            e <= end && e + 200_000_000 >= end
        })
        .count();
    assert_eq!(recs.len(), in_window, "trace vs event stream");

    // The shell ran with that event's facts, on a housekeeping CPU.
    let env = env_file(&envf);
    assert_eq!(env["ISOL_EVENT"], "interruption");
    assert_eq!(env["ISOL_CPU"], "1");
    assert_eq!(env["ISOL_START_NS"], start.to_string());
    assert_eq!(env["ISOL_DURATION_NS"], dur.to_string());
    assert_eq!(env["ISOL_CAUSE"], ev["cause"].as_str().unwrap());
    assert!(env["ISOL_CAUSE"].starts_with(c["cause"]["class"].as_str().unwrap()));
    let allowed = cpus_of(&env["Cpus_allowed_list"]);
    assert!(
        !allowed.contains(&1),
        "the action ran where it may use the watched CPU: {allowed:?}"
    );
}

#[test]
fn watch_signals_a_process_and_it_sees_the_signal() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    let _v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "120"]);
    // The receiver: a shell that records SIGUSR1 and exits 0 (it dies of
    // the signal's default action if its trap is not set yet: the trap is
    // set before it prints "ready").
    let mut rx = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "trap 'echo USR1 > {}; exit 0' USR1; echo ready; while :; do sleep 0.01; done",
            got.display()
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(rx.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = rx.id().to_string();
    let (stdout, _) = isol_run(
        "watch",
        &[
            "--cpus",
            "1",
            "-D",
            "60",
            "--json",
            "--threshold-us",
            "1",
            "--on-threshold",
            &format!("signal,num=SIGUSR1,pid={pid}"),
        ],
        dir.path(),
        Duration::from_secs(90),
    );
    let status = wait_deadline(&mut rx, Duration::from_secs(10), "the signalled shell");
    assert!(
        status.success(),
        "the receiver did not trap SIGUSR1: {status:?}"
    );
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "USR1");
    let s: Value = serde_json::from_str(&stdout).unwrap();
    let a = &s["on_threshold"]["hits"][0]["actions"][0];
    assert_eq!(a["action"], format!("signal,num=10,pid={pid}"));
    assert_eq!(a["ok"], true);
}

#[test]
fn bad_actions_are_refused_naming_the_bad_part() {
    for (args, needle) in [
        (
            vec![
                "watch",
                "--threshold-us",
                "5",
                "--on-threshold",
                "signal,num=1,pid=me",
            ],
            "pid=\"me\"",
        ),
        (
            vec!["watch", "--threshold-us", "5", "--on-threshold", "bogus"],
            "\"bogus\"",
        ),
        (
            vec!["watch", "--on-threshold", "continue"],
            "--on-threshold needs --threshold-us",
        ),
        (
            vec!["noise", "-c", "1", "--on-threshold", "trace"],
            "--on-threshold needs --stop-above",
        ),
    ] {
        let out = Command::new(ISOL).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn noise_traces_the_gap_above_stop_above_runs_the_shell_and_stops() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let envf = dir.path().join("env");
    // A sleeping victim whose 10 ms timer interrupts CPU 1: records in the
    // window whatever else the machine does.
    let _v = Victim::start(&["--cpu", "1", "--sleep", "--timer", "--duration", "120"]);
    // The injected 3 ms stall crosses 500 us for sure; a real gap (a busy
    // machine preempting the loop) may cross first, and counts the same.
    let (stdout, stderr) = isol_run(
        "noise",
        &[
            "-c",
            "1",
            "-D",
            "30",
            "-s",
            "500",
            "--inject-stall",
            "300:3000",
            "--trace-window-ms",
            "200",
            "--json",
            "--on-threshold",
            &format!("trace,file={}", trace.display()),
            "--on-threshold",
            &format!("shell,command={}", shell_probe(&envf)),
        ],
        dir.path(),
        Duration::from_secs(60),
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let on = &r["on_threshold"];
    assert_eq!(on["threshold_ns"], 500_000);
    assert_eq!(on["stopped"], true, "{on}");
    let hits = on["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{on}");
    assert!(
        r["duration_s"].as_f64().unwrap() < 20.0,
        "noise did not stop after the actions"
    );
    assert!(stderr.contains("reached the threshold"), "{stderr}");
    let ev = &hits[0]["event"];
    assert_eq!(ev["kind"], "gap");
    assert_eq!(ev["cpu"], 1);
    let (start, dur) = (
        ev["start_ns"].as_u64().unwrap(),
        ev["duration_ns"].as_u64().unwrap(),
    );
    assert!(dur > 500_000, "{ev}");
    // The report's own stop is that gap (same length within the two
    // clock fits' rounding).
    let stop = r["stopped"]["gap_ns"].as_u64().unwrap();
    assert!(stop.abs_diff(dur) < 10_000, "stop {stop} vs event {dur}");
    for a in hits[0]["actions"].as_array().unwrap() {
        assert_eq!(a["ok"], true, "{a}");
    }

    let lines: Vec<Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let gap = lines.last().unwrap();
    assert_eq!(gap["type"], "gap");
    assert_eq!(gap["crossed"], true);
    assert_eq!(gap["start_ns"].as_u64().unwrap(), start);
    assert_eq!(gap["duration_ns"].as_u64().unwrap(), dur);
    let recs = &lines[..lines.len() - 1];
    assert!(!recs.is_empty(), "no record of CPU 1 in the window");
    let end = start + dur;
    let mut last = 0;
    for x in recs {
        assert_eq!(x["type"], "interruption");
        assert_eq!(x["cpu"], 1, "another CPU's record: {x}");
        let s = x["start_ns"].as_u64().unwrap();
        let e = s + x["duration_ns"].as_u64().unwrap();
        assert!(s >= last, "trace not in time order");
        last = s;
        // 20 us of slack for the TSC-to-monotonic mapping of the gap.
        assert!(
            e <= end + 20_000 && e + 200_000_000 >= end,
            "outside the window: {x}"
        );
    }

    let env = env_file(&envf);
    assert_eq!(env["ISOL_EVENT"], "gap");
    assert_eq!(env["ISOL_CPU"], "1");
    assert_eq!(env["ISOL_START_NS"], start.to_string());
    assert_eq!(env["ISOL_DURATION_NS"], dur.to_string());
    assert_eq!(env["ISOL_CAUSE"], ev["cause"].as_str().unwrap());
    assert!(!cpus_of(&env["Cpus_allowed_list"]).contains(&1));
}

#[test]
fn watch_with_continue_acts_on_every_crossing_and_still_ends_on_time() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // A TLB-flush flood: far more crossings than shell commands can keep
    // up with. The run must still end at -D, counting the rest as missed.
    let _v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "120"]);
    let t0 = Instant::now();
    let (stdout, _) = isol_run(
        "watch",
        &[
            "--cpus",
            "1",
            "-D",
            "2",
            "--json",
            "--threshold-us",
            "1",
            "--on-threshold",
            &format!("shell,command=echo \"$ISOL_START_NS\" >> {}", log.display()),
            "--on-threshold",
            "continue",
        ],
        dir.path(),
        Duration::from_secs(60),
    );
    let s: Value = serde_json::from_str(&stdout).unwrap();
    let on = &s["on_threshold"];
    assert_eq!(on["stopped"], false);
    let hits = on["hits"].as_array().unwrap();
    assert!(hits.len() >= 2, "{on}");
    // Ends at -D (plus the last batch's drain), not when the flood is done.
    let took = s["duration_s"].as_f64().unwrap();
    assert!((2.0..20.0).contains(&took), "ran {took} s for -D 2");
    assert!(t0.elapsed() < Duration::from_secs(40));
    // Each hit ran its shell once, for its own event, in order.
    let logged: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let starts: Vec<String> = hits
        .iter()
        .map(|h| h["event"]["start_ns"].to_string())
        .collect();
    assert_eq!(logged, starts);
}

#[test]
fn noise_with_continue_keeps_measuring_after_the_actions() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // The injected 3 ms stall crosses 500 us at 300 ms; the loop must go on
    // to -D 2 and run the shell once per crossing.
    let (stdout, _) = isol_run(
        "noise",
        &[
            "-c",
            "1",
            "-D",
            "2",
            "-s",
            "500",
            "--inject-stall",
            "300:3000",
            "--json",
            "--on-threshold",
            &format!(
                "shell,command=echo \"$ISOL_DURATION_NS\" >> {}",
                log.display()
            ),
            "--on-threshold",
            "continue",
        ],
        dir.path(),
        Duration::from_secs(60),
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    let on = &r["on_threshold"];
    assert_eq!(on["stopped"], false, "{on}");
    assert!(
        r["stopped"].is_null(),
        "the loop stopped at a gap: {}",
        r["stopped"]
    );
    assert!(r["duration_s"].as_f64().unwrap() >= 2.0);
    let hits = on["hits"].as_array().unwrap();
    assert!(!hits.is_empty(), "{on}");
    assert!(hits
        .iter()
        .any(|h| h["event"]["duration_ns"].as_u64().unwrap() >= 3_000_000));
    let logged: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let durations: Vec<String> = hits
        .iter()
        .map(|h| h["event"]["duration_ns"].to_string())
        .collect();
    assert_eq!(logged, durations);
}
