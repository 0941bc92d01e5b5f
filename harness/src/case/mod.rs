//! Case files: YAML → typed, validated [`Case`]s.

mod assertion;
mod code;
#[cfg(test)]
mod code_tests;
mod depth;
mod doc;
mod error;
#[cfg(test)]
mod fuzz;
mod known;
mod load;
pub mod model;
pub mod positions;
mod prebuilt;
mod read;
mod sequence;
mod steps;
#[cfg(test)]
mod tests;
mod value;

pub use code::{OBJECT_CALLBACKS, STATE_CALLBACKS_RETURNING};
pub use error::{CaseError, CaseErrors};
pub use load::{is_c_ident, is_symbol, load, parse, scalar};
pub use model::*;
pub use read::discover;
pub use steps::groups;
