//! Fuzzing on stable Rust (proptest) of the kernel-text parsers isol wrote
//! by hand: the boot command line (`split`, `isolcpus=`, every parameter
//! isol reads). /proc/interrupts' parser is fuzzed beside it in irq.rs.
//! What the kernel writes is trusted to be well formed, but a command
//! line is what a user typed into a boot loader. Never a panic; what is
//! accepted is consistent. PROPTEST_CASES raises the count for a long run.

use isol_system::cmdline::{parse_isolcpus, split, BootParams};
use isol_system::CpuSet;
use proptest::prelude::*;

fn param() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("isolcpus".to_string()),
        Just("nohz_full".to_string()),
        Just("rcu_nocbs".to_string()),
        Just("irqaffinity".to_string()),
        Just("nohz".to_string()),
        Just("housekeeping".to_string()),
        Just("idle".to_string()),
        Just("intel_idle.max_cstate".to_string()),
        "[a-z_\\.]{1,10}",
    ];
    let value = prop_oneof![
        "(nohz,|domain,|managed_irq,|bogus,){0,3}[0-9,\\-:/N]{0,16}",
        "[0-9,\\-]{0,16}",
        "(all|N|0-N|[0-9]{1,6}-[0-9]{1,6}:[0-9]{0,4}/[0-9]{0,4})",
        "\\PC{0,12}",
    ];
    prop_oneof![
        (key.clone(), value).prop_map(|(k, v)| format!("{k}={v}")),
        key,
        Just("--".to_string()),
        Just("\"".to_string()),
        "\\PC{0,20}",
    ]
}

proptest! {
    #[test]
    fn any_command_line_parses_without_panic(
        params in prop::collection::vec(param(), 0..12),
        sep in prop_oneof![Just(" "), Just("  "), Just("\t"), Just("\n")],
        possible in prop::option::of("0-[0-9]{1,3}"),
    ) {
        let line = params.join(sep);
        let possible: Option<CpuSet> = possible.and_then(|p| p.parse().ok());
        let parts = split(&line);
        for (k, _) in &parts {
            // Whitespace separates, except inside quotes.
            prop_assert!(!k.chars().any(char::is_whitespace) || line.contains('"'));
        }
        let bp = BootParams::parse(&line, possible.as_ref());
        let _ = format!("{bp:?}");
        for (k, v) in parts {
            if k == "isolcpus" {
                if let Ok(i) = parse_isolcpus(v.as_deref().unwrap_or(""), possible.as_ref()) {
                    prop_assert!(!i.flags.is_empty());
                }
            }
        }
    }
}
