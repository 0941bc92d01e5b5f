//! The cache directory and content hashing. Everything klpt downloads or
//! builds lives below one root, keyed by the hash of its inputs.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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
    let d = root().join(sub);
    let _ = std::fs::create_dir_all(&d);
    d
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
