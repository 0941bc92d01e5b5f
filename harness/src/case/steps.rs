//! Steps: one action each, plus `name:`, `when:`, `timeout:`, `warnings:`.

use super::doc::MAX_TIMEOUT;
use super::errno;
use super::model::*;
use super::value::{suggest, Checker};
use serde_norway::{Mapping, Value};

const KINDS: &[&str] = &[
    "load", "disable", "write", "force", "unload", "park", "release", "wait", "assert", "shell", "call", "spawn",
    "kill", "trace", "sysctl",
];
/// Programs klpt builds for the guest and `spawn:` can start.
pub const PROGRAMS: &[&str] = &["getpid"];
/// At most this many copies per `spawn:` (the selftest starts one per CPU, at most 128).
const MAX_SPAWN: i128 = 128;
const META: &[&str] = &["name", "when", "timeout", "warnings"];

impl Checker<'_> {
    pub fn steps(&mut self, d: &CaseDoc) -> Vec<Step> {
        d.steps.iter().enumerate().filter_map(|(i, raw)| self.step(d, i, raw)).collect()
    }

    fn step(&mut self, d: &CaseDoc, index: usize, raw: &Value) -> Option<Step> {
        let p = format!("steps[{index}]");
        let m = self.any_map(&p, raw, "a step is a mapping like `load: NAME`")?;
        let mut kind: Option<(&str, &Value)> = None;
        let mut unknown = false;
        for (k, val) in m {
            let Some(k) = k.as_str() else { continue };
            if KINDS.contains(&k) {
                if let Some((first, _)) = kind {
                    self.err(
                        &format!("{p}.{k}"),
                        format!("step has two actions (`{first}` and `{k}`)"),
                        "split it into two steps",
                    );
                }
                kind = Some((k, val));
            } else if !META.contains(&k) {
                unknown = true;
                let all: Vec<&str> = KINDS.iter().chain(META).copied().collect();
                let hint = format!(
                    "a step is one of {} (plus `name:`, `when:`, `timeout:`, `warnings:`){}",
                    KINDS.join(", "),
                    suggest(k, &all)
                );
                self.err(&format!("{p}.{k}"), format!("unknown step key `{k}`"), hint);
            }
        }
        let label = m.get("name").and_then(|x| self.text(&format!("{p}.name"), x));
        let when = m.get("when").and_then(|x| self.cond(&format!("{p}.when"), x));
        let timeout =
            m.get("timeout").and_then(|x| self.integer(&format!("{p}.timeout"), x, 1..=MAX_TIMEOUT)).map(|n| n as u64);
        let warnings = m.get("warnings").map(|x| self.regexes(&format!("{p}.warnings"), x)).unwrap_or_default();
        let Some((kind, val)) = kind else {
            if !unknown {
                self.err(&p, "step has no action", format!("use one of {}", KINDS.join(", ")));
            }
            return None;
        };
        let kp = format!("{p}.{kind}");
        let mut action = self.action(d, &kp, kind, val)?;
        if let Action::Wait { timeout: t, .. } = &mut action {
            match (val.as_mapping().and_then(|w| w.get("timeout")), timeout) {
                (Some(_), Some(_)) => self.err(
                    &format!("{p}.timeout"),
                    "the step and its `wait:` both set `timeout:`",
                    "keep one of them",
                ),
                (None, Some(step_t)) => *t = step_t,
                _ => {}
            }
        }
        let line = self.pos.get(&p).line;
        Some(Step { index, line, label: label.unwrap_or_else(|| kind.to_string()), when, timeout, warnings, action })
    }

    /// `when: {has: REQUIRES, lacks: REQUIRES}`.
    fn cond(&mut self, p: &str, v: &Value) -> Option<Cond> {
        let m = self.map(p, v, &["has", "lacks"])?;
        let has = m.get("has").map(|x| self.requires(&format!("{p}.has"), x)).unwrap_or_default();
        let lacks = m.get("lacks").map(|x| self.requires(&format!("{p}.lacks"), x)).unwrap_or_default();
        if has.is_empty() && lacks.is_empty() {
            self.err(
                p,
                "`when:` names no capability, so it always holds",
                "e.g. `when: {has: {klp_patch: [replace_set]}}`, or drop it",
            );
        }
        Some(Cond { has, lacks })
    }

    fn action(&mut self, d: &CaseDoc, p: &str, kind: &str, v: &Value) -> Option<Action> {
        Some(match kind {
            "load" => {
                let (module, m) = self.name_or_map(p, v, "module", &["module", "args", "wait", "refused"])?;
                self.module_ref(d, p, &module, false);
                let args = match m.and_then(|m| m.get("args")) {
                    Some(a) => self.load_args(d, &format!("{p}.args"), &module, a),
                    None => String::new(),
                };
                let (wait, refused) = (self.flag(p, m, "wait"), self.refused(p, m));
                Action::Load { module, args, wait, refused }
            }
            "disable" => {
                let (patch, m) = self.name_or_map(p, v, "patch", &["patch", "wait", "refused"])?;
                self.module_ref(d, p, &patch, true);
                Action::Disable { wait: self.flag(p, m, "wait"), refused: self.refused(p, m), patch }
            }
            "force" => {
                let (patch, m) = self.name_or_map(p, v, "patch", &["patch", "refused"])?;
                self.module_ref(d, p, &patch, true);
                Action::Force { refused: self.refused(p, m), patch }
            }
            "unload" => {
                let (module, m) = self.name_or_map(p, v, "module", &["module", "refused"])?;
                self.module_ref(d, p, &module, false);
                Action::Unload { refused: self.refused(p, m), module }
            }
            "park" | "release" => {
                let (module, function) = self.parking(d, p, v)?;
                if kind == "park" {
                    Action::Park { module, function }
                } else {
                    Action::Release { module, function }
                }
            }
            "write" => self.write(d, p, v)?,
            "shell" => self.shell(p, v)?,
            "call" => self.call(d, p, v)?,
            "spawn" => self.spawn(p, v)?,
            "trace" => self.trace(p, v)?,
            "sysctl" => self.sysctl(p, v)?,
            "kill" => Action::Kill { name: self.group_name(p, v)? },
            "assert" => Action::Assert(self.assertion(d, p, v, &[])?),
            "wait" => {
                let until = self.assertion(d, p, v, &["timeout"])?;
                let t = v.as_mapping().and_then(|m| m.get("timeout"));
                let timeout = t
                    .and_then(|t| self.integer(&format!("{p}.timeout"), t, 1..=MAX_TIMEOUT))
                    .map_or(d.timeout, |n| n as u64);
                Action::Wait { until, timeout }
            }
            _ => unreachable!("step kinds are filtered above"),
        })
    }

    /// `wait:` of a mapping: true unless given as false.
    fn flag(&mut self, p: &str, m: Option<&Mapping>, key: &str) -> bool {
        m.and_then(|m| m.get(key)).and_then(|x| self.boolean(&format!("{p}.{key}"), x)).unwrap_or(true)
    }

    fn refused(&mut self, p: &str, m: Option<&Mapping>) -> Option<Errnos> {
        let v = m?.get("refused")?;
        let p = format!("{p}.refused");
        let list = self.one_or_more(&p, v);
        for (ip, e) in &list {
            if !errno::is_known(e) {
                let names = errno::known_names();
                self.err(
                    ip,
                    format!("unknown errno `{e}`"),
                    format!("one of {}{}", names.join(", "), suggest(e, &names)),
                );
            }
        }
        Some(list.into_iter().map(|(_, e)| e).collect())
    }

    /// `load: NAME` or `load: {module: NAME, ...}`: the name and the mapping, if any.
    fn name_or_map<'v>(
        &mut self,
        p: &str,
        v: &'v Value,
        key: &str,
        allowed: &[&str],
    ) -> Option<(String, Option<&'v Mapping>)> {
        if v.is_string() {
            return Some((self.text(p, v)?, None));
        }
        if !v.is_mapping() {
            let kind = p.rsplit('.').next().unwrap_or(key);
            let msg = format!("`{kind}` takes a module name or a mapping, not {}", super::value::describe(v));
            self.err(
                p,
                msg,
                format!(
                    "e.g. `{kind}: NAME` or `{kind}: {{{}}}`",
                    allowed.iter().map(|k| format!("{k}: ...")).collect::<Vec<_>>().join(", ")
                ),
            );
            return None;
        }
        let m = self.map(p, v, allowed)?;
        let name = self.required(p, m, key, "")?;
        Some((self.text(&format!("{p}.{key}"), name)?, Some(m)))
    }

    pub fn module_ref(&mut self, d: &CaseDoc, p: &str, name: &str, livepatch_only: bool) {
        let is_lp = d.livepatches.iter().any(|l| l.name == name);
        let is_target = d.targets.iter().any(|t| t.name == name);
        let names: Vec<&str> =
            d.livepatches.iter().map(|l| l.name.as_str()).chain(d.targets.iter().map(|t| t.name.as_str())).collect();
        if livepatch_only && !is_lp {
            let hint = if is_target {
                format!("`{name}` is a target module, not a livepatch")
            } else {
                format!("define it under `livepatches:`{}", suggest(name, &names))
            };
            self.err(p, format!("no livepatch named `{name}`"), hint);
        } else if !is_lp && !is_target {
            self.err(
                p,
                format!("no module named `{name}`"),
                format!("define it under `livepatches:` or `targets:`{}", suggest(name, &names)),
            );
        }
    }

    fn module_params<'d>(d: &'d CaseDoc, module: &str) -> Vec<&'d str> {
        let t = d.targets.iter().find(|t| t.name == module).map(|t| &t.params);
        let l = d.livepatches.iter().find(|l| l.name == module).map(|l| &l.params);
        t.or(l).into_iter().flatten().map(|p| p.name.as_str()).collect()
    }

    /// `insmod` arguments: `name=value` words naming declared parameters.
    /// The shell quoting is the runner's; here nothing may break a line.
    fn load_args(&mut self, d: &CaseDoc, p: &str, module: &str, v: &Value) -> String {
        let Some(args) = self.string(p, v) else {
            return String::new();
        };
        if args.contains(['\n', '\r']) {
            self.err(p, "module arguments must be on one line", "separate `name=value` words with spaces");
        }
        let declared = Self::module_params(d, module);
        for w in words(&args) {
            let Some((name, _)) = w.split_once('=') else {
                self.err(p, format!("module argument `{w}` is not `name=value`"), "e.g. `args: \"verbose=1 label=x\"`");
                continue;
            };
            if !super::is_c_ident(name) {
                self.err(
                    p,
                    format!("parameter name `{name}` is not a C identifier"),
                    "parameter names are C identifiers: letters, digits, `_`",
                );
            } else if !declared.contains(&name) {
                let prebuilt = d.livepatches.iter().any(|l| l.name == module && l.ko.is_some())
                    || d.targets.iter().any(|t| t.name == module && t.ko.is_some());
                let hint = format!(
                    "{} (it has: {}){}",
                    if prebuilt {
                        "a prebuilt module has the parameters its `.modinfo` declares (`parmtype=`)"
                    } else {
                        "declare it under the module's `params:`"
                    },
                    declared.join(", "),
                    suggest(name, &declared)
                );
                self.err(p, format!("module `{module}` has no parameter `{name}`"), hint);
            }
        }
        args
    }

    /// `module.function` naming a parking function of a target.
    fn parking(&mut self, d: &CaseDoc, p: &str, v: &Value) -> Option<(String, String)> {
        let s = self.string(p, v)?;
        let Some((module, function)) = s.split_once('.') else {
            self.err(p, "expected `module.function`", "e.g. `park: klpt_busy.busy_fn`");
            return None;
        };
        match d.targets.iter().find(|t| t.name == module) {
            None => {
                let targets: Vec<&str> = d.targets.iter().map(|t| t.name.as_str()).collect();
                self.err(
                    p,
                    format!("no target module named `{module}`"),
                    format!("parking functions belong to modules under `targets:`{}", suggest(module, &targets)),
                )
            }
            Some(t) => match t.functions.iter().find(|f| f.name == function) {
                Some(f) if f.park => {}
                Some(_) => self.err(
                    p,
                    format!("`{module}.{function}` is not a parking function"),
                    "add `park: true` to the function",
                ),
                None => self.err(
                    p,
                    format!("target `{module}` has no function `{function}`"),
                    "list it under the target's `functions:` with `park: true`",
                ),
            },
        }
        Some((module.to_string(), function.to_string()))
    }

    fn write(&mut self, d: &CaseDoc, p: &str, v: &Value) -> Option<Action> {
        let m = self.map(p, v, &["path", "param", "value", "refused"])?;
        let vp = format!("{p}.value");
        let value = match self.required(p, m, "value", "what to write")? {
            n @ Value::Number(_) => self.integer(&vp, n, i64::MIN.into()..=u64::MAX.into()).map(|n| n.to_string()),
            x => self.string(&vp, x),
        };
        let path = match (m.get("path"), m.get("param")) {
            (Some(x), None) => {
                let path = self.string(&format!("{p}.path"), x)?;
                self.guest_path(&format!("{p}.path"), &path);
                path
            }
            (None, Some(x)) => {
                let pp = format!("{p}.param");
                let param = self.string(&pp, x)?;
                let Some((module, name)) = param.split_once('.') else {
                    self.err(&pp, "`param:` takes `module.parameter`", "e.g. `param: klpt_tgt.verbose`");
                    return None;
                };
                self.module_ref(d, &pp, module, false);
                let declared = Self::module_params(d, module);
                if !declared.contains(&name)
                    && (d.targets.iter().any(|t| t.name == module) || d.livepatches.iter().any(|l| l.name == module))
                {
                    self.err(
                        &pp,
                        format!("module `{module}` has no parameter `{name}`"),
                        format!("declare it under `params:`{}", suggest(name, &declared)),
                    );
                }
                format!("/sys/module/{module}/parameters/{name}")
            }
            _ => {
                self.err(
                    p,
                    "`write:` needs exactly one of `path:` or `param:`",
                    "e.g. `write: {path: /sys/kernel/livepatch/lp/enabled, value: 0}`",
                );
                return None;
            }
        };
        let refused = self.refused(p, Some(m));
        Some(Action::Write { path, value: value?, refused })
    }

    fn shell(&mut self, p: &str, v: &Value) -> Option<Action> {
        if v.is_string() {
            return Some(Action::Shell { command: self.text(p, v)?, status: 0 });
        }
        let m = self.map(p, v, &["command", "status"])?;
        let command = self
            .required(p, m, "command", "the command to run in the guest")
            .and_then(|c| self.text(&format!("{p}.command"), c));
        let status = m.get("status").map(|s| self.integer(&format!("{p}.status"), s, 0..=255)).unwrap_or(Some(0));
        Some(Action::Shell { command: command?, status: status? as i32 })
    }

    /// A spawned group's name: a C identifier, so it reads as `${name}` in `args:`.
    fn group_name(&mut self, p: &str, v: &Value) -> Option<String> {
        let n = self.string(p, v)?;
        self.ident(p, "group name", &n);
        Some(n)
    }

    /// `spawn: {program: getpid | command: "...", count: N, as: NAME}`.
    fn spawn(&mut self, p: &str, v: &Value) -> Option<Action> {
        let m = self.map(p, v, &["program", "command", "count", "as"])?;
        let name = self
            .required(p, m, "as", "a name for the group, for `kill:` and `${name}` in `args:`")
            .and_then(|x| self.group_name(&format!("{p}.as"), x));
        let count = m.get("count").map(|x| self.integer(&format!("{p}.count"), x, 1..=MAX_SPAWN)).unwrap_or(Some(1));
        let (program, command) = match (m.get("program"), m.get("command")) {
            (Some(x), None) => {
                let pp = format!("{p}.program");
                let prog = self.string(&pp, x)?;
                if !PROGRAMS.contains(&prog.as_str()) {
                    self.err(
                        &pp,
                        format!("klpt builds no program `{prog}`"),
                        format!(
                            "one of {} (`getpid` calls getpid() in a loop, as the selftests' test_klp-call_getpid), or a `command:`{}",
                            PROGRAMS.join(", "),
                            suggest(&prog, PROGRAMS)
                        ),
                    );
                }
                (Some(prog), None)
            }
            (None, Some(x)) => (None, Some(self.text(&format!("{p}.command"), x)?)),
            _ => {
                self.err(
                    p,
                    "`spawn:` needs exactly one of `program:` or `command:`",
                    "e.g. `spawn: {program: getpid, count: 2, as: callers}`",
                );
                return None;
            }
        };
        Some(Action::Spawn { name: name?, program, command, count: count? as u32 })
    }

    /// `trace: {function: NAME}` or `trace: off`.
    fn trace(&mut self, p: &str, v: &Value) -> Option<Action> {
        if v.as_str() == Some("off") {
            return Some(Action::Trace { function: None });
        }
        if !v.is_mapping() {
            let msg = format!("`trace` takes `off` or `{{function: NAME}}`, not {}", super::value::describe(v));
            self.err(p, msg, "e.g. `trace: {function: cmdline_proc_show}`, later `trace: off`");
            return None;
        }
        let m = self.map(p, v, &["function"])?;
        let fp = format!("{p}.function");
        let f = self.required(p, m, "function", "the function to trace").and_then(|x| self.string(&fp, x))?;
        if !super::is_symbol(&f) {
            self.err(&fp, format!("`{f}` is not a function name"), "a symbol name: letters, digits, `_`, `.`");
        }
        Some(Action::Trace { function: Some(f) })
    }

    /// `sysctl: {name: kernel.ftrace_enabled, value: 0, refused: EBUSY}`:
    /// a write to /proc/sys/kernel/ftrace_enabled.
    fn sysctl(&mut self, p: &str, v: &Value) -> Option<Action> {
        let m = self.map(p, v, &["name", "value", "refused"])?;
        let np = format!("{p}.name");
        let name = self.required(p, m, "name", "e.g. `kernel.ftrace_enabled`").and_then(|x| self.string(&np, x))?;
        let ok = name.split('.').count() >= 2
            && name.split('.').all(|c| {
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
            });
        if !ok {
            self.err(
                &np,
                format!("`{name}` is not a sysctl name"),
                "dotted lower-case words, e.g. `kernel.ftrace_enabled`",
            );
        }
        let vp = format!("{p}.value");
        let value = match self.required(p, m, "value", "what to set")? {
            n @ Value::Number(_) => self.integer(&vp, n, i64::MIN.into()..=u64::MAX.into()).map(|n| n.to_string()),
            x => self.text(&vp, x),
        };
        let refused = self.refused(p, Some(m));
        Some(Action::Write { path: format!("/proc/sys/{}", name.replace('.', "/")), value: value?, refused })
    }

    /// `call: {parked: MODULE.PARKFN, function: FN, prints: MATCHER}`.
    fn call(&mut self, d: &CaseDoc, p: &str, v: &Value) -> Option<Action> {
        let m = self.map(p, v, &["parked", "function", "prints"])?;
        let pp = format!("{p}.parked");
        let parked = self
            .required(p, m, "parked", "the parking function whose worker calls, `module.function`")
            .and_then(|x| self.parking(d, &pp, x));
        let fp = format!("{p}.function");
        let function = self
            .required(p, m, "function", "the target function the parked worker calls")
            .and_then(|x| self.string(&fp, x));
        let prints = m.get("prints").and_then(|x| self.matcher(&format!("{p}.prints"), x));
        let ((module, parked), function) = (parked?, function?);
        if let Some(t) = d.targets.iter().find(|t| t.name == module) {
            match t.functions.iter().find(|f| f.name == function) {
                Some(f) if f.work.is_some() => self.err(
                    &fp,
                    format!("`{function}` is a work function"),
                    "call a function without `park:` or `work:`; a work function runs with `write: {path: /proc/MODULE/FN, value: run}`",
                ),
                Some(f) if !f.park => {}
                Some(_) => self.err(
                    &fp,
                    format!("`{function}` is a parking function"),
                    "call a function without `park: true`",
                ),
                None => {
                    let names: Vec<&str> = t
                        .functions
                        .iter()
                        .filter(|f| !f.park)
                        .map(|f| f.name.as_str())
                        .collect();
                    self.err(
                        &fp,
                        format!("target `{module}` has no function `{function}`"),
                        format!("one of {}{}", names.join(", "), suggest(&function, &names)),
                    );
                }
            }
        }
        Some(Action::Call { module, parked, function, prints })
    }
}

/// The groups `${name}` in a load's arguments refer to.
pub fn groups(args: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Whitespace-separated words; double quotes group, as the kernel's
/// parameter parser reads them.
fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(st) = start.take() {
                    out.push(&s[st..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(st) = start {
        out.push(&s[st..]);
    }
    out
}
