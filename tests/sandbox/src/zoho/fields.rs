//! An organisation's field metadata (`v8.0/fields.json`): each module's standard fields and
//! the custom fields created through `POST /settings/fields`. A new organisation has no
//! custom fields, and an upsert whose `duplicate_check_fields` names a field the module does
//! not have is refused.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::exception;
use super::state::Module;

/// Scopes that may read field metadata, and create fields (Zoho's "Create Custom Fields"
/// and "Fields Meta Data" docs).
pub(crate) const READ_SCOPES: &[&str] = &[
    "ZohoCRM.settings.ALL",
    "ZohoCRM.settings.READ",
    "ZohoCRM.settings.fields.ALL",
    "ZohoCRM.settings.fields.READ",
];
pub(crate) const CREATE_SCOPES: &[&str] = &[
    "ZohoCRM.settings.ALL",
    "ZohoCRM.settings.fields.ALL",
    "ZohoCRM.settings.fields.CREATE",
];

/// Data types `POST /settings/fields` takes for a new field (Zoho's "Field Types").
const DATA_TYPES: &[&str] = &[
    "text", "textarea", "email", "phone", "website", "integer", "bigint", "double", "currency",
    "percent", "date", "datetime", "boolean", "picklist",
];

/// A text field's longest value, and its length when the request gives none.
const MAX_TEXT_LENGTH: u64 = 255;

#[derive(Debug, Clone)]
struct Field {
    id: String,
    api_name: String,
    label: String,
    data_type: String,
    length: u64,
    unique: bool,
    custom: bool,
}

impl Field {
    fn json(&self) -> Value {
        let json_type = match self.data_type.as_str() {
            "integer" | "bigint" => "integer",
            "double" | "currency" | "percent" => "double",
            "boolean" => "boolean",
            "lookup" | "ownerlookup" => "jsonobject",
            _ => "string",
        };
        json!({
            "id": self.id,
            "api_name": self.api_name,
            "field_label": self.label,
            "display_label": self.label,
            "data_type": self.data_type,
            "json_type": json_type,
            "length": self.length,
            "custom_field": self.custom,
            "unique": if self.unique { json!({"casesensitive": "false"}) } else { Value::Null },
            "system_mandatory": false,
            "read_only": false,
            "field_read_only": false,
            "visible": true,
        })
    }
}

/// Every module's fields.
pub(crate) struct FieldBook {
    custom: BTreeMap<Module, Vec<Field>>,
    next_id: u64,
}

/// `(api_name, data_type)` of a module's standard fields (Zoho's default layouts).
fn standard(module: Module) -> &'static [(&'static str, &'static str)] {
    match module {
        Module::Contacts => &[
            ("Owner", "ownerlookup"),
            ("First_Name", "text"),
            ("Last_Name", "text"),
            ("Full_Name", "text"),
            ("Email", "email"),
            ("Secondary_Email", "email"),
            ("Phone", "phone"),
            ("Mobile", "phone"),
            ("Account_Name", "lookup"),
            ("Title", "text"),
            ("Description", "textarea"),
        ],
        Module::Accounts => &[
            ("Owner", "ownerlookup"),
            ("Account_Name", "text"),
            ("Phone", "phone"),
            ("Website", "website"),
            ("Description", "textarea"),
        ],
        Module::Deals => &[
            ("Owner", "ownerlookup"),
            ("Deal_Name", "text"),
            ("Account_Name", "lookup"),
            ("Contact_Name", "lookup"),
            ("Amount", "currency"),
            ("Closing_Date", "date"),
            ("Pipeline", "picklist"),
            ("Stage", "picklist"),
            ("Description", "textarea"),
        ],
    }
}

impl Default for FieldBook {
    fn default() -> Self {
        Self {
            custom: BTreeMap::new(),
            next_id: 5_725_767_000_000_600_001,
        }
    }
}

impl FieldBook {
    fn all(&self, module: Module) -> Vec<Field> {
        let system_check = module.system_duplicate_field();
        let mut fields: Vec<Field> = standard(module)
            .iter()
            .enumerate()
            .map(|(i, (api_name, data_type))| Field {
                id: format!("57257670000000{:05}", 2000 + i),
                api_name: api_name.to_string(),
                label: api_name.replace('_', " "),
                data_type: data_type.to_string(),
                length: if *data_type == "textarea" {
                    32_000
                } else {
                    120
                },
                unique: *api_name == system_check,
                custom: false,
            })
            .collect();
        fields.extend(self.custom.get(&module).cloned().unwrap_or_default());
        fields
    }

    /// `GET /settings/fields?module=`: the module's fields as the spec's `fields` objects.
    pub(crate) fn list(&self, module: Module) -> Vec<Value> {
        self.all(module).iter().map(Field::json).collect()
    }

    /// Whether the module has a field of that API name.
    pub(crate) fn has(&self, module: Module, api_name: &str) -> bool {
        self.all(module).iter().any(|f| f.api_name == api_name)
    }

    /// `POST /settings/fields?module=` `{fields: [{field_label, data_type, length, unique}]}`:
    /// each field's result, and whether all were created. Nothing is created unless every
    /// field can be.
    pub(crate) fn create(&mut self, module: Module, fields: &[Value]) -> (Vec<Value>, bool) {
        let mut taken: Vec<String> = self
            .all(module)
            .iter()
            .flat_map(|f| [f.api_name.to_lowercase(), f.label.to_lowercase()])
            .collect();
        let mut planned = Vec::new();
        let mut results = Vec::new();
        for (index, input) in fields.iter().enumerate() {
            let path = |key: &str| format!("$.fields[{index}].{key}");
            let text = |key: &str| {
                input
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            };
            let refused = |code: &str, message: &str, key: &str| {
                exception(
                    code,
                    message,
                    json!({"api_name": key, "json_path": path(key)}),
                )
            };
            let Some(label) = text("field_label") else {
                results.push(refused(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    "field_label",
                ));
                continue;
            };
            let Some(data_type) = text("data_type") else {
                results.push(refused(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    "data_type",
                ));
                continue;
            };
            if !DATA_TYPES.contains(&data_type) {
                results.push(refused("INVALID_DATA", "invalid data", "data_type"));
                continue;
            }
            let length = match input.get("length") {
                None | Some(Value::Null) => MAX_TEXT_LENGTH,
                Some(length) => match length
                    .as_u64()
                    .filter(|l| (1..=MAX_TEXT_LENGTH).contains(l))
                {
                    Some(length) => length,
                    None => {
                        results.push(refused("INVALID_DATA", "invalid data", "length"));
                        continue;
                    }
                },
            };
            let api_name = api_name_of(label);
            if taken.contains(&label.to_lowercase()) || taken.contains(&api_name.to_lowercase()) {
                results.push(refused("DUPLICATE_DATA", "duplicate data", "field_label"));
                continue;
            }
            taken.push(label.to_lowercase());
            taken.push(api_name.to_lowercase());
            self.next_id += 1;
            let id = self.next_id.to_string();
            results.push(json!({
                "code": "SUCCESS",
                "details": {"id": id},
                "message": "field created",
                "status": "success",
            }));
            planned.push(Field {
                id,
                api_name,
                label: label.to_string(),
                data_type: data_type.to_string(),
                length,
                unique: input.get("unique").is_some_and(|u| u.is_object()),
                custom: true,
            });
        }
        let created = results.iter().all(|r| r["status"] == "success");
        if created {
            self.custom.entry(module).or_default().extend(planned);
        }
        (results, created)
    }
}

/// Zoho derives a new field's API name from its label: runs of characters other than
/// letters and digits become one `_` (`Billsync Customer Id` → `Billsync_Customer_Id`).
fn api_name_of(label: &str) -> String {
    let mut name = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    name.trim_matches('_').to_string()
}

/// Whether `scopes` (the refresh token's) include one of `wanted`.
pub(crate) fn allows(scopes: &[String], wanted: &[&str]) -> bool {
    scopes.iter().any(|s| wanted.contains(&s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_come_from_labels() {
        assert_eq!(api_name_of("Billsync Customer Id"), "Billsync_Customer_Id");
        assert_eq!(api_name_of(" Plan / tier "), "Plan_tier");
    }

    #[test]
    fn a_new_organisation_has_standard_fields_only_and_creates_custom_ones_once() {
        let mut book = FieldBook::default();
        assert!(book.has(Module::Contacts, "Email"));
        assert!(!book.has(Module::Contacts, "Billsync_Customer_Id"));
        let (results, created) = book.create(
            Module::Contacts,
            &[json!({"field_label": "Billsync Customer Id", "data_type": "text", "length": 255, "unique": {"casesensitive": "false"}})],
        );
        assert!(created, "{results:?}");
        assert!(book.has(Module::Contacts, "Billsync_Customer_Id"));
        assert!(!book.has(Module::Deals, "Billsync_Customer_Id"));
        let (results, created) = book.create(
            Module::Contacts,
            &[json!({"field_label": "billsync customer id", "data_type": "text"})],
        );
        assert!(!created);
        assert_eq!(results[0]["code"], "DUPLICATE_DATA");
        let (results, _) = book.create(Module::Deals, &[json!({"field_label": "X"})]);
        assert_eq!(results[0]["code"], "MANDATORY_NOT_FOUND");
        assert_eq!(results[0]["details"]["api_name"], "data_type");
    }
}
