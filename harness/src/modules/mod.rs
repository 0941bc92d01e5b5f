//! Case → kernel modules: C generation and Kbuild.

pub mod build;
pub mod gen;
pub mod prebuilt;
pub mod program;

pub use gen::KlpFields;
