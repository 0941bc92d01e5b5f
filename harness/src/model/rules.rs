//! The refusals the model encodes, one variant per kernel check, with the
//! errno and log line it produces and the revisions that have it. The
//! README's "What each revision refuses" is generated from this list
//! (a unit test keeps the two in sync).

use super::Semantics;

/// Why the kernel refuses an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The module loader refuses a module name that is loaded.
    ModuleLoaded,
    /// Two entries of one patch name the same `<function,sympos>` (kobject_add).
    DuplicateFunction,
    /// A replacing patch omits a state an installed patch it would replace has.
    StateMissing,
    /// A patch carries an installed state id at a lower version.
    StateDowngrade,
    /// A patch of another replace set uses an installed state id.
    CrossSetState,
    /// A patch of another replace set modifies an installed patched function.
    CrossSetFunction,
    /// A patch is loaded while another transition is in progress.
    LoadDuringTransition,
    /// A patch is disabled while another one is in transition.
    DisableDuringTransition,
    /// `enabled` is written with the value it has (or 1 to a disabled patch).
    EnabledUnchanged,
    /// `force` is written to a patch that is not in transition.
    ForceWithoutTransition,
    /// `replaceable` of the patch in transition is changed.
    ReplaceableInTransition,
    /// rmmod of a livepatch module the core still holds (enabled, in
    /// transition, not yet freed, or ever forced).
    ModuleInUse,
}

impl Rule {
    pub const ALL: [Rule; 12] = [
        Rule::ModuleLoaded,
        Rule::DuplicateFunction,
        Rule::StateMissing,
        Rule::StateDowngrade,
        Rule::CrossSetState,
        Rule::CrossSetFunction,
        Rule::LoadDuringTransition,
        Rule::DisableDuringTransition,
        Rule::EnabledUnchanged,
        Rule::ForceWithoutTransition,
        Rule::ReplaceableInTransition,
        Rule::ModuleInUse,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::ModuleLoaded => "module-loaded",
            Rule::DuplicateFunction => "duplicate-function",
            Rule::StateMissing => "state-missing",
            Rule::StateDowngrade => "state-downgrade",
            Rule::CrossSetState => "cross-set-state",
            Rule::CrossSetFunction => "cross-set-function",
            Rule::LoadDuringTransition => "load-during-transition",
            Rule::DisableDuringTransition => "disable-during-transition",
            Rule::EnabledUnchanged => "enabled-unchanged",
            Rule::ForceWithoutTransition => "force-without-transition",
            Rule::ReplaceableInTransition => "replaceable-in-transition",
            Rule::ModuleInUse => "module-in-use",
        }
    }

    /// The errno names the refusal may fail with (rmmod's differs by kernel).
    pub fn errnos(self) -> &'static [&'static str] {
        match self {
            Rule::ModuleLoaded => &["EEXIST"],
            // The init's -EEXIST; some module loaders turn it into -EBUSY.
            Rule::DuplicateFunction => &["EEXIST", "EBUSY"],
            Rule::StateMissing | Rule::StateDowngrade | Rule::CrossSetState | Rule::CrossSetFunction => &["EINVAL"],
            Rule::LoadDuringTransition | Rule::DisableDuringTransition => &["EBUSY"],
            Rule::EnabledUnchanged | Rule::ForceWithoutTransition => &["EINVAL"],
            Rule::ReplaceableInTransition => &["EAGAIN"],
            Rule::ModuleInUse => &["EBUSY", "EAGAIN"],
        }
    }

    /// Whether the "not compatible" line is logged (klp_is_patch_compatible()).
    pub fn logs_not_compatible(self) -> bool {
        matches!(self, Rule::StateMissing | Rule::StateDowngrade | Rule::CrossSetState | Rule::CrossSetFunction)
    }

    pub fn applies(self, sem: Semantics) -> bool {
        match self {
            Rule::CrossSetState | Rule::CrossSetFunction => sem == Semantics::V2ReplaceSet,
            Rule::ReplaceableInTransition => sem == Semantics::V1Replaceable,
            _ => true,
        }
    }

    /// The condition, as the revision's code checks it.
    pub fn describe(self, sem: Semantics) -> &'static str {
        match (self, sem) {
            (Rule::ModuleLoaded, _) => "loading a module whose name is loaded (module loader, no log)",
            (Rule::DuplicateFunction, _) => "a patch naming one `<function,sympos>` twice in an object (sysfs duplicate name)",
            (Rule::StateMissing, Semantics::V2ReplaceSet) => {
                "a patch without a state id that an installed patch of the *same* set has"
            }
            (Rule::StateMissing, _) => "a `replace` patch without a state id that any installed patch has (replaceable or not)",
            (Rule::StateDowngrade, _) => "a patch with an installed state id at a lower version",
            (Rule::CrossSetState, _) => "a patch of another set with a state id an installed patch has (any version)",
            (Rule::CrossSetFunction, _) => {
                "a patch of another set modifying a function an installed patch modifies (same object, same name, sympos 0 = 1; nops do not count)"
            }
            (Rule::LoadDuringTransition, _) => "loading a patch while a transition is in progress (checked after the compatibility checks)",
            (Rule::DisableDuringTransition, _) => "disabling a patch while *another* patch is in transition",
            (Rule::EnabledUnchanged, _) => "writing `enabled` with its current value, or 1 to a patch that is not in transition",
            (Rule::ForceWithoutTransition, _) => "writing 1 to `force` of a patch that is not in transition",
            (Rule::ReplaceableInTransition, _) => "changing `replaceable` of the patch in transition (writing the current value succeeds)",
            (Rule::ModuleInUse, _) => {
                "rmmod of a livepatch module whose patch is enabled, in transition, or was ever marked forced"
            }
        }
    }
}

/// Conflicts a revision accepts although a production script would flag
/// them: the other half of the reviewers' question.
pub fn accepted_conflicts(sem: Semantics) -> &'static [&'static str] {
    match sem {
        Semantics::Stock => &[
            "two non-replace patches modifying the same function: they stack, the newest wins",
            "a non-replace patch over a `replace` patch on the same function: it stacks on top",
        ],
        Semantics::V1Replaceable => &[
            "any two patches modifying the same function (no conflict detection): the newest wins",
            "a `replace` patch modifying a function a non-replaceable patch modifies: it stacks on top, both stay",
            "a `replace` patch replacing nothing, because `replaceable` defaults to 0",
            "a replace transition adding a nop for a function a non-replaceable patch still modifies (the function runs the original code until the transition ends)",
            "forcing a replace transition marks non-replaceable patches forced: their modules can never be unloaded",
            "a `replace` patch must still carry the states of the non-replaceable patches it keeps",
        ],
        Semantics::V2ReplaceSet => &[
            "two patches of the same set modifying the same function: the newer replaces the older",
            "a patch of another set modifying the same function *name* in another object",
            "sympos 1 and 2 of a duplicated symbol in two sets (distinct functions)",
        ],
    }
}

/// The README section: each revision's refusals and accepted conflicts.
pub fn readme_section() -> String {
    let mut s = String::new();
    for sem in Semantics::ALL {
        s.push_str(&format!("**{}** refuses:\n\n", sem.name()));
        for r in Rule::ALL.iter().filter(|r| r.applies(sem)) {
            s.push_str(&format!("- `{}` ({}): {}\n", r.id(), r.errnos().join("/"), r.describe(sem)));
        }
        s.push_str("\nand accepts:\n\n");
        for a in accepted_conflicts(sem) {
            s.push_str(&format!("- {a}\n"));
        }
        s.push('\n');
    }
    s
}
