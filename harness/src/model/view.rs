//! What the model predicts the kernel shows after an operation.

use super::spec::FuncKey;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The code a call of a patched function runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impl {
    Original,
    /// The replacement in this livepatch module.
    Patch(String),
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Impl::Original => f.write_str("original"),
            Impl::Patch(p) => f.write_str(p),
        }
    }
}

/// `/sys/kernel/livepatch/<patch>/`; `None` for an attribute the kernel lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchView {
    pub enabled: bool,
    pub transition: bool,
    pub replace: Option<bool>,
    pub stack_order: Option<usize>,
    pub replaceable: Option<bool>,
    pub replace_set: Option<u32>,
    /// Object directories, with `patched` where the kernel has it.
    pub objects: BTreeMap<String, Option<bool>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncView {
    /// What a task started now runs.
    pub new_tasks: Impl,
    /// What the parked observer runs when it calls the function, if one is parked.
    pub observer: Option<Impl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Patches with a sysfs directory.
    pub patches: BTreeMap<String, PatchView>,
    /// Loaded livepatch modules.
    pub modules: BTreeSet<String>,
    /// Loaded target modules.
    pub targets: BTreeSet<String>,
    /// The patch in transition, and whether it is patching.
    pub transition: Option<(String, bool)>,
    /// Every function of the universe whose object is loaded.
    pub funcs: BTreeMap<FuncKey, FuncView>,
}
