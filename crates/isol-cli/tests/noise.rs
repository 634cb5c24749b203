//! `isol noise` and `isol check` on the host (CPU 1 measured; isol and
//! the noise generators on CPU 0): a stall injected into the loop without
//! any kernel entry is classed `hw`, never a kernel cause; the tick and
//! BPF-JIT text-patching IPIs are named; `--pid` reports a running task's
//! interruptions; Ctrl-C gives a partial report; the HTML report renders
//! in Debian's chromium with the measured numbers on its plots; `isol
//! check` prints a verdict and where the report is.
//! Needs root, BPF and tracefs (CI runs as root), and chromium.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

fn noise_json(args: &[&str]) -> Value {
    let args = [args, &["--json"]].concat();
    let v: Value = serde_json::from_str(&isol_ok("noise", &args)).unwrap();
    assert_eq!(v["schema"], "isol.noise/3");
    v
}

#[test]
fn a_stall_with_no_kernel_entry_is_hw_not_the_kernel() {
    let _serial = serial();
    // CPU 1 is shared here: on a loaded machine the scheduler may preempt
    // the loop in the middle of the injected stall, and that gap then
    // rightly holds a kernel cause. Retry until the stall ran clean (a
    // few kernel microseconds at most, a tick say) and judge that one.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let v = noise_json(&["-c", "1", "-D", "3", "--inject-stall", "1000:3000"]);
        let cpu = &v["per_cpu"][0];
        assert_eq!(cpu["cpu"], 1);
        // Every loop delta is in the histogram.
        let counts: u64 = cpu["histogram"]["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(counts, cpu["loops"].as_u64().unwrap());
        let inj = &cpu["injected"];
        assert!(
            inj["duration_ns"].as_u64().unwrap() >= 3_000_000,
            "injected gap: {inj}"
        );
        assert!(cpu["max_ns"].as_u64().unwrap() >= 3_000_000);
        if inj["kernel_ns"].as_u64().unwrap() > 200_000 {
            seen.push(inj["cause"].clone());
            continue;
        }
        assert_eq!(inj["cause"]["class"], "hw", "the stall blamed on: {inj}");
        assert!(inj["hw_ns"].as_u64().unwrap() >= 2_800_000, "{inj}");
        return;
    }
    panic!("the injected stall never ran without a kernel entry inside it: {seen:?}");
}

#[test]
fn the_tick_and_jit_text_patching_ipis_are_named() {
    let _serial = serial();
    // XDP attach/detach from a task on CPU 0: the JIT'd dispatcher is
    // patched, and text patching IPIs reach every CPU.
    let _g = Victim::start(&["--cpu", "0", "--hk", "0", "--jit", "--duration", "60"]);
    let v = noise_json(&["-c", "1", "-D", "3", "--worst", "100000"]);
    let cpu = &v["per_cpu"][0];
    let causes = cpu["causes"].as_array().unwrap();
    assert!(
        causes
            .iter()
            .any(|c| c["class"] == "timer" && c["kind"] == "local_timer"),
        "no tick among {causes:?}"
    );
    let gaps = cpu["worst"].as_array().unwrap();
    assert_eq!(gaps.len() as u64, cpu["gaps"].as_u64().unwrap());
    assert!(
        gaps.iter().any(|g| g["cause"]["class"] == "ipi"
            && g["cause"]["detail"] == "do_sync_core"
            && stack_has(g, &["bpf_dispatcher_change_prog"])),
        "no gap attributed to a text patching IPI from the XDP dispatcher among {} gaps",
        gaps.len()
    );
    // Attributed gaps carry their chain; hw ones carry none.
    for g in gaps {
        if g["cause"]["class"] == "hw" {
            assert!(g["chain"].as_array().unwrap().is_empty());
        } else if g["cause"]["kind"] != "runqueue_wait" {
            assert!(!g["chain"].as_array().unwrap().is_empty(), "{g}");
        }
    }
}

#[test]
fn pid_mode_reports_the_tasks_own_interruptions() {
    let _serial = serial();
    let victim = Victim::start(&["--cpu", "1", "--timer", "--duration", "60"]);
    let pid = victim.child.id().to_string();
    let v = noise_json(&["--pid", &pid, "-D", "2"]);
    assert_eq!(v["mode"], "pid");
    let cpu = v["per_cpu"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cpu"] == 1)
        .expect("no interruptions on CPU 1");
    assert!(cpu["gaps"].as_u64().unwrap() > 50, "{cpu}");
    assert!(
        cpu["causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["class"] == "timer" && c["detail"] == "posix_timer_fn"),
        "no posix_timer_fn among {}",
        cpu["causes"]
    );
}

#[test]
fn ctrl_c_gives_the_partial_report() {
    let _serial = serial();
    stay_on_housekeeping();
    let mut child = Command::new(ISOL)
        .args(["noise", "-c", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    err.read_line(&mut line).unwrap();
    assert!(line.contains("Ctrl-C"), "{line}");
    std::thread::sleep(std::time::Duration::from_secs(4));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[interrupted: partial report]"), "{text}");
    assert!(text.contains("CPU 1:"), "{text}");
}

fn chromium_dom(path: &std::path::Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", path.display()))
        .output()
        .expect("chromium (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `html` by headless chromium, `height` px tall.
fn chromium_screenshot(html: &std::path::Path, png: &std::path::Path, height: u32) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size=1280,{height}"))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(png).expect("no screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {png:?}"
    );
    // A blank 1280-wide page compresses to a few KB; the report's plots
    // do not.
    assert!(
        bytes.len() > 50_000,
        "{png:?} is {} bytes: nothing drawn?",
        bytes.len()
    );
    println!("screenshot: {}", png.display());
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every element of the serialized DOM whose opening tag starts with
/// `open` (`<rect class="bin plot"`): its attributes, and the text up to
/// the next tag.
fn elements(dom: &str, open: &str) -> Vec<(BTreeMap<String, String>, String)> {
    dom.match_indices(open)
        .map(|(at, _)| {
            let mut m = BTreeMap::new();
            // Past the tag name; quoted values may hold '>', so read pairs.
            let mut rest = dom[at + 1..].trim_start_matches(|c: char| c.is_ascii_alphanumeric());
            loop {
                rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix("/>").or_else(|| rest.strip_prefix('>')) {
                    rest = r;
                    break;
                }
                let end = rest.find(['=', ' ', '>', '/']).unwrap();
                let name = rest[..end].to_string();
                match rest[end..].strip_prefix("=\"") {
                    Some(v) => {
                        let close = v.find('"').unwrap();
                        m.insert(name, unescape(&v[..close]));
                        rest = &v[close + 1..];
                    }
                    None => {
                        m.insert(name, String::new());
                        rest = &rest[end..];
                    }
                }
            }
            let text = unescape(&rest[..rest.find('<').unwrap_or(rest.len())]);
            (m, text)
        })
        .collect()
}

fn num(m: &BTreeMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no {k} in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} not a number in {m:?}"))
}

/// The laid-out sizes (px) are a linear function of the values after the
/// axis' transform (log10 for log axes): the plot shows the numbers, not
/// merely their order. Fitted through the smallest and largest value;
/// sizes at `clamp` px, the minimum a plot draws, are left out (0: none).
fn assert_scaled(what: &str, pts: Vec<(f64, f64)>, clamp: f64) {
    let pts: Vec<(f64, f64)> = pts
        .into_iter()
        .filter(|p| clamp == 0.0 || p.1 > clamp + 0.01)
        .collect();
    assert!(!pts.is_empty(), "{what}: nothing drawn larger than 1 px");
    let cmp = |a: &&(f64, f64), b: &&(f64, f64)| a.0.partial_cmp(&b.0).unwrap();
    let lo = *pts.iter().min_by(cmp).unwrap();
    let hi = *pts.iter().max_by(cmp).unwrap();
    let slope = if hi.0 > lo.0 {
        (hi.1 - lo.1) / (hi.0 - lo.0)
    } else {
        0.0
    };
    assert!(hi.0 == lo.0 || slope > 0.0, "{what}: {lo:?} .. {hi:?}");
    for p in &pts {
        let want = lo.1 + slope * (p.0 - lo.0);
        // Coordinates are written to 0.1 px.
        assert!(
            (p.1 - want).abs() < 0.3,
            "{what}: value {} drawn {} px, the scale says {want:.2}",
            p.0,
            p.1
        );
    }
}

#[test]
fn the_html_report_renders_in_chromium_with_the_measured_numbers() {
    use isol_system::units;
    let _serial = serial();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let html = out.join("noise.html");
    let v = noise_json(&["-c", "1", "-D", "2", "--html", html.to_str().unwrap()]);
    std::fs::write(out.join("noise.json"), v.to_string()).unwrap();
    println!("report: {} (JSON beside it)", html.display());
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("http://") && !text.contains("https://") && !text.contains(" src="),
        "the report loads nothing"
    );
    let dom = chromium_dom(&html);
    let cpu = &v["per_cpu"][0];
    let arr = |k: &str| cpu[k].as_array().unwrap().clone();
    let (latency, marks, causes, covered, worst) = (
        arr("latency"),
        arr("marks"),
        arr("causes"),
        arr("covered"),
        arr("worst"),
    );
    // The inline script ran and every plot element was laid out.
    let rendered: usize = dom
        .split("data-rendered=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("no data-rendered on body");
    assert_eq!(
        rendered,
        latency.len() + marks.len() + causes.len() + covered.len(),
        "plot elements laid out"
    );

    // Summary: loops as people read them, percentiles in ns.
    let loops = cpu["loops"].as_u64().unwrap();
    let stat = elements(&dom, &format!("<div class=\"stat\" data-loops=\"{loops}\""));
    assert_eq!(stat.len(), 1, "no loops figure");
    let shown = dom[dom.find(&format!("data-loops=\"{loops}\"")).unwrap()..]
        .split("<b>")
        .nth(1)
        .and_then(|s| s.split("</b>").next())
        .unwrap();
    assert_eq!(shown, units::count(loops), "loops label");
    assert!(loops > 1_000_000 && shown.ends_with(" M"), "{shown}");
    for (name, key) in [("p99", "p99"), ("p99.99", "p9999")] {
        let p = elements(
            &dom,
            &format!("<div class=\"stat\" data-percentile=\"{name}\""),
        );
        assert_eq!(
            num(&p[0].0, "data-ns"),
            cpu["percentiles"][key].as_f64().unwrap()
        );
    }

    // Histogram: the JSON's bins, each bar with its count, labelled.
    let bins = elements(&dom, "<rect class=\"bin plot\"");
    let plotted: Vec<(u64, u64, u64)> = bins
        .iter()
        .map(|(m, _)| {
            (
                num(m, "data-lo") as u64,
                num(m, "data-hi") as u64,
                num(m, "data-count") as u64,
            )
        })
        .collect();
    let json_bins: Vec<(u64, u64, u64)> = latency
        .iter()
        .map(|b| {
            (
                b["lo_ns"].as_u64().unwrap(),
                b["hi_ns"].as_u64().unwrap(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(plotted, json_bins);
    assert_eq!(
        plotted.iter().map(|b| b.2).sum::<u64>(),
        loops,
        "every loop delta"
    );
    assert_scaled(
        "histogram bars (log count)",
        bins.iter()
            .map(|(m, _)| (num(m, "data-count").log10(), num(m, "data-rendered-height")))
            .collect(),
        0.0,
    );
    // Each bar where its values are on the log x axis ([0, 10) aside).
    assert_scaled(
        "histogram bars (log ns)",
        bins.iter()
            .filter(|(m, _)| num(m, "data-lo") > 0.0)
            .map(|(m, _)| (num(m, "data-lo").log10(), num(m, "data-rendered-x")))
            .collect(),
        0.0,
    );
    // A bin of one is a visible bar, not a hairline.
    for (m, _) in &bins {
        assert!(
            num(m, "data-rendered-height") > 2.0,
            "bin drawn flat: {m:?}"
        );
    }
    let labels = elements(&dom, "<text class=\"count\"");
    assert_eq!(labels.len(), bins.len());
    for (m, t) in &labels {
        assert_eq!(*t, units::count(num(m, "data-count") as u64), "bar label");
    }
    let xticks: Vec<String> = elements(&dom, "<text class=\"xtick\"")
        .into_iter()
        .map(|e| e.1)
        .collect();
    for t in ["10 ns", "100 ns", "1 us", "10 us", "100 us", "1 ms"] {
        assert!(xticks.iter().any(|x| x == t), "no x tick {t} in {xticks:?}");
    }
    let yticks: Vec<String> = elements(&dom, "<text class=\"ytick\"")
        .into_iter()
        .map(|e| e.1)
        .collect();
    for t in ["1", "10", "100", "1k", "1M"] {
        assert!(yticks.iter().any(|y| y == t), "no y tick {t} in {yticks:?}");
    }
    // The timeline's seconds.
    assert!(
        xticks.iter().any(|x| x == "1.0 s" || x == "1 s"),
        "{xticks:?}"
    );

    // Timeline: each gap of the JSON a mark at its time, its hover text
    // naming duration, cause, chain and sender.
    let gaps = cpu["gaps"].as_u64().unwrap() as usize;
    assert_eq!(marks.len(), gaps.min(isol_noise::report::MARKS_MAX));
    let dom_marks = elements(&dom, "<rect class=\"mark plot\"");
    assert_eq!(dom_marks.len(), marks.len());
    let titles: BTreeMap<(String, u64), (String, String)> = dom_marks
        .iter()
        .map(|(m, _)| {
            let at = m["data-at-s"].clone();
            let d = num(m, "data-duration-ns") as u64;
            // The <title> child: the text after the rect's opening tag.
            let key = format!("data-at-s=\"{at}\" data-duration-ns=\"{d}\"");
            let from = dom.find(&key).unwrap();
            let t = dom[from..]
                .split("<title>")
                .nth(1)
                .unwrap()
                .split("</title>")
                .next()
                .unwrap();
            ((at, d), (m["data-class"].clone(), unescape(t)))
        })
        .collect();
    let mut senders = 0;
    for m in &marks {
        let d = m["duration_ns"].as_u64().unwrap();
        let key = (format!("{:.6}", m["at_s"].as_f64().unwrap()), d);
        let (class, title) = titles
            .get(&key)
            .unwrap_or_else(|| panic!("gap {m} not on the timeline"));
        assert_eq!(class, m["cause"]["class"].as_str().unwrap());
        let c = &m["cause"];
        assert!(title.starts_with(&units::ns(d)), "{title}");
        assert!(
            title.contains(&format!(
                "{} {} {}",
                c["class"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )),
            "{title}"
        );
        if let Some(first) = m["chain"].as_array().unwrap().first() {
            assert!(
                title.contains(&format!(
                    "\nchain: {} {} {}",
                    first["class"].as_str().unwrap(),
                    first["kind"].as_str().unwrap(),
                    first["detail"].as_str().unwrap()
                )),
                "{title}"
            );
        }
        if let Some(s) = m.get("sender") {
            senders += 1;
            assert!(
                title.contains(&format!(
                    "sent by CPU {} {}[{}]",
                    s["cpu"],
                    s["comm"].as_str().unwrap(),
                    s["pid"]
                )),
                "{title}"
            );
        }
    }
    // Each mark at its time on the x axis.
    assert_scaled(
        "timeline marks (time)",
        dom_marks
            .iter()
            .map(|(m, _)| (num(m, "data-at-s"), num(m, "data-rendered-x")))
            .collect(),
        0.0,
    );
    println!(
        "{} gaps on the timeline, {senders} with an IPI sender",
        marks.len()
    );
    assert_scaled(
        "timeline marks (log duration)",
        dom_marks
            .iter()
            .map(|(m, _)| {
                (
                    num(m, "data-duration-ns").log10(),
                    num(m, "data-rendered-height"),
                )
            })
            .collect(),
        1.0,
    );

    // Gap time by primary cause and kernel time per cause: the JSON's
    // rows in its order, bars as long as their time.
    let rows = |class: &str| {
        let at = dom.find(&format!("<svg class=\"{class}\"")).unwrap();
        let svg = &dom[at..at + dom[at..].find("</svg>").unwrap()];
        let groups = elements(svg, "<g class=\"row\"");
        let bars = elements(svg, "<rect class=\"plot\"");
        assert_eq!(groups.len(), bars.len());
        groups
            .into_iter()
            .zip(bars)
            .map(|(g, b)| (g.0, num(&b.0, "data-rendered-width")))
            .collect::<Vec<_>>()
    };
    let by_cause = rows("causes");
    assert_eq!(by_cause.len(), causes.len());
    for ((m, _), c) in by_cause.iter().zip(&causes) {
        assert_eq!(num(m, "data-count"), c["count"].as_f64().unwrap());
        assert_eq!(num(m, "data-total-ns"), c["total_ns"].as_f64().unwrap());
        assert_eq!(m["data-class"], c["class"].as_str().unwrap());
    }
    assert_scaled(
        "cause bars",
        by_cause
            .iter()
            .map(|(m, w)| (num(m, "data-total-ns"), *w))
            .collect(),
        1.0,
    );
    let kernel = rows("covered");
    assert_eq!(kernel.len(), covered.len());
    for ((m, _), c) in kernel.iter().zip(&covered) {
        let label = format!(
            "{} {} {}",
            c["class"].as_str().unwrap(),
            c["kind"].as_str().unwrap(),
            c["detail"].as_str().unwrap()
        );
        assert_eq!(m["data-cause"], label);
        assert_eq!(num(m, "data-covered-ns"), c["covered_ns"].as_f64().unwrap());
        assert_eq!(num(m, "data-gaps"), c["gaps"].as_f64().unwrap());
    }
    assert_scaled(
        "covered bars",
        kernel
            .iter()
            .map(|(m, w)| (num(m, "data-covered-ns"), *w))
            .collect(),
        1.0,
    );

    // Worst gaps: the JSON's durations, in its order, written for people.
    let rows: Vec<(u64, String)> = dom
        .split("<tr class=\"gap\" data-duration-ns=\"")
        .skip(1)
        .map(|r| {
            let d: u64 = r.split('"').next().unwrap().parse().unwrap();
            let cell = r
                .split("<td>")
                .nth(3)
                .unwrap()
                .split("</td>")
                .next()
                .unwrap();
            (d, cell.to_string())
        })
        .collect();
    let want: Vec<(u64, String)> = worst
        .iter()
        .map(|g| {
            let d = g["duration_ns"].as_u64().unwrap();
            (d, units::ns(d))
        })
        .collect();
    assert_eq!(rows, want);
    // A sender's stack frames are in the table.
    for g in &worst {
        for frame in g["sender"]["stack"].as_array().into_iter().flatten() {
            assert!(dom.contains(frame.as_str().unwrap()), "frame {frame}");
        }
    }

    // For people to look at: the top of the page and the whole of it.
    chromium_screenshot(&html, &out.join("noise-top.png"), 2400);
    chromium_screenshot(&html, &out.join("noise-full.png"), 6000);
}

#[test]
fn check_gives_a_verdict_and_the_report_path() {
    let _serial = serial();
    stay_on_housekeeping();
    let out = Command::new(ISOL)
        .args(["check", "-D", "2", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "isol.check/1");
    assert!(["quiet", "good", "noisy"].contains(&v["verdict"].as_str().unwrap()));
    let html = v["html"].as_str().unwrap();
    assert!(std::fs::read_to_string(html).unwrap().contains("<svg"));
    let _ = std::fs::remove_file(html);
    assert_eq!(v["noise"]["attribution"], true);
    let isolated = std::fs::read_to_string("/sys/devices/system/cpu/isolated").unwrap();
    if isolated.trim().is_empty() {
        // No isolated CPU: one CPU chosen, and the reader is told so.
        assert_eq!(v["cpus"].as_str().unwrap().split(',').count(), 1);
        assert!(v["chosen"].as_str().unwrap().contains("no CPU is isolated"));
    }
    assert!(v["lines"][0].as_str().unwrap().starts_with("CPU "));

    let out = Command::new(ISOL)
        .args(["check", "-D", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verdict: "), "{text}");
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("Full report (plots, worst gaps with their cause chains): "))
        .expect("no report path");
    assert!(std::path::Path::new(path).exists());
    let _ = std::fs::remove_file(path);
}

/// One `--inject` run on CPU 1: per kind, the recall row, checked for
/// enough judged injections and the share named.
fn recall_rows(args: &[&str]) -> serde_json::Map<String, Value> {
    let base = ["-c", "1", "-D", "10", "--inject-every-ms", "5"];
    let v = noise_json(&[&base[..], args].concat());
    assert_eq!(v["attribution"], true, "{}", v["notes"]);
    let cpu = &v["per_cpu"][0];
    let rows = cpu["recall"].as_object().expect("no recall object").clone();
    for (k, r) in &rows {
        eprintln!("{k}: {r}");
    }
    rows
}

fn n(r: &Value, f: &str) -> u64 {
    r[f].as_u64().unwrap_or_else(|| panic!("{f} in {r}"))
}

/// Injected interference (isol's own TLB shootdowns, membarriers, perf
/// installs, a POSIX timer of the loop, page faults of the loop) is named
/// with the right kernel function in >= 99 % of the gaps it fell in. CPU 1
/// is shared here: an injection while the loop was switched out is not
/// judged (the report counts it), nor one that caused no gap.
///
/// The loop is SCHED_FIFO, so that most injections are judged on a busy
/// machine too; it then preempts every other task on CPU 1 for as long as
/// it runs. That is the case this test exists for: the capture once kept
/// a preempted task's wait open as an episode and folded the loop's own
/// IPIs into it (94-97 % under load); a preempted task's wait is now its
/// own record (capture.bpf.c, `displaced`). 2026-12-04, with a lab VM and
/// builds loading both CPUs: perf, timer and faults 99.2-100 %; TLB
/// shootdowns and membarriers 95.4-99.7 % over four runs, and on a
/// calmer host 96.4-98.6 % once RT-throttled waits were recorded; every
/// kind 100 % (four runs) once a wait that a kernel thread began ran on
/// with the CPU idle.
#[test]
fn injected_causes_are_named_in_their_gaps() {
    let _serial = serial();
    // A 1 us threshold: a page fault of the loop costs 1-3 us here, and
    // at the default 5 us only 91 of 1904 made a gap in a CI run (too few
    // to judge); at 1 us, 1906 of 1909 (2026-12-04, all named).
    let rows = recall_rows(&[
        "--inject",
        "tlb,membarrier,perf,timer,fault",
        "-f",
        "1",
        "-T",
        "1",
    ]);
    for k in ["tlb", "membarrier", "perf", "timer", "fault"] {
        let r = &rows[k];
        let (injected, judged, named) = (n(r, "injected"), n(r, "in_gap"), n(r, "named"));
        // 5 ms apart for 10 s: ~2000 of each on-CPU kind, ~500+ of each IPI.
        assert!(injected >= 300, "{k}: only {injected} injected: {r}");
        // Enough judged to measure a share. Not all: an injection that
        // made no gap is not judged.
        assert!(judged >= 100, "{k}: only {judged} injections judged: {r}");
        assert_eq!(
            r["recall"].as_f64().unwrap(),
            named as f64 / judged as f64,
            "{r}"
        );
        // TLB shootdowns and membarriers skip a CPU whose current task
        // is not of the sender's mm: a window where the loop was held off
        // (RT throttling, the fair server) is a wait, not judged. They
        // were missed 1.4-3.6 % of the time while the capture ended such
        // a wait when a kernel thread that ran in it left the CPU idle.
        assert!(named as f64 >= 0.99 * judged as f64, "{k}: {r}");
    }
}

/// BPF JIT text patching (an XDP attach and detach on lo: do_sync_core
/// IPIs to every CPU) is named in >= 99 % of its gaps. Its window holds
/// an RCU grace period (~20 ms): with the loop SCHED_FIFO, CPU 1's other
/// tasks wait, so most windows are judged. Before preempted tasks' waits
/// were kept apart from episodes this was 75-83 % here; 2026-12-04: 268
/// of 268.
#[test]
fn injected_jit_text_patching_is_named_in_its_gaps() {
    let _serial = serial();
    let rows = recall_rows(&["--inject", "jit", "-f", "1"]);
    let r = &rows["jit"];
    assert_eq!(rows.len(), 1);
    assert_eq!(r["expected"][0], "do_sync_core");
    let (judged, named) = (n(r, "in_gap"), n(r, "named"));
    assert!(judged >= 50, "jit: only {judged} judged: {r}");
    assert!(named as f64 >= 0.99 * judged as f64, "jit: {r}");
}
