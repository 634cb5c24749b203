//! A self-contained HTML report (inline CSS, SVG and a few lines of JS; no
//! network): summary, plots of the loop histogram, the per-second timeline
//! and the time per cause, and the worst gaps with chains and stacks.
//! Every plotted element carries its number in a `data-*` attribute and a
//! text label, so a headless browser can check what it rendered; the
//! inline script sets `data-rendered` on `<body>` to the count of plot
//! elements with a non-empty layout box.

use super::{fmt_ns, CpuReport, Gap, Report};
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

const CSS: &str = "body{font:14px sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td.l,th.l{text-align:left}svg{background:#fafafa;border:1px solid #ddd;margin:.3em 0}.bar{fill:#4878b0}.hw{fill:#c0504d}.noise{fill:#e0a030}text{font:10px sans-serif;fill:#333}pre{background:#f4f4f4;padding:4px;font-size:12px}h2{margin-top:1.5em}";

const JS: &str = "window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg .plot').forEach(function(e){var b=e.getBBox();if(b.width>0&&b.height>=0){n++;e.setAttribute('data-rendered-width',b.width.toFixed(1));}});document.body.setAttribute('data-rendered',String(n));});";

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>isol noise report</title><style>{CSS}</style></head><body data-rendered=\"0\" data-schema=\"{}\">\n",
        r.schema
    );
    let _ = writeln!(
        o,
        "<h1>isol noise: {}</h1><p>{} mode, {:.1} s, threshold {}, {}{}</p>",
        match r.pid {
            Some(p) => format!("pid {p}"),
            None => format!("CPUs {}", esc(&r.cpus.to_string())),
        },
        r.mode,
        r.duration_s,
        fmt_ns(r.threshold_ns),
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
        cpu(&mut o, c);
    }
    let _ = writeln!(o, "<script>{JS}</script></body></html>");
    o
}

fn cpu(o: &mut String, c: &CpuReport) {
    let _ = writeln!(o, "<h2 id=\"cpu{0}\">CPU {0}</h2>", c.cpu);
    let _ = writeln!(
        o,
        "<table class=\"summary\" data-cpu=\"{}\"><tr><th>loops</th><th>min</th><th>avg</th><th>max</th><th>p99</th><th>p99.99</th><th>availability</th><th>gaps</th><th>noise</th><th>attributed</th><th>hw</th></tr><tr><td>{}</td><td>{}</td><td>{:.1} ns</td><td data-max-ns=\"{}\">{}</td><td>{}</td><td>{}</td><td data-availability=\"{:.4}\">{:.4}%</td><td data-gaps=\"{}\">{}</td><td>{}</td><td>{:.1}%</td><td>{}</td></tr></table>",
        c.cpu,
        c.loops,
        fmt_ns(c.min_ns),
        c.avg_ns,
        c.max_ns,
        fmt_ns(c.max_ns),
        fmt_ns(c.percentiles.p99),
        fmt_ns(c.percentiles.p9999),
        c.availability_pct,
        c.availability_pct,
        c.gaps,
        c.gaps,
        fmt_ns(c.noise_ns),
        c.attributed_pct,
        fmt_ns(c.hw_ns)
    );
    histogram(o, c);
    timeline(o, c);
    causes(o, c);
    covered(o, c);
    if !c.worst.is_empty() {
        let _ = writeln!(o, "<h3>Worst gaps</h3><table class=\"worst\"><tr><th>#</th><th>at</th><th>duration</th><th class=\"l\">cause</th><th>kernel</th><th>uncovered</th><th class=\"l\">chain, sender</th></tr>");
        for (i, g) in c.worst.iter().enumerate() {
            gap_row(o, &(i + 1).to_string(), g);
        }
        if let Some(g) = &c.injected {
            gap_row(o, "injected", g);
        }
        let _ = writeln!(o, "</table>");
    }
}

fn gap_row(o: &mut String, tag: &str, g: &Gap) {
    let chain: Vec<String> = g
        .chain
        .iter()
        .map(|c| format!("{} {} {}", c.class.name(), c.kind.name(), c.detail))
        .collect();
    let mut detail = esc(&chain.join(" > "));
    if let Some(s) = &g.sender {
        let _ = write!(
            detail,
            "<details><summary>sent by CPU {} {}[{}] at {}</summary><pre>{}</pre></details>",
            s.cpu,
            esc(&s.comm),
            s.pid,
            esc(&s.callsite),
            esc(&s.stack.join("\n"))
        );
    }
    let _ = writeln!(
        o,
        "<tr class=\"gap\" data-duration-ns=\"{}\" data-class=\"{}\"><td>{}</td><td>{:.3} s</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
        g.duration_ns,
        esc(&g.cause.class),
        esc(tag),
        g.at_s,
        fmt_ns(g.duration_ns),
        esc(&g.cause.label()),
        fmt_ns(g.kernel_ns),
        fmt_ns(g.hw_ns),
        detail
    );
}

/// Bars on a log10 scale: height of `v` out of `h` given the max.
fn logh(v: u64, max: u64, h: f64) -> f64 {
    if v == 0 || max == 0 {
        return 0.0;
    }
    let m = (max as f64 + 1.0).log10();
    ((v as f64 + 1.0).log10() / m * h).max(1.0)
}

fn histogram(o: &mut String, c: &CpuReport) {
    let h = &c.histogram;
    let n = h.counts.len();
    let (w, ht, bw) = (40.0 + n as f64 * 22.0, 200.0, 18.0);
    let max = h.counts.iter().copied().max().unwrap_or(0);
    let _ = writeln!(
        o,
        "<h3>Loop histogram (log scale)</h3><svg class=\"histogram\" width=\"{w}\" height=\"{}\" data-bucket-width-ns=\"{}\">",
        ht + 60.0,
        h.width_ns
    );
    for (i, &v) in h.counts.iter().enumerate() {
        let x = 30.0 + i as f64 * 22.0;
        let bh = logh(v, max, ht);
        let upper = (i as u64 + 1) * h.width_ns;
        let _ = writeln!(
            o,
            "<rect class=\"bar plot\" x=\"{x}\" y=\"{}\" width=\"{bw}\" height=\"{bh:.1}\" data-bucket=\"{i}\" data-upper-ns=\"{upper}\" data-count=\"{v}\"><title>&lt; {}: {v}</title></rect><text x=\"{}\" y=\"{}\" transform=\"rotate(-90 {} {})\">{v}</text><text x=\"{x}\" y=\"{}\">{}</text>",
            20.0 + ht - bh,
            fmt_ns(upper),
            x + 12.0,
            18.0 + ht - bh,
            x + 12.0,
            18.0 + ht - bh,
            ht + 35.0,
            if h.width_ns % 1000 == 0 { format!("{}", upper / 1000) } else { upper.to_string() }
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"30\" y=\"{}\">bucket upper bound ({})</text></svg>",
        ht + 52.0,
        if h.width_ns % 1000 == 0 { "us" } else { "ns" }
    );
}

fn timeline(o: &mut String, c: &CpuReport) {
    let n = c.timeline.len().max(1);
    let step = (800.0 / n as f64).clamp(2.0, 40.0);
    let (w, ht) = (60.0 + n as f64 * step, 160.0);
    let max = c.timeline.iter().map(|t| t.max_ns).max().unwrap_or(0);
    let _ = writeln!(
        o,
        "<h3>Per second: largest gap (blue, log scale), noise time (orange), uncovered/hw time (red)</h3><svg class=\"timeline\" width=\"{w}\" height=\"{}\">",
        ht + 40.0
    );
    let maxn = c
        .timeline
        .iter()
        .map(|t| t.noise_ns.max(t.hw_ns))
        .max()
        .unwrap_or(0);
    for (i, t) in c.timeline.iter().enumerate() {
        let x = 40.0 + i as f64 * step;
        let bh = logh(t.max_ns, max, ht);
        let nh = logh(t.noise_ns, maxn, ht);
        let hh = logh(t.hw_ns, maxn, ht);
        let bw = (step / 3.0).max(0.7);
        let _ = writeln!(
            o,
            "<g class=\"second\" data-second=\"{}\" data-max-ns=\"{}\" data-gaps=\"{}\" data-noise-ns=\"{}\" data-hw-ns=\"{}\" data-steal-ns=\"{}\"><title>second {}: max {}, {} gaps, noise {}, hw {}</title><rect class=\"bar plot\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\"/><rect class=\"noise\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{nh:.1}\"/><rect class=\"hw\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{hh:.1}\"/></g>",
            t.second, t.max_ns, t.gaps, t.noise_ns, t.hw_ns, t.steal_ns,
            t.second, fmt_ns(t.max_ns), t.gaps, fmt_ns(t.noise_ns), fmt_ns(t.hw_ns),
            10.0 + ht - bh,
            x + bw, 10.0 + ht - nh,
            x + 2.0 * bw, 10.0 + ht - hh,
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"40\" y=\"{}\">seconds 0..{}; tallest gap {}</text></svg>",
        ht + 30.0,
        n - 1,
        fmt_ns(max)
    );
}

fn causes(o: &mut String, c: &CpuReport) {
    if c.causes.is_empty() {
        let _ = writeln!(o, "<p>No gap above the threshold.</p>");
        return;
    }
    let rows = c.causes.len();
    let (w, rh) = (900.0, 18.0);
    let max = c
        .causes
        .iter()
        .map(|r| r.total_ns)
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = writeln!(
        o,
        "<h3>Time per cause</h3><svg class=\"causes\" width=\"{w}\" height=\"{}\">",
        rows as f64 * rh + 10.0
    );
    for (i, r) in c.causes.iter().enumerate() {
        let y = 5.0 + i as f64 * rh;
        let bw = (r.total_ns as f64 / max as f64 * 400.0).max(1.0);
        let label = r.cause.label();
        let _ = writeln!(
            o,
            "<g class=\"cause\" data-cause=\"{}\" data-class=\"{}\" data-count=\"{}\" data-total-ns=\"{}\" data-max-ns=\"{}\"><rect class=\"{} plot\" x=\"0\" y=\"{y}\" width=\"{bw:.1}\" height=\"{}\"/><text x=\"{:.1}\" y=\"{}\">{}: {} in {} gaps (max {})</text></g>",
            esc(&label),
            esc(&r.cause.class),
            r.count,
            r.total_ns,
            r.max_ns,
            if r.cause.class == "hw" { "hw" } else { "bar" },
            rh - 4.0,
            bw + 4.0,
            y + rh - 7.0,
            esc(&label),
            fmt_ns(r.total_ns),
            r.count,
            fmt_ns(r.max_ns)
        );
    }
    let _ = writeln!(o, "</svg>");
}

/// Every kernel entry inside a gap, hw gaps included, by time covered.
fn covered(o: &mut String, c: &CpuReport) {
    if c.covered.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "<h3>Kernel entries inside gaps</h3><table class=\"covered\"><tr><th>cause</th><th>gaps</th><th>in hw gaps</th><th>entries</th><th>time covered</th></tr>"
    );
    for r in &c.covered {
        let _ = writeln!(
            o,
            "<tr class=\"covered-row\" data-cause=\"{}\" data-gaps=\"{}\" data-covered-ns=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.cause.label()),
            r.gaps,
            r.covered_ns,
            esc(&r.cause.label()),
            r.gaps,
            r.in_hw_gaps,
            r.entries,
            fmt_ns(r.covered_ns)
        );
    }
    let _ = writeln!(o, "</table>");
}
