//! Waiting for the tick to stop on an isolated CPU, and naming what keeps
//! it when it does not. Runs on a housekeeping CPU (isold's, or the
//! in-process watcher's thread): the isolated task spins meanwhile.

use crate::protocol::{Dependency, PendingTimer, TickReport, TimersWait};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// TICK_DEP_MASK_* bits (include/linux/tick.h) as timer:tick_stop reports them.
const DEPENDENCIES: &[(u32, &str)] = &[
    (1 << 0, "posix_timer"),
    (1 << 1, "perf_events"),
    (1 << 2, "sched"),
    (1 << 3, "clock_unstable"),
    (1 << 4, "rcu"),
    (1 << 5, "rcu_exp"),
];

/// One CPU's part of /proc/timer_list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CpuTimers {
    pub tick_stopped: Option<bool>,
    /// Queued hrtimer functions, the tick's own excluded.
    pub hrtimers: Vec<String>,
    /// The same with when each expires (ns from now; negative: overdue).
    pub expiring: Vec<(String, i64)>,
    /// The tick's own hrtimer is queued, and expires in this many ns. With
    /// the tick stopped, it is programmed for the CPU's next timer event:
    /// a timer-wheel timer when no other hrtimer is queued.
    pub tick_queued: Option<i64>,
}

fn is_tick(f: &str) -> bool {
    matches!(f, "tick_nohz_handler" | "tick_sched_timer")
}

pub fn parse_timer_list(text: &str) -> BTreeMap<u32, CpuTimers> {
    let mut out: BTreeMap<u32, CpuTimers> = BTreeMap::new();
    let mut cur: Option<u32> = None;
    let mut last_fn: Option<String> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("cpu: ") {
            cur = n.trim().parse().ok();
            continue;
        }
        if line.starts_with("Tick Device") {
            cur = None; // the per-device section follows; it repeats "cpu"
            continue;
        }
        let Some(c) = cur else { continue };
        let e = out.entry(c).or_default();
        let t = line.trim();
        if let Some(v) = t.strip_prefix(".tick_stopped") {
            e.tick_stopped = v
                .trim_start_matches([' ', ':'])
                .trim()
                .parse::<u8>()
                .ok()
                .map(|v| v != 0);
        } else if let Some(r) = t.strip_prefix("# expires at ") {
            // " # expires at 1234-1234 nsecs [in 5000 to 5000 nsecs]"
            let inn = r
                .split("[in ")
                .nth(1)
                .and_then(|x| x.split_whitespace().next())
                .and_then(|x| x.parse::<i64>().ok());
            if let (Some(ns), Some(f)) = (inn, last_fn.take()) {
                if is_tick(&f) {
                    e.tick_queued = Some(ns);
                } else {
                    e.expiring.push((f, ns));
                }
            }
        } else if t.starts_with('#') {
            // " #0: <0000000047c5c88b>, tick_nohz_handler, S:01"
            if let Some(f) = t.split(", ").nth(1) {
                if !is_tick(f) {
                    e.hrtimers.push(f.to_string());
                }
                last_fn = Some(f.to_string());
            }
        }
    }
    out
}

/// The task's scheduling state and CPU from /proc/TID/stat.
fn task_on(tid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after comm: state is 3rd overall, processor the 39th.
    Some((f.first()?.chars().next()?, f.get(36)?.parse().ok()?))
}

/// The tick state the capture engine saw, in CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Copy, Default)]
pub struct TickSeen {
    pub fail_ts_ns: u64,
    pub fail_dependency: u32,
}

pub use isol_system::clock::monotonic_ns;

/// Wait up to `timeout` for the tick to be stopped on `cpu` while `tid`
/// runs there. `seen` reads timer:tick_stop's last failure (None if no
/// capture engine watches the CPU).
pub fn wait(
    cpu: u32,
    tid: u32,
    timeout: Duration,
    seen: &dyn Fn() -> Option<TickSeen>,
) -> TickReport {
    wait_with(cpu, tid, timeout, false, seen)
}

/// [`wait`], and with `timers` (the timers quiesce) go on waiting, within
/// the same timeout, until no timer at all is pending on the CPU: no
/// hrtimer queued, and the stopped tick not programmed (it is, for the
/// CPU's next timer-wheel timer). Deferrable timers do not count: they
/// never end a stopped tick. Those still pending at the end are named.
pub fn wait_with(
    cpu: u32,
    tid: u32,
    timeout: Duration,
    timers: bool,
    seen: &dyn Fn() -> Option<TickSeen>,
) -> TickReport {
    let t0 = Instant::now();
    let start_ns = monotonic_ns();
    let mut report = TickReport {
        cpu,
        stopped: false,
        waited_ms: 0,
        dependencies: vec![],
        pending_timers: vec![],
        timers: None,
    };
    if !crate::stock::read_set("/sys/devices/system/cpu/nohz_full").contains(cpu) {
        report.dependencies.push(Dependency {
            kind: "not_nohz_full".into(),
            detail: format!(
                "CPU {cpu} is not in nohz_full=, so its tick runs whenever a task does: boot with nohz_full={cpu}"
            ),
        });
        if timers {
            report.timers = Some(TimersWait {
                quiet: false,
                waited_ms: 0,
                pending: vec![PendingTimer {
                    function: "tick".into(),
                    expires_in_ms: None,
                    detail: format!("CPU {cpu} is not nohz_full: its tick runs while a task does, and with it the timers"),
                }],
            });
        }
        return report;
    }
    let mut cur;
    let mut stopped_at = None;
    loop {
        match std::fs::read_to_string("/proc/timer_list") {
            Ok(t) => cur = parse_timer_list(&t).remove(&cpu).unwrap_or_default(),
            Err(e) => {
                report.dependencies.push(Dependency {
                    kind: "unknown".into(),
                    detail: format!("cannot read /proc/timer_list ({e}): it needs root"),
                });
                return report;
            }
        }
        let running_there = matches!(task_on(tid), Some(('R', c)) if c == cpu);
        let stopped = cur.tick_stopped == Some(true) && running_there;
        if stopped && stopped_at.is_none() {
            stopped_at = Some(t0.elapsed());
            report.stopped = true;
        }
        let quiet = stopped && cur.expiring.is_empty() && cur.tick_queued.is_none();
        if stopped && (!timers || quiet) {
            break;
        }
        if t0.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    report.waited_ms = stopped_at.unwrap_or(t0.elapsed()).as_millis() as u64;
    report.pending_timers = cur.hrtimers.clone();
    if !report.stopped {
        report.dependencies = explain(cpu, tid, start_ns, seen());
    }
    if timers {
        report.timers = Some(timers_wait(&cur, report.stopped, t0.elapsed()));
    }
    report
}

fn timers_wait(cur: &CpuTimers, stopped: bool, waited: Duration) -> TimersWait {
    let mut pending: Vec<PendingTimer> = cur
        .expiring
        .iter()
        .map(|(f, ns)| PendingTimer {
            function: f.clone(),
            expires_in_ms: Some(ns / 1_000_000),
            detail: timer_detail(f).into(),
        })
        .collect();
    if !stopped {
        pending.push(PendingTimer {
            function: "tick".into(),
            expires_in_ms: None,
            detail: "the tick did not stop (see the dependencies), so the timers run with it"
                .into(),
        });
    } else if let (Some(ns), true) = (cur.tick_queued, cur.expiring.is_empty()) {
        pending.push(PendingTimer {
            function: "timer wheel".into(),
            expires_in_ms: Some(ns / 1_000_000),
            detail: "a timer-wheel timer (add_timer/mod_timer: a driver, the network stack, a delayed work): the stopped tick is programmed for it".into(),
        });
    }
    TimersWait {
        quiet: pending.is_empty(),
        waited_ms: waited.as_millis() as u64,
        pending,
    }
}

fn timer_detail(function: &str) -> &'static str {
    match function {
        "posix_timer_fn" => "a POSIX timer (timer_create) of a process on this CPU: /proc/PID/timers lists the task's own",
        "it_real_fn" => "an ITIMER_REAL (setitimer, alarm) of a process on this CPU",
        "hrtimer_wakeup" => "the timeout of a task sleeping on this CPU (nanosleep, poll, futex)",
        "dl_task_timer" | "inactive_task_timer" => "the deadline scheduler's timer (the fair server ran here: a SCHED_OTHER task shared the CPU)",
        "sched_rt_period_timer" => "RT throttling's period timer (sysctl kernel.sched_rt_runtime_us=-1 removes it)",
        _ => "an hrtimer armed on this CPU",
    }
}

/// Name the dependencies: from timer:tick_stop when watched, with the
/// evidence user space can find for each.
/// What keeps the tick on `cpu` for a watcher that follows no one task
/// (`isol watch`): the dependencies timer:tick_stop last reported there,
/// explained, with the tasks runnable there named. Empty when it reported
/// none.
pub fn explain_cpu(cpu: u32, seen: TickSeen) -> Vec<Dependency> {
    if seen.fail_dependency == 0 {
        return Vec::new();
    }
    let mut deps = explain(cpu, 0, 0, Some(seen));
    let running = runnable_others(cpu, 0);
    for d in &mut deps {
        if d.kind == "posix_timer" && !running.is_empty() {
            d.detail = format!(
                "a POSIX CPU timer, setitimer(ITIMER_PROF/ITIMER_VIRTUAL) or RLIMIT_CPU of a task running there: {}",
                running.join(", ")
            );
        }
    }
    deps
}

fn explain(cpu: u32, tid: u32, since_ns: u64, seen: Option<TickSeen>) -> Vec<Dependency> {
    let others = runnable_others(cpu, tid);
    let timers = cpu_timers_of(tid);
    let mut kinds: Vec<&str> = match seen {
        Some(s) if s.fail_ts_ns >= since_ns => DEPENDENCIES
            .iter()
            .filter(|(b, _)| s.fail_dependency & b != 0)
            .map(|(_, n)| *n)
            .collect(),
        _ => vec![],
    };
    if kinds.is_empty() {
        // Not traced: infer from what is visible.
        if !others.is_empty() {
            kinds.push("sched");
        }
        if !timers.is_empty() {
            kinds.push("posix_timer");
        }
    }
    if kinds.is_empty() {
        return vec![Dependency {
            kind: "unknown".into(),
            detail: if seen.is_none() {
                "timer:tick_stop is not watched on this CPU (run isold, or activate with CAP_BPF) so the reason is unknown".into()
            } else {
                "the tick did not stop and timer:tick_stop reported no dependency (is the task blocking?)".into()
            },
        }];
    }
    kinds
        .into_iter()
        .map(|k| {
            let detail = match k {
                "posix_timer" if !timers.is_empty() => format!(
                    "POSIX CPU timer(s) of the process: {} (the tick must run to account CPU time)",
                    timers.join("; ")
                ),
                "posix_timer" => "a POSIX CPU timer, setitimer(ITIMER_PROF/ITIMER_VIRTUAL) or RLIMIT_CPU of the process keeps the tick".into(),
                "sched" if !others.is_empty() => format!(
                    "other runnable tasks on CPU {cpu}: {}",
                    others.join(", ")
                ),
                "sched" => format!("more than one task was runnable on CPU {cpu}"),
                "perf_events" => "perf events count on this CPU or task (perf record/stat, a PMU watchdog)".into(),
                "rcu" => format!("RCU needs CPU {cpu}: boot with rcu_nocbs={cpu}"),
                "rcu_exp" => "an expedited RCU grace period is in progress".into(),
                "clock_unstable" => "the clocksource is unstable: boot with tsc=reliable if the TSC is sound".into(),
                _ => String::new(),
            };
            Dependency {
                kind: k.into(),
                detail,
            }
        })
        .collect()
}

/// Runnable tasks on `cpu` other than `tid`: "comm[tid]".
fn runnable_others(cpu: u32, tid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Ok(t) = t.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if t == tid {
                continue;
            }
            if let Some(('R', c)) = task_on(t) {
                if c == cpu {
                    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/comm"))
                        .unwrap_or_default();
                    out.push(format!("{}[{t}]", comm.trim()));
                }
            }
        }
    }
    out
}

/// POSIX timers on CPU-time clocks of the task's process (/proc/PID/timers).
fn cpu_timers_of(tid: u32) -> Vec<String> {
    let tgid = std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:").map(|v| v.trim().to_string()))
        });
    let Some(tgid) = tgid else { return vec![] };
    let text = std::fs::read_to_string(format!("/proc/{tgid}/timers")).unwrap_or_default();
    parse_cpu_timers(&text)
}

pub fn parse_cpu_timers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut id = String::new();
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("ID:") {
            id = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("ClockID:") {
            let clock: i64 = v.trim().parse().unwrap_or(0);
            let name = match clock {
                2 => Some("CLOCK_PROCESS_CPUTIME_ID".to_string()),
                3 => Some("CLOCK_THREAD_CPUTIME_ID".to_string()),
                c if c < 0 => Some(cpu_clock_name(c)),
                _ => None,
            };
            if let Some(n) = name {
                out.push(format!("timer {id} on {n}"));
            }
        }
    }
    out
}

/// The kernel's encoding of CPU-time clocks (include/linux/posix-timers.h):
/// ~pid << 3 | per-thread bit 2 | 0 prof, 1 virt, 2 sched. The timers file
/// shows CLOCK_PROCESS_CPUTIME_ID as -6 (pid 0 = the caller, process, sched).
fn cpu_clock_name(c: i64) -> String {
    let pid = !(c >> 3);
    let thread = c & 4 != 0;
    let kind = ["ITIMER_PROF-like", "ITIMER_VIRTUAL-like", "sched"][(c & 3).min(2) as usize];
    match (pid, thread, c & 3) {
        (0, false, 2) => "CLOCK_PROCESS_CPUTIME_ID".into(),
        (0, true, 2) => "CLOCK_THREAD_CPUTIME_ID".into(),
        _ => format!(
            "the {} CPU clock of {} {pid} ({kind})",
            if thread { "thread" } else { "process" },
            if thread { "thread" } else { "process" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_list_per_cpu() {
        let t = "Timer List Version: v0.10\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at 1 nsecs\n\ncpu: 0\n clock 0:\n  active timers:\n #0: <00000000a>, tick_nohz_handler, S:01\n #1: <00000000b>, hrtimer_wakeup, S:01\n  .tick_stopped   : 0\n\ncpu: 1\n clock 0:\n #0: <00000000c>, posix_timer_fn, S:01\n  .tick_stopped   : 1\n\nTick Device: mode:     1\nPer CPU device: 0\n";
        let m = parse_timer_list(t);
        assert_eq!(m[&0].tick_stopped, Some(false));
        assert_eq!(m[&0].hrtimers, vec!["hrtimer_wakeup"]);
        assert_eq!(m[&1].tick_stopped, Some(true));
        assert_eq!(m[&1].hrtimers, vec!["posix_timer_fn"]);
    }

    #[test]
    fn timer_list_expiries_and_the_stopped_ticks_program() {
        let t = "cpu: 1\n clock 0:\n  active timers:\n #0: <0000000c>, tick_nohz_handler, S:01\n # expires at 5000000-5000000 nsecs [in 3000000 to 3000000 nsecs]\n #1: <0000000d>, posix_timer_fn, S:01\n # expires at 9000000-9000000 nsecs [in 7000000 to 7000000 nsecs]\n  .tick_stopped   : 1\n";
        let m = parse_timer_list(t);
        assert_eq!(m[&1].tick_queued, Some(3_000_000));
        assert_eq!(
            m[&1].expiring,
            vec![("posix_timer_fn".to_string(), 7_000_000)]
        );
        let w = timers_wait(&m[&1], true, Duration::from_millis(5));
        assert!(!w.quiet);
        assert_eq!(w.pending.len(), 1, "{w:?}");
        assert_eq!(w.pending[0].function, "posix_timer_fn");
        assert_eq!(w.pending[0].expires_in_ms, Some(7));
        // Only the tick's own timer: a timer-wheel timer is due.
        let t = "cpu: 1\n #0: <0000000c>, tick_nohz_handler, S:01\n # expires at 5-5 nsecs [in 4000000 to 4000000 nsecs]\n  .tick_stopped   : 1\n";
        let w = timers_wait(&parse_timer_list(t)[&1], true, Duration::ZERO);
        assert_eq!(w.pending[0].function, "timer wheel");
        let t = "cpu: 1\n  .tick_stopped   : 1\n";
        assert!(timers_wait(&parse_timer_list(t)[&1], true, Duration::ZERO).quiet);
    }

    #[test]
    fn real_timer_list_parses_when_readable() {
        if let Ok(t) = std::fs::read_to_string("/proc/timer_list") {
            let m = parse_timer_list(&t);
            assert!(m.contains_key(&0), "no cpu 0 in /proc/timer_list");
            assert!(m[&0].tick_stopped.is_some(), "no .tick_stopped for cpu 0");
        }
    }

    #[test]
    fn cpu_clock_timers_are_named() {
        let t = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.5\nClockID: 2\nID: 1\nsignal: 14/0\nnotify: signal/pid.5\nClockID: 1\n";
        assert_eq!(
            parse_cpu_timers(t),
            vec!["timer 0 on CLOCK_PROCESS_CPUTIME_ID"]
        );
    }
}
