//! Source positions of every node of a YAML document, keyed by path
//! (`steps[3].load.module`), so that semantic errors found after serde
//! deserialisation can still point at `file:line:column`.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Line and column, both 1-based, as editors and compilers print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Default)]
pub struct Positions {
    map: HashMap<String, Pos>,
    /// For block scalars (`|`, `>`) the first content line, which is what a
    /// `#line` directive for embedded C must name.
    block_body: HashMap<String, usize>,
}

impl Positions {
    /// Builds the map; a YAML syntax error yields an empty map (serde reports it).
    pub fn of(src: &str) -> Positions {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(src);
        let _ = parser.load(&mut b, false);
        Positions { map: b.map, block_body: b.block_body }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn get(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.map.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.map.get("").copied().unwrap_or(Pos { line: 1, col: 1 }),
            }
        }
    }

    /// The line where the text of the scalar at `path` starts.
    pub fn text_line(&self, path: &str) -> usize {
        self.block_body.get(path).copied().unwrap_or_else(|| self.get(path).line)
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: HashMap<String, Pos>,
    block_body: HashMap<String, usize>,
}

impl Builder {
    /// The path of the node that starts now, advancing the parent's cursor.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) if path.is_empty() => Some(k),
                Some(k) => Some(format!("{path}.{k}")),
                None => None, // this node is a key
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos { line: mark.line(), col: mark.col() + 1 };
        match ev {
            Event::Scalar(value, style, ..) => match self.next_path() {
                Some(path) => {
                    // Values of keys keep the key's position (errors name the key).
                    if self.map.contains_key(&path) && !path.ends_with(']') {
                        continue_value(&mut self.block_body, &path, &style, pos);
                        return;
                    }
                    if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) {
                        // The scanner marks a block scalar where its text begins.
                        self.block_body.insert(path.clone(), pos.line);
                    }
                    self.map.insert(path, pos);
                }
                None => {
                    // A key: remember it, and record where the key itself is.
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = if path.is_empty() { value.clone() } else { format!("{path}.{value}") };
                        // A block mapping is where its first key is.
                        self.map.entry(path.clone()).or_insert(pos);
                        self.map.insert(full, pos);
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                if matches!(ev, Event::SequenceStart(..)) {
                    self.map.entry(path.clone()).or_insert(pos);
                }
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.next_path();
            }
            _ => {}
        }
    }
}

fn continue_value(block_body: &mut HashMap<String, usize>, path: &str, style: &TScalarStyle, pos: Pos) {
    if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) {
        block_body.insert(path.to_string(), pos.line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_point_at_their_lines() {
        let src =
            "a: 1\nsteps:\n  - load: x\n  - unload:\n      module: y\nbody: |\n  int x;\n  int y;\n  int z;\nnext: 1\n";
        let p = Positions::of(src);
        assert_eq!(p.get("a").line, 1);
        assert_eq!(p.get("steps[0].load").line, 3);
        assert_eq!(p.get("steps[1].unload.module"), Pos { line: 5, col: 7 });
        assert_eq!(p.get("steps[0]"), Pos { line: 3, col: 5 });
        assert_eq!(p.get("steps[1].unload.nothing").line, 4);
        assert_eq!(p.text_line("body"), 7);
    }
}
