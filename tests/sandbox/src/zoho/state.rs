//! One emulated Zoho CRM organisation's data: Contacts, Accounts and Deals, its users, its
//! Deals layout and pipelines, and what its upserts, searches and lookups do to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::exception;
use super::fields::FieldBook;
use super::{ZohoPipeline, ZohoUser};

/// At most this many records per upsert (spec: `Body_Wrapper.data`, Zoho's 100).
pub const MAX_RECORDS_PER_CALL: usize = 100;

/// The modules the emulator keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Module {
    Contacts,
    Accounts,
    Deals,
}

impl Module {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "Contacts" => Some(Self::Contacts),
            "Accounts" => Some(Self::Accounts),
            "Deals" => Some(Self::Deals),
            _ => None,
        }
    }

    pub(crate) fn api_name(self) -> &'static str {
        match self {
            Self::Contacts => "Contacts",
            Self::Accounts => "Accounts",
            Self::Deals => "Deals",
        }
    }

    /// The system duplicate check of upserts without `duplicate_check_fields`.
    pub(crate) fn system_duplicate_field(self) -> &'static str {
        match self {
            Self::Contacts => "Email",
            Self::Accounts => "Account_Name",
            Self::Deals => "Deal_Name",
        }
    }

    /// Fields an inserted record must have (Zoho's default layouts).
    fn mandatory(self) -> &'static [&'static str] {
        match self {
            Self::Contacts => &["Last_Name"],
            Self::Accounts => &["Account_Name"],
            Self::Deals => &["Deal_Name", "Stage"],
        }
    }

    /// The field a lookup to this module shows as its `name`.
    fn name_field(self) -> &'static str {
        match self {
            Self::Contacts => "Full_Name",
            Self::Accounts => "Account_Name",
            Self::Deals => "Deal_Name",
        }
    }

    /// The module a lookup field points to, if `field` is one.
    fn lookup(self, field: &str) -> Option<Lookup> {
        match (self, field) {
            (_, "Owner") => Some(Lookup::User),
            (Self::Contacts | Self::Deals, "Account_Name") => Some(Lookup::Record(Self::Accounts)),
            (Self::Deals, "Contact_Name") => Some(Lookup::Record(Self::Contacts)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Lookup {
    User,
    Record(Module),
}

/// An upsert's or insert's result for one record, in the spec's `Success_Response` or
/// `API_Exception` shape.
pub(crate) type RecordResult = Value;

/// How many access tokens the accounts server minted and refused, and the credits spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZohoTokenCounts {
    /// Access tokens issued for the refresh token.
    pub issued: u64,
    /// Token requests refused: the ten-per-ten-minutes limit, or bad credentials.
    pub refused: u64,
}

/// What an organisation holds, for tests and the index page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZohoSnapshot {
    /// Records as `GET /crm/v8/{module}/{id}` returns them, in creation order.
    pub contacts: Vec<Value>,
    pub accounts: Vec<Value>,
    pub deals: Vec<Value>,
    pub tokens: ZohoTokenCounts,
    /// API credits spent in the rolling day.
    pub credits_used: u64,
}

impl ZohoSnapshot {
    /// The module's record whose `field` is the string `value` (case-insensitive).
    pub fn find(&self, module: &str, field: &str, value: &str) -> Option<&Value> {
        let records = match module {
            "Contacts" => &self.contacts,
            "Accounts" => &self.accounts,
            "Deals" => &self.deals,
            _ => return None,
        };
        records.iter().find(|r| {
            r.get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
    }
}

/// An organisation's records and settings.
pub(crate) struct OrgData {
    next_id: u64,
    records: BTreeMap<Module, Vec<Map<String, Value>>>,
    pub(crate) users: Vec<ZohoUser>,
    pub(crate) pipelines: Vec<ZohoPipeline>,
    pub(crate) fields: FieldBook,
}

/// The Deals module's one layout.
pub(crate) const DEALS_LAYOUT_ID: &str = "5725767000000091055";
const DEALS_LAYOUT_NAME: &str = "Standard";

impl OrgData {
    pub(crate) fn new(users: Vec<ZohoUser>, pipelines: Vec<ZohoPipeline>) -> Self {
        Self {
            next_id: 5_725_767_000_000_417_001,
            records: BTreeMap::new(),
            users,
            pipelines,
            fields: FieldBook::default(),
        }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn list(&self, module: Module) -> &[Map<String, Value>] {
        self.records.get(&module).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn get(&self, module: Module, id: &str) -> Option<Value> {
        self.list(module)
            .iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            .map(|r| Value::Object(r.clone()))
    }

    /// Sets `fields` of record `id` as a person does in Zoho's web app (no checks): false
    /// when there is no such record.
    pub(crate) fn edit(&mut self, module: Module, id: &str, fields: &Map<String, Value>) -> bool {
        let Some(record) = self.records.get_mut(&module).and_then(|records| {
            records
                .iter_mut()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
        }) else {
            return false;
        };
        for (name, value) in fields {
            record.insert(name.clone(), value.clone());
        }
        record.insert("Modified_Time".into(), json!(now()));
        fill_full_name(module, record);
        true
    }

    pub(crate) fn delete(&mut self, module: Module, id: &str) -> bool {
        let Some(records) = self.records.get_mut(&module) else {
            return false;
        };
        let before = records.len();
        records.retain(|r| r.get("id").and_then(Value::as_str) != Some(id));
        records.len() < before
    }

    pub(crate) fn records(&self, module: Module) -> Vec<Value> {
        self.list(module)
            .iter()
            .map(|r| Value::Object(r.clone()))
            .collect()
    }

    /// `POST /{module}/upsert` (`duplicate_check`: the fields to match on, else the system
    /// check) or, with `duplicate_check` `Some(&[])`, `POST /{module}` (insert only).
    pub(crate) fn write(
        &mut self,
        module: Module,
        records: &[Value],
        duplicate_check: Option<&[String]>,
    ) -> Vec<RecordResult> {
        let system = [module.system_duplicate_field().to_string()];
        let fields = duplicate_check.unwrap_or(&system);
        records
            .iter()
            .enumerate()
            .map(|(i, record)| self.write_one(module, i, record, fields))
            .collect()
    }

    fn write_one(
        &mut self,
        module: Module,
        index: usize,
        record: &Value,
        duplicate_check: &[String],
    ) -> RecordResult {
        let path = |field: &str| format!("$.data[{index}].{field}");
        let Some(input) = record.as_object() else {
            return exception(
                "INVALID_DATA",
                "invalid data",
                json!({"json_path": format!("$.data[{index}]"), "expected_data_type": "jsonobject"}),
            );
        };
        let mut fields = Map::new();
        for (name, value) in input {
            if name == "id" || name.starts_with('$') {
                continue;
            }
            match self.check_field(module, name, value) {
                Ok(stored) => {
                    fields.insert(name.clone(), stored);
                }
                Err(mut details) => {
                    details.insert("api_name".into(), json!(name));
                    details.insert("json_path".into(), json!(path(name)));
                    return exception("INVALID_DATA", "invalid data", Value::Object(details));
                }
            }
        }
        // The first duplicate check field the record carries, that matches, decides.
        let mut matched = None;
        for field in duplicate_check {
            let Some(wanted) = fields.get(field).filter(|v| !v.is_null()) else {
                continue;
            };
            let same: Vec<usize> = self
                .list(module)
                .iter()
                .enumerate()
                .filter(|(_, r)| r.get(field).is_some_and(|have| same_value(have, wanted)))
                .map(|(at, _)| at)
                .collect();
            match same.as_slice() {
                [] => continue,
                [at] => {
                    matched = Some((*at, field.clone()));
                    break;
                }
                [first, ..] => {
                    let first = &self.list(module)[*first];
                    return exception(
                        "DUPLICATE_DATA",
                        "duplicate data",
                        json!({
                            "api_name": field,
                            "json_path": path(field),
                            "more_records": true,
                            "duplicate_record": {
                                "id": first.get("id"),
                                "module": {"api_name": module.api_name()},
                                "Owner": first.get("Owner"),
                            },
                        }),
                    );
                }
            }
        }
        if let Some(details) = self.check_stage(module, &fields, matched.as_ref().map(|m| m.0)) {
            let mut details = details;
            details.insert("json_path".into(), json!(path("Stage")));
            return exception("INVALID_DATA", "invalid data", Value::Object(details));
        }
        let now = now();
        let by = self.users.first().map(user_lookup).unwrap_or(Value::Null);
        match matched {
            Some((at, field)) => {
                let record = &mut self.records.get_mut(&module).expect("matched a record")[at];
                for (name, value) in fields {
                    record.insert(name, value);
                }
                record.insert("Modified_Time".into(), json!(now));
                record.insert("Modified_By".into(), by.clone());
                fill_full_name(module, record);
                let id = record.get("id").cloned().unwrap_or(Value::Null);
                json!({
                    "code": "SUCCESS",
                    "duplicate_field": field,
                    "action": "update",
                    "details": {"Modified_Time": now, "Modified_By": by, "Created_Time": record.get("Created_Time"), "id": id, "Created_By": record.get("Created_By")},
                    "message": "record updated",
                    "status": "success",
                })
            }
            None => {
                for field in module.mandatory() {
                    let present = fields.get(*field).is_some_and(|v| match v {
                        Value::Null => false,
                        Value::String(s) => !s.trim().is_empty(),
                        _ => true,
                    });
                    if !present {
                        return exception(
                            "MANDATORY_NOT_FOUND",
                            "required field not found",
                            json!({"api_name": field, "json_path": path(field)}),
                        );
                    }
                }
                let id = self.new_id();
                let mut record = Map::new();
                record.insert("id".into(), json!(id));
                record.insert("Owner".into(), by.clone());
                record.extend(fields);
                record.insert("Created_Time".into(), json!(now));
                record.insert("Created_By".into(), by.clone());
                record.insert("Modified_Time".into(), json!(now));
                record.insert("Modified_By".into(), by.clone());
                if module == Module::Deals && !record.contains_key("Pipeline") {
                    if let Some(default) = self.pipelines.first() {
                        record.insert("Pipeline".into(), json!(default.name));
                    }
                }
                fill_full_name(module, &mut record);
                self.records.entry(module).or_default().push(record);
                json!({
                    "code": "SUCCESS",
                    "duplicate_field": null,
                    "action": "insert",
                    "details": {"Modified_Time": now, "Modified_By": by, "Created_Time": now, "id": id, "Created_By": by},
                    "message": "record added",
                    "status": "success",
                })
            }
        }
    }

    /// The value to store for `field`, or the `details` of its `INVALID_DATA`.
    fn check_field(
        &self,
        module: Module,
        field: &str,
        value: &Value,
    ) -> Result<Value, Map<String, Value>> {
        let invalid = |expected: &str| {
            let mut details = Map::new();
            details.insert("expected_data_type".into(), json!(expected));
            details
        };
        if value.is_null() {
            return Ok(Value::Null);
        }
        if let Some(lookup) = module.lookup(field) {
            let id = value
                .as_object()
                .and_then(|o| o.get("id"))
                .and_then(|id| {
                    id.as_str()
                        .map(str::to_string)
                        .or(id.as_u64().map(|n| n.to_string()))
                })
                .ok_or_else(|| invalid("lookup"))?;
            let name = match lookup {
                Lookup::User => self
                    .users
                    .iter()
                    .find(|u| u.id == id)
                    .map(|u| u.full_name.clone()),
                Lookup::Record(target) => self.get(target, &id).map(|r| {
                    r.get(target.name_field())
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                }),
            };
            let Some(name) = name else {
                let mut details = invalid("lookup");
                details.insert("id".into(), json!(id));
                return Err(details);
            };
            return Ok(json!({"name": name, "id": id}));
        }
        match field {
            "Email" | "Secondary_Email" => {
                let ok = value.as_str().is_some_and(is_email);
                if ok {
                    Ok(value.clone())
                } else {
                    Err(invalid("email"))
                }
            }
            "Amount" => value
                .as_f64()
                .map(|_| value.clone())
                .ok_or_else(|| invalid("double")),
            "Closing_Date" => value
                .as_str()
                .filter(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
                .map(|_| value.clone())
                .ok_or_else(|| invalid("date")),
            "Pipeline" if module == Module::Deals => value
                .as_str()
                .filter(|name| self.pipelines.iter().any(|p| p.name == *name))
                .map(|_| value.clone())
                .ok_or_else(|| invalid("picklist")),
            _ => match value {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(value.clone()),
                _ if field.starts_with('$') => Ok(value.clone()),
                _ => Err(invalid("text")),
            },
        }
    }

    /// A deal's stage must be one of its pipeline's (the record's, else the one it has, else
    /// the default pipeline).
    fn check_stage(
        &self,
        module: Module,
        fields: &Map<String, Value>,
        existing: Option<usize>,
    ) -> Option<Map<String, Value>> {
        if module != Module::Deals {
            return None;
        }
        let stage = fields.get("Stage").and_then(Value::as_str)?;
        let pipeline = fields
            .get("Pipeline")
            .and_then(Value::as_str)
            .or_else(|| {
                existing.and_then(|at| {
                    self.list(module)[at]
                        .get("Pipeline")
                        .and_then(Value::as_str)
                })
            })
            .or_else(|| self.pipelines.first().map(|p| p.name.as_str()))?;
        let belongs = self
            .pipelines
            .iter()
            .find(|p| p.name == pipeline)
            .is_some_and(|p| p.stages.iter().any(|s| s == stage));
        if belongs {
            return None;
        }
        let mut details = Map::new();
        details.insert("api_name".into(), json!("Stage"));
        details.insert("expected_data_type".into(), json!("picklist"));
        Some(details)
    }

    /// Records matching `criteria` (every email field for `Criteria::Email`).
    pub(crate) fn search(&self, module: Module, criteria: &Criteria) -> Vec<Value> {
        self.list(module)
            .iter()
            .filter(|r| criteria.matches(r))
            .map(|r| Value::Object(r.clone()))
            .collect()
    }

    /// `GET /settings/layouts?module=Deals`'s `layouts`.
    pub(crate) fn layouts(&self, module: Module) -> Vec<Value> {
        let id = match module {
            Module::Deals => DEALS_LAYOUT_ID.to_string(),
            Module::Contacts => "5725767000000091033".into(),
            Module::Accounts => "5725767000000091001".into(),
        };
        vec![json!({
            "id": id,
            "name": DEALS_LAYOUT_NAME,
            "api_name": DEALS_LAYOUT_NAME,
            "display_label": DEALS_LAYOUT_NAME,
            "status": "active",
            "visible": true,
            "source": "crm",
            "generated_type": "default",
            "mode": "standard",
            "show_business_card": false,
            "has_more_profiles": false,
            "profiles": [{"id": "5725767000000026011", "name": "Administrator", "default": true}],
        })]
    }

    /// `GET /settings/pipeline?layout_id=`'s `pipeline`, ids stable per position.
    pub(crate) fn pipelines_json(&self) -> Vec<Value> {
        self.pipelines
            .iter()
            .enumerate()
            .map(|(p, pipeline)| {
                let maps: Vec<Value> = pipeline
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(s, stage)| {
                        let closed = stage.starts_with("Closed");
                        let (forecast, kind) = match (closed, stage.contains("Won")) {
                            (true, true) => ("Closed", "Closed Won"),
                            (true, false) => ("Omitted", "Closed Lost"),
                            _ => ("Pipeline", "Open"),
                        };
                        json!({
                            "id": format!("57257670000000{:02}{:03}", p, s + 6801),
                            "display_value": stage,
                            "actual_value": stage,
                            "sequence_number": s + 1,
                            "forecast_category": {"name": forecast, "id": "5725767000000000345"},
                            "forecast_type": kind,
                        })
                    })
                    .collect();
                json!({
                    "id": format!("572576700000009{:04}", 1000 + p),
                    "display_value": pipeline.name,
                    "actual_value": pipeline.name,
                    "default": p == 0,
                    "child_available": false,
                    "maps": maps,
                })
            })
            .collect()
    }
}

/// A search: `?email=` or `?criteria=`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Criteria {
    /// Any email field equals this (case-insensitive).
    Email(String),
    Condition {
        field: String,
        op: Op,
        value: String,
    },
    And(Vec<Criteria>),
    Or(Vec<Criteria>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Equals,
    StartsWith,
}

impl Criteria {
    fn matches(&self, record: &Map<String, Value>) -> bool {
        match self {
            Criteria::Email(email) => ["Email", "Secondary_Email"].iter().any(|f| {
                record
                    .get(*f)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(email))
            }),
            Criteria::Condition { field, op, value } => {
                let have = match record.get(field) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    // Lookups match on their name or id.
                    Some(Value::Object(o)) => {
                        let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
                        if id == value {
                            return true;
                        }
                        o.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    }
                    _ => return false,
                };
                let (have, value) = (have.to_lowercase(), value.to_lowercase());
                match op {
                    Op::Equals => have == value,
                    Op::StartsWith => have.starts_with(&value),
                }
            }
            Criteria::And(all) => all.iter().all(|c| c.matches(record)),
            Criteria::Or(any) => any.iter().any(|c| c.matches(record)),
        }
    }

    /// Parses Zoho's criteria, `(Field:operator:value)`, groups joined by `and` / `or`, e.g.
    /// `((Last_Name:equals:Burns)and(Email:starts_with:b))`; `\(`, `\)`, `\,` escape in values.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.trim().chars().collect();
        let mut at = 0;
        let parsed = parse_group(&chars, &mut at)?;
        if at != chars.len() {
            return Err(format!("unexpected text at {at}"));
        }
        Ok(parsed)
    }
}

fn parse_group(chars: &[char], at: &mut usize) -> Result<Criteria, String> {
    if chars.get(*at) != Some(&'(') {
        return Err(format!("expected ( at {at}"));
    }
    *at += 1;
    let inner = if chars.get(*at) == Some(&'(') {
        let mut parts = vec![parse_group(chars, at)?];
        let mut joiner: Option<bool> = None;
        while chars.get(*at) != Some(&')') {
            let rest: String = chars[*at..]
                .iter()
                .take(3)
                .collect::<String>()
                .to_lowercase();
            let and = if rest.starts_with("and") {
                *at += 3;
                true
            } else if rest.starts_with("or") {
                *at += 2;
                false
            } else {
                return Err(format!("expected and/or at {at}"));
            };
            if joiner.is_some_and(|j| j != and) {
                return Err("mixed and/or without parentheses".into());
            }
            joiner = Some(and);
            parts.push(parse_group(chars, at)?);
        }
        match (joiner, parts.len()) {
            (_, 1) => parts.pop().expect("one part"),
            (Some(true), _) => Criteria::And(parts),
            _ => Criteria::Or(parts),
        }
    } else {
        let mut text = String::new();
        while let Some(&c) = chars.get(*at) {
            match c {
                '\\' => {
                    *at += 1;
                    if let Some(&escaped) = chars.get(*at) {
                        text.push(escaped);
                    }
                }
                ')' => break,
                c => text.push(c),
            }
            *at += 1;
        }
        let mut parts = text.splitn(3, ':');
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("expected Field:operator:value, got {text:?}"));
        };
        let op = match op {
            "equals" => Op::Equals,
            "starts_with" => Op::StartsWith,
            other => return Err(format!("operator {other:?} is not emulated")),
        };
        Criteria::Condition {
            field: field.to_string(),
            op,
            value: value.to_string(),
        }
    };
    if chars.get(*at) != Some(&')') {
        return Err(format!("expected ) at {at}"));
    }
    *at += 1;
    Ok(inner)
}

fn same_value(have: &Value, wanted: &Value) -> bool {
    match (have, wanted) {
        (Value::String(a), Value::String(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        (Value::Object(a), Value::Object(b)) => a.get("id") == b.get("id"),
        (a, b) => a == b,
    }
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(char::is_whitespace)
}

fn fill_full_name(module: Module, record: &mut Map<String, Value>) {
    if module != Module::Contacts {
        return;
    }
    let part = |f: &str| {
        record
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let full = [part("First_Name"), part("Last_Name")]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    record.insert("Full_Name".into(), json!(full));
}

pub(crate) fn user_lookup(user: &ZohoUser) -> Value {
    json!({"name": user.full_name, "id": user.id, "email": user.email})
}

/// Zoho's time format: `2025-06-27T10:15:00+00:00`.
fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_groups_escapes_and_refuse_what_zoho_refuses() {
        assert_eq!(
            Criteria::parse("(Email:equals:a@b.co)"),
            Ok(Criteria::Condition {
                field: "Email".into(),
                op: Op::Equals,
                value: "a@b.co".into()
            })
        );
        let parsed = Criteria::parse("((Deal_Name:equals:sub\\(1\\))and(Stage:starts_with:Clo))")
            .expect("parses");
        let Criteria::And(parts) = parsed else {
            panic!("and expected")
        };
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[0], Criteria::Condition { value, .. } if value == "sub(1)"));
        assert!(Criteria::parse("Email:equals:x").is_err());
        assert!(Criteria::parse("(Email:like:x)").is_err());
        assert!(Criteria::parse("((A:equals:1)and(B:equals:2)or(C:equals:3))").is_err());
    }
}
