//! Lab harness tests with busybox-only scenarios (no isol binary needed).

use isol_lab::{Flavour, Lab};

const ISOLATE_1: &str = "nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0";

#[test]
fn cloud_kernel_boots_with_cpu1_isolated() {
    let out = Lab::new()
        .unwrap()
        .kernel(Flavour::Cloud)
        .cmdline(ISOLATE_1)
        .smp(2)
        .without_isol()
        .bytes("/etc/lab-extra.txt", "extra file\n", 0o644)
        .run_scenario("smoke")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    assert!(
        out.kernel_release.starts_with("6.12."),
        "{}",
        out.kernel_release
    );
    assert!(
        out.kernel_release.ends_with("-cloud-amd64"),
        "{}",
        out.kernel_release
    );
    assert_eq!(out.section("nohz_full").unwrap().text, "1");
    assert_eq!(out.section("isolated").unwrap().text, "1");
    assert!(out.section("cmdline").unwrap().text.contains(ISOLATE_1));
    let ct = out.section("context_tracking").unwrap();
    assert_eq!(ct.rc, 0, "no context_tracking events: {}", ct.text);
    for event in ["user_enter", "user_exit"] {
        assert!(
            ct.text.lines().any(|l| l == event),
            "{event} missing: {}",
            ct.text
        );
    }
    assert_eq!(out.section("extra").unwrap().text, "extra file");
}

#[test]
fn without_nohz_full_nothing_is_isolated() {
    // The counterpart of the test above: the assertions there can fail.
    let out = Lab::new()
        .unwrap()
        .without_isol()
        .run_script("section nohz_full cat /sys/devices/system/cpu/nohz_full\nsection isolated cat /sys/devices/system/cpu/isolated\n")
        .unwrap();
    out.ensure_success().unwrap();
    assert_eq!(out.section("nohz_full").unwrap().text, "(null)");
    assert_eq!(out.section("isolated").unwrap().text, "");
}

#[test]
fn exit_status_sections_and_stderr() {
    let out = Lab::new()
        .unwrap()
        .without_isol()
        .smp(4)
        .env("GREETING", "it's me")
        .run_script(
            r#"
section json sh -c 'echo "{\"cpus\": $(nproc), \"greeting\": \"$GREETING\"}"; echo noise >&2; exit 5'
echo "after section rc=$?"
echo to-stderr >&2
exit 3
"#,
        )
        .unwrap();
    assert_eq!(out.status, 3, "{}", out.stdout);
    let json = out.json_section("json").unwrap();
    assert_eq!(json["cpus"], 4);
    assert_eq!(json["greeting"], "it's me");
    assert_eq!(out.section("json").unwrap().rc, 5);
    assert!(out.stdout.contains("[stderr] noise"), "{}", out.stdout);
    assert!(out.stdout.contains("after section rc=5"), "{}", out.stdout);
    assert!(out.stdout.contains("to-stderr"), "{}", out.stdout);
    assert!(out.ensure_success().is_err());
    assert!(out.section("missing").is_err());
}

#[test]
fn fail_helper_and_large_output() {
    // 20k lines (~1 MB) must arrive whole before poweroff.
    let out = Lab::new()
        .unwrap()
        .without_isol()
        .run_script(
            "seq 1 20000 | sed 's/$/ xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/'\nfail \"on purpose\"\necho unreachable\n",
        )
        .unwrap();
    assert_eq!(out.status, 1);
    assert!(out.stdout.contains("\n20000 xxx"), "output cut short");
    assert!(out.stdout.contains("FAIL: on purpose"));
    assert!(!out.stdout.contains("unreachable"));
}

#[test]
fn static_test_program_runs_in_guest() {
    // Tests may ship small static C programs; `gcc -static` is what they use.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hello.c");
    std::fs::write(
        &src,
        "#define _GNU_SOURCE\n#include <stdio.h>\n#include <sched.h>\nint main(void){printf(\"hello from cpu %d\\n\", sched_getcpu());return 0;}\n",
    )
    .unwrap();
    let bin = dir.path().join("hello");
    let st = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("gcc not found: apt-get install gcc libc6-dev");
    assert!(st.success());
    let out = Lab::new()
        .unwrap()
        .without_isol()
        .file(&bin, "/usr/local/bin/hello")
        .run_script("section hello taskset -c 1 hello")
        .unwrap();
    out.ensure_success().unwrap();
    assert_eq!(out.section("hello").unwrap().text, "hello from cpu 1");
}

#[test]
fn boot_failure_is_an_error_with_console() {
    // init=... is ignored with an initramfs; rdinit= pointing nowhere panics.
    let err = Lab::new()
        .unwrap()
        .without_isol()
        .cmdline("rdinit=/nonexistent")
        .run_script("true")
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernel console"), "{err}");
}

#[test]
fn rt_kernel_has_osnoise() {
    let out = Lab::new()
        .unwrap()
        .kernel(Flavour::Rt)
        .without_isol()
        .run_scenario("osnoise")
        .unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    assert!(
        out.kernel_release.ends_with("-rt-amd64"),
        "{}",
        out.kernel_release
    );
    let tracers = out.section("tracers").unwrap().text;
    for t in ["osnoise", "timerlat"] {
        assert!(
            tracers.split_whitespace().any(|x| x == t),
            "{t} missing: {tracers}"
        );
    }
}
