//! The kernel capabilities case files may name (livepatch sysfs attributes,
//! `struct klp_patch` fields), declared in data: `cases/capabilities.yaml`.
//!
//! The file is built into klpt (`include_str!`), so a klpt binary run away
//! from its checkout, and every unit test, knows the names without touching
//! the file system. A `capabilities.yaml` in the `cases` directory a case
//! file is under overrides that copy: a new kernel revision's cases extend
//! the list next to themselves, and `klpt check` sees the edit without a
//! rebuild.

use super::error::CaseError;
use super::positions::Pos;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::read::CAPABILITIES;
const BUILT_IN: &str = include_str!("../../../cases/capabilities.yaml");

/// What an attribute file holds, for checking asserted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Values {
    /// 0 or 1.
    Flag,
    /// An integer >= 0.
    Count,
    /// 0..=u32::MAX.
    U32,
    /// Cannot be read, so cannot be asserted.
    WriteOnly,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    pub patch_attributes: BTreeMap<String, Values>,
    pub object_attributes: BTreeMap<String, Values>,
    pub klp_patch: BTreeSet<String>,
    /// Fields of `struct klp_object`, `struct klp_state` and (newer kernels)
    /// `struct klp_state_callbacks` that a case may require or use.
    #[serde(default)]
    pub klp_object: BTreeSet<String>,
    #[serde(default)]
    pub klp_state: BTreeSet<String>,
    #[serde(default)]
    pub klp_state_callbacks: BTreeSet<String>,
    /// Groups of atoms (`klp_patch.replace_set`) no kernel has together.
    #[serde(default)]
    pub exclusive: Vec<Vec<String>>,
}

/// The kinds of names `requires:` and `when:` take.
pub const KINDS: &[&str] =
    &["config", "sysfs", "kallsyms", "klp_patch", "klp_object", "klp_state", "klp_state_callbacks"];

impl Known {
    /// Names `requires.sysfs` may use: patch and object attributes.
    pub fn sysfs_names(&self) -> Vec<&str> {
        self.patch_attributes.keys().chain(self.object_attributes.keys()).map(String::as_str).collect()
    }

    /// The known fields of struct `kind` (one of `model::STRUCTS`).
    pub fn fields(&self, kind: &str) -> Vec<&str> {
        let set = match kind {
            "klp_patch" => &self.klp_patch,
            "klp_object" => &self.klp_object,
            "klp_state" => &self.klp_state,
            "klp_state_callbacks" => &self.klp_state_callbacks,
            _ => return Vec::new(),
        };
        set.iter().map(String::as_str).collect()
    }

    /// The list for `case_file`: the override next to it, else the built-in one.
    pub fn for_case(case_file: &Path) -> Result<Arc<Known>, CaseError> {
        let over = case_file
            .ancestors()
            .skip(1)
            .find(|d| d.file_name().is_some_and(|n| n == "cases"))
            .map(|d| d.join(CAPABILITIES));
        match over {
            Some(f) if f.is_file() => cached(&f),
            _ => built_in(),
        }
    }

    fn parse(file: &Path, text: &str) -> Result<Known, CaseError> {
        let at = |pos: Pos, msg: String| CaseError {
            file: file.into(),
            pos,
            msg,
            hint: Some("see the comments at the top of the file".into()),
        };
        let k: Known = serde_norway::from_str(text).map_err(|e| {
            let pos = e.location().map(|l| Pos { line: l.line(), col: l.column() }).unwrap_or(Pos { line: 1, col: 1 });
            at(pos, e.to_string())
        })?;
        for group in &k.exclusive {
            for atom in group {
                if !k.is_atom(atom) {
                    return Err(at(
                        Pos { line: 1, col: 1 },
                        format!("`exclusive:` names `{atom}`, which is not `<kind>.<known name>`"),
                    ));
                }
            }
        }
        Ok(k)
    }

    /// `klp_patch.replace_set`, `sysfs.enabled`, `config.X`, `kallsyms.x`.
    fn is_atom(&self, atom: &str) -> bool {
        match atom.split_once('.') {
            Some(("sysfs", n)) => self.sysfs_names().contains(&n),
            Some((kind, n)) if super::model::STRUCTS.contains(&kind) => self.fields(kind).contains(&n),
            Some(("config" | "kallsyms", n)) => !n.is_empty(),
            _ => false,
        }
    }
}

type Loaded = Result<Arc<Known>, CaseError>;

fn built_in() -> Loaded {
    static K: OnceLock<Loaded> = OnceLock::new();
    K.get_or_init(|| Known::parse(Path::new("<built-in cases/capabilities.yaml>"), BUILT_IN).map(Arc::new)).clone()
}

/// Each override is read once per process (cases are many, the file is one).
fn cached(file: &Path) -> Loaded {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Loaded>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(file.to_path_buf())
        .or_insert_with(|| {
            let text = super::read::read_text(file).map_err(|(pos, msg, hint)| CaseError {
                file: file.into(),
                pos,
                msg,
                hint,
            })?;
            Known::parse(file, &text).map(Arc::new)
        })
        .clone()
}

#[cfg(test)]
pub(super) fn built_in_for_tests() -> Arc<Known> {
    built_in().expect("the built-in capabilities.yaml parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_list_has_the_rfc_names() {
        let k = built_in_for_tests();
        for a in ["enabled", "transition", "force", "replace", "stack_order", "replaceable", "replace_set"] {
            assert!(k.patch_attributes.contains_key(a), "{a}");
        }
        assert!(k.object_attributes.contains_key("patched"));
        for f in ["replace", "replaceable", "replace_set", "states"] {
            assert!(k.klp_patch.contains(f), "{f}");
        }
    }

    #[test]
    fn an_override_next_to_the_cases_is_used() {
        let d = tempfile::tempdir().unwrap();
        let cases = d.path().join("cases");
        std::fs::create_dir_all(cases.join("v3")).unwrap();
        let text = BUILT_IN.replace("  replace_set: u32", "  replace_set: u32\n  replace_mask: u32");
        std::fs::write(cases.join(CAPABILITIES), text).unwrap();
        let k = Known::for_case(&cases.join("v3/x.yaml")).unwrap();
        assert!(k.patch_attributes.contains_key("replace_mask"));
        assert!(!built_in_for_tests().patch_attributes.contains_key("replace_mask"));
        let bad = d.path().join("other/cases");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(
            bad.join(CAPABILITIES),
            "patch_attributes: {enabled: maybe}\nobject_attributes: {}\nklp_patch: []\n",
        )
        .unwrap();
        let e = Known::for_case(&bad.join("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("capabilities.yaml:1:"), "{e}");
    }
}
