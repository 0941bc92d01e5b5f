//! `klpt bench --versus-kselftest`: in one run on one kernel build, the
//! kernel tree's livepatch selftests against klpt's cases for the same
//! scenarios (modules cached: one guest at a time and at klpt's default
//! parallelism; then both with cold module caches), restoring a saved
//! guest against booting one on every architecture, and the stock suite on
//! every architecture at the default parallelism. Its last line is
//! `klpt/kselftest wall ratio: X.XX` (default parallelism, modules cached).

use super::{bare_boot, machine, mean, scratch, secs_list};
use crate::arch::Arch;
use crate::case::Case;
use crate::error::{Error, Result};
use crate::report::Outcome;
use crate::runner::{self, AccelChoice, Options, Target};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What to measure.
pub struct Plan<'a> {
    /// klpt's cases for the selftests' scenarios (`cases/kselftest`).
    pub cases: &'a [Case],
    /// The suite timed on every architecture (`cases/stock`).
    pub stock: &'a [Case],
    /// The first runs the selftest comparison; all get the boot figures and the stock suite.
    pub arches: &'a [Arch],
    pub kernel: &'a str,
    pub accel: AccelChoice,
    /// Boots of each kind per architecture, after an untimed warm-up.
    pub boots: u32,
}

/// Runs `jobs` on `n` worker threads (each job a fresh guest), in order of
/// the list; returns the outcomes in that order and the wall time.
fn pool(jobs: &[(&Target, &Case)], n: usize, opts: &Options) -> (Vec<Outcome>, f64) {
    let opts = &Options { restore_ahead: runner::restore_ahead_pays(n), ..opts.clone() };
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Outcome>>> = jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..n.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((t, c)) = jobs.get(i) else { break };
                let o = runner::run_case(t, c, opts);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
            });
        }
    });
    let wall = t0.elapsed().as_secs_f64();
    for (t, _) in jobs {
        t.discard_ahead();
    }
    (slots.into_iter().filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect(), wall)
}

/// One suite run: what ran, how many passed, and the wall time.
struct SuiteRun {
    what: String,
    scenarios: usize,
    passed: usize,
    guests: usize,
    wall: f64,
    failed: Vec<String>,
}

impl SuiteRun {
    fn of(what: String, outs: &[Outcome], guests: usize, wall: f64) -> SuiteRun {
        SuiteRun {
            what,
            scenarios: outs.len(),
            passed: outs.iter().filter(|o| o.word() == "pass").count(),
            guests,
            wall,
            failed: outs.iter().filter(|o| o.word() == "fail").map(|o| o.name.clone()).collect(),
        }
    }
    fn row(&self, base: Option<&SuiteRun>) -> String {
        let ratio = base.map(|b| format!("{:.2}", self.wall / b.wall)).unwrap_or_else(|| "1.00".into());
        format!(
            "| {} | {} | {} | {} | {:.1} s | {:.2} | {ratio} |",
            self.what,
            self.scenarios,
            self.passed,
            self.guests,
            self.wall,
            self.wall / self.scenarios.max(1) as f64
        )
    }
}

/// One architecture's boot figures.
struct BootRow {
    arch: &'static str,
    kernel: String,
    bare: f64,
    boot: f64,
    /// Restore to running and to SSH; None: no saved guest (why is printed).
    restore: Option<(f64, f64)>,
}

pub fn versus_kselftest(plan: &Plan) -> Result<ExitCode> {
    if plan.cases.is_empty() {
        return Err(Error::Other("no cases to bench against the selftests".into()));
    }
    let &[arch, ..] = plan.arches else { return Err(Error::Other("no architecture to bench".into())) };
    let (dir, opts) = scratch(false)?;
    let parallel = runner::default_parallel_guests();
    let machine_before = machine();

    // The selftests and klpt's cases, each with its modules built and its
    // image warmed up before any clock starts.
    let (kt, built) = crate::kselftest::prepare(arch, Some(plan.kernel), plan.accel)?;
    let kt = Arc::new(kt);
    let t = Arc::new(Target::prepare(arch, Some(plan.kernel), plan.accel)?);
    let cases: Vec<&Case> = plan.cases.iter().filter(|c| c.runs_on(arch.name)).collect();
    crate::modules::build::build_batch(&cases, &t.kernel, &t.caps);
    bare_boot(&kt, dir.path())?;
    bare_boot(&t, dir.path())?;
    let id = format!("{}/{}", arch.name, t.kernel.id);
    let jobs: Vec<(&Target, &Case)> = cases.iter().map(|c| (t.as_ref(), *c)).collect();

    println!("\n== {id}: the kernel's livepatch selftests, modules cached (one guest) ==");
    let suite =
        crate::kselftest::Suite::new(kt.clone(), built, &opts.artifacts, crate::kselftest::run::SCENARIO_TIMEOUT);
    let t0 = Instant::now();
    let (outs, _) = suite.run_all();
    let kernel = SuiteRun::of("kernel selftests/livepatch".into(), &outs, suite.boots(), t0.elapsed().as_secs_f64());
    println!("{} scenarios, {} passed, {:.1} s", kernel.scenarios, kernel.passed, kernel.wall);

    println!("\n== {id}: klpt's cases, modules cached, one guest at a time ==");
    let (outs, wall) = pool(&jobs, 1, &opts);
    let w = cases.iter().map(|c| c.id.len()).chain([40]).max().unwrap_or(40);
    for o in &outs {
        println!("{:<w$} {:>6.2}  {}", o.case_id, o.secs, o.word());
    }
    let one = SuiteRun::of("klpt cases, one guest at a time".into(), &outs, outs.len(), wall);

    println!("\n== {id}: klpt's cases, modules cached, {parallel} guests at a time (the default here) ==");
    let (outs, wall) = pool(&jobs, parallel, &opts);
    let par = SuiteRun::of(format!("klpt cases, {parallel} guests at a time"), &outs, outs.len(), wall);
    println!("{} cases, {} passed, {:.1} s", par.scenarios, par.passed, par.wall);

    // Cold: the same builds, into empty module caches of their own (the
    // real cache keeps its entries), then the same runs.
    println!("\n== {id}: cold module caches ==");
    let cold_dir = crate::cleanup::TempDir::new("klpt-bench-cold-").map_err(|e| Error::Other(e.to_string()))?;
    let kernel_cold = {
        let _cold = crate::cache::Redirect::new(&["kselftest"], cold_dir.path());
        let (kt2, built2) = crate::kselftest::prepare(arch, Some(plan.kernel), plan.accel)?;
        let build = built2.build_secs.ok_or_else(|| Error::Other("the cold selftest build was a cache hit".into()))?;
        let suite = crate::kselftest::Suite::new(
            Arc::new(kt2),
            built2,
            &opts.artifacts.join("cold"),
            crate::kselftest::run::SCENARIO_TIMEOUT,
        );
        let t0 = Instant::now();
        let (outs, _) = suite.run_all();
        let run = t0.elapsed().as_secs_f64();
        println!("kernel selftests: test_modules and helper built in {build:.1} s, suite {run:.1} s");
        SuiteRun::of("kernel selftests/livepatch, cold".into(), &outs, suite.boots(), build + run)
    };
    let klpt_cold = {
        let _cold = crate::cache::Redirect::new(&["modules", "programs"], cold_dir.path());
        let t0 = Instant::now();
        crate::modules::build::build_batch(&cases, &t.kernel, &t.caps);
        let build = t0.elapsed().as_secs_f64();
        let (outs, run) = pool(&jobs, parallel, &Options { artifacts: opts.artifacts.join("cold"), ..opts.clone() });
        println!("klpt: modules built in {build:.1} s, cases {run:.1} s");
        SuiteRun::of(format!("klpt cases, cold, {parallel} guests at a time"), &outs, outs.len(), build + run)
    };

    // Boots, per architecture: QEMU alone to the readiness line, klpt's
    // boot to a logged-in guest, klpt's restore to a logged-in guest.
    let mut targets = vec![t.clone()];
    for &a in &plan.arches[1..] {
        targets.push(Arc::new(Target::prepare(a, Some(plan.kernel), plan.accel)?));
    }
    let mut boots = Vec::new();
    for bt in &targets {
        if !Arc::ptr_eq(bt, &t) {
            bare_boot(bt, dir.path())?;
        }
        let (mut bare, mut boot, mut running, mut restore) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.boots.max(1) {
            bare.push(bare_boot(bt, dir.path())?);
            boot.push(runner::boot_from(bt, 1, dir.path(), &opts, false)?.ssh_ready);
            if bt.saved_state.is_some() {
                let b = runner::boot_from(bt, 1, dir.path(), &opts, true)?;
                running.push(b.ready);
                restore.push(b.ssh_ready);
            }
        }
        println!(
            "{}: bare boot {} s; klpt boot to SSH {} s; restore to running {} s, to SSH {} s",
            bt.arch.name,
            secs_list(&bare),
            secs_list(&boot),
            secs_list(&running),
            secs_list(&restore)
        );
        if bt.saved_state.is_none() {
            println!(
                "{}: no saved guest: {}",
                bt.arch.name,
                bt.saved_note.as_deref().unwrap_or("(see the warning above)")
            );
        }
        boots.push(BootRow {
            arch: bt.arch.name,
            kernel: bt.kernel.id.clone(),
            bare: mean(&bare),
            boot: mean(&boot),
            restore: (!restore.is_empty()).then(|| (mean(&running), mean(&restore))),
        });
    }

    // The stock suite on every architecture, one pool of guests.
    let stock: Vec<(&Target, &Case)> = targets
        .iter()
        .flat_map(|bt| plan.stock.iter().filter(|c| c.runs_on(bt.arch.name)).map(move |c| (bt.as_ref(), c)))
        .collect();
    for bt in &targets {
        let mine: Vec<&Case> = stock.iter().filter(|(x, _)| std::ptr::eq(*x, bt.as_ref())).map(|(_, c)| *c).collect();
        crate::modules::build::build_batch(&mine, &bt.kernel, &bt.caps);
    }
    println!("\n== the stock suite on {} architecture(s), {parallel} guests at a time ==", targets.len());
    let (outs, wall) = pool(&stock, parallel, &opts);
    let all = SuiteRun::of(
        format!("cases/stock on {}", targets.iter().map(|t| t.arch.name).collect::<Vec<_>>().join(", ")),
        &outs,
        outs.len(),
        wall,
    );
    let skipped = outs.iter().filter(|o| matches!(o.word(), "skip" | "ignored")).count();
    println!(
        "{} trials: {} passed, {} skipped, {} failed, {:.1} s",
        all.scenarios,
        all.passed,
        skipped,
        all.failed.len(),
        all.wall
    );

    println!("\nmachine: {machine_before} before, {} after; TCG unless noted: {:?}", machine(), t.accel);
    println!("\n{id}, the same kernel build for both suites:\n");
    println!("| suite | scenarios | passed | guests | host wall | s/scenario | ratio to the kernel's suite |");
    println!("|---|---|---|---|---|---|---|");
    println!("{}", kernel.row(None));
    println!("{}", one.row(Some(&kernel)));
    println!("{}", par.row(Some(&kernel)));
    println!("{}", kernel_cold.row(None));
    println!("{}", klpt_cold.row(Some(&kernel_cold)));
    println!("\n| arch | kernel | bare QEMU boot to ready | restore to ready (running) | ratio | klpt boot to SSH | klpt restore to SSH | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for b in &boots {
        let restore = match b.restore {
            Some((run, ssh)) => {
                format!("{run:.2} s | {:.2} | {:.2} s | {ssh:.2} s | {:.2}", run / b.bare, b.boot, ssh / b.boot)
            }
            None => format!("no saved guest | - | {:.2} s | boots | -", b.boot),
        };
        println!("| {} | {} | {:.2} s | {restore} |", b.arch, b.kernel, b.bare);
    }
    println!(
        "\n{}: {} trials ({} passed, {} skipped, {} failed) in {:.1} s",
        all.what,
        all.scenarios,
        all.passed,
        skipped,
        all.failed.len(),
        all.wall
    );
    let failed: Vec<&String> =
        [&kernel, &one, &par, &kernel_cold, &klpt_cold, &all].iter().flat_map(|r| &r.failed).collect();
    for f in &failed {
        println!("FAILED: {f}");
    }
    println!("\nklpt/kselftest wall ratio, one guest at a time: {:.2}", one.wall / kernel.wall);
    println!("klpt/kselftest wall ratio, cold module caches: {:.2}", klpt_cold.wall / kernel_cold.wall);
    println!("klpt/kselftest wall ratio: {:.2}", par.wall / kernel.wall);
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
