//! `isol doctor` tells the truth on every kernel of the matrix: it loads
//! and detaches the capture, and says per capability what the kernel gives
//! and how. README.md's table of kernels is generated from these answers
//! (`ISOL_UPDATE_README=1 cargo test -p isol-lab --test doctor` rewrites
//! it; otherwise the test fails when they differ). On a locked-down kernel
//! the capture cannot work: doctor says so, exits 1, and `isol watch`
//! fails the same way.

use isol_lab::{Flavour, KernelSpec, Lab, Series};
use serde_json::Value;

const SCENARIO: &str = "section doctor isol doctor --json\n";

fn doctor(spec: KernelSpec) -> Value {
    let out = Lab::new()
        .unwrap()
        .kernel(spec)
        .quiet_cpu1()
        .run_script(SCENARIO)
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    out.json_section("doctor").unwrap()
}

fn cap<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no capability {name}: {d}"))
}

/// A table cell: the mechanism, or "no" and the first clause of why.
fn cell(c: &Value) -> String {
    let how = c["how"].as_str().unwrap();
    if c["available"] == true {
        how.to_string()
    } else {
        format!("no ({})", how.split([':', '(']).next().unwrap().trim())
    }
}

#[test]
fn doctor_on_each_kernel_and_the_readme_table() {
    let kernels = [
        (Series::V5_10, "5.10 (Debian 11)"),
        (Series::V6_1, "6.1 (Debian 12)"),
        (Series::V6_12, "6.12 (Debian 13, bookworm-backports)"),
    ];
    let mut answers = Vec::new();
    for (series, label) in kernels {
        let spec = KernelSpec::new(series, Flavour::Cloud);
        let d = doctor(spec);
        assert_eq!(d["ready"], true, "{spec}: {d}");
        assert_eq!(d["loaded_on"], "1", "{spec}: {d}");
        for name in [
            "ipi_function",
            "ipi_sender",
            "strict_mode",
            "tick_stop_reason",
        ] {
            assert_eq!(cap(&d, name)["available"], true, "{spec}: {name}: {d}");
        }
        assert_eq!(
            cap(&d, "sender_context")["how"],
            "preempt count (kallsyms)",
            "{spec}"
        );
        // Exact boundaries need context tracking: no NO_HZ_FULL on 5.10.
        assert_eq!(
            cap(&d, "exact_boundaries")["available"],
            series != Series::V5_10,
            "{spec}: {d}"
        );
        // IPI senders: the csd/ipi tracepoints from 6.4, fentry before.
        let sender = cap(&d, "ipi_sender")["how"].as_str().unwrap();
        if series == Series::V6_12 {
            assert!(sender.starts_with("csd:csd_queue_cpu"), "{spec}: {sender}");
        } else {
            assert!(sender.starts_with("fentry"), "{spec}: {sender}");
        }
        answers.push((label, d));
    }

    let names: Vec<&str> = answers[0].1["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut table = String::from("| what isol tells |");
    for (label, _) in &answers {
        table.push_str(&format!(" {label} |"));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(answers.len()));
    table.push('\n');
    for n in names {
        table.push_str(&format!("| `{n}` |"));
        for (_, d) in &answers {
            table.push_str(&format!(" {} |", cell(cap(d, n))));
        }
        table.push('\n');
    }
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (start, end) = ("<!-- kernel-table:start -->\n", "<!-- kernel-table:end -->");
    let a = readme
        .find(start)
        .expect("README has no kernel-table markers")
        + start.len();
    let b = readme.find(end).unwrap();
    if std::env::var("ISOL_UPDATE_README").is_ok_and(|v| v == "1") {
        let new = format!("{}{table}{}", &readme[..a], &readme[b..]);
        std::fs::write(&readme_path, new).unwrap();
    } else {
        assert_eq!(
            &readme[a..b],
            table,
            "README.md's kernel table differs from what doctor says; regenerate with ISOL_UPDATE_README=1"
        );
    }
}

#[test]
fn locked_down_kernel_is_not_ready_and_watch_fails_the_same_way() {
    let out = Lab::new()
        .unwrap()
        .quiet_cpu1()
        .cmdline("lockdown=confidentiality")
        .run_script(
            "mount -t securityfs securityfs /sys/kernel/security\n\
             section doctor isol doctor --json\n\
             isol watch --cpus 1 -D 1 --json >/dev/null 2>/tmp/watch.err\n\
             echo \"watch_rc=$?\"\n\
             section watch_err cat /tmp/watch.err\n",
        )
        .unwrap();
    eprintln!("{}", out.summary());
    let d = out.json_section("doctor").unwrap();
    assert_eq!(out.section("doctor").unwrap().rc, 1, "{d}");
    assert_eq!(d["ready"], false, "{d}");
    let why = d["load_error"].as_str().unwrap();
    assert!(why.contains("locked down (confidentiality)"), "{why}");
    assert!(!out.stdout.contains("watch_rc=0"), "{}", out.stdout);
    let err = out.section("watch_err").unwrap().text;
    assert!(err.contains("locked down"), "{err}");
}
