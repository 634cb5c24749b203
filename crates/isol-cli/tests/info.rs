//! `isol info` and `isol doctor` on the host, as root, as an unprivileged
//! user, and with tracefs unmounted (in a private mount namespace).

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const ISOL: &str = env!("CARGO_BIN_EXE_isol");
const NOBODY: &str = "65534";

fn is_root() -> bool {
    nix_euid() == 0
}

fn nix_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// Run a shell snippet, as nobody when `unprivileged`, in a private mount
/// namespace with tracefs unmounted when `no_tracefs`.
fn sh(script: &str, unprivileged: bool, no_tracefs: bool) -> Output {
    let mut inner = String::new();
    if no_tracefs {
        inner.push_str(
            "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; \
             ! grep -q ' tracefs ' /proc/self/mounts || { echo 'tracefs still mounted' >&2; exit 99; }; ",
        );
    }
    if unprivileged && is_root() {
        inner.push_str(&format!(
            "exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups --inh-caps=-all sh -c '{script}'"
        ));
    } else {
        inner.push_str(script);
    }
    let out = if no_tracefs {
        assert!(
            is_root(),
            "the missing-tracefs tests need root (CI runs as root)"
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &inner])
            .output()
    } else {
        Command::new("sh").args(["-c", &inner]).output()
    }
    .expect("spawn");
    assert_ne!(out.status.code(), Some(99), "could not unmount tracefs");
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn info_json_describes_this_host() {
    let out = Command::new(ISOL)
        .args(["info", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["schema"], "isol.info/1");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    assert_eq!(v["cpus"]["online"], online.trim());
    assert_eq!(
        v["per_cpu"].as_array().unwrap().len(),
        v["topology"]["cpus"].as_array().unwrap().len()
    );
    // Every device IRQ listed under a CPU really is delivered there.
    for c in v["per_cpu"].as_array().unwrap() {
        let cpu = c["cpu"].as_u64().unwrap() as u32;
        for irq in c["irqs"].as_array().unwrap() {
            let eff = isol_cpulist::CpuSet::parse(irq["effective"].as_str().unwrap()).unwrap();
            assert!(eff.contains(cpu), "{irq}");
        }
    }
    // This development kernel and CI's have no NO_HZ_FULL; then isol must
    // say so, report nothing nohz_full, and still succeed.
    let has_nohz = std::path::Path::new("/sys/devices/system/cpu/nohz_full").exists();
    assert_eq!(v["features"]["nohz_full_support"], has_nohz);
    if !has_nohz {
        assert_eq!(v["cpus"]["nohz_full"], "");
        assert!(v["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["what"] == "nohz_full"));
        let text = Command::new(ISOL).arg("info").output().unwrap();
        assert!(text.status.success());
        let s = String::from_utf8_lossy(&text.stdout);
        assert!(s.contains("no NO_HZ_FULL"), "{s}");
        let isolated = std::fs::read_to_string("/sys/devices/system/cpu/isolated").unwrap();
        if isolated.trim().is_empty() {
            assert!(s.contains("Isolated  none"), "{s}");
        }
    }
}

#[test]
fn unprivileged_doctor_names_the_missing_privilege() {
    let out = sh(&format!("{ISOL} doctor"), true, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing root"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
    let out = sh(&format!("{ISOL} doctor --json"), true, false);
    let v = json(&out);
    assert_eq!(v["ready"], false);
    assert!(v["capture"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["what"] == "root"));
    // info itself still works unprivileged, and says who it runs as.
    let out = sh(&format!("{ISOL} info"), true, false);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("uid 65534"));
}

#[test]
fn missing_tracefs_is_named_with_its_fix() {
    // Root: tracefs can be mounted on demand, so capture is not blocked.
    let out = sh(&format!("{ISOL} info --json"), false, true);
    let v = json(&out);
    assert_eq!(v["features"]["tracefs"]["state"], "mountable");
    assert!(v["features"]["tracepoints"].as_object().unwrap().is_empty());
    assert!(v["features"]["context_tracking"].is_null());
    let out = sh(&format!("{ISOL} info"), false, true);
    assert!(String::from_utf8_lossy(&out.stdout).contains("not mounted (isol can mount it)"));

    // Unprivileged: tracefs is missing and cannot be mounted: say so.
    let out = sh(&format!("{ISOL} doctor"), true, true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing tracefs"), "{err}");
    assert!(err.contains("mounting it needs CAP_SYS_ADMIN"), "{err}");
    assert!(
        err.contains("mount -t tracefs nodev /sys/kernel/tracing"),
        "{err}"
    );
}

#[test]
fn doctor_loads_the_capture_and_names_each_capability() {
    assert!(is_root(), "doctor's load test needs root (CI runs as root)");
    let out = sh(&format!("{ISOL} doctor --json"), false, false);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["ready"], true, "{v}");
    assert!(v["loaded_on"].is_string(), "{v}");
    let caps = v["capabilities"].as_array().unwrap();
    for name in [
        "exact_boundaries",
        "ipi_function",
        "ipi_sender",
        "sender_context",
        "tick_stop_reason",
        "strict_mode",
        "strict_syscalls",
    ] {
        let c = caps
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"));
        assert!(!c["how"].as_str().unwrap().is_empty(), "{c}");
    }
}

#[test]
fn root_without_capabilities_is_not_ready_and_watch_fails_too() {
    assert!(is_root(), "needs root (CI runs as root)");
    // uid 0 in a container without CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN: the
    // feature checks pass (uid 0), the load does not, and doctor must say
    // so rather than "ready".
    let drop = "setpriv --inh-caps=-all --bounding-set=-all";
    let out = sh(&format!("{drop} {ISOL} doctor --json"), false, false);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(v["ready"], false, "{v}");
    assert!(
        v["capture"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["what"] == "capabilities" && m["why"].as_str().unwrap().contains("CAP_BPF")),
        "{v}"
    );
    let out = sh(
        &format!("{drop} {ISOL} watch --cpus 1 -D 1 --json"),
        false,
        false,
    );
    assert!(!out.status.success(), "watch ran where doctor refused");
}

#[test]
fn status_of_a_process_that_does_not_exist_says_so() {
    // Beyond pid_max (at most 2^22): no such process can exist.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_isol"))
        .args(["status", "99999999"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no such process: 99999999"), "{err}");
}

/// What this host has of KVM, read independently of isol: the kvm
/// module (loadable and live, built in, or none), its tracepoints, and a
/// vendor module isol decodes.
fn host_kvm() -> (&'static str, bool, Option<&'static str>) {
    let sys = Path::new("/sys/module/kvm");
    let listed = std::fs::read_to_string("/proc/modules")
        .map(|m| m.lines().any(|l| l.starts_with("kvm ")))
        .unwrap_or(false);
    let kvm = match std::fs::read_to_string(sys.join("initstate")) {
        Ok(s) if s.trim() == "live" => "module",
        Ok(_) => "loading",
        Err(_) if sys.is_dir() && !listed => "builtin",
        Err(_) => "absent",
    };
    let tps = ["kvm_exit", "kvm_entry", "kvm_userspace_exit"]
        .iter()
        .all(|t| Path::new("/sys/kernel/tracing/events/kvm").join(t).is_dir());
    let vendor = ["kvm_amd", "kvm_intel"].into_iter().find(|m| {
        std::fs::read_to_string(format!("/sys/module/{m}/initstate"))
            .is_ok_and(|s| s.trim() == "live")
    });
    (kvm, tps, vendor)
}

#[test]
fn doctor_says_whether_vm_exits_can_be_captured() {
    assert!(is_root(), "needs root (CI runs as root)");
    let _cpu1 = common::serial();
    let out = sh(&format!("{ISOL} doctor --json"), false, false);
    let v = json(&out);
    assert_eq!(v["ready"], true, "{v}");
    let vm = &v["vm"];
    let how = vm["how"].as_str().unwrap();
    let (kvm, tps, vendor) = host_kvm();
    eprintln!("host: kvm {kvm}, tracepoints {tps}, vendor {vendor:?}; doctor: {vm}");
    assert_eq!(vm["kvm"], kvm, "{vm}");
    assert_eq!(vm["tracepoints"], tps, "{vm}");
    assert_eq!(vm["vendor"].as_str(), vendor, "{vm}");
    match (kvm, tps) {
        ("absent", _) => {
            // The host CI case: no KVM, and doctor says so and what then.
            assert_eq!(vm["available"], false, "{vm}");
            assert!(how.starts_with("KVM is not loaded"), "{how}");
            assert!(how.contains("when the kvm module loads"), "{how}");
            assert_eq!(vm["capture"]["state"], "no_kvm", "{vm}");
        }
        ("module" | "builtin", true) => {
            // The capture doctor loaded attached to the tracepoints.
            assert_eq!(vm["available"], true, "{vm}");
            assert_eq!(vm["capture"]["state"], "attached", "{vm}");
            let source = if kvm == "builtin" {
                "(kvm built in)"
            } else {
                "(kvm module)"
            };
            assert!(
                how.starts_with("kvm:kvm_exit/kvm_entry/kvm_userspace_exit"),
                "{how}"
            );
            assert!(how.contains(source), "{how}");
            match vendor {
                None => {
                    assert_eq!(vm["reasons"], false, "{vm}");
                    assert!(
                        how.contains("neither kvm_amd nor kvm_intel is loaded"),
                        "{how}"
                    );
                    assert!(how.contains("not their reason"), "{how}");
                }
                Some(m) if vm["reasons"] == true => {
                    assert!(
                        how.contains(&format!("exit reasons decoded ({m})")),
                        "{how}"
                    )
                }
                Some(m) => assert!(how.contains(&format!("{m} has no BTF")), "{how}"),
            }
        }
        _ => assert_eq!(vm["available"], false, "{vm}"),
    }
    // The text form says the same on its own line.
    let out = sh(&format!("{ISOL} doctor"), false, false);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("vm_exits "))
        .unwrap_or_else(|| panic!("no vm_exits line: {text}"));
    let yes = if vm["available"] == true { "yes" } else { "no" };
    assert_eq!(line.split_whitespace().nth(1), Some(yes), "{line}");
    assert!(line.ends_with(how), "{line}\n{how}");
}
