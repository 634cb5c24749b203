//! Fuzzing on stable Rust (proptest): the inputs users hand `isol census`
//! (a `trace-cmd report` for --import, census JSON for --compare) may be
//! anything. Nothing panics; what parses obeys the report's invariants.
//! CI runs the default case count; a long run sets PROPTEST_CASES
//! (scripts/fuzz-long.sh).

use isol_census::compare::compare;
use isol_census::import::{import_text, parse_line};
use isol_census::report::Report;
use isol_cpulist::CpuSet;
use proptest::prelude::*;
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/trace-cmd-report.txt");

/// Lines shaped like trace-cmd's, with hostile fields, mixed with the
/// real recording's lines and with anything at all.
fn line() -> impl Strategy<Value = String> {
    let real: Vec<String> = FIXTURE.lines().map(String::from).collect();
    let event = prop_oneof![
        Just("ipi_send_cpu".to_string()),
        Just("ipi_send_cpumask".to_string()),
        Just("csd_queue_cpu".to_string()),
        Just("kernel_stack".to_string()),
        Just("sched_switch".to_string()),
        "[a-z_]{0,12}",
    ];
    let value = prop_oneof![
        "[0-9]{0,25}",
        "[0-9,\\-]{0,20}",
        "[a-z_]{0,10}\\+0x[0-9a-f]{0,18}",
        "\\PC{0,12}",
    ];
    let key = prop_oneof![
        Just("cpu".to_string()),
        Just("cpumask".to_string()),
        Just("callsite".to_string()),
        Just("callback".to_string()),
        Just("func".to_string()),
        "[a-z]{1,6}"
    ];
    let fields = prop::collection::vec((key, value), 0..6).prop_map(|kv| {
        kv.into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let shaped = (
        "\\PC{0,10}",
        any::<u32>(),
        "[0-9]{0,12}",
        "[\\.dhHsb0-9]{0,6}",
        "[0-9\\.e\\-]{0,14}",
        event,
        fields,
    )
        .prop_map(|(comm, pid, cpu, flags, ts, ev, f)| {
            format!("  {comm}-{pid} [{cpu}] {flags} {ts}: {ev}: {f}")
        });
    let stack = "=> [a-z_]{0,12}(\\+0x[0-9a-f]{0,8})? ?\\(?[0-9a-f]{0,16}\\)?";
    prop_oneof![
        4 => shaped,
        2 => proptest::sample::select(real),
        1 => stack,
        1 => "\\PC{0,80}",
    ]
}

/// Apply `edits` to a JSON value's leaves and objects, in walk order.
fn mutate(v: &mut Value, edits: &mut Vec<(u8, i64, String)>, n: &mut usize) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                *n += 1;
                if let Some((op, _, _)) = edits.last() {
                    if *op == 0 && *n % 7 == 0 {
                        edits.pop();
                        m.remove(&k);
                        continue;
                    }
                }
                mutate(m.get_mut(&k).unwrap(), edits, n);
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                mutate(x, edits, n);
            }
        }
        leaf => {
            *n += 1;
            if *n % 3 != 0 {
                return;
            }
            let Some((op, num, s)) = edits.pop() else {
                return;
            };
            *leaf = match op % 5 {
                0 => Value::Null,
                1 => Value::from(num),
                2 => Value::from(num as f64 * 1e300),
                3 => Value::from(s),
                _ => Value::from(u64::MAX),
            };
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn trace_cmd_reports_import_without_panic(
        lines in prop::collection::vec(line(), 0..60),
        cpus in "[0-9]{1,2}(-[0-9]{1,2})?",
    ) {
        let text = lines.join("\n");
        for l in &lines {
            if let Some(p) = parse_line(l) {
                prop_assert!(!p.event.is_empty());
            }
        }
        let set: CpuSet = cpus.parse().unwrap_or_default();
        let r = import_text(&text, &set);
        // What was imported renders, and survives its own JSON.
        let _ = r.text(5);
        let back = Report::from_json(&serde_json::to_string(&r).unwrap()).unwrap();
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&r).unwrap());
    }

    #[test]
    fn census_json_for_compare_is_refused_or_compared_without_panic(
        edits_a in prop::collection::vec((any::<u8>(), any::<i64>(), "\\PC{0,12}"), 0..40),
        edits_b in prop::collection::vec((any::<u8>(), any::<i64>(), "\\PC{0,12}"), 0..40),
        cut in any::<prop::sample::Index>(),
    ) {
        let base = serde_json::to_value(import_text(FIXTURE, &CpuSet::default())).unwrap();
        let (mut a, mut b) = (base.clone(), base);
        let (mut ea, mut eb) = (edits_a, edits_b);
        mutate(&mut a, &mut ea, &mut 0);
        mutate(&mut b, &mut eb, &mut 0);
        let ta = a.to_string();
        // And a truncated document.
        let tb = b.to_string();
        let mut at = cut.index(tb.len() + 1).min(tb.len());
        while !tb.is_char_boundary(at) {
            at -= 1;
        }
        let tb = &tb[..at];
        if let (Ok(ra), Ok(rb)) = (Report::from_json(&ta), Report::from_json(tb)) {
            let c = compare(&ra, &rb, "a", "b");
            let _ = c.text(10);
        }
        if let Ok(ra) = Report::from_json(&ta) {
            let c = compare(&ra, &ra, "a", "a");
            let _ = c.text(10);
        }
    }
}
