//! A linear pre-pass over a case file's text, before any YAML parser sees
//! it: nesting deeper than [`MAX_DEPTH`] and anchors/aliases are refused.
//! Both parsers' cost grows with depth (100k `[` took 20 s), and an alias
//! can make a small file expand into a huge tree. Real cases nest about 8
//! levels and never use aliases.
//!
//! The scan knows just enough YAML to not count brackets inside quotes,
//! comments and block scalars (`|` bodies of C code). It may overestimate a
//! block nesting by a level or two, which the limit's headroom absorbs.

use super::positions::Pos;

pub const MAX_DEPTH: usize = 64;

/// The first place where the text nests too deep or uses an alias.
pub fn check(src: &str) -> Result<(), (Pos, String, String)> {
    let mut s = Scan::default();
    // YAML breaks lines at `\r\n`, `\n` and a lone `\r`; so does the scan.
    let lines = src.split('\n').flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'));
    for (n, line) in lines.enumerate() {
        s.line(n + 1, line)?;
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    /// Indentations of the open block collections.
    indents: Vec<usize>,
    /// Open `[` / `{`.
    flow: usize,
    /// An open quoted scalar (it may span lines).
    quote: Option<char>,
    /// Inside a block scalar opened on a line with this indentation.
    block_scalar: Option<usize>,
}

impl Scan {
    fn line(&mut self, n: usize, line: &str) -> Result<(), (Pos, String, String)> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if let Some(parent) = self.block_scalar {
            if rest.trim().is_empty() || indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        if self.quote.is_none() && self.flow == 0 {
            if rest.trim().is_empty() || rest.starts_with('#') {
                return Ok(());
            }
            while self.indents.last().is_some_and(|&i| i > indent) {
                self.indents.pop();
            }
            if self.indents.last().is_none_or(|&i| i < indent) {
                self.indents.push(indent);
            }
        }
        if self.indents.len() > MAX_DEPTH {
            let msg = format!("the YAML nests deeper than {MAX_DEPTH} levels");
            return Err((Pos { line: n, col: indent + 1 }, msg, "flatten the structure".to_string()));
        }
        let mut depth = self.indents.len();
        let too_deep = |col: usize| {
            let msg = format!("the YAML nests deeper than {MAX_DEPTH} levels");
            Err((Pos { line: n, col }, msg, "case files need a few levels; flatten the structure".to_string()))
        };
        // Whether a scalar or collection may start here (not inside a plain scalar).
        let mut at_start = true;
        let mut prev = ' ';
        let mut chars = rest.chars().enumerate().peekable();
        while let Some((i, c)) = chars.next() {
            let col = indent + i + 1;
            let next = chars.peek().map(|&(_, c)| c);
            if let Some(q) = self.quote {
                // `\x` in double quotes and `''` in single quotes do not close them.
                if (q == '"' && c == '\\') || (q == '\'' && c == q && next == Some('\'')) {
                    chars.next();
                } else if c == q {
                    self.quote = None;
                }
                prev = c;
                continue;
            }
            let blank_after = matches!(next, None | Some(' ' | '\t'));
            match c {
                ' ' | '\t' => {}
                '#' if matches!(prev, ' ' | '\t') => return Ok(()),
                '"' | '\'' if at_start => self.quote = Some(c),
                '[' | '{' if at_start || self.flow > 0 => {
                    self.flow += 1;
                    if depth + self.flow > MAX_DEPTH {
                        return too_deep(col);
                    }
                    at_start = true;
                }
                ']' | '}' if self.flow > 0 => {
                    self.flow -= 1;
                    at_start = false;
                }
                ',' if self.flow > 0 => at_start = true,
                '-' | '?' if at_start && self.flow == 0 && blank_after => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return too_deep(col);
                    }
                }
                ':' if blank_after || (self.flow > 0 && matches!(next, Some(',' | ']' | '}'))) => at_start = true,
                '&' | '*' if at_start => {
                    let msg = "YAML anchors and aliases (`&name`, `*name`) are not supported in case files".to_string();
                    return Err((Pos { line: n, col }, msg, "write the value out where it is used".to_string()));
                }
                '|' | '>' if at_start && self.flow == 0 => {
                    self.block_scalar = Some(indent);
                    return Ok(());
                }
                _ => at_start = false,
            }
            prev = c;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(s: &str) -> Option<usize> {
        check(s).err().map(|(p, _, _)| p.line)
    }

    #[test]
    fn flow_and_block_nesting_are_bounded() {
        assert_eq!(deep(&format!("a: {}", "[".repeat(100_000))), Some(1));
        assert_eq!(deep(&"- ".repeat(200)), Some(1));
        let block: String = (0..100).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert_eq!(deep(&block), Some(MAX_DEPTH + 1));
        assert_eq!(deep(&block.replace('\n', "\r")), Some(MAX_DEPTH + 1));
        assert_eq!(deep(&block.replace('\n', "\r\n")), Some(MAX_DEPTH + 1));
        assert_eq!(deep(&format!("a: {}1{}", "[".repeat(60), "]".repeat(60))), None);
    }

    #[test]
    fn brackets_in_text_do_not_count() {
        let b = "[".repeat(100);
        for s in [
            format!("a: \"{b}\"\n"),
            format!("a: '{b}'\n"),
            format!("a: x{b}\n"),
            format!("a: 1 # {b}\n"),
            format!("body: |\n  {b}\n  {{{{{{\nnext: [1]\n"),
            format!("a: \"multi\n  line {b}\"\nb: 'it''s {b}'\n"),
        ] {
            assert_eq!(deep(&s), None, "{s}");
        }
    }

    #[test]
    fn aliases_are_refused() {
        assert!(check("a: &x [1]\nb: *x\n").unwrap_err().1.contains("aliases"));
        assert!(check("a: 'x &y *z'\nb: x&y\n").is_ok());
    }

    #[test]
    fn every_case_in_the_tree_passes() {
        let root = crate::project_root();
        for f in super::super::discover(&[root.join("cases"), root.join("harness/tests/wrong")]).unwrap() {
            let t = std::fs::read_to_string(&f).unwrap();
            assert!(check(&t).is_ok(), "{}: {:?}", f.display(), check(&t));
        }
    }
}
