//! The lab's kernel matrix: each series, cloud and rt flavours, boots as the
//! quiet CPU 1 machine, isolates what its config allows (nohz_full only
//! where NO_HZ_FULL is built in: not on 5.10), runs `isol info`, and hands
//! a megabyte of output to the host over the virtio port (on 5.10 and 6.1
//! through modules loaded by /init).

use isol_lab::{Channel, Flavour, KernelSpec, Lab, Series};
use std::time::Instant;

/// Whether Debian builds `spec` with NO_HZ_FULL (checked against the
/// package's config below, so a change in Debian's configs shows up here).
fn has_nohz_full(spec: KernelSpec) -> bool {
    spec.series != Series::V5_10
}

fn boot_quiet_cpu1(spec: KernelSpec) {
    let lab = Lab::new().unwrap().kernel(spec).quiet_cpu1();
    let kernel = lab.fetch_kernel().unwrap();
    let nohz_full = kernel.config_enabled("CONFIG_NO_HZ_FULL").unwrap();
    assert_eq!(
        nohz_full,
        has_nohz_full(spec),
        "{}: CONFIG_NO_HZ_FULL is not as the lab expects",
        kernel.package
    );
    assert!(kernel.modules_dir.join("modules.builtin").is_file());

    let started = Instant::now();
    let out = lab.run_scenario("matrix").unwrap();
    eprintln!("{}", out.summary());
    out.ensure_success().unwrap();
    assert_eq!(out.kernel, spec);
    assert_eq!(out.output_channel, Some(Channel::Virtio), "{}", out.console);

    let release = out.section("uname").unwrap().text;
    assert_eq!(release, out.kernel_release);
    let prefix = match spec.series {
        Series::V5_10 => "5.10.0-",
        Series::V6_1 => "6.1.0-",
        Series::V6_12 => "6.12.",
    };
    assert!(release.starts_with(prefix), "{release}");
    assert!(
        release.ends_with(&format!("-{}-amd64", spec.flavour)),
        "{release}"
    );

    assert_eq!(out.section("isolated").unwrap().text, "1");
    let sysfs_nohz = out.section("nohz_full").unwrap();
    let info = out.json_section("info").unwrap();
    assert_eq!(info["kernel"]["release"], release.as_str());
    assert_eq!(info["cpus"]["isolated"], "1", "{}", info["cpus"]);
    assert_eq!(info["cpus"]["domain"], "1", "{}", info["cpus"]);
    assert_eq!(info["features"]["nohz_full_support"], nohz_full);
    if nohz_full {
        assert!(out.cmdline.contains("nohz_full=1"), "{}", out.cmdline);
        assert_eq!(sysfs_nohz.rc, 0);
        assert_eq!(sysfs_nohz.text, "1");
        assert_eq!(info["sysfs"]["nohz_full"], "1");
        assert_eq!(info["cpus"]["nohz_full"], "1");
    } else {
        assert!(!out.cmdline.contains("nohz_full"), "{}", out.cmdline);
        assert_ne!(sysfs_nohz.rc, 0, "nohz_full in sysfs without NO_HZ_FULL");
        assert!(info["sysfs"]["nohz_full"].is_null(), "{}", info["sysfs"]);
    }

    let bulk = out.section("bulk").unwrap();
    assert_eq!(bulk.rc, 0);
    let lines: Vec<&str> = bulk.text.lines().collect();
    assert_eq!(lines.len(), 20000, "bulk output cut short");
    assert!(lines[19999].starts_with("20000 xxx"), "{}", lines[19999]);
    eprintln!(
        "{spec}: whole run {:.1}s (boot {:.1}s)",
        started.elapsed().as_secs_f64(),
        out.boot_time.as_secs_f64()
    );
}

#[test]
fn v5_10_cloud_quiet_cpu1() {
    boot_quiet_cpu1(KernelSpec::new(Series::V5_10, Flavour::Cloud));
}

#[test]
fn v6_1_cloud_quiet_cpu1() {
    boot_quiet_cpu1(KernelSpec::new(Series::V6_1, Flavour::Cloud));
}

#[test]
fn v6_12_cloud_quiet_cpu1() {
    boot_quiet_cpu1(KernelSpec::new(Series::V6_12, Flavour::Cloud));
}

// The rt flavours boot as fast; their packages are the larger downloads.
#[test]
fn v5_10_rt_quiet_cpu1() {
    boot_quiet_cpu1(KernelSpec::new(Series::V5_10, Flavour::Rt));
}

#[test]
fn v6_1_rt_quiet_cpu1() {
    boot_quiet_cpu1(KernelSpec::new(Series::V6_1, Flavour::Rt));
}

#[test]
fn v6_12_rt_quiet_cpu1() {
    boot_quiet_cpu1(KernelSpec::new(Series::V6_12, Flavour::Rt));
}
