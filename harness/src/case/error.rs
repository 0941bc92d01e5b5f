use super::positions::Pos;
use std::fmt;
use std::path::PathBuf;

/// A problem in a case file, located precisely enough for an editor to jump to.
#[derive(Debug, Clone)]
pub struct CaseError {
    pub file: PathBuf,
    pub pos: Pos,
    pub msg: String,
    pub hint: Option<String>,
}

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.pos.line, self.pos.col, self.msg)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CaseError {}

/// All problems found in one file.
#[derive(Debug, Clone)]
pub struct CaseErrors(pub Vec<CaseError>);

impl fmt::Display for CaseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CaseErrors {}
