//! The livepatch core's state and what each operation does to it, after
//! kernel/livepatch/{core,transition,patch,state}.c and the two RFC series.
//!
//! Every task but the parked observer is assumed to switch at once, so a
//! transition is held open only by the observer, and completes (with its
//! log lines) within the operation that lets it.

use super::rules::Rule;
use super::spec::{Features, FuncKey, Op, PatchSpec, Semantics};
use super::view::{FuncView, Impl, Observation, PatchView};
use std::collections::{BTreeMap, BTreeSet};

/// What an operation returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused(Rule),
    /// The operation makes no sense in this state (no sysfs directory, no
    /// such module, nothing parked...): generators must not emit it. The
    /// state is unchanged.
    Invalid(String),
}

/// The model's answer for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub outcome: Outcome,
    /// The `livepatch: ` lines at notice level and above it logs, in order
    /// (without the prefix); pr_debug lines are left out.
    pub log: Vec<String>,
}

impl Prediction {
    /// The errno names the kernel may answer with, empty on success.
    pub fn errnos(&self) -> &'static [&'static str] {
        match &self.outcome {
            Outcome::Refused(r) => r.errnos(),
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Patched,
    Unpatched,
}

impl Target {
    fn word(self) -> &'static str {
        match self {
            Target::Patched => "patching",
            Target::Unpatched => "unpatching",
        }
    }

    fn flip(self) -> Target {
        match self {
            Target::Patched => Target::Unpatched,
            Target::Unpatched => Target::Patched,
        }
    }
}

/// One `klp_func` on a function's stack: a replacement or a nop.
#[derive(Debug, Clone)]
struct Entry {
    key: FuncKey,
    nop: bool,
}

#[derive(Debug, Clone)]
struct Object {
    name: String,
    patched: bool,
    /// Added by klp_add_nops(), freed when the transition completes.
    dynamic: bool,
}

/// A patch on `klp_patches`: it has a sysfs directory.
#[derive(Debug, Clone)]
struct Installed {
    spec: PatchSpec,
    enabled: bool,
    replaceable: bool,
    entries: Vec<Entry>,
    objects: Vec<Object>,
}

impl Installed {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn object(&self, name: &str) -> Option<&Object> {
        self.objects.iter().find(|o| o.name == name)
    }

    /// Its entry for `key` if that entry is on the function's stack.
    fn active_entry(&self, key: &FuncKey) -> Option<&Entry> {
        let e = self.entries.iter().find(|e| &e.key == key)?;
        self.object(&key.object).filter(|o| o.patched).map(|_| e)
    }
}

/// A loaded livepatch module.
#[derive(Debug, Clone, Default)]
struct Module {
    /// Ever marked forced: the core never drops its module reference.
    forced: bool,
}

#[derive(Debug, Clone)]
struct Transition {
    patch: String,
    target: Target,
}

#[derive(Debug, Clone)]
struct Parked {
    at: FuncKey,
    /// Switched to the current transition's target state.
    switched: bool,
}

/// The modelled kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    features: Features,
    sem: Semantics,
    universe: BTreeMap<String, PatchSpec>,
    targets: BTreeSet<String>,
    /// `klp_patches`, oldest first: the stack order.
    list: Vec<Installed>,
    modules: BTreeMap<String, Module>,
    loaded_targets: BTreeSet<String>,
    transition: Option<Transition>,
    parked: Option<Parked>,
    coverage: BTreeMap<String, u64>,
}

impl Kernel {
    /// A kernel with no patch loaded. `patches` and `targets` (module names
    /// patches may name as objects) are the universe operations refer to;
    /// a patch using a feature the kernel lacks is an error.
    pub fn new(features: Features, patches: Vec<PatchSpec>, targets: &[&str]) -> Result<Kernel, String> {
        let sem = features.semantics();
        let targets: BTreeSet<String> = targets.iter().map(|s| s.to_string()).collect();
        let mut universe = BTreeMap::new();
        for p in patches {
            if p.replace && !features.has_replace() {
                return Err(format!(
                    "patch {}: `replace` needs struct klp_patch.replace, which this kernel lacks",
                    p.name
                ));
            }
            if p.replaceable && sem != Semantics::V1Replaceable {
                return Err(format!("patch {}: `replaceable` needs struct klp_patch.replaceable", p.name));
            }
            if p.replace_set != 0 && sem != Semantics::V2ReplaceSet {
                return Err(format!("patch {}: `replace_set` needs struct klp_patch.replace_set", p.name));
            }
            if !p.states.is_empty() && !features.has_states() {
                return Err(format!("patch {}: states need struct klp_patch.states", p.name));
            }
            if p.funcs.is_empty() {
                return Err(format!("patch {}: no functions", p.name));
            }
            if let Some(f) = p.funcs.iter().find(|f| f.object != "vmlinux" && !targets.contains(&f.object)) {
                return Err(format!("patch {}: object {} is neither vmlinux nor a target", p.name, f.object));
            }
            if targets.contains(&p.name) || universe.insert(p.name.clone(), p.clone()).is_some() {
                return Err(format!("module name {} used twice", p.name));
            }
        }
        Ok(Kernel {
            features,
            sem,
            universe,
            targets,
            list: vec![],
            modules: BTreeMap::new(),
            loaded_targets: BTreeSet::new(),
            transition: None,
            parked: None,
            coverage: BTreeMap::new(),
        })
    }

    pub fn semantics(&self) -> Semantics {
        self.sem
    }

    pub fn universe(&self) -> impl Iterator<Item = &PatchSpec> {
        self.universe.values()
    }

    /// How often each refusal, transition kind and state was reached.
    pub fn coverage(&self) -> &BTreeMap<String, u64> {
        &self.coverage
    }

    pub fn in_transition(&self) -> bool {
        self.transition.is_some()
    }

    pub fn parked(&self) -> Option<&FuncKey> {
        self.parked.as_ref().map(|p| &p.at)
    }

    pub fn is_installed(&self, patch: &str) -> bool {
        self.list.iter().any(|p| p.name() == patch)
    }

    pub fn is_loaded(&self, module: &str) -> bool {
        self.modules.contains_key(module) || self.loaded_targets.contains(module)
    }

    fn hit(&mut self, what: String) {
        *self.coverage.entry(what).or_default() += 1;
    }

    /// Applies `op` and predicts what the kernel answers and logs.
    pub fn step(&mut self, op: &Op) -> Prediction {
        let mut log = Vec::new();
        let outcome = match op {
            Op::Load(p) => self.load(p, &mut log),
            Op::Disable(p) => self.write_enabled(p, false, &mut log),
            Op::Enable(p) => self.write_enabled(p, true, &mut log),
            Op::Force(p) => self.force(p, &mut log),
            Op::Unload(p) => self.unload(p),
            Op::SetReplaceable(p, v) => self.set_replaceable(p, *v),
            Op::LoadTarget(m) => self.load_target(m, &mut log),
            Op::UnloadTarget(m) => self.unload_target(m, &mut log),
            Op::Park(k) => self.park(k),
            Op::Release => self.release(&mut log),
        };
        match &outcome {
            Outcome::Refused(r) => {
                if r.logs_not_compatible() {
                    log.push(format!(
                        "Livepatch patch ({}) is not compatible with the already installed livepatches.",
                        op_patch(op)
                    ));
                }
                self.hit(format!("refused {}", r.id()));
            }
            Outcome::Ok => self.hit(format!("ok {}", op_kind(op))),
            Outcome::Invalid(_) => {}
        }
        Prediction { outcome, log }
    }

    fn installed(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|p| p.name() == name)
    }

    /// Whether `new` adds nops for `old`'s functions and replaces it.
    fn replaces(&self, new: &Installed, old: &Installed) -> bool {
        match self.sem {
            Semantics::Stock => new.spec.replace,
            Semantics::V1Replaceable => new.spec.replace && old.replaceable,
            Semantics::V2ReplaceSet => new.spec.replace_set == old.spec.replace_set,
        }
    }

    /// klp_is_patch_compatible(): states, and in v2 functions across sets.
    fn compatible(&self, new: &PatchSpec) -> Result<(), Rule> {
        for old in &self.list {
            let other_set = self.sem == Semantics::V2ReplaceSet && old.spec.replace_set != new.replace_set;
            for &(id, version) in &old.spec.states {
                let mine = new.states.iter().find(|s| s.0 == id);
                match (other_set, mine) {
                    (true, Some(_)) => return Err(Rule::CrossSetState),
                    (true, None) => {}
                    (false, None) => {
                        let must_carry = match self.sem {
                            Semantics::V2ReplaceSet => true,
                            _ => new.replace,
                        };
                        if must_carry {
                            return Err(Rule::StateMissing);
                        }
                    }
                    (false, Some(&(_, v))) if v < version => return Err(Rule::StateDowngrade),
                    (false, Some(_)) => {}
                }
            }
            if other_set {
                let theirs: BTreeSet<FuncKey> = old.entries.iter().filter(|e| !e.nop).map(|e| e.key.clone()).collect();
                if new.funcs.iter().any(|f| theirs.contains(&f.canonical())) {
                    return Err(Rule::CrossSetFunction);
                }
            }
        }
        Ok(())
    }

    fn load(&mut self, name: &str, log: &mut Vec<String>) -> Outcome {
        let Some(spec) = self.universe.get(name).cloned() else {
            return Outcome::Invalid(format!("{name} is not a patch of the universe"));
        };
        if self.modules.contains_key(name) {
            return Outcome::Refused(Rule::ModuleLoaded);
        }
        if let Err(r) = self.compatible(&spec) {
            return Outcome::Refused(r);
        }
        let mut entries: Vec<Entry> = Vec::new();
        for f in &spec.funcs {
            let key = f.canonical();
            if entries.iter().any(|e| e.key == key) {
                return Outcome::Refused(Rule::DuplicateFunction);
            }
            entries.push(Entry { key, nop: false });
        }
        if self.transition.is_some() {
            return Outcome::Refused(Rule::LoadDuringTransition);
        }
        let mut new = Installed { replaceable: spec.replaceable, enabled: true, entries, objects: vec![], spec };
        let mut nops = Vec::new();
        for old in &self.list {
            if !self.replaces(&new, old) {
                continue;
            }
            for e in old.entries.iter().filter(|e| !e.nop) {
                if !new.entries.iter().chain(&nops).any(|n: &Entry| n.key == e.key) {
                    nops.push(Entry { key: e.key.clone(), nop: true });
                }
            }
        }
        if !nops.is_empty() {
            self.hit("nops added".into());
        }
        new.entries.extend(nops);
        for e in &new.entries {
            if new.object(&e.key.object).is_none() {
                let declared = new.spec.funcs.iter().any(|f| f.object == e.key.object);
                let patched = self.object_loaded(&e.key.object);
                new.objects.push(Object { name: e.key.object.clone(), patched, dynamic: !declared });
            }
        }
        log.push(format!("enabling patch '{name}'"));
        self.list.push(new);
        self.modules.insert(name.to_string(), Module::default());
        self.start(name, Target::Patched, log);
        Outcome::Ok
    }

    fn object_loaded(&self, object: &str) -> bool {
        object == "vmlinux" || self.loaded_targets.contains(object)
    }

    fn start(&mut self, patch: &str, target: Target, log: &mut Vec<String>) {
        log.push(format!("'{patch}': starting {} transition", target.word()));
        self.transition = Some(Transition { patch: patch.to_string(), target });
        if let Some(p) = &mut self.parked {
            p.switched = false;
        }
        self.settle(log);
    }

    /// Completes the transition unless the parked observer holds it.
    fn settle(&mut self, log: &mut Vec<String>) {
        if self.transition.is_none() {
            return;
        }
        if self.blocked() {
            self.hit("transition held".into());
            return;
        }
        self.complete(log);
    }

    /// klp_check_stack_func() for the observer, which sleeps in the
    /// original code of the function it parked in.
    fn blocked(&self) -> bool {
        let (Some(t), Some(parked)) = (&self.transition, &self.parked) else { return false };
        if parked.switched {
            return false;
        }
        let at = parked.at.canonical();
        let Some(tp) = self.installed(&t.patch) else { return false };
        let Some(mine) = self.list[tp].active_entry(&at) else { return false };
        match t.target {
            // The code it replaces is the original when it is alone on the stack.
            Target::Patched => self.list.iter().filter(|p| p.active_entry(&at).is_some()).count() == 1,
            // A nop's new code is the original.
            Target::Unpatched => mine.nop,
        }
    }

    fn complete(&mut self, log: &mut Vec<String>) {
        let Some(t) = self.transition.take() else { return };
        let Some(i) = self.installed(&t.patch) else { return };
        match t.target {
            Target::Patched => {
                let new = self.list[i].clone();
                let replaced: Vec<String> = self.list[..i]
                    .iter()
                    .filter(|old| self.replaces(&new, old))
                    .map(|p| p.name().to_string())
                    .collect();
                let kept = self.list[..i].len() - replaced.len();
                if !replaced.is_empty() {
                    self.hit("patches replaced".into());
                }
                if (new.spec.replace || self.sem == Semantics::V2ReplaceSet) && kept > 0 {
                    self.hit("patches kept by a replacing patch".into());
                }
                self.list.retain(|p| !replaced.iter().any(|r| r == p.name()));
                let me = self.list.iter_mut().find(|p| p.name() == t.patch).expect("transition patch is installed");
                me.entries.retain(|e| !e.nop);
                me.objects.retain(|o| !o.dynamic);
            }
            Target::Unpatched => {
                self.list.remove(i);
            }
        }
        self.hit(format!("{} complete", t.target.word()));
        log.push(format!("'{}': {} complete", t.patch, t.target.word()));
    }

    fn write_enabled(&mut self, name: &str, value: bool, log: &mut Vec<String>) -> Outcome {
        let Some(i) = self.installed(name) else {
            return Outcome::Invalid(format!("{name} has no sysfs directory"));
        };
        if self.list[i].enabled == value {
            return Outcome::Refused(Rule::EnabledUnchanged);
        }
        if self.transition.as_ref().is_some_and(|t| t.patch == name) {
            self.reverse(log);
            return Outcome::Ok;
        }
        if value {
            return Outcome::Refused(Rule::EnabledUnchanged);
        }
        if self.transition.is_some() {
            return Outcome::Refused(Rule::DisableDuringTransition);
        }
        self.list[i].enabled = false;
        self.start(name, Target::Unpatched, log);
        Outcome::Ok
    }

    fn reverse(&mut self, log: &mut Vec<String>) {
        let Some(t) = &mut self.transition else { return };
        t.target = t.target.flip();
        let (patch, target) = (t.patch.clone(), t.target);
        if let Some(i) = self.installed(&patch) {
            self.list[i].enabled = !self.list[i].enabled;
        }
        // The observer never left the state the transition now goes to.
        if let Some(p) = &mut self.parked {
            p.switched = !p.switched;
        }
        self.hit("transition reversed".into());
        log.push(format!("'{patch}': starting {} transition", target.word()));
        self.settle(log);
    }

    fn force(&mut self, name: &str, log: &mut Vec<String>) -> Outcome {
        if self.installed(name).is_none() {
            return Outcome::Invalid(format!("{name} has no sysfs directory"));
        }
        let Some(t) = self.transition.clone().filter(|t| t.patch == name) else {
            return Outcome::Refused(Rule::ForceWithoutTransition);
        };
        log.push("forcing remaining tasks to the patched state".into());
        if let Some(p) = &mut self.parked {
            p.switched = true;
        }
        let me = self.list.iter().find(|p| p.name() == name).expect("installed").clone();
        let forced: Vec<String> = match t.target {
            Target::Unpatched => vec![name.to_string()],
            Target::Patched => match self.sem {
                Semantics::Stock | Semantics::V1Replaceable if me.spec.replace => {
                    self.list.iter().filter(|p| p.name() != name).map(|p| p.name().to_string()).collect()
                }
                Semantics::V2ReplaceSet => self
                    .list
                    .iter()
                    .filter(|p| p.name() != name && p.spec.replace_set == me.spec.replace_set)
                    .map(|p| p.name().to_string())
                    .collect(),
                _ => vec![],
            },
        };
        for f in forced {
            self.hit("patch marked forced".into());
            self.modules.entry(f).or_default().forced = true;
        }
        self.hit(format!("{} forced", t.target.word()));
        self.settle(log);
        Outcome::Ok
    }

    fn unload(&mut self, name: &str) -> Outcome {
        let Some(m) = self.modules.get(name) else {
            return Outcome::Invalid(format!("{name} is not loaded"));
        };
        if m.forced || self.installed(name).is_some() {
            return Outcome::Refused(Rule::ModuleInUse);
        }
        self.modules.remove(name);
        Outcome::Ok
    }

    fn set_replaceable(&mut self, name: &str, value: bool) -> Outcome {
        if self.sem != Semantics::V1Replaceable {
            return Outcome::Invalid("no replaceable attribute".into());
        }
        let Some(i) = self.installed(name) else {
            return Outcome::Invalid(format!("{name} has no sysfs directory"));
        };
        if self.list[i].replaceable == value {
            return Outcome::Ok;
        }
        if self.transition.as_ref().is_some_and(|t| t.patch == name) {
            return Outcome::Refused(Rule::ReplaceableInTransition);
        }
        self.list[i].replaceable = value;
        Outcome::Ok
    }

    fn load_target(&mut self, m: &str, log: &mut Vec<String>) -> Outcome {
        if !self.targets.contains(m) {
            return Outcome::Invalid(format!("{m} is not a target of the universe"));
        }
        if !self.loaded_targets.insert(m.to_string()) {
            return Outcome::Refused(Rule::ModuleLoaded);
        }
        for p in &mut self.list {
            if let Some(o) = p.objects.iter_mut().find(|o| o.name == m) {
                o.patched = true;
                log.push(format!("applying patch '{}' to loading module '{m}'", p.spec.name));
                *self.coverage.entry("patch applied to a loading module".into()).or_default() += 1;
            }
        }
        Outcome::Ok
    }

    fn unload_target(&mut self, m: &str, log: &mut Vec<String>) -> Outcome {
        if !self.loaded_targets.contains(m) {
            return Outcome::Invalid(format!("{m} is not loaded"));
        }
        if self.parked.as_ref().is_some_and(|p| p.at.object == m) {
            return Outcome::Invalid(format!("the observer is parked in {m}"));
        }
        self.loaded_targets.remove(m);
        for p in &mut self.list {
            if let Some(o) = p.objects.iter_mut().find(|o| o.name == m) {
                o.patched = false;
                log.push(format!("reverting patch '{}' on unloading module '{m}'", p.spec.name));
                *self.coverage.entry("patch reverted on an unloading module".into()).or_default() += 1;
            }
        }
        Outcome::Ok
    }

    fn park(&mut self, at: &FuncKey) -> Outcome {
        if self.parked.is_some() {
            return Outcome::Invalid("the observer is parked already".into());
        }
        if self.transition.is_some() {
            return Outcome::Invalid("a task started during a transition is in no definite state".into());
        }
        if at.object == "vmlinux" || !self.loaded_targets.contains(&at.object) {
            return Outcome::Invalid(format!("{} is not a loaded target", at.object));
        }
        if self.run(&at.canonical(), false) != Impl::Original {
            return Outcome::Invalid(format!("{at} runs a replacement, which does not park"));
        }
        self.parked = Some(Parked { at: at.clone(), switched: true });
        Outcome::Ok
    }

    fn release(&mut self, log: &mut Vec<String>) -> Outcome {
        if self.parked.take().is_none() {
            return Outcome::Invalid("nothing is parked".into());
        }
        if self.transition.is_some() {
            self.hit("held transition released".into());
        }
        self.settle(log);
        Outcome::Ok
    }

    /// What a call of `key` runs for a task switched to the transition's
    /// target (`unswitched` false: every new task) or not switched yet.
    /// After klp_ftrace_handler().
    fn run(&self, key: &FuncKey, unswitched: bool) -> Impl {
        let stack: Vec<(&Installed, &Entry)> =
            self.list.iter().filter_map(|p| p.active_entry(key).map(|e| (p, e))).collect();
        let Some(&(top, entry)) = stack.last() else { return Impl::Original };
        let chosen = match &self.transition {
            Some(t) if t.patch == top.name() => {
                let state = if unswitched { t.target.flip() } else { t.target };
                if state == Target::Unpatched {
                    stack.len().checked_sub(2).map(|i| stack[i])
                } else {
                    Some((top, entry))
                }
            }
            _ => Some((top, entry)),
        };
        match chosen {
            Some((p, e)) if !e.nop => Impl::Patch(p.name().to_string()),
            _ => Impl::Original,
        }
    }

    /// What the kernel shows now: sysfs, loaded modules, and what each
    /// function of the universe runs.
    pub fn observe(&self) -> Observation {
        let f = &self.features;
        let mut patches = BTreeMap::new();
        for (i, p) in self.list.iter().enumerate() {
            let stock_like = self.sem != Semantics::V2ReplaceSet;
            let view = PatchView {
                enabled: p.enabled,
                transition: self.transition.as_ref().is_some_and(|t| t.patch == p.name()),
                replace: (stock_like && f.sysfs("replace")).then_some(p.spec.replace),
                stack_order: f.sysfs("stack_order").then_some(i + 1),
                replaceable: (self.sem == Semantics::V1Replaceable && f.sysfs("replaceable")).then_some(p.replaceable),
                replace_set: (self.sem == Semantics::V2ReplaceSet && f.sysfs("replace_set"))
                    .then_some(p.spec.replace_set),
                objects: p.objects.iter().map(|o| (o.name.clone(), f.sysfs("patched").then_some(o.patched))).collect(),
            };
            patches.insert(p.name().to_string(), view);
        }
        let keys: BTreeSet<FuncKey> =
            self.universe.values().flat_map(|p| p.funcs.iter().map(FuncKey::canonical)).collect();
        let observer_unswitched = self.transition.is_some() && self.parked.as_ref().is_some_and(|p| !p.switched);
        let funcs = keys
            .into_iter()
            .filter(|k| self.object_loaded(&k.object))
            .map(|k| {
                let new_tasks = self.run(&k, false);
                let observer = self.parked.as_ref().map(|_| self.run(&k, observer_unswitched));
                (k, FuncView { new_tasks, observer })
            })
            .collect();
        Observation {
            patches,
            modules: self.modules.keys().cloned().collect(),
            targets: self.loaded_targets.clone(),
            transition: self.transition.as_ref().map(|t| (t.patch.clone(), t.target == Target::Patched)),
            funcs,
        }
    }
}

fn op_patch(op: &Op) -> &str {
    match op {
        Op::Load(p) | Op::Disable(p) | Op::Enable(p) | Op::Force(p) | Op::Unload(p) | Op::SetReplaceable(p, _) => p,
        Op::LoadTarget(m) | Op::UnloadTarget(m) => m,
        Op::Park(_) | Op::Release => "",
    }
}

fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Load(_) => "load",
        Op::Disable(_) => "disable",
        Op::Enable(_) => "enable",
        Op::Force(_) => "force",
        Op::Unload(_) => "unload",
        Op::SetReplaceable(..) => "set replaceable",
        Op::LoadTarget(_) => "load target",
        Op::UnloadTarget(_) => "unload target",
        Op::Park(_) => "park",
        Op::Release => "release",
    }
}
