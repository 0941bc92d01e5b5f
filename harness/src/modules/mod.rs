//! Case → kernel modules: C generation and Kbuild.

pub mod build;
pub mod gen;
pub mod prebuilt;
pub mod program;

pub use gen::KlpFields;

use crate::case::Case;
use crate::error::Result;
use crate::kernel::{caps::Caps, Kernel};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Builds (or reuses) every module and every program the case spawns;
/// returns name → file (`.ko` for a module), uploaded to the guest's /root
/// under the file's name. Prebuilt modules are checked against the kernel
/// first: a mismatch is found before anything compiles or boots.
pub fn build_all(case: &Case, k: &Kernel, caps: &Caps) -> Result<BTreeMap<String, PathBuf>> {
    build::sweep();
    let mut out = BTreeMap::new();
    for m in prebuilt::of(case) {
        out.insert(m.name.to_string(), prebuilt::prepare(&m, k)?);
    }
    for s in build::sources(case, caps) {
        let ko = build::build_one(&s, k)?;
        out.insert(s.name, ko);
    }
    for p in program::programs(case) {
        out.insert(program::file(p), program::build(p, k)?);
    }
    Ok(out)
}
