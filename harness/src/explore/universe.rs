//! A small random universe: a few vmlinux functions with a /proc file each,
//! two target modules (one with a function the observer parks in), and
//! random patches over them with the attributes the kernel supports.

use super::rng::Rng;
use crate::model::{Features, FuncKey, Kernel, PatchSpec, Semantics};

/// vmlinux seq_file show functions and the file each one prints.
pub const VMLINUX: [(&str, &str); 3] = [
    ("cmdline_proc_show", "/proc/cmdline"),
    ("meminfo_proc_show", "/proc/meminfo"),
    ("version_proc_show", "/proc/version"),
];

/// Every marker starts with this, so the original code is "does not contain it".
pub const MARK: &str = "klpx";

#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub name: String,
    /// Functions with a /proc/<target>/<function> file.
    pub funcs: Vec<String>,
    /// The function the observer parks in.
    pub park: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Universe {
    pub features: Features,
    pub patches: Vec<PatchSpec>,
    pub targets: Vec<TargetSpec>,
}

impl Universe {
    pub fn generate(features: &Features, rng: &mut Rng, patches: usize) -> Universe {
        let targets = vec![
            TargetSpec {
                name: "klpx_t1".into(),
                funcs: vec!["klpx_t1_fa".into(), "klpx_t1_fb".into()],
                park: Some("klpx_t1_hold".into()),
            },
            TargetSpec { name: "klpx_t2".into(), funcs: vec!["klpx_t2_fc".into()], park: None },
        ];
        let mut pool: Vec<FuncKey> = VMLINUX.iter().map(|(f, _)| FuncKey::new("vmlinux", f)).collect();
        for t in &targets {
            pool.extend(t.funcs.iter().chain(&t.park).map(|f| FuncKey::new(&t.name, f)));
        }
        let sem = features.semantics();
        let mut patches: Vec<PatchSpec> = (0..patches)
            .map(|i| {
                let mut funcs: Vec<FuncKey> = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    let f = pool[rng.below(pool.len())].clone();
                    if !funcs.contains(&f) {
                        funcs.push(f);
                    }
                }
                // Rarely, the first function twice (sympos 0 and 1 name the
                // same symbol): a patch the core must refuse.
                if rng.chance(1, 10) {
                    let f = funcs[0].clone();
                    funcs.push(FuncKey { sympos: 1 - f.sympos.min(1), ..f });
                }
                let mut p = PatchSpec::new(&format!("klpx_p{i}"), &funcs);
                p.replace = features.has_replace() && rng.chance(1, 2);
                p.replaceable = sem == Semantics::V1Replaceable && rng.chance(1, 2);
                if sem == Semantics::V2ReplaceSet {
                    p.replace_set = rng.below(3) as u32;
                }
                if features.has_states() && rng.chance(1, 2) {
                    p.states = vec![(1 + rng.below(2) as u64, 1 + rng.below(2) as u32)];
                }
                p
            })
            .collect();
        // A patch of the parking function is what holds a transition open.
        let hold = FuncKey::new(&targets[0].name, targets[0].park.as_deref().unwrap_or_default());
        if !patches.iter().any(|p| p.funcs.contains(&hold)) {
            if let Some(p) = patches.last_mut() {
                p.funcs.push(hold);
            }
        }
        Universe { features: features.clone(), patches, targets }
    }

    /// The universe without the patches `ops` never names, and without the
    /// targets neither `ops` nor those patches name.
    pub fn only(&self, ops: &[crate::model::Op]) -> Universe {
        use crate::model::Op;
        let named = |p: &PatchSpec| {
            ops.iter().any(|o| match o {
                Op::Load(n)
                | Op::Disable(n)
                | Op::Enable(n)
                | Op::Force(n)
                | Op::Unload(n)
                | Op::SetReplaceable(n, _) => *n == p.name,
                _ => false,
            })
        };
        let patches: Vec<PatchSpec> = self.patches.iter().filter(|p| named(p)).cloned().collect();
        // A target stays while an operation or a kept patch names it.
        let used = |t: &TargetSpec| {
            patches.iter().any(|p| p.funcs.iter().any(|f| f.object == t.name))
                || ops.iter().any(|o| match o {
                    Op::LoadTarget(m) | Op::UnloadTarget(m) => *m == t.name,
                    Op::Park(k) => k.object == t.name,
                    _ => false,
                })
        };
        let targets = self.targets.iter().filter(|t| used(t)).cloned().collect();
        Universe { features: self.features.clone(), patches, targets }
    }

    pub fn kernel(&self) -> Kernel {
        let targets: Vec<&str> = self.targets.iter().map(|t| t.name.as_str()).collect();
        Kernel::new(self.features.clone(), self.patches.clone(), &targets)
            .expect("a generated universe fits its kernel")
    }

    /// The parking function, if any.
    pub fn park(&self) -> Option<FuncKey> {
        self.targets.iter().find_map(|t| t.park.as_ref().map(|p| FuncKey::new(&t.name, p)))
    }

    pub fn is_park(&self, k: &FuncKey) -> bool {
        self.targets.iter().any(|t| t.name == k.object && t.park.as_deref() == Some(&k.name))
    }

    /// The file a new task reads to run `k`.
    pub fn proc_file(&self, k: &FuncKey) -> Option<String> {
        if k.object == "vmlinux" {
            return VMLINUX.iter().find(|(f, _)| *f == k.name).map(|(_, p)| p.to_string());
        }
        (!self.is_park(k)).then(|| format!("/proc/{}/{}", k.object, k.name))
    }

    /// What `patch`'s replacement of `k` prints.
    pub fn marker(patch: &str, k: &FuncKey) -> String {
        format!("{MARK} {patch} {}", k.name)
    }

    /// What a target function's original prints.
    pub fn original(k: &FuncKey) -> String {
        format!("{} original", k.name)
    }
}
