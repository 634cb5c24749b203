//! `isol audit`, `isol apply`, `isol revert` through the binary: fault
//! injection on a fixture tree, and a read-only audit of this host.

use isol_tune::testing::{fixture, snapshot};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn isol() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isol"))
}

/// Values isol writes (effective IRQ affinities belong to the kernel).
fn values(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = snapshot(dir);
    m.retain(|p, _| !p.ends_with("effective_affinity_list"));
    m
}

fn run(args: &[&str], root: &Path, journal: &Path, fault: Option<u64>) -> Output {
    let mut c = isol();
    c.args(args)
        .arg("--root")
        .arg(root)
        .env_remove("ISOL_FAULT_AFTER");
    if args[0] != "audit" {
        c.arg("--journal").arg(journal);
    }
    if let Some(n) = fault {
        c.env("ISOL_FAULT_AFTER", n.to_string());
    }
    c.output().unwrap()
}

#[test]
fn apply_killed_at_every_step_then_revert_restores_every_byte() {
    let mut killed = 0;
    for n in 1..500u64 {
        for reapply in [false, true] {
            let m = tempfile::tempdir().unwrap();
            fixture(m.path()).unwrap();
            let st = tempfile::tempdir().unwrap();
            let j = st.path().join("journal.json");
            let before = values(m.path());
            let out = run(&["apply", "--cpus", "1"], m.path(), &j, Some(n));
            let was_killed = out.status.signal() == Some(9);
            if !was_killed {
                assert!(out.status.success(), "apply: {out:?}");
                assert!(!reapply || killed > 0);
                if !reapply {
                    // Past the last step: apply finished. Every step was hit.
                    assert!(killed >= 30, "only {killed} fault points");
                    let rv = run(&["revert"], m.path(), &j, None);
                    assert!(rv.status.success(), "{rv:?}");
                    assert_eq!(values(m.path()), before);
                    return;
                }
            } else {
                killed += 1;
                // The journal is complete JSON whatever the step.
                if j.exists() {
                    let t = std::fs::read_to_string(&j).unwrap();
                    serde_json::from_str::<serde_json::Value>(&t)
                        .unwrap_or_else(|e| panic!("step {n}: torn journal: {e}"));
                }
                // No temporary journal is left that could be mistaken.
                if reapply {
                    // A second apply after the crash extends the journal;
                    // revert still goes back to the very first values.
                    let out = run(&["apply", "--cpus", "1"], m.path(), &j, None);
                    assert!(out.status.success(), "step {n} re-apply: {out:?}");
                }
            }
            let rv = run(&["revert", "--json"], m.path(), &j, None);
            assert!(
                rv.status.success(),
                "step {n} (reapply {reapply}): revert {}\n{}",
                String::from_utf8_lossy(&rv.stdout),
                String::from_utf8_lossy(&rv.stderr)
            );
            assert_eq!(
                values(m.path()),
                before,
                "step {n} (reapply {reapply}): not restored byte for byte"
            );
            assert!(!j.exists(), "journal removed after a complete revert");
        }
    }
    panic!("apply never completed");
}

#[test]
fn audit_json_on_fixture_and_exit_status() {
    let m = tempfile::tempdir().unwrap();
    fixture(m.path()).unwrap();
    let j = m.path().join("unused");
    let out = run(&["audit", "--json"], m.path(), &j, None);
    assert_eq!(out.status.code(), Some(1), "fail items => exit 1");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "isol.audit/1");
    assert_eq!(v["cpus"], "1");
    assert_eq!(v["verdict"]["status"], "fail");
    let items = v["items"].as_array().unwrap();
    let tm = items
        .iter()
        .find(|i| i["id"] == "sysctl.timer_migration")
        .unwrap();
    assert_eq!(tm["status"], "warn");
    assert_eq!(tm["changes"][0]["kind"], "write");
    assert_eq!(tm["changes"][0]["value"], "0");
    // Human output names the failures with their fixes.
    let out = run(&["audit"], m.path(), &j, None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL  irq.affinity"), "{text}");
    assert!(text.contains("fix: echo 0 > "), "{text}");
    assert!(text.contains("verdict: audit of CPUs 1: fail"), "{text}");
}

#[test]
fn host_audit_and_dry_run_touch_nothing() {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    if online.trim() == "0" {
        return;
    }
    let out = isol()
        .args(["audit", "--cpus", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(items.len() >= 25);
    for i in items {
        if i["status"] == "fail" || i["status"] == "warn" {
            assert!(i["fix"].is_string(), "{} has no fix", i["id"]);
        }
    }
    // Dry run: plans, writes no journal.
    let st = tempfile::tempdir().unwrap();
    let j = st.path().join("j.json");
    let tm = std::fs::read("/proc/sys/kernel/timer_migration").unwrap();
    let out = isol()
        .args(["apply", "--cpus", "1", "--dry-run", "--json", "--journal"])
        .arg(&j)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    for c in v["changes"].as_array().unwrap() {
        assert_eq!(c["outcome"], "planned");
    }
    assert!(!j.exists());
    assert_eq!(
        std::fs::read("/proc/sys/kernel/timer_migration").unwrap(),
        tm
    );
    // No CPU isolated here and no --cpus: a clear error, exit 2.
    if std::fs::read_to_string("/sys/devices/system/cpu/isolated")
        .map(|s| s.trim().is_empty())
        .unwrap_or(true)
        && std::fs::read_to_string("/sys/devices/system/cpu/nohz_full")
            .map(|s| s.trim().is_empty() || s.trim() == "(null)")
            .unwrap_or(true)
    {
        let out = isol().args(["audit"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--cpus"));
    }
}
