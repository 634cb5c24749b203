//! A self-contained HTML report (inline CSS, SVG and a few lines of JS; no
//! network), laid out to be read at a glance: summary numbers as people
//! say them (236.3 M loops, 12.5 us), a timeline of the gaps coloured by
//! cause (hover: chain and IPI sender), the latency histogram on log axes,
//! time per cause, and the worst gaps with chains and sender stacks.
//! Every plotted element carries its number in `data-*` attributes and a
//! text label, so a headless browser can check what it rendered; the
//! inline script records each plot element's laid-out box
//! (`data-rendered-x`/`-width`/`-height`) and sets `data-rendered` on `<body>`
//! to the count of plot elements with a non-empty layout box.

use super::{fmt_ns, CpuReport, Gap, Mark, Named, Report};
use isol_capture::Cause;
use isol_system::units::count as fmt_count;
use std::fmt::Write;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Cause classes and their colours (fills), `hw` red: time no kernel
/// entry explains stands out.
const CLASSES: &[(&str, &str)] = &[
    ("hw", "#d62728"),
    ("timer", "#1f77b4"),
    ("ipi", "#ff7f0e"),
    ("irq", "#2ca02c"),
    ("softirq", "#17becf"),
    ("sched", "#9467bd"),
    ("workqueue", "#8c564b"),
    ("syscall", "#bcbd22"),
    ("exception", "#e377c2"),
    ("nmi", "#393b79"),
    ("vmexit", "#637939"),
];

fn colour(class: &str) -> &'static str {
    CLASSES
        .iter()
        .find(|c| c.0 == class)
        .map_or("#7f7f7f", |c| c.1)
}

const CSS: &str = "body{font:14px sans-serif;margin:1.5em;color:#222;max-width:1300px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top;white-space:nowrap}td.l,th.l{text-align:left;white-space:normal}\
svg{background:#fcfcfc;border:1px solid #ddd;margin:.3em 0;display:block}text{font:11px sans-serif;fill:#333}text.t{font-size:12px;font-weight:bold}\
.axis{stroke:#555;stroke-width:1}.grid{stroke:#e4e4e4;stroke-width:1}.thr{stroke:#d62728;stroke-dasharray:4 3}.bin{fill:#4878b0}\
.stats{display:flex;flex-wrap:wrap;gap:.5em;margin:.5em 0}.stat{border:1px solid #ddd;border-radius:4px;padding:.3em .7em;min-width:6em;background:#fafafa}\
.stat b{display:block;font-size:20px}.stat span{color:#666;font-size:12px}.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}\
pre{background:#f4f4f4;padding:4px;font-size:12px;margin:.2em 0}h2{margin-top:1.5em;border-bottom:2px solid #ddd}.note{color:#555}";

const JS: &str = "window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg .plot').forEach(function(e){var b=e.getBBox();if(b.width>0&&b.height>=0){n++;e.setAttribute('data-rendered-width',b.width.toFixed(2));e.setAttribute('data-rendered-height',b.height.toFixed(2));e.setAttribute('data-rendered-x',b.x.toFixed(2));}});document.body.setAttribute('data-rendered',String(n));});";

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>isol noise report</title><style>{CSS}</style></head><body data-rendered=\"0\" data-schema=\"{}\">\n",
        r.schema
    );
    let _ = writeln!(
        o,
        "<h1>isol noise: {}</h1><p>{} mode, {:.1} s, {}, {}{}</p>",
        match r.pid {
            Some(p) => format!("pid {p}"),
            None => format!("CPUs {}", esc(&r.cpus.to_string())),
        },
        r.mode,
        r.duration_s,
        if r.mode == "synthetic" {
            format!("gaps are loop deltas above {}", fmt_ns(r.threshold_ns))
        } else {
            "every interruption of the task is a gap".to_string()
        },
        if r.attribution {
            "causes from the capture engine"
        } else {
            "no attribution"
        },
        if r.interrupted {
            " (interrupted: partial)"
        } else {
            ""
        }
    );
    for n in &r.notes {
        let _ = writeln!(o, "<p class=\"note\">{}</p>", esc(n));
    }
    for c in &r.per_cpu {
        cpu(&mut o, r, c);
    }
    let _ = writeln!(o, "<script>{JS}</script></body></html>");
    o
}

fn stat(o: &mut String, attr: &str, value: &str, what: &str, title: &str) {
    let _ = write!(
        o,
        "<div class=\"stat\" {attr} title=\"{}\"><b>{}</b><span>{}</span></div>",
        esc(title),
        esc(value),
        esc(what)
    );
}

fn cpu(o: &mut String, r: &Report, c: &CpuReport) {
    let _ = writeln!(o, "<h2 id=\"cpu{0}\">CPU {0}</h2>", c.cpu);
    let _ = write!(o, "<div class=\"stats\" data-cpu=\"{}\">", c.cpu);
    if r.mode == "synthetic" {
        stat(
            o,
            &format!("data-loops=\"{}\"", c.loops),
            &fmt_count(c.loops),
            "loops",
            &format!("{} loop iterations", c.loops),
        );
    }
    stat(
        o,
        &format!("data-gaps=\"{}\"", c.gaps),
        &fmt_count(c.gaps),
        "gaps",
        &format!(
            "{} gaps above the threshold ({} not kept: buffer full)",
            c.gaps, c.gaps_lost
        ),
    );
    stat(
        o,
        &format!("data-availability=\"{:.4}\"", c.availability_pct),
        &format!("{:.4} %", c.availability_pct),
        "availability",
        "share of the run the loop had the CPU",
    );
    stat(
        o,
        &format!("data-noise-ns=\"{}\"", c.noise_ns),
        &fmt_ns(c.noise_ns),
        "time in gaps",
        &format!("{} ns", c.noise_ns),
    );
    stat(
        o,
        &format!("data-max-ns=\"{}\"", c.max_ns),
        &fmt_ns(c.max_ns),
        "max",
        &format!("{} ns", c.max_ns),
    );
    let p = &c.percentiles;
    for (name, v) in [
        ("p50", p.p50),
        ("p90", p.p90),
        ("p99", p.p99),
        ("p99.9", p.p999),
        ("p99.99", p.p9999),
    ] {
        stat(
            o,
            &format!("data-percentile=\"{name}\" data-ns=\"{v}\""),
            &fmt_ns(v),
            name,
            &format!("{v} ns"),
        );
    }
    stat(
        o,
        &format!("data-min-ns=\"{}\"", c.min_ns),
        &fmt_ns(c.min_ns),
        "min",
        &format!("{} ns", c.min_ns),
    );
    stat(
        o,
        &format!("data-avg-ns=\"{:.1}\"", c.avg_ns),
        &format!("{:.1} ns", c.avg_ns),
        "avg",
        "mean loop delta",
    );
    stat(
        o,
        &format!("data-attributed-pct=\"{:.1}\"", c.attributed_pct),
        &format!("{:.1} %", c.attributed_pct),
        "gaps with a kernel cause",
        &format!("{} of {} gaps", c.attributed, c.gaps),
    );
    stat(
        o,
        &format!("data-hw-ns=\"{}\"", c.hw_ns),
        &fmt_ns(c.hw_ns),
        "no kernel entry (hw)",
        "gap time no kernel entry covers: SMI, hypervisor, SMT sibling",
    );
    let _ = writeln!(o, "</div>");
    timeline(o, r, c);
    histogram(o, r, c);
    causes(o, c);
    covered(o, c);
    if !c.worst.is_empty() {
        let _ = writeln!(o, "<h3>Worst gaps</h3><table class=\"worst\"><tr><th>#</th><th>at</th><th>duration</th><th class=\"l\">cause</th><th>kernel</th><th>uncovered</th><th class=\"l\">chain, sender and its stack</th></tr>");
        for (i, g) in c.worst.iter().enumerate() {
            gap_row(o, &(i + 1).to_string(), g);
        }
        if let Some(g) = &c.injected {
            gap_row(o, "injected", g);
        }
        let _ = writeln!(o, "</table>");
    }
}

fn chain_text(chain: &[Cause]) -> String {
    chain
        .iter()
        .map(|c| format!("{} {} {}", c.class.name(), c.kind.name(), c.detail))
        .collect::<Vec<_>>()
        .join(" > ")
}

fn sender_text(s: &isol_capture::record::Sender) -> String {
    let mut t = format!("sent by CPU {} {}[{}]", s.cpu, s.comm, s.pid);
    if s.context != "task" {
        let _ = write!(t, " ({} context)", s.context);
    }
    if !s.function.is_empty() {
        let _ = write!(t, ", function {}", s.function);
    }
    let _ = write!(t, ", from {}", s.callsite);
    t
}

fn swatch(class: &str) -> String {
    format!(
        "<span class=\"sw\" style=\"background:{}\"></span>",
        colour(class)
    )
}

fn gap_row(o: &mut String, tag: &str, g: &Gap) {
    let mut detail = esc(&chain_text(&g.chain));
    if let Some(s) = &g.sender {
        let _ = write!(
            detail,
            "<details class=\"sender\" open><summary>{}</summary><pre class=\"stack\">{}</pre></details>",
            esc(&sender_text(s)),
            esc(&s.stack.join("\n"))
        );
    }
    let _ = writeln!(
        o,
        "<tr class=\"gap\" data-duration-ns=\"{}\" data-class=\"{}\"><td>{}</td><td>{:.3} s</td><td>{}</td><td class=\"l\">{}{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
        g.duration_ns,
        esc(&g.cause.class),
        esc(tag),
        g.at_s,
        fmt_ns(g.duration_ns),
        swatch(&g.cause.class),
        esc(&g.cause.label()),
        fmt_ns(g.kernel_ns),
        fmt_ns(g.hw_ns),
        detail
    );
}

/// What a timeline mark shows on hover: duration, when, cause, chain,
/// sender.
pub fn mark_title(m: &Mark) -> String {
    let mut t = format!(
        "{} at {:.3} s: {}",
        fmt_ns(m.duration_ns),
        m.at_s,
        m.cause.label()
    );
    if !m.chain.is_empty() {
        let _ = write!(t, "\nchain: {}", chain_text(&m.chain));
    }
    if let Some(s) = &m.sender {
        let _ = write!(t, "\n{}", sender_text(s));
    }
    t
}

/// A power of ten of ns as an axis label: 1 ns .. 100 ms, 1 s, 10 s.
fn decade_ns(k: i32) -> String {
    const U: [&str; 4] = ["ns", "us", "ms", "s"];
    let u = (k / 3).clamp(0, 3);
    format!("{} {}", 10u64.pow((k - 3 * u) as u32), U[u as usize])
}

/// A power of ten of a count as an axis label: 1, 10, 100, 1k, .. 10G.
fn decade_count(k: i32) -> String {
    const U: [&str; 4] = ["", "k", "M", "G"];
    let u = (k / 3).clamp(0, 3);
    format!("{}{}", 10u64.pow((k - 3 * u) as u32), U[u as usize])
}

/// A round step for about `n` ticks over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p)
}

// The plot area shared by the charts: margins for axis labels.
const W: f64 = 1200.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 30.0;

/// Log y axis over decades [k0, k1] on [top, bottom], with grid lines.
fn log_y_axis(o: &mut String, k0: i32, k1: i32, top: f64, bottom: f64, label: fn(i32) -> String) {
    for k in k0..=k1 {
        let y = bottom - (k - k0) as f64 / (k1 - k0).max(1) as f64 * (bottom - top);
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{L}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"ytick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            y + 4.0,
            label(k)
        );
    }
    let _ = write!(
        o,
        "<line class=\"axis\" x1=\"{L}\" x2=\"{L}\" y1=\"{top}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{L}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\"/>",
        W - R
    );
}

fn legend(o: &mut String, classes: &[(String, usize)]) {
    let _ = write!(o, "<p class=\"legend\">");
    for (c, n) in classes {
        let _ = write!(
            o,
            "<span class=\"legend-item\" data-class=\"{}\" data-marks=\"{n}\">{}{} ({n})</span> &nbsp; ",
            esc(c),
            swatch(c),
            esc(c)
        );
    }
    let _ = writeln!(o, "</p>");
}

/// Each gap a mark at its time, as tall as its duration on a log axis,
/// coloured by its primary cause's class.
fn timeline(o: &mut String, r: &Report, c: &CpuReport) {
    let _ = writeln!(
        o,
        "<h3>Timeline of the gaps (hover a mark for its cause chain and IPI sender)</h3>"
    );
    if c.marks.is_empty() {
        let _ = writeln!(o, "<p>No gap above the threshold.</p>");
        return;
    }
    if (c.marks.len() as u64) < c.gaps {
        let _ = writeln!(
            o,
            "<p class=\"note\" data-marks-shown=\"{0}\">The {0} longest of {1} gaps are shown.</p>",
            c.marks.len(),
            c.gaps
        );
    }
    let (h, bottom) = (340.0, 300.0);
    let span = c
        .marks
        .iter()
        .map(|m| m.at_s)
        .fold(r.duration_s, f64::max)
        .max(1e-3);
    let lo = c.marks.iter().map(|m| m.duration_ns).min().unwrap_or(1);
    let hi = c.marks.iter().map(|m| m.duration_ns).max().unwrap_or(1);
    let k0 = (lo.max(1) as f64).log10().floor() as i32;
    let k1 = ((hi.max(1) as f64).log10().ceil() as i32).max(k0 + 1);
    let ppx = (W - L - R) / span;
    let yof = |ns: u64| {
        let f = ((ns.max(1) as f64).log10() - k0 as f64) / (k1 - k0) as f64;
        bottom - f * (bottom - T)
    };
    let _ = writeln!(
        o,
        "<svg class=\"timeline\" width=\"{W}\" height=\"{h}\" data-span-s=\"{span}\">"
    );
    log_y_axis(o, k0, k1, T, bottom, decade_ns);
    let step = nice_step(span, 10.0);
    // Enough decimals for the step; ticks counted, not summed (no drift).
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    for i in 0..=(span / step + 1e-9).floor() as u64 {
        let t = i as f64 * step;
        let x = L + t * ppx;
        let _ = write!(
            o,
            "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{}\"/><text class=\"xtick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{t:.decimals$} s</text>",
            bottom + 5.0,
            bottom + 18.0,
        );
    }
    let _ = writeln!(
        o,
        "<text class=\"t\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since the start (s)</text><text class=\"t\" x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">gap duration (log)</text>",
        L + (W - L - R) / 2.0,
        h - 6.0,
        (T + bottom) / 2.0,
        (T + bottom) / 2.0
    );
    let mut classes: Vec<(String, usize)> = Vec::new();
    // Longest first: the shorter marks drawn over a long one's foot leave
    // its top, the part that matters, visible.
    let mut order: Vec<&Mark> = c.marks.iter().collect();
    order.sort_by_key(|m| std::cmp::Reverse(m.duration_ns));
    for m in order {
        let x = L + m.at_s * ppx;
        let y = yof(m.duration_ns);
        let _ = writeln!(
            o,
            "<rect class=\"mark plot\" x=\"{:.1}\" y=\"{y:.1}\" width=\"3\" height=\"{:.1}\" fill=\"{}\" data-at-s=\"{:.6}\" data-duration-ns=\"{}\" data-class=\"{}\"><title>{}</title></rect>",
            x - 1.5,
            (bottom - y).max(1.0),
            colour(&m.cause.class),
            m.at_s,
            m.duration_ns,
            esc(&m.cause.class),
            esc(&mark_title(m))
        );
        match classes.iter_mut().find(|c| c.0 == m.cause.class) {
            Some(c) => c.1 += 1,
            None => classes.push((m.cause.class.clone(), 1)),
        }
    }
    let _ = writeln!(o, "</svg>");
    classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    legend(o, &classes);
}

/// The latency bins on log x (ns, decades labelled) and log y (counts).
fn histogram(o: &mut String, r: &Report, c: &CpuReport) {
    let what = if r.mode == "synthetic" {
        "loop deltas"
    } else {
        "interruptions"
    };
    let _ = writeln!(
        o,
        "<h3>Latency histogram: {what} (log axes{})</h3>",
        if r.mode == "synthetic" {
            "; the dashed line is the gap threshold"
        } else {
            ""
        }
    );
    let (Some(first), Some(last)) = (c.latency.first(), c.latency.last()) else {
        let _ = writeln!(o, "<p>No {what} measured.</p>");
        return;
    };
    // Room above the tallest bar for its rotated count label.
    let (h, top, bottom) = (400.0, 70.0, 340.0);
    // From 10 ns (1 ns when the [0, 10) bin is used) to at least 1 ms.
    let x0 = if first.lo_ns == 0 {
        0
    } else {
        ((first.lo_ns as f64).log10().floor() as i32).min(1)
    };
    let x1 = ((last.hi_ns as f64).log10().ceil() as i32).max(6);
    let maxc = c.latency.iter().map(|b| b.count).max().unwrap_or(1);
    let y1 = ((maxc as f64).log10().ceil() as i32).max(1);
    // The baseline sits at count 10^-0.3, so a bin of one is visible.
    let ybase = -0.3;
    let xof = |ns: u64| {
        let v = (ns.max(1) as f64).log10().max(x0 as f64);
        L + (v - x0 as f64) / (x1 - x0) as f64 * (W - L - R)
    };
    let yof = |n: u64| {
        let f = ((n as f64).log10() - ybase) / (y1 as f64 - ybase);
        bottom - f * (bottom - top)
    };
    let _ = writeln!(o, "<svg class=\"histogram\" width=\"{W}\" height=\"{h}\">");
    for k in 0..=y1 {
        let y = yof(10u64.pow(k as u32));
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{L}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text class=\"ytick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            y + 4.0,
            decade_count(k)
        );
    }
    let _ = write!(
        o,
        "<line class=\"axis\" x1=\"{L}\" x2=\"{L}\" y1=\"{top}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{L}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\"/>",
        W - R
    );
    for k in x0..=x1 {
        let x = xof(10u64.pow(k as u32));
        let _ = write!(
            o,
            "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{}\"/><text class=\"xtick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            bottom + 5.0,
            bottom + 18.0,
            decade_ns(k)
        );
    }
    // In pid mode every interruption is a gap: no threshold to draw.
    if r.mode == "synthetic" {
        let thr = xof(r.threshold_ns);
        let _ = write!(
            o,
            "<line class=\"thr\" x1=\"{thr:.1}\" x2=\"{thr:.1}\" y1=\"{top}\" y2=\"{bottom}\"/>"
        );
    }
    let _ = writeln!(
        o,
        "<text class=\"t\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{what}, ns (log)</text><text class=\"t\" x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">count (log)</text>",
        L + (W - L - R) / 2.0,
        h - 22.0,
        (top + bottom) / 2.0,
        (top + bottom) / 2.0
    );
    for b in &c.latency {
        let (xa, xb) = (xof(b.lo_ns), xof(b.hi_ns));
        let y = yof(b.count);
        let label = fmt_count(b.count);
        let _ = writeln!(
            o,
            "<rect class=\"bin plot\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" data-lo=\"{}\" data-hi=\"{}\" data-count=\"{}\"><title>{} .. {}: {}</title></rect><text class=\"count\" data-count=\"{}\" x=\"{:.1}\" y=\"{:.1}\" transform=\"rotate(-90 {:.1} {:.1})\">{}</text>",
            xa + 0.5,
            (xb - xa - 1.0).max(1.0),
            bottom - y,
            b.lo_ns,
            b.hi_ns,
            b.count,
            fmt_ns(b.lo_ns),
            fmt_ns(b.hi_ns),
            b.count,
            b.count,
            (xa + xb) / 2.0 + 4.0,
            y - 3.0,
            (xa + xb) / 2.0 + 4.0,
            y - 3.0,
            label
        );
    }
    let _ = writeln!(o, "</svg>");
}

/// At most `n` characters, the cut marked: the bar charts' name column
/// has a fixed width; the full name is in the row's hover title.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n - 1).collect();
    t.push('\u{2026}');
    t
}

/// Horizontal bars, one per row: (cause, value ns, data attributes,
/// label after the bar).
fn bars(o: &mut String, class: &str, rows: &[(&Named, u64, String, String)]) {
    let rh = 20.0;
    let lw = 330.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let _ = writeln!(
        o,
        "<svg class=\"{class}\" width=\"{W}\" height=\"{}\">",
        rows.len() as f64 * rh + 10.0
    );
    for (i, (cause, v, data, label)) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        let bw = (*v as f64 / max as f64 * 450.0).max(1.0);
        let _ = writeln!(
            o,
            "<g class=\"row\" {data}><title>{}</title><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"plot\" x=\"{lw}\" y=\"{y}\" width=\"{bw:.1}\" height=\"{}\" fill=\"{}\"/><text class=\"value\" x=\"{:.1}\" y=\"{}\">{}</text></g>",
            esc(&format!("{}: {label}", cause.label())),
            lw - 6.0,
            y + rh - 7.0,
            esc(&short(&cause.label(), 48)),
            rh - 4.0,
            colour(&cause.class),
            lw + bw + 4.0,
            y + rh - 7.0,
            esc(label)
        );
    }
    let _ = writeln!(o, "</svg>");
}

fn causes(o: &mut String, c: &CpuReport) {
    let _ = writeln!(o, "<h3>Gap time by primary cause</h3>");
    if c.causes.is_empty() {
        let _ = writeln!(o, "<p>No gap above the threshold.</p>");
        return;
    }
    let rows: Vec<_> = c
        .causes
        .iter()
        .map(|r| {
            (
                &r.cause,
                r.total_ns,
                format!(
                    "data-cause=\"{}\" data-class=\"{}\" data-count=\"{}\" data-total-ns=\"{}\" data-max-ns=\"{}\"",
                    esc(&r.cause.label()),
                    esc(&r.cause.class),
                    r.count,
                    r.total_ns,
                    r.max_ns
                ),
                format!(
                    "{} in {} gaps (max {})",
                    fmt_ns(r.total_ns),
                    fmt_count(r.count),
                    fmt_ns(r.max_ns)
                ),
            )
        })
        .collect();
    bars(o, "causes", &rows);
}

/// Every kernel entry inside a gap, hw gaps included, by time covered.
fn covered(o: &mut String, c: &CpuReport) {
    if c.covered.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<h3>Kernel time inside gaps, per cause (hw gaps included)</h3>"
    );
    let rows: Vec<_> = c
        .covered
        .iter()
        .map(|r| {
            let mut label = format!(
                "{} covered in {} gaps ({} of them hw), {} entries",
                fmt_ns(r.covered_ns),
                fmt_count(r.gaps),
                fmt_count(r.in_hw_gaps),
                fmt_count(r.entries)
            );
            if let Some(s) = &r.sender {
                let _ = write!(label, "; {}", sender_text(s));
            }
            (
                &r.cause,
                r.covered_ns,
                format!(
                    "data-cause=\"{}\" data-gaps=\"{}\" data-covered-ns=\"{}\" data-entries=\"{}\"",
                    esc(&r.cause.label()),
                    r.gaps,
                    r.covered_ns,
                    r.entries
                ),
                label,
            )
        })
        .collect();
    bars(o, "covered", &rows);
}
