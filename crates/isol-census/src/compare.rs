//! `isol census --compare A.json B.json`: two runs (or two kernels, or a
//! patched and an unpatched one) side by side. Counts are compared as
//! rates per minute, so runs of different lengths compare fairly.

use crate::report::Report;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// Callback (IPIs), `class/kind/detail` (interruptions) or
    /// `callback <= frame <= frame` (sender stacks).
    pub key: String,
    pub a_count: u64,
    pub b_count: u64,
    pub a_per_min: f64,
    pub b_per_min: f64,
    /// b_per_min - a_per_min.
    pub delta_per_min: f64,
    /// `gone` (in A only), `new` (in B only), `fewer`, `more`, `same`.
    pub change: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    pub a: Side,
    pub b: Side,
    pub ipis: Row,
    pub callbacks: Vec<Row>,
    pub senders: Vec<Row>,
    pub interruptions: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub label: String,
    pub source: String,
    pub kernel: String,
    pub cpus: String,
    pub duration_s: f64,
}

fn row(key: String, a: (u64, f64), b: (u64, f64)) -> Row {
    let d = b.1 - a.1;
    // Rates within 10% (or both below 0.05/min) count as the same.
    let same = (d.abs() <= 0.1 * a.1.max(b.1)) || (a.1 < 0.05 && b.1 < 0.05);
    let change = match (a.0, b.0) {
        (x, 0) if x > 0 => "gone",
        (0, y) if y > 0 => "new",
        _ if same => "same",
        _ if d < 0.0 => "fewer",
        _ => "more",
    };
    Row {
        key,
        a_count: a.0,
        b_count: b.0,
        a_per_min: a.1,
        b_per_min: b.1,
        delta_per_min: d,
        change,
    }
}

fn join(a: BTreeMap<String, (u64, f64)>, b: BTreeMap<String, (u64, f64)>) -> Vec<Row> {
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<Row> = keys
        .into_iter()
        .map(|k| {
            let x = a.get(&k).copied().unwrap_or((0, 0.0));
            let y = b.get(&k).copied().unwrap_or((0, 0.0));
            row(k, x, y)
        })
        .collect();
    rows.sort_by(|x, y| {
        y.delta_per_min
            .abs()
            .total_cmp(&x.delta_per_min.abs())
            .then(x.key.cmp(&y.key))
    });
    rows
}

/// Sender rows keyed by callback and their first frames past the IPI
/// machinery (so the same path compares equal across kernels whose
/// innermost smp_call_function frames differ).
fn sender_key(callback: &str, stack: &[String]) -> String {
    let generic = |f: &str| {
        f.starts_with("smp_call_function")
            || f.starts_with("on_each_cpu")
            || f.starts_with("__smp_call_single_queue")
            || f.starts_with("generic_exec_single")
            || f.starts_with("send_call_function")
            || f.starts_with("native_send_call_func")
            || f.starts_with("__irq_work_queue")
            || f.starts_with("irq_work_queue")
            || f.starts_with("arch_send_call_function")
            || f.starts_with("x2apic_send_IPI")
            || f.starts_with("__x2apic_send_IPI")
    };
    let frames: Vec<&str> = stack
        .iter()
        .map(String::as_str)
        .skip_while(|f| generic(f))
        .take(4)
        .collect();
    if frames.is_empty() {
        callback.to_string()
    } else {
        format!("{callback} <= {}", frames.join(" <= "))
    }
}

pub fn compare(a: &Report, b: &Report, a_label: &str, b_label: &str) -> Comparison {
    let side = |r: &Report, label: &str| Side {
        label: label.to_string(),
        source: r.source.clone(),
        kernel: r.kernel.clone(),
        cpus: r.cpus.to_string(),
        duration_s: r.duration_s,
    };
    let cbs = |r: &Report| {
        r.callbacks
            .iter()
            .map(|c| (c.callback.clone(), (c.count, c.per_min)))
            .collect::<BTreeMap<_, _>>()
    };
    let senders = |r: &Report| {
        let mut m: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        for s in &r.senders {
            let e = m.entry(sender_key(&s.callback, &s.stack)).or_default();
            e.0 += s.count;
            e.1 += s.per_min;
        }
        m
    };
    let ints = |r: &Report| {
        r.interruption_table
            .iter()
            .filter(|i| i.class != "ipi")
            .map(|i| {
                (
                    format!("{}/{}/{}", i.class, i.kind, i.detail),
                    (i.count, i.per_min),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    Comparison {
        schema: "isol.census-compare/1",
        a: side(a, a_label),
        b: side(b, b_label),
        ipis: row(
            "all IPIs".into(),
            (a.ipis, a.ipis_per_min),
            (b.ipis, b.ipis_per_min),
        ),
        callbacks: join(cbs(a), cbs(b)),
        senders: join(senders(a), senders(b)),
        interruptions: join(ints(a), ints(b)),
    }
}

impl Comparison {
    pub fn text(&self, top: usize) -> String {
        let mut o = String::new();
        for (n, s) in [("A", &self.a), ("B", &self.b)] {
            let _ = writeln!(
                o,
                "{n}: {} ({}{}, CPUs {}, {:.1} s)",
                s.label,
                s.source,
                if s.kernel.is_empty() {
                    String::new()
                } else {
                    format!(", {}", s.kernel)
                },
                s.cpus,
                s.duration_s
            );
        }
        let head = |o: &mut String, title: &str| {
            let _ = writeln!(o, "\n{title}");
            let _ = writeln!(
                o,
                "{:>8} {:>8} {:>10} {:>10} {:>10}  {:<6} key",
                "A", "B", "A/min", "B/min", "delta/min", "change"
            );
        };
        let line = |o: &mut String, r: &Row| {
            let _ = writeln!(
                o,
                "{:>8} {:>8} {:>10.1} {:>10.1} {:>+10.1}  {:<6} {}",
                r.a_count, r.b_count, r.a_per_min, r.b_per_min, r.delta_per_min, r.change, r.key
            );
        };
        head(&mut o, "IPIs by callback");
        line(&mut o, &self.ipis);
        for r in &self.callbacks {
            line(&mut o, r);
        }
        head(&mut o, &format!("IPIs by sender path (top {top} changes)"));
        for r in self.senders.iter().take(top) {
            line(&mut o, r);
        }
        head(&mut o, &format!("Other interruptions (top {top} changes)"));
        for r in self.interruptions.iter().take(top) {
            line(&mut o, r);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CallbackRow, SenderRow};

    fn rep(rows: &[(&str, u64)], minutes: f64) -> Report {
        let mut r = Report::new("isol");
        r.duration_s = minutes * 60.0;
        for (cb, n) in rows {
            r.callbacks.push(CallbackRow {
                callback: cb.to_string(),
                count: *n,
                per_min: *n as f64 / minutes,
                ..Default::default()
            });
            r.senders.push(SenderRow {
                callback: cb.to_string(),
                count: *n,
                per_min: *n as f64 / minutes,
                stack: vec![
                    "smp_call_function_many_cond".into(),
                    "on_each_cpu_cond_mask".into(),
                    "text_poke_bp_batch".into(),
                ],
                ..Default::default()
            });
            r.ipis += n;
        }
        r.ipis_per_min = r.ipis as f64 / minutes;
        r
    }

    #[test]
    fn seed_004_before_and_after_the_patches() {
        let a = rep(
            &[
                ("do_flush_tlb_all", 236),
                ("do_sync_core", 576),
                ("generic_smp_call_function_single_interrupt", 814),
                ("nohz_full_kick_func", 309),
            ],
            20.0,
        );
        let b = rep(
            &[
                ("do_flush_tlb_all", 22),
                ("generic_smp_call_function_single_interrupt", 24),
                ("nohz_full_kick_func", 307),
            ],
            20.0,
        );
        let c = compare(&a, &b, "v6.4", "v6.4+patches");
        let get = |k: &str| c.callbacks.iter().find(|r| r.key == k).unwrap();
        assert_eq!(get("do_sync_core").change, "gone");
        assert_eq!(get("do_sync_core").b_count, 0);
        assert_eq!(get("do_flush_tlb_all").change, "fewer");
        assert_eq!(get("nohz_full_kick_func").change, "same");
        // Largest change first.
        assert_eq!(
            c.callbacks[0].key,
            "generic_smp_call_function_single_interrupt"
        );
        assert_eq!(c.ipis.a_count, 1935);
        assert!(c
            .senders
            .iter()
            .any(|r| r.key == "do_sync_core <= text_poke_bp_batch"));
        let t = c.text(5);
        assert!(t.contains("gone   do_sync_core"), "{t}");
        let n = compare(&b, &a, "x", "y");
        assert_eq!(
            n.callbacks
                .iter()
                .find(|r| r.key == "do_sync_core")
                .unwrap()
                .change,
            "new"
        );
    }

    #[test]
    fn rates_not_counts_when_durations_differ() {
        let a = rep(&[("flush_tlb_func", 100)], 1.0);
        let b = rep(&[("flush_tlb_func", 200)], 2.0);
        let c = compare(&a, &b, "a", "b");
        assert_eq!(c.callbacks[0].change, "same");
    }
}
