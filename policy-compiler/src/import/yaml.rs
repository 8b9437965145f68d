//! A YAML tree that remembers the line of every node, built from
//! `yaml-rust2`'s marked parser events (serde_yaml drops positions, and the
//! import report names the line of every field it could not convert).
//!
//! Scalars stay strings (Kubernetes manifests quote or not at will: `80` and
//! `"80"` are the same port); anchors and aliases are refused rather than
//! expanded, since no Istio manifest needs them.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A node with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// 1-based line.
    pub line: usize,
}

/// A YAML value; every scalar is kept as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; keys are scalars.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The mapping entry `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping entries (empty for anything else).
    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A short name of the node's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Str(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Why a file is not YAML we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// The text is not YAML.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// An anchor, alias or complex key.
    #[error("line {line}: {what} is not supported in imported manifests")]
    Unsupported {
        /// 1-based line.
        line: usize,
        /// What was found.
        what: &'static str,
    },
}

enum Frame {
    Seq(Vec<Node>, usize),
    Map(Vec<(String, Node)>, Option<(String, usize)>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    documents: Vec<Node>,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, line: usize, what: &'static str) {
        if self.error.is_none() {
            self.error = Some(YamlError::Unsupported { line, what });
        }
    }

    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, key, _)) => match key.take() {
                Some((k, _)) => entries.push((k, node)),
                None => match node.value {
                    Value::Str(k) => *key = Some((k, node.line)),
                    Value::Null => *key = Some((String::new(), node.line)),
                    _ => {
                        let line = node.line;
                        self.fail(line, "a complex mapping key");
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, anchor, _) => {
                if anchor != 0 {
                    self.fail(line, "an anchor");
                }
                let plain = matches!(style, yaml_rust2::scanner::TScalarStyle::Plain);
                let value = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Value::Null
                } else {
                    Value::Str(text)
                };
                self.push_node(Node { value, line });
            }
            Event::SequenceStart(anchor, _) => {
                if anchor != 0 {
                    self.fail(line, "an anchor");
                }
                self.stack.push(Frame::Seq(Vec::new(), line));
            }
            Event::MappingStart(anchor, _) => {
                if anchor != 0 {
                    self.fail(line, "an anchor");
                }
                self.stack.push(Frame::Map(Vec::new(), None, line));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(items, line)) => Node {
                        value: Value::Seq(items),
                        line,
                    },
                    Some(Frame::Map(entries, _, line)) => Node {
                        value: Value::Map(entries),
                        line,
                    },
                    None => return,
                };
                self.push_node(node);
            }
            Event::Alias(_) => self.fail(line, "an alias"),
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Parses every document of `text` (an empty document is `Null`).
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, true)
        .map_err(|e| YamlError::Syntax {
            line: e.marker().line(),
            message: e.info().to_owned(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_values_and_documents() {
        let docs = parse("a: 1\nb:\n  - x\n  - \"80\"\n---\nc: ~\n").unwrap();
        assert_eq!(docs.len(), 2);
        let b = docs[0].get("b").unwrap();
        let Value::Seq(items) = &b.value else {
            panic!("not a list")
        };
        assert_eq!(items[1].as_str(), Some("80"));
        assert_eq!(items[1].line, 4);
        assert_eq!(docs[1].get("c").unwrap().value, Value::Null);
        assert_eq!(docs[1].get("c").unwrap().line, 6);
    }

    #[test]
    fn aliases_and_bad_syntax_are_refused_with_a_line() {
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert!(
            matches!(err, YamlError::Unsupported { line: 1, .. }),
            "{err}"
        );
        let err = parse("a: [1,\n").unwrap_err();
        assert!(matches!(err, YamlError::Syntax { .. }), "{err}");
    }
}
