//! A reference model of the livepatch core: pure (no I/O), for the stock
//! semantics and each RFC revision klpt knows, chosen from the kernel's
//! probed features. For an operation it predicts the result (success or
//! the refusal, hence the errno), the livepatch log lines, and through
//! [`Kernel::observe`] the sysfs tree, the stack order, and what each
//! function runs for new tasks and for a parked, unswitched observer.
//! `klpt explore` compares a real kernel against it after every operation.

mod kernel;
mod rules;
mod spec;
mod view;

pub use kernel::{Kernel, Outcome, Prediction};
pub use rules::{accepted_conflicts, readme_section, Rule};
pub use spec::{Features, FuncKey, Op, PatchSpec, Semantics};
pub use view::{FuncView, Impl, Observation, PatchView};

#[cfg(test)]
mod tests;
