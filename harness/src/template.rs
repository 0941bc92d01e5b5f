//! Guest shell scripts and C boilerplate, kept as files under
//! `harness/templates/` so they read and diff as shell and C, built into
//! the binary with `include_str!`. A placeholder is `@NAME@` (capitals,
//! digits, `_`); [`Template::fill`] replaces each one with its value in a
//! single pass (a value is never scanned for placeholders).
//!
//! Each template declares the placeholders its caller fills: a unit test
//! holds every file to its declaration, and `fill` holds every caller to it,
//! so a placeholder can neither be left in the output nor filled by mistake.

/// One template file and the placeholders it holds.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Path under `harness/templates/`.
    pub name: &'static str,
    pub text: &'static str,
    pub keys: &'static [&'static str],
}

macro_rules! template {
    ($name:ident, $path:literal, [$($key:literal),*]) => {
        pub const $name: Template = Template {
            name: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $path)),
            keys: &[$($key),*],
        };
    };
}

// C, for the modules klpt generates (`modules::gen`) and the guest programs
// it builds (`modules::program`).
template!(GETPID_C, "c/getpid.c", []);
template!(SHADOW_HELPERS_C, "c/shadow-helpers.c", []);
template!(STATE_HELPERS_C, "c/state-helpers.c", []);
template!(CALLBACK_INFO_C, "c/callback-info.c", []);
template!(WORK_FUNCTION_C, "c/work-function.c", ["NAME", "WAIT"]);
template!(KPROBE_C, "c/kprobe.c", ["INDEX", "SYMBOL"]);
template!(PARKED_WORKER_C, "c/parked-worker.c", ["NAME", "DISPATCH"]);

// Guest shell: a step's one command (`steps::script`), an assertion's
// snapshot (`steps::assert`), the session's log sync and the artifacts of a
// failed step (`steps::run`).
template!(STEP_PRELUDE_SH, "guest/step-prelude.sh", ["WHAT", "MARKER", "END_CS"]);
template!(STEP_SYNC_SH, "guest/step-sync.sh", ["TAG_DEBUG", "KMSG", "READ_LOG", "TAG", "TAINTED"]);
template!(WAIT_ROUNDS_SH, "guest/wait-rounds.sh", ["SNAPSHOT", "RLOG", "POLL"]);
template!(LIVEPATCH_STATE_SH, "guest/livepatch-state.sh", ["TAG"]);
template!(LIVEPATCH_STATE_BUILTINS_SH, "guest/livepatch-state-builtins.sh", ["TAG"]);
template!(LOG_SYNC_SH, "guest/log-sync.sh", ["TAG", "OFFSET"]);
template!(LIVEPATCH_SYSFS_SH, "guest/livepatch-sysfs.sh", []);
template!(STUCK_TASKS_SH, "guest/stuck-tasks.sh", []);

/// Every template, for the tests.
pub const ALL: &[Template] = &[
    GETPID_C,
    SHADOW_HELPERS_C,
    STATE_HELPERS_C,
    CALLBACK_INFO_C,
    WORK_FUNCTION_C,
    KPROBE_C,
    PARKED_WORKER_C,
    STEP_PRELUDE_SH,
    STEP_SYNC_SH,
    WAIT_ROUNDS_SH,
    LIVEPATCH_STATE_SH,
    LIVEPATCH_STATE_BUILTINS_SH,
    LOG_SYNC_SH,
    LIVEPATCH_SYSFS_SH,
    STUCK_TASKS_SH,
];

/// The placeholders in `text`, in order of first appearance.
#[cfg(test)]
fn placeholders(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find('@') {
        let at = i + at;
        match placeholder(&text[at..]) {
            Some(name) => {
                if !out.contains(&name) {
                    out.push(name);
                }
                i = at + name.len() + 2;
            }
            None => i = at + 1,
        }
    }
    out
}

/// The placeholder starting at `s` (which starts with `@`), if one does.
fn placeholder(s: &str) -> Option<&str> {
    let rest = &s[1..];
    let end = rest.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))?;
    let name = &rest[..end];
    (end > 0 && rest[end..].starts_with('@') && name.starts_with(|c: char| c.is_ascii_uppercase())).then_some(name)
}

impl Template {
    /// The text with each placeholder replaced by its value. `values` must
    /// name exactly this template's keys: anything else is a bug in klpt,
    /// not in its input, and panics (the unit tests reach every caller).
    pub fn fill(&self, values: &[(&str, &str)]) -> String {
        let mut given: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
        given.sort_unstable();
        let mut keys = self.keys.to_vec();
        keys.sort_unstable();
        assert_eq!(given, keys, "template {}: filled with {given:?}, declares {keys:?}", self.name);
        let t = self.text;
        let mut out = String::with_capacity(t.len());
        let mut i = 0;
        while let Some(at) = t[i..].find('@') {
            let at = i + at;
            out.push_str(&t[i..at]);
            match placeholder(&t[at..]).and_then(|n| values.iter().find(|(k, _)| *k == n)) {
                Some((k, v)) => {
                    out.push_str(v);
                    i = at + k.len() + 2;
                }
                None => {
                    out.push('@');
                    i = at + 1;
                }
            }
        }
        out.push_str(&t[i..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_holds_exactly_the_placeholders_it_declares() {
        for t in ALL {
            let mut found = placeholders(t.text);
            found.sort_unstable();
            let mut keys = t.keys.to_vec();
            keys.sort_unstable();
            assert_eq!(found, keys, "{}", t.name);
            // Filled with its keys, nothing that looks like a placeholder is left.
            let values: Vec<(&str, &str)> = t.keys.iter().map(|k| (*k, "v")).collect();
            let filled = t.fill(&values);
            assert!(placeholders(&filled).is_empty(), "{}", t.name);
        }
    }

    #[test]
    fn every_file_is_a_template() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut files = Vec::new();
        for dir in std::fs::read_dir(&root).unwrap().flatten().filter(|e| e.path().is_dir()) {
            for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
                files.push(f.path().strip_prefix(&root).unwrap().to_string_lossy().into_owned());
            }
        }
        files.sort();
        let mut names: Vec<String> = ALL.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(files, names, "a file under harness/templates/ that no template names, or the other way round");
    }

    #[test]
    fn filling_is_one_pass_and_leaves_other_at_signs() {
        let t = Template { name: "t", text: "a @X@ b@ @x@ @@ @X@@Y@\n", keys: &["X", "Y"] };
        assert_eq!(t.fill(&[("X", "@Y@"), ("Y", "2")]), "a @Y@ b@ @x@ @@ @Y@2\n");
    }

    #[test]
    #[should_panic(expected = "declares")]
    fn a_missing_value_is_a_bug() {
        WORK_FUNCTION_C.fill(&[("NAME", "f")]);
    }

    #[test]
    #[should_panic(expected = "declares")]
    fn an_unknown_value_is_a_bug() {
        GETPID_C.fill(&[("NAME", "f")]);
    }
}
