//! The case × kernel verdict table of `klpt matrix` (and `--matrix`), as
//! Markdown and JSON.

use super::results::{TrialResult, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Matrix {
    /// Column names, `arch/kernel`, in plan order.
    pub columns: Vec<String>,
    /// One row per case, in case-id order.
    pub rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub case: String,
    /// Column → verdict word.
    pub results: BTreeMap<String, Verdict>,
    /// Column → reason (a failure's first line, a skip's reason).
    pub reasons: BTreeMap<String, String>,
}

impl Matrix {
    pub fn from_results(results: &[TrialResult]) -> Matrix {
        let mut columns: Vec<String> = Vec::new();
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for r in results {
            let col = format!("{}/{}", r.arch, r.kernel);
            if !columns.contains(&col) {
                columns.push(col.clone());
            }
            let row = rows.entry(r.case_id.clone()).or_insert_with(|| Row {
                case: r.case_id.clone(),
                results: BTreeMap::new(),
                reasons: BTreeMap::new(),
            });
            row.results.insert(col.clone(), r.verdict);
            let why = match r.verdict {
                Verdict::Pass => String::new(),
                Verdict::Skip | Verdict::Xfail => r.message.clone(),
                _ => r.first_line(),
            };
            if !why.is_empty() {
                row.reasons.insert(col, why);
            }
        }
        Matrix { columns, rows: rows.into_values().collect() }
    }

    /// A Markdown table (renders in a terminal and in the README alike).
    pub fn text(&self) -> String {
        let mut s = format!("| case | {} |\n|---|{}\n", self.columns.join(" | "), "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let v: Vec<&str> =
                self.columns.iter().map(|c| row.results.get(c).map(|v| v.as_str()).unwrap_or("-")).collect();
            s.push_str(&format!("| {} | {} |\n", row.case, v.join(" | ")));
        }
        s
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a matrix serialises") + "\n"
    }
}
