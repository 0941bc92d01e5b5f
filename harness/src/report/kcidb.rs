//! KCIDB reports (the Kernel CI common database, kcidb-io schema v5.3):
//! checkouts, builds and tests built by one pure function from plain trial
//! records, so a report merged from shards equals the unsharded one.
//!
//! The mapping (README, "KCIDB"):
//! - a **checkout** per kernel source per run: the source's identity, the
//!   series applied to it and their `patchset_hash`;
//! - a **build** per (checkout, architecture, config hash);
//! - a **test** per trial, `path` = `klpt.` + the case id with `/` as the
//!   separator (see [`test_path`]);
//! - an expected failure is a `FAIL` plus an **issue** (the case's `xfail`
//!   entry) and an **incident** linking the test to it: KCIDB has no
//!   expected-failure status, and this is how kcidb-io itself carried v4's
//!   waived tests into v5.
//!
//! Every id is `<origin>:` + a hash of what identifies the object (the run
//! id, the source, the arch and config, the trial name), never of an
//! order or a time; objects are sorted by id. Reports of the same trials
//! are therefore byte-identical however the trials were sharded.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The schema version the report declares (kcidb-io's `LATEST` when written).
pub const SCHEMA: (u32, u32) = (5, 3);

/// KCIDB stores at most this much of a log excerpt; klpt keeps the start,
/// where a failure's first line says what went wrong.
const EXCERPT_MAX: usize = 16 * 1024;

/// The run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// KCIDB origin, `[a-z0-9_]+`: `klpt`.
    pub origin: String,
    /// What tells this run apart from the origin's other runs (a CI
    /// pipeline id): part of every object id, so the same trials reported
    /// by two runs stay two sets of objects. Shards of one run must share it.
    pub run_id: String,
}

/// The kernel a trial ran on: what it was built from and how (from
/// `kernel::origin::Origin`: `source`, `series`, `patchset_hash` (Origin's
/// None is `Some("")` here for a source build without series, None for a
/// binary kernel), `config_name`, `config_hash`, `toolchain`'s first line as
/// `compiler`; or [`config_facts`] of the `.config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// klpt's kernel id, as in trial names (`src-7.2.13+v2-replace-set`).
    pub id: String,
    /// The source's identity, stable across runs and arches: Debian's
    /// source package and version (`debian:linux-source-7.2:7.2.13`), or a
    /// hash of a user's tree. Trials with equal `source`, series and git
    /// fields share one checkout.
    pub source: String,
    /// Full 40-digit commit of a git source tree, when it is one.
    pub git_commit_hash: Option<String>,
    /// `https://` URL of that tree's repository, when known.
    pub git_repository_url: Option<String>,
    /// Names of the patch series applied, in order (`v2-replace-set`).
    pub series: Vec<String>,
    /// [`patchset_hash`] of the series' patches: `Some("")` when no patch
    /// was applied, None when unknown (a distribution's binary kernel).
    pub patchset_hash: Option<String>,
    /// What identifies the configuration: a hash of the `.config` (or of
    /// the fragments that make it). Part of the build's id; None: the
    /// kernel id stands for it.
    pub config_hash: Option<String>,
    /// Human-readable name of that configuration
    /// (`tinyconfig + livepatch.config + x86_64.config`, `debian`).
    pub config_name: Option<String>,
    /// The `.config` file, published as the build's `config_url`.
    pub config_path: Option<PathBuf>,
    /// Compiler name and version (`gcc-12 (Debian 12.2.0-14) 12.2.0`).
    pub compiler: Option<String>,
}

/// A trial's verdict (the one results record, `report::results::Verdict`):
/// a failure whose cause is a lost guest arrives here as `Error`.
pub use super::results::Verdict;

impl Verdict {
    /// The KCIDB status, `(status, why)`. KCIDB's statuses describe the
    /// tested code: FAIL "reported the tested code as faulty", ERROR "didn't
    /// complete due to a failure in its code", MISS "didn't run due to a
    /// failure in the test harness", SKIP "not applicable".
    pub fn status(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            // The code is faulty, known to be (an issue says so) or not.
            Verdict::Fail | Verdict::Xfail | Verdict::Xpass => "FAIL",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
            Verdict::Unfinished => "MISS",
        }
    }
}

/// One trial, as the report needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The full trial name, unique in a run:
    /// `x86_64/src-7.2.13+v2-replace-set/hybrid/v2-sets-coexist`.
    pub name: String,
    /// The case id (`hybrid/v2-sets-coexist`): the test's path.
    pub case_id: String,
    /// klpt's arch name (`x86_64`, `arm64`, `s390x`, `ppc64le`).
    pub arch: String,
    pub kernel: Kernel,
    pub verdict: Verdict,
    /// What went wrong (the failure's whole text, or the skip reason).
    pub cause: Option<String>,
    /// For [`Verdict::Xfail`] and [`Verdict::Xpass`]: the `reason` of the
    /// case's xfail entry alone (it names the issue, so it must not carry
    /// this run's failure text).
    pub xfail_reason: Option<String>,
    /// Host wall seconds of the whole trial.
    pub duration_secs: f64,
    /// When the trial started, seconds since the Unix epoch (UTC).
    pub start_unix: Option<f64>,
    /// The log that gives the overview (the guest console): `log_url`.
    pub log: Option<PathBuf>,
    /// Other artifacts (QEMU's log, collected sysfs and dmesg): `output_files`.
    pub artifacts: Vec<PathBuf>,
    /// The `--artifacts` directory of the run or shard that ran the trial
    /// (absolute): relative `log` and `artifacts` paths are below it.
    pub artifacts_root: PathBuf,
    /// Where that shard published `artifacts_root` (a CI job's artifact
    /// URL): files below the root get URLs below it; without it, and for
    /// files elsewhere, `file://` URLs.
    pub artifacts_url: Option<String>,
}

/// A trial's files in its artifacts directory (`TrialResult::artifacts`),
/// for [`Trial::log`] and [`Trial::artifacts`]: the guest console
/// (`console.log`) as the log, every other file (sorted, `retry/` too) as
/// artifacts. Reads the directory (the report itself stays pure); a missing
/// directory has no files.
pub fn trial_files(dir: &Path) -> (Option<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(e.path()),
                Ok(t) if t.is_file() => files.push(e.path()),
                _ => {}
            }
        }
    }
    files.sort();
    let log = files.iter().position(|p| *p == dir.join("console.log")).map(|i| files.remove(i));
    (log, files)
}

/// The KCIDB input of a run's (or a merge's) results. `run_id`: None takes
/// a hash of the plan's trial names, the same for a run and its shards.
/// `artifacts_url`: where the run's `--artifacts` directory is published
/// (unsharded runs only; a merge's trials keep `file://` URLs).
pub fn from_results(
    run: &crate::report::results::RunResults,
    run_id: Option<String>,
    artifacts_url: Option<String>,
) -> (Run, Vec<Trial>) {
    use crate::report::results::Verdict as V;
    let run_id = run_id.unwrap_or_else(|| {
        let mut h = Sha256::new();
        for t in &run.plan.trials {
            h.update(t.name.as_bytes());
            h.update(b"\n");
        }
        format!("plan-{}", hex(&h.finalize()[..8]))
    });
    let root = run.artifacts.as_ref().map(PathBuf::from);
    let trials = run
        .results
        .iter()
        .map(|r| {
            let record = run.kernels.get(&format!("{}/{}", r.arch, r.kernel));
            let kernel = match record {
                Some(k) => {
                    let o = &k.origin;
                    // Built from source by klpt: no series is an empty patchset; a
                    // binary or foreign build's patches are unknown.
                    let built = o.source.starts_with("debian:") || o.source.starts_with("dir:");
                    let config = std::fs::read_to_string(&k.config).ok();
                    let (hash, compiler) =
                        config.as_deref().map(config_facts).map(|(h, c)| (Some(h), c)).unwrap_or((None, None));
                    Kernel {
                        id: r.kernel.clone(),
                        source: o.source.clone(),
                        git_commit_hash: None,
                        git_repository_url: None,
                        series: o.series.clone(),
                        patchset_hash: o.patchset_hash.clone().or_else(|| built.then(String::new)),
                        config_hash: o.config_hash.clone().or(hash),
                        config_name: o.config_name.clone(),
                        config_path: config.is_some().then(|| PathBuf::from(&k.config)),
                        compiler: compiler
                            .or_else(|| o.toolchain.as_ref().and_then(|t| t.lines().next().map(String::from))),
                    }
                }
                // A run cancelled before its kernel was prepared.
                None => Kernel {
                    id: r.kernel.clone(),
                    source: format!("klpt-kernel:{}", r.kernel),
                    git_commit_hash: None,
                    git_repository_url: None,
                    series: vec![],
                    patchset_hash: None,
                    config_hash: None,
                    config_name: None,
                    config_path: None,
                    compiler: None,
                },
            };
            let (log, artifacts) = r.artifacts.as_deref().map(|d| trial_files(Path::new(d))).unwrap_or_default();
            Trial {
                name: r.name.clone(),
                case_id: r.case_id.clone(),
                arch: r.arch.clone(),
                kernel,
                verdict: match r.verdict {
                    V::Fail if r.cause == Some(crate::report::Cause::GuestLost) => V::Error,
                    v => v,
                },
                cause: (!r.message.is_empty()).then(|| r.message.clone()),
                xfail_reason: r.xfail_reason.clone(),
                duration_secs: r.secs,
                start_unix: r.start_unix,
                log,
                artifacts,
                artifacts_root: root.clone().unwrap_or_else(|| PathBuf::from("/")),
                artifacts_url: artifacts_url.clone().filter(|_| root.is_some()),
            }
        })
        .collect();
    (Run { origin: "klpt".into(), run_id }, trials)
}

/// A report that cannot be written: which trial and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("KCIDB report: {0}")]
pub struct InputError(String);

/// The KCIDB patchset hash of patches in order of application: sha256 over
/// the newline-terminated hex sha256 of each patch, i.e.
/// `sha256sum *.patch | cut -c-64 | sha256sum | cut -c-64`; empty for no
/// patches (both as the schema defines them).
pub fn patchset_hash<P: AsRef<[u8]>>(patches: &[P]) -> String {
    if patches.is_empty() {
        return String::new();
    }
    let mut outer = Sha256::new();
    for p in patches {
        outer.update(format!("{}\n", hex(&Sha256::digest(p.as_ref()))));
    }
    hex(&outer.finalize())
}

/// What a kernel's `.config` says about its build: a hash identifying the
/// configuration ([`Kernel::config_hash`], 20 hex digits of sha256 over the
/// file) and the compiler that built it, from `CONFIG_CC_VERSION_TEXT`
/// ([`Kernel::compiler`]; None for a config that predates it).
pub fn config_facts(config: &str) -> (String, Option<String>) {
    let compiler = config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))
        .map(|v| v.trim().trim_matches('"').replace("\\\"", "\""));
    (hex(&Sha256::digest(config.as_bytes())[..10]), compiler.filter(|c| !c.is_empty()))
}

/// The test's dotted path: `klpt.` + the case id's `/`-separated parts, each
/// with what KCIDB does not allow in a part (anything but `[A-Za-z0-9_-]`,
/// including the `.` that would split it) replaced by `_`.
/// `stock/basic-enable-disable` → `klpt.stock.basic-enable-disable`.
pub fn test_path(case_id: &str) -> String {
    let mut path = String::from("klpt");
    for part in case_id.split('/') {
        path.push('.');
        if part.is_empty() {
            path.push('_');
        }
        path.extend(part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }));
    }
    path
}

/// The report: a KCIDB JSON document (serde_json's maps are sorted, so
/// equal inputs print equal bytes).
pub fn report(run: &Run, trials: &[Trial]) -> Result<Value, InputError> {
    check_run(run)?;
    let mut checkouts: BTreeMap<String, Value> = BTreeMap::new();
    let mut builds: BTreeMap<String, Value> = BTreeMap::new();
    let mut tests: BTreeMap<String, Value> = BTreeMap::new();
    let mut issues: BTreeMap<String, Value> = BTreeMap::new();
    let mut incidents: BTreeMap<String, Value> = BTreeMap::new();
    let mut names = BTreeSet::new();
    // Sorted by name, so the object that first names a checkout or build is
    // the same whatever order the shards came in.
    let mut sorted: Vec<&Trial> = trials.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for t in sorted {
        if !names.insert(&t.name) {
            return Err(InputError(format!("trial {} appears twice (overlapping shards?)", t.name)));
        }
        check_trial(t)?;
        let origin = &run.origin;
        let k = &t.kernel;
        let checkout_id = format!(
            "{origin}:{}",
            hash(&[
                &run.run_id,
                &k.source,
                opt(&k.git_commit_hash),
                opt(&k.git_repository_url),
                &k.series.join("\n"),
                opt(&k.patchset_hash)
            ])
        );
        let start = t.start_unix.and_then(rfc3339);
        let checkout = checkouts.entry(checkout_id.clone()).or_insert_with(|| checkout(run, &checkout_id, k));
        // The checkout started no later than its first trial.
        if let Some(s) = &start {
            let earlier = checkout.get("start_time").and_then(Value::as_str).is_none_or(|c| s.as_str() < c);
            if earlier {
                checkout["start_time"] = json!(s);
            }
        }
        let config = k.config_hash.clone().unwrap_or_else(|| format!("kernel:{}", k.id));
        let build_id = format!("{origin}:{}", hash(&[&checkout_id, &t.arch, &config]));
        builds.entry(build_id.clone()).or_insert_with(|| build(run, &build_id, &checkout_id, t));
        let test_id = format!("{origin}:{}", hash(&[&build_id, &t.name]));
        tests.insert(test_id.clone(), test(run, &test_id, &build_id, t, start));
        if t.verdict == Verdict::Xfail {
            let reason = t.xfail_reason.as_deref().unwrap_or("expected failure");
            let issue_id = format!("{origin}:xfail:{}:{}", t.case_id, hash(&[reason]));
            issues.entry(issue_id.clone()).or_insert_with(|| {
                json!({
                    "id": issue_id, "origin": origin, "version": 1,
                    "comment": clean(&format!("{}: expected to fail: {reason}", t.case_id)),
                    "misc": {"case": t.case_id, "xfail_reason": reason},
                })
            });
            let incident_id = format!("{origin}:{}", hash(&[&issue_id, &test_id]));
            let mut incident = json!({
                "id": incident_id, "origin": origin, "issue_id": issue_id, "issue_version": 1,
                "test_id": test_id, "build_id": build_id, "present": true,
            });
            if let Some(line) = t.cause.as_deref().and_then(|c| c.lines().next()) {
                incident["comment"] = json!(clean(line));
            }
            incidents.insert(incident_id, incident);
        }
    }
    let list = |m: BTreeMap<String, Value>| Value::Array(m.into_values().collect());
    let mut doc = json!({
        "version": {"major": SCHEMA.0, "minor": SCHEMA.1},
        "checkouts": list(checkouts),
        "builds": list(builds),
        "tests": list(tests),
    });
    if !issues.is_empty() {
        doc["issues"] = list(issues);
        doc["incidents"] = list(incidents);
    }
    Ok(doc)
}

/// [`report`] as the text of a file.
pub fn render(run: &Run, trials: &[Trial]) -> Result<String, InputError> {
    let doc = report(run, trials)?;
    Ok(serde_json::to_string_pretty(&doc).expect("a JSON value always serialises") + "\n")
}

fn checkout(run: &Run, id: &str, k: &Kernel) -> Value {
    let mut c = json!({
        "id": id, "origin": run.origin, "valid": true,
        "comment": clean(&if k.series.is_empty() { k.source.clone() } else { format!("{} + {}", k.source, k.series.join(" + ")) }),
        "misc": {"run_id": run.run_id, "source": k.source, "series": k.series},
    });
    if let Some(h) = &k.git_commit_hash {
        c["git_commit_hash"] = json!(h);
    }
    if let Some(u) = &k.git_repository_url {
        c["git_repository_url"] = json!(u);
    }
    if let Some(h) = &k.patchset_hash {
        c["patchset_hash"] = json!(h);
    }
    c
}

fn build(run: &Run, id: &str, checkout_id: &str, t: &Trial) -> Value {
    let k = &t.kernel;
    let mut b = json!({
        "id": id, "origin": run.origin, "checkout_id": checkout_id,
        "architecture": t.arch,
        // Only kernels that were built (or fetched) and booted have trials.
        "status": "PASS",
        "comment": clean(&k.id),
        "misc": {"kernel": k.id},
    });
    if let Some(n) = &k.config_name {
        b["config_name"] = json!(clean(n));
    }
    if let Some(h) = &k.config_hash {
        b["misc"]["config_hash"] = json!(h);
    }
    if let Some(c) = &k.compiler {
        b["compiler"] = json!(clean(c));
    }
    if let Some(p) = &k.config_path {
        b["config_url"] = json!(file_url(p));
    }
    b
}

fn test(run: &Run, id: &str, build_id: &str, t: &Trial, start: Option<String>) -> Value {
    let mut misc = json!({"trial": t.name, "kernel": t.kernel.id, "klpt_verdict": t.verdict.as_str()});
    if let Some(r) = &t.xfail_reason {
        misc["xfail_reason"] = json!(clean(r));
    }
    let mut v = json!({
        "id": id, "origin": run.origin, "build_id": build_id,
        "path": test_path(&t.case_id), "status": t.verdict.status(),
        "comment": clean(&t.name),
        "environment": {"comment": format!("QEMU guest ({})", t.arch), "misc": {"arch": t.arch}},
        "misc": misc,
    });
    if t.duration_secs.is_finite() && t.duration_secs >= 0.0 {
        v["duration"] = json!((t.duration_secs * 1000.0).round() / 1000.0);
    }
    if let Some(s) = start {
        v["start_time"] = json!(s);
    }
    if let Some(c) = t.cause.as_deref().filter(|c| !c.is_empty()) {
        v["log_excerpt"] = json!(excerpt(c));
    }
    let files = resources(t);
    let mut files = files.into_iter();
    if t.log.is_some() {
        if let Some(log) = files.next() {
            v["log_url"] = log["url"].clone();
        }
    }
    let rest: Vec<Value> = files.collect();
    if !rest.is_empty() {
        v["output_files"] = Value::Array(rest);
    }
    v
}

/// Named resources for a trial's files: each named by its path below the
/// directory the files share, `/` made `_` (names may not hold a `/`), so
/// `retry/console.log` stays apart from `console.log`.
fn resources(t: &Trial) -> Vec<Value> {
    let abs: Vec<PathBuf> = t.log.iter().chain(&t.artifacts).map(|p| t.artifacts_root.join(p)).collect();
    let mut common: Option<PathBuf> = None;
    for p in &abs {
        let parent = p.parent().unwrap_or(Path::new("/")).to_path_buf();
        common = Some(match common {
            None => parent,
            Some(c) => c.components().zip(parent.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect(),
        });
    }
    let common = common.unwrap_or_default();
    abs.iter()
        .map(|p| {
            let rel = p.strip_prefix(&common).unwrap_or(p);
            let name: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            let url = match (&t.artifacts_url, p.strip_prefix(&t.artifacts_root)) {
                (Some(base), Ok(rel)) => {
                    format!("{}/{}", base.trim_end_matches('/'), url_encode(&rel.to_string_lossy()))
                }
                _ => file_url(p),
            };
            json!({"name": clean(&name.join("_")), "url": url})
        })
        .collect()
}

fn file_url(abs: &Path) -> String {
    format!("file://{}", url_encode(&abs.to_string_lossy()))
}

/// Percent-encodes all but RFC 3986's unreserved characters and `/`.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_run(run: &Run) -> Result<(), InputError> {
    if run.origin.is_empty() || !run.origin.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(InputError(format!("origin {:?} must be lower-case letters, digits and _", run.origin)));
    }
    if run.run_id.is_empty() || run.run_id.contains('\0') {
        return Err(InputError("the run id must be non-empty (a CI pipeline id, say)".into()));
    }
    Ok(())
}

fn check_trial(t: &Trial) -> Result<(), InputError> {
    let bad = |what: String| Err(InputError(format!("trial {}: {what}", t.name)));
    let k = &t.kernel;
    if t.name.contains('\0') || t.case_id.is_empty() {
        return bad("empty case id or a NUL in the name".into());
    }
    if !t.arch.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return bad(format!("arch {:?} is not a KCIDB architecture ([a-z0-9_]*)", t.arch));
    }
    if k.source.is_empty() || k.id.is_empty() {
        return bad("empty kernel id or source identity".into());
    }
    if let Some(h) = &k.git_commit_hash {
        if h.len() != 40 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return bad(format!("kernel {}: git commit {h:?} is not 40 lower-case hex digits", k.id));
        }
    }
    if let Some(h) = &k.patchset_hash {
        if !h.is_empty() && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))) {
            return bad(format!("kernel {}: patchset hash {h:?} is neither empty nor 64 lower-case hex digits", k.id));
        }
    }
    if !t.artifacts_root.is_absolute() {
        return bad(format!(
            "artifacts dir {} must be absolute (its files become file:// URLs)",
            t.artifacts_root.display()
        ));
    }
    if let Some(u) = &t.artifacts_url {
        if !u.contains("://") || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad(format!("artifacts URL {u:?} is not an absolute URL"));
        }
    }
    if let Some(p) = k.config_path.as_ref().filter(|p| !p.is_absolute()) {
        return bad(format!("kernel {}: config path {} must be absolute", k.id, p.display()));
    }
    if let Some(u) = &k.git_repository_url {
        if !u.starts_with("https://") {
            return bad(format!("kernel {}: repository URL {u:?} must be https:// (KCIDB's rule)", k.id));
        }
    }
    Ok(())
}

/// Text KCIDB stores: no NUL characters.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

fn excerpt(s: &str) -> String {
    let s = clean(s);
    if s.len() <= EXCERPT_MAX {
        return s;
    }
    let mut end = EXCERPT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... cut at {EXCERPT_MAX} bytes]", &s[..end])
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("\0none")
}

/// 20 hex digits of sha256 over length-prefixed parts: ids stay apart when
/// parts are split differently.
fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex(&h.finalize()[..10])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 UTC with milliseconds; None for a time before 1970 or not a number.
fn rfc3339(unix: f64) -> Option<String> {
    if !unix.is_finite() || unix < 0.0 {
        return None;
    }
    let ms = (unix * 1000.0).round() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    Some(format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}+00:00"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Run {
        Run { origin: "klpt".into(), run_id: "pipeline-42".into() }
    }

    fn kernel(series: &[&str]) -> Kernel {
        Kernel {
            id: if series.is_empty() { "src-7.2.13".into() } else { format!("src-7.2.13+{}", series.join("+")) },
            source: "debian:linux-source-7.2:7.2.13".into(),
            git_commit_hash: None,
            git_repository_url: None,
            series: series.iter().map(|s| s.to_string()).collect(),
            patchset_hash: Some(if series.is_empty() {
                String::new()
            } else {
                patchset_hash(&series.iter().map(|s| s.as_bytes()).collect::<Vec<_>>())
            }),
            config_hash: Some("c0ffee".into()),
            config_name: Some("tinyconfig + livepatch.config + x86_64.config".into()),
            config_path: Some("/cache/kernels/x/.config".into()),
            compiler: Some("gcc-12 (Debian 12.2.0-14) 12.2.0".into()),
        }
    }

    fn trial(arch: &str, series: &[&str], case: &str, verdict: Verdict) -> Trial {
        let k = kernel(series);
        let name = format!("{arch}/{}/{case}", k.id);
        let dir = PathBuf::from(format!("{arch}/{}/{case}", k.id));
        Trial {
            name,
            case_id: case.into(),
            arch: arch.into(),
            kernel: k,
            verdict,
            cause: (verdict != Verdict::Pass)
                .then(|| "kernel verdict: step 3 (line 20) `assert`: enabled is 0\nartifacts: x".into()),
            xfail_reason: matches!(verdict, Verdict::Xfail | Verdict::Xpass).then(|| "v1's replaceable default".into()),
            duration_secs: 2.4567,
            start_unix: Some(1_795_900_000.25),
            log: Some(dir.join("console.log")),
            artifacts: vec![dir.join("console.qemu.log"), dir.join("retry/console.log")],
            artifacts_root: "/ci/artifacts".into(),
            artifacts_url: None,
        }
    }

    fn suite() -> Vec<Trial> {
        vec![
            trial("x86_64", &[], "stock/basic-enable-disable", Verdict::Pass),
            trial("x86_64", &["v2-replace-set"], "hybrid/v2-sets-coexist", Verdict::Fail),
            trial("x86_64", &["v1-replaceable"], "stock/atomic-replace", Verdict::Xfail),
            trial("x86_64", &["v1-replaceable"], "stock/state-data", Verdict::Xfail),
            trial("arm64", &[], "stock/basic-enable-disable", Verdict::Skip),
            trial("arm64", &[], "stock/atomic-replace", Verdict::Xpass),
            trial("s390x", &[], "stock/basic-enable-disable", Verdict::Error),
            trial("s390x", &[], "stock/atomic-replace", Verdict::Unfinished),
            debian_trial(),
        ]
    }

    /// Debian's binary kernel: patches and config hash unknown.
    fn debian_trial() -> Trial {
        let mut t = trial("x86_64", &[], "stock/basic-enable-disable", Verdict::Pass);
        t.kernel = Kernel {
            id: "debian-6.1.0-50-amd64".into(),
            source: "debian-package:linux-image-6.1.0-50-amd64:6.1.158-1".into(),
            patchset_hash: None,
            config_hash: None,
            config_name: Some("debian".into()),
            config_path: None,
            compiler: None,
            ..t.kernel
        };
        t.name = "x86_64/debian-6.1.0-50-amd64/stock/basic-enable-disable".into();
        t
    }

    #[test]
    fn patchset_hash_is_kcidbs() {
        // `printf 'a\n' >p1.patch; printf 'b\n' >p2.patch;
        //  sha256sum p1.patch p2.patch | cut -c-64 | sha256sum | cut -c-64`
        assert_eq!(patchset_hash(&["a\n", "b\n"]), "7b77b1b66500ed66bdb3e5f10e78f55ab6d4b404fa676ec1bee2ab5b31346a80");
        assert_eq!(patchset_hash::<&str>(&[]), "");
    }

    #[test]
    fn config_facts_read_the_compiler() {
        let (h, cc) =
            config_facts("CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_LIVEPATCH=y\n");
        assert_eq!(cc.as_deref(), Some("gcc (Debian 12.2.0-14+deb12u1) 12.2.0"));
        assert_eq!(h.len(), 20);
        assert_ne!(h, config_facts("CONFIG_LIVEPATCH=y\n").0);
        assert_eq!(config_facts("CONFIG_LIVEPATCH=y\n").1, None);
    }

    #[test]
    fn paths_are_dotted_and_sanitised() {
        assert_eq!(test_path("stock/basic-enable-disable"), "klpt.stock.basic-enable-disable");
        assert_eq!(
            test_path("kselftest/test-livepatch.sh/basic function"),
            "klpt.kselftest.test-livepatch_sh.basic_function"
        );
        assert_eq!(test_path("a//b"), "klpt.a._.b");
        let re = regex::Regex::new("^([a-zA-Z0-9_-]+(\\.[a-zA-Z0-9_-]+)*)?$").unwrap();
        assert!(["x/y.z", "ü/ß", "/", "a b/c"].iter().all(|c| re.is_match(&test_path(c))));
    }

    #[test]
    fn objects_and_statuses() {
        let doc = report(&run(), &suite()).unwrap();
        assert_eq!(doc["version"], json!({"major": 5, "minor": 3}));
        // Four kernel sources; six (source, arch) builds; nine tests.
        assert_eq!(doc["checkouts"].as_array().unwrap().len(), 4);
        assert_eq!(doc["builds"].as_array().unwrap().len(), 6);
        let tests = doc["tests"].as_array().unwrap();
        let status = |name: &str| {
            tests
                .iter()
                .find(|t| t["misc"]["trial"].as_str().unwrap().ends_with(name))
                .map(|t| t["status"].as_str().unwrap().to_string())
        };
        assert_eq!(status("x86_64/src-7.2.13/stock/basic-enable-disable").as_deref(), Some("PASS"));
        assert_eq!(status("v2-replace-set/hybrid/v2-sets-coexist").as_deref(), Some("FAIL"));
        assert_eq!(status("v1-replaceable/stock/atomic-replace").as_deref(), Some("FAIL"));
        assert_eq!(status("arm64/src-7.2.13/stock/basic-enable-disable").as_deref(), Some("SKIP"));
        assert_eq!(status("arm64/src-7.2.13/stock/atomic-replace").as_deref(), Some("FAIL"));
        assert_eq!(status("s390x/src-7.2.13/stock/basic-enable-disable").as_deref(), Some("ERROR"));
        assert_eq!(status("s390x/src-7.2.13/stock/atomic-replace").as_deref(), Some("MISS"));
        // Each xfail: one issue per case's xfail entry, one incident per test.
        assert_eq!(doc["issues"].as_array().unwrap().len(), 2);
        let incidents = doc["incidents"].as_array().unwrap();
        assert_eq!(incidents.len(), 2);
        assert!(incidents
            .iter()
            .all(|i| tests.iter().any(|t| t["id"] == i["test_id"] && t["misc"]["klpt_verdict"] == "xfail")));
        // Every test's build and every build's checkout exist.
        let ids = |k: &str| doc[k].as_array().unwrap().iter().map(|o| o["id"].clone()).collect::<Vec<_>>();
        assert!(tests.iter().all(|t| ids("builds").contains(&t["build_id"])));
        assert!(doc["builds"].as_array().unwrap().iter().all(|b| ids("checkouts").contains(&b["checkout_id"])));
        let debian = tests.iter().find(|t| t["misc"]["kernel"] == "debian-6.1.0-50-amd64").unwrap();
        let build = doc["builds"].as_array().unwrap().iter().find(|b| b["id"] == debian["build_id"]).unwrap();
        assert!(build.get("config_url").is_none() && build.get("compiler").is_none());
        let checkout = doc["checkouts"].as_array().unwrap().iter().find(|c| c["id"] == build["checkout_id"]).unwrap();
        assert!(checkout.get("patchset_hash").is_none(), "unknown is not \"no patches\"");
        let t = &tests.iter().find(|t| t["status"] == "PASS" && t["misc"]["kernel"] == "src-7.2.13").unwrap();
        assert_eq!(t["path"], "klpt.stock.basic-enable-disable");
        assert_eq!(t["environment"]["misc"]["arch"], "x86_64");
        assert_eq!(t["start_time"], "2026-11-28T21:06:40.250+00:00");
        assert_eq!(t["duration"], json!(2.457));
        assert_eq!(t["log_url"], "file:///ci/artifacts/x86_64/src-7.2.13/stock/basic-enable-disable/console.log");
        let names: Vec<&str> =
            t["output_files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["console.qemu.log", "retry_console.log"]);
    }

    #[test]
    fn sharded_and_merged_equals_unsharded() {
        let all = suite();
        let whole = render(&run(), &all).unwrap();
        let mut shuffled: Vec<Trial> = all.iter().skip(3).chain(all.iter().take(3)).cloned().collect();
        shuffled.reverse();
        assert_eq!(render(&run(), &shuffled).unwrap(), whole);
        // Another run: other ids for the same trials.
        let other = Run { run_id: "pipeline-43".into(), ..run() };
        let a = report(&run(), &all).unwrap();
        let b = report(&other, &all).unwrap();
        assert_ne!(a["tests"][0]["id"], b["tests"][0]["id"]);
        assert_ne!(a["checkouts"][0]["id"], b["checkouts"][0]["id"]);
    }

    #[test]
    fn checkout_identity_and_earliest_start() {
        let mut a = trial("x86_64", &["v2-replace-set"], "stock/a", Verdict::Pass);
        let mut b = trial("arm64", &["v2-replace-set"], "stock/a", Verdict::Pass);
        a.start_unix = Some(100.0);
        b.start_unix = Some(50.0);
        let doc = report(&run(), &[a, b]).unwrap();
        let c = &doc["checkouts"].as_array().unwrap();
        assert_eq!(c.len(), 1, "one source, two arches: one checkout");
        assert_eq!(c[0]["start_time"], "1970-01-01T00:00:50.000+00:00");
        assert_eq!(c[0]["patchset_hash"], json!(patchset_hash(&["v2-replace-set"])));
        assert_eq!(doc["builds"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn artifacts_published_under_a_url() {
        let mut t = trial("x86_64", &[], "stock/with space", Verdict::Pass);
        t.artifacts_url = Some("https://ci.example/jobs/7/artifacts/".into());
        t.log = Some("x86_64/src-7.2.13/stock/with space/console.log".into());
        t.artifacts = vec!["/elsewhere/dmesg".into()];
        let doc = report(&run(), &[t]).unwrap();
        let t = &doc["tests"][0];
        assert_eq!(
            t["log_url"],
            "https://ci.example/jobs/7/artifacts/x86_64/src-7.2.13/stock/with%20space/console.log"
        );
        assert_eq!(t["output_files"][0]["url"], "file:///elsewhere/dmesg");
        assert_eq!(doc["builds"][0]["config_url"], "file:///cache/kernels/x/.config");
    }

    #[test]
    fn bad_input_is_refused_with_the_trial_named() {
        let mut t = trial("x86_64", &[], "stock/a", Verdict::Pass);
        t.kernel.git_commit_hash = Some("abc".into());
        let e = report(&run(), &[t.clone()]).unwrap_err().to_string();
        assert!(e.contains("x86_64/src-7.2.13/stock/a") && e.contains("40 lower-case hex"), "{e}");
        t.kernel.git_commit_hash = None;
        assert!(report(&run(), &[t.clone(), t.clone()]).unwrap_err().to_string().contains("appears twice"));
        assert!(report(&Run { origin: "KLPT".into(), ..run() }, &[]).is_err());
        assert!(report(&Run { run_id: String::new(), ..run() }, &[]).is_err());
        let mut t2 = t.clone();
        t2.arch = "x86-64".into();
        assert!(report(&run(), &[t2]).is_err());
        let mut t3 = t.clone();
        t3.artifacts_root = "klpt-artifacts".into();
        assert!(report(&run(), &[t3]).unwrap_err().to_string().contains("must be absolute"));
    }

    #[test]
    fn trial_files_put_the_console_first() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("retry")).unwrap();
        for f in ["console.log", "console.qemu.log", "retry/console.log"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        let (log, rest) = trial_files(d.path());
        assert_eq!(log, Some(d.path().join("console.log")));
        assert_eq!(rest, [d.path().join("console.qemu.log"), d.path().join("retry/console.log")]);
        assert_eq!(trial_files(&d.path().join("absent")), (None, vec![]));
    }

    #[test]
    fn long_causes_are_cut_at_a_char_boundary() {
        let mut t = trial("x86_64", &[], "stock/a", Verdict::Fail);
        t.cause = Some("é".repeat(EXCERPT_MAX));
        let doc = report(&run(), &[t]).unwrap();
        let e = doc["tests"][0]["log_excerpt"].as_str().unwrap();
        assert!(e.len() < EXCERPT_MAX + 40 && e.ends_with("bytes]"));
    }

    /// The sample report CI validates with kcidb-io (`ci/validate_reports.py
    /// --kcidb harness/tests/data/kcidb-sample.json`): this test keeps it the
    /// builder's current output. `KLPT_BLESS=1` rewrites it.
    #[test]
    fn sample_report_is_current() {
        // Shards publish their artifacts in different places.
        let trials: Vec<Trial> = suite()
            .into_iter()
            .enumerate()
            .map(|(i, t)| Trial {
                artifacts_url: Some(format!("https://ci.example/jobs/{}/artifacts/raw/artifacts", 7 + i % 3)),
                ..t
            })
            .collect();
        let text = render(&run(), &trials).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kcidb-sample.json");
        if std::env::var_os("KLPT_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == text,
            "{} is not the builder's output: rerun with KLPT_BLESS=1 and validate it",
            path.display()
        );
    }
}
