//! Module-scope C (`includes:`, `c:`, `init:`, `exit:`) and the callbacks of
//! livepatch objects (`objects:`).

use super::errno;
use super::model::*;
use super::value::{describe, suggest, Checker};
use serde_norway::{Mapping, Value};

/// `struct klp_callbacks` of a `klp_object`; only `pre_patch` returns int.
pub const OBJECT_CALLBACKS: &[&str] = &["pre_patch", "post_patch", "pre_unpatch", "post_unpatch"];
const CALLBACK_KEYS: &[&str] = &["log", "fail", "returns", "body"];
pub const CODE_KEYS: &[&str] = &["includes", "c", "init", "exit"];

impl Checker<'_> {
    /// C text with the line its content starts on.
    pub fn code(&mut self, p: &str, v: &Value) -> Option<Code> {
        let text = self.text(p, v)?;
        Some(Code { text, line: self.pos.text_line(p) })
    }

    /// `includes:`, `c:`, `init:`, `exit:` of module `p`.
    pub fn module_code(&mut self, p: &str, m: &Mapping) -> ModuleCode {
        let mut code = ModuleCode::default();
        if let Some(v) = m.get("includes") {
            let ip = format!("{p}.includes");
            code.includes = self.strings(&ip, v);
            for (i, h) in code.includes.iter().enumerate() {
                let ok = h.ends_with(".h")
                    && !h.starts_with('/')
                    && !h.split('/').any(|c| c.is_empty() || c == "..")
                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b));
                if !ok {
                    self.err(
                        &format!("{ip}[{i}]"),
                        format!("`{h}` is not a header path"),
                        "a path below an include directory, as in `#include <linux/slab.h>`: write `linux/slab.h`",
                    );
                }
            }
        }
        let mut get = |k: &str| m.get(k).and_then(|v| self.code(&format!("{p}.{k}"), v));
        code.c = get("c");
        code.init = get("init");
        code.exit = get("exit");
        code
    }

    /// `objects:` of livepatch `p`: object name → `{callbacks: ...}`.
    pub fn objects(&mut self, p: &str, v: &Value, params: &[Param]) -> Vec<Object> {
        let op = format!("{p}.objects");
        let Some(m) = self.any_map(&op, v, "e.g. `objects: {vmlinux: {callbacks: [pre_patch, post_patch]}}`") else {
            return Vec::new();
        };
        if m.is_empty() {
            self.err(&op, "`objects:` lists no object", "name objects with callbacks, or drop the key");
        }
        let mut out = Vec::new();
        for (k, ov) in m {
            let Some(name) = k.as_str() else { continue };
            let ep = format!("{op}.{name}");
            if name != "vmlinux" {
                self.ident(&ep, "object name", name);
            }
            let Some(om) = self.map(&ep, ov, &["callbacks"]) else {
                continue;
            };
            let Some(cv) = self.required(
                &ep,
                om,
                "callbacks",
                "e.g. `callbacks: [pre_patch, post_patch, pre_unpatch, post_unpatch]`",
            ) else {
                continue;
            };
            let callbacks = self.callbacks(&format!("{ep}.callbacks"), cv, OBJECT_CALLBACKS, &["pre_patch"], params);
            out.push(Object { name: name.to_string(), callbacks });
        }
        out
    }

    /// A list of callback names (each logs its default line) or a mapping
    /// of callback name → `{log, fail, returns, body}`. `known` are the
    /// callback names; `returning` those that return int.
    pub fn callbacks(
        &mut self,
        p: &str,
        v: &Value,
        known: &[&str],
        returning: &[&str],
        params: &[Param],
    ) -> Vec<(String, Callback)> {
        let mut out: Vec<(String, Callback)> = Vec::new();
        let named = |c: &mut Self, np: &str, name: &str| -> bool {
            if !known.contains(&name) {
                c.err(
                    np,
                    format!("unknown callback `{name}`"),
                    format!("one of {}{}", known.join(", "), suggest(name, known)),
                );
                return false;
            }
            true
        };
        match v {
            Value::Sequence(items) => {
                if items.is_empty() {
                    self.err(p, "no callbacks listed", "list callbacks, or drop the key");
                }
                for (i, x) in items.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let Some(name) = self.string(&ip, x) else {
                        continue;
                    };
                    if !named(self, &ip, &name) {
                        continue;
                    }
                    if out.iter().any(|(n, _)| *n == name) {
                        self.err(&ip, format!("callback `{name}` is listed twice"), "list it once");
                        continue;
                    }
                    out.push((name, Callback::default()));
                }
            }
            Value::Mapping(m) => {
                if m.is_empty() {
                    self.err(p, "no callbacks listed", "list callbacks, or drop the key");
                }
                for (k, cv) in m {
                    let Some(name) = k.as_str() else { continue };
                    let np = format!("{p}.{name}");
                    if !named(self, &np, name) {
                        continue;
                    }
                    if let Some(cb) = self.callback(&np, cv, returning.contains(&name), params) {
                        out.push((name.to_string(), cb));
                    }
                }
            }
            other => {
                let msg = format!("`callbacks` must be a list of callback names or a mapping, not {}", describe(other));
                self.err(
                    p,
                    msg,
                    "e.g. `callbacks: [pre_patch, post_unpatch]` or `callbacks: {pre_patch: {fail: ENODEV}}`",
                );
            }
        }
        out
    }

    fn callback(&mut self, p: &str, v: &Value, returns_int: bool, params: &[Param]) -> Option<Callback> {
        let m = self.map(p, v, CALLBACK_KEYS)?;
        let mut cb = Callback::default();
        if let Some(l) = m.get("log") {
            let lp = format!("{p}.log");
            cb.log = match l {
                Value::Bool(true) => Log::Info,
                Value::Bool(false) => Log::Off,
                Value::String(_) => Log::Text(self.text(&lp, l)?),
                other => {
                    let msg = format!("`log` must be true, false or a line of text, not {}", describe(other));
                    self.err(&lp, msg, "`true` logs the selftests' callback_info() line");
                    return None;
                }
            };
        }
        let name = p.rsplit('.').next().unwrap_or("callback");
        for k in ["fail", "returns"] {
            if m.contains_key(k) && !returns_int {
                self.err(
                    &format!("{p}.{k}"),
                    format!("`{name}` returns nothing, so it cannot fail"),
                    "only pre_patch callbacks return a value",
                );
            }
        }
        if let Some(f) = m.get("fail") {
            let fp = format!("{p}.fail");
            let e = self.string(&fp, f)?;
            if !errno::is_known(&e) {
                let names = errno::known_names();
                self.err(
                    &fp,
                    format!("unknown errno `{e}`"),
                    format!("one of {}{}", names.join(", "), suggest(&e, &names)),
                );
            }
            cb.fail = Some(e);
        }
        if let Some(r) = m.get("returns") {
            let rp = format!("{p}.returns");
            let r = self.string(&rp, r)?;
            match params.iter().find(|q| q.name == r) {
                Some(q) if q.ty == "int" => {}
                Some(q) => {
                    self.err(&rp, format!("parameter `{r}` is a {}, not an int", q.ty), "declare it with `type: int`")
                }
                None => {
                    let names: Vec<&str> = params.iter().map(|q| q.name.as_str()).collect();
                    self.err(
                        &rp,
                        format!("the module has no parameter `{r}`"),
                        format!(
                            "declare it under the module's `params:`, e.g. `{{name: {r}, type: int}}`{}",
                            suggest(&r, &names)
                        ),
                    );
                }
            }
            cb.returns = Some(r);
        }
        if cb.fail.is_some() && cb.returns.is_some() {
            self.err(&format!("{p}.returns"), "a callback has `fail:` or `returns:`, not both", "keep one of them");
        }
        if let Some(b) = m.get("body") {
            cb.body = Some(self.code(&format!("{p}.body"), b)?);
        }
        Some(cb)
    }
}

/// State callbacks that return int (`struct klp_state_callbacks`).
pub const STATE_CALLBACKS_RETURNING: &[&str] = &["pre_patch", "setup"];

impl Checker<'_> {
    /// `data: {name, variable, set, migrate, object}` of a state.
    pub fn state_data(&mut self, p: &str, v: &Value) -> Option<StateData> {
        let m = self.map(p, v, &["name", "variable", "set", "migrate", "object"])?;
        let ident = |c: &mut Self, k: &str, what: &str, hint: &str| {
            let kp = format!("{p}.{k}");
            let s = c.required(p, m, k, hint).and_then(|x| c.string(&kp, x))?;
            c.ident(&kp, what, &s);
            Some(s)
        };
        let name =
            ident(self, "name", "state name", "it names the helpers, e.g. `loglevel` → allocate_loglevel_state()");
        let variable =
            ident(self, "variable", "variable", "the kernel variable the patch changes, e.g. `console_loglevel`");
        let set = self
            .required(p, m, "set", "the C value the variable gets while patched")
            .and_then(|x| self.text(&format!("{p}.set"), x));
        let migrate = m.get("migrate").and_then(|x| self.boolean(&format!("{p}.migrate"), x)).unwrap_or(false);
        let object = match m.get("object") {
            Some(x) => {
                let op = format!("{p}.object");
                let o = self.string(&op, x)?;
                if o != "vmlinux" {
                    self.ident(&op, "object name", &o);
                }
                o
            }
            None => "vmlinux".into(),
        };
        Some(StateData { name: name?, variable: variable?, set: set?, migrate, object })
    }

    /// Two states of a livepatch must not generate helpers of one name.
    pub fn state_names(&mut self, p: &str, states: &[State]) {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (i, s) in states.iter().enumerate() {
            let Some(d) = &s.data else { continue };
            for (k, v) in [("name", &d.name), ("variable", &d.variable)] {
                if seen.contains(&(k, v.as_str())) {
                    self.err(
                        &format!("{p}.states[{i}].data.{k}"),
                        format!("two states' data have the {k} `{v}`"),
                        "each state's helpers need their own name and variable",
                    );
                }
                seen.push((k, v));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, s) in states.iter().enumerate() {
            if !ids.insert(s.id) {
                self.err(
                    &format!("{p}.states[{i}].id"),
                    format!("state id {} is declared twice", s.id),
                    "a patch has one state per id",
                );
            }
        }
    }
}

/// What the steps a case has need of the kernel's config, added to
/// `requires:` (see [`implied_requires`]).
pub fn implied_by_steps(r: &mut Requires, steps: &[Step]) {
    let mut config: Vec<&str> = Vec::new();
    for s in steps {
        match &s.action {
            Action::Trace { .. } => config.extend(["FUNCTION_TRACER", "DYNAMIC_FTRACE"]),
            Action::Assert(a) | Action::Wait { until: a, .. }
                if a.files.iter().any(|(f, _)| f == super::assertion::TRACE) =>
            {
                config.push("FUNCTION_TRACER")
            }
            Action::Write { path, .. } if path == FTRACE_ENABLED => config.push("FUNCTION_TRACER"),
            _ => {}
        }
    }
    for c in config {
        if !r.config.iter().any(|x| x.strip_prefix("CONFIG_").unwrap_or(x) == c) {
            r.config.push(c.to_string());
        }
    }
}

/// `kernel.ftrace_enabled`, which exists with the function tracer.
pub const FTRACE_ENABLED: &str = "/proc/sys/kernel/ftrace_enabled";

/// What the features a case uses need of the kernel's livepatch.h, added
/// to `requires:` so that a kernel without them skips the case with the
/// reason instead of failing to build it.
pub fn implied_requires(d: &mut CaseDoc) {
    let mut add: Vec<(&str, String)> = Vec::new();
    for lp in &d.livepatches {
        if lp.objects.iter().any(|o| !o.callbacks.is_empty()) {
            add.push(("klp_object", "callbacks".into()));
        }
        for s in &lp.states {
            if s.data.is_some() {
                // Its helpers run from object callbacks.
                add.push(("klp_state", "data".into()));
                add.push(("klp_object", "callbacks".into()));
            }
            if !s.callbacks.is_empty() {
                add.push(("klp_state", "callbacks".into()));
            }
            for (n, _) in &s.callbacks {
                add.push(("klp_state_callbacks", n.clone()));
            }
            if s.is_shadow.is_some() {
                add.push(("klp_state", "is_shadow".into()));
            }
            if s.block_disable.is_some() {
                add.push(("klp_state", "block_disable".into()));
            }
        }
    }
    for (kind, field) in add {
        d.requires.add_field(kind, &field);
    }
    if d.targets.iter().any(|t| !t.kprobes.is_empty()) && !d.requires.config.iter().any(|c| c.ends_with("KPROBES")) {
        d.requires.config.push("KPROBES".into());
    }
}

impl Checker<'_> {
    /// `kprobes: [{symbol, post_handler}]` of a target.
    pub fn kprobes(&mut self, p: &str, v: &Value, params: &[Param]) -> Vec<Kprobe> {
        let out = self.each(p, v, |c, kp, kv| c.kprobe(kp, kv, params));
        let mut seen = std::collections::BTreeSet::new();
        for (i, k) in out.iter().enumerate() {
            if !seen.insert(&k.symbol) {
                self.err(
                    &format!("{p}[{i}].symbol"),
                    format!("`{}` is probed twice", k.symbol),
                    "one kprobe per symbol",
                );
            }
        }
        out
    }

    fn kprobe(&mut self, p: &str, v: &Value, params: &[Param]) -> Option<Kprobe> {
        let m = self.map(p, v, &["symbol", "post_handler"])?;
        let sp = format!("{p}.symbol");
        let symbol = self
            .required(p, m, "symbol", "the probed function, e.g. `cmdline_proc_show`")
            .and_then(|x| self.string(&sp, x))?;
        if !super::is_symbol(&symbol) {
            self.err(&sp, format!("`{symbol}` is not a symbol name"), "letters, digits, `_`, `.`, `$`");
        }
        let hp = format!("{p}.post_handler");
        let post_handler = match m.get("post_handler") {
            None => PostHandler::Always(false),
            Some(Value::Bool(b)) => PostHandler::Always(*b),
            Some(Value::String(name)) => {
                match params.iter().find(|q| &q.name == name) {
                    Some(q) if q.ty == "bool" => {}
                    Some(q) => self.err(
                        &hp,
                        format!("parameter `{name}` is a {}, not a bool", q.ty),
                        "declare it with `type: bool`",
                    ),
                    None => {
                        let names: Vec<&str> = params.iter().map(|q| q.name.as_str()).collect();
                        self.err(
                            &hp,
                            format!("the module has no parameter `{name}`"),
                            format!("`true`, `false`, or a bool parameter of the module{}", suggest(name, &names)),
                        );
                    }
                }
                PostHandler::Param(name.clone())
            }
            Some(other) => {
                let msg =
                    format!("`post_handler` must be true, false or a bool parameter's name, not {}", describe(other));
                self.err(&hp, msg, "e.g. `post_handler: has_post_handler`");
                return None;
            }
        };
        Some(Kprobe { symbol, post_handler })
    }
}
