//! Numbers for people, the same in every report isol prints: durations
//! `850 ns`, `12.5 us`, `2.31 ms`; counts `850`, `12.3 k`, `236.3 M`
//! (JSON keeps the integers).

/// A duration in nanoseconds, in the unit that keeps it short.
pub fn ns(v: u64) -> String {
    match v {
        0..=9_999 => format!("{v} ns"),
        10_000..=999_999 => format!("{:.1} us", v as f64 / 1e3),
        _ => format!("{:.2} ms", v as f64 / 1e6),
    }
}

/// A count, with k/M/G and one decimal past a thousand: `236.3 M` loops
/// reads at a glance where `236312345` needs counting digits.
pub fn count(v: u64) -> String {
    // Thresholds sit where rounding to one decimal would print "1000.0 k".
    match v {
        0..=999 => v.to_string(),
        1_000..=999_949 => format!("{:.1} k", v as f64 / 1e3),
        999_950..=999_949_999 => format!("{:.1} M", v as f64 / 1e6),
        _ => format!("{:.1} G", v as f64 / 1e9),
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

#[cfg(test)]
#[test]
fn counts_read_as_people_say_them() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1_000), "1.0 k");
    assert_eq!(count(12_345), "12.3 k");
    assert_eq!(count(999_949), "999.9 k");
    // Would round to "1000.0 k": a million instead.
    assert_eq!(count(999_950), "1.0 M");
    assert_eq!(count(236_312_345), "236.3 M");
    assert_eq!(count(999_949_999), "999.9 M");
    assert_eq!(count(999_950_000), "1.0 G");
    assert_eq!(count(4_200_000_000), "4.2 G");
}
