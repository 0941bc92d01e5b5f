//! The `klpt` command line.

use clap::{Args, Parser, Subcommand};
use klpt::commands::{self, Bench};
use klpt::run::plan::{self, Selection};
use klpt::run::reporters::Files;
use klpt::run::Request;
use klpt::runner::AccelChoice;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "klpt", version, about = "QEMU-driven integration tests for Linux kernel livepatching")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct KernelArgs {
    /// Architecture(s): x86_64, arm64, s390x, ppc64le or `all` (repeatable,
    /// comma lists allowed; each runs once).
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
        #[command(flatten)]
        reports: ReportArgs,
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
        #[command(flatten)]
        reports: ReportArgs,
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
        /// Operations run in one guest before the next starts fresh.
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
        #[arg(long, default_value = "60")]
        shrink_runs: usize,
        /// Guests at a time (default: sized to the machine's cores and
        /// memory). The same seed replays the same way at any value.
        #[arg(long)]
        jobs: Option<usize>,
        /// Stop after the first guests that diverge (and their shrinking).
        #[arg(long)]
        stop_at_first: bool,
    },
    /// Work with the results files of finished runs.
    Report {
        #[command(subcommand)]
        cmd: ReportCmd,
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
        /// Instead: on one kernel build (default `source`), the kernel tree's
        /// livepatch selftests against klpt's cases (default cases/kselftest),
        /// modules cached (one guest at a time, then the default parallelism)
        /// and cold; restore against boot on every --arch; cases/stock on
        /// every --arch. Last line: `klpt/kselftest wall ratio: X.XX`.
        #[arg(long, conflicts_with_all = ["kernel_builds", "steps"])]
        versus_kselftest: bool,
        /// Instead: for each planted-bug fixture (the given directories, or
        /// every one in cases/explore/planted), build its kernel, run
        /// `klpt explore` from --seed until the first divergence and shrink
        /// it; print operations and wall time to it and the shrunk size.
        #[arg(long, conflicts_with_all = ["kernel_builds", "steps", "versus_kselftest"])]
        planted: bool,
        /// With --planted: the exploration's seed.
        #[arg(long, default_value = "1")]
        seed: u64,
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
        /// Also write the kernel as one file (image, config, symbols, the build
        /// tree modules need) that `--kernel FILE` uses on another machine. One arch.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Merge the `--results` files of a run's shards into the reports of
    /// one unsharded run (trials no file holds are unfinished).
    Merge {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        reports: ReportArgs,
    },
}

/// Reports written when the run ends, also when it is interrupted (its
/// unfinished trials marked as such).
#[derive(Args)]
struct ReportArgs {
    /// Write KTAP (kernel selftest format) here.
    #[arg(long)]
    ktap: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write the run's results as JSON here (`klpt report merge` reads them).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Write the case × kernel table as JSON here.
    #[arg(long)]
    matrix: Option<PathBuf>,
    /// Write KCIDB JSON here.
    #[arg(long)]
    kcidb: Option<PathBuf>,
    /// Write every event of the run (trials, steps, progress) as JSON lines here.
    #[arg(long)]
    jsonl: Option<PathBuf>,
}

impl ReportArgs {
    fn files(&self) -> Files {
        Files {
            ktap: self.ktap.clone(),
            junit: self.junit.clone(),
            results: self.results.clone(),
            matrix: self.matrix.clone(),
            kcidb: self.kcidb.clone(),
        }
    }
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
    /// Guests run at once (default: two per core, as many as memory allows).
    #[arg(long)]
    test_threads: Option<usize>,
    /// One character per trial instead of a line.
    #[arg(long, short)]
    quiet: bool,
    /// Accepted for libtest compatibility: klpt captures nothing.
    #[arg(long)]
    nocapture: bool,
    /// Run one shard of the selected trials: `count:K/N` (round-robin in
    /// plan order) or `hash:K/N` (by trial name), K of N.
    #[arg(long)]
    partition: Option<String>,
    /// Stop the whole run after SECS seconds (preparation included): the
    /// reports are written, unfinished trials marked as such; exit 1.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

impl TestArgs {
    fn selection(&self, filters: Vec<String>) -> Selection {
        Selection { filters, skip: self.skip.clone(), exact: self.exact, ignored: self.ignored }
    }
}

fn main() -> ExitCode {
    klpt::cleanup::install_signal_handlers();
    let r = dispatch(Cli::parse().cmd);
    klpt::cleanup::finish();
    match r {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode, String> {
    let root = klpt::project_root();
    let exit = |ok: bool| if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    match cmd {
        Cmd::Run { words, k, reports, artifacts, keep_failed, kselftest, t } => {
            // Words naming files or directories are case paths; the rest filter trials.
            let (paths, filters): (Vec<String>, Vec<String>) =
                words.into_iter().partition(|w| std::path::Path::new(w).exists());
            let paths: Vec<PathBuf> = if paths.is_empty() {
                vec![root.join("cases/stock")]
            } else {
                paths.into_iter().map(PathBuf::from).collect()
            };
            let cases = klpt::run::load_cases(&paths)?;
            let kernels = if k.kernels.is_empty() { vec![None] } else { k.kernels.iter().cloned().map(Some).collect() };
            let req = request(cases, kselftest, &k, kernels, &t, filters, &reports, artifacts)?;
            klpt::run::run(Request { keep_failed, ..req }).map(exit)
        }
        Cmd::Selftests { filters, k, reports, artifacts, scenario_timeout, t } => {
            // Debian's kernels come without their tree: default to the one klpt builds.
            let kernels = if k.kernels.is_empty() {
                vec![Some("source".to_string())]
            } else {
                k.kernels.iter().cloned().map(Some).collect()
            };
            let req = request(Vec::new(), true, &k, kernels, &t, filters, &reports, artifacts)?;
            klpt::run::run(Request { scenario_timeout: Duration::from_secs(scenario_timeout), ..req }).map(exit)
        }
        Cmd::Matrix { paths, arches, kernels, json, artifacts, test_threads } => {
            let paths =
                if paths.is_empty() { vec![root.join("cases/stock"), root.join("cases/hybrid")] } else { paths };
            let kernels = if kernels.is_empty() {
                let series = root.join("cases/hybrid/series");
                vec![
                    Some("source".into()),
                    Some(format!("source:{}", series.join("v1-replaceable").display())),
                    Some(format!("source:{}", series.join("v2-replace-set").display())),
                ]
            } else {
                kernels.into_iter().map(Some).collect()
            };
            let req = Request {
                cases: klpt::run::load_cases(&paths)?.into_iter().map(Arc::new).collect(),
                kselftest: false,
                arches: plan::arches(&arches)?,
                kernels,
                accel: AccelChoice::Auto,
                selection: Selection::default(),
                partition: None,
                list: false,
                threads: test_threads,
                quiet: true,
                artifacts,
                keep_failed: false,
                scenario_timeout: klpt::kselftest::run::SCENARIO_TIMEOUT,
                files: Files { matrix: Some(json.clone()), ..Files::default() },
                jsonl: None,
                matrix_table: true,
                timeout: None,
            };
            let ok = klpt::run::run(req)?;
            eprintln!("matrix written to {}", json.display());
            Ok(exit(ok))
        }
        Cmd::Report { cmd: ReportCmd::Merge { files, reports } } => {
            if reports.jsonl.is_some() {
                return Err("--jsonl: a merge has no events to stream; merge writes --ktap, --junit, --results, --matrix and --kcidb".into());
            }
            klpt::run::merge::command(&files, reports.files()).map(exit)
        }
        Cmd::Check { paths } => commands::check(paths),
        Cmd::Kernel { cmd: KernelCmd::Build { src, arches, series, export } } => {
            commands::kernel_build(src, &arches, series, export)
        }
        Cmd::Explore {
            k,
            seed,
            ops,
            time,
            ops_per_guest,
            patches,
            artifacts,
            dry_run,
            shrink_runs,
            jobs,
            stop_at_first,
        } => {
            let opts = klpt::explore::Options {
                seed,
                ops,
                time: time.map(Duration::from_secs),
                ops_per_guest,
                patches,
                artifacts,
                dry_run,
                shrink_runs,
                jobs: jobs.unwrap_or_else(klpt::runner::default_parallel_guests).max(1),
                stop_at_first,
            };
            commands::explore(&k.arches, &k.kernels, k.accel, &opts)
        }
        Cmd::Gen { case, k } => {
            commands::gen(&case, commands::one_arch(&k.arches)?, k.kernels.first().map(String::as_str))
        }
        Cmd::Shell { case, until, k } => klpt::shell::shell(
            &case,
            until.as_deref(),
            k.kernels.first().map(String::as_str),
            commands::one_arch(&k.arches)?,
            k.accel,
        )
        .map_err(|e| e.to_string()),
        Cmd::Bench { paths, k, planted: true, seed, .. } => {
            commands::bench(Bench::Planted { seed }, paths, &k.arches, &k.kernels, k.accel)
        }
        Cmd::Bench { paths, k, versus_kselftest: true, boots, .. } => {
            commands::bench(Bench::VersusKselftest { boots }, paths, &k.arches, &k.kernels, k.accel)
        }
        Cmd::Bench { paths, k, steps: true, .. } => {
            commands::bench(Bench::Steps, paths, &k.arches, &k.kernels, k.accel)
        }
        Cmd::Bench { paths, k, boots, kernel_builds, .. } => {
            commands::bench(Bench::Boots { boots, kernel_builds }, paths, &k.arches, &k.kernels, k.accel)
        }
    }
}

/// The run request of `klpt run` and `klpt selftests`.
#[allow(clippy::too_many_arguments)]
fn request(
    cases: Vec<klpt::case::Case>,
    kselftest: bool,
    k: &KernelArgs,
    kernels: Vec<Option<String>>,
    t: &TestArgs,
    filters: Vec<String>,
    reports: &ReportArgs,
    artifacts: PathBuf,
) -> Result<Request, String> {
    Ok(Request {
        cases: cases.into_iter().map(Arc::new).collect(),
        kselftest,
        arches: plan::arches(&k.arches)?,
        kernels,
        accel: k.accel,
        selection: t.selection(filters),
        partition: t.partition.as_deref().map(str::parse).transpose()?,
        list: t.list,
        threads: t.test_threads,
        quiet: t.quiet,
        artifacts,
        keep_failed: false,
        scenario_timeout: klpt::kselftest::run::SCENARIO_TIMEOUT,
        files: reports.files(),
        jsonl: reports.jsonl.clone(),
        matrix_table: false,
        timeout: t.timeout.map(Duration::from_secs),
    })
}
