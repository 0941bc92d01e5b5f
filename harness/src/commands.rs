//! The commands that are not runs: `klpt check`, `klpt gen`, `klpt kernel
//! build`, `klpt shell`, `klpt bench` and `klpt explore`, given parsed arguments.

use crate::arch::Arch;
use crate::case;
use crate::runner::AccelChoice;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `klpt check`: loads every case file; counts the bad ones.
pub fn check(paths: Vec<PathBuf>) -> Result<ExitCode, String> {
    let paths = if paths.is_empty() { vec![crate::project_root().join("cases")] } else { paths };
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

/// The one architecture of a command that runs one (`gen`, `shell`).
pub fn one_arch(names: &[String]) -> Result<Arch, String> {
    match crate::run::plan::arches(names)?.as_slice() {
        [a] => Ok(*a),
        more => Err(format!(
            "this command takes one architecture, not {} ({})",
            more.len(),
            more.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// `klpt gen`: prints a case's generated C. Installs, fetches and builds
/// nothing: on a kernel klpt does not have yet it generates for a stock
/// kernel's `struct klp_patch` and says so.
pub fn gen(path: &Path, arch: Arch, kernel: Option<&str>) -> Result<ExitCode, String> {
    let c = case::load(path).map_err(|e| e.to_string())?;
    let caps = match crate::kernel::peek(kernel, arch).map_err(|e| e.to_string())? {
        crate::kernel::Peek::Ready(kernel) => crate::kernel::caps::Caps::probe(&kernel),
        crate::kernel::Peek::Absent { id, how } => {
            let fields = crate::modules::gen::stock_fields();
            eprintln!(
                "note: {how}.\nnote: generating for a stock kernel's struct klp_patch ({}) instead of {}'s headers; fields the kernel under test lacks or adds (replace_set, replaceable) may differ.",
                fields.iter().cloned().collect::<Vec<_>>().join(", "),
                id.as_deref().unwrap_or("the kernel")
            );
            crate::kernel::caps::Caps { klp_fields: fields, ..Default::default() }
        }
    };
    for s in crate::modules::build::sources(&c, &caps) {
        println!("/* ===== {}.c ===== */\n{}", s.name, s.c);
    }
    for m in crate::modules::prebuilt::of(&c) {
        println!("/* ===== {}: prebuilt, not generated: {} ===== */", m.name, m.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `klpt kernel build` (with `export`, one arch's kernel as one file too).
pub fn kernel_build(
    src: Option<PathBuf>,
    arches: &[String],
    series: Vec<PathBuf>,
    export: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let arches = crate::run::plan::arches(arches)?;
    if let Some(file) = export {
        return match arches[..] {
            [arch] => crate::kernel::export::export_build(&crate::kernel::build::Spec { src, arch, series }, &file)
                .map(|_| ExitCode::SUCCESS)
                .map_err(|e| e.to_string()),
            _ => Err("--export writes one kernel: pass one --arch".into()),
        };
    }
    for arch in arches {
        let dir =
            crate::kernel::build::build(&crate::kernel::build::Spec { src: src.clone(), arch, series: series.clone() })
                .map_err(|e| e.to_string())?;
        println!("{}: {}", arch.name, dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What `klpt bench` measures.
pub enum Bench {
    Boots { boots: u32, kernel_builds: bool },
    Steps,
    VersusKselftest { boots: u32 },
    Planted { seed: u64 },
}

/// `klpt bench`.
pub fn bench(
    what: Bench,
    paths: Vec<PathBuf>,
    arches: &[String],
    kernels: &[String],
    accel: AccelChoice,
) -> Result<ExitCode, String> {
    let a = crate::run::plan::arches(arches)?;
    match what {
        Bench::Planted { seed } => {
            if !kernels.is_empty() {
                return Err("--planted: each fixture names its kernel (planted.yaml's base series and its patch); drop --kernel".into());
            }
            let planted =
                crate::bench::planted::fixtures(&paths, &crate::project_root().join("cases/explore/planted"))?;
            crate::modules::build::sweep();
            let arch = one_arch(arches)?;
            let ok = crate::bench::planted::bench(&planted, arch, accel, seed)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Bench::VersusKselftest { boots } => {
            let default = crate::project_root().join("cases/kselftest");
            let paths = if paths.is_empty() { vec![default.clone()] } else { paths };
            let hint = |e: String| {
                if paths == [default.clone()] && !default.exists() {
                    format!("{e}\n  (name the cases to compare with, e.g. `klpt bench --versus-kselftest cases/stock`)")
                } else {
                    e
                }
            };
            let cases = crate::run::load_cases(&paths).map_err(hint)?;
            let stock = crate::run::load_cases(&[crate::project_root().join("cases/stock")])?;
            let kernels = if kernels.is_empty() { vec!["source".to_string()] } else { kernels.to_vec() };
            let mut code = ExitCode::SUCCESS;
            for kernel in &kernels {
                let plan = crate::bench::Plan { cases: &cases, stock: &stock, arches: &a, kernel, accel, boots };
                if crate::bench::versus_kselftest(&plan).map_err(|e| e.to_string())? != ExitCode::SUCCESS {
                    code = ExitCode::FAILURE;
                }
            }
            Ok(code)
        }
        Bench::Steps | Bench::Boots { .. } => {
            let paths = if paths.is_empty() { vec![crate::project_root().join("cases/stock")] } else { paths };
            let cases = crate::run::load_cases(&paths)?;
            match what {
                Bench::Boots { boots, kernel_builds } => {
                    crate::bench::bench(&cases, &a, kernels, accel, boots, kernel_builds).map_err(|e| e.to_string())
                }
                _ => crate::bench::bench_steps(&cases, &a, kernels, accel).map_err(|e| e.to_string()),
            }
        }
    }
}

/// `klpt explore` on every (arch, kernel): fails when any diverged.
pub fn explore(
    arches: &[String],
    kernels: &[String],
    accel: AccelChoice,
    opts: &crate::explore::Options,
) -> Result<ExitCode, String> {
    let arches = crate::run::plan::arches(arches)?;
    let kernels: Vec<Option<&str>> =
        if kernels.is_empty() { vec![None] } else { kernels.iter().map(|k| Some(k.as_str())).collect() };
    crate::modules::build::sweep();
    let mut diverged = false;
    for &a in &arches {
        for &k in &kernels {
            let t = crate::runner::Target::prepare(a, k, accel)
                .map_err(|e| format!("{} ({}): {e}", a.name, k.unwrap_or("debian")))?;
            let s = crate::explore::explore(&t, opts)?;
            print!("{}: {}", t.kernel.id, crate::explore::report(&s));
            diverged |= !s.divergences.is_empty();
        }
    }
    Ok(if diverged { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
