//! Debian kernels for the lab: a [`KernelSpec`] (series × flavour) resolves
//! to the newest package of that kind, `apt-get download`ed and unpacked
//! with `dpkg-deb -x` into the cache.
//!
//! | series | Debian | package | apt |
//! | --- | --- | --- | --- |
//! | 5.10 | 11 bullseye | `linux-image-5.10.0-N-{,cloud-,rt-}amd64-unsigned` | private state under `<cache>/apt/bullseye` |
//! | 6.1 | 12 bookworm | `linux-image-6.1.0-N-{,cloud-,rt-}amd64-unsigned` | the machine's |
//! | 6.12 | 12 bookworm-security | `linux-image-6.12.N+deb12-{,cloud-,rt-}amd64-unsigned` | the machine's |
//!
//! bullseye is not in the machine's sources (nor should it be): its package
//! lists live in a private apt state (own sources.list, lists and cache
//! directories) created on demand, so the machine's apt configuration and
//! caches stay untouched.
//!
//! Cache layout: `<cache>/kernels/<package name>/{boot,lib/modules}`. A
//! directory there is complete by construction (unpacked elsewhere, then
//! renamed into place), and fetches are serialized by `<cache>/kernels/.lock`.
//!
//! Which version: the entry of `ISOL_LAB_KERNEL_VERSION` for the series, if
//! any (a list, e.g. `5.10.0-30,6.12.117+deb12`: each entry pins the series
//! its form names, the others stay unpinned); otherwise the newest one
//! already cached for the series and flavour, so a cache hit never runs apt;
//! otherwise (or with `ISOL_LAB_KERNEL_REFRESH=1`, which also updates the
//! private state's lists) the newest that apt lists.

use crate::lock::FileLock;
use anyhow::{bail, Context, Result};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A Debian kernel line (one upstream stable series) the lab boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Series {
    /// Debian 11 (bullseye): no NO_HZ_FULL in any flavour, no ipi/csd
    /// tracepoints.
    V5_10,
    /// Debian 12 (bookworm): NO_HZ_FULL in cloud and rt, no ipi/csd
    /// tracepoints.
    V6_1,
    /// bookworm-security's 6.12: NO_HZ_FULL, ipi/csd tracepoints.
    V6_12,
}

impl Series {
    pub const ALL: [Series; 3] = [Series::V5_10, Series::V6_1, Series::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Series::V5_10 => "5.10",
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// Whether `v` is a package version of this series (`5.10.0-32`,
    /// `6.1.0-57`, `6.12.118+deb12`); `uname -r` is it plus the flavour.
    pub fn is_version(self, v: &str) -> bool {
        let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match self {
            Series::V5_10 => v.strip_prefix("5.10.0-").is_some_and(number),
            Series::V6_1 => v.strip_prefix("6.1.0-").is_some_and(number),
            Series::V6_12 => v
                .strip_prefix("6.12.")
                .and_then(|r| r.split_once("+deb"))
                .is_some_and(|(n, d)| number(n) && number(d)),
        }
    }

    /// apt-cache search regex for the version part (narrowed by `is_version`).
    fn version_regex(self) -> &'static str {
        match self {
            Series::V5_10 => "5\\.10\\.0-[0-9]+",
            Series::V6_1 => "6\\.1\\.0-[0-9]+",
            Series::V6_12 => "6\\.12\\.[0-9]+\\+deb[0-9]+",
        }
    }

    /// The Debian suite that has the series when the machine's apt does not.
    fn private_suite(self) -> Option<&'static str> {
        match self {
            Series::V5_10 => Some("bullseye"),
            Series::V6_1 | Series::V6_12 => None,
        }
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Series {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Series> {
        Series::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .with_context(|| format!("unknown kernel series {s:?} (expected 5.10, 6.1 or 6.12)"))
    }
}

/// Debian kernel flavours (the part of `uname -r` after the version).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    /// `-cloud-amd64`: few drivers (boots fastest under QEMU), BTF, BPF LSM;
    /// NO_HZ_FULL from 6.1 on.
    Cloud,
    /// `-rt-amd64`: PREEMPT_RT; osnoise and timerlat from 6.1 on.
    Rt,
    /// `-amd64`: the generic flavour with every driver.
    Amd64,
}

impl Flavour {
    pub const ALL: [Flavour; 3] = [Flavour::Cloud, Flavour::Rt, Flavour::Amd64];

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Cloud => "cloud",
            Flavour::Rt => "rt",
            Flavour::Amd64 => "amd64",
        }
    }

    /// Package name suffix after the version.
    fn suffix(self) -> &'static str {
        match self {
            Flavour::Cloud => "-cloud-amd64-unsigned",
            Flavour::Rt => "-rt-amd64-unsigned",
            Flavour::Amd64 => "-amd64-unsigned",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Flavour {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Flavour> {
        Flavour::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .with_context(|| format!("unknown kernel flavour {s:?} (expected cloud, rt or amd64)"))
    }
}

/// Which kernel a lab VM boots: a series and a flavour, e.g. 5.10 cloud.
/// Written `SERIES-FLAVOUR` (`5.10-cloud`, `6.1-rt`, `6.12-amd64`); a bare
/// series means its cloud flavour, a bare flavour the 6.12 series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelSpec {
    pub series: Series,
    pub flavour: Flavour,
}

impl KernelSpec {
    /// What a lab boots unless told otherwise: 6.12 cloud.
    pub const DEFAULT: KernelSpec = KernelSpec::new(Series::V6_12, Flavour::Cloud);

    pub const fn new(series: Series, flavour: Flavour) -> KernelSpec {
        KernelSpec { series, flavour }
    }

    /// Every series × flavour the lab knows.
    pub fn all() -> impl Iterator<Item = KernelSpec> {
        Series::ALL
            .into_iter()
            .flat_map(|s| Flavour::ALL.into_iter().map(move |f| KernelSpec::new(s, f)))
    }

    /// Debian package name for `version` (e.g. `6.1.0-57`).
    pub fn package(self, version: &str) -> String {
        format!("linux-image-{version}{}", self.flavour.suffix())
    }

    /// The version part of a package name of this series and flavour.
    pub fn version_of(self, package: &str) -> Option<&str> {
        package
            .strip_prefix("linux-image-")?
            .strip_suffix(self.flavour.suffix())
            .filter(|v| self.series.is_version(v))
    }

    fn apt(self, cache: &Path) -> Apt {
        match self.series.private_suite() {
            None => Apt::Machine,
            Some(suite) => Apt::Private {
                suite,
                dir: cache.join("apt").join(suite),
            },
        }
    }
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec::DEFAULT
    }
}

/// A flavour alone means the 6.12 series (what the lab booted before it
/// had series), so `Lab::kernel(Flavour::Rt)` keeps its meaning.
impl From<Flavour> for KernelSpec {
    fn from(flavour: Flavour) -> KernelSpec {
        KernelSpec::new(KernelSpec::DEFAULT.series, flavour)
    }
}

impl From<Series> for KernelSpec {
    fn from(series: Series) -> KernelSpec {
        KernelSpec::new(series, KernelSpec::DEFAULT.flavour)
    }
}

impl fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.series, self.flavour)
    }
}

impl std::str::FromStr for KernelSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<KernelSpec> {
        let err = || {
            format!(
                "unknown kernel {s:?}: expected SERIES-FLAVOUR (series 5.10, 6.1, 6.12; \
                 flavour cloud, rt, amd64), e.g. 5.10-cloud"
            )
        };
        if let Some((series, flavour)) = s.split_once('-') {
            return Ok(KernelSpec::new(
                series.parse().with_context(err)?,
                flavour.parse().with_context(err)?,
            ));
        }
        if let Ok(series) = s.parse::<Series>() {
            return Ok(series.into());
        }
        s.parse::<Flavour>().map(Into::into).with_context(err)
    }
}

/// An unpacked kernel package.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub spec: KernelSpec,
    /// Debian package name.
    pub package: String,
    /// Version as in the package name, e.g. `6.12.117+deb12` or `5.10.0-32`.
    pub version: String,
    /// `uname -r` in the guest, e.g. `6.12.117+deb12-cloud-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the package (no modules.dep: see
    /// [`Kernel::modules`]).
    pub modules_dir: PathBuf,
    /// The kernel's `.config`.
    pub config: PathBuf,
}

impl Kernel {
    /// Whether the kernel config sets `option` (e.g. `CONFIG_NO_HZ_FULL`) to `y` or `m`.
    pub fn config_enabled(&self, option: &str) -> Result<bool> {
        Ok(matches!(
            self.config_value(option)?.as_deref(),
            Some("y" | "m")
        ))
    }

    /// The value of `option` in the kernel config (`y`, `m`, `250`, ...),
    /// None when it is not set.
    pub fn config_value(&self, option: &str) -> Result<Option<String>> {
        let text = std::fs::read_to_string(&self.config)
            .with_context(|| format!("reading {}", self.config.display()))?;
        let prefix = format!("{option}=");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim_matches('"').to_owned()))
    }

    /// The loadable modules needed for `names` (module names such as
    /// `virtio_console` or `kvm-amd`), dependencies first, as `insmod` must
    /// load them. Built-in ones are left out, so the list may be empty.
    pub fn modules(&self, names: &[&str]) -> Result<Vec<Module>> {
        crate::modules::resolve(self, names)
    }
}

pub use crate::modules::Module;

/// Find or fetch the kernel `spec` in `cache`.
pub fn fetch(spec: KernelSpec, cache: &Path) -> Result<Kernel> {
    let dir = cache.join("kernels");
    let wanted = pinned_version(spec.series)?;
    let refresh = std::env::var("ISOL_LAB_KERNEL_REFRESH").is_ok_and(|v| v == "1");

    // Fast path, no lock and no apt: the unpacked directory only appears by rename.
    let cached = match &wanted {
        Some(v) => Some(spec.package(v)).filter(|p| dir.join(p).is_dir()),
        None if !refresh => newest_cached(spec, &dir)?,
        None => None,
    };
    if let Some(package) = cached {
        return open(spec, &dir.join(package));
    }

    let _lock = FileLock::exclusive(&dir.join(".lock"))?;
    let apt = spec.apt(cache);
    // Nothing but the lab updates a private state's lists: asking again
    // means fetching them again.
    if refresh && wanted.is_none() && matches!(apt, Apt::Private { .. }) {
        apt.update_once()?;
    }
    let resolve = || match &wanted {
        Some(v) => Ok(spec.package(v)),
        None => newest_available(spec, &apt),
    };
    let mut package = resolve()?;
    let mut target = dir.join(&package);
    if !target.is_dir() {
        if let Err(first) = download(&apt, &package, &dir, &target) {
            // Stale lists name a .deb the mirror no longer has: refresh once.
            if !apt.update_once()? {
                return Err(first);
            }
            package = resolve()?;
            target = dir.join(&package);
            if !target.is_dir() {
                download(&apt, &package, &dir, &target).context(first)?;
            }
        }
    }
    open(spec, &target)
}

/// The entry of `ISOL_LAB_KERNEL_VERSION` for `series`. The variable is a
/// list (commas or spaces) of package versions; each names its series by its
/// form, so one setting can pin several series of a matrix run.
fn pinned_version(series: Series) -> Result<Option<String>> {
    let Ok(list) = std::env::var("ISOL_LAB_KERNEL_VERSION") else {
        return Ok(None);
    };
    pinned_in(&list, series)
}

fn pinned_in(list: &str, series: Series) -> Result<Option<String>> {
    let mut found = None;
    for v in list.split([',', ' ']).filter(|v| !v.is_empty()) {
        let Some(s) = Series::ALL.into_iter().find(|s| s.is_version(v)) else {
            bail!(
                "ISOL_LAB_KERNEL_VERSION: {v:?} is no kernel version the lab knows \
                 (forms: 5.10.0-N, 6.1.0-N, 6.12.N+deb12)"
            );
        };
        if s == series {
            if found.is_some() {
                bail!("ISOL_LAB_KERNEL_VERSION={list:?} pins series {series} twice");
            }
            found = Some(v.to_owned());
        }
    }
    Ok(found)
}

fn newest_cached(spec: KernelSpec, dir: &Path) -> Result<Option<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if spec.version_of(&name).is_some() && dir.join(&name).is_dir() {
            names.push(name);
        }
    }
    Ok(names.into_iter().max_by(|a, b| version_cmp(a, b)))
}

fn newest_available(spec: KernelSpec, apt: &Apt) -> Result<String> {
    let mut names = apt.search(spec)?;
    if names.is_empty() && apt.update_once()? {
        names = apt.search(spec)?;
    }
    names
        .into_iter()
        .max_by(|a, b| version_cmp(a, b))
        .with_context(|| {
            format!(
                "no {} package in apt's lists (after apt-get update); {}",
                spec.package(&format!("{}.*", spec.series)),
                match apt {
                    Apt::Machine =>
                        "is bookworm / bookworm-security in the machine's apt sources?".to_owned(),
                    Apt::Private { suite, dir } => format!(
                        "the private apt state in {} lists {suite} main of the machine's \
                         Debian mirror",
                        dir.display()
                    ),
                }
            )
        })
}

/// Where apt finds a series: the machine's own configuration, or a private
/// state (sources.list, lists, cache) for a suite the machine does not use.
enum Apt {
    Machine,
    Private { suite: &'static str, dir: PathBuf },
}

/// Sources (by label) apt-get update already ran for in this process.
static APT_UPDATED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

impl Apt {
    fn label(&self) -> String {
        match self {
            Apt::Machine => "machine".into(),
            Apt::Private { dir, .. } => dir.display().to_string(),
        }
    }

    /// `apt-get`/`apt-cache` with the options that select this state.
    fn command(&self, program: &str) -> Result<Command> {
        let mut cmd = Command::new(program);
        // The default sandbox user _apt cannot write into our cache.
        cmd.args(["-o", "APT::Sandbox::User=root"]);
        if let Apt::Private { dir, .. } = self {
            let opt = |k: &str, p: &Path| format!("{k}={}", p.display());
            // Dir::Cache too: apt-cache would otherwise rewrite the machine's
            // pkgcache.bin from our lists.
            cmd.args([
                "-o",
                &opt("Dir::Etc::sourcelist", &dir.join("sources.list")),
            ])
            .args(["-o", "Dir::Etc::sourceparts=-"])
            .args(["-o", &opt("Dir::State::Lists", &dir.join("lists"))])
            .args(["-o", &opt("Dir::Cache", &dir.join("cache"))])
            .args(["-o", &opt("Dir::State::status", &dir.join("status"))]);
        }
        Ok(cmd)
    }

    /// Create the private state (idempotent): its sources.list names the
    /// machine's Debian mirror, so CI's proxies and snapshots apply.
    fn prepare(&self) -> Result<()> {
        let Apt::Private { suite, dir } = self else {
            return Ok(());
        };
        for d in ["lists/partial", "cache/archives/partial"] {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        // An empty dpkg status: the machine's installed packages are none of
        // this state's business.
        let status = dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "")?;
        }
        let mut opts = vec![
            format!("arch={}", crate::arch::DEBIAN_ARCH),
            "target=Packages".to_owned(),
        ];
        let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        if keyring.exists() {
            opts.push(format!("signed-by={}", keyring.display()));
        }
        let line = format!(
            "deb [{}] {} {suite} main\n",
            opts.join(" "),
            debian_mirror()
        );
        std::fs::write(dir.join("sources.list"), line)
            .with_context(|| format!("writing {}/sources.list", dir.display()))?;
        Ok(())
    }

    /// apt-get update unless this process already did; returns whether it ran.
    fn update_once(&self) -> Result<bool> {
        let mut updated = APT_UPDATED.lock().unwrap_or_else(|e| e.into_inner());
        let updated = updated.get_or_insert_with(HashSet::new);
        if updated.contains(&self.label()) {
            return Ok(false);
        }
        self.prepare()?;
        run(
            self.command("apt-get")?.args(["update", "-q"]),
            &format!("apt-get update ({} apt state)", self.label()),
        )?;
        updated.insert(self.label());
        Ok(true)
    }

    fn search(&self, spec: KernelSpec) -> Result<Vec<String>> {
        if let Apt::Private { dir, .. } = self {
            // Nothing fetched yet: there is nothing to search.
            if !dir.join("sources.list").exists() {
                return Ok(Vec::new());
            }
        }
        let pattern = format!(
            "^linux-image-{}{}$",
            spec.series.version_regex(),
            spec.flavour.suffix()
        );
        let out = run(
            self.command("apt-cache")?
                .args(["search", "--names-only", &pattern]),
            "apt-cache search",
        )?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| spec.version_of(name).is_some())
            .map(str::to_owned)
            .collect())
    }
}

/// The machine's Debian mirror: the first `URIs:` of debian.sources (deb822,
/// Debian 12's default) or the first `deb` line of sources.list.
fn debian_mirror() -> String {
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        if let Some(uri) = text
            .lines()
            .find_map(|l| l.strip_prefix("URIs:"))
            .and_then(|u| u.split_whitespace().next())
        {
            return uri.to_owned();
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        for l in text.lines() {
            let mut words = l.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            // Skip a `[options]` block.
            let uri = words.find(|w| !w.starts_with('[') && !w.ends_with(']'));
            if let Some(uri) = uri.filter(|u| !u.contains("security")) {
                return uri.to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

fn download(apt: &Apt, package: &str, dir: &Path, target: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    apt.prepare()?;
    // Same file system as the target, so the final rename is atomic.
    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a temporary directory in {}", dir.display()))?;
    run(
        apt.command("apt-get")?
            .args(["download", "-q", package])
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

fn open(spec: KernelSpec, root: &Path) -> Result<Kernel> {
    let package = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = spec
        .version_of(&package)
        .with_context(|| format!("{}: not a {spec} kernel package", root.display()))?
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
        spec,
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
            anyhow::anyhow!("{program} not found: the lab needs Debian's apt, dpkg and xz-utils")
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
        assert_eq!(version_cmp("5.10.0-32", "5.10.0-9"), Ordering::Greater);
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
        let cloud = KernelSpec::new(Series::V6_12, Flavour::Cloud);
        let p = cloud.package("6.12.117+deb12");
        assert_eq!(p, "linux-image-6.12.117+deb12-cloud-amd64-unsigned");
        assert_eq!(cloud.version_of(&p), Some("6.12.117+deb12"));
        assert_eq!(KernelSpec::from(Flavour::Rt).version_of(&p), None);
        // The generic suffix is a suffix of the others: the version's form
        // keeps the flavours apart.
        let generic61 = KernelSpec::new(Series::V6_1, Flavour::Amd64);
        assert_eq!(
            generic61.version_of("linux-image-6.1.0-57-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(
            generic61.version_of("linux-image-6.1.0-57-amd64-unsigned"),
            Some("6.1.0-57")
        );
        let rt510 = KernelSpec::new(Series::V5_10, Flavour::Rt);
        assert_eq!(
            rt510.version_of("linux-image-5.10.0-32-rt-amd64-unsigned"),
            Some("5.10.0-32")
        );
        assert_eq!(
            rt510.version_of("linux-image-6.1.0-30-rt-amd64-unsigned"),
            None
        );
        assert_eq!(
            KernelSpec::from(Flavour::Rt).version_of("linux-image-6.1.0-30-rt-amd64-unsigned"),
            None
        );
    }

    #[test]
    fn spec_syntax() {
        let k = |s: &str| s.parse::<KernelSpec>().unwrap();
        assert_eq!(
            k("5.10-cloud"),
            KernelSpec::new(Series::V5_10, Flavour::Cloud)
        );
        assert_eq!(k("6.1-rt"), KernelSpec::new(Series::V6_1, Flavour::Rt));
        assert_eq!(
            k("6.12-amd64"),
            KernelSpec::new(Series::V6_12, Flavour::Amd64)
        );
        assert_eq!(k("6.1"), KernelSpec::new(Series::V6_1, Flavour::Cloud));
        assert_eq!(k("rt"), KernelSpec::new(Series::V6_12, Flavour::Rt));
        assert_eq!(k("cloud"), KernelSpec::DEFAULT);
        for s in KernelSpec::all() {
            assert_eq!(k(&s.to_string()), s);
        }
        for bad in ["5.4-cloud", "6.1-lowlatency", "", "6.12-"] {
            assert!(bad.parse::<KernelSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn version_pins_compose_per_series() {
        let list = "5.10.0-30, 6.12.117+deb12";
        assert_eq!(
            pinned_in(list, Series::V5_10).unwrap().as_deref(),
            Some("5.10.0-30")
        );
        assert_eq!(pinned_in(list, Series::V6_1).unwrap(), None);
        assert_eq!(
            pinned_in(list, Series::V6_12).unwrap().as_deref(),
            Some("6.12.117+deb12")
        );
        assert!(pinned_in("6.1.0-57,6.1.0-56", Series::V6_12).is_ok());
        assert!(pinned_in("6.1.0-57,6.1.0-56", Series::V6_1).is_err());
        assert!(pinned_in("6.12.117", Series::V6_12).is_err());
        assert_eq!(pinned_in("", Series::V6_12).unwrap(), None);
    }
}
