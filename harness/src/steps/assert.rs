//! Assertions: one guest round trip takes a snapshot of everything an
//! assertion looks at; evaluation compares it with the expectation and says
//! expected against actual for every difference.

use super::kmsg::{is_sync, Record};
use crate::case::{Assertion, DmesgExpect, Matcher};
use std::collections::{BTreeMap, BTreeSet};

const TAG: &str = "@@klpt@@";

#[derive(Debug, Default)]
pub struct PatchState {
    pub attrs: BTreeMap<String, String>,
    pub objects: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub patches: BTreeMap<String, PatchState>,
    /// Path → (exit status of cat, content).
    pub files: BTreeMap<String, (i32, String)>,
    pub modes: BTreeMap<String, String>,
    pub modules: BTreeSet<String>,
}

pub use crate::quote::sh_quote;

/// The guest script that prints a [`Snapshot`] for `a`, as klpt took it
/// before one command per step (a process per attribute).
pub fn snapshot_script(a: &Assertion) -> String {
    snapshot_script_with(a, false)
}

/// The guest script that prints a [`Snapshot`] for `a`. With `builtins`,
/// sysfs attributes and /proc/modules are read with the shell's `read`
/// (their first line, what the parser keeps) instead of a process each.
pub fn snapshot_script_with(a: &Assertion, builtins: bool) -> String {
    let mut s = String::new();
    if a.patches.is_some() && builtins {
        s.push_str(&crate::template::LIVEPATCH_STATE_BUILTINS_SH.fill(&[("TAG", TAG)]));
    } else if a.patches.is_some() {
        s.push_str(&crate::template::LIVEPATCH_STATE_SH.fill(&[("TAG", TAG)]));
    }
    for (i, (path, _)) in a.files.iter().enumerate() {
        s.push_str(&format!("echo \"{TAG}F {i}\"; cat {} 2>&1; s=$?; echo; echo \"{TAG}S $s\"\n", sh_quote(path)));
    }
    for (i, (path, _)) in a.modes.iter().enumerate() {
        s.push_str(&format!("echo \"{TAG}D {i} $(stat -c %a {} 2>&1)\"\n", sh_quote(path)));
    }
    if !a.modules.is_empty() && builtins {
        s.push_str(&format!("m=; while read -r n r; do m=\"$m $n\"; done < /proc/modules; echo \"{TAG}M$m\"\n"));
    } else if !a.modules.is_empty() {
        s.push_str(&format!("echo \"{TAG}M $(cut -d' ' -f1 /proc/modules | tr '\\n' ' ')\"\n"));
    }
    s
}

pub fn parse_snapshot(a: &Assertion, out: &str) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut cur_patch: Option<String> = None;
    let mut cur_file: Option<(usize, String)> = None;
    for line in out.lines() {
        if let Some((idx, buf)) = &mut cur_file {
            if let Some(st) = line.strip_prefix(&format!("{TAG}S ")) {
                let content = buf.strip_suffix('\n').unwrap_or(buf).to_string();
                if let Some((path, _)) = a.files.get(*idx) {
                    snap.files.insert(path.clone(), (st.trim().parse().unwrap_or(-1), content));
                }
                cur_file = None;
            } else {
                buf.push_str(line);
                buf.push('\n');
            }
            continue;
        }
        let Some(rest) = line.strip_prefix(TAG) else { continue };
        let (kind, body) = rest.split_at(1.min(rest.len()));
        let body = body.strip_prefix(' ').unwrap_or(body);
        match kind {
            "P" => {
                cur_patch = Some(body.to_string());
                snap.patches.entry(body.to_string()).or_default();
            }
            "A" | "O" => {
                let (n, v) = body.split_once(' ').unwrap_or((body, ""));
                if let Some(p) = cur_patch.as_ref().and_then(|p| snap.patches.get_mut(p)) {
                    let map = if kind == "A" { &mut p.attrs } else { &mut p.objects };
                    map.insert(n.to_string(), v.trim().to_string());
                }
            }
            "F" => cur_file = Some((body.trim().parse().unwrap_or(usize::MAX), String::new())),
            "D" => {
                let (i, v) = body.split_once(' ').unwrap_or((body, ""));
                if let Some((path, _)) = i.parse::<usize>().ok().and_then(|i| a.modes.get(i)) {
                    snap.modes.insert(path.clone(), v.trim().to_string());
                }
            }
            "M" => snap.modules = body.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    snap
}

/// Outcome of evaluating one assertion.
#[derive(Debug, Default)]
pub struct Verdict {
    pub mismatches: Vec<String>,
    /// Required sysfs attributes the kernel does not have (the case is skipped).
    pub missing_required: Vec<String>,
    /// Attributes asserted but absent and not required (not checked).
    pub unchecked: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.missing_required.is_empty()
    }
}

pub fn evaluate(a: &Assertion, snap: &Snapshot, window: &[Record], required_sysfs: &[String]) -> Verdict {
    let mut v = Verdict::default();
    if let Some(expected) = &a.patches {
        let want: BTreeSet<&String> = expected.keys().collect();
        let have: BTreeSet<&String> = snap.patches.keys().collect();
        if want != have {
            v.mismatches.push(format!(
                "active patches: expected [{}], got [{}]",
                want.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                have.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        for (name, exp) in expected {
            let Some(state) = snap.patches.get(name) else { continue };
            for (attr, want) in &exp.attrs {
                match state.attrs.get(attr) {
                    Some(got) if got == want => {}
                    Some(got) => v.mismatches.push(format!("{name}/{attr}: expected {want}, got {got}")),
                    None if required_sysfs.contains(attr) => v.missing_required.push(attr.clone()),
                    None => v.unchecked.push(format!("{name}/{attr}")),
                }
            }
            for (obj, want) in &exp.objects {
                match state.objects.get(obj).map(String::as_str) {
                    Some(got) if got == want => {}
                    Some("?") if !required_sysfs.iter().any(|r| r == "patched") => {
                        v.unchecked.push(format!("{name}/{obj}/patched"))
                    }
                    Some("?") => v.missing_required.push("patched".into()),
                    Some(got) => v.mismatches.push(format!("{name}/{obj}/patched: expected {want}, got {got}")),
                    None => v.mismatches.push(format!(
                        "{name}/{obj}: no such object directory (objects: {})",
                        state.objects.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }
    }
    for (path, m) in &a.files {
        match snap.files.get(path) {
            Some((0, content)) => {
                if let Some(msg) = match_text(m, content) {
                    v.mismatches.push(format!("{path}: {msg}"));
                }
            }
            Some((_, err)) => v.mismatches.push(format!("{path}: cannot read: {}", err.trim())),
            None => v.mismatches.push(format!("{path}: not read")),
        }
    }
    for (path, want) in &a.modes {
        match snap.modes.get(path) {
            Some(got) if got == want => {}
            got => v
                .mismatches
                .push(format!("{path}: expected mode {want}, got {}", got.map(String::as_str).unwrap_or("nothing"))),
        }
    }
    for (m, loaded) in &a.modules {
        if snap.modules.contains(m) != *loaded {
            v.mismatches.push(format!(
                "module {m}: expected {}, is {}",
                if *loaded { "loaded" } else { "not loaded" },
                if *loaded { "not loaded" } else { "loaded" }
            ));
        }
    }
    if let Some(d) = &a.dmesg {
        v.mismatches.extend(check_dmesg(d, window));
    }
    v
}

/// Describes how `text` fails `m`, or None when it matches.
pub fn match_text(m: &Matcher, text: &str) -> Option<String> {
    let t = text.trim_end_matches('\n');
    if let Some(e) = &m.equals {
        if t.trim() != e.trim() {
            return Some(format!("expected {e:?}, got {t:?}"));
        }
    }
    for c in &m.contains {
        if !t.contains(c.as_str()) {
            return Some(format!("expected to contain {c:?}, got {t:?}"));
        }
    }
    for c in &m.not_contains {
        if t.contains(c.as_str()) {
            return Some(format!("expected not to contain {c:?}, got {t:?}"));
        }
    }
    if let Some(r) = &m.matches {
        if !r.is_match(t) {
            return Some(format!("expected to match /{r}/, got {t:?}"));
        }
    }
    None
}

/// Events in order (other lines may come between), no `must_not` line, and
/// with `strict`, no `livepatch:` line that is not an expected event.
pub fn check_dmesg(d: &DmesgExpect, window: &[Record]) -> Vec<String> {
    let lines: Vec<&Record> =
        window.iter().filter(|r| !is_sync(r) && !d.ignore.iter().any(|i| i.is_match(&r.text))).collect();
    let mut problems = Vec::new();
    let mut next = 0;
    let mut consumed = BTreeSet::new();
    for (i, r) in lines.iter().enumerate() {
        if next < d.events.len() && d.events[next].is_match(&r.text) {
            consumed.insert(i);
            next += 1;
        }
    }
    if next < d.events.len() {
        problems.push(format!(
            "dmesg: expected event /{}/ {}; the window has:\n{}",
            d.events[next],
            if next == 0 { "not found".to_string() } else { format!("not found after /{}/", d.events[next - 1]) },
            show(&lines)
        ));
    }
    for r in &lines {
        if let Some(bad) = d.must_not.iter().find(|m| m.is_match(&r.text)) {
            problems.push(format!("dmesg: line matches must_not /{bad}/: {}", r.line()));
        }
    }
    if d.strict {
        for (i, r) in lines.iter().enumerate() {
            if r.text.contains("livepatch:") && !consumed.contains(&i) {
                problems.push(format!("dmesg (strict): unexpected line: {}", r.line()));
            }
        }
    }
    problems
}

fn show(lines: &[&Record]) -> String {
    if lines.is_empty() {
        return "  (no kernel messages)".into();
    }
    lines.iter().map(|r| format!("  {}", r.line())).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn rec(seq: u64, t: &str) -> Record {
        Record { seq, prio: 6, usec: seq * 1000, text: t.into() }
    }

    #[test]
    fn dmesg_order_must_not_and_strict() {
        let w = vec![
            rec(1, "livepatch: enabling patch 'a'"),
            rec(2, "livepatch: 'a': starting patching transition"),
            rec(3, "livepatch: 'a': patching complete"),
        ];
        let mut d = DmesgExpect {
            events: vec![Regex::new("enabling patch 'a'").unwrap(), Regex::new("patching complete").unwrap()],
            ..Default::default()
        };
        assert!(check_dmesg(&d, &w).is_empty());
        d.strict = true;
        assert_eq!(check_dmesg(&d, &w).len(), 1);
        d.ignore = vec![Regex::new("starting").unwrap()];
        assert!(check_dmesg(&d, &w).is_empty());
        d.must_not = vec![Regex::new("unpatching").unwrap()];
        assert!(check_dmesg(&d, &w).is_empty());
        let rev = DmesgExpect {
            events: vec![Regex::new("complete").unwrap(), Regex::new("enabling").unwrap()],
            ..Default::default()
        };
        assert!(check_dmesg(&rev, &w)[0].contains("not found after"));
    }

    #[test]
    fn dmesg_counts_lines_one_event_each() {
        // Each event consumes one line: a regex listed twice needs two
        // lines, and under `strict` a second copy of a line listed once is
        // an unexpected line. Together: "exactly once" / "exactly twice".
        let refusal = "livepatch: symbol 'f' not found in symbol table";
        let once = vec![rec(1, "klpt: tainting kernel"), rec(2, refusal)];
        let twice = vec![rec(1, refusal), rec(2, "x"), rec(3, refusal)];
        let ev = |n: usize, strict: bool| DmesgExpect {
            events: vec![Regex::new("not found in symbol table").unwrap(); n],
            strict,
            ..Default::default()
        };
        assert!(check_dmesg(&ev(1, true), &once).is_empty());
        let p = check_dmesg(&ev(1, true), &twice);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("(strict): unexpected line") && p[0].contains("[    0.003000]"), "{p:?}");
        assert!(check_dmesg(&ev(2, true), &twice).is_empty());
        assert!(check_dmesg(&ev(2, false), &once)[0].contains("not found after"));
    }

    #[test]
    fn snapshot_round_trip_and_verdict() {
        let mut a = Assertion::default();
        let mut exp = BTreeMap::new();
        let mut pe = crate::case::PatchExpect::default();
        pe.attrs.insert("enabled".into(), "1".into());
        pe.attrs.insert("stack_order".into(), "1".into());
        pe.objects.insert("vmlinux".into(), "1".into());
        exp.insert("lp1".to_string(), pe);
        a.patches = Some(exp);
        a.files.push(("/proc/cmdline".into(), Matcher { contains: vec!["patched".into()], ..Default::default() }));
        let out = format!("{TAG}P lp1\n{TAG}A enabled 0\n{TAG}A transition 0\n{TAG}O vmlinux 1\n{TAG}F 0\nthis has been patched\n\n{TAG}S 0\n");
        let snap = parse_snapshot(&a, &out);
        assert_eq!(snap.files["/proc/cmdline"].1, "this has been patched\n".trim_end_matches('\n').to_string() + "\n");
        let v = evaluate(&a, &snap, &[], &[]);
        assert_eq!(v.mismatches, vec!["lp1/enabled: expected 1, got 0".to_string()]);
        assert_eq!(v.unchecked, vec!["lp1/stack_order".to_string()]);
        let v = evaluate(&a, &snap, &[], &["stack_order".into()]);
        assert_eq!(v.missing_required, vec!["stack_order".to_string()]);
    }
}
