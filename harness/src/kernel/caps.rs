//! Kernel capabilities for `requires:` and `when:`: config options, symbols,
//! `struct klp_patch` fields. Probed from the artifact, never from versions.

use super::Kernel;
use crate::case::Requires;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Default)]
pub struct Caps {
    pub config: BTreeMap<String, String>,
    pub symbols: BTreeSet<String>,
    pub klp_fields: BTreeSet<String>,
    /// Fields of the other structs of `include/linux/livepatch.h` cases
    /// name (`klp_object`, `klp_state`, `klp_state_callbacks`).
    pub structs: BTreeMap<String, BTreeSet<String>>,
    /// Whether `symbols` could be read at all (no System.map: not checked).
    pub have_symbols: bool,
}

impl Caps {
    pub fn probe(k: &Kernel) -> Caps {
        let config = std::fs::read_to_string(&k.config).map(|t| parse_config(&t)).unwrap_or_default();
        let (symbols, have_symbols) = match k.system_map.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            // Debian's System.map is a one-line stub pointing at the -dbg package.
            Some(t) if t.lines().nth(100).is_some() => {
                (t.lines().filter_map(|l| l.split_whitespace().nth(2)).map(str::to_string).collect(), true)
            }
            Some(_) => (BTreeSet::new(), false),
            None => (BTreeSet::new(), false),
        };
        let header = k
            .source_dirs
            .iter()
            .chain(std::iter::once(&k.build_dir))
            .find_map(|d| std::fs::read_to_string(d.join("include/linux/livepatch.h")).ok())
            .unwrap_or_default();
        let klp_fields = struct_fields(&header, "klp_patch");
        let structs = crate::case::STRUCTS
            .iter()
            .filter(|s| **s != "klp_patch")
            .map(|s| (s.to_string(), struct_fields(&header, s)))
            .collect();
        Caps { config, symbols, klp_fields, structs, have_symbols }
    }

    /// Whether `struct kind` of the kernel's livepatch.h has `field`.
    pub fn has_field(&self, kind: &str, field: &str) -> bool {
        match kind {
            "klp_patch" => self.klp_fields.contains(field),
            _ => self.structs.get(kind).is_some_and(|f| f.contains(field)),
        }
    }

    pub fn config_on(&self, opt: &str) -> bool {
        let key = if opt.starts_with("CONFIG_") { opt.to_string() } else { format!("CONFIG_{opt}") };
        matches!(self.config.get(&key).map(String::as_str), Some("y") | Some("m"))
    }

    /// Which requirements are missing. `symbol` answers for symbols when the
    /// artifact has no usable System.map (Debian ships a stub): the runner
    /// passes a lookup in the guest's /proc/kallsyms, or `None` before boot
    /// (then symbol requirements are not decided yet).
    pub fn missing(&self, r: &Requires, symbol: Option<&dyn Fn(&str) -> bool>) -> Vec<String> {
        let mut out = Vec::new();
        for c in &r.config {
            if !self.config_on(c) {
                out.push(format!(
                    "config {}",
                    if c.starts_with("CONFIG_") { c.clone() } else { format!("CONFIG_{c}") }
                ));
            }
        }
        for (kind, fields) in r.structs() {
            for f in fields {
                if !self.has_field(kind, f) {
                    out.push(format!("struct {kind}.{f}"));
                }
            }
        }
        let has = |s: &str| -> Option<bool> {
            if self.have_symbols {
                Some(self.symbols.contains(s))
            } else {
                symbol.map(|f| f(s))
            }
        };
        for s in &r.kallsyms {
            if has(s) == Some(false) {
                out.push(format!("symbol {s}"));
            }
        }
        // A livepatch sysfs attribute exists when its show/store handler does
        // (they are only called through pointers, so never inlined away).
        for a in &r.sysfs {
            let show = has(&format!("{a}_show"));
            let store = has(&format!("{a}_store"));
            if show == Some(false) && store == Some(false) {
                out.push(format!("sysfs attribute {a}"));
            }
        }
        out
    }
}

pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// The member names of `struct NAME { ... };` in a C header.
pub fn struct_fields(header: &str, name: &str) -> BTreeSet<String> {
    let start = format!("struct {name} {{");
    let Some(i) = header.find(&start) else { return BTreeSet::new() };
    let body = &header[i + start.len()..];
    let body = &body[..body.find("\n};").unwrap_or(body.len())];
    // Drop comments, then take the last identifier before each `;`.
    let mut clean = String::new();
    let mut rest = body;
    while let Some(c) = rest.find("/*") {
        clean.push_str(&rest[..c]);
        rest = rest[c..].find("*/").map(|e| &rest[c + e + 2..]).unwrap_or("");
    }
    clean.push_str(rest);
    let ident = regex::Regex::new(r"([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\])?\s*(:\s*\d+)?\s*$").expect("static regex");
    // A function pointer member, `int (*pre_patch)(struct klp_patch *p, ...)`.
    let fn_ptr = regex::Regex::new(r"\(\s*\*\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*\(").expect("static regex");
    clean
        .split(';')
        .filter_map(|decl| {
            let decl = decl.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join(" ");
            fn_ptr.captures(&decl).or_else(|| ident.captures(decl.trim())).map(|c| c[1].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klp_patch_fields_from_header() {
        let h = "struct klp_patch {\n\t/* external */\n\tstruct module *mod;\n\tstruct klp_object *objs;\n\tstruct klp_state *states;\n\tbool replace;\n\tunsigned int replace_set; /* set */\n\n\t/* internal */\n\tstruct list_head list;\n\tbool enabled;\n\tstruct work_struct free_work;\n};\n";
        let f = struct_fields(h, "klp_patch");
        for x in ["mod", "objs", "states", "replace", "replace_set", "enabled", "free_work"] {
            assert!(f.contains(x), "{x} in {f:?}");
        }
        assert!(!f.contains("external"));
    }

    #[test]
    fn struct_fields_of_state_callbacks() {
        let h = "struct klp_state_callbacks {\n\tint (*pre_patch)(struct klp_patch *patch, struct klp_state *state);\n\tvoid (*post_unpatch)(struct klp_patch *patch, struct klp_state *state);\n\tbool pre_patch_succeeded;\n};\n\nstruct klp_state {\n\tunsigned long id;\n\tstruct klp_state_callbacks callbacks;\n\tbool is_shadow;\n};\n";
        let cb = struct_fields(h, "klp_state_callbacks");
        let want: BTreeSet<String> = ["pre_patch", "post_unpatch", "pre_patch_succeeded"].map(String::from).into();
        assert_eq!(cb, want);
        let st = struct_fields(h, "klp_state");
        assert!(st.contains("callbacks") && st.contains("is_shadow") && !st.contains("data"), "{st:?}");
        let mut caps = Caps::default();
        caps.structs.insert("klp_state".into(), st);
        let r = Requires { klp_state: vec!["callbacks".into(), "data".into()], ..Default::default() };
        assert_eq!(caps.missing(&r, None), ["struct klp_state.data"]);
    }
}
