//! Seeded fuzzing of `case::parse` with mutations of the project's own case
//! files: whatever the input, an answer (no panic) within a second of CPU.
//! `KLPT_FUZZ_SEED=N cargo test --lib fuzz` replays a run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INSERTS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    ": ",
    "- ",
    "\n",
    "  ",
    "#",
    "|\n",
    "&a ",
    "*a",
    "!!str ",
    "~",
    "0x1f",
    "-1",
    "99999999999999999999",
    "\u{feff}",
    "\t",
];

fn mutate(src: &str, rng: &mut Rng) -> String {
    let mut b = src.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
        let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
        let at = rng.below(b.len() + 1);
        b = match rng.below(7) {
            0 if !b.is_empty() => {
                let k = rng.below(b.len());
                b[k] ^= 1 << rng.below(8);
                b
            }
            1 => lines.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, l)| *l).collect::<Vec<_>>().join(&b'\n'),
            2 => lines
                .iter()
                .enumerate()
                .flat_map(|(k, l)| if k == i { vec![*l, *l] } else { vec![*l] })
                .collect::<Vec<_>>()
                .join(&b'\n'),
            3 => {
                // Swap the values of two `key: value` lines.
                let value = |l: &[u8]| l.windows(2).position(|w| w == b": ").map(|p| p + 2);
                let mut ls: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                if let (Some(vi), Some(vj)) = (value(&ls[i]), value(&ls[j])) {
                    let (a, c) = (ls[i][vi..].to_vec(), ls[j][vj..].to_vec());
                    ls[i].truncate(vi);
                    ls[i].extend(c);
                    ls[j].truncate(vj);
                    ls[j].extend(a);
                }
                ls.join(&b'\n')
            }
            4 | 5 => {
                let ins = INSERTS[rng.below(INSERTS.len())].repeat(1 + rng.below(3));
                b.splice(at..at, ins.bytes());
                b
            }
            _ => {
                b.truncate(at);
                b
            }
        };
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// CPU time of this thread: what parsing costs, whatever else the (shared,
/// 2-core) machine is doing; wall time only guards against blocking.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Every file under `cases/` (cases, capabilities.yaml, README, kernel
/// series: non-YAML text is input too) and every bad case file.
fn corpus() -> Vec<(PathBuf, String)> {
    fn walk(d: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let root = crate::project_root();
    let mut files = Vec::new();
    walk(&root.join("cases"), &mut files);
    walk(&root.join("harness/tests/bad"), &mut files);
    files.sort();
    files.into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap())).collect()
}

#[test]
fn mutated_case_files_never_panic_or_hang() {
    let seed = std::env::var("KLPT_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6b6c_7074_u64);
    // splitmix64 of the seed: nearby seeds start far apart, and never at 0.
    let mut rng = Rng((seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1);
    let corpus = corpus();
    let per_file = 1000 / corpus.len() + 1;
    let mut count = 0;
    let mut rejected = 0;
    let mut slowest = Duration::ZERO;
    for (path, src) in &corpus {
        for _ in 0..per_file {
            let input = mutate(src, &mut rng);
            let (wall, cpu) = (Instant::now(), thread_cpu());
            let r = catch_unwind(AssertUnwindSafe(|| super::parse(path, &input)));
            let (took, waited) = (thread_cpu() - cpu, wall.elapsed());
            assert!(r.is_ok(), "seed {seed}: parse panicked on a mutation of {}:\n{input}", path.display());
            assert!(
                took < Duration::from_secs(1) && waited < Duration::from_secs(10),
                "seed {seed}: {} took {took:?} of CPU, {waited:?} in all, on:\n{input}",
                path.display()
            );
            slowest = slowest.max(took);
            rejected += usize::from(r.is_ok_and(|r| r.is_err()));
            count += 1;
        }
    }
    println!(
        "fuzz: seed {seed}, {count} mutated case files, {rejected} rejected, no panic, slowest {slowest:?} of CPU"
    );
    assert!(count >= 1000);
}
