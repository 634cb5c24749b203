//! Which CPUs a command watches and which are left for housekeeping: one
//! rule for every command, the daemon and chisol. Cheap: reads only what
//! says which CPUs are online and isolated.

use crate::model::CpuSummary;
use crate::Root;
use isol_cpulist::CpuSet;

/// What to do when the user named no CPUs and none is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenNoneIsolated {
    /// Refuse, asking for --cpus.
    Refuse,
    /// Take the last online CPU (CPU 0 carries most housekeeping), as a
    /// pinned program would see it.
    LastOnline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub watched: CpuSet,
    /// Online CPUs not watched: where isol itself runs.
    pub housekeeping: CpuSet,
    /// Whether the watched CPUs are isolated by the kernel (not just chosen).
    pub isolated: bool,
    /// Why these CPUs, in words.
    pub why: String,
    /// The machine's nohz_full CPUs (context tracking runs there).
    pub nohz_full: CpuSet,
}

/// Choose from `asked` (the user's list), else the isolated CPUs, else as
/// `none` says. Errors name the bad CPU or what is missing.
pub fn select(
    root: &Root,
    asked: Option<&CpuSet>,
    none: WhenNoneIsolated,
) -> Result<Selection, String> {
    let cpus = CpuSummary::probe(root);
    choose(&cpus, asked, none)
}

fn choose(
    cpus: &CpuSummary,
    asked: Option<&CpuSet>,
    none: WhenNoneIsolated,
) -> Result<Selection, String> {
    let online = &cpus.online;
    let (watched, isolated, why) = match asked {
        Some(c) => {
            let off = c.difference(online);
            if !off.is_empty() {
                return Err(format!("CPU {off} is not online (online: {online})"));
            }
            let isolated = !c.is_empty() && c.is_subset(&cpus.isolated);
            (c.clone(), isolated, format!("CPUs {c} as asked"))
        }
        None if !cpus.isolated.is_empty() => (
            cpus.isolated.clone(),
            true,
            format!("the isolated CPUs ({})", cpus.isolated),
        ),
        None => match none {
            WhenNoneIsolated::Refuse => {
                return Err("this machine has no isolated CPUs; name the CPUs to watch with --cpus LIST (e.g. --cpus 1)".into())
            }
            WhenNoneIsolated::LastOnline => {
                if online.len() < 2 {
                    return Err("this machine has a single online CPU: nothing can be isolated (isol needs one CPU for housekeeping and one to watch)".into());
                }
                let cpu = online.last().unwrap_or(1);
                (
                    CpuSet::single(cpu),
                    false,
                    format!("no CPU is isolated on this machine, so CPU {cpu} (the last online CPU; CPU 0 does most housekeeping), as a pinned program would see it"),
                )
            }
        },
    };
    let housekeeping = online.difference(&watched);
    if housekeeping.is_empty() {
        return Err(format!(
            "every online CPU ({online}) would be watched; leave at least one housekeeping CPU for isol itself"
        ));
    }
    Ok(Selection {
        watched,
        housekeeping,
        isolated,
        why,
        nohz_full: cpus.nohz_full.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(online: &str, isolated: &str) -> CpuSummary {
        CpuSummary {
            online: online.parse().unwrap(),
            isolated: isolated.parse().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn asked_then_isolated_then_the_fallback() {
        let s = summary("0-3", "2-3");
        let c: CpuSet = "1".parse().unwrap();
        let a = choose(&s, Some(&c), WhenNoneIsolated::Refuse).unwrap();
        assert_eq!((a.watched.to_string(), a.isolated), ("1".into(), false));
        assert_eq!(a.housekeeping.to_string(), "0,2-3");
        let i = choose(&s, None, WhenNoneIsolated::Refuse).unwrap();
        assert_eq!((i.watched.to_string(), i.isolated), ("2-3".into(), true));
        let none = summary("0-3", "");
        assert!(choose(&none, None, WhenNoneIsolated::Refuse)
            .unwrap_err()
            .contains("--cpus"));
        let l = choose(&none, None, WhenNoneIsolated::LastOnline).unwrap();
        assert_eq!(l.watched.to_string(), "3");
    }

    #[test]
    fn refuses_offline_cpus_and_leaving_no_housekeeping() {
        let s = summary("0-1", "");
        let off: CpuSet = "4".parse().unwrap();
        assert!(choose(&s, Some(&off), WhenNoneIsolated::Refuse)
            .unwrap_err()
            .contains("CPU 4 is not online"));
        let all: CpuSet = "0-1".parse().unwrap();
        assert!(choose(&s, Some(&all), WhenNoneIsolated::Refuse)
            .unwrap_err()
            .contains("housekeeping"));
        assert!(
            choose(&summary("0", ""), None, WhenNoneIsolated::LastOnline)
                .unwrap_err()
                .contains("single online CPU")
        );
    }
}
