//! `klpt bench`: one run measures, on the same kernel and initramfs, a bare
//! QEMU boot to the readiness line, klpt's boot to an SSH-ready guest, and
//! each case's wall time against the time the guest itself ran.

use crate::arch::Arch;
use crate::case::Case;
use crate::error::{Error, Result};
use crate::runner::{self, AccelChoice, Options, Target};
use crate::vm::qemu::{free_port, qemu_args};
use std::process::ExitCode;

pub mod planted;
mod versus;
use std::time::{Duration, Instant};
pub use versus::{versus_kselftest, Plan};

/// A benchmark's scratch directory (artifacts inside, removed with it) and
/// its run options; `guest_time`: ask each guest its uptime.
pub(super) fn scratch(guest_time: bool) -> Result<(crate::cleanup::TempDir, Options)> {
    let dir = crate::cleanup::TempDir::new("klpt-bench-").map_err(|e| Error::Other(e.to_string()))?;
    let opts = Options { guest_time, ..Options::new(dir.path().join("artifacts")) };
    Ok((dir, opts))
}

/// Plain `qemu-system-*` with klpt's arguments, timed to the readiness line.
pub(super) fn bare_boot(t: &Target, dir: &std::path::Path) -> Result<f64> {
    let log = dir.join("bare-console.log");
    let cfg = t.vm_config(1, &log);
    std::fs::write(&log, "").map_err(|e| Error::Other(e.to_string()))?;
    let port = free_port()?;
    let t0 = Instant::now();
    let mut child = crate::vm::binary::resolve(t.arch)?
        .command()
        .args(qemu_args(&cfg, port))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::Vm(e.to_string()))?;
    crate::cleanup::track_pid(child.id() as i32);
    let r = loop {
        if std::fs::read_to_string(&log).unwrap_or_default().contains("KLPT-READY") {
            break Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > Duration::from_secs(240) || child.try_wait().ok().flatten().is_some() {
            break Err(Error::Vm("bare boot did not reach the readiness line".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    crate::cleanup::untrack_pid(child.id() as i32);
    r
}

pub(super) fn secs_list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
}

pub(super) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// One architecture's figures, kept for the closing summary table.
struct Row {
    arch: &'static str,
    kernel: String,
    builds: Option<(f64, f64)>,
    bare: f64,
    ready: f64,
    cases: usize,
    suite: f64,
    wall: f64,
    guest: f64,
    /// A case failed: the bench exits non-zero.
    failed: bool,
}

/// A Markdown table of every architecture measured in this run, ready for the README.
fn print_summary(rows: &[Row]) {
    println!("\n| arch | kernel | cold build | one-file rebuild | ratio | bare boot | klpt SSH-ready | ratio | cases | suite wall | guest time | ratio |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let builds = match r.builds {
            Some((cold, re)) => format!("{cold:.1} s | {re:.1} s | {:.3}x", re / cold),
            None => "- | - | -".into(),
        };
        println!(
            "| {} | {} | {builds} | {:.2} s | {:.2} s | {:.2}x | {} | {:.1} s | {:.1} s | {:.2}x |",
            r.arch,
            r.kernel,
            r.bare,
            r.ready,
            r.ready / r.bare,
            r.cases,
            r.suite,
            r.guest,
            r.wall / r.guest
        );
    }
}

pub fn bench(
    cases: &[Case],
    arches: &[Arch],
    kernels: &[String],
    accel: AccelChoice,
    boots: u32,
    kernel_builds: bool,
) -> Result<ExitCode> {
    // The first case's settings (smp) drive the timed klpt boots.
    let probe = cases.first().ok_or_else(|| Error::Other("no cases to bench".into()))?;
    let (dir, opts) = scratch(true)?;
    let kernels: Vec<Option<&str>> =
        if kernels.is_empty() { vec![None] } else { kernels.iter().map(|k| Some(k.as_str())).collect() };
    let mut rows = Vec::new();
    for &arch in arches {
        // Builds (of Debian's source, whatever the kernel under test) once per
        // arch, and first: they push QEMU and the guest images out of the page
        // cache. The first kernel's row reports them.
        let mut builds = if kernel_builds { Some(crate::kernel::build::bench_builds(arch)?) } else { None };
        for &kernel in &kernels {
            let t = Target::prepare(arch, kernel, accel)?;
            rows.push(bench_target(&t, cases, probe, &opts, dir.path(), boots, builds.take())?);
        }
    }
    print_summary(&rows);
    Ok(if rows.iter().any(|r| r.failed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Boots and the suite on one prepared (arch, kernel), printed as they come.
fn bench_target(
    t: &Target,
    cases: &[Case],
    probe: &Case,
    opts: &Options,
    dir: &std::path::Path,
    boots: u32,
    builds: Option<(f64, f64)>,
) -> Result<Row> {
    let arch = t.arch;
    // An untimed first boot: whichever boot came first would otherwise pay
    // for loading QEMU, its firmware and the images into the page cache.
    bare_boot(t, dir)?;
    let (mut bare, mut ready) = (Vec::new(), Vec::new());
    for _ in 0..boots.max(1) {
        bare.push(bare_boot(t, dir)?);
        ready.push(runner::boot(t, probe, dir, opts)?.ssh_ready);
    }
    println!("\n== {} ({}, {:?}) ==", arch.name, t.kernel.id, t.accel);
    if let Some((cold, rebuild)) = builds {
        println!("cold kernel build (no ccache)      {cold:6.1}s");
        println!("rebuild after a core.c change      {rebuild:6.1}s  ratio {:.3}x", rebuild / cold);
    }
    println!("bare QEMU boot to readiness line   {:6.2}s  (mean of {})", mean(&bare), secs_list(&bare));
    println!(
        "klpt boot to SSH-ready guest       {:6.2}s  (mean of {})  ratio {:.2}x",
        mean(&ready),
        secs_list(&ready),
        mean(&ready) / mean(&bare)
    );
    println!("{:<40} {:>8} {:>8} {:>7}  result", "case", "wall s", "guest s", "ratio");
    let (mut wall, mut guest, mut ran, mut failed) = (0.0, 0.0, 0, false);
    let suite = Instant::now();
    for c in cases.iter().filter(|c| c.runs_on(arch.name)) {
        ran += 1;
        let o = runner::run_case(t, c, opts);
        let g = o.guest_secs.unwrap_or(f64::NAN);
        println!("{:<40} {:>8.2} {:>8.2} {:>6.2}x  {}", c.id, o.secs, g, o.secs / g, o.word());
        failed |= o.word() == "fail";
        if o.guest_secs.is_some() {
            wall += o.secs;
            guest += g;
        }
    }
    println!("{:<40} {:>8.2} {:>8.2} {:>6.2}x", "total (cases that booted)", wall, guest, wall / guest);
    let suite = suite.elapsed().as_secs_f64();
    println!("suite wall time (one guest at a time) {suite:6.1}s");
    Ok(Row {
        arch: arch.name,
        kernel: t.kernel.id.clone(),
        builds,
        bare: mean(&bare),
        ready: mean(&ready),
        cases: ran,
        suite,
        wall,
        guest,
        failed,
    })
}

/// The `q`-quantile of `v` (nearest rank), NaN for no values.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// The machine a figure was measured on: CPUs and load.
pub(super) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} CPUs, load average {}", load.join(" "))
}

/// Steps of one path (the old one command per action, wait and sync, or
/// one command per step).
#[derive(Default)]
struct Path {
    steps: Vec<(&'static str, f64)>,
    wall: f64,
    failed: Vec<String>,
}

impl Path {
    fn secs(&self) -> Vec<f64> {
        self.steps.iter().map(|s| s.1).collect()
    }
    fn of_kind(&self, k: &str) -> Vec<f64> {
        self.steps.iter().filter(|s| s.0 == k).map(|s| s.1).collect()
    }
}

/// `klpt bench --steps`: every case twice on the same kernel in one run,
/// once with steps as several guest commands (the path before one command
/// per step) and once with one command per step, the order alternating
/// from case to case; prints the median and p90 host seconds per step of
/// each and their ratio.
pub fn bench_steps(cases: &[Case], arches: &[Arch], kernels: &[String], accel: AccelChoice) -> Result<ExitCode> {
    if cases.is_empty() {
        return Err(Error::Other("no cases to bench".into()));
    }
    let (_dir, opts) = scratch(false)?; // the artifacts live as long as `_dir`
    let kernels: Vec<Option<&str>> =
        if kernels.is_empty() { vec![None] } else { kernels.iter().map(|k| Some(k.as_str())).collect() };
    let mut failed = false;
    for &arch in arches {
        for &kernel in &kernels {
            let t = Target::prepare(arch, kernel, accel)?;
            let before = machine();
            println!("\n== steps: {} ({}, {:?}) ==", arch.name, t.kernel.id, t.accel);
            println!(
                "{:<40} {:>5}  {:>12} {:>12}  {:>9} {:>9}",
                "case", "steps", "several s", "one s", "several", "one"
            );
            println!("{:<40} {:>5}  {:>12} {:>12}  {:>9} {:>9}", "", "", "(median)", "(median)", "case s", "case s");
            let (mut old, mut new) = (Path::default(), Path::default());
            for (i, c) in cases.iter().filter(|c| c.runs_on(arch.name)).enumerate() {
                let mut row = [None, None];
                // Alternate which path goes first, so neither always gets
                // the warmer page cache or the quieter moment.
                let order = if i % 2 == 0 { [true, false] } else { [false, true] };
                for legacy in order {
                    let o = runner::run_case_steps(&t, c, &opts, legacy);
                    let p = if legacy { &mut old } else { &mut new };
                    p.steps.extend(o.step_secs.iter().copied());
                    p.wall += o.secs;
                    if o.word() == "fail" {
                        p.failed.push(format!("{} ({})", c.id, if legacy { "several" } else { "one" }));
                    }
                    row[usize::from(!legacy)] = Some(o);
                }
                let [Some(a), Some(b)] = row else { unreachable!("both paths ran") };
                let med =
                    |o: &crate::report::Outcome| quantile(&o.step_secs.iter().map(|s| s.1).collect::<Vec<_>>(), 0.5);
                let word =
                    if a.word() == b.word() { a.word().to_string() } else { format!("{}/{}", a.word(), b.word()) };
                println!(
                    "{:<40} {:>5}  {:>12.3} {:>12.3}  {:>9.2} {:>9.2}  {word}",
                    c.id,
                    b.step_secs.len(),
                    med(&a),
                    med(&b),
                    a.secs,
                    b.secs
                );
            }
            println!("machine: {before} before, {} after", machine());
            let (o, n) = (old.secs(), new.secs());
            println!("\n| steps as | steps | median s/step | p90 s/step | mean s/step | case wall total |");
            println!("|---|---|---|---|---|---|");
            for (name, p, v) in [("several commands (before)", &old, &o), ("one command", &new, &n)] {
                println!(
                    "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.1} s |",
                    v.len(),
                    quantile(v, 0.5),
                    quantile(v, 0.9),
                    mean(v),
                    p.wall
                );
            }
            println!(
                "| ratio (before / one) | | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
                quantile(&o, 0.5) / quantile(&n, 0.5),
                quantile(&o, 0.9) / quantile(&n, 0.9),
                mean(&o) / mean(&n),
                old.wall / new.wall
            );
            println!("\n| kind | steps | before median s | one median s | ratio |");
            println!("|---|---|---|---|---|");
            let mut kinds: Vec<&str> = new.steps.iter().map(|s| s.0).collect();
            kinds.sort();
            kinds.dedup();
            for k in kinds {
                let (a, b) = (old.of_kind(k), new.of_kind(k));
                println!(
                    "| {k} | {} | {:.3} | {:.3} | {:.2}x |",
                    b.len(),
                    quantile(&a, 0.5),
                    quantile(&b, 0.5),
                    quantile(&a, 0.5) / quantile(&b, 0.5)
                );
            }
            for f in old.failed.iter().chain(&new.failed) {
                println!("FAILED: {f}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 5.0);
        assert_eq!(quantile(&v, 0.9), 9.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
