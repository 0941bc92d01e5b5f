//! `klpt report merge`: the results files of several runs of one plan
//! (its shards) as one run. The merged records go through the same
//! reporters as a run's, in plan order, so the reports equal those of one
//! unsharded run but for timings.

use super::events::{Reporter, RunEvent};
use super::reporters::{Files, Human};
use crate::report::results::{PlanRecord, RunResults, TrialResult, FORMAT};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Reads a `--results` file.
pub fn read(path: &std::path::Path) -> Result<RunResults, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), e.line()))?;
    match v.get("format").and_then(|f| f.as_u64()) {
        Some(f) if f == u64::from(FORMAT) => {}
        Some(f) => {
            return Err(format!(
                "{}: results format {f}, this klpt reads format {FORMAT} (merge with the klpt that wrote it)",
                path.display()
            ))
        }
        None => {
            return Err(format!(
                "{}: not a klpt results file (no `format`; write one with `klpt run --results FILE`)",
                path.display()
            ))
        }
    }
    serde_json::from_value(v).map_err(|e| format!("{}: not a klpt results file: {e}", path.display()))
}

/// Merges runs of one plan: each planned trial takes its result from the
/// run that holds it; a trial no run holds is unfinished.
pub fn merge(runs: &[(PathBuf, RunResults)]) -> Result<RunResults, String> {
    let Some((first_path, first)) = runs.first() else { return Err("no results files to merge".into()) };
    let mut by_name: BTreeMap<&str, (&PathBuf, &TrialResult)> = BTreeMap::new();
    for (path, run) in runs {
        if run.plan.trials != first.plan.trials {
            let a: Vec<&str> = first.plan.trials.iter().map(|t| t.name.as_str()).collect();
            let b: Vec<&str> = run.plan.trials.iter().map(|t| t.name.as_str()).collect();
            let diff = a
                .iter()
                .find(|n| !b.contains(n))
                .map(|n| format!("{n} is only in {}", first_path.display()))
                .or_else(|| b.iter().find(|n| !a.contains(n)).map(|n| format!("{n} is only in {}", path.display())))
                .unwrap_or_else(|| "the same trials in another order or of another kind".into());
            return Err(format!(
                "{} and {} are results of different plans ({diff}): merge the shards of one `klpt run` command line",
                first_path.display(),
                path.display()
            ));
        }
        for r in &run.results {
            if let Some((other, _)) = by_name.insert(r.name.as_str(), (path, r)) {
                return Err(format!(
                    "{} is in both {} and {}: merge each shard once",
                    r.name,
                    other.display(),
                    path.display()
                ));
            }
        }
    }
    let missing: Vec<&str> =
        first.plan.trials.iter().map(|t| t.name.as_str()).filter(|n| !by_name.contains_key(n)).collect();
    let partitions: Vec<String> = runs
        .iter()
        .map(|(p, r)| format!("{} ({})", p.display(), r.plan.partition.as_deref().unwrap_or("unsharded")))
        .collect();
    let results = first
        .plan
        .trials
        .iter()
        .map(|t| match by_name.get(t.name.as_str()) {
            Some((_, r)) => (*r).clone(),
            None => TrialResult::unfinished(
                t,
                &format!("no results file holds this trial (merged: {})", partitions.join(", ")),
            ),
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "warning: {} planned trial(s) are in none of the results files (a shard's results are missing?), first: {}",
            missing.len(),
            missing[0]
        );
    }
    Ok(RunResults {
        format: FORMAT,
        klpt_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix: runs.iter().map(|(_, r)| r.started_unix).min().unwrap_or(0),
        secs: runs.iter().map(|(_, r)| r.secs).fold(0.0, f64::max),
        cancelled: runs.iter().any(|(_, r)| r.cancelled),
        // Each shard has its own; every trial's record names its own directory.
        artifacts: None,
        plan: PlanRecord {
            trials: first.plan.trials.clone(),
            partition: None,
            mine: first.plan.trials.iter().map(|t| t.name.clone()).collect(),
        },
        results,
        kernels: runs.iter().flat_map(|(_, r)| r.kernels.clone()).collect(),
    })
}

/// Sends a finished run's records through `reporters` as its events.
pub fn replay(run: &RunResults, reporters: &mut [Box<dyn Reporter>]) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut send = |ev: &RunEvent<'_>| {
        for r in reporters.iter_mut() {
            if let Err(e) = r.report(ev) {
                errors.push(e);
            }
        }
    };
    send(&RunEvent::RunStarted { plan: &run.plan, threads: 0, started_unix: run.started_unix });
    let position: BTreeMap<&str, usize> =
        run.plan.trials.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    for r in &run.results {
        send(&RunEvent::TrialFinished { index: position.get(r.name.as_str()).copied().unwrap_or(0), result: r });
    }
    send(&RunEvent::RunFinished {
        cancelled: run.cancelled,
        secs: run.secs,
        totals: crate::report::results::totals(&run.results),
        results: run,
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// `klpt report merge FILES...`: Ok(false) when a merged trial failed.
pub fn command(files: &[PathBuf], out: Files) -> Result<bool, String> {
    out.check()?;
    let runs = files.iter().map(|p| read(p).map(|r| (p.clone(), r))).collect::<Result<Vec<_>, _>>()?;
    let merged = merge(&runs)?;
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(Human::new(false, 0)), Box::new(out)];
    replay(&merged, &mut reporters)?;
    Ok(!merged.results.iter().any(|r| r.verdict.is_failure()))
}
