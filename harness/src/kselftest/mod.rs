//! The kernel tree's own livepatch selftests (`tools/testing/selftests/livepatch`)
//! as klpt trials: built from the tree of the kernel under test ([`build`]),
//! their scenarios read from the scripts ([`scripts`]), run in klpt's guest
//! with the selftests image (`images/selftests.yaml`) and decided from the
//! scripts' own output ([`parse`], [`run`]). Each scenario is a trial named
//! `<arch>/<kernel>/kselftest/<script>/<NN>`, reported in KTAP and JUnit
//! like klpt's cases.

pub mod build;
pub mod parse;
pub mod run;
pub mod scripts;

pub use run::{prepare, Suite};
