//! What the model is told: the kernel's livepatch features, the patches of
//! a universe and the operations on them.

use std::collections::BTreeSet;
use std::fmt;

/// Which livepatch core the kernel has, decided from probed features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Semantics {
    /// Upstream: `bool replace`, every atomic replace takes every older patch.
    Stock,
    /// Hybrid mode RFC v1: `bool replaceable`; an atomic replace skips
    /// patches that are not replaceable.
    V1Replaceable,
    /// Replace-set series v2: `unsigned int replace_set`; a patch replaces
    /// those of its set, sets must not share functions or state ids.
    V2ReplaceSet,
}

impl Semantics {
    pub const ALL: [Semantics; 3] = [Semantics::Stock, Semantics::V1Replaceable, Semantics::V2ReplaceSet];

    pub fn name(self) -> &'static str {
        match self {
            Semantics::Stock => "stock",
            Semantics::V1Replaceable => "hybrid RFC v1 (replaceable)",
            Semantics::V2ReplaceSet => "replace-set v2 (replace_set)",
        }
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel's livepatch features as probed (`struct klp_patch` fields of
/// its `livepatch.h`, sysfs attributes from their show/store symbols).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// `struct klp_patch` fields: `replace`, `replaceable`, `replace_set`, `states`.
    pub klp_patch: BTreeSet<String>,
    /// Attributes of `/sys/kernel/livepatch/<patch>/` beyond `enabled`,
    /// `transition` and `force`: `replace`, `stack_order`, `replaceable`,
    /// `replace_set`, and `patched` (of `<patch>/<object>/`).
    pub sysfs: BTreeSet<String>,
}

impl Features {
    pub fn new(klp_patch: &[&str], sysfs: &[&str]) -> Features {
        Features {
            klp_patch: klp_patch.iter().map(|s| s.to_string()).collect(),
            sysfs: sysfs.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The semantics these features imply: the replace-set field wins over
    /// `replaceable`, which wins over stock. Never from a version number.
    pub fn semantics(&self) -> Semantics {
        if self.klp_patch.contains("replace_set") {
            Semantics::V2ReplaceSet
        } else if self.klp_patch.contains("replaceable") {
            Semantics::V1Replaceable
        } else {
            Semantics::Stock
        }
    }

    /// Whether patches may declare states (`struct klp_patch.states`, 5.5).
    pub fn has_states(&self) -> bool {
        self.klp_patch.contains("states")
    }

    /// Whether a patch can ask for atomic replace (`bool replace`); the
    /// replace-set kernels replace within the set instead.
    pub fn has_replace(&self) -> bool {
        self.klp_patch.contains("replace")
    }

    pub fn sysfs(&self, attr: &str) -> bool {
        self.sysfs.contains(attr)
    }
}

/// A function a patch replaces: object (`vmlinux` or a module), name, and
/// position among same-named symbols (0 and 1 both mean the first).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncKey {
    pub object: String,
    pub name: String,
    pub sympos: u32,
}

impl FuncKey {
    pub fn new(object: &str, name: &str) -> FuncKey {
        FuncKey { object: object.to_string(), name: name.to_string(), sympos: 0 }
    }

    /// The identity of the patched code: sympos 0 means the only (first)
    /// symbol, as the sysfs name `<func>,<sympos>` shows it.
    pub fn canonical(&self) -> FuncKey {
        FuncKey { sympos: self.sympos.max(1), ..self.clone() }
    }
}

impl fmt::Display for FuncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{},{}", self.object, self.name, self.sympos.max(1))
    }
}

/// A livepatch module of the universe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSpec {
    /// Module name = patch name in sysfs and dmesg.
    pub name: String,
    pub funcs: Vec<FuncKey>,
    /// `(id, version)` of each `klp_state`.
    pub states: Vec<(u64, u32)>,
    /// `.replace` (stock and RFC v1).
    pub replace: bool,
    /// `.replaceable` (RFC v1), the initial value of the sysfs attribute.
    pub replaceable: bool,
    /// `.replace_set` (replace-set v2).
    pub replace_set: u32,
}

impl PatchSpec {
    pub fn new(name: &str, funcs: &[FuncKey]) -> PatchSpec {
        PatchSpec {
            name: name.to_string(),
            funcs: funcs.to_vec(),
            states: vec![],
            replace: false,
            replaceable: false,
            replace_set: 0,
        }
    }

    /// The objects the patch declares, in first-use order.
    pub fn objects(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in &self.funcs {
            if !out.contains(&f.object) {
                out.push(f.object.clone());
            }
        }
        out
    }
}

/// One thing done to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// insmod of the livepatch module.
    Load(String),
    /// `echo 0 > /sys/kernel/livepatch/<p>/enabled`.
    Disable(String),
    /// `echo 1 > .../enabled` (only meaningful to reverse an unpatching transition).
    Enable(String),
    /// `echo 1 > .../force`.
    Force(String),
    /// rmmod of the livepatch module.
    Unload(String),
    /// `echo 0|1 > .../replaceable` (RFC v1).
    SetReplaceable(String, bool),
    /// insmod / rmmod of a target module (an object patches may name).
    LoadTarget(String),
    UnloadTarget(String),
    /// Park the observer task in a target module's function: it sleeps
    /// there, unswitched, until released.
    Park(FuncKey),
    Release,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Load(p) => write!(f, "load {p}"),
            Op::Disable(p) => write!(f, "disable {p}"),
            Op::Enable(p) => write!(f, "enable {p}"),
            Op::Force(p) => write!(f, "force {p}"),
            Op::Unload(p) => write!(f, "unload {p}"),
            Op::SetReplaceable(p, v) => write!(f, "replaceable {p}={}", *v as u8),
            Op::LoadTarget(m) => write!(f, "load target {m}"),
            Op::UnloadTarget(m) => write!(f, "unload target {m}"),
            Op::Park(k) => write!(f, "park in {k}"),
            Op::Release => write!(f, "release"),
        }
    }
}
