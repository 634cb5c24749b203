//! rtla-style actions on a threshold (`--on-threshold`): what to do when an
//! interruption (watch) or a gap (noise) reaches the threshold, and the
//! bounded per-CPU ring of recent records the `trace` action writes out.
//!
//! Actions run in the reader's thread, which isol pins to housekeeping
//! CPUs, and so do the processes they start: an action never runs on a
//! watched CPU.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

/// Default file of the `trace` action (JSON lines, as `--events` prints).
pub const DEFAULT_TRACE_FILE: &str = "isol_trace.jsonl";

/// Who receives the `signal` action's signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalTarget {
    Pid(i32),
    /// isol's parent process, looked up when the action runs.
    Parent,
}

/// One `--on-threshold` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the ring's last window of the CPU's records to `file`.
    Trace {
        file: PathBuf,
    },
    Signal {
        num: i32,
        target: SignalTarget,
    },
    /// Run `command` with /bin/sh -c, the event in its environment.
    Shell {
        command: String,
    },
    /// Keep going after the actions (default: stop).
    Continue,
}

fn signal_number(s: &str) -> Option<i32> {
    isol_system::signal::parse(s).filter(|n| (1..=64).contains(n))
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        let (name, rest) = match s.split_once(',') {
            Some((n, r)) => (n, Some(r)),
            None => (s, None),
        };
        match name {
            "trace" => {
                let file = match rest {
                    None => PathBuf::from(DEFAULT_TRACE_FILE),
                    // The rest is the path, commas and all.
                    Some(r) => match r.strip_prefix("file=") {
                        Some("") => return Err("trace: file= needs a path".into()),
                        Some(f) => PathBuf::from(f),
                        None => {
                            return Err(format!(
                                "trace: unknown argument {r:?} (only file=PATH)"
                            ))
                        }
                    },
                };
                Ok(Action::Trace { file })
            }
            "signal" => {
                let mut num = None;
                let mut target = None;
                for kv in rest.unwrap_or("").split(',').filter(|k| !k.is_empty()) {
                    match kv.split_once('=') {
                        Some(("num", v)) => {
                            num = Some(signal_number(v).ok_or_else(|| {
                                format!("signal: num={v:?} is not a signal (1-64 or a name such as USR1)")
                            })?)
                        }
                        Some(("pid", "parent")) => target = Some(SignalTarget::Parent),
                        Some(("pid", v)) => {
                            let p: i32 = v.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                                format!("signal: pid={v:?} is not a process id or \"parent\"")
                            })?;
                            target = Some(SignalTarget::Pid(p));
                        }
                        _ => {
                            return Err(format!(
                                "signal: unknown argument {kv:?} (num=N,pid=P|parent)"
                            ))
                        }
                    }
                }
                match (num, target) {
                    (Some(num), Some(target)) => Ok(Action::Signal { num, target }),
                    (None, _) => Err("signal: num=N is missing (signal,num=N,pid=P)".into()),
                    (_, None) => Err("signal: pid=P is missing (signal,num=N,pid=P)".into()),
                }
            }
            "shell" => match rest.and_then(|r| r.strip_prefix("command=")) {
                // The rest is the command, commas and all (rtla splits it).
                Some(c) if !c.trim().is_empty() => Ok(Action::Shell { command: c.into() }),
                Some(_) => Err("shell: command= is empty".into()),
                None => Err("shell: command=CMD is missing (shell,command=CMD)".into()),
            },
            "continue" => match rest {
                None => Ok(Action::Continue),
                Some(r) => Err(format!("continue: takes no argument, got {r:?}")),
            },
            other => Err(format!(
                "unknown action {other:?}: use trace[,file=F], signal,num=N,pid=P|parent, shell,command=CMD or continue"
            )),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Trace { file } => write!(f, "trace,file={}", file.display()),
            Action::Signal { num, target } => match target {
                SignalTarget::Pid(p) => write!(f, "signal,num={num},pid={p}"),
                SignalTarget::Parent => write!(f, "signal,num={num},pid=parent"),
            },
            Action::Shell { command } => write!(f, "shell,command={command}"),
            Action::Continue => write!(f, "continue"),
        }
    }
}

/// Something with a CPU and a time span (CLOCK_MONOTONIC ns).
pub trait Timed {
    fn cpu(&self) -> u32;
    fn start_ns(&self) -> u64;
    fn end_ns(&self) -> u64;
}

impl Timed for crate::record::RawRecord {
    fn cpu(&self) -> u32 {
        self.cpu
    }
    fn start_ns(&self) -> u64 {
        self.start_ns
    }
    fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}

/// The last `window_ns` of each CPU's records, at most `max_per_cpu` of
/// them: older records age out; a full ring evicts its oldest and counts
/// it in `dropped` (it was still inside the window).
pub struct Ring<T> {
    window_ns: u64,
    max_per_cpu: usize,
    cpus: HashMap<u32, VecDeque<T>>,
    dropped: u64,
}

impl<T: Timed + Clone> Ring<T> {
    pub fn new(window_ns: u64, max_per_cpu: usize) -> Ring<T> {
        Ring {
            window_ns,
            max_per_cpu: max_per_cpu.max(1),
            cpus: HashMap::new(),
            dropped: 0,
        }
    }

    /// A ring bounded in bytes per CPU.
    pub fn with_bytes(window_ns: u64, bytes_per_cpu: usize) -> Ring<T> {
        Ring::new(window_ns, bytes_per_cpu / std::mem::size_of::<T>().max(1))
    }

    pub fn max_per_cpu(&self) -> usize {
        self.max_per_cpu
    }

    pub fn window_ns(&self) -> u64 {
        self.window_ns
    }

    /// Records evicted while still inside the window.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn push(&mut self, r: T) {
        let q = self.cpus.entry(r.cpu()).or_default();
        let horizon = r.end_ns().saturating_sub(self.window_ns);
        while q.front().is_some_and(|o| o.end_ns() < horizon) {
            q.pop_front();
        }
        if q.len() >= self.max_per_cpu {
            q.pop_front();
            self.dropped += 1;
        }
        q.push_back(r);
    }

    /// The CPU's records that ended within `window_ns` before `until_ns`
    /// (and not after it), by start time.
    pub fn window(&self, cpu: u32, until_ns: u64) -> Vec<T> {
        let horizon = until_ns.saturating_sub(self.window_ns);
        let mut v: Vec<T> = self
            .cpus
            .get(&cpu)
            .map(|q| {
                q.iter()
                    .filter(|r| r.end_ns() >= horizon && r.end_ns() <= until_ns)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| (r.start_ns(), r.end_ns()));
        v
    }
}

/// The event that reached the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `interruption` (isol watch) or `gap` (isol noise).
    pub kind: &'static str,
    pub cpu: u32,
    /// CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    pub duration_ns: u64,
    /// The cause in words (`ipi call_function flush_tlb_func`), or `hw`.
    pub cause: String,
}

impl Event {
    /// When isol could first know of it: its end.
    pub fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}

/// One action as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRun {
    pub action: String,
    pub ok: bool,
    /// What it did, or why it failed.
    pub detail: String,
    /// From the event's end to this action's start, ns (CLOCK_MONOTONIC).
    pub lag_ns: u64,
}

/// A threshold crossing and the actions it ran (the `--json` outputs).
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub event: Event,
    pub actions: Vec<ActionRun>,
}

impl Hit {
    /// One line for a person: the crossing and what each action did.
    pub fn describe(&self) -> String {
        let e = &self.event;
        let mut s = format!(
            "CPU {}: {:.1}us {} ({}) reached the threshold",
            e.cpu,
            e.duration_ns as f64 / 1e3,
            e.kind,
            e.cause.trim()
        );
        for r in &self.actions {
            s += &format!(
                "; {}: {}, {}",
                r.action,
                if r.ok { "ok" } else { "FAILED" },
                r.detail
            );
        }
        s
    }
}

/// The threshold, its crossings and the actions they ran: the
/// `on_threshold` object of `isol watch --json` and `isol noise --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub threshold_ns: u64,
    /// Stopped after the first crossing's actions (no `continue`).
    pub stopped: bool,
    pub hits: Vec<Hit>,
    /// Crossings whose actions did not run because the run had ended
    /// (duration or Ctrl-C) while actions of earlier ones ran: with
    /// `continue` and a flood, actions never hold the end of the run.
    pub missed: u64,
    pub trace_window_ms: u64,
    /// Records the trace ring evicted while still inside the window.
    pub trace_dropped: u64,
}

use isol_system::clock::monotonic_ns;

/// Runs the actions, in order, for one event. `trace_lines` gives the JSON
/// lines the `trace` action writes (the window up to and including the
/// event), produced only if a `trace` action is present.
pub fn run_actions(
    actions: &[Action],
    event: &Event,
    trace_lines: &mut dyn FnMut() -> Vec<String>,
) -> Hit {
    let mut runs = Vec::new();
    for a in actions {
        if *a == Action::Continue {
            continue;
        }
        let lag_ns = monotonic_ns().saturating_sub(event.end_ns());
        let result = match a {
            Action::Trace { file } => write_trace(file, &trace_lines()),
            Action::Signal { num, target } => send_signal(*num, target),
            Action::Shell { command } => shell(command, event),
            Action::Continue => unreachable!(),
        };
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        runs.push(ActionRun {
            action: a.to_string(),
            ok,
            detail,
            lag_ns,
        });
    }
    Hit {
        event: event.clone(),
        actions: runs,
    }
}

fn write_trace(file: &std::path::Path, lines: &[String]) -> Result<String, String> {
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(file)?);
        for l in lines {
            writeln!(f, "{l}")?;
        }
        f.flush()
    };
    write()
        .map(|_| format!("{} records to {}", lines.len(), file.display()))
        .map_err(|e| format!("{}: {e}", file.display()))
}

fn send_signal(num: i32, target: &SignalTarget) -> Result<String, String> {
    let pid = match target {
        SignalTarget::Pid(p) => *p,
        // SAFETY: getppid has no memory effects.
        SignalTarget::Parent => unsafe { libc::getppid() },
    };
    // SAFETY: kill has no memory effects.
    if unsafe { libc::kill(pid, num) } == 0 {
        Ok(format!("signal {num} to pid {pid}"))
    } else {
        Err(format!(
            "signal {num} to pid {pid}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn shell(command: &str, e: &Event) -> Result<String, String> {
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("ISOL_EVENT", e.kind)
        .env("ISOL_CPU", e.cpu.to_string())
        .env("ISOL_START_NS", e.start_ns.to_string())
        .env("ISOL_DURATION_NS", e.duration_ns.to_string())
        .env("ISOL_CAUSE", &e.cause)
        .status()
        .map_err(|err| format!("/bin/sh: {err}"))?;
    if status.success() {
        Ok("exit 0".into())
    } else {
        Err(format!("the command failed: {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Action, String> {
        s.parse()
    }

    #[test]
    fn good_actions_parse() {
        assert_eq!(
            parse("trace").unwrap(),
            Action::Trace {
                file: DEFAULT_TRACE_FILE.into()
            }
        );
        assert_eq!(
            parse("trace,file=/tmp/a,b.jsonl").unwrap(),
            Action::Trace {
                file: "/tmp/a,b.jsonl".into()
            }
        );
        assert_eq!(
            parse("signal,num=10,pid=42").unwrap(),
            Action::Signal {
                num: 10,
                target: SignalTarget::Pid(42)
            }
        );
        assert_eq!(
            parse("signal,pid=parent,num=SIGUSR1").unwrap(),
            Action::Signal {
                num: libc::SIGUSR1,
                target: SignalTarget::Parent
            }
        );
        assert_eq!(
            parse("signal,num=usr2,pid=1").unwrap(),
            Action::Signal {
                num: libc::SIGUSR2,
                target: SignalTarget::Pid(1)
            }
        );
        assert_eq!(
            parse("shell,command=echo a,b >> f").unwrap(),
            Action::Shell {
                command: "echo a,b >> f".into()
            }
        );
        assert_eq!(parse("continue").unwrap(), Action::Continue);
        for s in [
            "trace,file=x",
            "signal,num=9,pid=parent",
            "shell,command=true",
            "continue",
        ] {
            assert_eq!(parse(s).unwrap().to_string(), s, "round trip");
        }
    }

    #[test]
    fn bad_actions_name_the_bad_part() {
        let err = |s: &str| parse(s).unwrap_err();
        assert!(err("tracee").contains("\"tracee\""), "{}", err("tracee"));
        assert!(err("trace,path=x").contains("\"path=x\""));
        assert!(err("trace,file=").contains("file="));
        assert!(err("signal,num=99,pid=1").contains("num=\"99\""));
        assert!(err("signal,num=USR9,pid=1").contains("num=\"USR9\""));
        assert!(err("signal,num=1,pid=me").contains("pid=\"me\""));
        assert!(err("signal,num=1,pid=-3").contains("pid=\"-3\""));
        assert!(err("signal,pid=1").contains("num=N is missing"));
        assert!(err("signal,num=1").contains("pid=P is missing"));
        assert!(err("signal,num=1,pid=2,to=3").contains("\"to=3\""));
        assert!(err("shell").contains("command=CMD is missing"));
        assert!(err("shell,cmd=ls").contains("command=CMD is missing"));
        assert!(err("shell,command= ").contains("empty"));
        assert!(err("continue,now").contains("\"now\""));
    }

    #[derive(Clone, Debug, PartialEq)]
    struct R(u32, u64, u64);
    impl Timed for R {
        fn cpu(&self) -> u32 {
            self.0
        }
        fn start_ns(&self) -> u64 {
            self.1
        }
        fn end_ns(&self) -> u64 {
            self.1 + self.2
        }
    }

    #[test]
    fn ring_keeps_the_window_per_cpu() {
        let mut ring = Ring::new(100, 1000);
        for t in (0..1000).step_by(10) {
            ring.push(R(1, t, 2));
            ring.push(R(2, t + 5, 1));
        }
        // CPU 1's last record ends at 992: the window is [892, 992].
        let w = ring.window(1, 992);
        assert_eq!(w.first().unwrap().1, 890);
        assert_eq!(w.last().unwrap().1, 990);
        assert_eq!(w.len(), 11);
        assert!(w.iter().all(|r| r.0 == 1));
        // Records after `until` are left out.
        assert_eq!(ring.window(1, 952).last().unwrap().1, 950);
        // Aging out is not dropping.
        assert_eq!(ring.dropped(), 0);
        assert!(ring.window(3, 992).is_empty());
    }

    #[test]
    fn ring_bound_evicts_the_oldest_and_counts_it() {
        let mut ring = Ring::new(1_000_000, 4);
        for t in 0..10 {
            ring.push(R(0, t * 10, 1));
        }
        let w = ring.window(0, 100);
        assert_eq!(
            w.iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![60, 70, 80, 90]
        );
        assert_eq!(ring.dropped(), 6);
        // A byte bound becomes a record bound.
        let r: Ring<R> = Ring::with_bytes(1, 10 * std::mem::size_of::<R>());
        assert_eq!(r.max_per_cpu(), 10);
    }

    #[test]
    fn ring_window_is_in_time_order_whatever_the_arrival_order() {
        let mut ring = Ring::new(1000, 100);
        ring.push(R(0, 50, 5));
        ring.push(R(0, 10, 5));
        ring.push(R(0, 30, 5));
        let w: Vec<u64> = ring.window(0, 100).iter().map(|r| r.1).collect();
        assert_eq!(w, vec![10, 30, 50]);
    }

    #[test]
    fn actions_run_in_order_and_shell_sees_the_event() {
        let dir = std::env::temp_dir().join(format!("isol-thr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let trace = dir.join("t.jsonl");
        let out = dir.join("env");
        let actions = vec![
            Action::Trace {
                file: trace.clone(),
            },
            Action::Shell {
                command: format!(
                    "echo \"$ISOL_EVENT $ISOL_CPU $ISOL_START_NS $ISOL_DURATION_NS $ISOL_CAUSE\" > {}",
                    out.display()
                ),
            },
            Action::Shell {
                command: "exit 3".into(),
            },
            Action::Continue,
        ];
        let e = Event {
            kind: "gap",
            cpu: 3,
            start_ns: 100,
            duration_ns: 7,
            cause: "hw".into(),
        };
        let hit = run_actions(&actions, &e, &mut || vec!["{}".into(), "{\"a\":1}".into()]);
        assert_eq!(hit.actions.len(), 3, "continue runs nothing");
        assert!(hit.actions[0].ok && hit.actions[1].ok);
        assert!(!hit.actions[2].ok && hit.actions[2].detail.contains("exit status: 3"));
        assert_eq!(std::fs::read_to_string(&trace).unwrap(), "{}\n{\"a\":1}\n");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "gap 3 100 7 hw\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
