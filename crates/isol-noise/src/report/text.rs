//! The text report, and the oslat-compatible histogram.

use super::{fmt_ns, CpuReport, Gap, Report};
use std::fmt::Write;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let what = match r.pid {
        Some(p) => format!("pid {p} (its own interruptions, no synthetic loop)"),
        None => format!("CPUs {}", r.cpus),
    };
    let _ = writeln!(
        o,
        "isol noise: {what}, {:.1} s, threshold {}{}{}",
        r.duration_s,
        fmt_ns(r.threshold_ns),
        if r.attribution {
            ", causes from the capture engine"
        } else {
            ", NO attribution (capture engine not running)"
        },
        if r.interrupted {
            " [interrupted: partial report]"
        } else {
            ""
        }
    );
    if let Some(s) = &r.stopped {
        let _ = writeln!(
            o,
            "stopped: CPU {} had a {} gap at {:.3} s (--stop-above)",
            s.cpu,
            fmt_ns(s.gap_ns),
            s.at_s
        );
    }
    if let Some(c) = &r.capture {
        if c.drops.total() > 0 {
            let _ = writeln!(
                o,
                "capture dropped {} records (ringbuf {}): gaps then may show as hw",
                c.drops.total(),
                c.drops.ringbuf
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    for c in &r.per_cpu {
        cpu(&mut o, r, c);
    }
    o
}

fn cpu(o: &mut String, r: &Report, c: &CpuReport) {
    let _ = writeln!(o);
    if r.pid.is_none() {
        let _ = writeln!(
            o,
            "CPU {}: {} loops, delta min {} avg {:.1} ns max {}; p50 {} p99 {} p99.9 {} p99.99 {} (bucket bounds)",
            c.cpu,
            c.loops,
            fmt_ns(c.min_ns),
            c.avg_ns,
            fmt_ns(c.max_ns),
            fmt_ns(c.percentiles.p50),
            fmt_ns(c.percentiles.p99),
            fmt_ns(c.percentiles.p999),
            fmt_ns(c.percentiles.p9999)
        );
    } else {
        let _ = writeln!(
            o,
            "CPU {}: interruptions min {} avg {:.1} ns max {}; p50 {} p99 {}",
            c.cpu,
            fmt_ns(c.min_ns),
            c.avg_ns,
            fmt_ns(c.max_ns),
            fmt_ns(c.percentiles.p50),
            fmt_ns(c.percentiles.p99)
        );
    }
    let _ = writeln!(
        o,
        "  availability {:.4}%  gaps {}{}  noise {}  attributed {:.1}%  hw (no kernel entry) {}",
        c.availability_pct,
        c.gaps,
        if c.gaps_lost > 0 {
            format!(" (+{} not kept)", c.gaps_lost)
        } else {
            String::new()
        },
        fmt_ns(c.noise_ns),
        c.attributed_pct,
        fmt_ns(c.hw_ns)
    );
    if !c.causes.is_empty() {
        let _ = writeln!(
            o,
            "  {:<9} {:<20} {:<38} {:>8} {:>10} {:>10}",
            "class", "kind", "detail", "count", "total", "max"
        );
        for row in &c.causes {
            let d: String = row.cause.detail.chars().take(38).collect();
            let _ = writeln!(
                o,
                "  {:<9} {:<20} {:<38} {:>8} {:>10} {:>10}",
                row.cause.class,
                row.cause.kind,
                d,
                row.count,
                fmt_ns(row.total_ns),
                fmt_ns(row.max_ns)
            );
        }
    }
    if !c.covered.is_empty() {
        let _ = writeln!(
            o,
            "  kernel entries inside gaps (hw gaps too), by the time they covered:"
        );
        let _ = writeln!(
            o,
            "  {:<9} {:<20} {:<38} {:>8} {:>8} {:>10}",
            "class", "kind", "detail", "gaps", "in hw", "covered"
        );
        for row in &c.covered {
            let d: String = row.cause.detail.chars().take(38).collect();
            let _ = writeln!(
                o,
                "  {:<9} {:<20} {:<38} {:>8} {:>8} {:>10}",
                row.cause.class,
                row.cause.kind,
                d,
                row.gaps,
                row.in_hw_gaps,
                fmt_ns(row.covered_ns)
            );
        }
    }
    if !c.recall.is_empty() {
        let _ = writeln!(
            o,
            "  injected interference (recall: of the injections a gap overlaps, the loop not preempted in it, those whose gap names the function):"
        );
        let _ = writeln!(
            o,
            "    {:<11} {:>8} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8}  expected",
            "kind", "injected", "preempted", "in gap", "named", "no entry", "recall", "primary"
        );
        for (k, r) in &c.recall {
            let _ = writeln!(
                o,
                "    {:<11} {:>8} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8}  {}",
                k,
                r.injected,
                r.preempted,
                r.in_gap,
                r.named,
                r.no_entry,
                r.recall
                    .map(|x| format!("{:.2} %", 100.0 * x))
                    .unwrap_or_else(|| "-".into()),
                r.primary,
                r.expected.join(" | ")
            );
        }
    }
    if !c.worst.is_empty() {
        let _ = writeln!(o, "  worst gaps (auto analysis):");
        for (i, g) in c.worst.iter().enumerate() {
            gap(o, &format!("#{}", i + 1), g);
        }
    }
    if let Some(g) = &c.injected {
        gap(o, "injected", g);
    }
    if !c.before_stop.is_empty() {
        let _ = writeln!(o, "  the 100 ms before the stop:");
        for g in &c.before_stop {
            gap(o, "-", g);
        }
    }
    if c.timeline.len() > 1 {
        let _ = writeln!(
            o,
            "  timeline: {:>4} {:>10} {:>6} {:>10} {:>10} {:>10}",
            "s", "max", "gaps", "noise", "hw", "steal"
        );
        for t in &c.timeline {
            let _ = writeln!(
                o,
                "            {:>4} {:>10} {:>6} {:>10} {:>10} {:>10}",
                t.second,
                fmt_ns(t.max_ns),
                t.gaps,
                fmt_ns(t.noise_ns),
                fmt_ns(t.hw_ns),
                fmt_ns(t.steal_ns)
            );
        }
    }
}

fn gap(o: &mut String, tag: &str, g: &Gap) {
    let _ = writeln!(
        o,
        "  {tag} {} at {:.3} s: {} {} {} (kernel {}, uncovered {})",
        fmt_ns(g.duration_ns),
        g.at_s,
        g.cause.class,
        g.cause.kind,
        g.cause.detail,
        fmt_ns(g.kernel_ns),
        fmt_ns(g.hw_ns)
    );
    if g.chain.len() > 1 {
        let chain: Vec<String> = g
            .chain
            .iter()
            .map(|c| format!("{} {} {}", c.class.name(), c.kind.name(), c.detail))
            .collect();
        let _ = writeln!(o, "      chain: {}", chain.join(" > "));
    }
    if let Some(s) = &g.sender {
        let _ = writeln!(
            o,
            "      sent by CPU {} ({} context) {}[{}] at {}{}",
            s.cpu,
            s.context,
            s.comm,
            s.pid,
            s.callsite,
            if s.function.is_empty() {
                String::new()
            } else {
                format!(" running {}", s.function)
            }
        );
        for f in s.stack.iter().take(12) {
            let _ = writeln!(o, "        {f}");
        }
    }
    if g.cause.class == "hw" && !g.entries.is_empty() {
        for e in &g.entries {
            let _ = writeln!(
                o,
                "      also inside: {} {} {} ({})",
                e.cause.class,
                e.cause.kind,
                e.cause.detail,
                fmt_ns(e.duration_ns)
            );
        }
    }
}

/// oslat's output for each CPU: the same header lines and histogram.
pub fn oslat(r: &Report) -> String {
    let mut o = String::new();
    for c in &r.per_cpu {
        let us = |ns: u64| ns.div_ceil(1000);
        let _ = writeln!(o, "        Core:\t {}", c.cpu);
        if let Some(hz) = r.tsc_hz {
            let _ = writeln!(o, "Counter Freq:\t {} (Mhz)", (hz / 1e6).round() as u64);
        }
        o.push_str(&c.histogram.oslat_lines());
        let _ = writeln!(o, "     Minimum:\t {} (us)", us(c.min_ns));
        let _ = writeln!(o, "     Average:\t {:.3} (us)", c.avg_ns / 1000.0);
        let _ = writeln!(o, "     Maximum:\t {} (us)", us(c.max_ns));
        let _ = writeln!(
            o,
            "     Max-Min:\t {} (us)",
            us(c.max_ns).saturating_sub(us(c.min_ns))
        );
        let _ = writeln!(o, "    Duration:\t {:.3} (sec)", r.duration_s);
        let _ = writeln!(o);
    }
    o
}
