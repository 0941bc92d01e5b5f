//! The typed form of a case file. Field names are the YAML keys; see
//! `cases/README.md` for the reference.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Requires {
    /// Kernel config options, with or without the `CONFIG_` prefix.
    pub config: Vec<String>,
    /// Attributes of `/sys/kernel/livepatch/<patch>/` the case relies on.
    pub sysfs: Vec<String>,
    /// Symbols that must be in the kernel's symbol table.
    pub kallsyms: Vec<String>,
    /// Fields of `struct klp_patch` in the kernel's `include/linux/livepatch.h`.
    pub klp_patch: Vec<String>,
}

impl Requires {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
            && self.sysfs.is_empty()
            && self.kallsyms.is_empty()
            && self.klp_patch.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Xfail {
    /// Regex matched against the kernel's id (e.g. `debian-6.1.0-50-amd64`).
    pub kernel: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    /// `int`, `uint`, `bool` or `charp`.
    pub ty: String,
    pub default: Option<serde_norway::Value>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub id: u64,
    pub version: u32,
}

#[derive(Debug, Clone)]
pub struct PatchedFunc {
    /// `vmlinux` or the name of the module the function lives in.
    pub object: String,
    /// The function's name in the kernel (`old_name`).
    pub name: String,
    pub sympos: u64,
    /// Short form: the replacement is a seq_file show function that prints this line.
    pub marker: Option<String>,
    /// Long form: `"<return type> (<parameters>)"`, e.g. `int (struct seq_file *m, void *v)`.
    pub signature: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Livepatch {
    pub name: String,
    pub replace: bool,
    /// `struct klp_patch.replaceable` (hybrid-mode RFC v1); emitted only where the kernel has it.
    pub replaceable: Option<bool>,
    /// `struct klp_patch.replace_set` (replace-set revisions); emitted only where the kernel has it.
    pub replace_set: Option<u32>,
    pub params: Vec<Param>,
    pub states: Vec<State>,
    pub functions: Vec<PatchedFunc>,
    /// A prebuilt module (`ko:`, resolved against the case file's
    /// directory) instead of a generated one; its `params` are read from it.
    pub ko: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct TargetFunc {
    pub name: String,
    /// What the function prints when `/proc/<module>/<name>` is read.
    pub prints: Option<String>,
    /// A parking function: writing `park` to its proc file makes a worker
    /// sleep inside it until `release` is written.
    pub park: bool,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub params: Vec<Param>,
    pub functions: Vec<TargetFunc>,
    /// A prebuilt module (`ko:`) instead of a generated one, as for livepatches.
    pub ko: Option<std::path::PathBuf>,
}

/// The top level of a case file, before steps are interpreted.
#[derive(Debug, Clone)]
pub struct CaseDoc {
    pub description: String,
    pub requires: Requires,
    /// Architectures the case may run on; empty means all.
    pub arches: Vec<String>,
    /// Number of vCPUs; a transition with more than one waits for the
    /// kernel's 1 s retry, so only cases that need SMP ask for it.
    pub smp: u32,
    /// Default deadline, in seconds, of every waiting step.
    pub timeout: u64,
    pub xfail: Vec<Xfail>,
    pub targets: Vec<Target>,
    pub livepatches: Vec<Livepatch>,
    pub steps: Vec<serde_norway::Value>,
}

/// A string matcher for file contents and sysfs values.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub equals: Option<String>,
    pub contains: Vec<String>,
    pub not_contains: Vec<String>,
    pub matches: Option<regex::Regex>,
}

#[derive(Debug, Clone, Default)]
pub struct PatchExpect {
    /// Attribute file name → expected value (trimmed).
    pub attrs: BTreeMap<String, String>,
    /// Object name → expected `patched` value.
    pub objects: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct DmesgExpect {
    pub events: Vec<regex::Regex>,
    pub must_not: Vec<regex::Regex>,
    pub ignore: Vec<regex::Regex>,
    /// Every `livepatch:` line of the window must be one of `events`.
    pub strict: bool,
}

/// Conditions on the kernel's capabilities, for per-revision expectations.
#[derive(Debug, Clone, Default)]
pub struct Cond {
    pub has: Requires,
    pub lacks: Requires,
}

#[derive(Debug, Clone, Default)]
pub struct Assertion {
    /// `Some`: the exact set of patches under /sys/kernel/livepatch.
    pub patches: Option<BTreeMap<String, PatchExpect>>,
    pub files: Vec<(String, Matcher)>,
    /// Path → expected octal permission bits (`644`).
    pub modes: Vec<(String, String)>,
    pub dmesg: Option<DmesgExpect>,
    /// Modules that must (true) or must not (false) be loaded.
    pub modules: BTreeMap<String, bool>,
}

/// Errno names a refused operation may fail with (any of them).
pub type Errnos = Vec<String>;

#[derive(Debug, Clone)]
pub enum Action {
    Load {
        module: String,
        args: String,
        wait: bool,
        refused: Option<Errnos>,
    },
    Disable {
        patch: String,
        wait: bool,
        refused: Option<Errnos>,
    },
    Write {
        path: String,
        value: String,
        refused: Option<Errnos>,
    },
    Force {
        patch: String,
        refused: Option<Errnos>,
    },
    Unload {
        module: String,
        refused: Option<Errnos>,
    },
    Park {
        module: String,
        function: String,
    },
    Release {
        module: String,
        function: String,
    },
    Wait {
        until: Assertion,
        timeout: u64,
    },
    Shell {
        command: String,
        status: i32,
    },
    Assert(Assertion),
    /// The worker parked in `module`'s parking function `parked` calls
    /// `module`'s function `function` and records what it printed.
    Call {
        module: String,
        parked: String,
        function: String,
        prints: Option<Matcher>,
    },
}

#[derive(Debug, Clone)]
pub struct Step {
    pub index: usize,
    /// Source line of the step, for messages.
    pub line: usize,
    pub label: String,
    pub when: Option<Cond>,
    /// Deadline in seconds of this step's waits, instead of the case's `timeout`.
    pub timeout: Option<u64>,
    /// Kernel warnings the step expects (regexes over the log lines).
    pub warnings: Vec<regex::Regex>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Case {
    /// `stock/basic-enable`: path below the cases root, without `.yaml`.
    pub id: String,
    pub file: std::path::PathBuf,
    pub doc: CaseDoc,
    pub steps: Vec<Step>,
    /// Source lines of embedded C bodies, keyed by `livepatch.function` index.
    pub body_lines: BTreeMap<(usize, usize), usize>,
}

impl Case {
    pub fn livepatch(&self, name: &str) -> Option<&Livepatch> {
        self.doc.livepatches.iter().find(|l| l.name == name)
    }
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.doc.targets.iter().find(|t| t.name == name)
    }
    pub fn runs_on(&self, arch: &str) -> bool {
        self.doc.arches.is_empty() || self.doc.arches.iter().any(|a| a == arch)
    }
}
