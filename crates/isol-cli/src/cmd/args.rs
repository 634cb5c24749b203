//! Argument parsers shared by the subcommands (durations as `90`, `90s`,
//! `20m`, `1h`). CPU lists parse through `CpuSet`'s `FromStr`.

/// Seconds from `90`, `90s`, `20m`, `1h`, `1.5m`.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1.0),
        Some('m') => (&s[..s.len() - 1], 60.0),
        Some('h') => (&s[..s.len() - 1], 3600.0),
        _ => (s, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: not a duration (90, 90s, 20m, 1h)"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?}: the duration must be positive"));
    }
    Ok(v * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90.0);
        assert_eq!(parse_duration("1.5m").unwrap(), 90.0);
        assert_eq!(parse_duration("1h").unwrap(), 3600.0);
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
    }
}
