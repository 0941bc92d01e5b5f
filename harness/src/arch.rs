//! The architectures klpt tests: vocabulary shared by every layer, from the
//! case files' `arches:` on.

/// klpt's names, also the guests' `uname -m`.
pub const ARCHES: [&str; 4] = ["x86_64", "arm64", "s390x", "ppc64le"];
