//! Signals as people write them on a command line or in a config: a
//! number, or a name with or without an upper-case `SIG`, the name itself
//! in any case (`KILL`, `SIGusr1`, `term`, `9`).

/// The signal `s` names, or `None`. A number is taken as it is: callers
/// that need a range check it.
pub fn parse(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Some(n);
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
#[test]
fn names_in_any_case_with_or_without_sig_and_numbers() {
    assert_eq!(parse("KILL"), Some(libc::SIGKILL));
    assert_eq!(parse("SIGKILL"), Some(libc::SIGKILL));
    assert_eq!(parse("usr1"), Some(libc::SIGUSR1));
    assert_eq!(parse("SIGusr1"), Some(libc::SIGUSR1));
    assert_eq!(parse("term"), Some(libc::SIGTERM));
    assert_eq!(parse("9"), Some(9));
    assert_eq!(parse("NOPE"), None);
    assert_eq!(parse(""), None);
}
