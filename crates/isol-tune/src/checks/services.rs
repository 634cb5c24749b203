//! irqbalance and systemd's CPUAffinity.

use crate::audit::Ctx;
use crate::item::Item;
use isol_cpulist::CpuSet;

/// Is a process with this comm running?
fn running(ctx: &Ctx, comm: &str) -> bool {
    std::fs::read_dir(&ctx.root.proc)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .any(|e| ctx.read(&e.path().join("comm")).as_deref() == Some(comm))
}

/// `KEY=value` from a shell-style or INI-style config file, last one wins.
fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
}

pub fn check(ctx: &Ctx) -> Vec<Item> {
    let c = &ctx.cpus;
    let mut v = Vec::new();

    let it = Item::new(
        "services.irqbalance",
        "irqbalance bans the CPUs",
        "irqbalance moves device IRQs back onto the CPUs, undoing the IRQ fixes",
    );
    v.push(if !running(ctx, "irqbalance") {
        it.pass("irqbalance not running")
    } else {
        let mut banned = CpuSet::new();
        let mut from = Vec::new();
        for f in ["/etc/default/irqbalance", "/etc/sysconfig/irqbalance"] {
            let Ok(t) = std::fs::read_to_string(ctx.root.path(f)) else {
                continue;
            };
            if let Some(l) = config_value(&t, "IRQBALANCE_BANNED_CPULIST") {
                if let Ok(s) = CpuSet::parse(&l) {
                    banned = banned.union(&s);
                    from.push(format!("{f}: IRQBALANCE_BANNED_CPULIST={l}"));
                }
            }
            if let Some(m) = config_value(&t, "IRQBALANCE_BANNED_CPUS") {
                if let Ok(s) = CpuSet::parse_mask(&m) {
                    banned = banned.union(&s);
                    from.push(format!("{f}: IRQBALANCE_BANNED_CPUS={m}"));
                }
            }
        }
        // irqbalance >= 1.8 also bans isolcpus= and nohz_full= CPUs itself.
        let sysfs = &ctx.model.sysfs;
        for s in [&sysfs.isolated, &sysfs.nohz_full].into_iter().flatten() {
            banned = banned.union(s);
        }
        if c.is_subset(&banned) {
            it.pass(format!(
                "irqbalance running; the CPUs are banned ({})",
                if from.is_empty() {
                    "isolated/nohz_full, irqbalance >= 1.8".to_string()
                } else {
                    from.join("; ")
                }
            ))
        } else {
            it.fail(format!(
                "irqbalance running and may place IRQs on CPUs {}",
                c.difference(&banned)
            ))
            .fix(format!(
                "echo 'IRQBALANCE_BANNED_CPULIST={}' >> /etc/default/irqbalance && systemctl restart irqbalance  (or: systemctl disable --now irqbalance)",
                banned.union(c)
            ))
        }
    });

    let it = Item::new(
        "services.systemd_cpuaffinity",
        "systemd starts services off the CPUs (CPUAffinity=)",
        "services and everything they start are allowed on the CPUs",
    );
    v.push(if !ctx.root.path("/run/systemd/system").is_dir() {
        it.skip("systemd is not the init system")
    } else {
        let mut val = None;
        let mut files = vec![ctx.root.path("/etc/systemd/system.conf")];
        let mut drop: Vec<_> = std::fs::read_dir(ctx.root.path("/etc/systemd/system.conf.d"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        drop.sort();
        files.extend(drop);
        for f in files {
            if let Ok(t) = std::fs::read_to_string(&f) {
                if let Some(x) = config_value(&t, "CPUAffinity") {
                    val = Some(x);
                }
            }
        }
        // systemd accepts lists separated by spaces or commas.
        let set = val
            .as_deref()
            .and_then(|s| CpuSet::parse(&s.split_whitespace().collect::<Vec<_>>().join(",")).ok());
        match set {
            Some(s) if !s.is_empty() && !s.intersects(c) => it.pass(format!("CPUAffinity={s}")),
            _ => it
                .warn(match &val {
                    Some(x) => format!("CPUAffinity={x} includes the CPUs"),
                    None => "CPUAffinity not set".into(),
                })
                .fix(format!(
                    "mkdir -p /etc/systemd/system.conf.d && printf '[Manager]\\nCPUAffinity={}\\n' > /etc/systemd/system.conf.d/isol.conf && systemctl daemon-reexec",
                    ctx.hk
                )),
        }
    });
    v
}

#[cfg(test)]
mod tests {
    use super::config_value;

    #[test]
    fn config_lines() {
        let t = "# IRQBALANCE_BANNED_CPULIST=9\nIRQBALANCE_BANNED_CPULIST=\"2-3\"\n";
        assert_eq!(
            config_value(t, "IRQBALANCE_BANNED_CPULIST").as_deref(),
            Some("2-3")
        );
        assert_eq!(
            config_value("[Manager]\nCPUAffinity=0 1\n", "CPUAffinity").as_deref(),
            Some("0 1")
        );
    }
}
