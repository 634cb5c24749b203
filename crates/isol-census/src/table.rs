//! Counting: events (from the capture engine or a trace-cmd report) go in,
//! the census tables come out: IPIs by callback, by sender stack, per
//! minute, and every other interruption by class, kind and detail.

use crate::report::{CallbackRow, InterruptionRow, Report, SenderRow};
use std::collections::BTreeMap;

/// Frames kept of a sender stack (innermost first) in the sender table.
pub const STACK_DEPTH: usize = 16;

/// Who sent an IPI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSender {
    pub cpu: Option<u32>,
    pub pid: Option<u32>,
    pub comm: String,
    /// `task`, `hardirq` or `softirq` (empty when unknown).
    pub context: String,
    pub callsite: String,
    /// Kernel stack, innermost first, as recorded (offsets allowed).
    pub stack: Vec<String>,
}

/// One interruption of (or IPI aimed at) an isolated CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since the census started.
    pub ts_ns: u64,
    /// Target CPU, when known (a cpumask IPI names several).
    pub cpu: Option<u32>,
    /// `ipi`, `timer`, `irq`, `softirq`, ...
    pub class: String,
    /// `call_function`, `call_function_single`, `reschedule`, ...
    pub kind: String,
    /// For IPIs the callback the target runs; otherwise the detail.
    pub callback: String,
    pub duration_ns: Option<u64>,
    pub sender: Option<EventSender>,
}

impl Event {
    /// An event from a capture record: IPIs count under the function the
    /// target ran (remote irq_work arrives with no csd entry: its function
    /// comes from the sender side).
    pub fn from_record(r: &isol_capture::Record, t0_ns: u64) -> Event {
        let c = &r.cause;
        let class = c.class.name().to_string();
        let kind = c.kind.name().to_string();
        let mut callback = c.detail.clone();
        if class == "ipi" {
            let generic = callback == kind
                || callback.is_empty()
                || callback.starts_with("generic_smp_call_function");
            if generic {
                if let Some(f) = r.sender.as_ref().map(|s| &s.function) {
                    if !f.is_empty() && !f.starts_with("0x") {
                        callback = f.clone();
                    }
                }
            }
        }
        if c.class == isol_capture::Class::VmExit {
            // The host's part of a VM exit is what ran in it: an IPI's
            // function when one took the guest out, else the reason.
            if let Some(f) = r
                .chain
                .iter()
                .find(|x| x.kind == isol_capture::Kind::CsdFunction)
            {
                callback = f.detail.clone();
            }
        }
        Event {
            ts_ns: r.start_ns.saturating_sub(t0_ns),
            cpu: Some(r.cpu),
            class,
            kind,
            callback: strip_offset(&callback).to_string(),
            duration_ns: (!r.no_duration).then_some(r.duration_ns),
            sender: r.sender.as_ref().map(|s| EventSender {
                cpu: Some(s.cpu),
                pid: Some(s.pid),
                comm: s.comm.clone(),
                context: s.context.to_string(),
                callsite: s.callsite.clone(),
                stack: s.stack.clone(),
            }),
        }
    }
}

/// `do_flush_tlb_all+0x0` -> `do_flush_tlb_all`; `f (ffffffff8100)` -> `f`.
pub fn strip_offset(f: &str) -> &str {
    let f = f.trim();
    let f = f.split(" (").next().unwrap_or(f);
    f.split('+').next().unwrap_or(f).trim()
}

/// Frames that belong to the tracer, not to the sender.
fn tracing_frame(f: &str) -> bool {
    f.starts_with("trace_event_raw_event_")
        || f.starts_with("perf_trace_")
        || f.starts_with("__traceiter_")
        || f.starts_with("__bpf_trace_")
        || f.starts_with("bpf_trace_run")
        || f.starts_with("bpf_prog_")
        || f.starts_with("trace_")
        || f == "ftrace_call"
}

/// A sender stack as the sender table keys it: no offsets, no tracer
/// frames, at most [`STACK_DEPTH`] frames.
pub fn normalize_stack(stack: &[String]) -> Vec<String> {
    stack
        .iter()
        .map(|f| strip_offset(f))
        .filter(|f| !f.is_empty())
        .skip_while(|f| tracing_frame(f))
        .take(STACK_DEPTH)
        .map(str::to_string)
        .collect()
}

#[derive(Default)]
struct CallbackAgg {
    kinds: BTreeMap<String, u64>,
    count: u64,
    per_minute: Vec<u64>,
    cpus: BTreeMap<u32, u64>,
}

#[derive(Default)]
struct SenderAgg {
    count: u64,
    comms: BTreeMap<String, u64>,
    contexts: BTreeMap<String, u64>,
    callsites: BTreeMap<String, u64>,
}

#[derive(Default)]
struct IntAgg {
    count: u64,
    total_ns: u64,
    max_ns: u64,
}

/// Accumulates events; [`Census::finish`] fills a [`Report`].
#[derive(Default)]
pub struct Census {
    callbacks: BTreeMap<String, CallbackAgg>,
    senders: BTreeMap<(String, Vec<String>), SenderAgg>,
    interruptions: BTreeMap<(String, String, String), IntAgg>,
    ipis: u64,
    events: u64,
}

/// The per-minute series stops here (a week): a recording, or an imported
/// trace whose timestamps say it spans years, must not size an array by
/// its span (found by tests/fuzz.rs: one event at 1e12 s asked for 13 PB).
pub const MAX_MINUTES: usize = 7 * 24 * 60;

impl Census {
    pub fn new() -> Census {
        Census::default()
    }

    pub fn add(&mut self, e: &Event) {
        self.events += 1;
        let minute = (e.ts_ns / 60_000_000_000) as usize;
        // An IPI that took a guest out (a VM exit with a sender) is an
        // IPI all the same.
        if e.class == "ipi" || (e.class == "vmexit" && e.sender.is_some()) {
            self.ipis += 1;
            let cb = self.callbacks.entry(e.callback.clone()).or_default();
            cb.count += 1;
            *cb.kinds.entry(e.kind.clone()).or_default() += 1;
            if minute < MAX_MINUTES {
                if cb.per_minute.len() <= minute {
                    cb.per_minute.resize(minute + 1, 0);
                }
                cb.per_minute[minute] += 1;
            }
            if let Some(c) = e.cpu {
                *cb.cpus.entry(c).or_default() += 1;
            }
            let (stack, s) = match &e.sender {
                Some(s) => (normalize_stack(&s.stack), Some(s)),
                None => (Vec::new(), None),
            };
            let row = self.senders.entry((e.callback.clone(), stack)).or_default();
            row.count += 1;
            let comm = s.map_or("(unknown)".to_string(), |s| comm_class(&s.comm));
            *row.comms.entry(comm).or_default() += 1;
            if let Some(s) = s {
                if !s.context.is_empty() {
                    *row.contexts.entry(s.context.clone()).or_default() += 1;
                }
                if !s.callsite.is_empty() {
                    *row.callsites
                        .entry(strip_offset(&s.callsite).to_string())
                        .or_default() += 1;
                }
            }
        }
        let i = self
            .interruptions
            .entry((e.class.clone(), e.kind.clone(), e.callback.clone()))
            .or_default();
        i.count += 1;
        if let Some(d) = e.duration_ns {
            i.total_ns += d;
            i.max_ns = i.max_ns.max(d);
        }
    }

    /// Fill the report's tables for a census of `duration_s` seconds.
    pub fn finish(self, report: &mut Report) {
        let d = report.duration_s.max(1e-9);
        let per_min = |n: u64| n as f64 * 60.0 / d;
        let minutes = ((d / 60.0).ceil() as usize).clamp(1, MAX_MINUTES);
        if d / 60.0 > MAX_MINUTES as f64 {
            report.notes.push(format!(
                "IPIs per minute kept for the first {MAX_MINUTES} minutes only (the census spans {:.0})",
                d / 60.0
            ));
        }
        report.ipis = self.ipis;
        report.interruptions = self.events;
        report.ipis_per_min = per_min(self.ipis);
        let mut cbs: Vec<CallbackRow> = self
            .callbacks
            .into_iter()
            .map(|(callback, a)| {
                let mut pm = a.per_minute;
                pm.resize(pm.len().max(minutes), 0);
                CallbackRow {
                    callback,
                    kinds: a.kinds.into_keys().collect(),
                    count: a.count,
                    per_min: per_min(a.count),
                    per_minute: pm,
                    cpus: a
                        .cpus
                        .into_iter()
                        .map(|(c, n)| (c.to_string(), n))
                        .collect(),
                }
            })
            .collect();
        cbs.sort_by(|a, b| b.count.cmp(&a.count).then(a.callback.cmp(&b.callback)));
        report.callbacks = cbs;
        let top = |m: BTreeMap<String, u64>| -> Vec<(String, u64)> {
            let mut v: Vec<_> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v
        };
        let mut senders: Vec<SenderRow> = self
            .senders
            .into_iter()
            .map(|((callback, stack), a)| SenderRow {
                callback,
                count: a.count,
                per_min: per_min(a.count),
                comms: top(a.comms).into_iter().collect(),
                context: top(a.contexts)
                    .into_iter()
                    .next()
                    .map(|x| x.0)
                    .unwrap_or_default(),
                callsite: top(a.callsites)
                    .into_iter()
                    .next()
                    .map(|x| x.0)
                    .unwrap_or_default(),
                stack,
            })
            .collect();
        senders.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.callback.cmp(&b.callback))
                .then(a.stack.cmp(&b.stack))
        });
        report.senders = senders;
        let mut ints: Vec<InterruptionRow> = self
            .interruptions
            .into_iter()
            .map(|((class, kind, detail), a)| InterruptionRow {
                class,
                kind,
                detail,
                count: a.count,
                per_min: per_min(a.count),
                total_ns: a.total_ns,
                max_ns: a.max_ns,
            })
            .collect();
        ints.sort_by(|a, b| b.count.cmp(&a.count).then(a.detail.cmp(&b.detail)));
        report.interruption_table = ints;
    }
}

/// `kworker/0:1H` -> `kworker`, `ksoftirqd/3` -> `ksoftirqd`: per-CPU
/// kthreads count as one sender.
pub fn comm_class(comm: &str) -> String {
    for k in [
        "kworker/",
        "ksoftirqd/",
        "migration/",
        "cpuhp/",
        "rcuc/",
        "rcuop/",
        "rcuog/",
    ] {
        if comm.starts_with(k) {
            return k.trim_end_matches('/').to_string();
        }
    }
    comm.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use isol_capture::record::Sender;
    use isol_capture::{Cause, Class, Kind, Record};

    fn ipi(ts_s: u64, cb: &str, stack: &[&str], comm: &str) -> Event {
        Event {
            ts_ns: ts_s * 1_000_000_000,
            cpu: Some(1),
            class: "ipi".into(),
            kind: "call_function".into(),
            callback: cb.into(),
            duration_ns: Some(1000),
            sender: Some(EventSender {
                comm: comm.into(),
                context: "task".into(),
                callsite: "on_each_cpu_cond_mask+0x20".into(),
                stack: stack.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn counts_by_callback_stack_and_minute() {
        let mut c = Census::new();
        let s1 = [
            "trace_event_raw_event_ipi_send_cpumask+0x10",
            "smp_call_function_many_cond+0x1",
            "flush_tlb_kernel_range+0x7b",
            "__purge_vmap_area_lazy+0x70",
        ];
        c.add(&ipi(5, "do_flush_tlb_all", &s1, "kworker/0:1"));
        c.add(&ipi(70, "do_flush_tlb_all", &s1, "kworker/0:2"));
        c.add(&ipi(
            75,
            "do_sync_core",
            &["text_poke_bp_batch+0x1"],
            "bpftool",
        ));
        c.add(&Event {
            ts_ns: 3,
            cpu: Some(1),
            class: "timer".into(),
            kind: "local_timer".into(),
            callback: "tick_nohz_handler".into(),
            duration_ns: Some(500),
            sender: None,
        });
        let mut r = Report::new("isol");
        r.duration_s = 120.0;
        c.finish(&mut r);
        assert_eq!(r.ipis, 3);
        assert_eq!(r.interruptions, 4);
        assert_eq!(r.callbacks[0].callback, "do_flush_tlb_all");
        assert_eq!(r.callbacks[0].count, 2);
        assert_eq!(r.callbacks[0].per_minute, vec![1, 1]);
        assert_eq!(r.callbacks[0].per_min, 1.0);
        assert_eq!(r.callbacks[1].per_minute, vec![0, 1]);
        // Both kworkers share one sender row; the tracer's frame is gone.
        assert_eq!(r.senders[0].count, 2);
        assert_eq!(r.senders[0].comms.get("kworker"), Some(&2));
        assert_eq!(r.senders[0].stack[0], "smp_call_function_many_cond");
        assert_eq!(r.senders[0].callsite, "on_each_cpu_cond_mask");
        let t = r
            .interruption_table
            .iter()
            .find(|i| i.class == "timer")
            .unwrap();
        assert_eq!((t.count, t.total_ns, t.max_ns), (1, 500, 500));
    }

    fn cause(class: Class, kind: Kind, detail: &str) -> Cause {
        Cause {
            class,
            kind,
            detail: detail.into(),
            irq: None,
            vector: None,
            address: None,
            pid: None,
            nr: None,
            vm_exit: None,
        }
    }

    fn vm_exit(chain: Vec<Cause>, sender: Option<Sender>) -> Record {
        Record {
            cpu: 1,
            tid: 7,
            pid: 6,
            comm: "vmm".into(),
            start_ns: 2_000,
            duration_ns: 900,
            exact: false,
            idle: false,
            strict_break: false,
            no_duration: false,
            truncated: false,
            vm_userspace: false,
            pre_activation: false,
            cause: chain[0].clone(),
            chain,
            sender,
            other_sender: None,
        }
    }

    #[test]
    fn vm_exits_count_under_what_ran_in_them() {
        let exit = |r| cause(Class::VmExit, Kind::VmExit, r);
        let tlb = vm_exit(
            vec![
                exit("INTR"),
                cause(Class::Ipi, Kind::CallFunction, "call_function"),
                cause(Class::Ipi, Kind::CsdFunction, "flush_tlb_func"),
            ],
            Some(Sender {
                cpu: 0,
                context: "task",
                pid: 8,
                comm: "vmm".into(),
                callsite: "on_each_cpu_cond_mask".into(),
                function: "flush_tlb_func".into(),
                stack: vec!["smp_call_function_many_cond".into()],
                stack_not_taken: None,
                sent_ns: 1_000,
            }),
        );
        let hlt = vm_exit(vec![exit("HLT")], None);
        let (e, h) = (Event::from_record(&tlb, 0), Event::from_record(&hlt, 0));
        assert_eq!(
            (e.class.as_str(), e.callback.as_str()),
            ("vmexit", "flush_tlb_func")
        );
        assert_eq!(h.callback, "HLT");
        let mut c = Census::new();
        c.add(&e);
        c.add(&h);
        let mut r = Report::new("isol");
        r.duration_s = 60.0;
        c.finish(&mut r);
        // The IPI that took the guest out is an IPI; the guest's HLT is not.
        assert_eq!((r.ipis, r.interruptions), (1, 2));
        assert_eq!(r.callbacks[0].callback, "flush_tlb_func");
        assert_eq!(r.senders[0].comms.get("vmm"), Some(&1));
        assert!(r
            .interruption_table
            .iter()
            .any(|i| i.class == "vmexit" && i.detail == "HLT" && i.count == 1));
    }

    #[test]
    fn offsets_and_addresses_are_stripped() {
        assert_eq!(strip_offset("do_flush_tlb_all+0x0"), "do_flush_tlb_all");
        assert_eq!(strip_offset(" kthread (ffffffffa973984e)"), "kthread");
        assert_eq!(comm_class("kworker/2:0"), "kworker");
        assert_eq!(comm_class("hackbench"), "hackbench");
    }
}
