//! Strict typed access to YAML values: a string must be a YAML string, a bool
//! a YAML bool, an integer a YAML integer in range. Nothing is coerced or
//! defaulted silently; every mismatch becomes an error at the value's
//! `file:line:col`, and checking goes on so one run reports them all.

use super::error::CaseError;
use super::known::Known;
use super::positions::Positions;
use serde_norway::{Mapping, Value};
use std::ops::RangeInclusive;
use std::path::PathBuf;

pub(super) struct Checker<'a> {
    pub file: PathBuf,
    pub pos: &'a Positions,
    pub known: &'a Known,
    pub errors: Vec<CaseError>,
}

/// How a value reads in a message: "an integer (5)", "a list".
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) if n.is_f64() => format!("a number with a fraction ({n})"),
        Value::Number(n) => format!("an integer ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

impl Checker<'_> {
    /// Every error says how to fix it.
    pub fn err(&mut self, path: &str, msg: impl Into<String>, hint: impl Into<String>) {
        let pos = self.pos.get(path);
        self.errors.push(CaseError { file: self.file.clone(), pos, msg: msg.into(), hint: Some(hint.into()) });
    }

    fn wrong(&mut self, p: &str, want: &str, v: &Value, hint: impl Into<String>) {
        let msg = format!("`{}` must be {want}, not {}", key_of(p), describe(v));
        self.err(p, msg, hint);
    }

    /// A mapping whose keys are strings from `allowed`.
    pub fn map<'v>(&mut self, p: &str, v: &'v Value, allowed: &[&str]) -> Option<&'v Mapping> {
        let m = self.any_map(p, v, &format!("keys: {}", allowed.join(", ")))?;
        for k in m.keys() {
            if let Some(ks) = k.as_str() {
                if !allowed.contains(&ks) {
                    let kp = if p.is_empty() { ks.to_string() } else { format!("{p}.{ks}") };
                    let hint = format!("allowed here: {}{}", allowed.join(", "), suggest(ks, allowed));
                    self.err(&kp, format!("unknown key `{ks}`"), hint);
                }
            }
        }
        Some(m)
    }

    /// A mapping with string keys (which ones is the caller's business).
    pub fn any_map<'v>(&mut self, p: &str, v: &'v Value, hint: &str) -> Option<&'v Mapping> {
        let Some(m) = v.as_mapping() else {
            let hint = if v.is_sequence() {
                format!("write `key: value` entries, not a `- ` list; {hint}")
            } else {
                hint.to_string()
            };
            self.wrong(p, "a mapping", v, hint);
            return None;
        };
        for k in m.keys() {
            if !k.is_string() {
                self.err(p, format!("keys must be strings, not {}", describe(k)), "quote the key");
            }
        }
        Some(m)
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn required<'v>(&mut self, p: &str, m: &'v Mapping, key: &str, hint: &str) -> Option<&'v Value> {
        let v = m.get(key);
        if v.is_none() {
            let hint = if hint.is_empty() { format!("add `{key}:`") } else { format!("add `{key}:`, {hint}") };
            self.err(p, format!("missing `{key}:`"), hint);
        }
        v
    }

    pub fn string(&mut self, p: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) if s.contains('\0') => {
                self.err(p, "text must not contain NUL characters", "remove the `\\0`");
                None
            }
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => {
                self.wrong(p, "a string", v, format!("quote it: '{n}'"));
                None
            }
            Value::Bool(b) => {
                self.wrong(p, "a string", v, format!("quote it: '{b}'"));
                None
            }
            _ => {
                self.wrong(p, "a string", v, "write text, quoted if it looks like a number or a boolean");
                None
            }
        }
    }

    /// A string with something other than blanks in it.
    pub fn text(&mut self, p: &str, v: &Value) -> Option<String> {
        let s = self.string(p, v)?;
        if s.trim().is_empty() {
            let msg = format!("`{}` must not be empty", key_of(p));
            self.err(p, msg, "write something, or drop the key");
            return None;
        }
        Some(s)
    }

    pub fn boolean(&mut self, p: &str, v: &Value) -> Option<bool> {
        if let Value::Bool(b) = v {
            return Some(*b);
        }
        self.wrong(p, "true or false", v, "write `true` or `false`, unquoted");
        None
    }

    /// An integer (not a float, not a quoted number) within `range`.
    pub fn integer(&mut self, p: &str, v: &Value, range: RangeInclusive<i128>) -> Option<i128> {
        let n = match v {
            Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
            _ => None,
        };
        let Some(n) = n else {
            let hint = if v.is_string() { "write the number without quotes" } else { "write a whole number" };
            self.wrong(p, &format!("an integer in {}..={}", range.start(), range.end()), v, hint);
            return None;
        };
        if !range.contains(&n) {
            let (lo, hi) = (range.start(), range.end());
            self.err(p, format!("`{}` must be in {lo}..={hi}, not {n}", key_of(p)), "use a value in the range");
            return None;
        }
        Some(n)
    }

    pub fn list<'v>(&mut self, p: &str, v: &'v Value) -> Option<&'v [Value]> {
        if let Value::Sequence(s) = v {
            return Some(s);
        }
        self.wrong(p, "a list", v, "write `[a, b]` or one `- item` per line");
        None
    }

    /// A list of strings.
    pub fn strings(&mut self, p: &str, v: &Value) -> Vec<String> {
        let Some(items) = self.list(p, v) else {
            return Vec::new();
        };
        items.iter().enumerate().filter_map(|(i, x)| self.string(&format!("{p}[{i}]"), x)).collect()
    }

    /// One string or a list of them, each with its path.
    pub fn one_or_more(&mut self, p: &str, v: &Value) -> Vec<(String, String)> {
        match v {
            Value::Sequence(items) => {
                let out: Vec<_> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, x)| self.string(&format!("{p}[{i}]"), x).map(|s| (format!("{p}[{i}]"), s)))
                    .collect();
                if items.is_empty() {
                    self.err(p, "the list is empty", "drop the key or list something");
                }
                out
            }
            _ => self.string(p, v).map(|s| vec![(p.to_string(), s)]).unwrap_or_default(),
        }
    }

    pub fn regex(&mut self, p: &str, s: &str) -> Option<regex::Regex> {
        regex::Regex::new(s)
            .map_err(|e| {
                let hint = "escape `(`, `)`, `[`, `.` with `\\` or quote with '…'".to_string();
                self.err(p, format!("bad regex `{s}`: {e}"), hint)
            })
            .ok()
    }

    /// One regex or a list of them.
    pub fn regexes(&mut self, p: &str, v: &Value) -> Vec<regex::Regex> {
        self.one_or_more(p, v).into_iter().filter_map(|(ip, s)| self.regex(&ip, &s)).collect()
    }

    pub fn ident(&mut self, p: &str, what: &str, s: &str) {
        if !super::is_c_ident(s) {
            self.err(
                p,
                format!("{what} `{s}` is not a C identifier"),
                "use letters, digits and `_`, not starting with a digit",
            );
        }
    }

    /// An absolute path a guest shell will be given.
    pub fn guest_path(&mut self, p: &str, path: &str) {
        if !path.starts_with('/') {
            self.err(p, format!("path `{path}` must be absolute"), "start it with `/`");
        }
        if path.contains(['\n', '\r', '\0']) {
            self.err(p, "a path must not contain line breaks or NUL", "one absolute path on one line");
        }
    }
}

/// The last key of a path, as a message names it (`config[1]`, `timeout`).
fn key_of(p: &str) -> &str {
    p.rsplit('.').next().filter(|k| !k.is_empty()).unwrap_or("value")
}

/// `; did you mean `x`?` for the closest candidate, if any is close.
pub(super) fn suggest(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
