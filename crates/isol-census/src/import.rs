//! Import: the census tables from an existing trace-cmd recording, so a
//! developer can analyse traces recorded with the IPI deferral series' method
//! (`trace-cmd record -e ipi_send_cpumask -f "cpumask & CPUS{..}"
//! -e ipi_send_cpu -f "cpu & CPUS{..}" [-e csd_queue_cpu ...] [-T]`).
//!
//! Counted as IPIs, by callback, as the IPI deferral series' `grep callback | awk` does:
//! `ipi_send_cpu` and `ipi_send_cpumask` events aimed at the isolated CPUs.
//! A `kernel_stack` event (`-T`) after one of them is its sender stack.
//! `csd_queue_cpu` events (no `callback=` field, that awk skips them)
//! go to the other-events table by `func`, so nothing is counted twice.
//! Any other event is counted there by name.

use crate::report::{Load, Report};
use crate::table::{strip_offset, Census, Event, EventSender};
use anyhow::{bail, Context, Result};
use isol_cpulist::CpuSet;
use std::path::Path;

/// One header line of `trace-cmd report`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub comm: &'a str,
    pub pid: u32,
    pub cpu: u32,
    pub ts: f64,
    pub event: &'a str,
    pub fields: &'a str,
}

/// Parse `  comm-pid [cpu] [flags] ts: event: fields`.
pub fn parse_line(l: &str) -> Option<Line<'_>> {
    // The CPU column: the first " [digits]" after the comm-pid.
    let mut search = 0;
    let (open, close) = loop {
        let o = search + l[search..].find('[')?;
        let c = o + l[o..].find(']')?;
        if c > o + 1 && l[o + 1..c].bytes().all(|b| b.is_ascii_digit()) {
            break (o, c);
        }
        search = o + 1;
    };
    let cpu: u32 = l[open + 1..close].parse().ok()?;
    let head = l[..open].trim();
    let dash = head.rfind('-')?;
    let comm = &head[..dash];
    let pid: u32 = head[dash + 1..].trim().parse().ok()?;
    let mut rest = &l[close + 1..];
    // Optional latency flags (`d..2.`), then `ts:`.
    let ts = loop {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        let tok = &rest[..end];
        rest = &rest[end..];
        if let Some(t) = tok.strip_suffix(':') {
            // Finite only: "inf" or "1e999" would make the report's
            // duration infinite, which its JSON cannot hold (found by
            // tests/fuzz.rs).
            if let Ok(v) = t.parse::<f64>() {
                if v.is_finite() {
                    break v;
                }
            }
        }
    };
    let rest = rest.trim_start();
    let colon = rest.find(':')?;
    let event = rest[..colon].trim();
    if event.is_empty() || event.contains(char::is_whitespace) {
        return None;
    }
    Some(Line {
        comm,
        pid,
        cpu,
        ts,
        event,
        fields: rest[colon + 1..].trim(),
    })
}

/// `key=value` from an event's fields (values have no spaces here).
pub fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields.split_whitespace().find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// The sender's context from its stack (innermost first), judged as the
/// capture engine judges it; empty when the trace holds no stack.
fn context(stack: &[String]) -> &'static str {
    if stack.is_empty() {
        ""
    } else {
        isol_capture::record::sender_context(stack)
    }
}

/// Build the census report from `trace-cmd report` text. `cpus`: count
/// only IPIs aimed at these CPUs (empty: every IPI in the trace, which is
/// right for a recording made with the cpumask filters).
pub fn import_text(text: &str, cpus: &CpuSet) -> Report {
    let mut events: Vec<Event> = Vec::new();
    let mut first: Option<f64> = None;
    let mut last = 0f64;
    // Index in `events` of the event a following kernel_stack belongs to.
    let mut stack_owner: Option<usize> = None;
    let mut collecting: Option<usize> = None;
    let mut skipped_other_cpus = 0u64;
    let mut last_csd: Option<(u32, u32, String)> = None;
    let mut named_from_csd = 0u64;
    for l in text.lines() {
        let t = l.trim_start();
        if let Some(frame) = t.strip_prefix("=>") {
            if let Some(i) = collecting {
                if let Some(s) = events[i].sender.as_mut() {
                    s.stack.push(frame.trim().to_string());
                }
            }
            continue;
        }
        let Some(line) = parse_line(l) else {
            continue;
        };
        if line.event == "kernel_stack" {
            collecting = stack_owner.take();
            continue;
        }
        collecting = None;
        stack_owner = None;
        first.get_or_insert(line.ts);
        last = last.max(line.ts);
        let sender = EventSender {
            cpu: Some(line.cpu),
            pid: Some(line.pid),
            comm: line.comm.trim().to_string(),
            context: String::new(),
            callsite: field(line.fields, "callsite")
                .map(strip_offset)
                .unwrap_or("")
                .to_string(),
            stack: Vec::new(),
        };
        let ts_ns = ((line.ts - first.unwrap()) * 1e9).max(0.0) as u64;
        let (class, kind, callback, target) = match line.event {
            "ipi_send_cpu" | "ipi_send_cpumask" => {
                let target = if line.event == "ipi_send_cpu" {
                    field(line.fields, "cpu")
                        .and_then(|c| c.parse::<u32>().ok())
                        .map(CpuSet::single)
                } else {
                    field(line.fields, "cpumask").and_then(|m| CpuSet::parse(m).ok())
                };
                if let Some(t) = &target {
                    if !cpus.is_empty() && !t.intersects(cpus) {
                        skipped_other_cpus += 1;
                        continue;
                    }
                }
                let mut cb = field(line.fields, "callback")
                    .map(strip_offset)
                    .unwrap_or("(none)")
                    .to_string();
                if cb == "0x0" {
                    // smp_send_reschedule traces a NULL callback.
                    cb = "reschedule".into();
                }
                if cb == "generic_smp_call_function_single_interrupt" {
                    // The csd this IPI delivers was queued just before by
                    // the same task for the same CPU: name its function.
                    if let Some((pid, cpu, func)) = &last_csd {
                        if *pid == line.pid && target.as_ref().and_then(|t| t.first()) == Some(*cpu)
                        {
                            cb = func.clone();
                            named_from_csd += 1;
                        }
                    }
                }
                ("ipi", line.event, cb, target)
            }
            "csd_queue_cpu" => {
                let target = field(line.fields, "cpu")
                    .and_then(|c| c.parse::<u32>().ok())
                    .map(CpuSet::single);
                if let Some(t) = &target {
                    if !cpus.is_empty() && !t.intersects(cpus) {
                        skipped_other_cpus += 1;
                        continue;
                    }
                }
                let f = field(line.fields, "func").map(strip_offset).unwrap_or("?");
                if let Some(c) = target.as_ref().and_then(|t| t.first()) {
                    last_csd = Some((line.pid, c, f.to_string()));
                }
                ("csd", "csd_queue_cpu", f.to_string(), target)
            }
            other => ("event", other, other.to_string(), None),
        };
        let cpu = target
            .as_ref()
            .filter(|t| t.len() == 1)
            .and_then(|t| t.first());
        events.push(Event {
            ts_ns,
            cpu,
            class: class.into(),
            kind: kind.into(),
            callback,
            duration_ns: None,
            sender: Some(sender),
        });
        stack_owner = Some(events.len() - 1);
    }
    let mut census = Census::new();
    for e in &mut events {
        if let Some(s) = e.sender.as_mut() {
            s.context = context(&s.stack).to_string();
        }
        census.add(e);
    }
    let mut r = Report::new("trace-cmd");
    r.cpus = cpus.clone();
    r.duration_s = first.map_or(0.0, |f| last - f);
    r.load = Load {
        kind: "unknown".into(),
        ..Default::default()
    };
    if skipped_other_cpus > 0 {
        r.notes.push(format!(
            "{skipped_other_cpus} IPI/csd events aimed only at other CPUs than {cpus} left out"
        ));
    }
    if named_from_csd > 0 {
        r.notes.push(format!(
            "{named_from_csd} ipi_send_cpu events with callback=generic_smp_call_function_single_interrupt named by the csd_queue_cpu func queued just before them (the IPI deferral series' awk counts them under the generic name)"
        ));
    }
    r.notes.push(
        "imported: durations are the span between the first and last event; IPIs are counted at the sender (ipi_send_cpu/cpumask), as the IPI deferral series' measurement does".into(),
    );
    census.finish(&mut r);
    r
}

/// Import a file: `trace-cmd report` text, or a trace.dat (then
/// `trace-cmd report -i FILE` is run).
pub fn import_path(path: &Path, cpus: &CpuSet) -> Result<Report> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = if bytes.starts_with(b"\x17\x08\x44tracing") {
        let out = std::process::Command::new("trace-cmd")
            .arg("report")
            .arg("-i")
            .arg(path)
            .output()
            .context("running trace-cmd report (apt-get install trace-cmd)")?;
        if !out.status.success() {
            bail!(
                "trace-cmd report -i {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let r = import_text(&text, cpus);
    if r.interruptions == 0 {
        bail!(
            "{}: no trace-cmd events found (expected `trace-cmd report` text or a trace.dat)",
            path.display()
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_with_and_without_latency_flags() {
        let l = parse_line("  kworker/2:0-13856 [002]  3517.445719: ipi_send_cpumask:     cpumask=0-1,3-79 callsite=on_each_cpu_cond_mask+0x20 callback=do_flush_tlb_all+0x0").unwrap();
        assert_eq!(
            (l.comm, l.pid, l.cpu, l.event),
            ("kworker/2:0", 13856, 2, "ipi_send_cpumask")
        );
        assert_eq!(field(l.fields, "callback"), Some("do_flush_tlb_all+0x0"));
        assert_eq!(field(l.fields, "cpumask"), Some("0-1,3-79"));
        let l = parse_line("   <...>-3734  [042] d.h2.   392.890491: ipi_send_cpu:  cpu=42 callsite=irq_work_queue_on+0x77 callback=nohz_full_kick_func+0x0").unwrap();
        assert_eq!(
            (l.comm, l.pid, l.cpu, l.ts),
            ("<...>", 3734, 42, 392.890491)
        );
        assert_eq!(field(l.fields, "cpu"), Some("42"));
        let l = parse_line("Web Content-77 [1] 5.000001: sched_switch: prev_comm=a").unwrap();
        assert_eq!(l.comm, "Web Content");
        assert!(parse_line("cpus=2").is_none());
        // A timestamp that is not a finite number is not a timestamp.
        assert!(parse_line("a-1 [0] inf: ipi_send_cpu: cpu=1").is_none());
        assert!(parse_line("a-1 [0] 1e999: ipi_send_cpu: cpu=1").is_none());
        assert!(parse_line("=> kthread (ffffffffa973984e)").is_none());
    }

    #[test]
    fn fixture_from_a_real_trace_cmd_recording() {
        // trace-cmd record -e ipi_send_cpu -f "cpu & CPUS{1}" -e ipi_send_cpumask
        // -f "cpumask & CPUS{1}" -e csd_queue_cpu -f "cpu & CPUS{1}" -T, under
        // `isol census --load-only --classes smp-call,kernel-tlb,text-poke`,
        // 6.18 host; trace-cmd report, cut.
        let text = include_str!("../tests/fixtures/trace-cmd-report.txt");
        let r = import_text(text, &CpuSet::single(1));
        assert_eq!(r.source, "trace-cmd");
        // The IPI deferral series' awk on the same text.
        let seed: u64 = text.lines().filter(|l| l.contains("callback=")).count() as u64;
        assert_eq!(
            r.ipis, seed,
            "one IPI per ipi_send_* event, as that awk counts"
        );
        let mb = r
            .callback("ipi_mb")
            .expect("membarrier IPIs named by their csd func");
        assert!(mb.count > 0);
        let s = r
            .senders
            .iter()
            .find(|s| s.callback == "ipi_mb")
            .expect("an ipi_mb sender row");
        assert!(
            s.stack.iter().any(|f| f.contains("membarrier")),
            "{:?}",
            s.stack
        );
        assert_eq!(s.context, "task");
        assert!(s.comms.contains_key("census-mb"), "{:?}", s.comms);
        assert!(
            !s.stack[0].starts_with("trace_event_raw_event"),
            "tracer frame kept"
        );
        assert!(
            r.callback("reschedule").is_some(),
            "NULL callback = reschedule"
        );
        assert!(r
            .interruption_table
            .iter()
            .any(|i| i.class == "csd" && i.detail == "ipi_mb"));
        assert!(r.duration_s > 0.0);
        // Every IPI row the awk would print is a row here (generic ones renamed).
        let other_cpu = import_text(text, &CpuSet::single(0));
        assert_eq!(
            other_cpu.ipis, 0,
            "nothing in the fixture aims at CPU 0 only"
        );
    }
}
