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
    /// Fields of `struct klp_object` there.
    pub klp_object: Vec<String>,
    /// Fields of `struct klp_state` there.
    pub klp_state: Vec<String>,
    /// Fields of `struct klp_state_callbacks` there (newer kernels only).
    pub klp_state_callbacks: Vec<String>,
}

/// The structs of `include/linux/livepatch.h` whose fields `requires:` names.
pub const STRUCTS: &[&str] = &["klp_patch", "klp_object", "klp_state", "klp_state_callbacks"];

impl Requires {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
            && self.sysfs.is_empty()
            && self.kallsyms.is_empty()
            && self.structs().iter().all(|(_, l)| l.is_empty())
    }

    /// Each of [`STRUCTS`] with the fields required of it.
    pub fn structs(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("klp_patch", &self.klp_patch),
            ("klp_object", &self.klp_object),
            ("klp_state", &self.klp_state),
            ("klp_state_callbacks", &self.klp_state_callbacks),
        ]
    }

    /// The field list of struct `kind` (one of [`STRUCTS`]).
    pub fn fields_mut(&mut self, kind: &str) -> &mut Vec<String> {
        match kind {
            "klp_object" => &mut self.klp_object,
            "klp_state" => &mut self.klp_state,
            "klp_state_callbacks" => &mut self.klp_state_callbacks,
            _ => &mut self.klp_patch,
        }
    }

    /// Adds `kind.field` unless it is there.
    pub fn add_field(&mut self, kind: &str, field: &str) {
        let l = self.fields_mut(kind);
        if !l.iter().any(|f| f == field) {
            l.push(field.to_string());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Xfail {
    /// Regex matched against the kernel's id (e.g. `debian-6.1.0-50-amd64`).
    pub kernel: String,
    /// Only on these architectures; empty means every one.
    pub arches: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    /// `int`, `uint`, `bool` or `charp`.
    pub ty: String,
    pub default: Option<serde_norway::Value>,
    /// `module_param_array` of at most this many elements; the number given
    /// at load is in `<name>_count`.
    pub array: Option<u32>,
}

/// C text from the case and the case-file line its text starts on, for the
/// `#line` directive that makes gcc report errors at the case's lines.
#[derive(Debug, Clone)]
pub struct Code {
    pub text: String,
    pub line: usize,
}

/// What a callback prints when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Log {
    /// The selftest modules' `callback_info()` line:
    /// `<callback>_callback: vmlinux` or `<callback>_callback: <module> -> <state>`.
    #[default]
    Info,
    Off,
    Text(String),
}

/// One callback (`pre_patch`, ...) of an object or a state.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    pub log: Log,
    /// Errno name the callback fails with (callbacks that return int only).
    pub fail: Option<String>,
    /// An `int` parameter of the module whose value the callback returns.
    pub returns: Option<String>,
    /// C statements run after the log line (and the state helpers).
    pub body: Option<Code>,
}

/// A `klp_object` declared under `objects:`: callbacks, possibly no functions.
#[derive(Debug, Clone)]
pub struct Object {
    /// `vmlinux` or a module name.
    pub name: String,
    /// Callback name (`pre_patch`, ...) → what it does, in declaration order.
    pub callbacks: Vec<(String, Callback)>,
}

/// Module-scope C of a generated module.
#[derive(Debug, Clone, Default)]
pub struct ModuleCode {
    /// Header paths for `#include <...>`, e.g. `linux/slab.h`.
    pub includes: Vec<String>,
    /// Declarations and functions, before the generated functions.
    pub c: Option<Code>,
    /// Statements at the start of module init (may `return -E...;`).
    pub init: Option<Code>,
    /// Statements at the end of module exit.
    pub exit: Option<Code>,
}

#[derive(Debug, Clone)]
pub struct State {
    pub id: u64,
    pub version: u32,
    /// The selftests' test_klp_state*.c lifecycle of `state->data`.
    pub data: Option<StateData>,
    /// `struct klp_state_callbacks` (newer kernels): name → what it does.
    pub callbacks: Vec<(String, Callback)>,
    /// `struct klp_state.is_shadow` (newer kernels).
    pub is_shadow: Option<bool>,
    /// `struct klp_state.block_disable` (newer kernels).
    pub block_disable: Option<bool>,
}

/// A system state change kept in `state->data`, as test_klp_state.c keeps
/// console_loglevel: object `object`'s callbacks call
/// `allocate_<name>_state()` (pre_patch), `fix_<variable>()` (post_patch:
/// saves `variable`, sets it to `set`), `restore_<variable>()`
/// (pre_unpatch) and `free_<name>_state()` (post_unpatch), logging what
/// they do in the selftest modules' words. With `migrate`, a patch that
/// replaces one with the same state takes its data over and leaves the
/// variable alone (test_klp_state2.c).
#[derive(Debug, Clone)]
pub struct StateData {
    pub name: String,
    pub variable: String,
    pub set: String,
    pub migrate: bool,
    pub object: String,
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
    /// The replacement function's name (default `klpt_<index>_<name>`), e.g.
    /// for a step that traces it.
    pub new_name: Option<String>,
    /// `syscall: getpid`: the function is the syscall's entry point, whose
    /// symbol differs per architecture (`__x64_sys_getpid`, ...); it is
    /// looked up in the guest's /proc/kallsyms when the patch is loaded.
    /// `name` is then `sys_<syscall>`.
    pub syscall: Option<String>,
}

/// The symbols a syscall's entry point may have, in the order they are
/// looked up: the architectures' syscall wrappers, then the plain name.
pub fn syscall_symbols(syscall: &str) -> Vec<String> {
    ["__x64_sys_", "__arm64_sys_", "__s390x_sys_", "sys_"].iter().map(|p| format!("{p}{syscall}")).collect()
}

/// The module parameter that carries a syscall's symbol to `klp_func.old_name`.
pub fn syscall_param(function_index: usize) -> String {
    format!("klpt_sym_{function_index}")
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
    /// Objects with callbacks, in declaration order (the kernel runs the
    /// callbacks of a patch's objects in this order, then the objects only
    /// `functions:` name).
    pub objects: Vec<Object>,
    pub code: ModuleCode,
}

impl Livepatch {
    /// The names of its `klp_object`s: those under `objects:` in their
    /// order, then those only `functions:` name, in first-use order.
    pub fn object_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.objects.iter().map(|o| o.name.as_str()).collect();
        for f in &self.functions {
            if !out.contains(&f.object.as_str()) {
                out.push(&f.object);
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct TargetFunc {
    pub name: String,
    /// What the function prints when `/proc/<module>/<name>` is read.
    pub prints: Option<String>,
    /// A parking function: writing `park` to its proc file makes a worker
    /// sleep inside it until `release` is written.
    pub park: bool,
    /// A work function (`void (struct work_struct *)`), queued at module
    /// init as the selftests' busy module does.
    pub work: Option<Work>,
}

/// A kprobe a target module registers.
#[derive(Debug, Clone)]
pub struct Kprobe {
    pub symbol: String,
    /// Whether it has a post handler (which makes an ftrace-based kprobe
    /// IPMODIFY, exclusive with a livepatch): fixed, or a bool parameter.
    pub post_handler: PostHandler,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostHandler {
    Always(bool),
    Param(String),
}

/// A work function's behaviour, that of `test_klp_callbacks_busy.c`: it logs
/// `<fn> enter`, stays inside while the `block` parameter is true, logs
/// `<fn> exit`. Module init waits until it entered (and, unblocked, until it
/// returned); module exit clears `block` and waits for it.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// A `bool` parameter of the module.
    pub block: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub params: Vec<Param>,
    pub functions: Vec<TargetFunc>,
    /// A prebuilt module (`ko:`) instead of a generated one, as for livepatches.
    pub ko: Option<std::path::PathBuf>,
    /// Module init and exit log `<module>_init` / `<module>_exit`, as the
    /// selftests' target modules do.
    pub log: bool,
    /// Kprobes registered at init and unregistered at exit (test_klp_kprobe.c).
    pub kprobes: Vec<Kprobe>,
    pub code: ModuleCode,
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
    /// Starts `count` copies of a program in the background, as group `name`.
    Spawn {
        name: String,
        /// A program klpt builds for the guest (`getpid`: calls getpid() in a loop).
        program: Option<String>,
        /// Or a shell command.
        command: Option<String>,
        count: u32,
    },
    /// Kills the processes of a spawned group and waits until they are gone.
    Kill {
        name: String,
    },
    /// Stops and clears the function tracer, then (with a function) traces
    /// that function, as functions.sh's trace_function()/cleanup_tracing().
    Trace {
        function: Option<String>,
    },
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
