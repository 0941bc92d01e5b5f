//! Guests: QEMU processes driven through an architecture's profile
//! ([`arch`]), reached over SSH.

pub mod arch;
pub mod binary;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod ssh;
