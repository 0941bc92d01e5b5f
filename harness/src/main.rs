//! The `klpt` command line.

use clap::{Args, Parser, Subcommand};
use klpt::case::{self, Case};
use klpt::runner::{self, AccelChoice, Options, Target};
use klpt::vm::Arch;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "klpt", version, about = "QEMU-driven integration tests for Linux kernel livepatching")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct KernelArgs {
    /// Architecture(s): x86_64, arm64, s390x, ppc64le or `all` (repeatable).
    #[arg(long = "arch", default_value = "x86_64")]
    arches: Vec<String>,
    /// Kernel(s) under test (repeatable): `debian` (Debian's current kernel, the
    /// default), `source` (built from Debian's kernel source), `source:SERIES`
    /// (with a patch series applied), or a kernel build directory.
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run cases (default: cases/stock) in fresh guests.
    Run {
        /// Case files or directories; other words filter trial names, as with `cargo test`.
        words: Vec<String>,
        #[command(flatten)]
        k: KernelArgs,
        /// Write KTAP (kernel selftest format) here.
        #[arg(long)]
        ktap: Option<PathBuf>,
        /// Write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Where console logs and failure artifacts go.
        #[arg(long, default_value = "klpt-artifacts")]
        artifacts: PathBuf,
        /// Leave a failed case's guest running for inspection.
        #[arg(long)]
        keep_failed: bool,
        /// Also run the kernel tree's livepatch selftests (as `klpt selftests`
        /// does, one more guest per target), their scenarios as trials next
        /// to the cases' and in the same reports.
        #[arg(long)]
        kselftest: bool,
        #[command(flatten)]
        t: TestArgs,
    },
    /// Validate case files without booting anything.
    Check { paths: Vec<PathBuf> },
    /// Print the C source klpt generates for a case's modules.
    Gen {
        case: PathBuf,
        #[command(flatten)]
        k: KernelArgs,
    },
    /// Boot a case's kernel, run its steps up to STEP, and open a shell in the guest.
    Shell {
        case: PathBuf,
        /// Last step to run: its 1-based number or its `name:`; default: none.
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        k: KernelArgs,
    },
    /// Build kernels from source.
    Kernel {
        #[command(subcommand)]
        cmd: KernelCmd,
    },
    /// Run cases on several kernels and print a case × kernel table (also as JSON).
    Matrix {
        /// Case files or directories (default: cases/stock and cases/hybrid).
        paths: Vec<PathBuf>,
        /// Architectures (default x86_64), or `all`.
        #[arg(long = "arch", default_value = "x86_64")]
        arches: Vec<String>,
        /// Kernels (default: stock source, and source with each reference series).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Where to write the JSON table.
        #[arg(long, default_value = "klpt-matrix.json")]
        json: PathBuf,
        #[arg(long, default_value = "klpt-artifacts")]
        artifacts: PathBuf,
        #[arg(long)]
        test_threads: Option<usize>,
    },
    /// Build the kernel tree's livepatch selftests (tools/testing/selftests/livepatch)
    /// and run them in klpt's guest, each scenario a trial.
    Selftests {
        /// Filters on trial names, as with `cargo test`
        /// (e.g. `kselftest/test-callbacks/`).
        filters: Vec<String>,
        #[command(flatten)]
        k: KernelArgs,
        /// Write KTAP (kernel selftest format) here.
        #[arg(long)]
        ktap: Option<PathBuf>,
        /// Write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Where consoles and script transcripts go.
        #[arg(long, default_value = "klpt-artifacts")]
        artifacts: PathBuf,
        /// Seconds a scenario may run without a verdict before it counts as hung.
        #[arg(long, default_value = "240")]
        scenario_timeout: u64,
        #[command(flatten)]
        t: TestArgs,
    },
    /// Random patches and operation sequences, run in guests and compared
    /// with the reference model after every operation.
    Explore {
        #[command(flatten)]
        k: KernelArgs,
        /// The same seed on the same kernel replays the same sequences.
        #[arg(long, default_value = "1")]
        seed: u64,
        /// Budget: operations in all.
        #[arg(long, default_value = "200")]
        ops: usize,
        /// Budget: start no guest after this many seconds.
        #[arg(long)]
        time: Option<u64>,
        #[arg(long, default_value = "40")]
        ops_per_guest: usize,
        /// Patches in the random universe.
        #[arg(long, default_value = "5")]
        patches: usize,
        #[arg(long, default_value = "klpt-artifacts")]
        artifacts: PathBuf,
        /// Write the generated cases and the model's coverage; boot nothing.
        #[arg(long)]
        dry_run: bool,
        /// Fresh guests a divergence may use to shrink its case (0: none).
        #[arg(long, default_value = "12")]
        shrink_runs: usize,
    },
    /// Measure boot and case times against bare QEMU, and print the ratios.
    Bench {
        /// Cases to time (default: cases/stock; with --versus-kselftest, cases/kselftest).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        k: KernelArgs,
        /// Boots of each kind (bare, klpt) to average, after one untimed warm-up boot.
        #[arg(long, default_value = "3")]
        boots: u32,
        /// Also time a cold kernel build from source and a one-file rebuild.
        #[arg(long)]
        kernel_builds: bool,
        /// Instead: run every case twice, with steps as several guest
        /// commands (as before) and as one, and compare the step costs.
        #[arg(long, conflicts_with_all = ["kernel_builds", "boots"])]
        steps: bool,
        /// Instead: run the kernel tree's livepatch selftests and klpt's cases
        /// (default: cases/kselftest) on the same kernel build, one guest at
        /// a time, and compare their wall time.
        #[arg(long, conflicts_with_all = ["kernel_builds", "boots", "steps"])]
        versus_kselftest: bool,
    },
}

#[derive(Subcommand)]
enum KernelCmd {
    /// Build a minimal livepatch kernel (tinyconfig + kernel-configs/) out of tree, cached.
    Build {
        /// Kernel source tree (never modified); default: Debian's linux-source.
        #[arg(long)]
        src: Option<PathBuf>,
        /// Architecture(s), or `all`.
        #[arg(long = "arch", default_value = "x86_64")]
        arches: Vec<String>,
        /// An mbox or a directory of patches to apply to a copy of the source (repeatable, in order).
        #[arg(long)]
        series: Vec<PathBuf>,
    },
}

/// libtest's options, for filtering and listing as Rust users expect.
#[derive(Args)]
struct TestArgs {
    /// List trials instead of running them.
    #[arg(long)]
    list: bool,
    /// Run only ignored trials.
    #[arg(long)]
    ignored: bool,
    #[arg(long)]
    include_ignored: bool,
    /// Filters match trial names exactly.
    #[arg(long)]
    exact: bool,
    /// Skip trials whose names contain this (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// Guests run at once (default: one per core, as many as memory allows).
    #[arg(long)]
    test_threads: Option<usize>,
    #[arg(long, short)]
    quiet: bool,
    #[arg(long)]
    nocapture: bool,
}

fn arches(names: &[String]) -> Result<Vec<Arch>, String> {
    let mut out = Vec::new();
    for n in names.iter().flat_map(|n| n.split(',')) {
        if n == "all" {
            out.extend(klpt::vm::arch::ALL);
        } else {
            out.push(Arch::by_name(n).ok_or_else(|| format!("unknown architecture `{n}` (x86_64, arm64, s390x, ppc64le, all)"))?);
        }
    }
    out.dedup();
    Ok(out)
}

fn load_cases(paths: &[PathBuf]) -> Result<Vec<Case>, String> {
    let files = case::discover(paths).map_err(|e| e.to_string())?;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match case::load(&f) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(cases)
}

fn default_cases() -> PathBuf {
    klpt::project_root().join("cases/stock")
}

fn main() -> ExitCode {
    klpt::vm::cleanup::install_signal_handlers();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run { words, k, ktap, junit, artifacts, keep_failed, kselftest, t } => run(words, k, ktap, junit, artifacts, keep_failed, kselftest, t),
        Cmd::Check { paths } => check(paths),
        Cmd::Kernel { cmd: KernelCmd::Build { src, arches: a, series } } => arches(&a).and_then(|a| {
            for arch in a {
                let dir = klpt::kernel::build::build(&klpt::kernel::build::Spec { src: src.clone(), arch, series: series.clone() }).map_err(|e| e.to_string())?;
                println!("{}: {}", arch.name, dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }),
        Cmd::Gen { case, k } => gen(case, k),
        Cmd::Explore { k, seed, ops, time, ops_per_guest, patches, artifacts, dry_run, shrink_runs } => {
            let opts = klpt::explore::Options { seed, ops, time: time.map(Duration::from_secs), ops_per_guest, patches, artifacts, dry_run, shrink_runs };
            explore(k, opts)
        }
        Cmd::Shell { case, until, k } => klpt::shell::shell(&case, until.as_deref(), k.kernels.first().map(String::as_str), arches(&k.arches).and_then(|a| a.first().copied().ok_or_else(|| "no arch".into())).unwrap_or(klpt::vm::arch::X86_64), k.accel).map_err(|e| e.to_string()),
        Cmd::Matrix { paths, arches: a, kernels, json, artifacts, test_threads } => matrix(paths, a, kernels, json, artifacts, test_threads),
        Cmd::Selftests { filters, k, ktap, junit, artifacts, scenario_timeout, t } => selftests(filters, k, ktap, junit, artifacts, scenario_timeout, t),
        Cmd::Bench { paths, k, versus_kselftest: true, .. } => {
            let default = klpt::project_root().join("cases/kselftest");
            let paths = if paths.is_empty() { vec![default.clone()] } else { paths };
            let hint = |e: String| if paths == [default.clone()] && !default.exists() { format!("{e}\n  (name the cases to compare with, e.g. `klpt bench --versus-kselftest cases/stock`)") } else { e };
            load_cases(&paths).map_err(hint).and_then(|cases| {
                let a = arches(&k.arches)?;
                let kernels = if k.kernels.is_empty() { vec!["source".to_string()] } else { k.kernels.clone() };
                klpt::bench::versus_kselftest(&cases, &a, &kernels, k.accel).map_err(|e| e.to_string())
            })
        }
        Cmd::Bench { paths, k, boots, kernel_builds, steps, .. } => {
            let paths = if paths.is_empty() { vec![default_cases()] } else { paths };
            load_cases(&paths).and_then(|cases| {
                let a = arches(&k.arches)?;
                if steps {
                    klpt::bench::bench_steps(&cases, &a, &k.kernels, k.accel).map_err(|e| e.to_string())
                } else {
                    klpt::bench::bench(&cases, &a, &k.kernels, k.accel, boots, kernel_builds).map_err(|e| e.to_string())
                }
            })
        }
    };
    klpt::vm::cleanup::finish();
    match r {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn explore(k: KernelArgs, opts: klpt::explore::Options) -> Result<ExitCode, String> {
    let a = arches(&k.arches)?;
    let kernels: Vec<Option<String>> = if k.kernels.is_empty() { vec![None] } else { k.kernels.iter().cloned().map(Some).collect() };
    let mut diverged = false;
    for t in prepare(&a, &kernels, k.accel)? {
        let s = klpt::explore::explore(&t, &opts)?;
        print!("{}: {}", t.kernel.id, klpt::explore::report(&s));
        diverged |= !s.divergences.is_empty();
    }
    Ok(if diverged { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn prepare(arches: &[Arch], kernels: &[Option<String>], accel: AccelChoice) -> Result<Vec<Arc<Target>>, String> {
    // Partial module builds of a killed run go before anything else starts.
    klpt::modules::build::sweep();
    let mut targets = Vec::new();
    for a in arches {
        for k in kernels {
            targets.push(Arc::new(Target::prepare(*a, k.as_deref(), accel).map_err(|e| format!("{} ({}): {e}", a.name, k.as_deref().unwrap_or("debian")))?));
        }
    }
    Ok(targets)
}

/// The trial id of each (arch, kernel) without preparing it (`--list`).
fn kernel_ids(arches: &[Arch], kernels: &[Option<String>]) -> Result<Vec<(Arch, String)>, String> {
    let mut out = Vec::new();
    for a in arches {
        for k in kernels {
            let what = || format!("{} ({})", a.name, k.as_deref().unwrap_or("debian"));
            match klpt::kernel::peek(k.as_deref(), *a).map_err(|e| format!("{}: {e}", what()))? {
                klpt::kernel::Peek::Ready(kernel) => out.push((*a, kernel.id)),
                klpt::kernel::Peek::Absent { id: Some(id), .. } => out.push((*a, id)),
                klpt::kernel::Peek::Absent { id: None, how } => return Err(format!("{}: cannot name its trials before it is built (they carry the built kernel's release): {how}", what())),
            }
        }
    }
    Ok(out)
}

fn matrix(paths: Vec<PathBuf>, a: Vec<String>, kernels: Vec<String>, json: PathBuf, artifacts: PathBuf, test_threads: Option<usize>) -> Result<ExitCode, String> {
    let root = klpt::project_root();
    let paths = if paths.is_empty() { vec![root.join("cases/stock"), root.join("cases/hybrid")] } else { paths };
    let cases: Vec<Arc<Case>> = load_cases(&paths)?.into_iter().map(Arc::new).collect();
    let kernels: Vec<Option<String>> = if kernels.is_empty() {
        let series = root.join("cases/hybrid/series");
        vec![Some("source".into()), Some(format!("source:{}", series.join("v1-replaceable").display())), Some(format!("source:{}", series.join("v2-replace-set").display()))]
    } else {
        kernels.into_iter().map(Some).collect()
    };
    let targets = prepare(&arches(&a)?, &kernels, AccelChoice::Auto)?;
    runner::prebuild(&targets, &cases);
    let artifacts = runner::claim_artifacts(&artifacts).map_err(|e| e.to_string())?;
    let opts = Arc::new(Options { artifacts, keep_failed: false, boot_timeout: Duration::from_secs(240) });
    let outcomes: runner::Outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut args = libtest_mimic::Arguments::from_iter(["klpt"]);
    args.test_threads = Some(test_threads.unwrap_or_else(runner::default_parallel_guests));
    args.quiet = true;
    let conclusion = libtest_mimic::run(&args, runner::trials(&targets, &cases, opts, outcomes.clone()));
    let all = runner::write_reports(&outcomes, None, None).map_err(|e| e.to_string())?;
    let table = klpt::report::matrix::Matrix::from_outcomes(&all);
    print!("{}", table.text());
    std::fs::write(&json, table.json()).map_err(|e| format!("{}: {e}", json.display()))?;
    eprintln!("matrix written to {}", json.display());
    Ok(if conclusion.has_failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn check(paths: Vec<PathBuf>) -> Result<ExitCode, String> {
    let paths = if paths.is_empty() { vec![klpt::project_root().join("cases")] } else { paths };
    let files = case::discover(&paths).map_err(|e| e.to_string())?;
    let mut bad = 0;
    for f in &files {
        if let Err(e) = case::load(f) {
            eprintln!("{e}");
            bad += 1;
        }
    }
    println!("{} case file(s) checked, {} with errors", files.len(), bad);
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints a case's generated C. Installs, fetches and builds nothing: on a
/// kernel klpt does not have yet it generates for a stock kernel's
/// `struct klp_patch` and says so.
fn gen(path: PathBuf, k: KernelArgs) -> Result<ExitCode, String> {
    let c = case::load(&path).map_err(|e| e.to_string())?;
    let arch = *arches(&k.arches)?.first().ok_or("no arch")?;
    let caps = match klpt::kernel::peek(k.kernels.first().map(String::as_str), arch).map_err(|e| e.to_string())? {
        klpt::kernel::Peek::Ready(kernel) => klpt::kernel::caps::Caps::probe(&kernel),
        klpt::kernel::Peek::Absent { id, how } => {
            let fields = klpt::modules::gen::stock_fields();
            eprintln!(
                "note: {how}.\nnote: generating for a stock kernel's struct klp_patch ({}) instead of {}'s headers; fields the kernel under test lacks or adds (replace_set, replaceable) may differ.",
                fields.iter().cloned().collect::<Vec<_>>().join(", "),
                id.as_deref().unwrap_or("the kernel")
            );
            klpt::kernel::caps::Caps { klp_fields: fields, ..Default::default() }
        }
    };
    for s in klpt::modules::build::sources(&c, &caps) {
        println!("/* ===== {}.c ===== */\n{}", s.name, s.c);
    }
    for m in klpt::modules::prebuilt::of(&c) {
        println!("/* ===== {}: prebuilt, not generated: {} ===== */", m.name, m.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn libtest_args(filters: &[String], t: TestArgs) -> libtest_mimic::Arguments {
    let mut args = libtest_mimic::Arguments::from_iter(["klpt"]);
    args.filter = filters.first().cloned();
    args.list = t.list;
    args.ignored = t.ignored;
    args.include_ignored = t.include_ignored;
    args.exact = t.exact;
    args.skip = t.skip;
    args.test_threads = Some(t.test_threads.unwrap_or_else(runner::default_parallel_guests));
    args.quiet = t.quiet;
    args.nocapture = t.nocapture;
    args
}

fn selftests(filters: Vec<String>, k: KernelArgs, ktap: Option<PathBuf>, junit: Option<PathBuf>, artifacts: PathBuf, scenario_timeout: u64, t: TestArgs) -> Result<ExitCode, String> {
    let arches = arches(&k.arches)?;
    // Debian's kernels come without their tree: default to the one klpt builds.
    let kernels = if k.kernels.is_empty() { vec!["source".to_string()] } else { k.kernels.clone() };
    let mut args = libtest_args(&filters, t);
    // The drivers run the scripts (one guest per target at a time); trial
    // threads only wait for their scenario. Two or more make libtest print
    // each result as one line, not around the drivers' progress lines.
    args.test_threads = Some(args.test_threads.unwrap_or(2));
    if args.list {
        // Names only: the scripts are read from the kernel's tree; nothing is built.
        return Ok(libtest_mimic::run(&args, kselftest_listing(&arches, &kernels)?).exit_code());
    }
    let artifacts = runner::claim_artifacts(&artifacts).map_err(|e| e.to_string())?;
    let suites = kselftest_suites(&arches, &kernels, k.accel, &artifacts, Duration::from_secs(scenario_timeout))?;
    let outcomes: runner::Outcomes = Arc::new(Mutex::new(Vec::new()));
    let trials = klpt::kselftest::trials(&suites, outcomes.clone(), &args);
    let conclusion = libtest_mimic::run(&args, trials);
    for s in &suites {
        s.finish();
    }
    runner::write_reports(&outcomes, ktap.as_deref(), junit.as_deref()).map_err(|e| e.to_string())?;
    Ok(if conclusion.has_failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[allow(clippy::too_many_arguments)]
fn run(words: Vec<String>, k: KernelArgs, ktap: Option<PathBuf>, junit: Option<PathBuf>, artifacts: PathBuf, keep_failed: bool, kselftest: bool, t: TestArgs) -> Result<ExitCode, String> {
    // Words naming files or directories are case paths; the rest filter trials.
    let (paths, filters): (Vec<String>, Vec<String>) = words.into_iter().partition(|w| std::path::Path::new(w).exists());
    let paths: Vec<PathBuf> = if paths.is_empty() { vec![default_cases()] } else { paths.into_iter().map(PathBuf::from).collect() };
    let cases: Vec<Arc<Case>> = load_cases(&paths)?.into_iter().map(Arc::new).collect();
    let arches = arches(&k.arches)?;
    let mut args = libtest_args(&filters, t);
    args.test_threads = Some(args.test_threads.unwrap_or_else(runner::default_parallel_guests));
    let kernels: Vec<Option<String>> = if k.kernels.is_empty() { vec![None] } else { k.kernels.iter().cloned().map(Some).collect() };
    if args.list {
        // Names only: nothing installed, fetched (beyond apt metadata) or built.
        let ids = kernel_ids(&arches, &kernels)?;
        let mut trials = runner::listing(&ids, &cases);
        if kselftest {
            trials.extend(kselftest_listing(&arches, &kernels.iter().map(|k| k.clone().unwrap_or_else(|| "debian".into())).collect::<Vec<_>>())?);
        }
        return Ok(libtest_mimic::run(&args, trials).exit_code());
    }
    let targets = prepare(&arches, &kernels, k.accel)?;
    // Modules for the trials this run selects only (libtest's filter words).
    let selected: Vec<Arc<Case>> = cases
        .iter()
        .filter(|c| targets.iter().any(|t| selects(&args, &runner::trial_name(t, c))))
        .cloned()
        .collect();
    runner::prebuild(&targets, &selected);
    let artifacts = runner::claim_artifacts(&artifacts).map_err(|e| e.to_string())?;
    let suites = if kselftest { kselftest_suites(&arches, &kernels.iter().map(|k| k.clone().unwrap_or_else(|| "debian".into())).collect::<Vec<_>>(), k.accel, &artifacts, klpt::kselftest::run::SCENARIO_TIMEOUT)? } else { Vec::new() };
    let opts = Arc::new(Options { artifacts: artifacts.clone(), keep_failed, boot_timeout: Duration::from_secs(240) });
    let outcomes: runner::Outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut trials = runner::trials(&targets, &cases, opts, outcomes.clone());
    trials.extend(klpt::kselftest::trials(&suites, outcomes.clone(), &args));
    let conclusion = libtest_mimic::run(&args, trials);
    for s in &suites {
        s.finish();
    }
    runner::write_reports(&outcomes, ktap.as_deref(), junit.as_deref()).map_err(|e| e.to_string())?;
    runner::wait_for_kept_guests();
    Ok(if conclusion.has_failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The selftests' trials for `--list`, read from the kernels' trees.
fn kselftest_listing(arches: &[Arch], kernels: &[String]) -> Result<Vec<libtest_mimic::Trial>, String> {
    let mut trials = Vec::new();
    for a in arches {
        for kernel in kernels {
            let what = format!("{} ({kernel})", a.name);
            match klpt::kernel::peek(Some(kernel), *a).map_err(|e| format!("{what}: {e}"))? {
                klpt::kernel::Peek::Ready(kr) => trials.extend(klpt::kselftest::run::listing(*a, &kr).map_err(|e| format!("{what}: {e}"))?),
                klpt::kernel::Peek::Absent { how, .. } => return Err(format!("{what}: cannot list its selftests before it is built: {how}")),
            }
        }
    }
    Ok(trials)
}

/// Builds the selftests of every (arch, kernel) and their guests' images.
fn kselftest_suites(arches: &[Arch], kernels: &[String], accel: AccelChoice, artifacts: &std::path::Path, timeout: Duration) -> Result<Vec<Arc<klpt::kselftest::Suite>>, String> {
    let mut suites = Vec::new();
    for a in arches {
        for kernel in kernels {
            let (target, built) = klpt::kselftest::prepare(*a, Some(kernel), accel).map_err(|e| format!("{} ({kernel}): {e}", a.name))?;
            suites.push(klpt::kselftest::Suite::new(Arc::new(target), built, artifacts, timeout));
        }
    }
    Ok(suites)
}

/// Whether libtest's filter and `--skip` words let the trial `name` run.
fn selects(args: &libtest_mimic::Arguments, name: &str) -> bool {
    let hit = |f: &str| if args.exact { name == f } else { name.contains(f) };
    args.filter.as_deref().is_none_or(hit) && !args.skip.iter().any(|s| hit(s))
}
