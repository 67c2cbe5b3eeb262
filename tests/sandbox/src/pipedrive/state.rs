//! One emulated Pipedrive company's data: persons, organizations, deals (v2), notes and users
//! (v1), field metadata, pipelines and stages, and v2's strict typing of what is written.
//!
//! Records are kept as the JSON objects the API answers with, so a PATCH is a merge and a
//! GET returns what was written. Contract: `specs/pipedrive/pipedrive-v2-openapi.yml` (request
//! bodies of `POST/PATCH /persons`, `/organizations`, `/deals`, `POST /{entity}Fields`) and
//! the v1 spec for notes and users; facts the specs lack come from `specs/README.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::ApiError;

/// The entities billsync writes through the v2 API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PdEntity {
    Person,
    Organization,
    Deal,
}

impl PdEntity {
    /// The word in Pipedrive's messages: `Person not found`.
    fn label(self) -> &'static str {
        match self {
            Self::Person => "Person",
            Self::Organization => "Organization",
            Self::Deal => "Deal",
        }
    }

    /// The attribute that names a record: deals have a `title`, the rest a `name`.
    fn name_key(self) -> &'static str {
        match self {
            Self::Deal => "title",
            _ => "name",
        }
    }

    /// What a request body may carry, as the v2 spec types it (unknown keys are ignored).
    fn schema(self) -> &'static [(&'static str, Kind)] {
        use Kind::*;
        match self {
            Self::Person => &[
                ("name", Str),
                ("owner_id", Int),
                ("org_id", NullableInt),
                ("add_time", DateTime),
                ("update_time", DateTime),
                ("emails", Contacts),
                ("phones", Contacts),
                ("visible_to", Int),
                ("label_ids", IntList),
                (
                    "marketing_status",
                    OneOf(&["no_consent", "unsubscribed", "subscribed", "archived"]),
                ),
            ],
            Self::Organization => &[
                ("name", Str),
                ("owner_id", Int),
                ("add_time", DateTime),
                ("update_time", DateTime),
                ("visible_to", Int),
                ("label_ids", IntList),
                ("address", Object),
            ],
            Self::Deal => &[
                ("title", Str),
                ("owner_id", Int),
                ("person_id", NullableInt),
                ("org_id", NullableInt),
                ("pipeline_id", Int),
                ("stage_id", Int),
                ("value", Num),
                ("currency", Str),
                ("is_deleted", Bool),
                ("is_archived", Bool),
                ("archive_time", DateTime),
                ("status", OneOf(&["open", "won", "lost"])),
                ("probability", NullableNum),
                ("lost_reason", NullableStr),
                ("visible_to", Int),
                ("close_time", NullableDateTime),
                ("won_time", DateTime),
                ("lost_time", DateTime),
                ("expected_close_date", Date),
                ("label_ids", IntList),
            ],
        }
    }

    /// The standard fields `GET /{entity}Fields` lists before the custom ones.
    fn standard_fields(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Self::Person => &[
                ("name", "Name", "varchar"),
                ("owner_id", "Owner", "user"),
                ("org_id", "Organization", "org"),
                ("emails", "Email", "varchar"),
                ("phones", "Phone", "phone"),
                ("label_ids", "Labels", "set"),
            ],
            Self::Organization => &[
                ("name", "Name", "varchar"),
                ("owner_id", "Owner", "user"),
                ("address", "Address", "address"),
                ("label_ids", "Labels", "set"),
            ],
            Self::Deal => &[
                ("title", "Title", "varchar"),
                ("owner_id", "Owner", "user"),
                ("value", "Value", "monetary"),
                ("person_id", "Contact person", "people"),
                ("org_id", "Organization", "org"),
                ("pipeline_id", "Pipeline", "double"),
                ("stage_id", "Stage", "stage"),
                ("status", "Status", "status"),
                ("lost_reason", "Lost reason", "varchar"),
                ("expected_close_date", "Expected close date", "date"),
            ],
        }
    }
}

/// A property's type in the v2 spec. v2 parses nothing from strings: `"5"` is not a number,
/// `"true"` not a boolean.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    NullableStr,
    Int,
    NullableInt,
    Num,
    NullableNum,
    Bool,
    /// RFC 3339.
    DateTime,
    NullableDateTime,
    /// `YYYY-MM-DD`.
    Date,
    IntList,
    Object,
    OneOf(&'static [&'static str]),
    /// `[{value: string, primary: boolean, label: string}]`.
    Contacts,
}

/// v2's answer to a value of the wrong type: `Validation failed: value: Parameter 'value'
/// must be a number`. The spec declares no 4xx bodies; the shape is `specs/README.md`'s.
fn invalid(key: &str, what: &str) -> ApiError {
    ApiError::validation(format!(
        "Validation failed: {key}: Parameter '{key}' must be {what}"
    ))
}

fn check(key: &str, kind: Kind, value: &Value) -> Result<(), ApiError> {
    use Kind::*;
    let ok = match (kind, value) {
        (NullableStr | NullableInt | NullableNum | NullableDateTime, Value::Null) => true,
        (Str | NullableStr, v) => v.is_string(),
        (Int | NullableInt, v) => v.is_i64() || v.is_u64(),
        (Num | NullableNum, v) => v.is_number(),
        (Bool, v) => v.is_boolean(),
        (DateTime | NullableDateTime, v) => v.as_str().is_some_and(is_rfc3339),
        (Date, v) => v.as_str().is_some_and(is_date),
        (IntList, Value::Array(items)) => items.iter().all(|i| i.is_i64() || i.is_u64()),
        (IntList, _) => false,
        (Object, v) => v.is_object(),
        (OneOf(allowed), v) => v.as_str().is_some_and(|s| allowed.contains(&s)),
        (Contacts, Value::Array(items)) => {
            for item in items {
                let Some(item) = item.as_object() else {
                    return Err(invalid(key, "an array of objects"));
                };
                check(
                    &format!("{key}.value"),
                    Str,
                    item.get("value").unwrap_or(&Value::Null),
                )?;
                if let Some(primary) = item.get("primary") {
                    check(&format!("{key}.primary"), Bool, primary)?;
                }
                if let Some(label) = item.get("label") {
                    check(&format!("{key}.label"), Str, label)?;
                }
            }
            true
        }
        (Contacts, _) => false,
    };
    if ok {
        return Ok(());
    }
    Err(invalid(
        key,
        match kind {
            Str | NullableStr => "a string",
            Int | NullableInt => "an integer",
            Num | NullableNum => "a number",
            Bool => "a boolean",
            DateTime | NullableDateTime => "an RFC 3339 date-time",
            Date => "a date (YYYY-MM-DD)",
            IntList => "an array of integers",
            Object => "an object",
            OneOf(_) => "one of the allowed values",
            Contacts => "an array of objects",
        },
    ))
}

fn is_rfc3339(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// One field of `GET /{entity}Fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdField {
    pub field_name: String,
    /// The key in `custom_fields`: a 40-character hash for custom fields.
    pub field_code: String,
    pub field_type: String,
    pub is_custom_field: bool,
    pub options: Option<Vec<PdOption>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdOption {
    pub id: u64,
    pub label: String,
}

impl PdField {
    fn to_json(&self) -> Value {
        json!({
            "field_name": self.field_name,
            "field_code": self.field_code,
            "field_type": self.field_type,
            "is_custom_field": self.is_custom_field,
            "is_optional_response_field": false,
            "options": self.options,
            "subfields": null,
        })
    }

    /// Whether `value` fits this custom field, as v2 types custom field values: money is
    /// `{value, currency}`, numbers are numbers, options are option ids; `null` clears.
    fn check_value(&self, value: &Value) -> Result<(), ApiError> {
        let key = format!("custom_fields.{}", self.field_code);
        if value.is_null() {
            return Ok(());
        }
        let option = |id: &Value| {
            let options = self.options.as_deref().unwrap_or_default();
            id.as_u64()
                .is_some_and(|id| options.iter().any(|o| o.id == id))
        };
        match self.field_type.as_str() {
            "double" => check(&key, Kind::Num, value),
            "int" | "user" | "org" | "people" => check(&key, Kind::Int, value),
            "date" => check(&key, Kind::Date, value),
            "monetary" => {
                let Some(money) = value.as_object() else {
                    return Err(invalid(&key, "an object with value and currency"));
                };
                check(
                    &format!("{key}.value"),
                    Kind::Num,
                    money.get("value").unwrap_or(&Value::Null),
                )?;
                check(
                    &format!("{key}.currency"),
                    Kind::Str,
                    money.get("currency").unwrap_or(&Value::Null),
                )
            }
            "enum" if option(value) => Ok(()),
            "enum" => Err(invalid(&key, "the id of one of the field's options")),
            "set" => match value.as_array() {
                Some(ids) if ids.iter().all(option) => Ok(()),
                _ => Err(invalid(&key, "an array of the field's option ids")),
            },
            "address" if value.is_object() || value.is_string() => Ok(()),
            _ => check(&key, Kind::Str, value),
        }
    }
}

/// A pipeline with its stages, as `GET /pipelines` and `GET /stages` list them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdPipeline {
    pub id: u64,
    pub name: String,
    pub stages: Vec<PdStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdStage {
    pub id: u64,
    pub name: String,
    pub pipeline_id: u64,
}

/// A user of the company (`GET /v1/users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdUser {
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// A note (`POST /v1/notes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PdNote {
    pub id: u64,
    pub content: String,
    pub person_id: Option<u64>,
    pub org_id: Option<u64>,
    pub deal_id: Option<u64>,
    pub add_time: String,
}

/// A company's state for tests: records as the v2 API answers them, deleted ones included
/// (with `is_deleted: true`), in id order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PdSnapshot {
    pub persons: Vec<Value>,
    pub organizations: Vec<Value>,
    pub deals: Vec<Value>,
    pub notes: Vec<PdNote>,
    pub fields: BTreeMap<PdEntity, Vec<PdField>>,
}

impl PdSnapshot {
    /// The live (not deleted) records of `entity`.
    pub fn live(&self, entity: PdEntity) -> Vec<&Value> {
        let records = match entity {
            PdEntity::Person => &self.persons,
            PdEntity::Organization => &self.organizations,
            PdEntity::Deal => &self.deals,
        };
        records
            .iter()
            .filter(|r| r["is_deleted"] != Value::Bool(true))
            .collect()
    }

    /// The live persons with this email (case-insensitive).
    pub fn persons_with_email(&self, email: &str) -> Vec<&Value> {
        self.live(PdEntity::Person)
            .into_iter()
            .filter(|p| emails_of(p).any(|e| e.eq_ignore_ascii_case(email)))
            .collect()
    }

    /// A custom field's key by its display name.
    pub fn field_code(&self, entity: PdEntity, name: &str) -> Option<&str> {
        self.fields
            .get(&entity)?
            .iter()
            .find(|f| f.is_custom_field && f.field_name == name)
            .map(|f| f.field_code.as_str())
    }
}

fn emails_of(person: &Value) -> impl Iterator<Item = &str> {
    person["emails"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["value"].as_str())
}

/// `GET /{entity}/search` parameters, read and checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Search {
    pub(crate) term: String,
    pub(crate) fields: Vec<String>,
    pub(crate) exact: bool,
    pub(crate) organization_id: Option<u64>,
    pub(crate) person_id: Option<u64>,
    pub(crate) status: Option<String>,
    pub(crate) limit: usize,
}

/// Everything one company holds.
#[derive(Debug)]
pub(crate) struct CompanyData {
    name: String,
    next_id: u64,
    records: BTreeMap<PdEntity, BTreeMap<u64, Map<String, Value>>>,
    fields: BTreeMap<PdEntity, Vec<PdField>>,
    notes: BTreeMap<u64, PdNote>,
    pipelines: Vec<PdPipeline>,
    users: Vec<PdUser>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl CompanyData {
    /// A company as Pipedrive creates one: its admin user, the default pipeline and stages.
    pub(crate) fn new(name: &str) -> Self {
        let stages = [
            "Qualified",
            "Contact Made",
            "Proposal Made",
            "Negotiations Started",
        ]
        .iter()
        .zip(1..)
        .map(|(name, id)| PdStage {
            id,
            name: (*name).into(),
            pipeline_id: 1,
        })
        .collect();
        let fields = [PdEntity::Person, PdEntity::Organization, PdEntity::Deal]
            .into_iter()
            .map(|entity| {
                let standard = entity
                    .standard_fields()
                    .iter()
                    .map(|(code, name, ty)| PdField {
                        field_name: (*name).into(),
                        field_code: (*code).into(),
                        field_type: (*ty).into(),
                        is_custom_field: false,
                        options: None,
                    });
                (entity, standard.collect())
            })
            .collect();
        Self {
            name: name.into(),
            next_id: 1,
            records: BTreeMap::new(),
            fields,
            notes: BTreeMap::new(),
            pipelines: vec![PdPipeline {
                id: 1,
                name: "Pipeline".into(),
                stages,
            }],
            users: vec![PdUser {
                id: 1,
                name: "Company Admin".into(),
                email: format!("admin@{name}.example"),
            }],
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn table(&mut self, entity: PdEntity) -> &mut BTreeMap<u64, Map<String, Value>> {
        self.records.entry(entity).or_default()
    }

    /// The record as the API answers with it, deleted or not.
    pub(crate) fn get(&self, entity: PdEntity, id: u64) -> Result<Value, ApiError> {
        self.records
            .get(&entity)
            .and_then(|t| t.get(&id))
            .map(|r| Value::Object(r.clone()))
            .ok_or_else(|| ApiError::not_found(entity.label()))
    }

    fn live(&self, entity: PdEntity, id: u64) -> bool {
        self.records
            .get(&entity)
            .and_then(|t| t.get(&id))
            .is_some_and(|r| r.get("is_deleted") != Some(&Value::Bool(true)))
    }

    /// `POST /{entity}`.
    pub(crate) fn create(&mut self, entity: PdEntity, body: &Value) -> Result<Value, ApiError> {
        let body = self.validate(entity, body)?;
        let name_key = entity.name_key();
        let named = body
            .get(name_key)
            .and_then(Value::as_str)
            .is_some_and(|n| !n.trim().is_empty());
        if !named {
            // The spec marks `title` required for organizations (whose property is `name`)
            // and nothing for persons; the API needs the name (specs/README.md).
            return Err(ApiError::validation(format!(
                "Validation failed: {name_key}: Parameter '{name_key}' is required"
            )));
        }
        let id = self.next_id();
        let stamp = now();
        let mut record = Map::new();
        record.insert("id".into(), json!(id));
        record.insert("owner_id".into(), json!(1));
        record.insert("add_time".into(), json!(stamp));
        record.insert("update_time".into(), json!(stamp));
        record.insert("is_deleted".into(), json!(false));
        record.insert("visible_to".into(), json!(3));
        record.insert("custom_fields".into(), json!({}));
        match entity {
            PdEntity::Person => {
                record.insert("org_id".into(), Value::Null);
                record.insert("emails".into(), json!([]));
                record.insert("phones".into(), json!([]));
            }
            PdEntity::Organization => {
                record.insert("address".into(), Value::Null);
            }
            PdEntity::Deal => {
                for key in ["person_id", "org_id", "lost_reason", "expected_close_date"] {
                    record.insert(key.into(), Value::Null);
                }
                record.insert("value".into(), json!(0));
                record.insert("currency".into(), json!("USD"));
                record.insert("status".into(), json!("open"));
                record.insert("pipeline_id".into(), json!(self.pipelines[0].id));
                record.insert("stage_id".into(), json!(self.pipelines[0].stages[0].id));
            }
        }
        merge(&mut record, body);
        finish(entity, &mut record);
        self.table(entity).insert(id, record.clone());
        Ok(Value::Object(record))
    }

    /// `PATCH /{entity}/{id}`: the given properties change, the rest stay.
    pub(crate) fn update(
        &mut self,
        entity: PdEntity,
        id: u64,
        body: &Value,
    ) -> Result<Value, ApiError> {
        if !self.live(entity, id) {
            // Deletes are soft, but a deleted record cannot be updated back (specs/README.md).
            return Err(ApiError::not_found(entity.label()));
        }
        let mut body = self.validate(entity, body)?;
        if let Some(name) = body.get(entity.name_key()) {
            if name.as_str().is_some_and(|n| n.trim().is_empty()) {
                let key = entity.name_key();
                return Err(invalid(key, "a non-empty string"));
            }
        }
        body.insert("update_time".into(), json!(now()));
        let record = self.table(entity).get_mut(&id).expect("checked live above");
        merge(record, body);
        finish(entity, record);
        Ok(Value::Object(record.clone()))
    }

    /// `DELETE /{entity}/{id}`: marks the record deleted; it stays readable.
    pub(crate) fn delete(&mut self, entity: PdEntity, id: u64) -> Result<Value, ApiError> {
        if !self.live(entity, id) {
            return Err(ApiError::not_found(entity.label()));
        }
        let record = self.table(entity).get_mut(&id).expect("checked live above");
        record.insert("is_deleted".into(), json!(true));
        record.insert("update_time".into(), json!(now()));
        Ok(json!({ "id": id }))
    }

    /// Removes a record altogether, as the 30-day purge or a merge of users does.
    pub(crate) fn purge(&mut self, entity: PdEntity, id: u64) -> bool {
        self.table(entity).remove(&id).is_some()
    }

    /// The body's properties after v2's type checks, custom fields and references included.
    fn validate(&self, entity: PdEntity, body: &Value) -> Result<Map<String, Value>, ApiError> {
        let Some(body) = body.as_object() else {
            return Err(ApiError::validation(
                "Validation failed: body: Request body must be an object".into(),
            ));
        };
        let mut out = Map::new();
        for (key, value) in body {
            if entity == PdEntity::Deal && ["mrr", "arr", "acv"].contains(&key.as_str()) {
                // Derived from deal products, read-only (specs/README.md).
                return Err(ApiError::validation(format!(
                    "Validation failed: {key}: Parameter '{key}' is read-only"
                )));
            }
            if key == "custom_fields" {
                out.insert(key.clone(), self.validate_custom(entity, value)?);
                continue;
            }
            if let Some((_, kind)) = entity.schema().iter().find(|(k, _)| k == key) {
                check(key, *kind, value)?;
                out.insert(key.clone(), value.clone());
            }
        }
        self.check_references(entity, &mut out)?;
        Ok(out)
    }

    fn validate_custom(&self, entity: PdEntity, value: &Value) -> Result<Value, ApiError> {
        let Some(values) = value.as_object() else {
            return Err(invalid("custom_fields", "an object"));
        };
        for (code, value) in values {
            let field = self.fields[&entity]
                .iter()
                .find(|f| f.is_custom_field && &f.field_code == code)
                .ok_or_else(|| {
                    ApiError::validation(format!(
                        "Validation failed: custom_fields: Unknown custom field '{code}'"
                    ))
                })?;
            field.check_value(value)?;
        }
        Ok(value.clone())
    }

    /// Linked records must exist; a deal's stage decides its pipeline.
    fn check_references(
        &self,
        entity: PdEntity,
        body: &mut Map<String, Value>,
    ) -> Result<(), ApiError> {
        for (key, target) in [
            ("person_id", PdEntity::Person),
            ("org_id", PdEntity::Organization),
        ] {
            if let Some(id) = body.get(key).and_then(Value::as_u64) {
                if !self.live(target, id) {
                    return Err(ApiError::validation(format!(
                        "{} with id {id} not found",
                        target.label()
                    )));
                }
            }
        }
        if entity != PdEntity::Deal {
            return Ok(());
        }
        let pipeline = body.get("pipeline_id").and_then(Value::as_u64);
        let stage = body.get("stage_id").and_then(Value::as_u64);
        let stages = self.pipelines.iter().flat_map(|p| &p.stages);
        match (pipeline, stage) {
            (_, Some(stage)) => {
                let found = stages.clone().find(|s| s.id == stage).ok_or_else(|| {
                    ApiError::validation(format!("Stage with id {stage} not found"))
                })?;
                if pipeline.is_some_and(|p| p != found.pipeline_id) {
                    return Err(ApiError::validation(format!(
                        "Stage {stage} does not belong to pipeline {}",
                        pipeline.unwrap_or_default()
                    )));
                }
                body.insert("pipeline_id".into(), json!(found.pipeline_id));
            }
            (Some(pipeline), None) => {
                let found = self
                    .pipelines
                    .iter()
                    .find(|p| p.id == pipeline)
                    .ok_or_else(|| {
                        ApiError::validation(format!("Pipeline with id {pipeline} not found"))
                    })?;
                body.insert("stage_id".into(), json!(found.stages[0].id));
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// `GET /{entity}/search`: live records whose searched fields match the term, exactly
    /// (case-insensitive) or as a substring.
    pub(crate) fn search(&self, entity: PdEntity, search: &Search) -> Value {
        let term = search.term.to_lowercase();
        let matches = |text: &str| {
            let text = text.to_lowercase();
            if search.exact {
                text == term
            } else {
                text.contains(&term)
            }
        };
        let searched =
            |field: &str| search.fields.is_empty() || search.fields.iter().any(|f| f == field);
        let items: Vec<Value> = self
            .records
            .get(&entity)
            .into_iter()
            .flat_map(|t| t.values())
            .filter(|r| r.get("is_deleted") != Some(&Value::Bool(true)))
            .filter(|r| {
                let id_is = |key: &str, want: Option<u64>| {
                    want.is_none_or(|w| r.get(key).and_then(Value::as_u64) == Some(w))
                };
                id_is("org_id", search.organization_id)
                    && id_is("person_id", search.person_id)
                    && search
                        .status
                        .as_deref()
                        .is_none_or(|s| r.get("status").and_then(Value::as_str) == Some(s))
            })
            .filter(|r| {
                let name = r
                    .get(entity.name_key())
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let record = Value::Object((*r).clone());
                (searched(entity.name_key()) && matches(name))
                    || (entity == PdEntity::Person
                        && searched("email")
                        && emails_of(&record).any(matches))
                    || (searched("custom_fields")
                        && r.get("custom_fields")
                            .and_then(Value::as_object)
                            .into_iter()
                            .flat_map(|c| c.values())
                            .filter_map(Value::as_str)
                            .any(matches))
            })
            .take(search.limit)
            .map(|r| json!({"result_score": 1.0, "item": self.search_item(entity, r)}))
            .collect();
        json!({"items": items})
    }

    /// A search hit as the v2 spec shapes it (`GetPersonSearchResponse` and siblings).
    fn search_item(&self, entity: PdEntity, r: &Map<String, Value>) -> Value {
        let linked = |key: &str, target: PdEntity| {
            r.get(key).and_then(Value::as_u64).and_then(|id| {
                let name = self
                    .records
                    .get(&target)?
                    .get(&id)?
                    .get(target.name_key())?
                    .clone();
                Some(json!({"id": id, "name": name}))
            })
        };
        let strings = |key: &str| -> Vec<Value> {
            r.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("value").cloned())
                .collect()
        };
        let mut item = json!({
            "id": r["id"],
            "type": match entity { PdEntity::Person => "person", PdEntity::Organization => "organization", PdEntity::Deal => "deal" },
            "owner": {"id": r["owner_id"]},
            "visible_to": r["visible_to"],
            "custom_fields": r.get("custom_fields").and_then(Value::as_object).map(|c| c.values().filter(|v| v.is_string()).cloned().collect::<Vec<_>>()).unwrap_or_default(),
            "notes": [],
        });
        let fields = item.as_object_mut().expect("an object literal");
        match entity {
            PdEntity::Person => {
                fields.insert("name".into(), r["name"].clone());
                fields.insert("emails".into(), json!(strings("emails")));
                fields.insert("phones".into(), json!(strings("phones")));
                fields.insert(
                    "organization".into(),
                    json!(linked("org_id", PdEntity::Organization)),
                );
            }
            PdEntity::Organization => {
                fields.insert("name".into(), r["name"].clone());
                fields.insert(
                    "address".into(),
                    r["address"].get("value").cloned().unwrap_or(Value::Null),
                );
            }
            PdEntity::Deal => {
                for key in ["title", "value", "currency", "status"] {
                    fields.insert(key.into(), r[key].clone());
                }
                fields.insert("stage".into(), json!({"id": r["stage_id"]}));
                fields.insert(
                    "person".into(),
                    json!(linked("person_id", PdEntity::Person)),
                );
                fields.insert(
                    "organization".into(),
                    json!(linked("org_id", PdEntity::Organization)),
                );
            }
        }
        item
    }

    pub(crate) fn fields(&self, entity: PdEntity) -> Value {
        Value::Array(self.fields[&entity].iter().map(PdField::to_json).collect())
    }

    /// `POST /{entity}Fields`: a custom field with a 40-character hash key.
    pub(crate) fn create_field(
        &mut self,
        entity: PdEntity,
        body: &Value,
    ) -> Result<Value, ApiError> {
        const TYPES: &[&str] = &[
            "varchar",
            "text",
            "double",
            "phone",
            "date",
            "daterange",
            "time",
            "timerange",
            "set",
            "enum",
            "varchar_auto",
            "address",
            "monetary",
            "org",
            "people",
            "user",
        ];
        let name = body.get("field_name").unwrap_or(&Value::Null);
        check("field_name", Kind::Str, name)?;
        let name = name.as_str().unwrap_or_default();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(invalid("field_name", "1 to 255 characters"));
        }
        let ty = body.get("field_type").unwrap_or(&Value::Null);
        check("field_type", Kind::OneOf(TYPES), ty)?;
        let ty = ty.as_str().unwrap_or_default();
        let options = match body.get("options") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut options = Vec::new();
                for item in items {
                    let label = item.get("label").unwrap_or(&Value::Null);
                    check("options.label", Kind::Str, label)?;
                    let id = self.next_id();
                    options.push(PdOption {
                        id,
                        label: label.as_str().unwrap_or_default().into(),
                    });
                }
                Some(options)
            }
            Some(_) => return Err(invalid("options", "an array of objects")),
        };
        if matches!(ty, "enum" | "set") && options.as_ref().is_none_or(Vec::is_empty) {
            return Err(ApiError::validation(
                "Validation failed: options: Options are required for enum and set fields".into(),
            ));
        }
        let serial = self.next_id();
        let field = PdField {
            field_name: name.into(),
            field_code: field_code(&self.name, entity, serial),
            field_type: ty.into(),
            is_custom_field: true,
            options,
        };
        let answer = field.to_json();
        self.fields.entry(entity).or_default().push(field);
        Ok(answer)
    }

    pub(crate) fn pipelines(&self) -> Value {
        Value::Array(
            self.pipelines
                .iter()
                .map(|p| json!({"id": p.id, "name": p.name, "order_nr": p.id, "is_deleted": false, "is_deal_probability_enabled": false}))
                .collect(),
        )
    }

    pub(crate) fn stages(&self, pipeline_id: Option<u64>) -> Value {
        Value::Array(
            self.pipelines
                .iter()
                .flat_map(|p| &p.stages)
                .filter(|s| pipeline_id.is_none_or(|p| p == s.pipeline_id))
                .map(|s| json!({"id": s.id, "name": s.name, "pipeline_id": s.pipeline_id, "order_nr": s.id, "is_deleted": false, "deal_probability": 100, "is_deal_rot_enabled": false, "days_to_rotten": null}))
                .collect(),
        )
    }

    pub(crate) fn users(&self) -> Value {
        Value::Array(
            self.users
                .iter()
                .map(|u| json!({"id": u.id, "name": u.name, "email": u.email, "active_flag": true, "is_deleted": false, "default_currency": "USD", "activated": true}))
                .collect(),
        )
    }

    /// `POST /v1/notes`: content and at least one record it belongs to, which must exist.
    pub(crate) fn create_note(&mut self, body: &Value) -> Result<Value, ApiError> {
        let content = body
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if content.trim().is_empty() {
            return Err(ApiError::v1_bad_request("Note content is required"));
        }
        // v1 is lenient: ids may come as numbers or numeric strings (form posts).
        let id_of = |key: &str| match body.get(key) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let (person_id, org_id, deal_id) = (id_of("person_id"), id_of("org_id"), id_of("deal_id"));
        if person_id.is_none() && org_id.is_none() && deal_id.is_none() {
            return Err(ApiError::v1_bad_request(
                "Note must be attached to a deal, person, organization, lead or project",
            ));
        }
        for (id, entity) in [
            (person_id, PdEntity::Person),
            (org_id, PdEntity::Organization),
            (deal_id, PdEntity::Deal),
        ] {
            if id.is_some_and(|id| !self.live(entity, id)) {
                return Err(ApiError::v1_bad_request(&format!(
                    "{} not found",
                    entity.label()
                )));
            }
        }
        let id = self.next_id();
        let add_time = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
        let note = PdNote {
            id,
            content: content.into(),
            person_id,
            org_id,
            deal_id,
            add_time,
        };
        self.notes.insert(id, note.clone());
        Ok(json!({
            "id": id, "content": note.content, "person_id": person_id, "org_id": org_id,
            "deal_id": deal_id, "add_time": note.add_time, "update_time": note.add_time,
            "active_flag": true, "user_id": 1,
        }))
    }

    pub(crate) fn snapshot(&self) -> PdSnapshot {
        let all = |entity| {
            self.records
                .get(&entity)
                .into_iter()
                .flat_map(|t| t.values())
                .map(|r| Value::Object(r.clone()))
                .collect()
        };
        PdSnapshot {
            persons: all(PdEntity::Person),
            organizations: all(PdEntity::Organization),
            deals: all(PdEntity::Deal),
            notes: self.notes.values().cloned().collect(),
            fields: self.fields.clone(),
        }
    }
}

/// Writes `changes` over `record`; custom fields merge key by key, and `null` clears one.
fn merge(record: &mut Map<String, Value>, changes: Map<String, Value>) {
    for (key, value) in changes {
        if key == "custom_fields" {
            let custom = record
                .entry("custom_fields")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("custom_fields is always an object");
            for (code, value) in value.as_object().into_iter().flatten() {
                if value.is_null() {
                    custom.remove(code);
                } else {
                    custom.insert(code.clone(), value.clone());
                }
            }
        } else {
            record.insert(key, value);
        }
    }
}

/// What the API derives: a person's first and last name; one primary email.
fn finish(entity: PdEntity, record: &mut Map<String, Value>) {
    if entity != PdEntity::Person {
        return;
    }
    let name = record
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
    record.insert("first_name".into(), json!(first));
    record.insert("last_name".into(), json!(last));
}

/// A stable 40-hex-digit key, as Pipedrive's custom field keys look.
fn field_code(company: &str, entity: PdEntity, serial: u64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{company}:{entity:?}:{serial}").as_bytes());
    hex::encode(&digest[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company() -> CompanyData {
        CompanyData::new("acme")
    }

    #[test]
    fn v2_refuses_strings_for_numbers_and_booleans_and_bad_timestamps() {
        let mut data = company();
        for body in [
            json!({"title": "D", "value": "100"}),
            json!({"title": "D", "is_archived": "true"}),
            json!({"title": "D", "expected_close_date": "01/02/2025"}),
            json!({"title": "D", "won_time": "2025-01-02 10:00:00"}),
            json!({"title": "D", "status": "closed"}),
            json!({"title": "D", "mrr": 10}),
        ] {
            let error = data.create(PdEntity::Deal, &body).unwrap_err();
            assert_eq!(error.status().as_u16(), 400, "{body}");
            assert_eq!(error.body()["success"], json!(false));
            assert!(
                error.body()["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("Validation failed"),
                "{body}"
            );
        }
        assert!(data.snapshot().deals.is_empty());
        let deal = data
            .create(PdEntity::Deal, &json!({"title": "D", "value": 100.5, "won_time": "2025-01-02T10:00:00Z", "expected_close_date": "2025-02-01"}))
            .unwrap();
        assert_eq!(deal["value"], json!(100.5));
        assert_eq!(deal["stage_id"], json!(1));
    }

    #[test]
    fn persons_need_a_name_and_typed_emails() {
        let mut data = company();
        assert!(data
            .create(PdEntity::Person, &json!({"emails": [{"value": "a@x.io"}]}))
            .is_err());
        assert!(data
            .create(
                PdEntity::Person,
                &json!({"name": "A", "emails": [{"value": "a@x.io", "primary": "yes"}]})
            )
            .is_err());
        let person = data
            .create(
                PdEntity::Person,
                &json!({"name": "Ada Lovelace", "emails": [{"value": "a@x.io", "primary": true}]}),
            )
            .unwrap();
        assert_eq!(person["first_name"], json!("Ada"));
        assert_eq!(person["last_name"], json!("Lovelace"));
    }

    #[test]
    fn money_custom_fields_are_value_and_currency_and_null_clears() {
        let mut data = company();
        let field = data
            .create_field(
                PdEntity::Person,
                &json!({"field_name": "MRR", "field_type": "monetary"}),
            )
            .unwrap();
        let code = field["field_code"].as_str().unwrap().to_string();
        assert_eq!(code.len(), 40);
        assert!(code.bytes().all(|b| b.is_ascii_hexdigit()));
        let person = data
            .create(PdEntity::Person, &json!({"name": "A"}))
            .unwrap();
        let id = person["id"].as_u64().unwrap();
        for wrong in [
            json!(100),
            json!("100 USD"),
            json!({"value": "100", "currency": "USD"}),
        ] {
            assert!(data
                .update(
                    PdEntity::Person,
                    id,
                    &json!({"custom_fields": {&code: wrong}})
                )
                .is_err());
        }
        assert!(data
            .update(
                PdEntity::Person,
                id,
                &json!({"custom_fields": {"0123456789abcdef0123456789abcdef01234567": "x"}})
            )
            .is_err());
        let set = data
            .update(
                PdEntity::Person,
                id,
                &json!({"custom_fields": {&code: {"value": 49.0, "currency": "EUR"}}}),
            )
            .unwrap();
        assert_eq!(set["custom_fields"][&code]["currency"], json!("EUR"));
        let cleared = data
            .update(
                PdEntity::Person,
                id,
                &json!({"custom_fields": {&code: null}}),
            )
            .unwrap();
        assert!(cleared["custom_fields"].get(&code).is_none());
    }

    #[test]
    fn deletes_are_soft_and_final() {
        let mut data = company();
        let id = data
            .create(PdEntity::Person, &json!({"name": "A"}))
            .unwrap()["id"]
            .as_u64()
            .unwrap();
        data.delete(PdEntity::Person, id).unwrap();
        assert_eq!(
            data.get(PdEntity::Person, id).unwrap()["is_deleted"],
            json!(true)
        );
        assert_eq!(
            data.update(PdEntity::Person, id, &json!({"name": "B"}))
                .unwrap_err()
                .status()
                .as_u16(),
            404
        );
        assert!(data.purge(PdEntity::Person, id));
        assert_eq!(
            data.get(PdEntity::Person, id)
                .unwrap_err()
                .status()
                .as_u16(),
            404
        );
    }

    #[test]
    fn email_search_is_exact_and_case_insensitive_and_skips_deleted() {
        let mut data = company();
        for email in ["Ada@X.io", "ada@x.io.evil", "bob@x.io"] {
            data.create(
                PdEntity::Person,
                &json!({"name": "P", "emails": [{"value": email}]}),
            )
            .unwrap();
        }
        let search = Search {
            term: "ada@x.io".into(),
            fields: vec!["email".into()],
            exact: true,
            limit: 100,
            ..Search::default()
        };
        let found = data.search(PdEntity::Person, &search);
        assert_eq!(found["items"].as_array().unwrap().len(), 1);
        assert_eq!(found["items"][0]["item"]["emails"], json!(["Ada@X.io"]));
        let loose = data.search(
            PdEntity::Person,
            &Search {
                exact: false,
                ..search.clone()
            },
        );
        assert_eq!(loose["items"].as_array().unwrap().len(), 2);
        data.delete(PdEntity::Person, 1).unwrap();
        assert!(data.search(PdEntity::Person, &search)["items"]
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn deals_take_their_pipeline_from_the_stage_and_refuse_unknown_links() {
        let mut data = company();
        let deal = data
            .create(PdEntity::Deal, &json!({"title": "D", "stage_id": 3}))
            .unwrap();
        assert_eq!(deal["pipeline_id"], json!(1));
        assert!(data
            .create(PdEntity::Deal, &json!({"title": "D", "stage_id": 99}))
            .is_err());
        assert!(data
            .create(PdEntity::Deal, &json!({"title": "D", "person_id": 42}))
            .is_err());
    }

    #[test]
    fn notes_belong_to_an_existing_record() {
        let mut data = company();
        assert!(data.create_note(&json!({"content": "hi"})).is_err());
        assert!(data
            .create_note(&json!({"content": "hi", "person_id": 7}))
            .is_err());
        let id = data
            .create(PdEntity::Person, &json!({"name": "A"}))
            .unwrap()["id"]
            .as_u64()
            .unwrap();
        data.create_note(&json!({"content": "hi", "person_id": id}))
            .unwrap();
        assert_eq!(data.snapshot().notes[0].person_id, Some(id));
    }
}
