//! Quoting for POSIX shells, used for guest commands and QEMU's `exec:`.

/// Single-quotes `s` as one shell word: nothing inside is syntax.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
