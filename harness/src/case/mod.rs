//! Case files: YAML → typed, validated [`Case`]s.

mod error;
mod load;
pub mod model;
pub mod positions;

pub use error::{CaseError, CaseErrors};
pub use load::{discover, is_c_ident, load, parse, scalar};
pub use model::*;
