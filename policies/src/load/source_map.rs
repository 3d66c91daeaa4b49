//! Field path → source position, so that semantic errors found after
//! deserialisation (duplicate ids, bad templates...) can name a line.
//!
//! serde gives no spans, so the text is walked a second time with a YAML
//! event parser that reports markers. Only positions are kept.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// 1-based line and column of the node at a field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct SourceMap {
    positions: HashMap<String, Position>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

// Nested more deeply than any policy; guards against pathological input.
const MAX_DEPTH: usize = 64;

impl SourceMap {
    /// Builds the map for the first document of `text`. Unparseable text
    /// gives an empty (or partial) map: syntax errors are reported by serde.
    pub fn build(text: &str) -> SourceMap {
        let mut map = SourceMap::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        let mut seen_root = false;
        while let Ok((event, mark)) = parser.next_token() {
            let pos = Position {
                line: mark.line(),
                column: mark.col() + 1,
            };
            match event {
                Event::StreamEnd | Event::DocumentEnd => break,
                Event::Scalar(value, ..) => {
                    if let Some(path) = map.node_path(&mut stack, &mut seen_root, Some(value)) {
                        map.positions.entry(path).or_insert(pos);
                    }
                }
                Event::Alias(_) => {
                    if let Some(path) = map.node_path(&mut stack, &mut seen_root, None) {
                        map.positions.entry(path).or_insert(pos);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_map = matches!(event, Event::MappingStart(..));
                    let Some(path) = map.node_path(&mut stack, &mut seen_root, None) else {
                        // A complex key: not something a policy has.
                        break;
                    };
                    map.positions.entry(path.clone()).or_insert(pos);
                    if stack.len() >= MAX_DEPTH {
                        break;
                    }
                    stack.push(if is_map {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        map
    }

    /// Called for every node start. Returns the node's path when it is a
    /// value (not a mapping key); records keys as pending for their value.
    fn node_path(
        &self,
        stack: &mut [Frame],
        seen_root: &mut bool,
        scalar: Option<String>,
    ) -> Option<String> {
        match stack.last_mut() {
            None => {
                if *seen_root {
                    return None;
                }
                *seen_root = true;
                Some(String::new())
            }
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key. Non-scalar keys have no path.
                    *key = Some(scalar?);
                    None
                }
            },
        }
    }

    /// The position of exactly `path`, if the text has that node.
    pub fn locate_exact(&self, path: &str) -> Option<Position> {
        self.positions.get(path).copied()
    }

    /// The position of `path`, or of its nearest recorded ancestor (a field
    /// that was omitted is reported at its parent).
    pub fn locate(&self, path: &str) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_fields_and_items() {
        let text = "apiVersion: v\nspec:\n  rules:\n    - id: a\n      ports: [\"1\", \"2\"]\n    - id: b\n      peer: { cidr: 192.0.2.0/24 }\n";
        let m = SourceMap::build(text);
        assert_eq!(
            m.locate("apiVersion"),
            Some(Position {
                line: 1,
                column: 13
            })
        );
        assert_eq!(m.locate("spec.rules[0].id").map(|p| p.line), Some(4));
        assert_eq!(m.locate("spec.rules[0].ports[1]").map(|p| p.line), Some(5));
        assert_eq!(m.locate("spec.rules[1]").map(|p| p.line), Some(6));
        assert_eq!(m.locate("spec.rules[1].peer.cidr").map(|p| p.line), Some(7));
        // Missing field: falls back to the parent.
        assert_eq!(
            m.locate("spec.rules[1].http.paths[0]").map(|p| p.line),
            Some(6)
        );
    }

    #[test]
    fn garbage_gives_partial_map_without_panicking() {
        for t in ["", ":", "[[[", "a: [1, {b: ", "? [a]\n: b", "- - - x"] {
            let _ = SourceMap::build(t).locate("a.b[0]");
        }
    }
}
