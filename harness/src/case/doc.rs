//! The top level of a case file, its `requires:` and its modules.

use super::model::*;
use super::value::{describe, suggest, Checker};
use serde_norway::{Mapping, Value};
use std::collections::BTreeSet;

const TOP: &[&str] =
    &["description", "requires", "arches", "smp", "timeout", "xfail", "targets", "livepatches", "steps"];
/// Deadlines are whole seconds, at most a day: a longer one is a typo, and
/// `Instant + Duration` must not overflow.
pub const MAX_TIMEOUT: i128 = 86_400;
const DEFAULT_TIMEOUT: u64 = 30;
/// The kernel's MODULE_NAME_LEN (64 - sizeof(unsigned long)) minus the NUL.
const MAX_MODULE_NAME: usize = 55;
const PARAM_TYPES: &[&str] = &["int", "uint", "bool", "charp"];
/// Elements of an array parameter (the selftests size theirs by NR_CPUS).
const MAX_ARRAY: i128 = 8192;
const U32: i128 = u32::MAX as i128;
/// `unsigned long` on every architecture klpt runs (all 64-bit).
const ULONG: i128 = u64::MAX as i128;

impl Checker<'_> {
    pub fn doc(&mut self, v: &Value) -> Option<CaseDoc> {
        if !v.is_mapping() {
            let hint = "start with `description:`; cases/README.md lists the keys";
            self.err(
                "",
                format!("a case file is a mapping of `description:`, `steps:` and more, not {}", describe(v)),
                hint,
            );
            return None;
        }
        let m = self.map("", v, TOP)?;
        let description =
            self.required("", m, "description", "say what the case shows").and_then(|x| self.text("description", x));
        let steps = match self.required("", m, "steps", "list what to do and check") {
            Some(s) => self.list("steps", s).map(<[Value]>::to_vec).unwrap_or_default(),
            None => Vec::new(),
        };
        if m.get("steps").is_some_and(|s| s.as_sequence().is_some_and(Vec::is_empty)) {
            self.err("steps", "a case without steps checks nothing", "add steps");
        }
        let mut d = CaseDoc {
            description: description.unwrap_or_default(),
            requires: m.get("requires").map(|r| self.requires("requires", r)).unwrap_or_default(),
            arches: Vec::new(),
            smp: 1,
            timeout: DEFAULT_TIMEOUT,
            xfail: Vec::new(),
            targets: Vec::new(),
            livepatches: Vec::new(),
            steps,
        };
        if let Some(a) = m.get("arches") {
            d.arches = self.strings("arches", a);
            for (i, a) in d.arches.clone().iter().enumerate() {
                if !crate::arch::ARCHES.contains(&a.as_str()) {
                    let hint = format!("one of {}{}", crate::arch::ARCHES.join(", "), suggest(a, &crate::arch::ARCHES));
                    self.err(&format!("arches[{i}]"), format!("unknown architecture `{a}`"), hint);
                }
            }
        }
        if let Some(n) = m.get("smp").and_then(|x| self.integer("smp", x, 1..=8)) {
            d.smp = n as u32;
        }
        if let Some(n) = m.get("timeout").and_then(|x| self.integer("timeout", x, 1..=MAX_TIMEOUT)) {
            d.timeout = n as u64;
        }
        if let Some(x) = m.get("xfail") {
            d.xfail = self.each("xfail", x, |c, p, v| c.xfail(p, v));
        }
        let mut names = BTreeSet::new();
        if let Some(x) = m.get("targets") {
            d.targets = self.each("targets", x, |c, p, v| c.target(p, v));
            for (i, t) in d.targets.iter().enumerate() {
                self.module_name(&format!("targets[{i}].name"), &t.name, &mut names);
            }
        }
        if let Some(x) = m.get("livepatches") {
            d.livepatches = self.each("livepatches", x, |c, p, v| c.livepatch(p, v));
            for (i, l) in d.livepatches.iter().enumerate() {
                self.module_name(&format!("livepatches[{i}].name"), &l.name, &mut names);
            }
        }
        super::code::implied_requires(&mut d);
        Some(d)
    }

    /// Each item of the list at `p`, read by `f`; items with errors are dropped.
    pub fn each<T>(&mut self, p: &str, v: &Value, mut f: impl FnMut(&mut Self, &str, &Value) -> Option<T>) -> Vec<T> {
        let Some(items) = self.list(p, v) else {
            return Vec::new();
        };
        items.iter().enumerate().filter_map(|(i, x)| f(self, &format!("{p}[{i}]"), x)).collect()
    }

    fn xfail(&mut self, p: &str, v: &Value) -> Option<Xfail> {
        let m = self.map(p, v, &["kernel", "arches", "reason"])?;
        let kernel =
            self.required(p, m, "kernel", "a regex over kernel ids").and_then(|x| self.text(&format!("{p}.kernel"), x));
        let reason = self
            .required(p, m, "reason", "why the case fails there")
            .and_then(|x| self.text(&format!("{p}.reason"), x));
        let arches = m.get("arches").map(|a| self.strings(&format!("{p}.arches"), a)).unwrap_or_default();
        for (i, a) in arches.iter().enumerate() {
            if !crate::arch::ARCHES.contains(&a.as_str()) {
                let hint = format!("one of {}{}", crate::arch::ARCHES.join(", "), suggest(a, &crate::arch::ARCHES));
                self.err(&format!("{p}.arches[{i}]"), format!("unknown architecture `{a}`"), hint);
            }
        }
        self.regex(&format!("{p}.kernel"), kernel.as_deref()?)?;
        Some(Xfail { kernel: kernel?, arches, reason: reason? })
    }

    fn module_name(&mut self, p: &str, name: &str, names: &mut BTreeSet<String>) {
        self.ident(p, "module name", name);
        if name.len() > MAX_MODULE_NAME {
            self.err(p, format!("module names are limited to {MAX_MODULE_NAME} characters"), "shorten it");
        }
        if !names.insert(name.to_string()) {
            self.err(p, format!("module `{name}` is defined twice"), "give each module its own name");
        }
    }

    /// `name:` (a C identifier) and the `functions:` list, which may be
    /// absent (a module of callbacks or C only) but not empty.
    fn module_parts<'v>(&mut self, p: &str, m: &'v Mapping) -> (Option<String>, &'v [Value]) {
        let name = self.required(p, m, "name", "").and_then(|x| self.string(&format!("{p}.name"), x));
        let fp = format!("{p}.functions");
        let functions = match m.get("functions") {
            Some(f) => self.list(&fp, f).unwrap_or_default(),
            None => &[],
        };
        if m.get("functions").is_some_and(|f| f.as_sequence().is_some_and(Vec::is_empty)) {
            self.err(
                &fp,
                format!("module `{}` has no functions", name.as_deref().unwrap_or("?")),
                "list them under `functions:`, or drop the key",
            );
        }
        (name, functions)
    }

    fn target(&mut self, p: &str, v: &Value) -> Option<Target> {
        if super::prebuilt::is_prebuilt(v) {
            return self.prebuilt_target(p, v);
        }
        let keys: Vec<&str> =
            ["name", "params", "functions", "log", "kprobes"].iter().chain(super::code::CODE_KEYS).copied().collect();
        let m = self.map(p, v, &keys)?;
        let (name, fs) = self.module_parts(p, m);
        if !["functions", "c", "init", "exit", "log", "kprobes"].iter().any(|k| m.contains_key(*k)) {
            self.err(
                p,
                format!("target `{}` does nothing", name.as_deref().unwrap_or("?")),
                "list `functions:`, or give it C code (`c:`, `init:`, `exit:`) or `log: true`",
            );
        }
        let params = self.params(p, m);
        let functions: Vec<TargetFunc> = fs
            .iter()
            .enumerate()
            .filter_map(|(j, f)| self.target_func(&format!("{p}.functions[{j}]"), f, &params))
            .collect();
        let mut seen = BTreeSet::new();
        for (j, f) in functions.iter().enumerate() {
            if !seen.insert(&f.name) {
                self.err(
                    &format!("{p}.functions[{j}].name"),
                    format!("function `{}` is listed twice", f.name),
                    "drop or rename one of them",
                );
            }
        }
        let log = m.get("log").and_then(|x| self.boolean(&format!("{p}.log"), x)).unwrap_or(false);
        if let Some(n) = &name {
            for (j, f) in functions.iter().enumerate() {
                if f.name == format!("{n}_init") || f.name == format!("{n}_exit") {
                    self.err(
                        &format!("{p}.functions[{j}].name"),
                        format!("`{}` is the name of the module's own init or exit function", f.name),
                        "rename the function",
                    );
                }
            }
        }
        let kprobes = match m.get("kprobes") {
            Some(k) => self.kprobes(&format!("{p}.kprobes"), k, &params),
            None => Vec::new(),
        };
        Some(Target { params, functions, ko: None, log, kprobes, code: self.module_code(p, m), name: name? })
    }

    fn target_func(&mut self, p: &str, v: &Value, params: &[Param]) -> Option<TargetFunc> {
        let m = self.map(p, v, &["name", "prints", "park", "work"])?;
        let name = self.required(p, m, "name", "").and_then(|x| self.string(&format!("{p}.name"), x))?;
        self.ident(&format!("{p}.name"), "function name", &name);
        let prints = m.get("prints").and_then(|x| self.string(&format!("{p}.prints"), x));
        let park = m.get("park").and_then(|x| self.boolean(&format!("{p}.park"), x)).unwrap_or(false);
        if park && prints.is_some() {
            self.err(&format!("{p}.prints"), "a parking function prints nothing", "drop `prints:` or `park:`");
        }
        let work = m.get("work").and_then(|x| self.work(&format!("{p}.work"), x, params));
        if work.is_some() && (park || prints.is_some()) {
            self.err(
                &format!("{p}.work"),
                "a work function neither parks nor prints",
                "drop `prints:` and `park:`, or `work:`",
            );
        }
        Some(TargetFunc { name, prints, park, work })
    }

    /// `work: true` or `work: {block: PARAM}` with PARAM a bool parameter.
    fn work(&mut self, p: &str, v: &Value, params: &[Param]) -> Option<Work> {
        if let Value::Bool(b) = v {
            if !b {
                self.err(p, "`work: false` declares nothing", "drop the key");
            }
            return b.then(Work::default);
        }
        if !v.is_mapping() {
            let msg = format!("`work` must be true or a mapping, not {}", describe(v));
            self.err(p, msg, "e.g. `work: {block: block_transition}`");
            return None;
        }
        let m = self.map(p, v, &["block"])?;
        let bp = format!("{p}.block");
        let block = self
            .required(p, m, "block", "a bool parameter that keeps the function busy while true")
            .and_then(|x| self.string(&bp, x))?;
        match params.iter().find(|q| q.name == block) {
            Some(q) if q.ty == "bool" => {}
            Some(q) => {
                self.err(&bp, format!("parameter `{block}` is a {}, not a bool", q.ty), "declare it with `type: bool`")
            }
            None => {
                let names: Vec<&str> = params.iter().map(|q| q.name.as_str()).collect();
                self.err(
                    &bp,
                    format!("the module has no parameter `{block}`"),
                    format!(
                        "declare it under the module's `params:`, e.g. `{{name: {block}, type: bool}}`{}",
                        suggest(&block, &names)
                    ),
                );
            }
        }
        Some(Work { block: Some(block) })
    }

    fn livepatch(&mut self, p: &str, v: &Value) -> Option<Livepatch> {
        if super::prebuilt::is_prebuilt(v) {
            return self.prebuilt_livepatch(p, v);
        }
        let m = self.map(
            p,
            v,
            &[
                "name",
                "replace",
                "replaceable",
                "replace_set",
                "params",
                "states",
                "functions",
                "objects",
                "includes",
                "c",
                "init",
                "exit",
            ],
        )?;
        let (name, fs) = self.module_parts(p, m);
        if !m.contains_key("functions") && !m.contains_key("objects") {
            self.err(
                p,
                format!("livepatch `{}` patches nothing", name.as_deref().unwrap_or("?")),
                "list `functions:`, or `objects:` with callbacks",
            );
        }
        let functions: Vec<PatchedFunc> =
            fs.iter().enumerate().filter_map(|(j, f)| self.patched_func(&format!("{p}.functions[{j}]"), f)).collect();
        let params = self.params(p, m);
        let states: Vec<State> = match m.get("states") {
            Some(s) => self.each(&format!("{p}.states"), s, |c, sp, sv| c.state(sp, sv, &params)),
            None => Vec::new(),
        };
        self.state_names(p, &states);
        let mut new_names = BTreeSet::new();
        for (j, f) in functions.iter().enumerate() {
            if let Some(n) = &f.new_name {
                if !new_names.insert(n.clone()) {
                    self.err(
                        &format!("{p}.functions[{j}].new_name"),
                        format!("two replacement functions are named `{n}`"),
                        "give each its own `new_name:`",
                    );
                }
            }
        }
        let objects = match m.get("objects") {
            Some(o) => self.objects(p, o, &params),
            None => Vec::new(),
        };
        Some(Livepatch {
            objects,
            code: self.module_code(p, m),
            replace: m.get("replace").and_then(|x| self.boolean(&format!("{p}.replace"), x)).unwrap_or(false),
            replaceable: m.get("replaceable").and_then(|x| self.boolean(&format!("{p}.replaceable"), x)),
            replace_set: m
                .get("replace_set")
                .and_then(|x| self.integer(&format!("{p}.replace_set"), x, 0..=U32))
                .map(|n| n as u32),
            params,
            states,
            functions,
            ko: None,
            name: name?,
        })
    }

    /// `struct klp_state`: `unsigned long id`, `unsigned int version`, and
    /// what klpt generates around it.
    fn state(&mut self, p: &str, v: &Value, params: &[Param]) -> Option<State> {
        let m = self.map(p, v, &["id", "version", "data", "callbacks", "is_shadow", "block_disable"])?;
        let id = self.required(p, m, "id", "").and_then(|x| self.integer(&format!("{p}.id"), x, 0..=ULONG));
        let version = m.get("version").map(|x| self.integer(&format!("{p}.version"), x, 0..=U32));
        let data = m.get("data").and_then(|x| self.state_data(&format!("{p}.data"), x));
        let callbacks = match m.get("callbacks") {
            Some(c) => {
                let known = self.known.fields("klp_state_callbacks");
                let known: Vec<&str> = known.into_iter().collect();
                let returning: Vec<&str> =
                    super::code::STATE_CALLBACKS_RETURNING.iter().copied().filter(|n| known.contains(n)).collect();
                self.callbacks(&format!("{p}.callbacks"), c, &known, &returning, params)
            }
            None => Vec::new(),
        };
        let mut flag = |k: &str| m.get(k).and_then(|x| self.boolean(&format!("{p}.{k}"), x));
        let (is_shadow, block_disable) = (flag("is_shadow"), flag("block_disable"));
        Some(State {
            id: id? as u64,
            version: version.unwrap_or(Some(0))? as u32,
            data,
            callbacks,
            is_shadow,
            block_disable,
        })
    }

    fn patched_func(&mut self, p: &str, v: &Value) -> Option<PatchedFunc> {
        let m = self.map(p, v, &["object", "name", "syscall", "sympos", "marker", "signature", "body", "new_name"])?;
        let syscall = match (m.get("name"), m.get("syscall")) {
            (_, None) => None,
            (None, Some(x)) => {
                let sp = format!("{p}.syscall");
                let sc = self.string(&sp, x)?;
                self.ident(&sp, "syscall name", &sc);
                if m.contains_key("object") || m.contains_key("sympos") || m.contains_key("marker") {
                    self.err(
                        &sp,
                        "a syscall is a vmlinux function, patched with `signature:` and `body:`",
                        "drop `object:`, `sympos:` and `marker:`",
                    );
                }
                Some(sc)
            }
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{p}.syscall"),
                    "a function has `name:` or `syscall:`, not both",
                    "`syscall: getpid` finds the entry point's symbol on each architecture",
                );
                return None;
            }
        };
        let name = match &syscall {
            Some(sc) => format!("sys_{sc}"),
            None => {
                let name = self
                    .required(p, m, "name", "the function's name in the kernel (or `syscall:`)")
                    .and_then(|x| self.string(&format!("{p}.name"), x))?;
                self.ident(&format!("{p}.name"), "function name", &name);
                name
            }
        };
        let new_name = m.get("new_name").and_then(|x| {
            let np = format!("{p}.new_name");
            let n = self.string(&np, x)?;
            self.ident(&np, "function name", &n);
            Some(n)
        });
        let object =
            m.get("object").map(|x| self.string(&format!("{p}.object"), x)).unwrap_or(Some("vmlinux".into()))?;
        if object != "vmlinux" {
            self.ident(&format!("{p}.object"), "object name", &object);
        }
        // `unsigned long old_sympos`.
        let sympos =
            m.get("sympos").map(|x| self.integer(&format!("{p}.sympos"), x, 0..=ULONG)).unwrap_or(Some(0))? as u64;
        let mut text = |k: &str| m.get(k).and_then(|x| self.text(&format!("{p}.{k}"), x));
        let (marker, signature, body) = (text("marker"), text("signature"), text("body"));
        match (&marker, &signature, &body) {
            (Some(_), None, None) => {}
            (None, Some(sig), Some(_)) => {
                if super::parse_signature(sig).is_none() {
                    let hint = "write it as `<return type> (<parameters>)`, e.g. `int (struct seq_file *m, void *v)`";
                    self.err(&format!("{p}.signature"), format!("cannot read signature `{sig}`"), hint);
                }
            }
            _ => {
                let hint = "`marker: text` replaces a seq_file show function with one printing `text`";
                self.err(p, format!("function `{name}` needs either `marker:` or both `signature:` and `body:`"), hint);
            }
        }
        Some(PatchedFunc { object, name, sympos, marker, signature, body, new_name, syscall })
    }

    fn params(&mut self, p: &str, m: &Mapping) -> Vec<Param> {
        let Some(v) = m.get("params") else {
            return Vec::new();
        };
        let out = self.each(&format!("{p}.params"), v, |c, pp, pv| c.param(pp, pv));
        let mut seen = BTreeSet::new();
        for (k, prm) in out.iter().enumerate() {
            if !seen.insert(&prm.name) {
                self.err(
                    &format!("{p}.params[{k}].name"),
                    format!("parameter `{}` is declared twice", prm.name),
                    "drop or rename one of them",
                );
            }
        }
        out
    }

    /// A module parameter; its `default:` must be a value of its type.
    fn param(&mut self, p: &str, v: &Value) -> Option<Param> {
        let m = self.map(p, v, &["name", "type", "default", "array"])?;
        let name = self.required(p, m, "name", "").and_then(|x| self.string(&format!("{p}.name"), x))?;
        self.ident(&format!("{p}.name"), "parameter name", &name);
        let tp = format!("{p}.type");
        let ty = m.get("type").map(|x| self.string(&tp, x)).unwrap_or(Some("int".into()))?;
        if !PARAM_TYPES.contains(&ty.as_str()) {
            self.err(
                &tp,
                format!("unknown parameter type `{ty}`"),
                format!("one of int, uint, bool, charp{}", suggest(&ty, PARAM_TYPES)),
            );
            return None;
        }
        let dp = format!("{p}.default");
        let ok = match (m.get("default"), ty.as_str()) {
            (None, _) => true,
            (Some(d), "int") => self.integer(&dp, d, i32::MIN.into()..=i32::MAX.into()).is_some(),
            (Some(d), "uint") => self.integer(&dp, d, 0..=U32).is_some(),
            (Some(d), "bool") => self.boolean(&dp, d).is_some(),
            (Some(d), _) => self.string(&dp, d).is_some(),
        };
        let ap = format!("{p}.array");
        let array = match m.get("array") {
            None => None,
            Some(a) => Some(self.integer(&ap, a, 1..=MAX_ARRAY)? as u32),
        };
        if array.is_some() && m.contains_key("default") {
            self.err(&ap, "an array parameter has no default", "drop `default:`; its elements are given at load");
        }
        ok.then(|| Param { name, ty, default: m.get("default").cloned(), array })
    }

    /// `{config: [...], sysfs: [...], kallsyms: [...], klp_patch: [...], ...}`, every name checked.
    pub fn requires(&mut self, p: &str, v: &Value) -> Requires {
        let Some(m) = self.map(p, v, super::known::KINDS) else {
            return Requires::default();
        };
        let mut list = |k: &str| m.get(k).map(|x| self.strings(&format!("{p}.{k}"), x)).unwrap_or_default();
        let r = Requires {
            config: list("config"),
            sysfs: list("sysfs"),
            kallsyms: list("kallsyms"),
            klp_patch: list("klp_patch"),
            klp_object: list("klp_object"),
            klp_state: list("klp_state"),
            klp_state_callbacks: list("klp_state_callbacks"),
        };
        let known = self.known;
        let sysfs = known.sysfs_names();
        let from_file =
            "the names klpt knows are in cases/capabilities.yaml; a new kernel revision's names are added there";
        for (i, c) in r.config.iter().enumerate() {
            let sym = c.strip_prefix("CONFIG_").unwrap_or(c);
            if sym.is_empty() || !sym.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                let hint = "a config symbol like LIVEPATCH or CONFIG_LIVEPATCH (upper case, digits, `_`)";
                self.err(&format!("{p}.config[{i}]"), format!("`{c}` is not a kernel config symbol"), hint);
            }
        }
        for (i, s) in r.kallsyms.iter().enumerate() {
            if !super::is_symbol(s) {
                let hint = "a symbol name: letters, digits, `_`, `.`, `$`";
                self.err(&format!("{p}.kallsyms[{i}]"), format!("`{s}` is not a symbol name"), hint);
            }
        }
        for (i, a) in r.sysfs.iter().enumerate() {
            if !sysfs.contains(&a.as_str()) {
                let msg = format!("unknown livepatch sysfs attribute `{a}`");
                self.err(&format!("{p}.sysfs[{i}]"), msg, format!("{from_file}{}", suggest(a, &sysfs)));
            }
        }
        for (kind, list) in r.structs() {
            let fields = known.fields(kind);
            for (i, f) in list.iter().enumerate() {
                if !fields.contains(&f.as_str()) {
                    let msg = format!("unknown struct {kind} field `{f}`");
                    self.err(&format!("{p}.{kind}[{i}]"), msg, format!("{from_file}{}", suggest(f, &fields)));
                }
            }
        }
        r
    }
}
