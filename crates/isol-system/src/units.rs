//! Durations for people, the same in every report isol prints:
//! `850 ns`, `12.5 us`, `2.31 ms` (JSON keeps integer nanoseconds).

/// A duration in nanoseconds, in the unit that keeps it short.
pub fn ns(v: u64) -> String {
    match v {
        0..=9_999 => format!("{v} ns"),
        10_000..=999_999 => format!("{:.1} us", v as f64 / 1e3),
        _ => format!("{:.2} ms", v as f64 / 1e6),
    }
}

#[cfg(test)]
#[test]
fn units_switch_where_the_number_would_grow_long() {
    assert_eq!(ns(850), "850 ns");
    assert_eq!(ns(9_999), "9999 ns");
    assert_eq!(ns(12_500), "12.5 us");
    assert_eq!(ns(2_310_000), "2.31 ms");
    assert_eq!(ns(1_500_000_000), "1500.00 ms");
}
