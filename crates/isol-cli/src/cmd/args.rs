//! Argument parsers shared by the subcommands (durations as `90`, `90s`,
//! `20m`, `1h`). CPU lists parse through `CpuSet`'s `FromStr`.

use isol_capture::threshold::{Action, Ring, Timed};

/// `--on-threshold` and its trace ring, shared by `isol watch` and
/// `isol noise` (rtla's options of the same name).
#[derive(clap::Args, Clone, Debug)]
pub struct OnThreshold {
    /// What to do when the threshold is reached, in order (repeatable):
    /// `trace[,file=PATH]` writes the CPU's last --trace-window-ms of
    /// records, up to the one that crossed, as JSON lines (default file
    /// isol_trace.jsonl); `signal,num=N,pid=P|parent` sends signal N;
    /// `shell,command=CMD` runs CMD with /bin/sh, the event in ISOL_EVENT,
    /// ISOL_CPU, ISOL_START_NS, ISOL_DURATION_NS, ISOL_CAUSE; `continue`
    /// keeps going (default: stop after the actions). Actions run from
    /// isol's reader, which isol keeps off the watched CPUs, about one
    /// --drain-ms period after the event.
    #[arg(long = "on-threshold", value_name = "ACTION")]
    pub actions: Vec<Action>,
    /// How much of the CPU's past the `trace` action writes, in ms.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub trace_window_ms: u64,
    /// Bound of the trace ring per CPU, in KiB (records past it are
    /// dropped, oldest first, and counted).
    #[arg(long, value_name = "KIB", default_value_t = 4096)]
    pub trace_buffer_kb: usize,
}

impl OnThreshold {
    /// Whether the command stops after the first crossing's actions.
    pub fn stops(&self) -> bool {
        !self.actions.contains(&Action::Continue)
    }

    pub fn traces(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::Trace { .. }))
    }

    /// The ring the `trace` action reads (empty bound when none traces).
    pub fn ring<T: Timed + Clone>(&self) -> Ring<T> {
        let bytes = if self.traces() {
            self.trace_buffer_kb.saturating_mul(1024)
        } else {
            0
        };
        Ring::with_bytes(self.trace_window_ms.saturating_mul(1_000_000), bytes)
    }
}

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
