//! C function signatures as a case writes them (`signature:` of a
//! replaced function): read here, where the case is checked, and used by
//! `modules` to declare the replacement.

/// `"int (struct seq_file *m, void *v)"` → `("int", "struct seq_file *m, void *v")`.
pub fn parse_signature(sig: &str) -> Option<(String, String)> {
    let open = sig.find('(')?;
    let close = sig.rfind(')')?;
    let ret = sig[..open].trim();
    if ret.is_empty() || close < open || !sig[close + 1..].trim().is_empty() {
        return None;
    }
    Some((ret.to_string(), sig[open + 1..close].trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(
            parse_signature("int (struct seq_file *m, void *v)"),
            Some(("int".into(), "struct seq_file *m, void *v".into()))
        );
        assert_eq!(parse_signature("void (void)"), Some(("void".into(), "void".into())));
        assert_eq!(parse_signature("(void)"), None);
        assert_eq!(parse_signature("int x"), None);
    }
}
