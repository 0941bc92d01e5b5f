//! The suite as the tree declares it: the scripts of `TEST_PROGS` in the
//! selftest Makefile, in its order (the order `run_kselftest.sh` runs them),
//! and each script's scenarios, read from its `start_test "..."` lines so
//! that every scenario is a trial before anything boots.

use crate::error::{Error, IoContext, Result};
use std::path::Path;

/// One `start_test` of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// 1-based, in script order: the trial name's last part (`06`).
    pub index: usize,
    /// The `start_test` argument, as the script prints it after `TEST: `.
    pub title: String,
    /// The `if` around a conditional scenario (`[[ "$HAS_REPLACE_ATTR" == "1" ]]`):
    /// the script runs it only on kernels where this holds.
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// `test-callbacks` (the file without `.sh`).
    pub name: String,
    /// `test-callbacks.sh`.
    pub file: String,
    pub scenarios: Vec<Scenario>,
}

impl Script {
    /// `kselftest/test-callbacks/06`: the case id of a scenario's trial.
    pub fn case_id(&self, sc: &Scenario) -> String {
        format!("kselftest/{}/{:02}", self.name, sc.index)
    }
}

/// `TEST_PROGS` of a selftest Makefile, continuation lines joined; `+=`
/// lines append.
pub fn test_progs(makefile: &str) -> Vec<String> {
    let joined = makefile.replace("\\\n", " ");
    let mut out = Vec::new();
    for l in joined.lines() {
        let l = l.trim();
        let rest = if let Some(r) = l.strip_prefix("TEST_PROGS") { r.trim_start() } else { continue };
        let (append, value) = if let Some(v) = rest.strip_prefix("+=") {
            (true, v)
        } else if let Some(v) = rest.strip_prefix(":=").or_else(|| rest.strip_prefix('=')) {
            (false, v)
        } else {
            continue;
        };
        if !append {
            out.clear();
        }
        out.extend(value.split_whitespace().map(str::to_string));
    }
    out
}

/// The scenarios of one script: every `start_test "..."` (or `'...'`) call.
/// A call indented under an `if` records that `if`'s condition.
pub fn scenarios(script: &str) -> Vec<Scenario> {
    let mut out = Vec::new();
    // (indent, condition) of the enclosing `if` blocks.
    let mut ifs: Vec<(usize, String)> = Vec::new();
    for line in script.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if t == "fi" || t.starts_with("fi ") || t.starts_with("fi;") {
            ifs.pop();
            continue;
        }
        if let Some(cond) = t.strip_prefix("if ") {
            let cond = cond.trim_end_matches("; then").trim_end_matches(";then").trim();
            // A one-line `if ...; then ...; fi` opens no block.
            if !t.ends_with("fi") {
                ifs.push((indent, cond.to_string()));
            }
            continue;
        }
        let Some(arg) = t.strip_prefix("start_test ") else { continue };
        let arg = arg.trim();
        let title = match arg.chars().next() {
            Some(q @ ('"' | '\'')) => {
                arg[1..].rfind(q).map(|end| arg[1..1 + end].to_string()).unwrap_or_else(|| arg[1..].to_string())
            }
            _ => arg.to_string(),
        };
        let condition = ifs.iter().rev().find(|(i, _)| *i < indent).map(|(_, c)| c.clone());
        out.push(Scenario { index: out.len() + 1, title, condition });
    }
    out
}

/// The suite in `dir` (`tools/testing/selftests/livepatch` of a tree).
pub fn discover(dir: &Path) -> Result<Vec<Script>> {
    let mk = dir.join("Makefile");
    let makefile = std::fs::read_to_string(&mk).ctx(|| format!("read {}", mk.display()))?;
    let mut progs = test_progs(&makefile);
    if progs.is_empty() {
        // No TEST_PROGS: every test-*.sh, sorted.
        progs = std::fs::read_dir(dir)
            .ctx(|| format!("read {}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("test-") && n.ends_with(".sh"))
            .collect();
        progs.sort();
    }
    let mut out = Vec::new();
    for file in progs {
        let p = dir.join(&file);
        let text = std::fs::read_to_string(&p).ctx(|| format!("read {}", p.display()))?;
        let sc = scenarios(&text);
        if sc.is_empty() {
            return Err(Error::Other(format!(
                "{}: no `start_test \"...\"` line, so no scenario to report",
                p.display()
            )));
        }
        out.push(Script { name: file.trim_end_matches(".sh").to_string(), file, scenarios: sc });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_progs_in_makefile_order() {
        let mk = "TEST_GEN_FILES := x\nTEST_PROGS := \\\n\ttest-livepatch.sh \\\n\ttest-callbacks.sh\nTEST_PROGS += test-new.sh\nTEST_FILES := settings\n";
        assert_eq!(test_progs(mk), ["test-livepatch.sh", "test-callbacks.sh", "test-new.sh"]);
    }

    #[test]
    fn conditional_scenarios_keep_their_condition() {
        let s = "start_test \"sysfs test\"\nload_lp x\n\nif [[ \"$HAS_PATCH_ATTR\" == \"1\" ]]; then\n\tstart_test \"sysfs test object/patched\"\n\tload_lp y\nfi\n# start_test \"commented\"\nif true; then echo; fi\nstart_test 'last one'\n";
        let v = scenarios(s);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], Scenario { index: 1, title: "sysfs test".into(), condition: None });
        assert_eq!(v[1].title, "sysfs test object/patched");
        assert_eq!(v[1].condition.as_deref(), Some("[[ \"$HAS_PATCH_ATTR\" == \"1\" ]]"));
        assert_eq!(v[2], Scenario { index: 3, title: "last one".into(), condition: None });
    }

    /// The 7.2 tree klpt builds, when it is in the cache: 8 scripts, 32 scenarios.
    #[test]
    fn the_cached_7_2_tree_has_32_scenarios() {
        let dir = crate::cache::root().join("src/linux-source-7.2/tree/tools/testing/selftests/livepatch");
        if !dir.exists() {
            eprintln!("skipped: {} is not in the cache", dir.display());
            return;
        }
        let s = discover(&dir).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "test-livepatch",
                "test-callbacks",
                "test-shadow-vars",
                "test-state",
                "test-ftrace",
                "test-sysfs",
                "test-syscall",
                "test-kprobe"
            ]
        );
        assert_eq!(s.iter().map(|s| s.scenarios.len()).sum::<usize>(), 32);
        assert_eq!(s[1].scenarios[5].title, "pre-patch callback -ENODEV");
        assert_eq!(s[5].scenarios.iter().filter(|c| c.condition.is_some()).count(), 4);
    }
}
