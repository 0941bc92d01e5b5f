//! Reading and validating case files. Everything that can be checked without
//! a kernel is checked here, so a bad case never costs a boot.

use super::error::{CaseError, CaseErrors};
use super::model::*;
use super::positions::{Pos, Positions};
use crate::steps::errno;
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// All `*.yaml` case files below each path (a path may also name one file), sorted.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: no such case file or directory", p.display())));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            // Reference kernel series live next to the cases; they are not cases.
            if p.file_name().is_some_and(|n| n == "series") {
                continue;
            }
            walk(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

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

pub fn load(file: &Path) -> Result<Case, CaseErrors> {
    let src = std::fs::read_to_string(file).map_err(|e| {
        CaseErrors(vec![CaseError { file: file.into(), pos: Pos { line: 1, col: 1 }, msg: format!("cannot read: {e}"), hint: None }])
    })?;
    parse(file, &src)
}

pub fn parse(file: &Path, src: &str) -> Result<Case, CaseErrors> {
    let pos = Positions::of(src);
    let doc: CaseDoc = serde_norway::from_str(src).map_err(|e| {
        let p = e.location().map(|l| Pos { line: l.line(), col: l.column() }).unwrap_or(Pos { line: 1, col: 1 });
        let msg = e.to_string();
        // serde_norway appends " at line X column Y"; the prefix already says it.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        let hint = if msg.contains("unknown field") {
            Some("check the spelling against cases/README.md".to_string())
        } else if msg.contains("missing field") {
            Some("add the field; cases/README.md lists what each section needs".to_string())
        } else {
            None
        };
        CaseErrors(vec![CaseError { file: file.into(), pos: p, msg, hint }])
    })?;
    let mut v = Validator { file: file.to_path_buf(), pos: &pos, errors: Vec::new() };
    v.check_doc(&doc);
    let steps = v.steps(&doc);
    v.check_sequence(&steps);
    let mut body_lines = BTreeMap::new();
    for (li, lp) in doc.livepatches.iter().enumerate() {
        for (fi, _) in lp.functions.iter().enumerate() {
            body_lines.insert((li, fi), pos.text_line(&format!("livepatches[{li}].functions[{fi}].body")));
        }
    }
    if !v.errors.is_empty() {
        return Err(CaseErrors(v.errors));
    }
    Ok(Case { id: case_id(file), file: file.to_path_buf(), doc, steps, body_lines })
}

pub fn is_c_ident(s: &str) -> bool {
    let mut ch = s.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && ch.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Validator<'a> {
    file: PathBuf,
    pos: &'a Positions,
    errors: Vec<CaseError>,
}

const STEP_KINDS: &[&str] = &["load", "disable", "write", "force", "unload", "park", "release", "wait", "assert", "shell", "call"];
const STEP_META: &[&str] = &["name", "when", "timeout", "warnings"];
/// Deadlines are whole seconds, at most a day: a longer one is a typo, and
/// `Instant + Duration` must not overflow.
pub(crate) const MAX_TIMEOUT: u64 = 86_400;

impl Validator<'_> {
    fn err(&mut self, path: &str, msg: impl Into<String>, hint: impl Into<Option<String>>) {
        self.errors.push(CaseError { file: self.file.clone(), pos: self.pos.get(path), msg: msg.into(), hint: hint.into() });
    }

    fn ident(&mut self, path: &str, what: &str, s: &str) {
        if !is_c_ident(s) {
            self.err(path, format!("{what} `{s}` is not a C identifier"), Some("use letters, digits and `_`, not starting with a digit".to_string()));
        }
    }

    /// Checks a module's name (a unique C identifier) and that it has functions.
    fn module(&mut self, p: &str, names: &mut BTreeSet<String>, name: &str, functions: usize) {
        self.ident(&format!("{p}.name"), "module name", name);
        if !names.insert(name.to_string()) {
            self.err(&format!("{p}.name"), format!("module `{name}` is defined twice"), None);
        }
        if functions == 0 {
            self.err(p, format!("module `{name}` has no functions"), Some("list them under `functions:`".into()));
        }
    }

    fn check_doc(&mut self, d: &CaseDoc) {
        let mut names = BTreeSet::new();
        for (i, t) in d.targets.iter().enumerate() {
            let p = format!("targets[{i}]");
            self.module(&p, &mut names, &t.name, t.functions.len());
            for (j, f) in t.functions.iter().enumerate() {
                self.ident(&format!("{p}.functions[{j}].name"), "function name", &f.name);
                if f.park && f.prints.is_some() {
                    self.err(&format!("{p}.functions[{j}].prints"), "a parking function prints nothing", Some("drop `prints:` or `park:`".into()));
                }
            }
            self.params(&p, &t.params);
        }
        for (i, l) in d.livepatches.iter().enumerate() {
            let p = format!("livepatches[{i}]");
            self.module(&p, &mut names, &l.name, l.functions.len());
            for (j, f) in l.functions.iter().enumerate() {
                let fp = format!("{p}.functions[{j}]");
                self.ident(&format!("{fp}.name"), "function name", &f.name);
                if f.object != "vmlinux" {
                    self.ident(&format!("{fp}.object"), "object name", &f.object);
                }
                match (&f.marker, &f.signature, &f.body) {
                    (Some(_), None, None) => {}
                    (None, Some(sig), Some(_)) => {
                        if crate::modules::parse_signature(sig).is_none() {
                            self.err(&format!("{fp}.signature"), format!("cannot read signature `{sig}`"), Some("write it as `<return type> (<parameters>)`, e.g. `int (struct seq_file *m, void *v)`".into()));
                        }
                    }
                    _ => self.err(&fp, format!("function `{}` needs either `marker:` or both `signature:` and `body:`", f.name), Some("`marker: text` replaces a seq_file show function with one printing `text`".into())),
                }
            }
            self.params(&p, &l.params);
        }
        for (i, x) in d.xfail.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&x.kernel) {
                self.err(&format!("xfail[{i}].kernel"), format!("bad regex: {e}"), None);
            }
        }
        if d.smp == 0 || d.smp > 8 {
            self.err("smp", format!("smp must be 1..=8, not {}", d.smp), None);
        }
        for (i, a) in d.arches.iter().enumerate() {
            if !crate::vm::ARCHES.contains(&a.as_str()) {
                self.err(&format!("arches[{i}]"), format!("unknown architecture `{a}`"), Some(format!("one of {}", crate::vm::ARCHES.join(", "))));
            }
        }
    }

    fn params(&mut self, p: &str, params: &[Param]) {
        for (k, prm) in params.iter().enumerate() {
            self.ident(&format!("{p}.params[{k}].name"), "parameter name", &prm.name);
            if !["int", "uint", "bool", "charp"].contains(&prm.ty.as_str()) {
                self.err(&format!("{p}.params[{k}].type"), format!("unknown parameter type `{}`", prm.ty), Some("one of int, uint, bool, charp".into()));
            }
        }
    }

    fn steps(&mut self, d: &CaseDoc) -> Vec<Step> {
        let mut out = Vec::new();
        for (i, raw) in d.steps.iter().enumerate() {
            let p = format!("steps[{i}]");
            let Some(map) = raw.as_mapping() else {
                self.err(&p, "a step must be a mapping like `load: NAME`", None);
                continue;
            };
            let mut kind = None;
            let mut label = None;
            let mut when = None;
            let mut timeout = None;
            let mut warnings = Vec::new();
            for (k, val) in map {
                let Some(k) = k.as_str() else {
                    self.err(&p, "step keys must be strings", None);
                    continue;
                };
                let kp = format!("{p}.{k}");
                if STEP_KINDS.contains(&k) {
                    if kind.is_some() {
                        self.err(&kp, format!("step has two actions (`{}` and `{k}`)", kind.as_ref().map(|(k, _): &(String, &Value)| k.as_str()).unwrap_or("")), Some("split it into two steps".into()));
                    }
                    kind = Some((k.to_string(), val));
                } else if k == "name" {
                    label = val.as_str().map(str::to_string);
                } else if k == "when" {
                    when = self.cond(&kp, val);
                } else if k == "timeout" {
                    timeout = self.timeout(&kp, val);
                } else if k == "warnings" {
                    warnings = self.regexes(&kp, Some(val));
                } else if !STEP_META.contains(&k) {
                    self.err(&kp, format!("unknown step key `{k}`"), Some(format!("a step is one of {} (plus `name:` and `when:`){}", STEP_KINDS.join(", "), suggest(k, STEP_KINDS))));
                }
            }
            let Some((kind, val)) = kind else {
                if self.errors.iter().any(|e| e.msg.starts_with("unknown step key")) {
                    continue;
                }
                self.err(&p, "step has no action", Some(format!("use one of {}", STEP_KINDS.join(", "))));
                continue;
            };
            let kp = format!("{p}.{kind}");
            if let Some(mut action) = self.action(d, &kp, &kind, val) {
                if let (Action::Wait { timeout: t, .. }, Some(step_t)) = (&mut action, timeout) {
                    if v_has(val, "timeout") {
                        self.err(&format!("{p}.timeout"), "the step and its `wait:` both set `timeout:`", Some("keep one of them".into()));
                    }
                    *t = step_t;
                }
                let line = self.pos.get(&p).line;
                out.push(Step { index: i, line, label: label.unwrap_or_else(|| kind.clone()), when, timeout, warnings, action });
            }
        }
        out
    }

    /// A deadline in whole seconds, 1..=MAX_TIMEOUT.
    fn timeout(&mut self, p: &str, v: &Value) -> Option<u64> {
        match v.as_u64() {
            Some(t) if (1..=MAX_TIMEOUT).contains(&t) => Some(t),
            _ => {
                self.err(p, format!("`timeout:` must be an integer number of seconds, 1..={MAX_TIMEOUT}, not {}", scalar(v)), None);
                None
            }
        }
    }

    fn cond(&mut self, p: &str, v: &Value) -> Option<Cond> {
        let m = self.mapping(p, v, &["has", "lacks"])?;
        let mut c = Cond::default();
        for (k, key) in [(&mut c.has, "has"), (&mut c.lacks, "lacks")] {
            if let Some(x) = m.get(key) {
                match serde_norway::from_value::<Requires>(x.clone()) {
                    Ok(r) => *k = r,
                    Err(e) => self.err(&format!("{p}.{key}"), format!("bad capability list: {e}"), Some("keys: config, sysfs, kallsyms, klp_patch".into())),
                }
            }
        }
        Some(c)
    }

    /// The value as a mapping with only the allowed keys.
    fn mapping<'v>(&mut self, p: &str, v: &'v Value, allowed: &[&str]) -> Option<&'v Mapping> {
        let Some(m) = v.as_mapping() else {
            self.err(p, "expected a mapping", Some(format!("keys: {}", allowed.join(", "))));
            return None;
        };
        for k in m.keys() {
            let ks = k.as_str().unwrap_or("?");
            if !allowed.contains(&ks) {
                self.err(&format!("{p}.{ks}"), format!("unknown key `{ks}`"), Some(format!("allowed here: {}{}", allowed.join(", "), suggest(ks, allowed))));
            }
        }
        Some(m)
    }

    fn module_ref(&mut self, d: &CaseDoc, p: &str, name: &str, livepatch_only: bool) {
        let is_lp = d.livepatches.iter().any(|l| l.name == name);
        let is_target = d.targets.iter().any(|t| t.name == name);
        if livepatch_only && !is_lp {
            let hint = if is_target { format!("`{name}` is a target module, not a livepatch") } else { format!("define it under `livepatches:`{}", suggest(name, &names(d))) };
            self.err(p, format!("no livepatch named `{name}`"), Some(hint));
        } else if !is_lp && !is_target {
            self.err(p, format!("no module named `{name}`"), Some(format!("define it under `livepatches:` or `targets:`{}", suggest(name, &names(d)))));
        }
    }

    fn errnos(&mut self, p: &str, v: Option<&Value>) -> Option<Errnos> {
        let v = v?;
        let list: Vec<String> = match v {
            Value::String(s) => vec![s.clone()],
            Value::Sequence(s) => s.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        if list.is_empty() {
            self.err(p, "`refused:` takes an errno name or a list of them", Some("e.g. `refused: EBUSY` or `refused: [EBUSY, EAGAIN]`".into()));
        }
        for e in &list {
            if !errno::is_known(e) {
                self.err(p, format!("unknown errno `{e}`"), Some(format!("one of {}", errno::known_names().join(", "))));
            }
        }
        Some(list)
    }

    /// `load: NAME` or `load: {module: NAME, ...}`: the name and the mapping, if any.
    fn name_or_map<'v>(&mut self, p: &str, v: &'v Value, key: &str, allowed: &[&str]) -> Option<(String, Option<&'v Mapping>)> {
        if let Some(s) = v.as_str() {
            return Some((s.to_string(), None));
        }
        let m = self.mapping(p, v, allowed)?;
        match m.get(key).and_then(Value::as_str) {
            Some(s) => Some((s.to_string(), Some(m))),
            None => {
                self.err(p, format!("missing `{key}:`"), None);
                None
            }
        }
    }

    fn action(&mut self, d: &CaseDoc, p: &str, kind: &str, v: &Value) -> Option<Action> {
        let flag = |m: Option<&Mapping>, k: &str, default: bool| m.and_then(|m| m.get(k)).and_then(Value::as_bool).unwrap_or(default);
        Some(match kind {
            "load" => {
                let (module, m) = self.name_or_map(p, v, "module", &["module", "args", "wait", "refused"])?;
                self.module_ref(d, p, &module, false);
                let args = m.and_then(|m| m.get("args")).map(scalar).unwrap_or_default();
                let refused = self.errnos(&format!("{p}.refused"), m.and_then(|m| m.get("refused")));
                Action::Load { module, args, wait: flag(m, "wait", true), refused }
            }
            "disable" => {
                let (patch, m) = self.name_or_map(p, v, "patch", &["patch", "wait", "refused"])?;
                self.module_ref(d, p, &patch, true);
                let refused = self.errnos(&format!("{p}.refused"), m.and_then(|m| m.get("refused")));
                Action::Disable { patch, wait: flag(m, "wait", true), refused }
            }
            "force" => {
                let (patch, m) = self.name_or_map(p, v, "patch", &["patch", "refused"])?;
                self.module_ref(d, p, &patch, true);
                let refused = self.errnos(&format!("{p}.refused"), m.and_then(|m| m.get("refused")));
                Action::Force { patch, refused }
            }
            "unload" => {
                let (module, m) = self.name_or_map(p, v, "module", &["module", "refused"])?;
                self.module_ref(d, p, &module, false);
                let refused = self.errnos(&format!("{p}.refused"), m.and_then(|m| m.get("refused")));
                Action::Unload { module, refused }
            }
            "park" | "release" => {
                let s = v.as_str().unwrap_or("");
                let Some((module, function)) = s.split_once('.') else {
                    self.err(p, format!("`{kind}:` takes `module.function`"), Some("e.g. `park: klpt_busy.busy_fn`".into()));
                    return None;
                };
                match d.targets.iter().find(|t| t.name == module) {
                    None => self.err(p, format!("no target module named `{module}`"), None),
                    Some(t) => match t.functions.iter().find(|f| f.name == function) {
                        Some(f) if f.park => {}
                        Some(_) => self.err(p, format!("`{module}.{function}` is not a parking function"), Some("add `park: true` to the function".into())),
                        None => self.err(p, format!("target `{module}` has no function `{function}`"), None),
                    },
                }
                let (module, function) = (module.to_string(), function.to_string());
                if kind == "park" { Action::Park { module, function } } else { Action::Release { module, function } }
            }
            "write" => {
                let m = self.mapping(p, v, &["path", "param", "value", "refused"])?;
                let value = match m.get("value") {
                    Some(x) => scalar(x),
                    None => {
                        self.err(p, "missing `value:`", None);
                        String::new()
                    }
                };
                let path = match (m.get("path").and_then(Value::as_str), m.get("param").and_then(Value::as_str)) {
                    (Some(path), None) => {
                        if !path.starts_with('/') {
                            self.err(&format!("{p}.path"), "path must be absolute", None);
                        }
                        path.to_string()
                    }
                    (None, Some(param)) => {
                        let Some((module, name)) = param.split_once('.') else {
                            self.err(&format!("{p}.param"), "`param:` takes `module.parameter`", None);
                            return None;
                        };
                        self.module_ref(d, &format!("{p}.param"), module, false);
                        format!("/sys/module/{module}/parameters/{name}")
                    }
                    _ => {
                        self.err(p, "`write:` needs exactly one of `path:` or `param:`", None);
                        return None;
                    }
                };
                Action::Write { path, value, refused: self.errnos(&format!("{p}.refused"), m.get("refused")) }
            }
            "shell" => match v {
                Value::String(s) => Action::Shell { command: s.clone(), status: 0 },
                _ => {
                    let m = self.mapping(p, v, &["command", "status"])?;
                    let command = m.get("command").and_then(Value::as_str).unwrap_or_default().to_string();
                    let status = m.get("status").and_then(Value::as_i64).unwrap_or(0) as i32;
                    Action::Shell { command, status }
                }
            },
            "assert" => Action::Assert(self.assertion(d, p, v, &[])?),
            "wait" => {
                let until = self.assertion(d, p, v, &["timeout"])?;
                if until.dmesg.is_some() {
                    // Waiting on dmesg is allowed: it re-reads the window each round.
                }
                let timeout = match v.as_mapping().and_then(|m| m.get("timeout")) {
                    Some(t) => self.timeout(&format!("{p}.timeout"), t).unwrap_or(d.timeout),
                    None => d.timeout,
                };
                Action::Wait { until, timeout }
            }
            "call" => self.call(d, p, v)?,
            _ => unreachable!("step kinds are filtered above"),
        })
    }

    /// `call: {parked: MODULE.PARKFN, function: FN, prints: MATCHER}`.
    fn call(&mut self, d: &CaseDoc, p: &str, v: &Value) -> Option<Action> {
        let m = self.mapping(p, v, &["parked", "function", "prints"])?;
        let Some((module, parked)) = m.get("parked").and_then(Value::as_str).and_then(|s| s.split_once('.')) else {
            self.err(&format!("{p}.parked"), "`parked:` takes `module.parking_function`", Some("e.g. `parked: klpt_tgt.busy_fn`".into()));
            return None;
        };
        let Some(function) = m.get("function").and_then(Value::as_str) else {
            self.err(p, "missing `function:`", Some("the target function the parked worker calls".into()));
            return None;
        };
        match d.targets.iter().find(|t| t.name == module) {
            None => self.err(&format!("{p}.parked"), format!("no target module named `{module}`"), None),
            Some(t) => {
                match t.functions.iter().find(|f| f.name == parked) {
                    Some(f) if f.park => {}
                    Some(_) => self.err(&format!("{p}.parked"), format!("`{module}.{parked}` is not a parking function"), Some("add `park: true` to the function".into())),
                    None => self.err(&format!("{p}.parked"), format!("target `{module}` has no function `{parked}`"), None),
                }
                match t.functions.iter().find(|f| f.name == function) {
                    Some(f) if !f.park => {}
                    Some(_) => self.err(&format!("{p}.function"), format!("`{function}` is a parking function"), Some("call a function without `park: true`".into())),
                    None => self.err(&format!("{p}.function"), format!("target `{module}` has no function `{function}`"), None),
                }
            }
        }
        let prints = m.get("prints").and_then(|x| self.matcher(&format!("{p}.prints"), x));
        Some(Action::Call { module: module.into(), parked: parked.into(), function: function.into(), prints })
    }

    fn assertion(&mut self, d: &CaseDoc, p: &str, v: &Value, extra: &[&str]) -> Option<Assertion> {
        let mut allowed = vec!["patches", "files", "modes", "dmesg", "modules"];
        allowed.extend_from_slice(extra);
        let m = self.mapping(p, v, &allowed)?;
        let mut a = Assertion::default();
        if let Some(pv) = m.get("patches") {
            let pp = format!("{p}.patches");
            let mut set = BTreeMap::new();
            match pv {
                Value::Null => {}
                Value::Mapping(pm) => {
                    for (name, exp) in pm {
                        let name = scalar(name);
                        let np = format!("{pp}.{name}");
                        self.module_ref(d, &np, &name, true);
                        let mut pe = PatchExpect::default();
                        if let Some(em) = exp.as_mapping() {
                            for (k, val) in em {
                                let k = scalar(k);
                                if k == "objects" {
                                    for (o, ov) in val.as_mapping().into_iter().flatten() {
                                        pe.objects.insert(scalar(o), scalar(ov));
                                    }
                                } else if is_c_ident(&k) {
                                    pe.attrs.insert(k, scalar(val));
                                } else {
                                    self.err(&format!("{np}.{k}"), format!("`{k}` is not a sysfs attribute name"), None);
                                }
                            }
                        } else if !exp.is_null() {
                            self.err(&np, "expected attribute values, e.g. `{enabled: 1, transition: 0}`", None);
                        }
                        set.insert(name, pe);
                    }
                }
                _ => self.err(&pp, "`patches:` maps patch names to their attributes", Some("use `patches: {}` for \"no patch active\"".into())),
            }
            a.patches = Some(set);
        }
        if let Some(fv) = m.get("files") {
            for (path, mv) in fv.as_mapping().into_iter().flatten() {
                let path = scalar(path);
                let fp = format!("{p}.files.{path}");
                if let Some(mt) = self.matcher(&fp, mv) {
                    a.files.push((path, mt));
                }
            }
        }
        if let Some(mv) = m.get("modes") {
            for (path, mode) in mv.as_mapping().into_iter().flatten() {
                let mode = scalar(mode);
                if mode.len() < 3 || !mode.chars().all(|c| ('0'..='7').contains(&c)) {
                    self.err(&format!("{p}.modes.{}", scalar(path)), format!("`{mode}` is not an octal mode"), Some("quote it: '644'".into()));
                }
                a.modes.push((scalar(path), mode));
            }
        }
        if let Some(dv) = m.get("dmesg") {
            a.dmesg = self.dmesg(&format!("{p}.dmesg"), dv);
        }
        if let Some(mv) = m.get("modules") {
            for (name, loaded) in mv.as_mapping().into_iter().flatten() {
                let name = scalar(name);
                match loaded.as_bool() {
                    Some(b) => {
                        a.modules.insert(name, b);
                    }
                    None => self.err(&format!("{p}.modules.{name}"), "expected true (loaded) or false (not loaded)", None),
                }
            }
        }
        Some(a)
    }

    fn regexes(&mut self, p: &str, v: Option<&Value>) -> Vec<regex::Regex> {
        let items: Vec<&Value> = match v {
            None => Vec::new(),
            Some(Value::Sequence(s)) => s.iter().collect(),
            Some(other) => vec![other],
        };
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let s = scalar(it);
            match regex::Regex::new(&s) {
                Ok(r) => out.push(r),
                Err(e) => self.err(&format!("{p}[{i}]"), format!("bad regex `{s}`: {e}"), Some("escape `(`, `)`, `[`, `.` with `\\` or quote with '…'".into())),
            }
        }
        out
    }

    fn dmesg(&mut self, p: &str, v: &Value) -> Option<DmesgExpect> {
        if v.is_sequence() {
            return Some(DmesgExpect { events: self.regexes(p, Some(v)), ..Default::default() });
        }
        let m = self.mapping(p, v, &["events", "must_not", "ignore", "strict"])?;
        Some(DmesgExpect {
            events: self.regexes(&format!("{p}.events"), m.get("events")),
            must_not: self.regexes(&format!("{p}.must_not"), m.get("must_not")),
            ignore: self.regexes(&format!("{p}.ignore"), m.get("ignore")),
            strict: m.get("strict").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    fn matcher(&mut self, p: &str, v: &Value) -> Option<Matcher> {
        if !v.is_mapping() {
            return Some(Matcher { equals: Some(scalar(v)), ..Default::default() });
        }
        let m = self.mapping(p, v, &["equals", "contains", "not_contains", "matches"])?;
        let list = |x: Option<&Value>| -> Vec<String> {
            match x {
                None => Vec::new(),
                Some(Value::Sequence(s)) => s.iter().map(scalar).collect(),
                Some(o) => vec![scalar(o)],
            }
        };
        let matches = m.get("matches").and_then(|x| {
            let s = scalar(x);
            regex::Regex::new(&s).map_err(|e| self.err(&format!("{p}.matches"), format!("bad regex: {e}"), None)).ok()
        });
        Some(Matcher { equals: m.get("equals").map(scalar), contains: list(m.get("contains")), not_contains: list(m.get("not_contains")), matches })
    }

    /// Catches steps that cannot succeed whatever the kernel does: loading a
    /// module twice, unloading or disabling one that was never loaded.
    fn check_sequence(&mut self, steps: &[Step]) {
        let mut loaded: BTreeSet<String> = BTreeSet::new();
        for s in steps {
            if s.when.is_some() {
                continue; // depends on the kernel: cannot be simulated
            }
            let p = format!("steps[{}]", s.index);
            match &s.action {
                Action::Load { module, refused: None, .. }
                    if !loaded.insert(module.clone()) => {
                        self.err(&p, format!("`{module}` is already loaded at this point"), Some("unload it first, or expect `refused: EEXIST`".into()));
                    }
                Action::Unload { module, refused: None }
                    if !loaded.remove(module) => {
                        self.err(&p, format!("`{module}` is not loaded at this point"), Some("load it in an earlier step".into()));
                    }
                Action::Disable { patch, refused: None, .. } | Action::Force { patch, refused: None } if !loaded.contains(patch) => {
                    self.err(&p, format!("patch `{patch}` is not loaded at this point"), Some("load it in an earlier step".into()));
                }
                Action::Park { module, .. } | Action::Release { module, .. } | Action::Call { module, .. } if !loaded.contains(module) => {
                    self.err(&p, format!("target `{module}` is not loaded at this point"), Some("load it in an earlier step".into()));
                }
                _ => {}
            }
        }
    }
}

fn v_has(v: &Value, key: &str) -> bool {
    v.as_mapping().is_some_and(|m| m.contains_key(key))
}

fn names(d: &CaseDoc) -> Vec<&str> {
    d.livepatches.iter().map(|l| l.name.as_str()).chain(d.targets.iter().map(|t| t.name.as_str())).collect()
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

/// `; did you mean `x`?` for the closest candidate, if any is close.
fn suggest(word: &str, candidates: &[&str]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(src: &str) -> String {
        match parse(Path::new("cases/t.yaml"), src) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = "description: d\nlivepatches:\n  - name: lp1\n    functions:\n      - name: cmdline_proc_show\n        marker: hi\nsteps:\n  - load: lp1\n  - assert:\n      patches: {lp1: {enabled: 1}}\n  - disable: lp1\n  - unload: lp1\n";

    #[test]
    fn good_case_parses() {
        let c = parse(Path::new("/x/cases/stock/t.yaml"), GOOD).unwrap();
        assert_eq!(c.id, "stock/t");
        assert_eq!(c.steps.len(), 4);
        assert_eq!(c.steps[1].line, 9);
    }

    #[test]
    fn unknown_top_level_field_is_located() {
        let e = errs(&GOOD.replace("description", "descriptoin"));
        assert!(e.starts_with("cases/t.yaml:1:1: unknown field `descriptoin`"), "{e}");
    }

    #[test]
    fn undefined_module_reference() {
        let e = errs(&GOOD.replace("- load: lp1", "- load: lp2"));
        assert!(e.contains("cases/t.yaml:8:") && e.contains("no module named `lp2`") && e.contains("did you mean `lp1`"), "{e}");
    }

    #[test]
    fn not_a_c_identifier() {
        let e = errs(&GOOD.replace("name: cmdline_proc_show", "name: cmdline-proc"));
        assert!(e.contains(":5:") && e.contains("not a C identifier"), "{e}");
    }

    #[test]
    fn impossible_steps() {
        let e = errs(&GOOD.replace("  - disable: lp1\n  - unload: lp1\n", "  - unload: lp1\n  - unload: lp1\n"));
        assert!(e.contains(":12:") && e.contains("not loaded at this point"), "{e}");
    }

    #[test]
    fn unknown_step_and_errno() {
        let e = errs(&GOOD.replace("- disable: lp1", "- disabel: lp1"));
        assert!(e.contains("unknown step key `disabel`") && e.contains("did you mean `disable`"), "{e}");
        let e = errs(&GOOD.replace("- load: lp1", "- load: {module: lp1, refused: EFOO}"));
        assert!(e.contains("unknown errno `EFOO`"), "{e}");
    }

    #[test]
    fn yaml_syntax_error_has_position() {
        let e = errs("description: [unclosed\nsteps: []\n");
        assert!(e.starts_with("cases/t.yaml:"), "{e}");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        for s in ["", "-", "[]", "{}", "steps: 3", "description: x\nsteps: [1, [2], {load: {}}]", "\u{0}", "description: x\nsteps:\n - when: 3\n"] {
            let _ = parse(Path::new("t.yaml"), s);
        }
    }

    const CALL: &str = "description: d\ntargets:\n  - name: tg\n    functions:\n      - name: fn1\n      - name: busy\n        park: true\nsteps:\n  - load: tg\n  - park: tg.busy\n  - name: c\n    timeout: 5\n    warnings: 'sysfs: cannot create duplicate filename'\n    call: {parked: tg.busy, function: fn1, prints: {contains: original}}\n  - release: tg.busy\n  - unload: tg\n";

    #[test]
    fn step_timeout_warnings_and_call() {
        let c = parse(Path::new("cases/t.yaml"), CALL).unwrap();
        let s = &c.steps[2];
        assert_eq!(s.timeout, Some(5));
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].is_match("sysfs: cannot create duplicate filename '/x'"));
        match &s.action {
            Action::Call { module, parked, function, prints } => {
                assert_eq!((module.as_str(), parked.as_str(), function.as_str()), ("tg", "busy", "fn1"));
                assert_eq!(prints.as_ref().unwrap().contains, vec!["original".to_string()]);
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn call_checks_its_functions_and_sequence() {
        let e = errs(&CALL.replace("parked: tg.busy,", "parked: tg.fn1,"));
        assert!(e.contains("`tg.fn1` is not a parking function"), "{e}");
        let e = errs(&CALL.replace("function: fn1", "function: busy"));
        assert!(e.contains("`busy` is a parking function"), "{e}");
        let e = errs(&CALL.replace("function: fn1", "function: fn2"));
        assert!(e.contains("has no function `fn2`"), "{e}");
        let e = errs(&CALL.replace("  - load: tg\n  - park: tg.busy\n", ""));
        assert!(e.contains(":14:") && e.contains("`tg` is not loaded at this point"), "{e}");
    }

    #[test]
    fn step_timeout_range() {
        for bad in ["0", "86401", "18446744073709551615", "'5'", "-1"] {
            let e = errs(&CALL.replace("timeout: 5", &format!("timeout: {bad}")));
            assert!(e.contains(":12:") && e.contains("1..=86400"), "{bad}: {e}");
        }
        let e = errs(&GOOD.replace("- assert:\n      patches: {lp1: {enabled: 1}}", "- wait:\n      timeout: 18446744073709551615\n      patches: {lp1: {enabled: 1}}"));
        assert!(e.contains("1..=86400"), "{e}");
    }
}
