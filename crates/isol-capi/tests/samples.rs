//! The C samples build against the generated isol.h and libisol.so via
//! pkg-config, and run on this (non-isolated) machine with the in-process
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.c"));
    let out = tempfile::Builder::new()
        .prefix("isol-capi-")
        .tempdir()
        .unwrap()
        .keep()
        .join(name);
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .status()
        .unwrap();
    assert!(st.success(), "building {name}");
    out
}

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args)
        // No isold here: the library's in-process watcher serves (root).
        .env("ISOL_SOCKET", "/nonexistent/isold.sock")
        .env("ISOL_ALLOW_UNISOLATED", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
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
    let c = build("computation");
    let o = run(&c, &["-c", "1", "-n", "100000", "-r"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("primes below 100000: 9592"), "{t}");
    assert!(t.contains("\"watcher\":\"in-process watcher\""), "{t}");
    assert!(t.contains("\"registered\":true"), "{t}");
    // The tick cannot stop on a CPU outside nohz_full=, and the report says why.
    assert!(t.contains("not_nohz_full"), "{t}");
    assert!(t.contains("computation: breaks="), "{t}");

    let o = run(&build("oneshot"), &["-c", "1", "-t", "0.5", "-e", "2"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("oneshot: events=2 requiesce_actions=0"), "{t}");

    let o = run(&build("userloop"), &["-c", "1", "-t", "0.3", "-S"], &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // Persistent: the breaks (ticks here) are counted, not fatal.
    assert!(t.contains("userloop: iterations="), "{t}");
}

#[test]
fn errors_name_the_cause() {
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
    // copy of the library beside the binary.
    std::fs::copy(profile_dir().join("libisol.so"), dir.join("libisol.so")).unwrap();
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
