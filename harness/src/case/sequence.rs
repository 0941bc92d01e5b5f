//! Steps that cannot succeed whatever the kernel does: loading a module
//! twice, unloading, disabling or using one that is not loaded.
//!
//! Steps with `when:` run only on some kernels, so the sequence is simulated
//! once per kernel kind: every truth assignment of the capabilities the
//! case's conditions name ("atoms", `klp_patch.replace_set`), minus those
//! `requires:` fixes and those `capabilities.yaml` declares exclusive. A
//! problem is reported with the kernels it happens on.

use super::model::*;
use super::value::Checker;
use std::collections::{BTreeMap, BTreeSet};

/// 2^10 simulations of a few dozen steps stay well under a millisecond.
const MAX_ATOMS: usize = 10;

/// `kind.name` for each name of `r`, config without its `CONFIG_` prefix.
fn atoms(r: &Requires) -> BTreeSet<String> {
    let config = r.config.iter().map(|c| format!("config.{}", c.strip_prefix("CONFIG_").unwrap_or(c)));
    let rest = [("sysfs", &r.sysfs), ("kallsyms", &r.kallsyms)].into_iter().chain(r.structs());
    config.chain(rest.flat_map(|(k, l)| l.iter().map(move |n| format!("{k}.{n}")))).collect()
}

/// When a step runs, as literals over the free atoms.
#[derive(Clone)]
enum Runs {
    Always,
    Never,
    If { has: Vec<usize>, lacks: Vec<usize> },
}

/// A problem found in one simulation.
type Problem = (usize, String, &'static str);

impl Checker<'_> {
    pub fn check_sequence(&mut self, requires: &Requires, steps: &[Step]) {
        let required = atoms(requires);
        let conds: Vec<Option<(BTreeSet<String>, BTreeSet<String>)>> =
            steps.iter().map(|s| s.when.as_ref().map(|c| (atoms(&c.has), atoms(&c.lacks)))).collect();
        let free: Vec<String> = conds
            .iter()
            .flatten()
            .flat_map(|(h, l)| h.iter().chain(l))
            .filter(|a| !required.contains(*a))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let idx = |a: &String| free.iter().position(|f| f == a);
        let mut runs = Vec::new();
        for (s, c) in steps.iter().zip(&conds) {
            let p = format!("steps[{}].when", s.index);
            runs.push(match c {
                None => Runs::Always,
                Some((has, lacks)) => {
                    if let Some(a) = has.intersection(lacks).next() {
                        self.err(
                            &p,
                            format!("no kernel both has and lacks {a}, so this step never runs"),
                            "drop one of them",
                        );
                        Runs::Never
                    } else if let Some(a) = lacks.intersection(&required).next() {
                        self.err(
                            &p,
                            format!("the case requires {a}, so this step that lacks it never runs"),
                            "drop the step or the requirement",
                        );
                        Runs::Never
                    } else {
                        Runs::If {
                            has: has.iter().filter_map(idx).collect(),
                            lacks: lacks.iter().filter_map(idx).collect(),
                        }
                    }
                }
            });
        }
        if free.len() > MAX_ATOMS {
            let p =
                steps.iter().find(|s| s.when.is_some()).map(|s| format!("steps[{}].when", s.index)).unwrap_or_default();
            let msg = format!(
                "`when:` conditions name {} capabilities; the sequence check handles at most {MAX_ATOMS}",
                free.len()
            );
            self.err(&p, msg, "split the case by kernel revision");
            return;
        }
        let valid = self.kernels(&required, &free);
        if valid.is_empty() {
            self.err(
                "requires",
                "no kernel has all of `requires:` (capabilities.yaml declares some of them exclusive)",
                "drop one of the exclusive requirements",
            );
            return;
        }
        let on = |r: &Runs, k: u32| match r {
            Runs::Always => true,
            Runs::Never => false,
            Runs::If { has, lacks } => has.iter().all(|&i| k >> i & 1 == 1) && lacks.iter().all(|&i| k >> i & 1 == 0),
        };
        for (s, r) in steps.iter().zip(&runs) {
            if matches!(r, Runs::If { .. }) && !valid.iter().any(|&k| on(r, k)) {
                let msg = "no kernel meets this condition (cases/capabilities.yaml declares its capabilities exclusive), so this step never runs";
                self.err(&format!("steps[{}].when", s.index), msg, "drop the step, or one of the capabilities");
            }
        }
        let mut found: BTreeMap<Problem, BTreeSet<u32>> = BTreeMap::new();
        for &k in &valid {
            for problem in simulate(steps, |i| on(&runs[i], k)) {
                found.entry(problem).or_default().insert(k);
            }
        }
        for ((index, msg, hint), on) in found {
            let msg = match kernels_text(&on, &valid, &free) {
                Some(k) => format!("on kernels {k}: {msg}"),
                None => msg,
            };
            self.err(&format!("steps[{index}]"), msg, hint);
        }
    }

    /// The assignments of `free` (bit i = has free[i]) that some kernel can have.
    fn kernels(&self, required: &BTreeSet<String>, free: &[String]) -> Vec<u32> {
        let groups = &self.known.exclusive;
        (0..1u32 << free.len())
            .filter(|k| {
                groups.iter().all(|g| {
                    let has = |a: &String| {
                        required.contains(a) || free.iter().position(|f| f == a).is_some_and(|i| k >> i & 1 == 1)
                    };
                    g.iter().filter(|a| has(a)).count() <= 1
                })
            })
            .collect()
    }
}

/// One run of the steps that `runs` selects (by position in `steps`).
fn simulate(steps: &[Step], runs: impl Fn(usize) -> bool) -> Vec<Problem> {
    let mut loaded: BTreeSet<&str> = BTreeSet::new();
    let mut running: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if !runs(i) {
            continue;
        }
        let mut fail = |msg: String, hint| out.push((s.index, msg, hint));
        match &s.action {
            Action::Load { module, refused: None, .. } if !loaded.insert(module) => fail(
                format!("`{module}` is already loaded at this point"),
                "unload it first, or expect `refused: EEXIST`",
            ),
            Action::Unload { module, refused: None } if !loaded.remove(module.as_str()) => {
                fail(format!("`{module}` is not loaded at this point"), "load it in an earlier step")
            }
            Action::Disable { patch, refused: None, .. } | Action::Force { patch, refused: None }
                if !loaded.contains(patch.as_str()) =>
            {
                fail(format!("patch `{patch}` is not loaded at this point"), "load it in an earlier step")
            }
            Action::Park { module, .. } | Action::Release { module, .. } | Action::Call { module, .. }
                if !loaded.contains(module.as_str()) =>
            {
                fail(format!("target `{module}` is not loaded at this point"), "load it in an earlier step")
            }
            Action::Spawn { name, .. } if !running.insert(name) => fail(
                format!("group `{name}` is already running at this point"),
                "kill it first, or give this group another name",
            ),
            Action::Kill { name } if !running.remove(name.as_str()) => {
                fail(format!("no group `{name}` is running at this point"), "start it with `spawn:` in an earlier step")
            }
            Action::Load { args, .. } => {
                for g in super::steps::groups(args) {
                    if !running.contains(g) {
                        fail(
                            format!("group `{g}` is not running at this point, so `${{{g}}}` names no process"),
                            "spawn it in an earlier step, and kill it after this one",
                        );
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// "with A and without B, or with C": the kernels of `on` among `valid`,
/// with as few capabilities named as describe them exactly; `None` when
/// that is every kernel.
fn kernels_text(on: &BTreeSet<u32>, valid: &[u32], free: &[String]) -> Option<String> {
    if on.len() == valid.len() {
        return None;
    }
    let matches = |term: &[(usize, bool)], k: u32| term.iter().all(|&(i, v)| (k >> i & 1 == 1) == v);
    let mut left: BTreeSet<u32> = on.clone();
    let mut terms = Vec::new();
    while let Some(&k) = left.iter().next() {
        let mut term: Vec<(usize, bool)> = (0..free.len()).map(|i| (i, k >> i & 1 == 1)).collect();
        for i in 0..free.len() {
            let shorter: Vec<_> = term.iter().copied().filter(|&(j, _)| j != i).collect();
            if valid.iter().filter(|&&v| matches(&shorter, v)).all(|v| on.contains(v)) {
                term = shorter;
            }
        }
        left.retain(|&v| !matches(&term, v));
        let with: Vec<&str> = term.iter().filter(|t| t.1).map(|t| free[t.0].as_str()).collect();
        let without: Vec<&str> = term.iter().filter(|t| !t.1).map(|t| free[t.0].as_str()).collect();
        let mut text = Vec::new();
        if !with.is_empty() {
            text.push(format!("with {}", with.join(" and ")));
        }
        if !without.is_empty() {
            text.push(format!("without {}", without.join(" or ")));
        }
        terms.push(text.join(" and "));
    }
    Some(terms.join(", or "))
}
