//! Scenarios (shell scripts run by the guest's /init) and their outcome.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Script body to run in the guest, sourced by `sh` after `/lab/lib.sh`.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// `lab/scenarios/NAME.sh`.
    Named(String),
    /// Any script file.
    File(PathBuf),
    /// Script text.
    Inline(String),
}

impl Scenario {
    pub fn label(&self) -> String {
        match self {
            Scenario::Named(n) => n.clone(),
            Scenario::File(p) => p.display().to_string(),
            Scenario::Inline(_) => "<inline>".into(),
        }
    }
}

const SECTION_BEGIN: &str = "@@ISOL-LAB-SECTION-BEGIN ";
const SECTION_END: &str = "@@ISOL-LAB-SECTION-END ";
pub(crate) const EXIT_MARKER: &str = "@@ISOL-LAB-EXIT status=";

/// Output of one `section NAME cmd...` call in a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// The command's stdout (one trailing newline removed).
    pub text: String,
    /// The command's exit status.
    pub rc: i32,
}

/// Result of one boot.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub scenario: String,
    /// Exit status of the scenario script.
    pub status: i32,
    /// What the scenario printed (stdout and stderr), markers of init removed.
    pub stdout: String,
    /// Kernel console (ttyS0), for diagnostics.
    pub console: String,
    /// Host wall time from starting QEMU until the scenario started.
    pub boot_time: Duration,
    /// Guest /proc/uptime when the scenario started.
    pub guest_uptime: Option<f64>,
    /// Host wall time from starting QEMU until it exited.
    pub total_time: Duration,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// The series and flavour booted.
    pub kernel: crate::KernelSpec,
    /// How the scenario's output reached the host (None: the guest never
    /// started the scenario).
    pub output_channel: Option<crate::Channel>,
    /// Full kernel command line.
    pub cmdline: String,
    /// Boots repeated because the kernel crashed before /init ran (0 or 1).
    pub boot_retries: u32,
    /// Time spent waiting for another lab VM on this host to finish.
    pub slot_wait: Duration,
}

impl Outcome {
    /// All sections, in order.
    pub fn sections(&self) -> Vec<Section> {
        parse_sections(&self.stdout)
    }

    /// The first section named `name`.
    pub fn section(&self, name: &str) -> Result<Section> {
        self.sections()
            .into_iter()
            .find(|s| s.name == name)
            .with_context(|| {
                format!(
                    "scenario {} printed no section {name:?} (status {}); output:\n{}",
                    self.scenario,
                    self.status,
                    crate::tail(&self.stdout, 40)
                )
            })
    }

    /// Parse section `name` as one JSON document.
    pub fn json_section(&self, name: &str) -> Result<serde_json::Value> {
        let s = self.section(name)?;
        serde_json::from_str(&s.text).with_context(|| {
            format!(
                "section {name:?} (command status {}) is not valid JSON:\n{}",
                s.rc,
                crate::tail(&s.text, 40)
            )
        })
    }

    /// Err (with output and console tails) unless the scenario exited 0.
    pub fn ensure_success(&self) -> Result<&Self> {
        if self.status != 0 {
            bail!(
                "{}",
                self.report(&format!("exited with status {}", self.status))
            );
        }
        Ok(self)
    }

    /// One-line timing summary.
    pub fn summary(&self) -> String {
        format!(
            "scenario {} on {}: status {}, boot {:.2}s (guest uptime {}), total {:.2}s{}{}{}",
            self.scenario,
            self.kernel_release,
            self.status,
            self.boot_time.as_secs_f64(),
            self.guest_uptime.map_or("?".into(), |u| format!("{u:.2}s")),
            self.total_time.as_secs_f64(),
            if self.output_channel == Some(crate::Channel::Serial) {
                ", output over ttyS1"
            } else {
                ""
            },
            if self.boot_retries > 0 {
                " (after a crashed boot)"
            } else {
                ""
            },
            if self.slot_wait.as_secs_f64() >= 0.5 {
                format!(
                    ", waited {:.1}s for another lab VM",
                    self.slot_wait.as_secs_f64()
                )
            } else {
                String::new()
            }
        )
    }

    pub(crate) fn report(&self, what: &str) -> String {
        format!(
            "scenario {} {what} (kernel {}, cmdline {:?})\n--- scenario output (tail) ---\n{}\n--- kernel console (tail) ---\n{}",
            self.scenario,
            self.kernel_release,
            self.cmdline,
            crate::tail(&self.stdout, 60),
            crate::tail(&self.console, 30)
        )
    }
}

/// Split ttyS1 output into (guest uptime at ready, scenario output, exit status).
pub(crate) fn split_output(raw: &str) -> (Option<f64>, String, Option<i32>) {
    let mut uptime = None;
    let mut body = raw;
    if let Some(i) = raw.find(crate::qemu::READY_MARKER) {
        let rest = &raw[i + crate::qemu::READY_MARKER.len()..];
        let line_end = rest.find('\n').map_or(rest.len(), |n| n + 1);
        uptime = rest[..line_end]
            .trim()
            .trim_start_matches(" uptime=")
            .trim_start_matches("uptime=")
            .trim_end_matches("@@")
            .parse()
            .ok();
        body = &rest[line_end..];
    }
    let mut status = None;
    let mut stdout = body.to_owned();
    if let Some(i) = body.rfind(EXIT_MARKER) {
        let rest = &body[i + EXIT_MARKER.len()..];
        status = rest.split("@@").next().and_then(|s| s.trim().parse().ok());
        stdout = body[..i].to_owned();
    }
    (uptime, stdout, status)
}

fn parse_sections(out: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut rest = out;
    while let Some(b) = rest.find(SECTION_BEGIN) {
        let after = &rest[b + SECTION_BEGIN.len()..];
        let Some(name_end) = after.find("@@") else {
            break;
        };
        let name = after[..name_end].to_owned();
        let body_start = after[name_end..]
            .find('\n')
            .map_or(after.len(), |n| name_end + n + 1);
        let body = &after[body_start..];
        let end_marker = format!("\n{SECTION_END}{name} rc=");
        let Some(e) = body.find(&end_marker) else {
            // Unterminated (the guest died in the middle): keep what is there.
            sections.push(Section {
                name,
                text: body.to_owned(),
                rc: -1,
            });
            break;
        };
        let mut text = &body[..e];
        text = text.strip_suffix('\n').unwrap_or(text);
        let tail = &body[e + end_marker.len()..];
        let rc = tail
            .split("@@")
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        sections.push(Section {
            name,
            text: text.to_owned(),
            rc,
        });
        rest = tail;
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_markers_and_sections() {
        let raw = "@@ISOL-LAB-READY uptime=1.25@@\nhello\n\
                   @@ISOL-LAB-SECTION-BEGIN info@@\n{\"a\": 1}\n\n@@ISOL-LAB-SECTION-END info rc=0@@\n\
                   @@ISOL-LAB-SECTION-BEGIN two@@\nno newline\n@@ISOL-LAB-SECTION-END two rc=2@@\n\
                   [stderr] oops\n@@ISOL-LAB-EXIT status=3@@\n";
        let (up, out, status) = split_output(raw);
        assert_eq!(up, Some(1.25));
        assert_eq!(status, Some(3));
        assert!(out.starts_with("hello\n"));
        let s = parse_sections(&out);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].text, "{\"a\": 1}");
        assert_eq!(s[0].rc, 0);
        assert_eq!(s[1].text, "no newline");
        assert_eq!(s[1].rc, 2);
    }

    #[test]
    fn missing_exit_marker() {
        let (_, out, status) = split_output("@@ISOL-LAB-READY uptime=1@@\npartial");
        assert_eq!(status, None);
        assert_eq!(out, "partial");
    }
}
