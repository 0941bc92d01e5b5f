//! The case × kernel verdict table of `klpt matrix`, as text and JSON.

use super::Outcome;
use std::collections::{BTreeMap, BTreeSet};

pub struct Matrix {
    /// Column names: `arch/kernel`.
    pub columns: Vec<String>,
    /// Case id → column → verdict word.
    pub rows: BTreeMap<String, BTreeMap<String, String>>,
    /// Case id → column → reason (failure's first line, skip reason).
    pub reasons: BTreeMap<String, BTreeMap<String, String>>,
}

impl Matrix {
    pub fn from_outcomes(outcomes: &[Outcome]) -> Matrix {
        let mut columns = BTreeSet::new();
        let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut reasons: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for o in outcomes {
            let col = format!("{}/{}", o.arch, o.kernel);
            columns.insert(col.clone());
            rows.entry(o.case_id.clone()).or_default().insert(col.clone(), o.word().to_string());
            let why = match &o.status {
                super::Status::Fail(f) => f.first_line(),
                super::Status::Skip(r) | super::Status::Xfail(r) => r.clone(),
                super::Status::Pass => String::new(),
            };
            if !why.is_empty() {
                reasons.entry(o.case_id.clone()).or_default().insert(col, why);
            }
        }
        Matrix { columns: columns.into_iter().collect(), rows, reasons }
    }

    /// A Markdown table (renders in a terminal and in the README alike).
    pub fn text(&self) -> String {
        let mut s = format!("| case | {} |\n|---|{}\n", self.columns.join(" | "), "---|".repeat(self.columns.len()));
        for (case, cells) in &self.rows {
            let v: Vec<&str> = self.columns.iter().map(|c| cells.get(c).map(String::as_str).unwrap_or("-")).collect();
            s.push_str(&format!("| {case} | {} |\n", v.join(" | ")));
        }
        s
    }

    pub fn json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(case, cells)| {
                serde_json::json!({
                    "case": case,
                    "results": cells,
                    "reasons": self.reasons.get(case).cloned().unwrap_or_default(),
                })
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({ "columns": self.columns, "rows": rows })).unwrap_or_default() + "\n"
    }
}
