//! The Debian packages as a user gets them: built by scripts/deb.sh,
//! checked by lintian, installed with apt in a clean Debian 12 chroot
//! (debootstrap, cached as a tarball under packaging/cache), used there
//! (man page, --version, doctor, bash completion, a C sample built with
//! pkg-config against the installed libisol, the isold unit), then purged:
//! the chroot's file list must be what it was before.
//!
//! Needs root (chroot, mounts) and, on the first run, Debian's mirror
//! (ISOL_PKG_MIRROR, default deb.debian.org). ISOL_PKG_CACHE moves the cache.

use clap::CommandFactory;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const SUITE: &str = "bookworm";
/// What the checks need besides minbase, and the packages' dependencies,
/// so that installing needs no download (procps: isold.service reloads
/// with /bin/kill, present on any installed system).
const INCLUDE: &str =
    "bash-completion,gcc,libc6-dev,libelf-dev,libelf1,man-db,pkgconf,procps,systemd,zlib1g-dev";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let t = text(&o);
    assert!(o.status.success(), "{cmd:?} failed ({}):\n{t}", o.status);
    t
}

/// Lap times in the test's log: where the time goes.
struct Clock(Instant);
impl Clock {
    fn lap(&mut self, what: &str) {
        eprintln!("deb test: {what}: {:.0} s", self.0.elapsed().as_secs_f64());
        self.0 = Instant::now();
    }
}

/// The pristine chroot as a tarball, made once with debootstrap; a
/// `.key` file beside it names what it was made with, so a change of
/// INCLUDE makes a new one.
fn pristine_tarball() -> PathBuf {
    let cache = std::env::var_os("ISOL_PKG_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("packaging/cache"));
    fs::create_dir_all(&cache).unwrap();
    // Concurrent runs wait for one debootstrap instead of racing.
    let lock = fs::File::create(cache.join(".lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let tarball = cache.join(format!("{SUITE}-minbase.tar.zst"));
    let key_file = cache.join(format!("{SUITE}-minbase.key"));
    let key = format!("{SUITE} minbase {INCLUDE}\n");
    if tarball.exists() && fs::read_to_string(&key_file).ok().as_deref() == Some(&key) {
        return tarball;
    }
    let mirror = std::env::var("ISOL_PKG_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned());
    let tmp = tempfile::Builder::new()
        .prefix("debootstrap-")
        .tempdir_in(&cache)
        .unwrap();
    let root = tmp.path().join("root");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
        .arg(&root)
        .arg(&mirror));
    // The downloaded .debs are installed already; 90 MB less to unpack.
    for e in fs::read_dir(root.join("var/cache/apt/archives")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "deb") {
            fs::remove_file(p).unwrap();
        }
    }
    let part = tarball.with_extension("part");
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "--zstd", "-cf"])
        .arg(&part)
        .arg("."));
    fs::rename(&part, &tarball).unwrap();
    fs::write(&key_file, key).unwrap();
    tarball
}

/// A chroot unpacked from the pristine tarball. Dropping it unmounts what
/// was mounted (also when an assertion failed) and removes the tree, unless
/// something stays mounted: then the tree is left where it is and named.
struct Chroot {
    dir: Option<tempfile::TempDir>,
    mounts: Vec<PathBuf>,
}

impl Chroot {
    fn new(tarball: &Path, under: &Path) -> Chroot {
        fs::create_dir_all(under).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("chroot-")
            .tempdir_in(under)
            .unwrap();
        run(Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .args(["--numeric-owner", "--zstd", "-xf"])
            .arg(tarball));
        Chroot {
            dir: Some(dir),
            mounts: Vec::new(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    fn mount(&mut self, args: &[&str], at: &str) {
        let target = self.root().join(at);
        fs::create_dir_all(&target).unwrap();
        run(Command::new("mount").args(args).arg(&target));
        self.mounts.push(target);
    }

    /// /dev for the maintainer scripts and programs (their /dev/null).
    fn mount_dev(&mut self) {
        self.mount(&["--bind", "/dev"], "dev");
    }

    /// /proc and /sys (with tracefs: the in-process watcher) for isol and
    /// the C sample.
    fn mount_kernel_fs(&mut self) {
        self.mount(&["-t", "proc", "proc"], "proc");
        self.mount(&["-t", "sysfs", "sysfs"], "sys");
        self.mount(&["-t", "tracefs", "tracefs"], "sys/kernel/tracing");
    }

    fn unmount_all(&mut self) -> bool {
        let mut ok = true;
        while let Some(m) = self.mounts.pop() {
            let done = Command::new("umount")
                .arg(&m)
                .status()
                .is_ok_and(|s| s.success())
                || Command::new("umount")
                    .arg("-l")
                    .arg(&m)
                    .status()
                    .is_ok_and(|s| s.success());
            ok &= done;
        }
        ok
    }

    /// `sh -c script` in the chroot with a clean environment.
    fn sh(&self, script: &str) -> Output {
        Command::new("chroot")
            .arg(self.root())
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C",
                "DEBIAN_FRONTEND=noninteractive",
                "/bin/sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
    }

    fn sh_ok(&self, script: &str) -> String {
        let o = self.sh(script);
        let t = text(&o);
        assert!(
            o.status.success(),
            "in the chroot: {script}\nfailed ({}):\n{t}",
            o.status
        );
        t
    }

    /// Every path in the chroot but those that change by merely using apt,
    /// dpkg, man and systemd (logs, caches such as man's formatted pages,
    /// dpkg's and apt's own state, /run, /tmp); dpkg's record of our
    /// packages is checked on its own.
    fn files(&self) -> BTreeSet<String> {
        const VOLATILE: &[&str] = &[
            "run/",
            "tmp/",
            "var/log/",
            "var/cache/apt/",
            "var/cache/debconf/",
            "var/cache/man/",
            "var/lib/apt/",
            "var/lib/dpkg/",
        ];
        let out = run(Command::new("find")
            .arg(self.root())
            .args(["-xdev", "-printf", "%P\\n"]));
        out.lines()
            .filter(|p| !p.is_empty() && !VOLATILE.iter().any(|v| p.starts_with(v)))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        if !self.unmount_all() {
            let dir = self.dir.take().unwrap().keep();
            eprintln!(
                "deb test: could not unmount everything under {}: left in place",
                dir.display()
            );
        }
    }
}

#[test]
fn debs_install_work_and_purge_cleanly_in_a_debian12_chroot() {
    assert_eq!(
        fs::metadata("/proc/self").unwrap().uid(),
        0,
        "this test needs root (debootstrap, chroot, mounts)"
    );
    let ws = workspace();
    let mut clock = Clock(Instant::now());

    // scripts/deb.sh as by hand: the .debs in target/debian, cargo's build
    // of them in target/deb-cargo (a developer's run makes this one warm).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| ws.join(t))
        .unwrap_or_else(|| ws.join("target"));
    let out = run(Command::new("bash").arg(ws.join("scripts/deb.sh")));
    // How much cargo had to build explains the time this step took.
    let compiled = out.lines().filter(|l| l.contains("Compiling")).count();
    let finished = out.lines().find(|l| l.contains("Finished")).unwrap_or("");
    eprintln!(
        "deb test: cargo compiled {compiled} crates; {}",
        finished.trim()
    );
    let version = env!("CARGO_PKG_VERSION");
    let debs: Vec<PathBuf> = ["isol", "libisol0", "libisol-dev"]
        .iter()
        .map(|p| target.join(format!("debian/{p}_{version}_amd64.deb")))
        .collect();
    for d in &debs {
        assert!(d.exists(), "{} not built:\n{out}", d.display());
    }
    clock.lap("scripts/deb.sh");

    let lintian = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info"])
        .args(&debs)
        .output()
        .unwrap();
    let report = text(&lintian);
    eprintln!("lintian:\n{report}");
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    assert!(
        lintian.status.success(),
        "lintian failed ({}):\n{report}",
        lintian.status
    );
    clock.lap("lintian");

    let tarball = pristine_tarball();
    clock.lap("pristine chroot (debootstrap once, then cached)");
    let mut ch = Chroot::new(&tarball, &target.join("deb-chroot"));
    let before = ch.files();
    let incoming = ch.root().join("tmp/debs");
    fs::create_dir_all(&incoming).unwrap();
    for d in &debs {
        fs::copy(d, incoming.join(d.file_name().unwrap())).unwrap();
    }
    clock.lap("chroot unpacked");

    ch.mount_dev();
    // As the README says, with apt; every dependency is in the chroot, so
    // nothing is downloaded. No pty for dpkg: the chroot has no /dev/pts.
    ch.sh_ok("apt-get install -y -o Dpkg::Use-Pty=0 /tmp/debs/*.deb");
    clock.lap("apt install");

    // isold's unit. `systemctl cat` refuses to run in a chroot; systemd's
    // offline tools show where it finds the unit, that it is disabled and
    // that it is valid (its commands and its man page exist).
    let unit = ch.sh_ok("systemd-analyze cat-config systemd/system/isold.service");
    assert!(
        unit.starts_with("# /usr/lib/systemd/system/isold.service\n")
            && unit.contains("ExecStart=/usr/bin/isol serve --config /etc/isol/isold.toml"),
        "{unit}"
    );
    let files = ch.sh_ok("systemctl list-unit-files isold.service");
    assert!(
        files.lines().any(|l| l
            .split_whitespace()
            .take(2)
            .eq(["isold.service", "disabled"])),
        "{files}"
    );
    ch.sh_ok("systemd-analyze verify isold.service");
    assert!(!ch
        .root()
        .join("etc/systemd/system/multi-user.target.wants/isold.service")
        .exists());
    let readme = ch.sh_ok("cat /usr/share/doc/isol/README.Debian");
    assert!(readme.contains("systemctl enable --now isold"), "{readme}");

    // A page per subcommand; isol-watch's lists each of watch's options.
    let isol = isol_cli::Cli::command();
    for sub in isol.get_subcommands() {
        ch.sh_ok(&format!("man -w isol-{}", sub.get_name()));
    }
    ch.sh_ok("man -w isol && man -w chisol");
    let page = ch.sh_ok("MANWIDTH=100 man -P cat isol-watch");
    assert!(page.contains("isol-watch"), "{page}");
    let watch = isol.find_subcommand("watch").unwrap();
    let documented = watch.get_arguments().filter(|a| !a.is_hide_set());
    for long in documented.filter_map(|a| a.get_long()) {
        assert!(
            page.contains(&format!("--{long}")),
            "--{long} not in:\n{page}"
        );
    }

    // bash-completion loads isol's completion on demand, as at a prompt.
    fs::write(
        ch.root().join("tmp/complete.bash"),
        r#". /usr/share/bash-completion/bash_completion
_completion_loader isol
f=$(complete -p isol | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=(isol wa); COMP_CWORD=1; COMP_LINE="isol wa"; COMP_POINT=7
"$f" isol wa isol
printf '%s\n' "${COMPREPLY[@]}"
"#,
    )
    .unwrap();
    let words = ch.sh_ok("bash /tmp/complete.bash");
    assert_eq!(
        words.split_whitespace().collect::<Vec<_>>(),
        ["watch"],
        "isol wa<TAB>"
    );
    clock.lap("unit, man pages, completion");

    ch.mount_kernel_fs();
    let v = ch.sh_ok("isol --version");
    assert_eq!(v.trim(), format!("isol {version}"));
    // Ready (0) or not (1), each missing feature named with its fix.
    let doctor = ch.sh("isol doctor");
    let dt = text(&doctor);
    match doctor.status.code() {
        Some(0) => assert!(dt.contains("ready: isol can capture"), "{dt}"),
        Some(1) => assert!(dt.contains("isol: missing") && dt.contains("fix:"), "{dt}"),
        _ => panic!("isol doctor: {}\n{dt}", doctor.status),
    }

    // A libisol sample, built with pkg-config against the installed
    // library (dynamically, and statically with Libs.private), then run.
    let capi = ws.join("crates/isol-capi/examples");
    let src = ch.root().join("tmp/capi");
    fs::create_dir_all(&src).unwrap();
    for f in ["computation.c", "common.h"] {
        fs::copy(capi.join(f), src.join(f)).unwrap();
    }
    ch.sh_ok(
        "cd /tmp/capi && cc -O2 -Wall -Werror -o computation computation.c \
         $(pkg-config --cflags --libs isol)",
    );
    let ldd = ch.sh_ok("ldd /tmp/capi/computation");
    assert!(
        ldd.lines().any(
            |l| l.contains("libisol.so.0 => /lib/x86_64-linux-gnu/libisol.so.0")
                || l.contains("libisol.so.0 => /usr/lib/x86_64-linux-gnu/libisol.so.0")
        ),
        "{ldd}"
    );
    let sample = "ISOL_SOCKET=/nonexistent/isold.sock ISOL_ALLOW_UNISOLATED=1 \
                  /tmp/capi/computation -c 1 -n 100000 -r";
    let t = ch.sh_ok(sample);
    assert!(t.contains("primes below 100000: 9592"), "{t}");
    assert!(t.contains("\"registered\":true"), "{t}");
    assert!(t.contains("computation: breaks="), "{t}");
    ch.sh_ok(
        "cd /tmp/capi && cc -O2 -o computation computation.c $(pkg-config --cflags isol) \
         $(pkg-config --variable=libdir isol)/libisol.a \
         -Wl,--as-needed $(pkg-config --static --libs isol)",
    );
    let ldd = ch.sh_ok("ldd /tmp/capi/computation");
    assert!(
        !ldd.contains("libisol"),
        "static link needs libisol.so:\n{ldd}"
    );
    let t = ch.sh_ok(sample);
    assert!(t.contains("primes below 100000: 9592"), "{t}");
    clock.lap("isol, doctor, C sample");

    ch.sh_ok("apt-get purge -y -o Dpkg::Use-Pty=0 isol libisol0 libisol-dev");
    assert!(
        ch.unmount_all(),
        "unmounting the chroot's /proc, /sys, /dev"
    );
    let after = ch.files();
    let added: Vec<_> = after.difference(&before).collect();
    let removed: Vec<_> = before.difference(&after).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "purge left the chroot changed: added {added:#?}, removed {removed:#?}"
    );
    let left = ch.sh_ok("ls /var/lib/dpkg/info");
    assert!(
        !left
            .lines()
            .any(|f| f.starts_with("isol.") || f.starts_with("libisol")),
        "{left}"
    );
    clock.lap("purge");
}
