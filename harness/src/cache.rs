//! The cache directory and content hashing. Everything klpt downloads or
//! builds lives below one root, keyed by the hash of its inputs.

use crate::cleanup::TempDir;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `$KLPT_CACHE`, else `$XDG_CACHE_HOME/klpt`, else `~/.cache/klpt`.
pub fn root() -> PathBuf {
    if let Some(p) = std::env::var_os("KLPT_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("klpt");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/klpt")
}

pub fn dir(sub: &str) -> PathBuf {
    let redirected =
        REDIRECTS.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(s, _)| s == sub).map(|(_, d)| d.clone());
    let d = redirected.unwrap_or_else(|| root().join(sub));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Cache subdirectories sent elsewhere for a while (see [`Redirect`]).
static REDIRECTS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// While it lives, `dir(sub)` for each of `subs` is a directory of its own
/// below `to`: `klpt bench` measures cold module builds this way without
/// evicting anything from the real cache.
pub struct Redirect {
    subs: Vec<String>,
}

impl Redirect {
    pub fn new(subs: &[&str], to: &Path) -> Redirect {
        let mut r = REDIRECTS.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs {
            r.push((s.to_string(), to.join(s)));
        }
        Redirect { subs: subs.iter().map(|s| s.to_string()).collect() }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        REDIRECTS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(s, _)| !self.subs.contains(s));
    }
}

#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a labelled part; labels keep ("ab","c") and ("a","bc") apart.
    pub fn part(&mut self, label: &str, data: impl AsRef<[u8]>) -> &mut Self {
        let d = data.as_ref();
        self.0.update(label.as_bytes());
        self.0.update((d.len() as u64).to_le_bytes());
        self.0.update(d);
        self
    }
    pub fn file(&mut self, label: &str, path: &Path) -> std::io::Result<&mut Self> {
        let data = std::fs::read(path)?;
        Ok(self.part(label, data))
    }
    /// 16 hex digits: plenty for a cache key.
    pub fn hex(&self) -> String {
        self.0.clone().finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Moves a finished build into place; if another run won the race, keeps theirs.
pub fn publish(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::rename(tmp, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.exists() => {
            let _ = std::fs::remove_dir_all(tmp);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Publishes a finished temporary directory as `dest` (see `publish`),
/// untracked and renamed at once: a signal in between would leave it.
pub fn publish_temp(tmp: TempDir, dest: &Path) -> std::io::Result<()> {
    crate::cleanup::holding_off(|| {
        let tmp = tmp.keep();
        let r = publish(&tmp, dest);
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        r
    })
}

/// The lock file inside an in-progress build directory.
const LOCK: &str = ".klpt-lock";
/// The lock file, in a directory holding build directories, that orders
/// their creation against `sweep` (shared to create, exclusive to sweep).
const GUARD: &str = ".klpt-scratch-lock";
/// A build directory without a lock file (left by a klpt that predates the
/// locks, or killed between creating the directory and its lock file) counts
/// as abandoned only once it is this old.
const UNLOCKED_STALE: Duration = Duration::from_secs(3600);

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn guard(parent: &Path, op: libc::c_int) -> std::io::Result<File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(parent.join(GUARD))?;
    flock(&f, op)?;
    Ok(f)
}

/// A build's temporary directory in the cache (e.g. `modules/.build-XXXX`),
/// removed on drop and on interruption, and locked (flock on a file inside
/// it) for its whole lifetime, so that `sweep` can tell a killed run's
/// leftovers from a concurrent run's work in progress.
pub struct Scratch {
    dir: TempDir,
    _lock: File,
}

impl Scratch {
    pub fn new(parent: &Path, prefix: &str) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(parent)?;
        // Shared guard: a sweep never sees the directory without its held lock.
        let _guard = guard(parent, libc::LOCK_SH)?;
        // Not removed by a signal handler while the lock file is created in it.
        crate::cleanup::holding_off(|| {
            let dir = TempDir::new_in(parent, prefix)?;
            let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.path().join(LOCK))?;
            flock(&lock, libc::LOCK_EX | libc::LOCK_NB)?;
            Ok(Scratch { dir, _lock: lock })
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes the whole directory as `dest` (see `publish`), still locked
    /// while it is renamed; the lock file does not stay in the entry.
    pub fn publish(self, dest: &Path) -> std::io::Result<()> {
        let Scratch { dir, _lock } = self;
        crate::cleanup::holding_off(|| {
            let r = publish_temp(dir, dest);
            let _ = std::fs::remove_file(dest.join(LOCK));
            r
        })
    }
}

/// Removes the directories named `prefix*` in `parent` that no live klpt
/// holds: a SIGKILLed klpt's partial builds. A process still running in one
/// (a compiler orphaned when `make` died with klpt) is killed first. A
/// directory whose lock is held, a concurrent run's build, is left alone.
/// Returns the directories removed.
pub fn sweep(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(parent) else { return removed };
    let candidates: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    if candidates.is_empty() {
        return removed;
    }
    let Ok(_guard) = guard(parent, libc::LOCK_EX) else { return removed };
    for dir in candidates {
        // Only another sweep could take a lock released here, and the
        // exclusive guard keeps every other sweep out until we are done.
        let abandoned = match File::open(dir.join(LOCK)) {
            Ok(f) => flock(&f, libc::LOCK_EX | libc::LOCK_NB).is_ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let age = std::fs::metadata(&dir).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                age.is_some_and(|a| a >= UNLOCKED_STALE)
            }
            Err(_) => false,
        };
        if !abandoned {
            continue;
        }
        kill_users(&dir);
        // A compiler killed mid-write may have raced the first attempt.
        if std::fs::remove_dir_all(&dir).or_else(|_| std::fs::remove_dir_all(&dir)).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// SIGKILLs this user's processes that work in `dir` (their cwd is in it or
/// their command line names it) and waits briefly until they are gone.
fn kill_users(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let needle = dir.as_os_str().as_bytes();
    // SAFETY: plain getters.
    let (me, uid) = (unsafe { libc::getpid() }, unsafe { libc::geteuid() });
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    let mut killed = Vec::new();
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me || e.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let cwd_in = std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(dir));
        // The path itself or below it, not a longer name that starts alike.
        let named = std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
            c.windows(needle.len() + 1).any(|w| w.starts_with(needle) && matches!(w[needle.len()], b'/' | 0))
        });
        if cwd_in || named {
            // SAFETY: kill(2); the process works in an abandoned build directory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.push(pid);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while killed.iter().any(|&p| crate::cleanup::proc_stat(p).is_some_and(|(state, _)| state != 'Z'))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}
