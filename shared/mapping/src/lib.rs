//! Declarative field mappings: destination field ← expression over a billing object.
//!
//! An expression is one or more alternatives separated by `??` (the first that yields a
//! value wins), each a source path (`customer.email`, `billing_details.name`) or a quoted
//! constant (`'chargebee'`), optionally piped through transforms:
//! `name | first_word`, `created_at | date`, `mrr | cents_to_amount`, `deleted | map(true=deleted,false=active)`.
//! Mappings are parsed and checked once at start; applying one never fails on missing data
//! (a missing field simply produces no value).

mod expr;
mod transform;

pub use expr::{Expression, MappingError};
pub use transform::{Transform, NAMES as TRANSFORMS};

use serde_json::Value;
use std::collections::BTreeMap;

/// An ordered set of `destination field ← expression` rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    rules: BTreeMap<String, Expression>,
}

impl Mapping {
    /// Parses `(destination field, expression)` pairs; the error names the field.
    pub fn parse<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Mapping, MappingError> {
        let mut parsed = BTreeMap::new();
        for (field, text) in rules {
            let expression = Expression::parse(text).map_err(|e| e.for_field(field))?;
            parsed.insert(field.to_string(), expression);
        }
        Ok(Mapping { rules: parsed })
    }

    /// A copy with `overrides` replacing or adding rules: user configuration over defaults.
    pub fn with_overrides(&self, overrides: &Mapping) -> Mapping {
        let mut rules = self.rules.clone();
        rules.extend(overrides.rules.iter().map(|(k, v)| (k.clone(), v.clone())));
        Mapping { rules }
    }

    /// Removes a rule (a user may switch a default mapping off).
    pub fn without(mut self, field: &str) -> Mapping {
        self.rules.remove(field);
        self
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }

    /// The source paths the rules read, for validating them against known objects.
    pub fn source_paths(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules
            .iter()
            .flat_map(|(field, e)| e.paths().map(move |p| (field.as_str(), p)))
    }

    /// Evaluates every rule against `object`; fields whose expression yields nothing are absent.
    pub fn apply(&self, object: &Value) -> BTreeMap<String, Value> {
        self.rules
            .iter()
            .filter_map(|(field, e)| e.evaluate(object).map(|v| (field.clone(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mapping_applies_paths_fallbacks_transforms_and_constants() {
        let mapping = Mapping::parse([
            ("email", "email ?? billing_details.email"),
            ("firstName", "name | first_word"),
            ("lastName", "name | after_first_word"),
            ("source", "'stripe'"),
            (
                "status",
                "deleted | map(true=deleted, false=active) ?? 'active'",
            ),
            ("mrr", "mrr | cents_to_amount"),
            ("created", "created | date"),
        ])
        .expect("valid");
        let object = json!({
            "billing_details": {"email": "ada@example.com"},
            "name": "Ada King Lovelace",
            "mrr": 12345,
            "created": 1_700_000_000,
        });
        let out = mapping.apply(&object);
        assert_eq!(out["email"], "ada@example.com");
        assert_eq!(out["firstName"], "Ada");
        assert_eq!(out["lastName"], "King Lovelace");
        assert_eq!(out["source"], "stripe");
        assert_eq!(out["status"], "active");
        assert_eq!(out["mrr"], "123.45");
        assert_eq!(out["created"], "2023-11-14");
    }

    #[test]
    fn overrides_replace_defaults() {
        let defaults = Mapping::parse([("email", "email"), ("phone", "phone")]).expect("valid");
        let overrides = Mapping::parse([("email", "metadata.work_email")]).expect("valid");
        let merged = defaults.with_overrides(&overrides).without("phone");
        let out =
            merged.apply(&json!({"email": "a@x", "phone": "1", "metadata": {"work_email": "b@x"}}));
        assert_eq!(out.len(), 1);
        assert_eq!(out["email"], "b@x");
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let error = Mapping::parse([("firstName", "name | shout")]).expect_err("bad transform");
        assert_eq!(
            error.to_string(),
            "field firstName: unknown transform \"shout\" (known: first_word, after_first_word, \
             date, datetime, cents_to_amount, lowercase, uppercase, string, map(...))"
        );
        assert!(Mapping::parse([("x", "")]).is_err());
        assert!(Mapping::parse([("x", "'unterminated")]).is_err());
        assert!(Mapping::parse([("x", "a..b")]).is_err());
    }

    /// Found by the `mapping` fuzz target: a character of several bytes outside quotes made
    /// the expression splitter slice inside it and panic (a configured mapping with an
    /// accented name stopped the worker at start instead of being refused or used).
    #[test]
    fn non_ascii_text_is_parsed_not_a_panic() {
        let error = Mapping::parse([("x", "zǜriipt")]).expect_err("not a path");
        assert_eq!(error.field.as_deref(), Some("x"));
        let mapping =
            Mapping::parse([("city", "metadata.city ?? 'Zürich' | uppercase")]).expect("valid");
        assert_eq!(mapping.apply(&json!({}))["city"], "ZÜRICH");
        let mapping =
            Mapping::parse([("status", "state | map(ü=über, a=b) ?? 'ß'")]).expect("valid");
        assert_eq!(mapping.apply(&json!({"state": "ü"}))["status"], "über");
    }
}
