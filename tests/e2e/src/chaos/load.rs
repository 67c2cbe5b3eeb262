//! The chaos load: customers of Stripe and of Chargebee whose names carry a version, changed
//! step by step, and what every CRM must hold for them afterwards.

use billsync_sandbox::{AcSnapshot, PdEntity, PdSnapshot, ZohoSnapshot};
use serde_json::Value;

/// Where a customer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stripe,
    Chargebee,
}

/// One customer of the load: created at version 0, then changed to 1, 2, ….
#[derive(Debug, Clone)]
pub struct Customer {
    pub source: Source,
    pub id: String,
    pub email: String,
    /// The name's fixed part; the last name is `v{version}`.
    pub first_name: String,
    /// Ids of the events its changes raised, in order (Stripe's we make; Chargebee's the
    /// site raises).
    pub event_ids: Vec<String>,
}

impl Customer {
    pub fn new(source: Source, phase: usize, n: usize) -> Customer {
        let letter = match source {
            Source::Stripe => 's',
            Source::Chargebee => 'c',
        };
        Customer {
            source,
            id: format!("cus_chaos{letter}{phase:02}x{n:03}"),
            email: format!("chaos-{letter}{phase:02}x{n:03}@example.com"),
            first_name: format!("{}{phase:02}x{n:03}", letter.to_ascii_uppercase()),
            event_ids: Vec::new(),
        }
    }

    pub fn name_at(&self, version: usize) -> String {
        format!("{} v{version}", self.first_name)
    }
}

/// What a CRM holds for one customer: the names of the records carrying its email.
pub fn names_in_activecampaign(snapshot: &AcSnapshot, email: &str) -> Vec<String> {
    snapshot
        .contacts
        .iter()
        .filter(|c| c.email.eq_ignore_ascii_case(email))
        .map(|c| format!("{} {}", c.first_name, c.last_name))
        .collect()
}

pub fn names_in_zoho(snapshot: &ZohoSnapshot, email: &str) -> Vec<String> {
    snapshot
        .contacts
        .iter()
        .filter(|c| {
            c["Email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .map(|c| {
            format!(
                "{} {}",
                c["First_Name"].as_str().unwrap_or_default(),
                c["Last_Name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

pub fn names_in_pipedrive(snapshot: &PdSnapshot, email: &str) -> Vec<String> {
    snapshot
        .live(PdEntity::Person)
        .into_iter()
        .filter(|p| holds_email(&p["emails"], email) || holds_email(&p["email"], email))
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn holds_email(value: &Value, email: &str) -> bool {
    match value {
        Value::String(s) => s.eq_ignore_ascii_case(email),
        Value::Array(items) => items.iter().any(|item| holds_email(item, email)),
        Value::Object(object) => object.get("value").is_some_and(|v| holds_email(v, email)),
        _ => false,
    }
}

/// The version in a name `… v{n}`.
pub fn version_of(name: &str) -> Option<usize> {
    name.rsplit_once(" v").and_then(|(_, v)| v.parse().ok())
}
