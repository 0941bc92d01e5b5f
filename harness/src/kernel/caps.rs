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
    /// Whether `symbols` could be read at all (no System.map: not checked).
    pub have_symbols: bool,
}

impl Caps {
    pub fn probe(k: &Kernel) -> Caps {
        let config = std::fs::read_to_string(&k.config).map(|t| parse_config(&t)).unwrap_or_default();
        let (symbols, have_symbols) = match k.system_map.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            // Debian's System.map is a one-line stub pointing at the -dbg package.
            Some(t) if t.lines().nth(100).is_some() => (t.lines().filter_map(|l| l.split_whitespace().nth(2)).map(str::to_string).collect(), true),
            Some(_) => (BTreeSet::new(), false),
            None => (BTreeSet::new(), false),
        };
        let klp_fields = k
            .source_dirs
            .iter()
            .chain(std::iter::once(&k.build_dir))
            .find_map(|d| std::fs::read_to_string(d.join("include/linux/livepatch.h")).ok())
            .map(|h| struct_fields(&h, "klp_patch"))
            .unwrap_or_default();
        Caps { config, symbols, klp_fields, have_symbols }
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
                out.push(format!("config {}", if c.starts_with("CONFIG_") { c.clone() } else { format!("CONFIG_{c}") }));
            }
        }
        for f in &r.klp_patch {
            if !self.klp_fields.contains(f) {
                out.push(format!("struct klp_patch.{f}"));
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
    clean
        .split(';')
        .filter_map(|decl| {
            let decl = decl.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join(" ");
            ident.captures(decl.trim()).map(|c| c[1].to_string())
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
}
