//! Nothing outlives a run: every QEMU process and temporary directory is
//! registered here, and Ctrl-C, SIGTERM or SIGHUP kill and remove them all
//! before klpt exits. Normal paths clean up through `Drop`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PIDS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub fn track_pid(pid: i32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
}
pub fn untrack_pid(pid: i32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
}

/// Kills every tracked process and removes every tracked directory.
pub fn cleanup_all() {
    for pid in std::mem::take(&mut *PIDS.lock().unwrap_or_else(|e| e.into_inner())) {
        // SAFETY: kill(2) with a pid we spawned; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for d in std::mem::take(&mut *DIRS.lock().unwrap_or_else(|e| e.into_inner())) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Installs the signal handlers once; call at startup.
pub fn install_signal_handlers() {
    std::thread::spawn(|| {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(_) => return,
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) else { return };
            let code = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
                _ = hup.recv() => 129,
            };
            eprintln!("\nklpt: interrupted; stopping guests and removing temporary files");
            cleanup_all();
            std::process::exit(code);
        });
    });
}

/// A temporary directory that is removed on drop and on interruption.
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<TempDir> {
        std::fs::create_dir_all(parent)?;
        let t = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        DIRS.lock().unwrap_or_else(|e| e.into_inner()).insert(t.path().to_path_buf());
        Ok(TempDir(Some(t)))
    }
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("live tempdir").path()
    }
    /// Keeps the directory (it becomes a cache entry); returns its path.
    pub fn keep(mut self) -> PathBuf {
        let t = self.0.take().expect("live tempdir");
        DIRS.lock().unwrap_or_else(|e| e.into_inner()).remove(t.path());
        t.keep()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            DIRS.lock().unwrap_or_else(|e| e.into_inner()).remove(t.path());
        }
    }
}
