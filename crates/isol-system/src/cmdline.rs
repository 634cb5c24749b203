//! The kernel command line's isolation parameters.
//!
//! Parsing follows the kernel's own rules (kernel/sched/isolation.c,
//! kernel/rcu/tree_nocb.h) so isol reports what the kernel understood, not
//! what the user meant: e.g. `isolcpus=1` means `domain` only, and an
//! unknown isolcpus flag makes the kernel ignore the whole parameter.

use isol_cpulist::CpuSet;
use serde::Serialize;

/// `isolcpus=` flags (housekeeping types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolFlag {
    Nohz,
    Domain,
    ManagedIrq,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Isolcpus {
    pub cpus: CpuSet,
    pub flags: Vec<IsolFlag>,
}

/// A parameter that was present but that the kernel would reject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalid {
    pub param: String,
    pub value: String,
    pub error: String,
}

/// Isolation-relevant boot parameters. CPU lists are resolved against the
/// possible CPUs when known (`all`, `N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootParams {
    pub raw: String,
    pub nohz_full: Option<CpuSet>,
    pub isolcpus: Option<Isolcpus>,
    pub rcu_nocbs: Option<CpuSet>,
    /// `rcu_nocbs` given with no list (6.1+: offloading may be enabled at
    /// runtime via cpusets).
    pub rcu_nocbs_bare: bool,
    pub irqaffinity: Option<CpuSet>,
    pub kthread_cpus: Option<CpuSet>,
    /// Other tokens from the quiet-CPU checklist, verbatim (`nosoftlockup`,
    /// `skew_tick=1`, `tsc=reliable`, ...), in command-line order.
    pub other: Vec<(String, Option<String>)>,
    pub invalid: Vec<Invalid>,
}

/// Tokens of the quiet-CPU checklist that are not CPU lists.
const CHECKLIST: &[&str] = &[
    "nohz",
    "skew_tick",
    "tsc",
    "nosoftlockup",
    "nowatchdog",
    "nmi_watchdog",
    "intel_pstate",
    "rcupdate.rcu_normal_after_boot",
    "rcupdate.rcu_expedited",
    "rcu_nocb_poll",
    "rcutree.kthread_prio",
    "processor.max_cstate",
    "intel_idle.max_cstate",
    "idle",
    "mitigations",
    "audit",
    "transparent_hugepage",
    "housekeeping",
    "isolcpus_hk",
];

/// Split a command line the way the kernel's `next_arg` does: spaces
/// separate, double quotes group.
pub fn split(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut inq = false;
    let mut tokens = Vec::new();
    for ch in cmdline.chars() {
        match ch {
            '"' => inq = !inq,
            c if c.is_whitespace() && !inq => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    for t in tokens {
        // Everything after `--` goes to init, not the kernel.
        if t == "--" {
            break;
        }
        match t.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((t, None)),
        }
    }
    out
}

/// Parse `isolcpus=` as housekeeping_isolcpus_setup() does.
pub fn parse_isolcpus(v: &str, possible: Option<&CpuSet>) -> Result<Isolcpus, String> {
    let mut rest = v;
    let mut flags = Vec::new();
    while rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let (word, tail) = match rest.split_once(',') {
            Some((w, t)) => (w, t),
            None => (rest, ""),
        };
        let f = match word {
            "nohz" => IsolFlag::Nohz,
            "domain" => IsolFlag::Domain,
            "managed_irq" => IsolFlag::ManagedIrq,
            // `all`/`N` are CPU-list keywords, not flags.
            "all" | "N" => break,
            other => return Err(format!("unknown isolcpus flag {other:?}")),
        };
        if !flags.contains(&f) {
            flags.push(f);
        }
        rest = tail;
    }
    // No flag at all means the historical behaviour: domain isolation only.
    if flags.is_empty() {
        flags.push(IsolFlag::Domain);
    }
    flags.sort();
    let cpus = CpuSet::parse_with_all(rest, possible).map_err(|e| e.to_string())?;
    Ok(Isolcpus { cpus, flags })
}

impl BootParams {
    pub fn parse(cmdline: &str, possible: Option<&CpuSet>) -> BootParams {
        let mut bp = BootParams {
            raw: cmdline.trim().to_string(),
            ..Default::default()
        };
        for (k, v) in split(cmdline) {
            let val = v.clone().unwrap_or_default();
            let mut bad = |e: String| {
                bp.invalid.push(Invalid {
                    param: k.clone(),
                    value: val.clone(),
                    error: e,
                })
            };
            let list = |s: &str| CpuSet::parse_with_all(s, possible).map_err(|e| e.to_string());
            // Later occurrences override earlier ones, as with __setup().
            match k.as_str() {
                "nohz_full" => match list(&val) {
                    Ok(c) => bp.nohz_full = Some(c),
                    Err(e) => bad(e),
                },
                "isolcpus" => match parse_isolcpus(&val, possible) {
                    Ok(i) => bp.isolcpus = Some(i),
                    Err(e) => bad(e),
                },
                "rcu_nocbs" => {
                    if v.is_none() {
                        bp.rcu_nocbs_bare = true;
                    } else {
                        match list(&val) {
                            Ok(c) => bp.rcu_nocbs = Some(c),
                            Err(e) => bad(e),
                        }
                    }
                }
                "irqaffinity" => match list(&val) {
                    Ok(c) => bp.irqaffinity = Some(c),
                    Err(e) => bad(e),
                },
                "kthread_cpus" => match list(&val) {
                    Ok(c) => bp.kthread_cpus = Some(c),
                    Err(e) => bad(e),
                },
                key if CHECKLIST.contains(&key) => bp.other.push((k.clone(), v.clone())),
                _ => {}
            }
        }
        bp
    }

    /// The value of a checklist token, if present (`Some(None)` for a bare flag).
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.other
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(s: &str) -> CpuSet {
        CpuSet::parse(s).unwrap()
    }

    #[test]
    fn lab_command_line() {
        let bp = BootParams::parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0 skew_tick=1 nosoftlockup",
            Some(&cs("0-1")),
        );
        assert_eq!(bp.nohz_full, Some(cs("1")));
        let i = bp.isolcpus.clone().unwrap();
        assert_eq!(i.cpus, cs("1"));
        assert_eq!(
            i.flags,
            vec![IsolFlag::Nohz, IsolFlag::Domain, IsolFlag::ManagedIrq]
        );
        assert_eq!(bp.rcu_nocbs, Some(cs("1")));
        assert_eq!(bp.irqaffinity, Some(cs("0")));
        assert_eq!(bp.get("skew_tick"), Some(Some("1")));
        assert_eq!(bp.get("nosoftlockup"), Some(None));
        assert!(bp.invalid.is_empty());
    }

    #[test]
    fn isolcpus_without_flags_is_domain_and_lists_keep_commas() {
        let i = parse_isolcpus("1,3-4", None).unwrap();
        assert_eq!(i.flags, vec![IsolFlag::Domain]);
        assert_eq!(i.cpus, cs("1,3-4"));
        let i = parse_isolcpus("managed_irq,domain,2-3,6", None).unwrap();
        assert_eq!(i.flags, vec![IsolFlag::Domain, IsolFlag::ManagedIrq]);
        assert_eq!(i.cpus, cs("2-3,6"));
    }

    #[test]
    fn bad_values_are_reported_not_dropped() {
        let bp = BootParams::parse("isolcpus=bogus,1 nohz_full=1- rcu_nocbs", None);
        assert!(bp.isolcpus.is_none());
        assert!(bp.nohz_full.is_none());
        assert!(bp.rcu_nocbs_bare);
        assert_eq!(bp.invalid.len(), 2);
        assert!(bp.invalid[0].error.contains("bogus"));
    }

    #[test]
    fn all_keyword_resolves_against_possible_cpus() {
        let bp = BootParams::parse("nohz_full=all isolcpus=nohz,2-N", Some(&cs("0-3")));
        assert_eq!(bp.nohz_full, Some(cs("0-3")));
        assert_eq!(bp.isolcpus.unwrap().cpus, cs("2-3"));
    }

    #[test]
    fn quotes_and_init_args() {
        let v = split(r#"a="x y" b -- nohz_full=1"#);
        assert_eq!(
            v,
            vec![("a".into(), Some("x y".into())), ("b".into(), None)]
        );
    }
}
