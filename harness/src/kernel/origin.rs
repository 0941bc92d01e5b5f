//! Where a kernel came from: what a report (a KCIDB checkout and build
//! record, an exported artifact's manifest) needs to name it beyond its
//! trial id. Filled by whoever produced the kernel; empty fields are unknown.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// What was built or fetched: `debian:linux-source-7.2:7.2.13` (Debian's
    /// source), `dir:/path/to/tree` (a user's tree), `debian-package:linux-image-…`
    /// (Debian's binary kernel), `build-dir:/path` (a tree klpt did not build).
    pub source: String,
    /// Patch series applied on top, by name (file or directory name), in order.
    #[serde(default)]
    pub series: Vec<String>,
    /// The patch files of the series, by name, in the order applied.
    #[serde(default)]
    pub patches: Vec<String>,
    /// KCIDB's `patchset_hash`: sha256 over the newline-terminated sha256
    /// hex digests of each patch, in order; None without patches.
    #[serde(default)]
    pub patchset_hash: Option<String>,
    /// How the configuration was made (`tinyconfig + livepatch.config + x86_64.config`).
    #[serde(default)]
    pub config_name: Option<String>,
    /// sha256 of the resulting `.config`.
    #[serde(default)]
    pub config_hash: Option<String>,
    /// Compiler and linker (`--version` first lines).
    #[serde(default)]
    pub toolchain: Option<String>,
}

/// KCIDB's patchset hash of `patches` (see [`Origin::patchset_hash`]).
pub fn patchset_hash(patches: &[impl AsRef<Path>]) -> std::io::Result<Option<String>> {
    if patches.is_empty() {
        return Ok(None);
    }
    let mut outer = Sha256::new();
    for p in patches {
        let inner = Sha256::digest(std::fs::read(p)?);
        outer.update(format!("{}\n", hex(&inner)));
    }
    Ok(Some(hex(&outer.finalize())))
}

/// Full sha256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(hex(&Sha256::digest(std::fs::read(path)?)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn patchset_hash_is_a_hash_of_hashes() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "x").unwrap();
        std::fs::write(&b, "y").unwrap();
        assert_eq!(super::patchset_hash(&[] as &[&std::path::Path]).unwrap(), None);
        let ab = super::patchset_hash(&[&a, &b]).unwrap().unwrap();
        let ba = super::patchset_hash(&[&b, &a]).unwrap().unwrap();
        assert_ne!(ab, ba, "order matters");
        // sha256("x") and sha256("y"), newline-terminated, hashed again.
        let expect = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\na1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa\n";
        assert_eq!(ab, super::hex(&<sha2::Sha256 as sha2::Digest>::digest(expect)));
    }
}
