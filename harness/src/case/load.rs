//! Reading and validating case files. Everything that can be checked without
//! a kernel is checked here, so a bad case never costs a boot.

use super::error::{CaseError, CaseErrors};
use super::known::Known;
use super::model::*;
use super::positions::{Pos, Positions};
use super::value::Checker;
use super::{depth, read};
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The id of a case: its path below the nearest `cases` directory, without extension.
fn case_id(file: &Path) -> String {
    let comps: Vec<_> = file.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect();
    let start = comps.iter().rposition(|c| c == "cases").map(|i| i + 1).unwrap_or(comps.len().saturating_sub(1));
    let mut id = comps[start..].join("/");
    for ext in [".yaml", ".yml"] {
        if let Some(s) = id.strip_suffix(ext) {
            id = s.to_string();
        }
    }
    id
}

fn one(file: &Path, pos: Pos, msg: String, hint: Option<String>) -> CaseErrors {
    CaseErrors(vec![CaseError { file: file.into(), pos, msg, hint }])
}

pub fn load(file: &Path) -> Result<Case, CaseErrors> {
    let src = read::read_text(file).map_err(|(pos, msg, hint)| one(file, pos, msg, hint))?;
    parse(file, &src)
}

pub fn parse(file: &Path, src: &str) -> Result<Case, CaseErrors> {
    // Editors on some systems start UTF-8 files with a byte order mark.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let start = Pos { line: 1, col: 1 };
    if src.len() > read::MAX_BYTES {
        return Err(one(file, start, read::TOO_BIG.into(), Some("split it into several cases".into())));
    }
    depth::check(src).map_err(|(pos, msg, hint)| one(file, pos, msg, Some(hint)))?;
    let known = Known::for_case(file).map_err(|e| CaseErrors(vec![e]))?;
    let value: Value = serde_norway::from_str(src).map_err(|e| {
        let pos = e.location().map(|l| Pos { line: l.line(), col: l.column() }).unwrap_or(start);
        let msg = e.to_string();
        // serde_norway appends " at line X column Y"; the prefix already says it.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        one(
            file,
            pos,
            format!("YAML syntax: {msg}"),
            Some("indentation, brackets and quotes must match up to here".into()),
        )
    })?;
    let pos = Positions::of(src);
    let mut c = Checker { file: file.to_path_buf(), pos: &pos, known: &known, errors: Vec::new() };
    let mut doc = c.doc(&value);
    let steps = doc.as_ref().map(|d| c.steps(d)).unwrap_or_default();
    if let Some(d) = doc.as_mut() {
        super::code::implied_by_steps(&mut d.requires, &steps);
    }
    // A step that did not parse would make the simulation report its consequences.
    if let Some(d) = doc.as_ref().filter(|d| d.steps.len() == steps.len()) {
        c.check_sequence(&d.requires, &steps);
    }
    let mut errors = c.errors;
    match doc {
        Some(doc) if errors.is_empty() => {
            let mut body_lines = BTreeMap::new();
            for (li, lp) in doc.livepatches.iter().enumerate() {
                for fi in 0..lp.functions.len() {
                    body_lines.insert((li, fi), pos.text_line(&format!("livepatches[{li}].functions[{fi}].body")));
                }
            }
            Ok(Case { id: case_id(file), file: file.to_path_buf(), doc, steps, body_lines })
        }
        _ => {
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            Err(CaseErrors(errors))
        }
    }
}

/// A kernel symbol name as kallsyms lists it (`__x64_sys_getpid`, `foo.cold`).
pub fn is_symbol(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.$".contains(&b))
}

pub fn is_c_ident(s: &str) -> bool {
    let mut ch = s.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && ch.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A scalar YAML value as the string a guest would read or write.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => serde_norway::to_string(other).unwrap_or_default().trim().to_string(),
    }
}
