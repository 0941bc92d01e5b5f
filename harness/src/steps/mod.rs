//! Steps → verdicts: running a case's steps in a guest and checking them.

pub mod assert;
pub mod errno;
pub mod health;
pub mod kmsg;
pub mod run;
pub mod script;

pub use run::{Session, Stop};
