//! Pipedrive's request and response bodies, typed as v2 types them: numbers are numbers,
//! booleans booleans, money custom fields `{value, currency}`, and `null` clears a field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Every answer: `{success, data}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) data: T,
}

/// The entities with custom fields billsync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Person,
    Organization,
    Deal,
}

impl Entity {
    /// The `/api/v2/{...}Fields` collection.
    pub(crate) fn fields_path(self) -> &'static str {
        match self {
            Self::Person => "/api/v2/personFields",
            Self::Organization => "/api/v2/organizationFields",
            Self::Deal => "/api/v2/dealFields",
        }
    }
}

/// An email or phone of a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactEntry {
    pub value: String,
    #[serde(default)]
    pub primary: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl ContactEntry {
    pub fn primary(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            primary: true,
            label: None,
        }
    }
}

/// A custom field's value in v2's types.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Text(String),
    Number(f64),
    /// A monetary field.
    Money {
        value: f64,
        currency: String,
    },
    /// A date field: `YYYY-MM-DD`.
    Date(chrono::NaiveDate),
    /// An enum field: the option's id.
    Option(u64),
    /// A set field: the options' ids.
    Options(Vec<u64>),
    /// Clears the field.
    Clear,
}

impl Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(text) => serializer.serialize_str(text),
            Self::Number(number) => serializer.serialize_f64(*number),
            Self::Money { value, currency } => {
                serde_json::json!({"value": value, "currency": currency}).serialize(serializer)
            }
            Self::Date(date) => serializer.serialize_str(&date.format("%Y-%m-%d").to_string()),
            Self::Option(id) => serializer.serialize_u64(*id),
            Self::Options(ids) => ids.serialize(serializer),
            Self::Clear => serializer.serialize_none(),
        }
    }
}

/// Custom field key (40-character hash) → value.
pub type CustomFields = BTreeMap<String, FieldValue>;

/// `POST /api/v2/persons` and `PATCH /api/v2/persons/{id}`: what is set changes, the rest stays.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PersonInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<ContactEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phones: Option<Vec<ContactEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<u64>,
    #[serde(skip_serializing_if = "CustomFields::is_empty")]
    pub custom_fields: CustomFields,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Person {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub emails: Vec<ContactEntry>,
    #[serde(default)]
    pub phones: Vec<ContactEntry>,
    pub org_id: Option<u64>,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub custom_fields: Map<String, Value>,
}

/// `POST /api/v2/organizations` and `PATCH /api/v2/organizations/{id}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrganizationInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `{value, country, locality, postal_code, ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<u64>,
    #[serde(skip_serializing_if = "CustomFields::is_empty")]
    pub custom_fields: CustomFields,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Organization {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub custom_fields: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DealStatus {
    Open,
    Won,
    Lost,
}

/// `POST /api/v2/deals` and `PATCH /api/v2/deals/{id}`. `value` is billsync's MRR: the
/// deal's `mrr`/`arr`/`acv` are read-only, derived from deal products.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DealInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DealStatus>,
    /// With `status: lost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_close_date: Option<chrono::NaiveDate>,
    #[serde(skip_serializing_if = "CustomFields::is_empty")]
    pub custom_fields: CustomFields,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Deal {
    pub id: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub value: f64,
    #[serde(default)]
    pub currency: String,
    pub status: DealStatus,
    pub lost_reason: Option<String>,
    pub person_id: Option<u64>,
    pub org_id: Option<u64>,
    pub pipeline_id: Option<u64>,
    pub stage_id: Option<u64>,
    #[serde(default)]
    pub is_deleted: bool,
    #[serde(default)]
    pub custom_fields: Map<String, Value>,
}

/// One hit of `GET /api/v2/{persons|organizations|deals}/search`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SearchHit {
    pub id: u64,
    /// Persons' and organizations' name.
    #[serde(default)]
    pub name: Option<String>,
    /// Deals' title.
    #[serde(default)]
    pub title: Option<String>,
    /// Persons' emails.
    #[serde(default)]
    pub emails: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchData {
    pub(crate) items: Vec<SearchItem>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchItem {
    pub(crate) item: SearchHit,
}

/// One field of `GET /api/v2/{entity}Fields`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Field {
    pub field_name: String,
    /// The key in `custom_fields`: a 40-character hash for custom fields.
    pub field_code: String,
    pub field_type: String,
    pub is_custom_field: bool,
    #[serde(default)]
    pub options: Option<Vec<FieldOption>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldOption {
    #[serde(default, skip_serializing)]
    pub id: u64,
    pub label: String,
}

/// `POST /api/v2/{entity}Fields`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldInput {
    pub field_name: String,
    /// `varchar`, `double`, `monetary`, `date`, `enum`, `set`, ...
    pub field_type: String,
    /// Labels of an `enum` or `set` field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<FieldOption>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pipeline {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stage {
    pub id: u64,
    pub name: String,
    pub pipeline_id: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub email: String,
}

/// `POST /v1/notes`: content and at least one record it belongs to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NoteInput {
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deal_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Note {
    pub id: u64,
    pub content: String,
}
