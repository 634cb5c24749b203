//! Debian kernels for the lab: resolve the newest 6.12 package of a flavour,
//! `apt-get download` it and unpack it with `dpkg-deb -x` into the cache.
//!
//! Cache layout: `<cache>/kernels/<package name>/{boot,lib/modules}`. A
//! directory there is complete by construction (unpacked elsewhere, then
//! renamed into place), and fetches are serialized by `<cache>/kernels/.lock`.
//!
//! Which version: `ISOL_LAB_KERNEL_VERSION` (e.g. `6.12.117+deb12`) if set;
//! otherwise the newest one already cached for the flavour, so a cache hit
//! never runs apt; otherwise (or with `ISOL_LAB_KERNEL_REFRESH=1`) the newest
//! that apt lists.

use crate::lock::FileLock;
use anyhow::{bail, Context, Result};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Debian 6.12 kernel flavours the lab boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// `linux-image-6.12.*-cloud-amd64-unsigned`: NO_HZ_FULL, BTF, BPF LSM.
    Cloud,
    /// `linux-image-6.12.*-rt-amd64-unsigned`: PREEMPT_RT, osnoise, timerlat.
    Rt,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Cloud => "cloud",
            Flavour::Rt => "rt",
        }
    }

    /// Package name suffix after the version.
    fn suffix(self) -> &'static str {
        match self {
            Flavour::Cloud => "-cloud-amd64-unsigned",
            Flavour::Rt => "-rt-amd64-unsigned",
        }
    }

    fn package(self, version: &str) -> String {
        format!("linux-image-{version}{}", self.suffix())
    }

    /// The version part of a package name of this flavour.
    fn version_of(self, package: &str) -> Option<&str> {
        package
            .strip_prefix("linux-image-")?
            .strip_suffix(self.suffix())
            .filter(|v| v.starts_with("6.12."))
    }
}

impl std::str::FromStr for Flavour {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Flavour> {
        match s {
            "cloud" => Ok(Flavour::Cloud),
            "rt" => Ok(Flavour::Rt),
            _ => bail!("unknown kernel flavour {s:?} (expected cloud or rt)"),
        }
    }
}

/// An unpacked kernel package.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub flavour: Flavour,
    /// Debian package name.
    pub package: String,
    /// Version as in the package name, e.g. `6.12.117+deb12`.
    pub version: String,
    /// `uname -r` in the guest, e.g. `6.12.117+deb12-cloud-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the package.
    pub modules_dir: PathBuf,
    /// The kernel's `.config`.
    pub config: PathBuf,
}

impl Kernel {
    /// Whether the kernel config sets `option` (e.g. `CONFIG_NO_HZ_FULL`) to `y` or `m`.
    pub fn config_enabled(&self, option: &str) -> Result<bool> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        Ok(text
            .lines()
            .any(|l| l == format!("{option}=y") || l == format!("{option}=m")))
    }
}

/// Find or fetch a kernel of `flavour` in `cache`.
pub fn fetch(flavour: Flavour, cache: &Path) -> Result<Kernel> {
    let dir = cache.join("kernels");
    let wanted = std::env::var("ISOL_LAB_KERNEL_VERSION")
        .ok()
        .filter(|v| !v.is_empty());
    let refresh = std::env::var("ISOL_LAB_KERNEL_REFRESH").is_ok_and(|v| v == "1");

    // Fast path, no lock and no apt: the unpacked directory only appears by rename.
    let cached = match &wanted {
        Some(v) => Some(flavour.package(v)).filter(|p| dir.join(p).is_dir()),
        None if !refresh => newest_cached(flavour, &dir)?,
        None => None,
    };
    if let Some(package) = cached {
        return open(flavour, &dir.join(package));
    }

    let _lock = FileLock::exclusive(&dir.join(".lock"))?;
    let resolve = || match &wanted {
        Some(v) => Ok(flavour.package(v)),
        None => newest_available(flavour),
    };
    let mut package = resolve()?;
    let mut target = dir.join(&package);
    if !target.is_dir() {
        if let Err(first) = download(&package, &dir, &target) {
            // Stale lists name a .deb the mirror no longer has: refresh once.
            if !apt_update_once()? {
                return Err(first);
            }
            package = resolve()?;
            target = dir.join(&package);
            if !target.is_dir() {
                download(&package, &dir, &target).context(first)?;
            }
        }
    }
    open(flavour, &target)
}

/// apt-get update unless this process already did; returns whether it ran.
fn apt_update_once() -> Result<bool> {
    let mut updated = APT_UPDATED.lock().unwrap_or_else(|e| e.into_inner());
    if *updated {
        return Ok(false);
    }
    run(
        Command::new("apt-get").args(["update", "-q"]),
        "apt-get update",
    )?;
    *updated = true;
    Ok(true)
}

fn newest_cached(flavour: Flavour, dir: &Path) -> Result<Option<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if flavour.version_of(&name).is_some() && dir.join(&name).is_dir() {
            names.push(name);
        }
    }
    Ok(names.into_iter().max_by(|a, b| version_cmp(a, b)))
}

/// apt-get update at most once per process.
static APT_UPDATED: Mutex<bool> = Mutex::new(false);

fn newest_available(flavour: Flavour) -> Result<String> {
    let mut names = apt_search(flavour)?;
    if names.is_empty() && apt_update_once()? {
        names = apt_search(flavour)?;
    }
    names
        .into_iter()
        .max_by(|a, b| version_cmp(a, b))
        .with_context(|| {
            format!(
                "no linux-image-6.12.*{} package in apt's lists (after apt-get update); \
                 is bookworm-security / bookworm-backports in sources.list?",
                flavour.suffix()
            )
        })
}

fn apt_search(flavour: Flavour) -> Result<Vec<String>> {
    let pattern = format!("^linux-image-6\\.12\\..*{}$", flavour.suffix());
    let out = run(
        Command::new("apt-cache").args(["search", "--names-only", &pattern]),
        "apt-cache search",
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| flavour.version_of(name).is_some())
        .map(str::to_owned)
        .collect())
}

fn download(package: &str, dir: &Path, target: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Same file system as the target, so the final rename is atomic.
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a temporary directory in {}", dir.display()))?;
    run(
        Command::new("apt-get")
            // The default sandbox user _apt cannot write into our cache.
            .args(["download", "-q", "-o", "APT::Sandbox::User=root", package])
            .current_dir(tmp.path()),
        &format!("apt-get download {package}"),
    )?;
    let deb = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} produced no .deb"))?;
    let root = tmp.path().join("root");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        &format!("dpkg-deb -x {}", deb.display()),
    )?;
    std::fs::rename(&root, target)
        .with_context(|| format!("moving the unpacked kernel to {}", target.display()))?;
    Ok(())
}

fn open(flavour: Flavour, root: &Path) -> Result<Kernel> {
    let package = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = flavour
        .version_of(&package)
        .with_context(|| {
            format!(
                "{}: not a {} kernel package",
                root.display(),
                flavour.name()
            )
        })?
        .to_owned();
    let boot = root.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_owned();
    let modules_dir = root.join("lib/modules").join(&release);
    let config = boot.join(format!("config-{release}"));
    Ok(Kernel {
        flavour,
        package,
        version,
        release,
        vmlinuz,
        modules_dir,
        config,
    })
}

/// Run a command, returning its stdout; the error names the tool to install.
fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("{program} not found: the lab needs Debian's apt and dpkg")
        } else {
            anyhow::Error::new(e).context(format!("running {what}"))
        }
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Natural order: digit runs compare as numbers (6.12.117 > 6.12.99).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_version_order() {
        assert_eq!(
            version_cmp("6.12.117+deb12", "6.12.99+deb12"),
            Ordering::Greater
        );
        assert_eq!(version_cmp("6.12.9+deb12", "6.12.10+deb12"), Ordering::Less);
        assert_eq!(version_cmp("6.12.10", "6.12.10"), Ordering::Equal);
        let mut v = [
            "6.12.107+deb12",
            "6.12.117+deb12",
            "6.12.111+deb12",
            "6.12.9+deb12",
        ];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v.last(), Some(&"6.12.117+deb12"));
    }

    #[test]
    fn package_names() {
        let p = Flavour::Cloud.package("6.12.117+deb12");
        assert_eq!(p, "linux-image-6.12.117+deb12-cloud-amd64-unsigned");
        assert_eq!(Flavour::Cloud.version_of(&p), Some("6.12.117+deb12"));
        assert_eq!(Flavour::Rt.version_of(&p), None);
        assert_eq!(
            Flavour::Rt.version_of("linux-image-6.1.0-30-rt-amd64-unsigned"),
            None
        );
    }
}
