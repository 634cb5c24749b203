//! The race raised against the strict-mode patch, on every kernel of the
//! matrix with CPU 1 isolated (scenario lab/scenarios/races.sh): 200
//! strict activations while the task's own thread on CPU 0 sends CPU 1
//! TLB-flush IPIs throughout. IPIs that reached the task while it
//! activated, or were queued before its activation, are counted, never
//! breaks; the storm still breaks each activation it reaches after.
//! 5.10 has no NO_HZ_FULL: strict activation is refused there, saying why.

use isol_lab::{testprogs::capi_sample, Flavour, KernelSpec, Lab, Series};

fn on(series: Series, rounds: u32) -> String {
    let out = Lab::new()
        .unwrap()
        .kernel(KernelSpec::new(series, Flavour::Cloud))
        .env("ROUNDS", &rounds.to_string())
        .quiet_cpu1()
        .timeout(std::time::Duration::from_secs(600))
        .file(capi_sample("userloop").unwrap(), "/bin/userloop")
        .run_scenario("races")
        .unwrap();
    eprintln!("{}\n{}", out.summary(), out.stdout);
    out.ensure_success().unwrap();
    out.section("races").unwrap().text
}

fn races_on(series: Series, rounds: u32) {
    let s = on(series, rounds);
    assert!(s.contains("userloop_status=0"), "{s}");
    let line = s
        .lines()
        .find(|l| l.starts_with("races: rounds="))
        .unwrap_or_else(|| panic!("no summary: {s}"));
    let num = |k: &str| -> u64 {
        line.split(&format!("{k}="))
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(num("rounds"), rounds as u64, "{s}");
    // No break by an IPI queued before its activation.
    assert_eq!(num("false_breaks"), 0, "{s}");
    // The storm reached activations (each of these was a break before).
    assert!(num("raced") > 0, "{s}");
    // Every activation ended in a break (at the latest the status page's
    // system call), and the storm's IPIs made some, with their sender.
    assert_eq!(num("broken"), rounds as u64, "{s}");
    assert!(num("ipi_breaks") > 0, "{s}");
}

#[test]
fn strict_activation_is_refused_on_5_10_where_the_tick_cannot_stop() {
    let s = on(Series::V5_10, 1);
    assert!(s.contains("userloop_status=1"), "{s}");
    assert!(
        s.contains("isol_activate: the tick did not stop on CPU 1")
            && s.contains("not in nohz_full="),
        "{s}"
    );
}

#[test]
fn activation_races_on_6_1() {
    // Each activation there waits seconds under emulation for the tick to
    // stop (isold polls /proc/timer_list on a CPU 0 the spinning CPU 1
    // halves): fewer rounds, the same checks.
    races_on(Series::V6_1, 10);
}

#[test]
fn activation_races_on_6_12() {
    races_on(Series::V6_12, 200);
}
