//! Shared by the CLI integration tests: the isol binary, the noisegen
//! test program (testprogs/noisegen.c, built once), and JSON helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const ISOL: &str = env!("CARGO_BIN_EXE_isol");

/// Capture tests share CPU 1: run them one at a time, across threads and
/// processes.
pub fn serial() -> isol_lab::lock::FileLock {
    isol_lab::lock::host_cpu1().expect("locking the host's CPU 1 for this test")
}

/// testprogs/noisegen.c, built static by the lab's builder.
pub fn noisegen() -> PathBuf {
    isol_lab::testprogs::testprog("noisegen").expect("building noisegen")
}

/// A running noisegen and the tid/counter address it printed.
pub struct Victim {
    pub child: Child,
    pub tid: u32,
    pub counter: String,
}

impl Victim {
    pub fn start(args: &[&str]) -> Victim {
        let mut child = Command::new(noisegen())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("noisegen");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut tid = 0;
        let mut counter = String::new();
        for w in line.split_whitespace() {
            if let Some(t) = w.strip_prefix("tid=") {
                tid = t.parse().unwrap();
            }
            if let Some(c) = w.strip_prefix("counter=") {
                counter = c.to_string();
            }
        }
        assert!(tid > 0, "noisegen printed {line:?}");
        Victim {
            child,
            tid,
            counter,
        }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keep this test thread (which reads isol's output) on CPU 0: a reader
/// on the watched CPU would be woken there by isol's writes.
pub fn stay_on_housekeeping() {
    let mut set = nix::sched::CpuSet::new();
    set.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// `isol watch ... --events`: the interruption records and the summary.
/// Run `isol SUBCOMMAND ARGS...` from a housekeeping CPU; it must succeed.
/// Returns its stdout.
pub fn isol_ok(subcommand: &str, args: &[&str]) -> String {
    stay_on_housekeeping();
    let out = Command::new(ISOL)
        .arg(subcommand)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "isol {subcommand} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn watch_events(args: &[&str]) -> (Vec<Value>, Value) {
    let args = [args, &["--events"]].concat();
    let mut recs = Vec::new();
    let mut summary = Value::Null;
    for l in isol_ok("watch", &args).lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        match v["type"].as_str() {
            Some("interruption") => recs.push(v),
            Some("summary") => summary = v,
            other => panic!("unexpected line type {other:?}"),
        }
    }
    assert_eq!(summary["schema"], "isol.watch/1");
    (recs, summary)
}

pub fn stack_has(rec: &Value, needles: &[&str]) -> bool {
    rec["sender"]["stack"]
        .as_array()
        .map(|s| {
            s.iter()
                .any(|f| needles.iter().any(|n| f.as_str().unwrap_or("").contains(n)))
        })
        .unwrap_or(false)
}

/// `isol watch ARGS` running while the test provokes: started once it
/// says it is watching, its stdout read as it comes (a full pipe would
/// stall it), stopped with SIGINT as a user would.
pub struct LiveWatch {
    child: Child,
    reader: Option<std::thread::JoinHandle<String>>,
    /// Its stderr after the start, read on (a closed pipe would fail its
    /// later writes) and shown if it fails.
    errors: Option<std::thread::JoinHandle<String>>,
}

impl LiveWatch {
    pub fn start(args: &[&str]) -> LiveWatch {
        use std::io::{BufRead, BufReader, Read};
        use std::time::{Duration, Instant};
        let mut child = Command::new(ISOL)
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let t = Instant::now();
        while !line.contains("watching ") {
            line.clear();
            assert!(
                err.read_line(&mut line).unwrap() > 0 && t.elapsed() < Duration::from_secs(60),
                "isol watch did not start"
            );
        }
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).unwrap();
            s
        });
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        LiveWatch {
            child,
            reader: Some(reader),
            errors: Some(errors),
        }
    }

    /// `stop`, then the interruption records of its `--events` output.
    #[allow(dead_code)] // not every test binary stops a watch this way
    pub fn stop_records(self) -> Vec<Value> {
        self.stop()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v["type"] == "interruption")
            .collect()
    }

    /// SIGINT, then its whole stdout; it must have exited cleanly.
    pub fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let st = self.child.wait().unwrap();
        let errors = self.errors.take().unwrap().join().unwrap();
        assert!(st.success(), "isol watch failed ({st}): {errors}");
        self.reader.take().unwrap().join().unwrap()
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
