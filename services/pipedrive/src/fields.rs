//! Custom fields by display name: the 40-character keys read from `personFields`,
//! `organizationFields` and `dealFields` once per process and kept, the fields billsync
//! writes created when missing (as Chargebee's own integration does), and mapped values
//! typed as each field's type wants them.

use crate::api::{CustomFields, Entity, Field, FieldInput, FieldValue, PipedriveClient};
use billsync_worker::DeliveryError;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::Mutex;

#[derive(Default)]
pub(crate) struct FieldBook {
    /// Each entity's fields, once read.
    known: Mutex<HashMap<EntityKey, Vec<Field>>>,
}

/// `Entity` as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EntityKey {
    Person,
    Organization,
    Deal,
}

fn key(entity: Entity) -> EntityKey {
    match entity {
        Entity::Person => EntityKey::Person,
        Entity::Organization => EntityKey::Organization,
        Entity::Deal => EntityKey::Deal,
    }
}

impl FieldBook {
    /// `values` (display name → mapped value) as `custom_fields` of `entity`, creating the
    /// fields that do not exist yet. A `null` value clears its field; a value the field's
    /// type cannot hold is left out rather than refused by Pipedrive.
    pub(crate) async fn custom_fields(
        &self,
        client: &PipedriveClient,
        entity: Entity,
        values: &BTreeMap<String, Value>,
    ) -> Result<CustomFields, DeliveryError> {
        if values.is_empty() {
            return Ok(CustomFields::new());
        }
        let mut known = self.known.lock().await;
        let fields = match known.entry(key(entity)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(client.fields(entity).await?)
            }
        };
        for (name, value) in values {
            let present = fields
                .iter()
                .any(|f| f.is_custom_field && f.field_name == *name);
            if present || value.is_null() {
                continue;
            }
            let created = client
                .create_field(
                    entity,
                    &FieldInput {
                        field_name: name.clone(),
                        field_type: field_type_for(value).to_string(),
                        options: Vec::new(),
                    },
                )
                .await?;
            tracing::info!(field = %name, key = %created.field_code, "Created a Pipedrive custom field.");
            fields.push(created);
        }
        let mut custom = CustomFields::new();
        for (name, value) in values {
            let Some(field) = fields
                .iter()
                .find(|f| f.is_custom_field && f.field_name == *name)
            else {
                continue;
            };
            if let Some(typed) = typed(field, value) {
                custom.insert(field.field_code.clone(), typed);
            }
        }
        Ok(custom)
    }
}

impl FieldBook {
    /// The key of `entity`'s custom field named `name`, if there is one.
    pub(crate) async fn key_of(
        &self,
        client: &PipedriveClient,
        entity: Entity,
        name: &str,
    ) -> Result<Option<String>, DeliveryError> {
        let mut known = self.known.lock().await;
        let fields = match known.entry(key(entity)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(client.fields(entity).await?)
            }
        };
        Ok(fields
            .iter()
            .find(|f| f.is_custom_field && f.field_name == name)
            .map(|f| f.field_code.clone()))
    }
}

/// The type of a field billsync creates, from the first value it writes.
fn field_type_for(value: &Value) -> &'static str {
    match value {
        Value::Number(_) => "double",
        // An amount as the mapping's `cents_to_amount` writes it ("49.00"); plain digits
        // (ids) stay text.
        Value::String(s) if s.contains('.') && s.parse::<f64>().is_ok() => "double",
        Value::String(s) if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => "date",
        _ => "varchar",
    }
}

/// `value` as `field`'s type holds it.
fn typed(field: &Field, value: &Value) -> Option<FieldValue> {
    if value.is_null() {
        return Some(FieldValue::Clear);
    }
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match field.field_type.as_str() {
        "double" | "int" => value
            .as_f64()
            .or_else(|| text.parse().ok())
            .map(FieldValue::Number),
        "monetary" => value
            .as_f64()
            .or_else(|| text.parse().ok())
            .map(|value| FieldValue::Money {
                value,
                currency: "USD".into(),
            }),
        "date" => chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(&text), "%Y-%m-%d")
            .ok()
            .map(FieldValue::Date),
        "enum" => field
            .options
            .iter()
            .flatten()
            .find(|o| o.label.eq_ignore_ascii_case(&text))
            .map(|o| FieldValue::Option(o.id)),
        _ => Some(FieldValue::Text(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(field_type: &str) -> Field {
        Field {
            field_name: "F".into(),
            field_code: "k".repeat(40),
            field_type: field_type.into(),
            is_custom_field: true,
            options: Some(vec![crate::api::FieldOption {
                id: 3,
                label: "Gold".into(),
            }]),
        }
    }

    #[test]
    fn values_take_the_fields_type() {
        assert_eq!(
            typed(&field("double"), &json!("49.5")),
            Some(FieldValue::Number(49.5))
        );
        assert_eq!(
            typed(&field("date"), &json!("2024-03-01")),
            Some(FieldValue::Date(
                chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("date")
            ))
        );
        assert_eq!(
            typed(&field("enum"), &json!("gold")),
            Some(FieldValue::Option(3))
        );
        assert_eq!(typed(&field("enum"), &json!("silver")), None);
        assert_eq!(
            typed(&field("varchar"), &json!(12)),
            Some(FieldValue::Text("12".into()))
        );
        assert_eq!(
            typed(&field("varchar"), &Value::Null),
            Some(FieldValue::Clear)
        );
        assert_eq!(field_type_for(&json!(1.5)), "double");
        assert_eq!(field_type_for(&json!("2024-01-02")), "date");
        assert_eq!(field_type_for(&json!("x")), "varchar");
        assert_eq!(field_type_for(&json!("49.00")), "double");
        assert_eq!(field_type_for(&json!("12345")), "varchar");
    }
}
