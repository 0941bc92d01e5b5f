//! The plan: every trial a command names, resolved before any target is
//! prepared. Trial names carry the kernel's id, which klpt reads from its
//! cache or from apt metadata (`kernel::peek`); filters, `--skip` and the
//! partition then pick this run's trials, and only targets that run one of
//! them are prepared.

use crate::arch::Arch;
use crate::case::Case;
use crate::kernel::{Kernel, Peek};
use crate::report::results::{PlanRecord, PlannedTrial, TrialKind};
use std::sync::Arc;

/// Architectures named by `--arch` words (comma lists and `all` allowed),
/// each once, in the order first named.
pub fn arches(names: &[String]) -> Result<Vec<Arch>, String> {
    let mut out: Vec<Arch> = Vec::new();
    for n in names.iter().flat_map(|n| n.split(',')).map(str::trim) {
        let named: Vec<Arch> = if n == "all" {
            crate::arch::ALL.to_vec()
        } else {
            vec![Arch::by_name(n)
                .ok_or_else(|| format!("unknown architecture `{n}` (x86_64, arm64, s390x, ppc64le, or all)"))?]
        };
        for a in named {
            if !out.iter().any(|o| o.name == a.name) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        return Err("no architecture named (--arch x86_64, arm64, s390x, ppc64le, or all)".into());
    }
    Ok(out)
}

/// Which trials run, as libtest selects them: a trial runs when any filter
/// word is part of its name (or equals it with `--exact`) and no `--skip`
/// word is. klpt has no ignored trials, so `--ignored` selects none.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub filters: Vec<String>,
    pub skip: Vec<String>,
    pub exact: bool,
    pub ignored: bool,
}

impl Selection {
    pub fn selects(&self, name: &str) -> bool {
        let hit = |f: &String| if self.exact { name == f } else { name.contains(f.as_str()) };
        !self.ignored && (self.filters.is_empty() || self.filters.iter().any(hit)) && !self.skip.iter().any(hit)
    }

    fn describe(&self) -> String {
        let mut v = Vec::new();
        if !self.filters.is_empty() {
            v.push(format!(
                "filter{} {}",
                if self.filters.len() == 1 { "" } else { "s" },
                self.filters.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        if !self.skip.is_empty() {
            v.push(format!("--skip {}", self.skip.join(", ")));
        }
        if self.exact {
            v.push("--exact".into());
        }
        v.join(", ")
    }
}

/// This run's share of the selected trials: `count:K/N` deals them out
/// round-robin in plan order, `hash:K/N` by a hash of each name (stable
/// when trials are added or removed elsewhere). Shards 1..=N of one plan
/// hold every trial exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Count { shard: usize, of: usize },
    Hash { shard: usize, of: usize },
}

impl std::str::FromStr for Partition {
    type Err = String;
    fn from_str(s: &str) -> Result<Partition, String> {
        let bad = || format!("bad --partition `{s}`: expected count:K/N or hash:K/N with 1 <= K <= N (e.g. count:1/3)");
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (k, n) = rest.split_once('/').ok_or_else(bad)?;
        let (shard, of): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if shard == 0 || shard > of {
            return Err(bad());
        }
        match kind {
            "count" => Ok(Partition::Count { shard, of }),
            "hash" => Ok(Partition::Hash { shard, of }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Count { shard, of } => write!(f, "count:{shard}/{of}"),
            Partition::Hash { shard, of } => write!(f, "hash:{shard}/{of}"),
        }
    }
}

impl Partition {
    /// Whether the `nth` selected trial (0-based, plan order), named `name`, is this shard's.
    pub fn holds(&self, nth: usize, name: &str) -> bool {
        match *self {
            Partition::Count { shard, of } => nth % of == shard - 1,
            Partition::Hash { shard, of } => {
                use sha2::Digest;
                let d = sha2::Sha256::digest(name.as_bytes());
                let h = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
                (h % of as u64) as usize == shard - 1
            }
        }
    }
}

/// An (architecture, kernel) to test on, named but not prepared.
pub struct TargetSpec {
    pub arch: Arch,
    /// `--kernel` as given; None for the default (Debian's kernel).
    pub spec: Option<String>,
    /// The id trial names carry.
    pub kernel_id: String,
    /// The kernel, when klpt already has it (its selftests can be listed).
    pub kernel: Option<Kernel>,
}

impl TargetSpec {
    pub fn label(&self) -> String {
        format!("{} ({})", self.arch.name, self.spec.as_deref().unwrap_or("debian"))
    }
}

/// Names every (arch, kernel) target. A kernel whose id klpt cannot know
/// before it exists (a source build not built yet; a kernel whose
/// selftests must be listed from its tree) is fetched or built here when
/// `may_build`, else it is an error that says how to build it.
pub fn targets(
    arches: &[Arch],
    kernels: &[Option<String>],
    need_tree: bool,
    may_build: bool,
) -> Result<Vec<TargetSpec>, String> {
    let mut out = Vec::new();
    for a in arches {
        for k in kernels {
            if out.iter().any(|t: &TargetSpec| t.arch.name == a.name && &t.spec == k) {
                continue;
            }
            let mut t = TargetSpec { arch: *a, spec: k.clone(), kernel_id: String::new(), kernel: None };
            let what = t.label();
            let build = |why: &str| -> Result<Kernel, String> {
                if !may_build {
                    return Err(format!("{what}: {why}"));
                }
                crate::host::ensure(&[*a]).map_err(|e| format!("{what}: {e}"))?;
                crate::kernel::resolve(k.as_deref(), *a).map_err(|e| format!("{what}: {e}"))
            };
            match crate::kernel::peek(k.as_deref(), *a).map_err(|e| format!("{what}: {e}"))? {
                Peek::Ready(kernel) => {
                    t.kernel_id = kernel.id.clone();
                    t.kernel = Some(*kernel);
                }
                Peek::Absent { id: Some(id), how } if need_tree => {
                    let kernel = build(&format!("cannot list its selftests before klpt has the kernel: {how}"))?;
                    if kernel.id != id {
                        return Err(format!("{what}: apt metadata named kernel {id}, but klpt fetched {}", kernel.id));
                    }
                    t.kernel_id = id;
                    t.kernel = Some(kernel);
                }
                Peek::Absent { id: Some(id), .. } => t.kernel_id = id,
                Peek::Absent { id: None, how } => {
                    let kernel = build(&format!(
                        "cannot name its trials before it is built (they carry the built kernel's release): {how}"
                    ))?;
                    t.kernel_id = kernel.id.clone();
                    t.kernel = Some(kernel);
                }
            }
            out.push(t);
        }
    }
    Ok(out)
}

/// What a planned trial runs.
#[derive(Clone)]
pub enum Work {
    Case(Arc<Case>),
    /// Scenario `scenario` (0-based) of script `script` of the target's selftests.
    Kselftest {
        script: usize,
        scenario: usize,
    },
}

pub struct Entry {
    pub trial: PlannedTrial,
    /// Index into [`Plan::targets`].
    pub target: usize,
    pub work: Work,
}

/// The selected trials in plan order (cases on every target, then the
/// selftests' scenarios), and this run's share of them.
pub struct Plan {
    pub targets: Vec<TargetSpec>,
    pub entries: Vec<Entry>,
    /// Indices into `entries` of this run's partition (all without one).
    pub mine: Vec<usize>,
    pub partition: Option<Partition>,
    /// Trials named but not run: filtered out, skipped, or other shards'.
    pub filtered_out: usize,
}

impl Plan {
    /// Plans `cases` (and with `kselftest`, every target's selftest
    /// scenarios) on `targets`. An empty selection is an error.
    pub fn new(
        targets: Vec<TargetSpec>,
        cases: &[Arc<Case>],
        kselftest: bool,
        selection: &Selection,
        partition: Option<Partition>,
    ) -> Result<Plan, String> {
        let mut named = 0;
        let mut entries = Vec::new();
        let mut push = |entries: &mut Vec<Entry>, trial: PlannedTrial, target, work| {
            named += 1;
            if selection.selects(&trial.name) {
                entries.push(Entry { trial, target, work });
            }
        };
        for (ti, t) in targets.iter().enumerate() {
            for c in cases.iter().filter(|c| c.runs_on(t.arch.name)) {
                let trial = PlannedTrial {
                    name: crate::runner::name(t.arch.name, &t.kernel_id, c),
                    kind: TrialKind::Case,
                    arch: t.arch.name.to_string(),
                    kernel: t.kernel_id.clone(),
                    case_id: c.id.clone(),
                    case_path: Some(c.file.display().to_string()),
                };
                push(&mut entries, trial, ti, Work::Case(c.clone()));
            }
        }
        if kselftest {
            for (ti, t) in targets.iter().enumerate() {
                let kernel = t.kernel.as_ref().ok_or_else(|| {
                    format!("{}: klpt does not have this kernel's tree to list its selftests", t.label())
                })?;
                let scripts = crate::kselftest::build::scripts_of(kernel).map_err(|e| format!("{}: {e}", t.label()))?;
                for (si, s) in scripts.iter().enumerate() {
                    for (sc, scenario) in s.scenarios.iter().enumerate() {
                        let case_id = s.case_id(scenario);
                        let trial = PlannedTrial {
                            name: format!("{}/{}/{case_id}", t.arch.name, t.kernel_id),
                            kind: TrialKind::Kselftest,
                            arch: t.arch.name.to_string(),
                            kernel: t.kernel_id.clone(),
                            case_id,
                            case_path: None,
                        };
                        push(&mut entries, trial, ti, Work::Kselftest { script: si, scenario: sc });
                    }
                }
            }
        }
        if entries.is_empty() {
            let why = if selection.ignored {
                "klpt has no ignored trials (--ignored)".to_string()
            } else if named == 0 {
                let arches: Vec<&str> = targets.iter().map(|t| t.arch.name).collect();
                format!("none of the cases runs on {} (see their `arches:`)", arches.join(", "))
            } else {
                format!("none of the {named} trial(s) matches {} (see them with --list)", selection.describe())
            };
            return Err(format!("no trial selected: {why}"));
        }
        let mine: Vec<usize> =
            (0..entries.len()).filter(|&i| partition.is_none_or(|p| p.holds(i, &entries[i].trial.name))).collect();
        let filtered_out = named - mine.len();
        Ok(Plan { targets, entries, mine, partition, filtered_out })
    }

    /// Whether target `ti` runs any of this run's trials, and of which kind.
    pub fn needs(&self, ti: usize, kind: TrialKind) -> bool {
        self.mine.iter().any(|&i| self.entries[i].target == ti && self.entries[i].trial.kind == kind)
    }

    pub fn record(&self) -> PlanRecord {
        PlanRecord {
            trials: self.entries.iter().map(|e| e.trial.clone()).collect(),
            partition: self.partition.map(|p| p.to_string()),
            mine: self.mine.iter().map(|&i| self.entries[i].trial.name.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arches_dedupe_and_reject_unknown() {
        let names = |v: &[&str]| {
            arches(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|a| a.iter().map(|a| a.name).collect::<Vec<_>>())
        };
        assert_eq!(names(&["arm64,all"]).unwrap(), ["arm64", "x86_64", "s390x", "ppc64le"]);
        assert_eq!(names(&["x86_64", "amd64"]).unwrap(), ["x86_64"]);
        assert!(names(&["bogus"]).unwrap_err().contains("unknown architecture `bogus`"));
    }

    #[test]
    fn every_filter_word_counts() {
        let s = Selection {
            filters: vec!["alpha".into(), "gamma".into()],
            skip: vec!["gamma/slow".into()],
            ..Default::default()
        };
        assert!(s.selects("x86_64/k/stock/alpha"));
        assert!(s.selects("x86_64/k/stock/gamma"));
        assert!(!s.selects("x86_64/k/stock/beta"));
        assert!(!s.selects("x86_64/k/stock/gamma/slow"));
        let exact = Selection { filters: vec!["a/b".into()], exact: true, ..Default::default() };
        assert!(exact.selects("a/b") && !exact.selects("a/bc"));
        assert!(!Selection { ignored: true, ..Default::default() }.selects("a"));
    }

    #[test]
    fn plan_names_trials_as_a_run_does() {
        let dir = crate::project_root().join("cases/stock");
        let mut only_arm = crate::case::load(&dir.join("basic-enable-disable.yaml")).unwrap();
        only_arm.doc.arches = vec!["arm64".into()];
        let cases =
            vec![Arc::new(crate::case::load(&dir.join("refusal-logged-once.yaml")).unwrap()), Arc::new(only_arm)];
        let spec = |arch, id: &str| TargetSpec { arch, spec: None, kernel_id: id.into(), kernel: None };
        let targets = vec![spec(crate::arch::X86_64, "debian-6.1.0-50-amd64"), spec(crate::arch::ARM64, "src-7.2.13")];
        let plan = Plan::new(targets, &cases, false, &Selection::default(), None).unwrap();
        let names: Vec<&str> = plan.entries.iter().map(|e| e.trial.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "x86_64/debian-6.1.0-50-amd64/stock/refusal-logged-once",
                "arm64/src-7.2.13/stock/refusal-logged-once",
                "arm64/src-7.2.13/stock/basic-enable-disable",
            ]
        );
        assert!(plan.needs(1, TrialKind::Case) && !plan.needs(0, TrialKind::Kselftest));
        let filtered = Selection { filters: vec!["basic".into()], ..Default::default() };
        let targets = vec![spec(crate::arch::X86_64, "k"), spec(crate::arch::ARM64, "k")];
        let plan = Plan::new(targets, &cases, false, &filtered, None).unwrap();
        assert_eq!(plan.mine.len(), 1);
        assert!(!plan.needs(0, TrialKind::Case), "a target with no selected trial is not prepared");
        let none = Selection { filters: vec!["nothing-matches".into()], ..Default::default() };
        let err = Plan::new(vec![spec(crate::arch::X86_64, "k")], &cases, false, &none, None).err().unwrap();
        assert!(err.contains("no trial selected") && err.contains("`nothing-matches`"), "{err}");
    }

    #[test]
    fn shards_hold_every_trial_once() {
        assert!(
            "count:0/3".parse::<Partition>().is_err()
                && "count:4/3".parse::<Partition>().is_err()
                && "slice:1/3".parse::<Partition>().is_err()
        );
        let names: Vec<String> = (0..50).map(|i| format!("x86_64/k/stock/case-{i}")).collect();
        for kind in ["count", "hash"] {
            let shards: Vec<Partition> = (1..=3).map(|k| format!("{kind}:{k}/3").parse().unwrap()).collect();
            assert_eq!(shards[1].to_string(), format!("{kind}:2/3"));
            for (i, n) in names.iter().enumerate() {
                assert_eq!(shards.iter().filter(|p| p.holds(i, n)).count(), 1, "{kind}: {n}");
            }
            // No shard is empty with 50 trials over 3.
            assert!(shards.iter().all(|p| names.iter().enumerate().any(|(i, n)| p.holds(i, n))));
        }
    }
}
