//! Fuzzing on stable Rust (proptest) of the /proc texts this crate parses
//! by hand: /proc/PID/stat (whose command name the task itself chooses,
//! and isold reads to tell a task from a later one with its id),
//! /proc/timer_list, /proc/PID/timers and /proc/PID/task_isolation.
//! Never a panic; a start time is read back exactly whatever the name.
//! PROPTEST_CASES raises the count for a long run (scripts/fuzz-long.sh).

use crate::native::parse_proc_state;
use crate::policy::parse_start_time;
use crate::tick::{parse_cpu_timers, parse_timer_list};
use proptest::prelude::*;

/// A command name as a hostile task may set it (prctl PR_SET_NAME): up
/// to 15 bytes, parentheses, spaces and digits included.
fn comm() -> impl Strategy<Value = String> {
    prop_oneof![
        "[() a-z0-9SR]{0,15}",
        "\\PC{0,15}",
        Just(") R 1 2 3".to_string()),
        Just("((((".to_string()),
    ]
}

/// Texts shaped like the kernel's, cut and mutated.
fn mutated(lines: Vec<String>) -> impl Strategy<Value = String> {
    let text = lines.join("\n");
    let n = text.len();
    (0..=n, any::<bool>(), "\\PC{0,8}", 0..=n).prop_map(move |(cut, insert, junk, at)| {
        let mut t: String = text.chars().take(cut).collect();
        if insert {
            let at = at.min(t.len());
            let at = (0..=at).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
            t.insert_str(at, &junk);
        }
        t
    })
}

fn timer_list_lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "cpu: [0-9]{1,4}".prop_map(String::from),
            " #[0-9]: <[0-9a-f]{16}>, (tick_sched_timer|tick_nohz_handler|posix_timer_fn|[a-z_]{1,20}), S:01".prop_map(String::from),
            " # expires at [0-9]{1,20}-[0-9]{1,20} nsecs \\[in -?[0-9]{1,20} to -?[0-9]{1,20} nsecs\\]".prop_map(String::from),
            "  \\.(next_timer|expires_next|tick_stopped|idle_tick|tick_queued)\\s*: -?[0-9]{0,20}( nsecs)?".prop_map(String::from),
            "\\PC{0,40}".prop_map(String::from),
        ],
        0..40,
    )
}

fn cpu_timers_lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "ID: -?[0-9]{0,12}".prop_map(String::from),
            "signal: [0-9]{1,2}/[0-9a-f]{0,16}".prop_map(String::from),
            "notify: (signal|thread|none)/(pid|tid)\\.[0-9]{1,7}".prop_map(String::from),
            "ClockID: -?[0-9]{0,12}".prop_map(String::from),
            "\\PC{0,30}".prop_map(String::from),
        ],
        0..30,
    )
}

fn proc_state_lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "(Configured state|Active state|Quiescing): ((vmstat|lru|timers|none|[a-z]{1,8}) ){0,4}"
                .prop_map(String::from),
            "\\PC{0,30}".prop_map(String::from),
        ],
        0..6,
    )
}

proptest! {
    #[test]
    fn a_start_time_reads_back_whatever_the_command_name(
        pid in 1u32..4_194_304,
        name in comm(),
        state in "[RSDZTtXI]",
        middle in prop::collection::vec(-99_999i64..99_999, 18),
        start in any::<u64>(),
        tail in prop::collection::vec(0u64..1 << 40, 0..30),
    ) {
        let mut stat = format!("{pid} ({name}) {state}");
        for v in &middle {
            stat.push_str(&format!(" {v}"));
        }
        stat.push_str(&format!(" {start}"));
        for v in &tail {
            stat.push_str(&format!(" {v}"));
        }
        stat.push('\n');
        prop_assert_eq!(parse_start_time(&stat), Some(start), "{}", stat);
    }

    #[test]
    fn any_stat_text_parses_without_panic(t in "\\PC{0,200}") {
        let _ = parse_start_time(&t);
    }

    #[test]
    fn any_timer_list_parses_without_panic(t in timer_list_lines().prop_flat_map(mutated)) {
        let cpus = parse_timer_list(&t);
        let _ = format!("{cpus:?}");
    }

    #[test]
    fn any_process_timers_text_parses_without_panic(t in cpu_timers_lines().prop_flat_map(mutated)) {
        for line in parse_cpu_timers(&t) {
            prop_assert!(!line.is_empty());
        }
    }

    #[test]
    fn any_task_isolation_file_parses_without_panic(t in proc_state_lines().prop_flat_map(mutated)) {
        let _ = parse_proc_state(&t);
    }
}
