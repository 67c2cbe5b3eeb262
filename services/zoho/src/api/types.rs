//! Zoho CRM v8 request and answer types (`v8.0/record.json`, `users.json`, `layouts.json`,
//! `pipeline.json`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The modules billsync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    Contacts,
    Accounts,
    Deals,
}

impl Module {
    pub fn api_name(self) -> &'static str {
        match self {
            Module::Contacts => "Contacts",
            Module::Accounts => "Accounts",
            Module::Deals => "Deals",
        }
    }

    /// Endpoint templates, for metrics and messages (Zoho's ids are all digits, but module
    /// names must stay).
    pub(crate) fn upsert_endpoint(self) -> &'static str {
        match self {
            Module::Contacts => "/crm/v8/Contacts/upsert",
            Module::Accounts => "/crm/v8/Accounts/upsert",
            Module::Deals => "/crm/v8/Deals/upsert",
        }
    }

    pub(crate) fn search_endpoint(self) -> &'static str {
        match self {
            Module::Contacts => "/crm/v8/Contacts/search",
            Module::Accounts => "/crm/v8/Accounts/search",
            Module::Deals => "/crm/v8/Deals/search",
        }
    }

    pub(crate) fn record_endpoint(self) -> &'static str {
        match self {
            Module::Contacts => "/crm/v8/Contacts/{id}",
            Module::Accounts => "/crm/v8/Accounts/{id}",
            Module::Deals => "/crm/v8/Deals/{id}",
        }
    }
}

/// What an upsert may set off in Zoho (`trigger`); none unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Workflow,
    Approval,
    Blueprint,
}

/// `POST /crm/v8/{module}/upsert`'s body.
#[derive(Debug, Serialize)]
pub(crate) struct UpsertBody<'a> {
    pub data: &'a [Value],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub duplicate_check_fields: &'a [&'a str],
    pub trigger: &'a [Trigger],
}

/// One record's result: the spec's `Success_Response` or `API_Exception`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RecordResult {
    /// `success` or `error`.
    pub status: String,
    /// `SUCCESS`, `DUPLICATE_DATA`, `MANDATORY_NOT_FOUND`, `INVALID_DATA`, ...
    pub code: String,
    /// `insert` or `update`, on success.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub duplicate_field: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Value,
}

impl RecordResult {
    pub fn is_success(&self) -> bool {
        self.status == "success"
    }

    /// The record's id, on success.
    pub fn id(&self) -> Option<&str> {
        self.details.get("id").and_then(Value::as_str)
    }

    /// The field Zoho names in an error (`api_name`), if any.
    pub fn field(&self) -> Option<&str> {
        self.details.get("api_name").and_then(Value::as_str)
    }
}

/// `{"data": [...]}` answers.
#[derive(Debug, Deserialize)]
pub(crate) struct DataAnswer<T> {
    pub data: Vec<T>,
}

/// A user (`GET /crm/v8/users`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UsersAnswer {
    pub users: Vec<User>,
}

/// A layout (`GET /crm/v8/settings/layouts?module=`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Layout {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LayoutsAnswer {
    pub layouts: Vec<Layout>,
}

/// A pipeline of a layout (`GET /crm/v8/settings/pipeline?layout_id=`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pipeline {
    pub id: String,
    pub display_value: String,
    #[serde(default)]
    pub default: Option<bool>,
    #[serde(default)]
    pub maps: Vec<Stage>,
}

/// A stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Stage {
    pub id: String,
    pub display_value: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PipelinesAnswer {
    pub pipeline: Vec<Pipeline>,
}

/// A field's metadata (`GET /crm/v8/settings/fields?module=`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Field {
    pub api_name: String,
    #[serde(default)]
    pub custom_field: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FieldsAnswer {
    pub fields: Vec<Field>,
}
