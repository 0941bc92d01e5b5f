//! The model's rules, one test per refusal and per hand-written case whose
//! expectations it must reproduce (cases/stock, cases/hybrid).

use super::*;

fn stock() -> Features {
    Features::new(&["replace", "states"], &["replace", "stack_order", "patched"])
}
fn debian61() -> Features {
    Features::new(&["replace", "states"], &["patched"])
}
fn v1() -> Features {
    Features::new(&["replace", "replaceable", "states"], &["replace", "stack_order", "patched", "replaceable"])
}
fn v2() -> Features {
    Features::new(&["replace_set", "states"], &["replace_set", "stack_order", "patched"])
}

fn f(name: &str) -> FuncKey {
    FuncKey::new("vmlinux", name)
}
fn m(object: &str, name: &str) -> FuncKey {
    FuncKey::new(object, name)
}
fn p(name: &str, funcs: &[FuncKey]) -> PatchSpec {
    PatchSpec::new(name, funcs)
}
fn cumulative(name: &str, funcs: &[FuncKey]) -> PatchSpec {
    PatchSpec { replace: true, ..p(name, funcs) }
}
fn set(name: &str, s: u32, funcs: &[FuncKey]) -> PatchSpec {
    PatchSpec { replace_set: s, ..p(name, funcs) }
}
fn states(mut spec: PatchSpec, st: &[(u64, u32)]) -> PatchSpec {
    spec.states = st.to_vec();
    spec
}

struct K(Kernel);

impl K {
    fn new(features: Features, patches: Vec<PatchSpec>, targets: &[&str]) -> K {
        K(Kernel::new(features, patches, targets).expect("valid universe"))
    }
    fn ok(&mut self, op: Op) -> Vec<String> {
        let pr = self.0.step(&op);
        assert_eq!(pr.outcome, Outcome::Ok, "{op}");
        pr.log
    }
    fn refused(&mut self, op: Op, rule: Rule) -> Vec<String> {
        let before = self.0.observe();
        let pr = self.0.step(&op);
        assert_eq!(pr.outcome, Outcome::Refused(rule), "{op}");
        assert_eq!(self.0.observe(), before, "{op} refused but changed the state");
        pr.log
    }
    fn load(&mut self, n: &str) -> Vec<String> {
        self.ok(Op::Load(n.into()))
    }
    fn enabled(&self) -> Vec<String> {
        self.0.observe().patches.keys().cloned().collect()
    }
    fn runs(&self, k: &FuncKey) -> String {
        self.0.observe().funcs[&k.canonical()].new_tasks.to_string()
    }
    fn observer_runs(&self, k: &FuncKey) -> String {
        self.0.observe().funcs[&k.canonical()].observer.as_ref().expect("parked").to_string()
    }
    fn view(&self, n: &str) -> PatchView {
        self.0.observe().patches[n].clone()
    }
}

fn not_compatible(n: &str) -> Vec<String> {
    vec![format!("Livepatch patch ({n}) is not compatible with the already installed livepatches.")]
}

#[test]
fn semantics_come_from_features_not_versions() {
    assert_eq!(stock().semantics(), Semantics::Stock);
    assert_eq!(debian61().semantics(), Semantics::Stock);
    assert_eq!(v1().semantics(), Semantics::V1Replaceable);
    assert_eq!(v2().semantics(), Semantics::V2ReplaceSet);
}

#[test]
fn universe_must_fit_the_kernel() {
    assert!(Kernel::new(v2(), vec![cumulative("c", &[f("a")])], &[]).is_err());
    assert!(Kernel::new(stock(), vec![set("x", 7, &[f("a")])], &[]).is_err());
    assert!(Kernel::new(stock(), vec![p("x", &[m("tgt", "a")])], &[]).is_err());
    assert!(Kernel::new(stock(), vec![p("x", &[f("a")]), p("x", &[f("b")])], &[]).is_err());
}

#[test]
fn basic_enable_disable_logs_and_sysfs() {
    let mut k = K::new(stock(), vec![p("l1", &[f("fa")])], &[]);
    assert_eq!(k.load("l1"), ["enabling patch 'l1'", "'l1': starting patching transition", "'l1': patching complete"]);
    let v = k.view("l1");
    assert_eq!((v.enabled, v.transition, v.replace, v.stack_order), (true, false, Some(false), Some(1)));
    assert_eq!(v.objects["vmlinux"], Some(true));
    assert_eq!(k.runs(&f("fa")), "l1");
    k.refused(Op::Unload("l1".into()), Rule::ModuleInUse);
    assert_eq!(k.ok(Op::Disable("l1".into())), ["'l1': starting unpatching transition", "'l1': unpatching complete"]);
    assert!(k.enabled().is_empty());
    assert_eq!(k.runs(&f("fa")), "original");
    k.ok(Op::Unload("l1".into()));
    assert!(k.0.observe().modules.is_empty());
}

#[test]
fn debian_61_has_no_replace_or_stack_order_attribute() {
    let mut k = K::new(debian61(), vec![p("l1", &[f("fa")])], &[]);
    k.load("l1");
    let v = k.view("l1");
    assert_eq!((v.replace, v.stack_order, v.objects["vmlinux"]), (None, None, Some(true)));
}

#[test]
fn duplicate_load_and_enabled_rules() {
    let mut k = K::new(stock(), vec![p("l1", &[f("fa")])], &[]);
    k.load("l1");
    assert!(k.refused(Op::Load("l1".into()), Rule::ModuleLoaded).is_empty());
    k.refused(Op::Enable("l1".into()), Rule::EnabledUnchanged);
    k.refused(Op::Force("l1".into()), Rule::ForceWithoutTransition);
    assert!(matches!(k.0.step(&Op::Disable("nope".into())).outcome, Outcome::Invalid(_)));
}

#[test]
fn duplicate_function_in_one_patch() {
    let mut k = K::new(stock(), vec![p("d", &[f("fa"), FuncKey { sympos: 1, ..f("fa") }])], &[]);
    k.refused(Op::Load("d".into()), Rule::DuplicateFunction);
}

#[test]
fn stacked_patches_newest_wins_and_stack_order_renumbers() {
    // cases/stock/stacked-disable-{newest,older}.yaml
    let mut k = K::new(stock(), vec![p("l1", &[f("fa")]), p("l2", &[f("fa")])], &[]);
    k.load("l1");
    k.load("l2");
    assert_eq!(k.runs(&f("fa")), "l2");
    assert_eq!(k.view("l2").stack_order, Some(2));
    k.ok(Op::Disable("l1".into()));
    assert_eq!(k.runs(&f("fa")), "l2");
    assert_eq!(k.view("l2").stack_order, Some(1));
}

#[test]
fn stock_atomic_replace_takes_everything() {
    // cases/stock/atomic-replace.yaml, cumulative-over-offband.yaml (stock)
    let mut k = K::new(stock(), vec![p("l1", &[f("fa")]), p("l2", &[f("fb")]), cumulative("r", &[f("fa")])], &[]);
    k.load("l1");
    k.load("l2");
    let log = k.load("r");
    assert_eq!(log, ["enabling patch 'r'", "'r': starting patching transition", "'r': patching complete"]);
    assert_eq!(k.enabled(), ["r"]);
    assert_eq!((k.runs(&f("fa")), k.runs(&f("fb"))), ("r".into(), "original".into()));
    // Replaced modules are no longer held.
    k.ok(Op::Unload("l1".into()));
    k.ok(Op::Unload("l2".into()));
}

#[test]
fn state_rules_stock() {
    // cases/stock/state-compat.yaml, state-downgrade.yaml
    let mut k = K::new(
        stock(),
        vec![
            states(cumulative("c2", &[f("fa")]), &[(1, 2)]),
            cumulative("c1", &[f("fa")]),
            states(p("nr1", &[f("fb")]), &[(1, 1)]),
            p("nr", &[f("fb")]),
        ],
        &[],
    );
    k.load("c2");
    assert_eq!(k.refused(Op::Load("c1".into()), Rule::StateMissing), not_compatible("c1"));
    assert_eq!(k.refused(Op::Load("nr1".into()), Rule::StateDowngrade), not_compatible("nr1"));
    k.load("nr");
}

/// Parks the observer in tgt:hold and starts `patch`'s held transition.
fn held(k: &mut K, patch: &str) {
    k.ok(Op::LoadTarget("tgt".into()));
    k.ok(Op::Park(m("tgt", "hold")));
    let log = k.load(patch);
    assert_eq!(log.last().map(String::as_str), Some(format!("'{patch}': starting patching transition").as_str()));
    assert!(k.0.in_transition());
}

#[test]
fn transition_busy() {
    // cases/stock/transition-busy.yaml
    let mut k =
        K::new(stock(), vec![p("other", &[f("fa")]), p("lp", &[m("tgt", "hold")]), p("third", &[f("fb")])], &["tgt"]);
    k.load("other");
    held(&mut k, "lp");
    assert!(k.view("lp").transition && k.view("lp").enabled);
    assert!(k.refused(Op::Load("third".into()), Rule::LoadDuringTransition).is_empty());
    k.refused(Op::Disable("other".into()), Rule::DisableDuringTransition);
    assert_eq!(k.ok(Op::Release), ["'lp': patching complete"]);
    k.load("third");
}

#[test]
fn compatibility_is_checked_before_the_transition() {
    let mut k = K::new(v2(), vec![set("a", 0, &[m("tgt", "hold")]), set("x", 7, &[m("tgt", "hold")])], &["tgt"]);
    held(&mut k, "a");
    k.refused(Op::Load("x".into()), Rule::CrossSetFunction);
}

#[test]
fn unswitched_observer_sees_the_old_version() {
    // cases/stock/unswitched-task-sees-old-version.yaml
    let fa = m("tgt", "fa");
    let mut k = K::new(
        stock(),
        vec![cumulative("c1", std::slice::from_ref(&fa)), cumulative("c2", &[fa.clone(), m("tgt", "hold")])],
        &["tgt"],
    );
    k.ok(Op::LoadTarget("tgt".into()));
    k.load("c1");
    k.ok(Op::Park(m("tgt", "hold")));
    assert_eq!(k.observer_runs(&fa), "c1");
    k.load("c2");
    assert!(k.view("c2").transition && !k.view("c1").transition);
    assert_eq!((k.runs(&fa), k.observer_runs(&fa)), ("c2".into(), "c1".into()));
    assert_eq!(k.ok(Op::Release), ["'c2': patching complete"]);
    assert_eq!(k.enabled(), ["c2"]);
    assert_eq!(k.runs(&fa), "c2");
}

#[test]
fn parking_needs_the_original_code() {
    let mut k = K::new(stock(), vec![p("h", &[m("tgt", "hold")])], &["tgt"]);
    k.ok(Op::LoadTarget("tgt".into()));
    k.load("h");
    assert!(matches!(k.0.step(&Op::Park(m("tgt", "hold"))).outcome, Outcome::Invalid(_)));
}

#[test]
fn reverse_and_force() {
    // cases/stock/reverse-transition.yaml, force-transition.yaml
    let mut k = K::new(stock(), vec![p("lp", &[m("tgt", "hold")])], &["tgt"]);
    held(&mut k, "lp");
    k.refused(Op::Enable("lp".into()), Rule::EnabledUnchanged);
    // Reversing: the observer never switched, so it completes at once.
    assert_eq!(k.ok(Op::Disable("lp".into())), ["'lp': starting unpatching transition", "'lp': unpatching complete"]);
    assert!(k.enabled().is_empty());
    k.ok(Op::Unload("lp".into()));
    // A forced patching transition does not pin the module.
    k.load("lp");
    assert_eq!(
        k.ok(Op::Force("lp".into())),
        ["forcing remaining tasks to the patched state", "'lp': patching complete"]
    );
    assert_eq!(k.observer_runs(&m("tgt", "hold")), "lp");
    k.refused(Op::Force("lp".into()), Rule::ForceWithoutTransition);
    k.ok(Op::Disable("lp".into()));
    k.ok(Op::Unload("lp".into()));
}

#[test]
fn module_loaded_after_patch() {
    // cases/stock/module-loaded-after-patch.yaml
    let mut k = K::new(stock(), vec![p("lp", &[m("tgt", "fa")])], &["tgt"]);
    k.load("lp");
    assert_eq!(k.view("lp").objects["tgt"], Some(false));
    assert_eq!(k.ok(Op::LoadTarget("tgt".into())), ["applying patch 'lp' to loading module 'tgt'"]);
    assert_eq!(k.view("lp").objects["tgt"], Some(true));
    assert_eq!(k.runs(&m("tgt", "fa")), "lp");
    assert_eq!(k.ok(Op::UnloadTarget("tgt".into())), ["reverting patch 'lp' on unloading module 'tgt'"]);
    assert_eq!(k.view("lp").objects["tgt"], Some(false));
}

#[test]
fn v1_default_not_replaced() {
    // cases/hybrid/v1-default-not-replaced.yaml
    let mut k = K::new(v1(), vec![cumulative("c1", &[f("fa")]), cumulative("c2", &[f("fa")])], &[]);
    k.load("c1");
    assert_eq!(k.view("c1").replaceable, Some(false));
    k.load("c2");
    assert_eq!(k.enabled(), ["c1", "c2"]);
    assert_eq!(k.runs(&f("fa")), "c2");
    k.refused(Op::Unload("c1".into()), Rule::ModuleInUse);
    k.ok(Op::Disable("c2".into()));
    assert_eq!(k.runs(&f("fa")), "c1");
}

#[test]
fn cumulative_over_offband_every_revision() {
    // cases/hybrid/cumulative-over-offband.yaml
    for (features, kept) in [(stock(), false), (v1(), true), (v2(), true)] {
        let sem = features.semantics();
        let mk = |n: &str, func: &str, offband: bool| PatchSpec {
            replace: !offband && sem != Semantics::V2ReplaceSet,
            replaceable: !offband && sem == Semantics::V1Replaceable,
            replace_set: if offband && sem == Semantics::V2ReplaceSet { 7 } else { 0 },
            ..p(n, &[f(func)])
        };
        let mut k = K::new(
            features,
            vec![mk("c1", "cmdline", false), mk("o", "meminfo", true), mk("c2", "cmdline", false)],
            &[],
        );
        k.load("c1");
        k.load("o");
        let log = k.load("c2");
        assert!(!log.iter().any(|l| l.contains("unpatching")), "{sem}");
        let want: &[&str] = if kept { &["c2", "o"] } else { &["c2"] };
        assert_eq!(k.enabled(), want, "{sem}");
        assert_eq!(k.runs(&f("meminfo")), if kept { "o" } else { "original" }, "{sem}");
        k.ok(Op::Unload("c1".into()));
    }
}

#[test]
fn same_function_two_kinds() {
    // cases/hybrid/same-function-two-kinds.yaml
    for features in [stock(), v1(), v2()] {
        let sem = features.semantics();
        let p1 = PatchSpec { replace: sem != Semantics::V2ReplaceSet, ..p("p1", &[f("cmdline")]) };
        let p2 =
            PatchSpec { replace_set: if sem == Semantics::V2ReplaceSet { 7 } else { 0 }, ..p("p2", &[f("cmdline")]) };
        let mut k = K::new(features, vec![p1, p2], &[]);
        k.load("p1");
        if sem == Semantics::V2ReplaceSet {
            assert_eq!(k.refused(Op::Load("p2".into()), Rule::CrossSetFunction), not_compatible("p2"));
            assert_eq!(k.runs(&f("cmdline")), "p1");
        } else {
            k.load("p2");
            assert_eq!(k.runs(&f("cmdline")), "p2");
            k.ok(Op::Disable("p2".into()));
            assert_eq!(k.runs(&f("cmdline")), "p1");
        }
    }
}

#[test]
fn v1_replaceable_attribute() {
    // cases/hybrid/v1-replaceable-sysfs.yaml
    let mut k = K::new(
        v1(),
        vec![p("o", &[f("fa")]), PatchSpec { replaceable: true, ..p("h", &[m("tgt", "hold")]) }],
        &["tgt"],
    );
    k.load("o");
    k.ok(Op::SetReplaceable("o".into(), true));
    assert_eq!(k.view("o").replaceable, Some(true));
    held(&mut k, "h");
    k.ok(Op::SetReplaceable("h".into(), true));
    k.refused(Op::SetReplaceable("h".into(), false), Rule::ReplaceableInTransition);
    k.ok(Op::SetReplaceable("o".into(), false));
}

#[test]
fn v1_runtime_toggle() {
    // cases/hybrid/v1-runtime-toggle.yaml
    let c = |n: &str| PatchSpec { replaceable: true, ..cumulative(n, &[f("cmdline")]) };
    let mut k = K::new(v1(), vec![p("o", &[f("meminfo")]), c("c1"), c("c2"), c("c3")], &[]);
    k.load("o");
    k.load("c1");
    k.ok(Op::SetReplaceable("o".into(), true));
    k.ok(Op::SetReplaceable("o".into(), false));
    k.load("c2");
    assert_eq!(k.enabled(), ["c2", "o"]);
    k.ok(Op::SetReplaceable("o".into(), true));
    k.load("c3");
    assert_eq!(k.enabled(), ["c3"]);
    assert_eq!(k.runs(&f("meminfo")), "original");
    k.ok(Op::Unload("o".into()));
}

#[test]
fn v1_forced_replace_pins_everything() {
    // cases/hybrid/v1-forced-replace.yaml
    let mut k = K::new(
        v1(),
        vec![
            p("o", &[f("meminfo")]),
            PatchSpec { replaceable: true, ..cumulative("c1", &[f("cmdline")]) },
            cumulative("c2", &[f("cmdline"), m("tgt", "hold")]),
        ],
        &["tgt"],
    );
    k.load("o");
    k.load("c1");
    held(&mut k, "c2");
    k.ok(Op::Force("c2".into()));
    assert_eq!(k.enabled(), ["c2", "o"]);
    assert_eq!(k.runs(&f("meminfo")), "o");
    k.refused(Op::Unload("c1".into()), Rule::ModuleInUse);
    k.ok(Op::Disable("o".into()));
    k.refused(Op::Unload("o".into()), Rule::ModuleInUse);
    k.ok(Op::Disable("c2".into()));
    k.ok(Op::Unload("c2".into()));
}

#[test]
fn v1_nop_window_runs_the_original() {
    // Petr's counter-example: a replace transition adds a nop for a
    // function a kept (non-replaceable) patch modifies.
    let mut k = K::new(
        v1(),
        vec![
            p("lp1", &[f("fa")]),
            PatchSpec { replaceable: true, ..p("lp2", &[f("fa"), f("fb")]) },
            cumulative("lp3", &[f("fb"), m("tgt", "hold")]),
        ],
        &["tgt"],
    );
    k.load("lp1");
    k.load("lp2");
    held(&mut k, "lp3");
    assert_eq!(k.runs(&f("fa")), "original");
    assert_eq!(k.observer_runs(&f("fa")), "lp2");
    k.ok(Op::Release);
    assert_eq!(k.runs(&f("fa")), "lp1");
}

#[test]
fn v2_sets() {
    // cases/hybrid/v2-same-set-replace.yaml, v2-sets-coexist.yaml, v2-offband-upgrade.yaml
    let mut k = K::new(
        v2(),
        vec![
            set("a", 0, &[f("cmdline")]),
            set("x", 7, &[f("meminfo")]),
            set("a2", 0, &[f("version")]),
            set("x2", 7, &[f("meminfo")]),
            set("x3", 8, &[f("meminfo")]),
        ],
        &[],
    );
    k.load("a");
    k.load("x");
    assert_eq!(k.view("x").replace_set, Some(7));
    assert_eq!(k.view("x").replace, None);
    k.load("a2");
    assert_eq!(k.enabled(), ["a2", "x"]);
    assert_eq!(k.runs(&f("cmdline")), "original");
    k.ok(Op::Unload("a".into()));
    k.refused(Op::Unload("x".into()), Rule::ModuleInUse);
    k.load("x2");
    assert_eq!(k.enabled(), ["a2", "x2"]);
    assert_eq!(k.refused(Op::Load("x3".into()), Rule::CrossSetFunction), not_compatible("x3"));
}

#[test]
fn v2_conflict_variants() {
    // cases/hybrid/v2-conflict-variants.yaml, v2-conflict-sympos.yaml
    let pos = |k: FuncKey, s: u32| FuncKey { sympos: s, ..k };
    let mut k = K::new(
        v2(),
        vec![
            set("a", 0, &[f("cmdline")]),
            set("m", 7, &[pos(m("tgt", "cmdline"), 1)]),
            set("s", 9, &[pos(f("cmdline"), 1)]),
            set("t", 9, &[pos(m("tgt", "cmdline"), 0)]),
            set("v1", 0, &[pos(f("version"), 1)]),
            set("v2", 7, &[pos(f("version"), 2)]),
            set("z", 9, &[pos(f("version"), 2)]),
        ],
        &["tgt"],
    );
    k.ok(Op::LoadTarget("tgt".into()));
    k.load("a");
    k.load("m");
    k.refused(Op::Load("s".into()), Rule::CrossSetFunction);
    k.refused(Op::Load("t".into()), Rule::CrossSetFunction);
    k.ok(Op::Disable("m".into()));
    k.load("t");
    k.load("v1");
    assert_eq!(k.enabled(), ["t", "v1"], "v1 (set 0) replaced a");
    k.load("v2");
    k.refused(Op::Load("z".into()), Rule::CrossSetFunction);
}

#[test]
fn v2_state_conflict() {
    // cases/hybrid/v2-state-conflict.yaml
    let mut k = K::new(
        v2(),
        vec![
            states(set("a", 0, &[f("cmdline")]), &[(1, 1)]),
            states(set("x", 7, &[f("meminfo")]), &[(1, 5)]),
            states(set("x2", 7, &[f("meminfo")]), &[(2, 1)]),
            set("a3", 0, &[f("cmdline")]),
            states(set("a2", 0, &[f("cmdline")]), &[(1, 2)]),
        ],
        &[],
    );
    k.load("a");
    k.refused(Op::Load("x".into()), Rule::CrossSetState);
    k.load("x2");
    k.refused(Op::Load("a3".into()), Rule::StateMissing);
    k.load("a2");
    assert_eq!(k.enabled(), ["a2", "x2"]);
}

#[test]
fn v2_force_within_set() {
    // cases/hybrid/v2-force-within-set.yaml
    let mut k = K::new(
        v2(),
        vec![
            set("a", 0, &[f("cmdline")]),
            set("x", 7, &[f("meminfo")]),
            set("b", 0, &[f("cmdline"), m("tgt", "hold")]),
        ],
        &["tgt"],
    );
    k.load("a");
    k.load("x");
    held(&mut k, "b");
    k.ok(Op::Force("b".into()));
    assert_eq!(k.enabled(), ["b", "x"]);
    k.refused(Op::Unload("a".into()), Rule::ModuleInUse);
    k.ok(Op::Disable("x".into()));
    k.ok(Op::Unload("x".into()));
    k.ok(Op::Disable("b".into()));
    k.ok(Op::Unload("b".into()));
}

#[test]
fn v2_disable_cumulative_keeps_the_offband() {
    // cases/hybrid/v2-disable-cumulative.yaml
    let mut k = K::new(
        v2(),
        vec![
            set("c", 0, &[f("cmdline"), f("version")]),
            set("x", 7, &[f("meminfo")]),
            set("n", 0, &[f("meminfo")]),
            set("n2", 0, &[f("cmdline")]),
        ],
        &[],
    );
    k.load("c");
    k.load("x");
    k.ok(Op::Disable("c".into()));
    assert_eq!(k.enabled(), ["x"]);
    k.ok(Op::Unload("c".into()));
    k.refused(Op::Load("n".into()), Rule::CrossSetFunction);
    k.load("n2");
}

#[test]
fn nop_objects_show_during_the_transition() {
    let mut k =
        K::new(stock(), vec![p("l1", &[m("t2", "fa")]), cumulative("r", &[f("fb"), m("tgt", "hold")])], &["tgt", "t2"]);
    k.ok(Op::LoadTarget("t2".into()));
    k.load("l1");
    held(&mut k, "r");
    let objects: Vec<String> = k.view("r").objects.keys().cloned().collect();
    assert_eq!(objects, ["t2", "tgt", "vmlinux"]);
    assert_eq!((k.runs(&m("t2", "fa")), k.observer_runs(&m("t2", "fa"))), ("original".into(), "l1".into()));
    k.ok(Op::Release);
    let objects: Vec<String> = k.view("r").objects.keys().cloned().collect();
    assert_eq!(objects, ["tgt", "vmlinux"]);
    assert_eq!(k.enabled(), ["r"]);
}

#[test]
fn readme_lists_what_each_revision_refuses() {
    let readme = include_str!("../../../README.md");
    let section = readme_section();
    assert!(
        readme.contains(&section),
        "README.md's \"What each revision refuses\" is out of date; replace its list with:\n{section}"
    );
}

#[test]
fn every_rule_is_reachable_in_some_revision() {
    for r in Rule::ALL {
        assert!(Semantics::ALL.iter().any(|s| r.applies(*s)), "{r:?}");
        assert!(!r.errnos().is_empty());
    }
}
