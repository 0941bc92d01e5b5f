//! A planned sequence as a klpt case: every operation becomes its step
//! (with `refused:` when the model predicts a refusal), followed by a `wait`
//! for everything the model predicts (sysfs, modules, /proc files, the
//! livepatch log lines, strictly) and, while the observer is parked, a
//! `call` per function it can call. A divergence is then an ordinary case
//! failure at the first step where the kernel disagrees.

use super::sequence::Planned;
use super::universe::{Universe, MARK};
use crate::model::{FuncKey, Impl, Observation, Op, Outcome, Semantics};
use serde_json::{json, Map, Value};

/// Step names start with this and the operation's number (1-based).
pub const OP_PREFIX: &str = "op ";

/// pr_debug lines of kernel/livepatch (the guest enables them) that the
/// model does not predict.
const DEBUG_LINES: [&str; 4] = [
    r"livepatch: '[^']*': (initializing|completing) (un)?patching transition",
    r"livepatch: '[^']*': reversing transition",
    r"livepatch: '[^']*': canceling patching transition",
    r"livepatch: .*: .*:\d+ (is running|has an unreliable stack|is sleeping on function)",
];

/// How much of the model's prediction a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Everything after every operation: exploration, where any operation
    /// may be the one that diverges.
    EveryOp,
    /// Only the refusals of the operations before the last, and everything
    /// after the last: a shrunk divergence, which is at its last operation.
    LastOp,
}

impl Checks {
    /// Seconds the case's waits may take: long enough for a loaded machine,
    /// and the cost of every wait that diverges, which shrinking pays in
    /// most of its candidates.
    fn timeout(self) -> u64 {
        match self {
            Checks::EveryOp => 20,
            Checks::LastOp => 5,
        }
    }
}

pub fn case_yaml(u: &Universe, plan: &[Planned], description: &str, checks: Checks) -> String {
    let v = case_value(u, plan, description, checks);
    serde_norway::to_string(&v).expect("a JSON value serializes as YAML")
}

fn case_value(u: &Universe, plan: &[Planned], description: &str, checks: Checks) -> Value {
    let sem = u.features.semantics();
    let mut klp_patch = Vec::new();
    let uses = |f: &dyn Fn(&crate::model::PatchSpec) -> bool| u.patches.iter().any(f);
    if uses(&|p| p.replace) {
        klp_patch.push("replace");
    }
    if sem == Semantics::V1Replaceable {
        klp_patch.push("replaceable");
    }
    if sem == Semantics::V2ReplaceSet {
        klp_patch.push("replace_set");
    }
    if uses(&|p| !p.states.is_empty()) {
        klp_patch.push("states");
    }
    let mut kallsyms: Vec<&str> =
        u.patches.iter().flat_map(|p| &p.funcs).filter(|f| f.object == "vmlinux").map(|f| f.name.as_str()).collect();
    kallsyms.sort();
    kallsyms.dedup();
    let mut requires = json!({"config": ["LIVEPATCH"]});
    if !klp_patch.is_empty() {
        requires["klp_patch"] = json!(klp_patch);
    }
    if !kallsyms.is_empty() {
        requires["kallsyms"] = json!(kallsyms);
    }
    let targets: Vec<Value> = u
        .targets
        .iter()
        .map(|t| {
            let mut fs: Vec<Value> = t
                .funcs
                .iter()
                .map(|f| json!({"name": f, "prints": Universe::original(&FuncKey::new(&t.name, f))}))
                .collect();
            fs.extend(t.park.iter().map(|p| json!({"name": p, "park": true})));
            json!({"name": t.name, "functions": fs})
        })
        .collect();
    let livepatches: Vec<Value> = u
        .patches
        .iter()
        .map(|p| {
            let funcs: Vec<Value> = p
                .funcs
                .iter()
                .map(|f| {
                    let mut v = if u.is_park(f) {
                        json!({"name": f.name, "signature": "void (void)", "body": "return;"})
                    } else {
                        json!({"name": f.name, "marker": Universe::marker(&p.name, f)})
                    };
                    if f.object != "vmlinux" {
                        v["object"] = json!(f.object);
                    }
                    if f.sympos != 0 {
                        v["sympos"] = json!(f.sympos);
                    }
                    v
                })
                .collect();
            let mut v = json!({"name": p.name, "functions": funcs});
            if p.replace {
                v["replace"] = json!(true);
            }
            if sem == Semantics::V1Replaceable {
                v["replaceable"] = json!(p.replaceable);
            }
            if sem == Semantics::V2ReplaceSet {
                v["replace_set"] = json!(p.replace_set);
            }
            if !p.states.is_empty() {
                v["states"] =
                    json!(p.states.iter().map(|(id, ver)| json!({"id": id, "version": ver})).collect::<Vec<_>>());
            }
            v
        })
        .collect();
    let mut steps = Vec::new();
    for (i, pl) in plan.iter().enumerate() {
        let all = op_steps(u, i + 1, pl);
        let checked = checks == Checks::EveryOp || i + 1 == plan.len();
        steps.extend(all.into_iter().take(if checked { usize::MAX } else { 1 }));
    }
    json!({
        "description": description,
        "requires": requires,
        "timeout": checks.timeout(),
        "targets": targets,
        "livepatches": livepatches,
        "steps": steps,
    })
}

fn op_steps(u: &Universe, n: usize, pl: &Planned) -> Vec<Value> {
    let name = format!("{OP_PREFIX}{n}: {}", pl.op);
    let refused: Option<Value> = match &pl.prediction.outcome {
        Outcome::Refused(r) => Some(if r.errnos().len() == 1 { json!(r.errnos()[0]) } else { json!(r.errnos()) }),
        _ => None,
    };
    let held = pl.after.transition.is_some();
    let with = |mut v: Value| {
        if let Some(r) = &refused {
            v["refused"] = r.clone();
        }
        v
    };
    let sysfs = |p: &str, attr: &str| format!("/sys/kernel/livepatch/{p}/{attr}");
    let action = match &pl.op {
        Op::Load(m) => {
            let mut v = with(json!({"module": m}));
            if refused.is_none() && held {
                v["wait"] = json!(false);
            }
            json!({"load": v})
        }
        Op::Disable(p) => {
            let mut v = with(json!({"patch": p}));
            if refused.is_none() && held {
                v["wait"] = json!(false);
            }
            json!({"disable": v})
        }
        Op::Enable(p) => json!({"write": with(json!({"path": sysfs(p, "enabled"), "value": "1"}))}),
        Op::Force(p) => json!({"force": with(json!({"patch": p}))}),
        Op::Unload(m) | Op::UnloadTarget(m) => json!({"unload": with(json!({"module": m}))}),
        Op::LoadTarget(m) => json!({"load": with(json!({"module": m}))}),
        Op::SetReplaceable(p, v) => {
            json!({"write": with(json!({"path": sysfs(p, "replaceable"), "value": if *v { "1" } else { "0" }}))})
        }
        Op::Park(k) => json!({"park": format!("{}.{}", k.object, k.name)}),
        Op::Release => {
            let k = u.park().expect("release needs a parking function");
            json!({"release": format!("{}.{}", k.object, k.name)})
        }
    };
    let mut action = action;
    action["name"] = json!(name);
    // sysfs_warn_dup()'s stack dump is how the core reports the duplicate.
    if pl.prediction.outcome == Outcome::Refused(crate::model::Rule::DuplicateFunction) {
        action["warnings"] = json!(["sysfs: cannot create duplicate filename"]);
    }
    let mut out = vec![action];
    out.push(json!({
        "name": format!("{OP_PREFIX}{n}: what the model expects"),
        "wait": expectation(u, &pl.after, &pl.prediction.log),
    }));
    if let Some(park) = u.park() {
        for (k, view) in &pl.after.funcs {
            let (Some(obs), true) = (&view.observer, k.object == park.object && !u.is_park(k)) else { continue };
            out.push(json!({
                "name": format!("{OP_PREFIX}{n}: the observer calls {}", k.name),
                "call": {"parked": format!("{}.{}", park.object, park.name), "function": k.name, "prints": prints(k, obs)},
            }));
        }
    }
    out
}

/// What a read of `k`'s file (or a call of `k`) prints when it runs `i`.
fn prints(k: &FuncKey, i: &Impl) -> Value {
    match i {
        Impl::Patch(p) => json!(Universe::marker(p, k)),
        Impl::Original if k.object == "vmlinux" => json!({"not_contains": format!("{MARK} ")}),
        Impl::Original => json!(Universe::original(k)),
    }
}

fn expectation(u: &Universe, after: &Observation, log: &[String]) -> Value {
    let mut patches = Map::new();
    for (name, v) in &after.patches {
        let mut p = json!({"enabled": v.enabled as u8, "transition": v.transition as u8});
        if let Some(r) = v.replace {
            p["replace"] = json!(r as u8);
        }
        if let Some(s) = v.stack_order {
            p["stack_order"] = json!(s);
        }
        if let Some(r) = v.replaceable {
            p["replaceable"] = json!(r as u8);
        }
        if let Some(s) = v.replace_set {
            p["replace_set"] = json!(s);
        }
        // Only declared objects: a case cannot name the objects a replace
        // transition adds for its nops (the model still predicts them).
        let declared = u.patches.iter().find(|p| &p.name == name).map(|p| p.objects()).unwrap_or_default();
        let objects: Map<String, Value> = v
            .objects
            .iter()
            .filter(|(o, _)| declared.contains(o))
            .filter_map(|(o, patched)| patched.map(|x| (o.clone(), json!(x as u8))))
            .collect();
        if !objects.is_empty() {
            p["objects"] = Value::Object(objects);
        }
        patches.insert(name.clone(), p);
    }
    let mut modules = Map::new();
    for p in &u.patches {
        modules.insert(p.name.clone(), json!(after.modules.contains(&p.name)));
    }
    for t in &u.targets {
        modules.insert(t.name.clone(), json!(after.targets.contains(&t.name)));
    }
    let mut files = Map::new();
    for (k, view) in &after.funcs {
        if let Some(f) = u.proc_file(k) {
            files.insert(f, prints(k, &view.new_tasks));
        }
    }
    let events: Vec<String> = log.iter().map(|l| regex::escape(&format!("livepatch: {l}"))).collect();
    let mut dmesg = json!({"strict": true, "ignore": DEBUG_LINES});
    if !events.is_empty() {
        dmesg["events"] = json!(events);
    }
    let mut v = json!({"patches": patches, "modules": modules, "dmesg": dmesg});
    if !files.is_empty() {
        v["files"] = Value::Object(files);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explore::rng::Rng;
    use crate::explore::shrink::replan;
    use crate::model::Features;

    #[test]
    fn held_load_refusal_and_observer_calls_render_as_steps() {
        let f = Features::new(&["replace", "states"], &["replace", "stack_order", "patched"]);
        let mut u = Universe::generate(&f, &mut Rng::new(9), 3);
        let hold = u.park().expect("a parking function");
        let fa = FuncKey::new(&hold.object, &u.targets[0].funcs[0]);
        let p = u.patches.iter_mut().find(|p| p.funcs.contains(&hold)).expect("a patch of it");
        if !p.funcs.contains(&fa) {
            p.funcs.push(fa);
        }
        let holder = p.name.clone();
        let ops = [
            Op::LoadTarget(hold.object.clone()),
            Op::Park(hold.clone()),
            Op::Load(holder.clone()),
            Op::Load(holder.clone()),
        ];
        let plan = replan(&u, &ops).expect("meaningful");
        let yaml = case_yaml(&u, &plan, "t", Checks::EveryOp);
        let v: serde_norway::Value = serde_norway::from_str(&yaml).expect("YAML");
        let steps = v["steps"].as_sequence().expect("steps");
        let named = |n: &str| {
            steps.iter().find(|s| s["name"].as_str() == Some(n)).unwrap_or_else(|| panic!("no step {n}:\n{yaml}"))
        };
        let held = &named(&format!("op 3: load {holder}"))["load"];
        assert_eq!(held["wait"].as_bool(), Some(false), "{yaml}");
        assert_eq!(named(&format!("op 4: load {holder}"))["load"]["refused"].as_str(), Some("EEXIST"));
        let state = &named("op 3: what the model expects")["wait"];
        assert_eq!(state["patches"][holder.as_str()]["transition"].as_u64(), Some(1));
        // The observer calls each patched function of its module.
        let callable = plan[2].after.funcs.keys().filter(|k| k.object == hold.object && !u.is_park(k)).count();
        let calls = steps
            .iter()
            .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("op 3: the observer calls")))
            .count();
        assert!(callable > 0 && calls == callable, "{yaml}");
    }
}
