//! Prebuilt modules: `{name, ko: PATH}` under `targets:` or `livepatches:`
//! names a module file built elsewhere instead of describing one for klpt to
//! generate. What needs no kernel is checked here, at the `ko:` line: the
//! file is a kernel module, is named `name:`, and is (or is not) a
//! livepatch. Its vermagic is checked against each kernel under test before
//! that kernel's guest boots (`modules::prebuilt`).

use super::model::*;
use super::value::{suggest, Checker};
use crate::modules::ko::{self, Ko};
use serde_norway::Value;
use std::path::{Path, PathBuf};

const KEYS: &[&str] = &["name", "ko"];
/// Keys that describe a module klpt generates, per kind.
const GENERATED_LIVEPATCH: &[&str] = &["replace", "replaceable", "replace_set", "params", "states", "functions"];
const GENERATED_TARGET: &[&str] = &["params", "functions"];

/// Whether a module entry names a prebuilt file (it has `ko:`).
pub fn is_prebuilt(v: &Value) -> bool {
    v.as_mapping().is_some_and(|m| m.contains_key("ko"))
}

impl Checker<'_> {
    pub fn prebuilt_livepatch(&mut self, p: &str, v: &Value) -> Option<Livepatch> {
        let (name, ko, params) = self.prebuilt(p, v, true)?;
        Some(Livepatch {
            name,
            replace: false,
            replaceable: None,
            replace_set: None,
            params,
            states: Vec::new(),
            functions: Vec::new(),
            ko: Some(ko),
        })
    }

    pub fn prebuilt_target(&mut self, p: &str, v: &Value) -> Option<Target> {
        let (name, ko, params) = self.prebuilt(p, v, false)?;
        Some(Target { name, params, functions: Vec::new(), ko: Some(ko) })
    }

    /// The name, the resolved path and the module's parameters.
    fn prebuilt(&mut self, p: &str, v: &Value, livepatch: bool) -> Option<(String, PathBuf, Vec<Param>)> {
        let m = self.any_map(p, v, &format!("keys: {}", KEYS.join(", ")))?;
        let generated = if livepatch { GENERATED_LIVEPATCH } else { GENERATED_TARGET };
        for k in m.keys().filter_map(Value::as_str) {
            let kp = format!("{p}.{k}");
            if k == "params" {
                let hint = "drop `params:`: klpt reads a prebuilt module's parameters (`parmtype=` in its `.modinfo`), and its defaults are built in";
                self.err(&kp, "`params:` describes a module klpt generates, not a prebuilt one (`ko:`)", hint);
            } else if generated.contains(&k) {
                let hint = format!("drop `{k}:` (the module is loaded as it was built), or drop `ko:` to have klpt generate the module");
                self.err(&kp, format!("`{k}:` describes a module klpt generates, not a prebuilt one (`ko:`)"), hint);
            } else if !KEYS.contains(&k) {
                let hint = format!("a prebuilt module takes only: {}{}", KEYS.join(", "), suggest(k, KEYS));
                self.err(&kp, format!("unknown key `{k}`"), hint);
            }
        }
        let name = self.required(p, m, "name", "the module's name as the kernel knows it (`name=` in its `.modinfo`)").and_then(|x| self.string(&format!("{p}.name"), x));
        let kp = format!("{p}.ko");
        let file = self.text(&kp, m.get("ko")?)?;
        let path = self.file.parent().unwrap_or(Path::new("")).join(&file);
        let bytes = match ko::read(&path) {
            Ok(b) => b,
            Err(e) => {
                let hint = "`ko:` is a path to a built module, relative to the case file's directory or absolute";
                self.err(&kp, e, hint);
                return None;
            }
        };
        let info = match Ko::parse(&bytes) {
            Ok(i) => i,
            Err(e) => {
                self.err(&kp, format!("{}: {e}", path.display()), "`ko:` names a kernel module (`.ko`) built with the kernel's Kbuild");
                return None;
            }
        };
        let name = name?;
        if let Err((msg, hint)) = info.check_identity(&name, livepatch) {
            let at = if info.name().is_some_and(|n| n != name) { format!("{p}.name") } else { kp };
            self.err(&at, format!("{}: {msg}", path.display()), hint);
            return None;
        }
        let params = info.params().into_iter().map(|(name, ty)| Param { name, ty, default: None }).collect();
        Some((name, path, params))
    }
}
