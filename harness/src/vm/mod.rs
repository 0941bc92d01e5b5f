//! Guests: QEMU processes driven through an [`Arch`] profile, reached over SSH.

pub mod arch;
pub mod binary;
pub mod cleanup;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod ssh;

pub use arch::Arch;
