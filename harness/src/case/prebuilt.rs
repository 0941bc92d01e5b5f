//! Prebuilt modules: `{name, ko: PATH}` under `targets:` or `livepatches:`
//! names a module file built elsewhere instead of describing one for klpt to
//! generate. What needs no kernel is checked here, at the `ko:` line: the
//! file is a kernel module, is named `name:`, and is (or is not) a
//! livepatch. Its vermagic is checked against each kernel under test before
//! that kernel's guest boots (`modules::prebuilt`).

use super::ko::{self, Ko};
use super::model::*;
use super::value::{suggest, Checker};
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
            objects: Vec::new(),
            code: Default::default(),
        })
    }

    pub fn prebuilt_target(&mut self, p: &str, v: &Value) -> Option<Target> {
        let (name, ko, params) = self.prebuilt(p, v, false)?;
        Some(Target {
            name,
            params,
            functions: Vec::new(),
            ko: Some(ko),
            log: false,
            kprobes: Vec::new(),
            code: Default::default(),
        })
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
        let name = self
            .required(p, m, "name", "the module's name as the kernel knows it (`name=` in its `.modinfo`)")
            .and_then(|x| self.string(&format!("{p}.name"), x))?;
        let kp = format!("{p}.ko");
        // A module whose file has a problem is still defined, so that the
        // steps using it report nothing beyond that problem.
        let Some(file) = m.get("ko").and_then(|x| self.text(&kp, x)) else {
            return Some((name, PathBuf::new(), Vec::new()));
        };
        let path = self.file.parent().unwrap_or(Path::new("")).join(&file);
        let info = match ko::read(&path) {
            Ok(bytes) => Ko::parse(&bytes).map_err(|e| {
                (
                    format!("{}: {e}", path.display()),
                    "`ko:` names a kernel module (`.ko`) built with the kernel's Kbuild",
                )
            }),
            Err(e) => Err((e, "`ko:` is a path to a built module, relative to the case file's directory or absolute")),
        };
        let info = match info {
            Ok(i) => i,
            Err((msg, hint)) => {
                self.err(&kp, msg, hint);
                return Some((name, path, Vec::new()));
            }
        };
        if let Err((msg, hint)) = info.check_identity(&name, livepatch) {
            let at = if info.name().is_some_and(|n| n != name) { format!("{p}.name") } else { kp };
            self.err(&at, format!("{}: {msg}", path.display()), hint);
        }
        let params =
            info.params().into_iter().map(|(name, ty)| Param { name, ty, default: None, array: None }).collect();
        Some((name, path, params))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::case::ko::test_elf;

    const LP_INFO: &[u8] =
        b"livepatch=Y\0license=GPL\0parmtype=replace:bool\0name=klpt_pb\0vermagic=6.1.0 SMP mod_unload \0";
    const TGT_INFO: &[u8] = b"license=GPL\0name=klpt_pbt\0vermagic=6.1.0 SMP mod_unload \0";

    /// Parses `src` as `case.yaml` in a directory holding `pb.ko` (a
    /// livepatch named klpt_pb), `tgt.ko` (a plain module named klpt_pbt)
    /// `text.ko` (not ELF), and `plain.ko` and `lp.ko` of the wrong kinds.
    pub(crate) fn parse(src: &str) -> Result<crate::case::Case, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pb.ko"), test_elf(false, 1, &[(".modinfo", LP_INFO)])).unwrap();
        std::fs::write(dir.path().join("tgt.ko"), test_elf(false, 1, &[(".modinfo", TGT_INFO)])).unwrap();
        std::fs::write(dir.path().join("text.ko"), "#!/bin/sh\n").unwrap();
        // Named as the other kind: a plain klpt_pb, a livepatch klpt_pbt.
        std::fs::write(
            dir.path().join("plain.ko"),
            test_elf(false, 1, &[(".modinfo", b"name=klpt_pb\0parmtype=replace:bool\0")]),
        )
        .unwrap();
        std::fs::write(dir.path().join("lp.ko"), test_elf(false, 1, &[(".modinfo", b"name=klpt_pbt\0livepatch=Y\0")]))
            .unwrap();
        crate::case::parse(&dir.path().join("case.yaml"), src).map_err(|e| e.to_string())
    }

    pub(crate) const GOOD: &str = "description: d\ntargets:\n  - name: klpt_pbt\n    ko: tgt.ko\nlivepatches:\n  - name: klpt_pb\n    ko: pb.ko\n  - name: klpt_gen\n    replace: true\n    functions:\n      - name: cmdline_proc_show\n        marker: gen\nsteps:\n  - load: klpt_pbt\n  - load: {module: klpt_pb, args: replace=0}\n  - assert: {patches: {klpt_pb: {enabled: 1, objects: {vmlinux: 1, klpt_pbt: 1}}}}\n  - load: klpt_gen\n  - unload: klpt_pb\n";

    fn rejects(from: &str, to: &str, needles: &[&str]) {
        assert!(GOOD.contains(from), "{from:?}");
        let e = parse(&GOOD.replacen(from, to, 1)).err().unwrap_or_else(|| panic!("accepted {from:?} -> {to:?}"));
        for n in needles {
            assert!(e.contains(n), "{from:?} -> {to:?}: {n:?} not in\n{e}");
        }
        assert!(e.contains("hint:"), "no hint in\n{e}");
    }

    #[test]
    fn prebuilt_modules_parse_with_their_parameters() {
        let c = parse(GOOD).unwrap();
        let lp = c.livepatch("klpt_pb").unwrap();
        assert!(lp.ko.as_ref().unwrap().ends_with("pb.ko") && lp.functions.is_empty());
        assert_eq!(
            lp.params.iter().map(|p| (p.name.as_str(), p.ty.as_str())).collect::<Vec<_>>(),
            [("replace", "bool")]
        );
        assert!(c.target("klpt_pbt").unwrap().ko.is_some());
        assert!(c.livepatch("klpt_gen").unwrap().ko.is_none());
    }

    #[test]
    fn generated_keys_are_refused_with_ko() {
        rejects(
            "    ko: pb.ko\n",
            "    ko: pb.ko\n    functions: [{name: cmdline_proc_show, marker: x}]\n",
            &[
                "case.yaml:8:5: `functions:` describes a module klpt generates, not a prebuilt one (`ko:`)",
                "drop `functions:`",
            ],
        );
        rejects(
            "    ko: pb.ko\n",
            "    ko: pb.ko\n    replace: true\n",
            &["case.yaml:8:5: `replace:`", "not a prebuilt one"],
        );
        rejects(
            "    ko: tgt.ko\n",
            "    ko: tgt.ko\n    params: [{name: x}]\n",
            &["case.yaml:5:5: `params:`", "reads a prebuilt module's parameters"],
        );
        rejects(
            "    ko: pb.ko\n",
            "    ko: pb.ko\n    kko: x\n",
            &["case.yaml:8:5: unknown key `kko`", "did you mean `ko`"],
        );
        rejects("  - name: klpt_pb\n    ko: pb.ko\n", "  - ko: pb.ko\n", &["case.yaml:6:5: missing `name:`"]);
    }

    #[test]
    fn the_file_is_checked_at_the_ko_line() {
        rejects(
            "ko: pb.ko",
            "ko: missing.ko",
            &["case.yaml:7:5: cannot read", "missing.ko", "relative to the case file's directory"],
        );
        rejects("ko: pb.ko", "ko: text.ko", &["case.yaml:7:5:", "not an ELF file"]);
        rejects("ko: pb.ko", "ko: ''", &["case.yaml:7:5: `ko` must not be empty"]);
        rejects("ko: pb.ko", "ko: 5", &["`ko` must be a string"]);
        rejects("ko: pb.ko", "ko: .", &["is not a regular file"]);
        // Named otherwise: at the name, with the right name in the hint.
        rejects(
            "  - name: klpt_pb\n    ko: pb.ko",
            "  - name: klpt_pbx\n    ko: pb.ko",
            &["case.yaml:6:5:", "the module is named `klpt_pb`, not `klpt_pbx`", "write `name: klpt_pb`"],
        );
        // A plain module under livepatches, a livepatch under targets.
        rejects(
            "ko: pb.ko",
            "ko: plain.ko",
            &["case.yaml:7:5:", "lacks `livepatch=Y`", "list plain modules under `targets:`"],
        );
        rejects("ko: tgt.ko", "ko: lp.ko", &["case.yaml:4:5:", "is a livepatch", "list it under `livepatches:`"]);
    }

    #[test]
    fn steps_use_what_the_module_has() {
        rejects(
            "args: replace=0",
            "args: replce=0",
            &["module `klpt_pb` has no parameter `replce`", "did you mean `replace`"],
        );
        // Generated-module checks that need `functions:` do not apply.
        rejects("  - unload: klpt_pb\n", "  - park: klpt_pbt.busy\n", &["target `klpt_pbt` has no function `busy`"]);
    }
}
