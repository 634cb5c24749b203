//! The C samples build against the generated isol.h and libisol.so via
//! pkg-config (isol-uninstalled.pc: the build tree), and run on this (non-isolated) machine with the in-process
//! watcher; the error paths name what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// target/<profile>, where cargo put libisol.so, include/ and pkgconfig/.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn build(name: &str) -> PathBuf {
    let dir = profile_dir();
    assert!(
        dir.join("libisol.so").exists() && dir.join("pkgconfig/isol.pc").exists(),
        "libisol.so or isol.pc missing in {}: cargo build -p isol-capi first",
        dir.display()
    );
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "isol"])
        .env("PKG_CONFIG_PATH", dir.join("pkgconfig"))
        .output()
        .expect("pkg-config (apt-get install pkg-config)");
    assert!(flags.status.success(), "{flags:?}");
    let flags = String::from_utf8(flags.stdout).unwrap();
    assert!(flags.contains("-lisol"), "{flags}");
    // The uninstalled .pc, not the installed one beside it.
    assert!(flags.contains(&format!("-L{}", dir.display())), "{flags}");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.c"));
    let tmp = tempfile::Builder::new()
        .prefix("isol-capi-")
        .tempdir()
        .unwrap()
        .keep();
    // The program records the soname (libisol.so.0); cargo only writes
    // libisol.so, so the soname is a link to it beside the program.
    std::os::unix::fs::symlink(dir.join("libisol.so"), tmp.join(env!("ISOL_SONAME"))).unwrap();
    let out = tmp.join(name);
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", tmp.display()))
        .status()
        .unwrap();
    assert!(st.success(), "building {name}");
    let dynamic = Command::new("readelf")
        .arg("-d")
        .arg(&out)
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.contains(&format!("Shared library: [{}]", env!("ISOL_SONAME"))),
        "{name} does not need libisol by its soname:\n{dynamic}"
    );
    out
}

fn command(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        // No isold here: the library's in-process watcher serves (root).
        .env("ISOL_SOCKET", "/nonexistent/isold.sock")
        .env("ISOL_ALLOW_UNISOLATED", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(bin, args, env).output().unwrap()
}

/// The same under the imitation of the task isolation patch (the native
/// backend), with no BPF loaded into the program.
fn run_native(bin: &Path, args: &[&str]) -> (Output, isol_task_emu::Log) {
    isol_task_emu::run(&mut command(bin, args, &[("ISOL_INPROCESS_WATCHER", "0")])).unwrap()
}

/// chisol, built beside this test by `cargo build --workspace`.
fn chisol() -> PathBuf {
    let p = profile_dir().join("chisol");
    assert!(
        p.exists(),
        "{} missing: cargo build --workspace first",
        p.display()
    );
    p
}

/// "thread N: ..." lines.
fn thread_lines(t: &str) -> Vec<&str> {
    t.lines().filter(|l| l.starts_with("thread ")).collect()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn samples_build_with_pkg_config_and_run_in_process() {
    let _cpu1 = isol_lab::lock::host_cpu1().unwrap();
    let c = build("computation");
    let o = run(&c, &["-c", "1", "-n", "100000", "-r"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("primes below 100000: 9592"), "{t}");
    assert!(t.contains("\"watcher\":\"in-process watcher\""), "{t}");
    assert!(t.contains("\"registered\":true"), "{t}");
    // The tick cannot stop on a CPU outside nohz_full=, and the report says why.
    assert!(t.contains("not_nohz_full"), "{t}");
    // The breaks are known (counted by the watcher), never "unknown".
    assert!(breaks_of(&t, "computation").is_some(), "{t}");

    let o = run(&build("oneshot"), &["-c", "1", "-t", "0.5", "-e", "2"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("oneshot: events=2 requiesced=0 idle_requiesced=0"),
        "{t}"
    );

    let o = run(&build("userloop"), &["-c", "1", "-t", "0.3", "-S"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // Persistent: the breaks (ticks here) are counted, not fatal, and
    // the library names the last one whole (its chain leads with it).
    assert!(t.contains("userloop: iterations="), "{t}");
    if breaks_of(&t, "userloop").unwrap_or_else(|| panic!("{t}")) > 0 {
        let last = t
            .split("last=\"")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        let chain = t
            .lines()
            .find_map(|l| l.strip_prefix("userloop: chain: "))
            .unwrap_or_else(|| panic!("no chain: {t}"));
        assert!(chain.starts_with(&format!("{last}:")), "{t}");
    }
}

/// N of "WHO: breaks=N", None for anything else (such as "unknown").
fn breaks_of(t: &str, who: &str) -> Option<u64> {
    let l = t
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{who}: breaks=")))?;
    l.split_whitespace().next()?.parse().ok()
}

#[test]
fn errors_name_the_cause() {
    let _cpu1 = isol_lab::lock::host_cpu1().unwrap();
    let u = build("userloop");
    // Not pinned to one CPU.
    let o = run(&u, &["-t", "0.1"], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("pin it to exactly one isolated CPU"),
        "{}",
        text(&o)
    );
    // Without ISOL_ALLOW_UNISOLATED, CPU 1 here is not isolated.
    let o = Command::new(&u)
        .args(["-c", "1", "-t", "0.1"])
        .env("ISOL_SOCKET", "/nonexistent/isold.sock")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not isolated by the kernel"),
        "{}",
        text(&o)
    );
    // Unprivileged, no isold: strict mode has nobody to send the signal.
    let dir = u.parent().unwrap();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The checkout may sit where nobody cannot read (/root): give it a
    // copy of the library beside the binary, instead of the link into it.
    let lib = dir.join(env!("ISOL_SONAME"));
    std::fs::remove_file(&lib).unwrap();
    std::fs::copy(profile_dir().join("libisol.so"), &lib).unwrap();
    let libdir = dir.to_path_buf();
    let o = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&u)
        .args(["-c", "1", "-t", "0.1", "-s"])
        .env("ISOL_SOCKET", "/nonexistent/isold.sock")
        .env("ISOL_ALLOW_UNISOLATED", "1")
        .env("LD_LIBRARY_PATH", &libdir)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("strict mode needs a watcher"), "{t}");
    assert!(t.contains("isold is not reachable"), "{t}");
}

#[test]
fn threads_created_after_configure_inherit_as_the_configuration_says() {
    let _cpu1 = isol_lab::lock::host_cpu1().unwrap();
    let b = build("threads");
    // Stock: libisol's pthread_create hands the state over.
    for (inherit, want) in [
        ("conf", "configured=1 active=0 quiesce=0x1 inherit=1"),
        ("none", "configured=0 active=0 quiesce=0x0 inherit=0"),
        ("active", "configured=1 active=1 quiesce=0x1 inherit=3"),
    ] {
        let o = run(
            &b,
            &["-n", "4", "-I", inherit, "-c", "1"],
            &[("ISOL_INPROCESS_WATCHER", "0")],
        );
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        let lines = thread_lines(&t);
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines.iter().all(|l| l.ends_with(want)), "-I {inherit}: {t}");
    }
    // Native: the (imitated) kernel gives it at clone.
    for (inherit, want) in [
        ("conf", "configured=1 active=0 quiesce=0x1 inherit=1"),
        ("active", "configured=1 active=1 quiesce=0x1 inherit=3"),
    ] {
        let (o, log) = run_native(&b, &["-n", "3", "-I", inherit, "-c", "1"]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        let lines = thread_lines(&t);
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines.iter().all(|l| l.ends_with(want)), "-I {inherit}: {t}");
        // Each thread asked the kernel (CFG_GET from its own tid).
        let askers: std::collections::BTreeSet<u32> = log
            .calls
            .iter()
            .filter(|c| c.args[0] == 64)
            .map(|c| c.tid)
            .collect();
        assert!(askers.len() >= 3, "{log:?}");
    }
}

#[test]
fn chisol_configures_and_the_program_activates_what_it_inherited() {
    let _cpu1 = isol_lab::lock::host_cpu1().unwrap();
    let b = build("activate_inherited");
    let args = |p: &Path| -> Vec<String> {
        ["-q", "vmstat_sync", "-I", "conf", "--cpu", "1", "--"]
            .iter()
            .map(|s| s.to_string())
            .chain([p.display().to_string()])
            .collect()
    };
    let a = args(&b);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    // Stock: across exec in ISOL_TASK_CONFIG for this pid.
    let o = run(&chisol(), &a, &[("ISOL_INPROCESS_WATCHER", "0")]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("activated backend=2 quiesce=0x1 inherit=1 active=1"),
        "{t}"
    );
    // Without chisol, nothing was configured.
    let o = run(&b, &[], &[]);
    assert!(text(&o).contains("configured=0"), "{}", text(&o));
    // Native: chisol's PR_ISOL_CFG_SET survives exec in the kernel, the
    // program finds it with PR_ISOL_CFG_GET and activates it.
    let (o, log) = run_native(&chisol(), &a);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("activated backend=1 quiesce=0x1 inherit=1 active=1"),
        "{t}"
    );
    assert!(t.contains("task_isolation: Active state: quiesce"), "{t}");
    // chisol -i on the patched kernel: its features and its own state.
    let (o, _) = run_native(&chisol(), &["-i"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("backend: Native") && t.contains("quiesce: vmstat_sync"),
        "{t}"
    );
    assert!(
        t.contains("configured: none\nactive: none\nquiescing: none"),
        "{t}"
    );
    let pid = log.calls.iter().find(|c| c.args[0] == 65).unwrap().tid;
    assert!(
        log.calls
            .iter()
            .any(|c| c.tid == pid && c.args[0] == 67 && c.result == Ok(0)),
        "chisol's task did not activate after exec: {log:?}"
    );
}

#[test]
fn samples_run_through_the_native_backend() {
    let _cpu1 = isol_lab::lock::host_cpu1().unwrap();
    let (o, log) = run_native(&build("computation"), &["-c", "1", "-n", "50000", "-r"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("primes below 50000: 5133"), "{t}");
    assert!(t.contains("\"backend\":\"native\""), "{t}");
    assert!(log
        .calls
        .iter()
        .any(|c| c.args[0] == 67 && c.result == Ok(0)));
    let (o, _) = run_native(&build("oneshot"), &["-c", "1", "-t", "0.3", "-e", "2"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("oneshot: events=2 requiesced=0"), "{t}");
    let (o, log) = run_native(&build("userloop"), &["-c", "1", "-t", "0.2", "-S"]);
    assert!(o.status.success(), "{}", text(&o));
    // vmstat only: the sample asked for what the kernel supports.
    let set = log
        .calls
        .iter()
        .find(|c| c.args[0] == 65)
        .expect("no CFG_SET");
    assert_eq!(set.result, Ok(0), "{log:?}");
}
