//! Mapping expressions (shared/mapping): parsing, and evaluation against an object.
//!
//! Input: `<expression>\n<JSON object>` (the object defaults to a Stripe customer). Properties:
//! a parse error names the field it was given for, the paths of a parsed expression are
//! paths, and evaluation yields a value or nothing, never null or an empty string.
#![no_main]

use billsync_mapping::{Expression, Mapping};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expression, object) = text.split_once('\n').unwrap_or((text, ""));
    let object: Value = serde_json::from_str(object).unwrap_or_else(|_| {
        json!({
            "id": "cus_1", "email": "ada@example.com", "name": "Ada King Lovelace",
            "created": 1_700_000_000, "balance": -1250, "deleted": false,
            "metadata": {"plan": "pro"}, "items": {"data": [{"price": {"unit_amount": 999}}]}
        })
    });
    let parsed = match (
        Expression::parse(expression),
        Mapping::parse([("email", expression)]),
    ) {
        (Ok(parsed), Ok(mapping)) => {
            assert_eq!(
                mapping.apply(&object).get("email"),
                parsed.evaluate(&object).as_ref()
            );
            parsed
        }
        (Err(alone), Err(in_mapping)) => {
            assert_eq!(in_mapping.field.as_deref(), Some("email"));
            assert_eq!(alone.message, in_mapping.message);
            return;
        }
        (alone, in_mapping) => panic!("{alone:?} alone, {in_mapping:?} in a mapping"),
    };
    for path in parsed.paths() {
        assert!(
            !path.is_empty() && path.split('.').all(|s| !s.is_empty()),
            "{path:?}"
        );
    }
    match parsed.evaluate(&object) {
        Some(Value::Null) => panic!("{expression:?} evaluated to null"),
        Some(Value::String(s)) if s.is_empty() => panic!("{expression:?} evaluated to \"\""),
        _ => {}
    }
});
