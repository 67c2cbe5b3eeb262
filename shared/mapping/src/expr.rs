//! Parsing and evaluating one mapping expression.

use crate::transform::Transform;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("field {f}: ")).unwrap_or_default())]
pub struct MappingError {
    pub field: Option<String>,
    pub message: String,
}

impl MappingError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }

    pub fn for_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }
}

/// `alternative ?? alternative ...`
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq)]
struct Alternative {
    term: Term,
    transforms: Vec<Transform>,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Path { text: String, segments: Vec<String> },
    Constant(String),
}

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, MappingError> {
        let alternatives = split_outside_quotes(text, "??")
            .into_iter()
            .map(Alternative::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expression { alternatives })
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.alternatives.iter().filter_map(|a| match &a.term {
            Term::Path { text, .. } => Some(text.as_str()),
            Term::Constant(_) => None,
        })
    }

    pub fn evaluate(&self, object: &Value) -> Option<Value> {
        self.alternatives.iter().find_map(|a| a.evaluate(object))
    }
}

impl Alternative {
    fn parse(text: &str) -> Result<Alternative, MappingError> {
        let mut parts = split_outside_quotes(text, "|").into_iter();
        let head = parts.next().unwrap_or_default();
        let head = head.trim();
        let term = if let Some(rest) = head.strip_prefix('\'') {
            let constant = rest
                .strip_suffix('\'')
                .ok_or_else(|| MappingError::new(format!("unterminated constant in {text:?}")))?;
            Term::Constant(constant.to_string())
        } else {
            if head.is_empty() {
                return Err(MappingError::new(
                    "empty expression: give a source path or a 'constant'",
                ));
            }
            let segments: Vec<String> = head.split('.').map(str::to_owned).collect();
            if segments.iter().any(|s| {
                s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }) {
                return Err(MappingError::new(format!(
                    "{head:?} is not a source path (letters, digits, '_' separated by '.')"
                )));
            }
            Term::Path {
                text: head.to_string(),
                segments,
            }
        };
        let transforms = parts
            .map(|t| Transform::parse(t.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Alternative { term, transforms })
    }

    fn evaluate(&self, object: &Value) -> Option<Value> {
        let mut value = match &self.term {
            Term::Constant(c) => Value::String(c.clone()),
            Term::Path { segments, .. } => {
                let mut at = object;
                for segment in segments {
                    at = match at {
                        Value::Object(map) => map.get(segment)?,
                        Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                        _ => return None,
                    };
                }
                at.clone()
            }
        };
        for transform in &self.transforms {
            value = transform.apply(&value)?;
        }
        match value {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            other => Some(other),
        }
    }
}

/// Splits on `separator` where it is not inside single quotes or parentheses.
fn split_outside_quotes<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut depth) = (0, false, 0);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            // Compared as bytes: `i` may be inside a multi-byte character, where slicing
            // the text would panic; an ASCII separator never matches there.
            _ if !quoted && depth == 0 && bytes[i..].starts_with(separator.as_bytes()) => {
                parts.push(&text[start..i]);
                i += separator.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}
