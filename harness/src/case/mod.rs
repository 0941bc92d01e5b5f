//! Case files: YAML → typed, validated [`Case`]s.

mod assertion;
mod code;
#[cfg(test)]
mod code_tests;
mod depth;
mod doc;
pub mod errno;
mod error;
#[cfg(test)]
mod fuzz;
mod known;
pub mod ko;
mod load;
pub mod model;
pub mod positions;
pub(crate) mod prebuilt;
mod read;
mod sequence;
mod signature;
mod steps;
#[cfg(test)]
mod tests;
mod value;

pub use code::{OBJECT_CALLBACKS, STATE_CALLBACKS_RETURNING};
pub use error::{CaseError, CaseErrors};
pub use load::{is_c_ident, is_symbol, load, parse, scalar};
pub use model::*;
pub use read::discover;
pub use signature::parse_signature;
pub use steps::groups;
