//! `--json`: the report as one pretty-printed object (schema isol.noise/3,
//! docs/json/noise.md).

use super::Report;

pub fn render(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("the report serialises")
}
