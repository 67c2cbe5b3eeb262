//! A sync's `[syncs.mapping]` over a destination's defaults: `field = "expression"` adds or
//! replaces a rule, `field = false` drops a default; paths must start with a field of the
//! source view, and the fields the destination needs must stay.

use billsync_config::ConfigError;
use billsync_mapping::Mapping;
use std::collections::BTreeMap;
use std::path::Path;

/// A destination's mapping for syncs from one source.
#[derive(Debug, Clone)]
pub struct MappingDeclaration {
    /// The seed's table: destination field ← expression.
    pub defaults: Mapping,
    /// The fields of the source view the mapping reads (`stripe::CUSTOMER_FIELDS`,
    /// `chargebee::VIEW_ROOTS`): a configured path must start with one of them.
    pub roots: &'static [&'static str],
    /// Fields no mapping may drop, each with the reason a message gives.
    pub required: &'static [(&'static str, &'static str)],
}

impl MappingDeclaration {
    /// The defaults with `table` (found at `key`, such as `syncs[0].mapping`, of `file`)
    /// applied, checked.
    pub fn configure(
        &self,
        file: &Path,
        key: &str,
        table: &BTreeMap<String, toml::Value>,
    ) -> Result<Mapping, ConfigError> {
        let error =
            |field: &str, reason: String| ConfigError::new(file, &format!("{key}.{field}"), reason);
        let mut overrides = Vec::new();
        let mut dropped = Vec::new();
        for (field, value) in table {
            match value {
                toml::Value::String(expression) => {
                    overrides.push((field.as_str(), expression.as_str()))
                }
                toml::Value::Boolean(false) => dropped.push(field.as_str()),
                _ => {
                    return Err(error(
                        field,
                        "must be a string expression such as \"name | first_word\", or false \
                         to drop a default mapping"
                            .into(),
                    ))
                }
            }
        }
        let overrides = Mapping::parse(overrides)
            .map_err(|e| error(e.field.as_deref().unwrap_or_default(), e.message))?;
        for (field, path) in overrides.source_paths() {
            let root = path.split('.').next().unwrap_or(path);
            if !self.roots.contains(&root) {
                return Err(error(
                    field,
                    format!(
                        "{path:?} is not a field billsync can read here; paths start with one \
                         of {}",
                        self.roots.join(", ")
                    ),
                ));
            }
        }
        let mut mapping = self.defaults.with_overrides(&overrides);
        for field in dropped {
            mapping = mapping.without(field);
        }
        for (field, why) in self.required {
            if !mapping.fields().any(|f| f == *field) {
                return Err(error(
                    field,
                    format!("the {field} mapping is required: {why}"),
                ));
            }
        }
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declaration() -> MappingDeclaration {
        MappingDeclaration {
            defaults: Mapping::parse([("email", "email"), ("phone", "phone")]).expect("valid"),
            roots: &["email", "phone", "name", "metadata"],
            required: &[("email", "the CRM identifies people by email")],
        }
    }

    fn configure(table: &str) -> Result<Mapping, String> {
        let table: BTreeMap<String, toml::Value> = toml::from_str(table).expect("TOML");
        declaration()
            .configure(Path::new("b.toml"), "syncs[1].mapping", &table)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn overrides_replace_add_and_drop_defaults() {
        let mapping = configure(
            "email = \"metadata.work_email ?? email\"\nphone = false\nfirst = \"name | first_word\"",
        )
        .expect("valid");
        let fields = mapping.apply(&json!({"email": "a@x.io", "phone": "1", "name": "Ada L",
            "metadata": {"work_email": "ada@work.io"}}));
        assert_eq!(fields["email"], "ada@work.io");
        assert_eq!(fields["first"], "Ada");
        assert!(!fields.contains_key("phone"));
        assert_eq!(configure("").expect("valid"), declaration().defaults);
    }

    #[test]
    fn each_problem_names_the_field_and_what_to_fix() {
        assert_eq!(
            configure("phone = true").expect_err("not an expression"),
            "b.toml: syncs[1].mapping.phone: must be a string expression such as \
             \"name | first_word\", or false to drop a default mapping"
        );
        assert!(configure("phone = \"name | shout\"")
            .expect_err("bad transform")
            .starts_with("b.toml: syncs[1].mapping.phone: unknown transform \"shout\""));
        assert_eq!(
            configure("phone = \"'+1' ?? customer.phone\"").expect_err("unknown root"),
            "b.toml: syncs[1].mapping.phone: \"customer.phone\" is not a field billsync can \
             read here; paths start with one of email, phone, name, metadata"
        );
        assert_eq!(
            configure("email = false").expect_err("required"),
            "b.toml: syncs[1].mapping.email: the email mapping is required: the CRM identifies \
             people by email"
        );
    }
}
