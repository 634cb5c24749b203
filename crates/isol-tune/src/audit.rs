//! `isol audit`: every checklist item for a set of CPUs (schema
//! `isol.audit/1`, docs/json/audit.md).

use crate::checks;
use crate::item::{Item, Status};
use crate::Error;
use isol_cpulist::CpuSet;
use isol_system::irq::Irqs;
use isol_system::{Root, SystemModel};
use serde::Serialize;
use std::path::PathBuf;

pub const SCHEMA: &str = "isol.audit/1";

/// What every check sees: the system model plus the target CPUs.
pub struct Ctx<'a> {
    pub root: &'a Root,
    pub model: &'a SystemModel,
    /// Every device IRQ with its requested affinity. The model keeps only
    /// the IRQs whose *effective* affinity lands on each CPU; fixing an
    /// IRQ needs the requested one too.
    pub irqs: &'a Irqs,
    /// The CPUs to make quiet.
    pub cpus: CpuSet,
    /// Online CPUs outside `cpus`: where the noise goes instead.
    pub hk: CpuSet,
    /// This process: never reported as a task on the CPUs nor moved.
    pub self_pid: i32,
}

impl Ctx<'_> {
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.root.proc(rel)
    }
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.root.sys(rel)
    }
    /// Trimmed content, `None` if absent or unreadable.
    pub fn read(&self, p: &std::path::Path) -> Option<String> {
        self.root.read(p)
    }
    /// Whether changes to threads are allowed: only on the live machine
    /// (a fixture tree's pids are not this machine's).
    pub fn live(&self) -> bool {
        self.root.is_live()
    }
}

/// Overall result: `fail` if any item fails, else `warn` if any warns.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
    /// Ids of the failing items, then the warning ones.
    pub failing: Vec<String>,
    pub warning: Vec<String>,
    /// One line for people: `audit of CPUs 1: 2 fail, 3 warn, 20 pass`.
    pub summary: String,
}

/// Boot parameters still needed, merged, with a GRUB snippet.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BootAdvice {
    pub params: Vec<String>,
    /// Contents for `/etc/default/grub.d/isol.cfg` (empty if nothing is needed).
    pub grub: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub kernel: String,
    pub cpus: CpuSet,
    pub housekeeping: CpuSet,
    /// The CPUs were given by the user, not taken from the isolated ones.
    pub cpus_explicit: bool,
    pub verdict: Verdict,
    pub boot: BootAdvice,
    pub items: Vec<Item>,
}

impl Report {
    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }
}

/// The CPUs to audit: the given ones, or the isolated ones. They must be
/// online and leave at least one housekeeping CPU.
pub fn target_cpus(model: &SystemModel, cpus: Option<&CpuSet>) -> Result<CpuSet, Error> {
    let online = &model.cpus.online;
    let c = match cpus {
        Some(c) => c.clone(),
        None => {
            if model.cpus.isolated.is_empty() {
                return Err(Error::Cpus(
                    "no CPU is isolated on this machine; name the CPUs to check with --cpus LIST (e.g. --cpus 1)".into(),
                ));
            }
            model.cpus.isolated.clone()
        }
    };
    if c.is_empty() {
        return Err(Error::Cpus("--cpus: empty CPU list".into()));
    }
    if !online.is_empty() && !c.is_subset(online) {
        return Err(Error::Cpus(format!(
            "CPUs {} are not online (online: {online})",
            c.difference(online)
        )));
    }
    if !online.is_empty() && online.difference(&c).is_empty() {
        return Err(Error::Cpus(format!(
            "CPUs {c} are all the online CPUs; leave at least one for housekeeping"
        )));
    }
    Ok(c)
}

/// Audit `cpus` (default: the isolated ones) on the machine at `root`.
pub fn audit(root: &Root, cpus: Option<&CpuSet>) -> Result<Report, Error> {
    let model = SystemModel::probe(root);
    let irqs = Irqs::probe(root);
    audit_model(root, &model, &irqs, cpus)
}

pub fn audit_model(
    root: &Root,
    model: &SystemModel,
    irqs: &Irqs,
    cpus: Option<&CpuSet>,
) -> Result<Report, Error> {
    let target = target_cpus(model, cpus)?;
    let ctx = Ctx {
        root,
        model,
        irqs,
        hk: model.cpus.online.difference(&target),
        cpus: target,
        self_pid: std::process::id() as i32,
    };
    let items = checks::all(&ctx);
    let verdict = verdict_of(&ctx.cpus, &items);
    let boot = boot_advice(&items);
    Ok(Report {
        schema: SCHEMA,
        kernel: model.kernel.release.clone(),
        cpus: ctx.cpus.clone(),
        housekeeping: ctx.hk.clone(),
        cpus_explicit: cpus.is_some(),
        verdict,
        boot,
        items,
    })
}

pub fn verdict_of(cpus: &CpuSet, items: &[Item]) -> Verdict {
    let n = |s: Status| items.iter().filter(|i| i.status == s).count();
    let ids = |s: Status| {
        items
            .iter()
            .filter(|i| i.status == s)
            .map(|i| i.id.clone())
            .collect::<Vec<_>>()
    };
    let (pass, warn, fail, skip) = (
        n(Status::Pass),
        n(Status::Warn),
        n(Status::Fail),
        n(Status::Skip),
    );
    let status = if fail > 0 {
        Status::Fail
    } else if warn > 0 {
        Status::Warn
    } else {
        Status::Pass
    };
    Verdict {
        status,
        pass,
        warn,
        fail,
        skip,
        failing: ids(Status::Fail),
        warning: ids(Status::Warn),
        summary: format!(
            "audit of CPUs {cpus}: {} ({fail} fail, {warn} warn, {pass} pass, {skip} skip)",
            status.as_str()
        ),
    }
}

/// The audit verdict for the isolated CPUs, for `isol check`. `Err` when
/// no CPU is isolated (nothing to judge).
pub fn verdict(root: &Root) -> Result<Verdict, Error> {
    audit(root, None).map(|r| r.verdict)
}

/// Merge the items' boot parameters (a later item's `key=` replaces an
/// earlier one's) and write the GRUB snippet.
pub fn boot_advice(items: &[Item]) -> BootAdvice {
    let mut params: Vec<String> = Vec::new();
    for p in items
        .iter()
        .filter(|i| matches!(i.status, Status::Fail | Status::Warn))
        .flat_map(|i| &i.boot)
    {
        let key = p.split('=').next().unwrap_or(p);
        params.retain(|q| q.split('=').next().unwrap_or(q) != key);
        params.push(p.clone());
    }
    let grub = if params.is_empty() {
        String::new()
    } else {
        format!(
            "# /etc/default/grub.d/isol.cfg (written by isol; then run update-grub and reboot)\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT {}\"\n",
            params.join(" ")
        )
    };
    BootAdvice { params, grub }
}
