//! Removes configured secret values from text and JSON before anything is stored or exported.
//!
//! Workers already strip credentials from what they report, but a CRM that echoes a token in
//! its error body, or a mapping that copies one into a field, would otherwise put it in the
//! failure list and the CSV. This is the last line before Postgres, so it assumes nothing.

use serde_json::Value;
use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Replaces every occurrence of any configured secret with [`REDACTED`].
///
/// It also replaces NUL characters, which PostgreSQL cannot hold in `text` or `jsonb`: a
/// vendor body containing one would otherwise make its failure unstorable forever.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret that contains another is removed whole.
    needles: Vec<String>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} patterns)", self.needles.len())
    }
}

impl Scrubber {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for secret in secrets {
            if secret.is_empty() {
                continue;
            }
            // A secret holding `"` or `\` shows up escaped inside a JSON document that a
            // vendor returned as a string; remove that spelling too.
            let escaped = json_escaped(&secret);
            if escaped != secret {
                needles.push(escaped);
            }
            needles.push(secret);
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = storable(text).into_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }

    /// Scrubs every string in `value`, object keys included.
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::String(text) => {
                let clean = self.text(text);
                if clean != *text {
                    *text = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.json(item)),
            Value::Object(map) => {
                let dirty_keys: Vec<String> = map
                    .keys()
                    .filter(|key| self.text(key) != **key)
                    .cloned()
                    .collect();
                for key in dirty_keys {
                    if let Some(inner) = map.remove(&key) {
                        map.insert(self.text(&key), inner);
                    }
                }
                map.values_mut().for_each(|inner| self.json(inner));
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// `text` as PostgreSQL can hold it, NUL characters replaced: what every stored value went
/// through, so a filter or id given with a NUL matches what was stored.
pub fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// The secret as it appears between the quotes of a JSON string.
fn json_escaped(secret: &str) -> String {
    let quoted = Value::String(secret.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scrubber() -> Scrubber {
        Scrubber::new([
            "sk_live_abc123".to_string(),
            "abc".to_string(),
            String::new(),
            "tok\"en".to_string(),
        ])
    }

    #[test]
    fn text_loses_every_secret_and_keeps_the_rest() {
        let s = scrubber();
        assert_eq!(
            s.text("key sk_live_abc123 rejected; sk_live_abc123 again"),
            "key [redacted] rejected; [redacted] again"
        );
        // The longer secret is removed whole, not as `sk_live_[redacted]123`.
        assert!(!s.text("sk_live_abc123").contains("sk_live_"));
        assert_eq!(s.text("nothing secret here"), "nothing secret here");
        assert_eq!(s.text("xabcx"), "x[redacted]x");
    }

    #[test]
    fn json_strings_and_keys_are_scrubbed_at_any_depth() {
        let s = scrubber();
        let mut value = json!({
            "error": "Invalid token sk_live_abc123",
            "nested": [{"Authorization": "Bearer sk_live_abc123"}, 42, null, true],
            "sk_live_abc123": "as a key",
            "body": "{\"token\":\"tok\\\"en\"}",
        });
        s.json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("sk_live_abc123"), "{text}");
        assert!(!text.contains("tok\\\"en"), "{text}");
        assert_eq!(value["error"], "Invalid token [redacted]");
        assert_eq!(value["nested"][0]["Authorization"], "Bearer [redacted]");
        assert_eq!(value["nested"][1], 42);
        assert_eq!(value["[redacted]"], "as a key");
    }

    #[test]
    fn nul_characters_become_storable() {
        let s = Scrubber::new(Vec::new());
        assert_eq!(s.text("a\0b"), "a\u{FFFD}b");
        let mut value = json!({"k": "x\u{0000}y"});
        s.json(&mut value);
        assert_eq!(value["k"], "x\u{FFFD}y");
    }

    #[test]
    fn debug_never_prints_secrets() {
        assert_eq!(format!("{:?}", scrubber()), "Scrubber(4 patterns)");
    }
}
