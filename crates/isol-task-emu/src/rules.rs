//! The task isolation patch's per-task state and its five prctls, written
//! from the patch's documentation (Documentation/userspace-api/
//! task_isolation.rst of the series) and its code where the text is
//! silent. Pure: memory access goes through [`Mem`], so the rules are
//! unit-tested here and served to real processes by the harness.
//!
//! Where the code and the text differ, the text wins and the difference is
//! said: CFG_GET returns the one-shot mask (the code leaves it 0), and
//! ACTIVATE_SET refuses a feature that was not configured ("features must
//! be configured before being activated"; the code only wants some state).

pub const PR_ISOL_FEAT_GET: u64 = 63;
pub const PR_ISOL_CFG_GET: u64 = 64;
pub const PR_ISOL_CFG_SET: u64 = 65;
pub const PR_ISOL_ACTIVATE_GET: u64 = 66;
pub const PR_ISOL_ACTIVATE_SET: u64 = 67;

pub const I_CFG_FEAT: u64 = 1;
pub const I_CFG_INHERIT: u64 = 2;
pub const ISOL_F_QUIESCE: u64 = 1 << 0;
pub const ISOL_F_QUIESCE_VMSTATS: u64 = 1 << 0;
pub const QUIESCE_CONTROL: u64 = 1 << 0;
pub const ISOL_INHERIT_CONF: u8 = 1 << 0;
pub const ISOL_INHERIT_ACTIVE: u8 = 1 << 1;

/// struct task_isol_quiesce_extensions { u64 flags; u64 supported_quiesce_bits; u64 pad[6]; }
pub const QUIESCE_EXTENSIONS_SIZE: usize = 64;
/// struct task_isol_quiesce_control { u64 flags; u64 quiesce_mask; u64 quiesce_oneshot_mask; u64 pad[5]; }
pub const QUIESCE_CONTROL_SIZE: usize = 64;
/// struct task_isol_inherit_control { u8 inherit_mask; u8 pad[7]; }
pub const INHERIT_CONTROL_SIZE: usize = 8;

/// A task's isolation state (struct task_isol_info); None in the task is
/// "never configured".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    pub conf_mask: u64,
    pub active_mask: u64,
    pub quiesce_mask: u64,
    pub oneshot_mask: u64,
    pub inherit_mask: u8,
}

/// The calling task's memory.
pub trait Mem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    fn write(&mut self, addr: u64, data: &[u8]) -> bool;
}

const EINVAL: i32 = libc::EINVAL;
const EFAULT: i32 = libc::EFAULT;

fn put(mem: &mut dyn Mem, addr: u64, data: &[u8]) -> Result<i64, i32> {
    if mem.write(addr, data) {
        Ok(0)
    } else {
        Err(EFAULT)
    }
}

fn get<const N: usize>(mem: &mut dyn Mem, addr: u64) -> Result<[u8; N], i32> {
    let mut b = [0u8; N];
    if mem.read(addr, &mut b) {
        Ok(b)
    } else {
        Err(EFAULT)
    }
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
}

fn words(w: &[u64], size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    for (i, x) in w.iter().enumerate() {
        v[i * 8..i * 8 + 8].copy_from_slice(&x.to_ne_bytes());
    }
    v
}

/// prctl(args[0], args[1], ..., args[4]) for a task whose state is `info`.
/// Ok(return value) or Err(errno).
pub fn prctl(info: &mut Option<Info>, args: [u64; 5], mem: &mut dyn Mem) -> Result<i64, i32> {
    let [op, a2, a3, a4, a5] = args;
    match op {
        PR_ISOL_FEAT_GET => match a2 {
            0 => put(mem, a3, &ISOL_F_QUIESCE.to_ne_bytes()),
            ISOL_F_QUIESCE => put(
                mem,
                a3,
                &words(&[0, ISOL_F_QUIESCE_VMSTATS], QUIESCE_EXTENSIONS_SIZE),
            ),
            _ => Err(EINVAL),
        },
        PR_ISOL_CFG_GET => match (a2, a3) {
            (I_CFG_FEAT, 0) => put(mem, a4, &info.map_or(0, |i| i.conf_mask).to_ne_bytes()),
            (I_CFG_FEAT, ISOL_F_QUIESCE) => {
                if a4 != QUIESCE_CONTROL {
                    return Err(EINVAL);
                }
                let i = info.unwrap_or_default();
                put(
                    mem,
                    a5,
                    &words(&[0, i.quiesce_mask, i.oneshot_mask], QUIESCE_CONTROL_SIZE),
                )
            }
            (I_CFG_INHERIT, _) => {
                let i = info.ok_or(EINVAL)?;
                let mut b = [0u8; INHERIT_CONTROL_SIZE];
                b[0] = i.inherit_mask;
                put(mem, a3, &b)
            }
            _ => Err(EINVAL),
        },
        PR_ISOL_CFG_SET => match (a2, a3) {
            (I_CFG_FEAT, ISOL_F_QUIESCE) => {
                if a4 != QUIESCE_CONTROL {
                    return Err(EINVAL);
                }
                let b = get::<QUIESCE_CONTROL_SIZE>(mem, a5)?;
                let (flags, quiesce, oneshot) = (u64_at(&b, 0), u64_at(&b, 1), u64_at(&b, 2));
                if flags != 0 || quiesce & !ISOL_F_QUIESCE_VMSTATS != 0 || oneshot & !quiesce != 0 {
                    return Err(EINVAL);
                }
                let i = info.get_or_insert_with(Info::default);
                i.quiesce_mask = quiesce;
                i.oneshot_mask = oneshot;
                i.conf_mask |= ISOL_F_QUIESCE;
                Ok(0)
            }
            (I_CFG_INHERIT, _) => {
                let b = get::<INHERIT_CONTROL_SIZE>(mem, a3)?;
                let m = b[0];
                if m & !(ISOL_INHERIT_CONF | ISOL_INHERIT_ACTIVE) != 0
                    || (m & ISOL_INHERIT_ACTIVE != 0 && m & ISOL_INHERIT_CONF == 0)
                {
                    return Err(EINVAL);
                }
                info.get_or_insert_with(Info::default).inherit_mask = m;
                Ok(0)
            }
            _ => Err(EINVAL),
        },
        PR_ISOL_ACTIVATE_GET => {
            let i = info.ok_or(EINVAL)?;
            put(mem, a2, &i.active_mask.to_ne_bytes())
        }
        PR_ISOL_ACTIVATE_SET => {
            let mask = u64::from_ne_bytes(get::<8>(mem, a2)?);
            if mask & !ISOL_F_QUIESCE != 0 {
                return Err(EINVAL);
            }
            let i = info.as_mut().ok_or(EINVAL)?;
            if mask & !i.conf_mask != 0 {
                return Err(EINVAL);
            }
            i.active_mask = mask;
            Ok(0)
        }
        _ => Err(EINVAL),
    }
}

/// What a child of fork/clone gets (the patch's __copy_task_isol).
pub fn inherit(parent: Option<Info>) -> Option<Info> {
    let p = parent?;
    if p.inherit_mask & (ISOL_INHERIT_CONF | ISOL_INHERIT_ACTIVE) == 0 {
        return None;
    }
    let mut c = Info {
        inherit_mask: p.inherit_mask,
        ..Default::default()
    };
    if p.inherit_mask & ISOL_INHERIT_CONF != 0 {
        c.quiesce_mask = p.quiesce_mask;
        c.conf_mask = p.conf_mask;
        c.oneshot_mask = p.oneshot_mask;
    }
    if p.inherit_mask & ISOL_INHERIT_ACTIVE != 0 {
        c.active_mask = p.active_mask;
    }
    Some(c)
}

/// /proc/PID/task_isolation (fs/proc/base.c of the series).
pub fn proc_text(info: Option<Info>) -> String {
    let i = info.unwrap_or_default();
    fn line(hdr: &str, mask: u64, name: &str) -> String {
        if mask & 1 != 0 {
            format!("{hdr}{name} \n")
        } else {
            format!("{hdr}none \n")
        }
    }
    format!(
        "{}{}{}",
        line("Configured state: ", i.conf_mask, "quiesce"),
        line("Active state: ", i.active_mask, "quiesce"),
        line("Quiescing: ", i.quiesce_mask, "vmstat_sync")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A flat memory: 8-byte-aligned blocks by address.
    #[derive(Default)]
    struct Flat(BTreeMap<u64, u8>);
    impl Mem for Flat {
        fn read(&mut self, a: u64, b: &mut [u8]) -> bool {
            if a == 0 {
                return false;
            }
            for (i, x) in b.iter_mut().enumerate() {
                *x = *self.0.get(&(a + i as u64)).unwrap_or(&0);
            }
            true
        }
        fn write(&mut self, a: u64, d: &[u8]) -> bool {
            if a == 0 {
                return false;
            }
            for (i, x) in d.iter().enumerate() {
                self.0.insert(a + i as u64, *x);
            }
            true
        }
    }

    fn ctrl(m: &mut Flat, at: u64, flags: u64, q: u64, o: u64) {
        m.write(at, &words(&[flags, q, o], QUIESCE_CONTROL_SIZE));
    }

    #[test]
    fn the_documented_rules() {
        let mut m = Flat::default();
        let mut s = None;
        // Nothing configured: ACTIVATE_SET and the inherit query fail.
        m.write(0x100, &ISOL_F_QUIESCE.to_ne_bytes());
        assert_eq!(
            prctl(&mut s, [PR_ISOL_ACTIVATE_SET, 0x100, 0, 0, 0], &mut m),
            Err(EINVAL)
        );
        assert_eq!(
            prctl(&mut s, [PR_ISOL_ACTIVATE_GET, 0x108, 0, 0, 0], &mut m),
            Err(EINVAL)
        );
        // Flags must be 0, the one-shot mask a subset, only vmstat known.
        ctrl(&mut m, 0x200, 1, 1, 0);
        let set = [
            PR_ISOL_CFG_SET,
            I_CFG_FEAT,
            ISOL_F_QUIESCE,
            QUIESCE_CONTROL,
            0x200,
        ];
        assert_eq!(prctl(&mut s, set, &mut m), Err(EINVAL));
        ctrl(&mut m, 0x200, 0, 0, 1);
        assert_eq!(prctl(&mut s, set, &mut m), Err(EINVAL));
        ctrl(&mut m, 0x200, 0, 2, 0);
        assert_eq!(prctl(&mut s, set, &mut m), Err(EINVAL));
        let mut bad = set;
        bad[3] = 2;
        ctrl(&mut m, 0x200, 0, 1, 1);
        assert_eq!(prctl(&mut s, bad, &mut m), Err(EINVAL));
        assert_eq!(s, None);
        assert_eq!(prctl(&mut s, set, &mut m), Ok(0));
        assert_eq!(s.unwrap().conf_mask, ISOL_F_QUIESCE);
        // INHERIT_ACTIVE needs CONF; unknown bits refused.
        m.write(0x300, &[ISOL_INHERIT_ACTIVE, 0, 0, 0, 0, 0, 0, 0]);
        let inh = [PR_ISOL_CFG_SET, I_CFG_INHERIT, 0x300, 0, 0];
        assert_eq!(prctl(&mut s, inh, &mut m), Err(EINVAL));
        m.write(0x300, &[4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(prctl(&mut s, inh, &mut m), Err(EINVAL));
        m.write(0x300, &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(prctl(&mut s, inh, &mut m), Ok(0));
        // CFG_GET answers what was set.
        assert_eq!(
            prctl(&mut s, [PR_ISOL_CFG_GET, I_CFG_FEAT, 0, 0x400, 0], &mut m),
            Ok(0)
        );
        let mut b = [0u8; 8];
        m.read(0x400, &mut b);
        assert_eq!(u64::from_ne_bytes(b), ISOL_F_QUIESCE);
        assert_eq!(
            prctl(
                &mut s,
                [
                    PR_ISOL_CFG_GET,
                    I_CFG_FEAT,
                    ISOL_F_QUIESCE,
                    QUIESCE_CONTROL,
                    0x500
                ],
                &mut m
            ),
            Ok(0)
        );
        let mut b = [0u8; 64];
        m.read(0x500, &mut b);
        assert_eq!((u64_at(&b, 1), u64_at(&b, 2)), (1, 1));
        // Activation, and what a child gets.
        assert_eq!(
            prctl(&mut s, [PR_ISOL_ACTIVATE_SET, 0x100, 0, 0, 0], &mut m),
            Ok(0)
        );
        assert_eq!(s.unwrap().active_mask, ISOL_F_QUIESCE);
        let child = inherit(s).unwrap();
        assert_eq!(child.active_mask, ISOL_F_QUIESCE);
        assert_eq!(child.quiesce_mask, 1);
        s.as_mut().unwrap().inherit_mask = ISOL_INHERIT_CONF;
        assert_eq!(inherit(s).unwrap().active_mask, 0);
        s.as_mut().unwrap().inherit_mask = 0;
        assert_eq!(inherit(s), None);
        assert_eq!(
            proc_text(s),
            "Configured state: quiesce \nActive state: quiesce \nQuiescing: vmstat_sync \n"
        );
        assert_eq!(
            proc_text(None),
            "Configured state: none \nActive state: none \nQuiescing: none \n"
        );
        // A bad pointer is EFAULT.
        assert_eq!(
            prctl(&mut s, [PR_ISOL_FEAT_GET, 0, 0, 0, 0], &mut m),
            Err(EFAULT)
        );
    }
}
