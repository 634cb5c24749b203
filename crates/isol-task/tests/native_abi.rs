//! The native backend against an imitation of the task isolation patch
//! (crates/isol-task-emu: seccomp user notification answers prctl 63..67
//! and /proc/PID/task_isolation as the patch's documentation defines
//! them), and inheritance across exec on both backends.
//!
//! Helpers run as this test binary again with ISOL_EMU_ROLE naming what to
//! do. Needs seccomp user notification with ADDFD (5.14+: the host's 6.18).

use isol_task::{native, Backend, Config, Inherit, Quiesce};
use std::process::Command;

const ROLE: &str = "ISOL_EMU_ROLE";

fn helper(_test: &str, role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env(ROLE, role)
        // No isold, and no BPF loaded into the helpers.
        .env("ISOL_SOCKET", "/nonexistent/isold.sock")
        .env("ISOL_INPROCESS_WATCHER", "0");
    c
}

fn served() -> bool {
    let Ok(role) = std::env::var(ROLE) else {
        return false;
    };
    match role.as_str() {
        "api" => api_role(),
        "exec" => exec_role(),
        "activate_inherited" => activate_inherited_role(),
        r => panic!("unknown role {r}"),
    }
    true
}

fn errno(e: isol_task::Error) -> i32 {
    match e {
        isol_task::Error::Os { source, .. } => source.raw_os_error().unwrap_or(0),
        e => panic!("not an OS error: {e}"),
    }
}

fn pin_cpu1() {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(1, &mut set) };
    assert_eq!(
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) },
        0
    );
}

fn cfg(inherit: Inherit, oneshot: Quiesce) -> Config {
    Config {
        quiesce: Quiesce::VMSTAT,
        oneshot,
        inherit,
        lock_memory: false,
        tick_timeout_ms: 100,
        allow_unisolated: true,
        ..Default::default()
    }
}

/// Under the imitation: the whole API through the native backend.
fn api_role() {
    let p = native::Proof::check().expect("no /proc/self/task_isolation under the imitation");
    let f = isol_task::features().unwrap();
    assert_eq!(f.backend, Backend::Native);
    assert_eq!(f.native_features, Some(1));
    assert_eq!(f.quiesce, vec!["vmstat_sync"]);
    assert_eq!(isol_task::default_config().quiesce, Quiesce::VMSTAT);

    // Nothing configured yet: the kernel has no state for this task.
    assert!(isol_task::configuration().unwrap().is_none());
    assert!(!isol_task::is_active());
    assert_eq!(native::active(&p).unwrap(), None);
    assert_eq!(
        errno(native::activate(&p, 1).unwrap_err()),
        libc::EINVAL,
        "ACTIVATE_SET with nothing configured"
    );
    // The documented validation reaches the caller as EINVAL.
    assert_eq!(
        errno(native::set_quiesce(&p, 1, 2).unwrap_err()),
        libc::EINVAL
    );
    assert_eq!(
        errno(native::set_quiesce(&p, 2, 0).unwrap_err()),
        libc::EINVAL
    );
    assert_eq!(errno(native::set_inherit(&p, 2).unwrap_err()), libc::EINVAL);
    let flags = isol_task::abi::TaskIsolQuiesceControl {
        flags: 1,
        quiesce_mask: 1,
        ..Default::default()
    };
    // SAFETY: the imitation answers 65; the struct is live.
    let r = unsafe {
        libc::prctl(
            isol_task::abi::PR_ISOL_CFG_SET,
            isol_task::abi::I_CFG_FEAT,
            isol_task::abi::ISOL_F_QUIESCE,
            isol_task::abi::QUIESCE_CONTROL,
            &flags as *const _ as u64,
        )
    };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL)
    );

    // What the kernel cannot quiesce is refused, by name.
    let e = isol_task::configure(Config {
        quiesce: Quiesce::VMSTAT | Quiesce::LRU,
        ..cfg(Inherit::None, Quiesce::empty())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("lru_drain") && e.contains("vmstat_sync"), "{e}");

    // Configure: the kernel holds it, CFG_GET reads it back.
    isol_task::configure(cfg(Inherit::Conf, Quiesce::VMSTAT)).unwrap();
    let c = isol_task::configuration().unwrap().expect("configured");
    assert_eq!(c.quiesce, Quiesce::VMSTAT);
    assert_eq!(c.oneshot, Quiesce::VMSTAT);
    assert_eq!(c.inherit, Inherit::Conf);
    let k = native::cfg_get(&p).unwrap();
    assert_eq!(k.inherit_mask, Some(isol_task::abi::ISOL_INHERIT_CONF));
    let ps = native::proc_state(std::process::id()).unwrap();
    assert_eq!(
        (
            ps.configured.as_str(),
            ps.active.as_str(),
            ps.quiescing.as_str()
        ),
        ("quiesce", "none", "vmstat_sync")
    );

    // A thread created now has the configuration (clone, INHERIT_CONF),
    // not the activation.
    let (tc, ta) = std::thread::spawn(|| {
        (
            isol_task::configuration().unwrap().map(|c| c.quiesce),
            isol_task::is_active(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(tc, Some(Quiesce::VMSTAT));
    assert!(!ta);

    // Activate: PR_ISOL_ACTIVATE_SET, and the proc file says so.
    pin_cpu1();
    let r = isol_task::activate().unwrap();
    assert_eq!(r.backend, Backend::Native);
    assert!(r.steps.iter().any(|s| s.name == "native"), "{r:?}");
    assert!(isol_task::is_active());
    assert_eq!(native::active(&p).unwrap(), Some(1));
    assert_eq!(
        native::proc_state(std::process::id()).unwrap().active,
        "quiesce"
    );

    // INHERIT_ACTIVE: a child process and a thread are active too.
    isol_task::configure(cfg(Inherit::Active, Quiesce::empty())).unwrap();
    // SAFETY: the child only makes system calls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match (isol_task::configuration(), isol_task::is_active()) {
            (Ok(Some(c)), true) if c.inherit == Inherit::Active => 0,
            _ => 3,
        };
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(
        libc::WEXITSTATUS(st),
        0,
        "a forked child did not inherit the activation"
    );
    let ta = std::thread::spawn(isol_task::is_active).join().unwrap();
    assert!(ta, "a thread did not inherit the activation");

    isol_task::deactivate().unwrap();
    assert!(!isol_task::is_active());
    assert_eq!(native::active(&p).unwrap(), Some(0));

    // Nothing to quiesce (strict or LRU-only users): the kernel takes the
    // empty mask as a configuration, and activation is accepted.
    isol_task::configure(Config {
        quiesce: Quiesce::empty(),
        ..cfg(Inherit::None, Quiesce::empty())
    })
    .unwrap();
    assert_eq!(native::cfg_get(&p).unwrap().quiesce_mask, 0);
    isol_task::activate().unwrap();
    assert!(isol_task::is_active());
    isol_task::deactivate().unwrap();
    println!("API-ROLE-DONE");
}

/// Configure (INHERIT_CONF), then exec this binary to activate: the patch
/// keeps a task's state across exec; the stock backend passes it in the
/// environment for this pid.
fn exec_role() {
    isol_task::configure(cfg(Inherit::Conf, Quiesce::empty())).unwrap();
    use std::os::unix::process::CommandExt;
    let e = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "activate_inherited")
        .exec();
    panic!("exec: {e}");
}

/// The snippet of the patch's documentation: activate what was configured
/// before exec (by chisol, or by this program's previous image).
fn activate_inherited_role() {
    let c = isol_task::configuration()
        .unwrap()
        .expect("no configuration after exec");
    assert_eq!(c.quiesce, Quiesce::VMSTAT);
    assert_eq!(c.inherit, Inherit::Conf);
    pin_cpu1();
    let r = isol_task::activate().unwrap();
    assert!(isol_task::is_active());
    println!("ACTIVATED backend={:?}", r.backend);
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A plain main (harness = false): each helper runs its role on its main
/// thread; the tests run one after the other.
fn main() {
    if served() {
        return;
    }
    let t0 = std::time::Instant::now();
    native_backend_against_the_patch_imitation();
    println!("test native_backend_against_the_patch_imitation ... ok");
    configuration_survives_exec_and_the_program_activates_it();
    println!("test configuration_survives_exec_and_the_program_activates_it ... ok");
    println!(
        "test result: ok. 2 passed; 0 failed; finished in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
}

fn native_backend_against_the_patch_imitation() {
    let (o, log) = isol_task_emu::run(&mut helper(
        "native_backend_against_the_patch_imitation",
        "api",
    ))
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("API-ROLE-DONE"),
        "{}",
        text(&o)
    );
    // Every one of the five prctls was exercised, and each refused one
    // was refused by the imitation's rules (not by the library first).
    for op in 63..=67 {
        assert!(log.ops().contains(&op), "prctl {op} never issued: {log:?}");
    }
    let refused = log
        .calls
        .iter()
        .filter(|c| c.result == Err(libc::EINVAL))
        .count();
    assert!(refused >= 6, "{log:?}");
    assert!(
        log.proc_reads
            .iter()
            .any(|(_, t)| t.contains("Active state: quiesce")),
        "{log:?}"
    );
}

fn configuration_survives_exec_and_the_program_activates_it() {
    // Native (the imitation), then stock (this machine's kernel).
    let (o, log) = isol_task_emu::run(&mut helper(
        "configuration_survives_exec_and_the_program_activates_it",
        "exec",
    ))
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ACTIVATED backend=Native"),
        "{}",
        text(&o)
    );
    // The exec'd image found it with CFG_GET and activated it.
    let tid = log.calls.last().unwrap().tid;
    assert!(
        log.calls
            .iter()
            .any(|c| c.tid == tid && c.args[0] == 64 && c.result == Ok(0)),
        "{log:?}"
    );
    assert!(log
        .calls
        .iter()
        .any(|c| c.args[0] == 67 && c.result == Ok(0)));

    let o = helper(
        "configuration_survives_exec_and_the_program_activates_it",
        "exec",
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ACTIVATED backend=Stock"),
        "{}",
        text(&o)
    );
}
