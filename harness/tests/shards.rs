//! Sharding: a suite run whole and as three shards in parallel processes
//! (`--partition count:K/3`), the shards' results merged by `klpt report
//! merge`, gives the same verdicts and the same KTAP, JUnit and matrix
//! reports, timings aside. Real runs of the real `klpt` on the default
//! kernel (Debian's), four quick stock cases.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const CASES: [&str; 4] = ["basic-enable-disable", "refusal-logged-once", "atomic-replace", "cumulative-upgrade"];

fn klpt(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_klpt"));
    c.args(args).arg("--accel").arg("tcg");
    c
}

fn ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// JUnit without its timings.
fn untimed(junit: &str) -> String {
    regex::Regex::new(r#" time="[0-9.]+""#).unwrap().replace_all(junit, "").into_owned()
}

/// (trial name, verdict) of a results file, in its order.
fn verdicts(results: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&read(results)).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["verdict"].as_str().unwrap().to_string()))
        .collect()
}

/// The report flags of a run or merge writing `<dir>/<stem>.*`.
fn reports(dir: &Path, stem: &str) -> Vec<String> {
    ["ktap", "junit", "results", "matrix"]
        .iter()
        .flat_map(|k| [format!("--{k}"), dir.join(format!("{stem}.{k}")).to_string_lossy().into_owned()])
        .collect()
}

#[test]
fn three_shards_merge_into_the_unsharded_run() {
    let scratch = tempfile::Builder::new().prefix("klpt-shards-").tempdir().unwrap();
    let dir = scratch.path();
    let stock = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases/stock");
    let cases: Vec<String> =
        CASES.iter().map(|c| stock.join(format!("{c}.yaml")).to_string_lossy().into_owned()).collect();
    let run = |extra: &[String], stem: &str| -> Command {
        let mut args = vec!["run".to_string()];
        args.extend(cases.iter().cloned());
        args.extend(["--artifacts".to_string(), dir.join(format!("art-{stem}")).to_string_lossy().into_owned()]);
        args.extend(reports(dir, stem));
        args.extend(extra.iter().cloned());
        klpt(&args)
    };

    // The shards split the plan: each trial in exactly one, hash and count alike.
    let list = |p: &str| -> Vec<String> {
        let mut args = vec!["run".to_string()];
        args.extend(cases.iter().cloned());
        args.extend(["--list".into(), "--partition".into(), p.into()]);
        let o = klpt(&args).output().unwrap();
        ok("--list", &o);
        String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
    };
    for kind in ["count", "hash"] {
        let mut all: Vec<String> = (1..=3).flat_map(|k| list(&format!("{kind}:{k}/3"))).collect();
        all.sort();
        let mut whole = list(&format!("{kind}:1/1"));
        whole.sort();
        assert_eq!(all, whole, "{kind} shards do not cover the plan once");
        assert_eq!(whole.len(), CASES.len());
    }

    // Unsharded, then three shards at once, one guest each.
    let o = run(&[], "whole").output().unwrap();
    ok("the unsharded run", &o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("test result: ok. 4 passed; 0 failed;"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let shards: Vec<_> = (1..=3)
        .map(|k| {
            run(
                &["--partition".into(), format!("count:{k}/3"), "--test-threads".into(), "1".into()],
                &format!("shard{k}"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (k, s) in shards.into_iter().enumerate() {
        ok(&format!("shard {}", k + 1), &s.wait_with_output().unwrap());
    }
    let results = |stem: &str| dir.join(format!("{stem}.results")).to_string_lossy().into_owned();
    let mut args = vec!["report".to_string(), "merge".into(), results("shard1"), results("shard2"), results("shard3")];
    args.extend(reports(dir, "merged"));
    let o = Command::new(env!("CARGO_BIN_EXE_klpt")).args(&args).output().unwrap();
    ok("merge", &o);

    let f = |stem: &str, k: &str| dir.join(format!("{stem}.{k}"));
    assert_eq!(verdicts(&f("merged", "results")), verdicts(&f("whole", "results")));
    assert_eq!(read(&f("merged", "ktap")), read(&f("whole", "ktap")));
    assert_eq!(untimed(&read(&f("merged", "junit"))), untimed(&read(&f("whole", "junit"))));
    assert_eq!(read(&f("merged", "matrix")), read(&f("whole", "matrix")));

    // A missing shard: its trials are unfinished, and the merge fails.
    let o = Command::new(env!("CARGO_BIN_EXE_klpt"))
        .args(["report", "merge", &results("shard1"), &results("shard2"), "--ktap"])
        .arg(f("partial", "ktap"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "a merge missing a shard must fail:\n{}", String::from_utf8_lossy(&o.stderr));
    let partial = read(&f("partial", "ktap"));
    assert!(partial.contains("# unfinished: no results file holds this trial"), "{partial}");
    // A shard merged twice is refused.
    let o = Command::new(env!("CARGO_BIN_EXE_klpt"))
        .args(["report", "merge", &results("shard1"), &results("shard1")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("merge each shard once"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
