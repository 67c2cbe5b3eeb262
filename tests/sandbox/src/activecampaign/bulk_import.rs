//! AC's bulk contact importer: validating `POST /import/bulk_import`, the queued batches, and
//! applying a batch to the account's contacts once its processing delay has passed, as AC's
//! asynchronous importer does.
//!
//! Facts from the spec and AC's docs ("Bulk import contacts", "Bulk import status info"): up
//! to 250 contacts per request; a request that fails validation is refused whole (400, "The
//! import was not queued"), while a contact that fails during processing fails alone and
//! `GET /import/info` lists its email under `failure`; 100 imports per minute, 20 for
//! requests of a single contact; `status` is `false` until the importer has set one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::error::ApiError;
use super::state::{is_valid_email, AcSnapshot, AccountData, ContactInput};
use super::wire;
use crate::kit::RateWindow;

/// "Up to 250 contacts may be included in a single request" (the spec).
const MAX_CONTACTS: usize = 250;
/// Payloads must stay under 400,000 bytes. Not in the spec; AC's bulk import guide states it
/// (third-party copies of the guide read "≤ 399,999 bytes").
const MAX_PAYLOAD_BYTES: usize = 400_000;
/// AC's docs: "For requests containing multiple contacts, there is a limit of 100 requests per
/// minute", and 20 for requests of a single contact.
const IMPORTS_PER_MINUTE: u32 = 100;
const SINGLE_CONTACT_IMPORTS_PER_MINUTE: u32 = 20;
/// The status list's "recently completed" is a rolling window of the last seven days.
const RECENT_DAYS: i64 = 7;

/// A bulk import batch, as the sandbox holds it for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcBulkImport {
    pub batch_id: String,
    pub queued_contacts: usize,
    /// Whether the batch has been applied to the account's contacts.
    pub completed: bool,
    /// Ids of the contacts it created: `success` of `GET /import/info`.
    pub success: Vec<String>,
    /// Ids of the existing contacts it updated, which AC's info does not list.
    pub updated: Vec<String>,
    /// Emails of the contacts it could not import: `failure` of `GET /import/info`.
    pub failure: Vec<String>,
    /// The request's `callback`, as sent. The sandbox never calls it: it makes no outside
    /// requests.
    pub callback: Option<Value>,
}

/// One contact of an import, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImportContact {
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    tags: Vec<String>,
    /// `(custom field id, value)`.
    fields: Vec<(u64, String)>,
    subscribe: Vec<u64>,
    unsubscribe: Vec<u64>,
}

/// A `POST /import/bulk_import` body that passed validation.
#[derive(Debug)]
pub(crate) struct ImportRequest {
    pub(crate) contacts: Vec<ImportContact>,
    callback: Option<Value>,
}

fn refused(reason: &str) -> ApiError {
    ApiError::import_invalid(vec![json!(reason)])
}

impl ImportRequest {
    /// Validates a request body; any failure refuses the whole import, with a reason for each
    /// contact that failed.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.len() >= MAX_PAYLOAD_BYTES {
            return Err(refused(&format!(
                "The payload is {} bytes; it must be smaller than {MAX_PAYLOAD_BYTES} bytes.",
                body.len()
            )));
        }
        let Ok(Value::Object(mut request)) = serde_json::from_slice(body) else {
            return Err(refused("The payload is not a JSON object."));
        };
        let contacts = match request.remove("contacts") {
            Some(Value::Array(contacts)) if !contacts.is_empty() => contacts,
            _ => {
                return Err(refused(
                    "'contacts' is a required field: an array of at least one contact.",
                ))
            }
        };
        if contacts.len() > MAX_CONTACTS {
            return Err(refused(&format!(
                "Up to {MAX_CONTACTS} contacts may be included in a single request; this one has {}.",
                contacts.len()
            )));
        }
        let callback = match request.remove("callback") {
            None | Some(Value::Null) => None,
            Some(callback) => Some(valid_callback(callback).map_err(refused)?),
        };
        let mut parsed = Vec::with_capacity(contacts.len());
        let mut reasons = Vec::new();
        for (index, contact) in contacts.iter().enumerate() {
            match ImportContact::parse(contact) {
                Ok(contact) => parsed.push(contact),
                Err(reason) => reasons.push(json!({"contact": index, "failureReason": reason})),
            }
        }
        if !reasons.is_empty() {
            return Err(ApiError::import_invalid(reasons));
        }
        Ok(Self {
            contacts: parsed,
            callback,
        })
    }
}

/// The spec's callback object: `url` and `requestType` (`GET` or `POST`) are required.
fn valid_callback(callback: Value) -> Result<Value, &'static str> {
    let Value::Object(object) = &callback else {
        return Err("'callback' must be an object.");
    };
    if object
        .get("url")
        .and_then(Value::as_str)
        .is_none_or(|url| url.trim().is_empty())
    {
        return Err("'callback.url' is a required field.");
    }
    match object.get("requestType").and_then(Value::as_str) {
        Some(method)
            if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("POST") =>
        {
            Ok(callback)
        }
        _ => Err("'callback.requestType' must be \"GET\" or \"POST\"."),
    }
}

impl ImportContact {
    /// The validator's checks; it looks only for the shape of an address (the spec's
    /// "Field‘ email’ incorrect format"). Addresses that pass it but are not valid, such as
    /// the spec's `invalid.email@invalidDomain`, fail later, alone, while the batch runs.
    fn parse(contact: &Value) -> Result<Self, String> {
        let Value::Object(contact) = contact else {
            return Err("Each contact must be an object.".into());
        };
        let email = match contact.get("email") {
            Some(Value::String(email)) if !email.trim().is_empty() => email.trim().to_owned(),
            _ => return Err("Field 'email' is required.".into()),
        };
        if !looks_like_an_address(&email) {
            return Err("Field\u{2018} email\u{2019} incorrect format".into());
        }
        // Accepted and validated, but the sandbox has no AC accounts to link the contact to.
        optional_text(contact, "customer_acct_name")?;
        Ok(Self {
            email,
            first_name: optional_text(contact, "first_name")?,
            last_name: optional_text(contact, "last_name")?,
            phone: optional_text(contact, "phone")?,
            tags: tags(contact)?,
            fields: objects(contact, "fields", |field| {
                Some((wire::id(field, "id")?, wire::text(field, "value")?))
            })?,
            subscribe: objects(contact, "subscribe", |list| wire::id(list, "listid"))?,
            unsubscribe: objects(contact, "unsubscribe", |list| wire::id(list, "listid"))?,
        })
    }
}

fn looks_like_an_address(email: &str) -> bool {
    email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace)
}

/// A text attribute: a string, or a number or boolean taken as text; anything else is refused.
fn optional_text(contact: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match contact.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(_) | Value::Object(_)) => Err(format!("Field '{key}' must be a string.")),
        Some(_) => Ok(wire::text(contact, key)),
    }
}

fn tags(contact: &Map<String, Value>) -> Result<Vec<String>, String> {
    match contact.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(tags)) => tags
            .iter()
            .map(|tag| match tag {
                Value::String(tag) => Ok(tag.trim().to_owned()),
                _ => Err("Field 'tags' must be an array of strings.".to_owned()),
            })
            .filter(|tag| !matches!(tag, Ok(t) if t.is_empty()))
            .collect(),
        Some(_) => Err("Field 'tags' must be an array of strings.".into()),
    }
}

/// An array of objects under `key`, each read by `item` (`None`: the object is malformed).
fn objects<T>(
    contact: &Map<String, Value>,
    key: &str,
    item: impl Fn(&Map<String, Value>) -> Option<T>,
) -> Result<Vec<T>, String> {
    let malformed = || match key {
        "fields" => "Each of 'fields' needs an integer 'id' and a 'value'.".to_owned(),
        _ => format!("Each of '{key}' needs a numeric 'listid'."),
    };
    match contact.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_object().and_then(&item).ok_or_else(malformed))
            .collect(),
        Some(_) => Err(malformed()),
    }
}

/// What processing a batch came to.
#[derive(Debug)]
struct Outcome {
    created: Vec<String>,
    updated: Vec<String>,
    failed: Vec<String>,
    completed_on: NaiveDate,
}

#[derive(Debug)]
struct Batch {
    id: String,
    queued_at: Instant,
    due: Instant,
    queued_on: NaiveDate,
    queued_contacts: usize,
    callback: Option<Value>,
    /// The contacts still to apply; taken when the batch is processed.
    contacts: Vec<ImportContact>,
    outcome: Option<Outcome>,
}

impl Batch {
    /// AC's docs: `false` until the importer has set a status (a call "less than a second"
    /// after the import); the sandbox answers `false` for the first half of the delay, then
    /// `active`, then `completed`.
    fn status(&self, now: Instant) -> Value {
        if self.outcome.is_some() {
            json!("completed")
        } else if now < self.queued_at + (self.due - self.queued_at) / 2 {
            json!(false)
        } else {
            json!("active")
        }
    }
}

/// An account's bulk import batches, queued and processed.
#[derive(Debug, Default)]
pub(crate) struct BulkImports {
    batches: Vec<Batch>,
    by_id: HashMap<String, usize>,
    /// Batches not yet processed, in the order they fall due (every batch of an account waits
    /// the same delay).
    pending: VecDeque<usize>,
}

/// A random version-4 UUID, the shape of the spec's `batchId`.
fn batch_id() -> String {
    let bits = rand::random::<u128>() & !(0xF << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl BulkImports {
    /// Queues a batch to be processed `delay` after `now`; returns its id and when it falls due.
    pub(crate) fn queue(
        &mut self,
        request: ImportRequest,
        now: Instant,
        delay: Duration,
    ) -> (String, Instant) {
        let id = batch_id();
        let due = now + delay;
        self.by_id.insert(id.clone(), self.batches.len());
        self.pending.push_back(self.batches.len());
        self.batches.push(Batch {
            id: id.clone(),
            queued_at: now,
            due,
            queued_on: chrono::Utc::now().date_naive(),
            queued_contacts: request.contacts.len(),
            callback: request.callback,
            contacts: request.contacts,
            outcome: None,
        });
        (id, due)
    }

    /// Whether a batch is due by `now` and not yet processed.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.pending
            .front()
            .is_some_and(|&index| self.batches[index].due <= now)
    }

    /// Makes every queued batch due at `now` at the latest.
    pub(crate) fn hurry(&mut self, now: Instant) {
        for &index in &self.pending {
            let batch = &mut self.batches[index];
            batch.due = batch.due.min(now);
            batch.queued_at = batch.queued_at.min(now);
        }
    }

    /// `GET /import/info`'s answer for a batch, if the account has it.
    pub(crate) fn info(&self, batch_id: &str, now: Instant) -> Option<Value> {
        let batch = &self.batches[*self.by_id.get(batch_id)?];
        let (success, failure) = batch
            .outcome
            .as_ref()
            .map_or((&[][..], &[][..]), |o| (&o.created[..], &o.failed[..]));
        Some(json!({"status": batch.status(now), "success": success, "failure": failure}))
    }

    /// `GET /import/bulk_import`: batches and contacts per day, still outstanding (by the day
    /// queued) and completed in the last seven days (by the day completed); counts are
    /// strings, as in the spec's example.
    pub(crate) fn status_list(&self, today: NaiveDate) -> Value {
        let mut outstanding = BTreeMap::new();
        let mut completed = BTreeMap::new();
        for batch in &self.batches {
            let (day, days) = match &batch.outcome {
                None => (batch.queued_on, &mut outstanding),
                Some(o) if (today - o.completed_on).num_days() < RECENT_DAYS => {
                    (o.completed_on, &mut completed)
                }
                Some(_) => continue,
            };
            let (batches, contacts) = days.entry(day).or_insert((0, 0));
            *batches += 1;
            *contacts += batch.queued_contacts;
        }
        let listed = |days: BTreeMap<NaiveDate, (usize, usize)>| -> Vec<Value> {
            days.into_iter()
                .map(|(day, (batches, contacts))| {
                    json!({
                        "forDate": day.format("%Y-%m-%d").to_string(),
                        "batches": batches.to_string(),
                        "contacts": contacts.to_string(),
                    })
                })
                .collect()
        };
        json!({"outstanding": listed(outstanding), "recentlyCompleted": listed(completed)})
    }

    pub(crate) fn fill(&self, snapshot: &mut AcSnapshot) {
        snapshot.bulk_imports = self
            .batches
            .iter()
            .map(|b| {
                let outcome = b.outcome.as_ref();
                let listed = |pick: fn(&Outcome) -> &Vec<String>| {
                    outcome.map(pick).cloned().unwrap_or_default()
                };
                AcBulkImport {
                    batch_id: b.id.clone(),
                    queued_contacts: b.queued_contacts,
                    completed: outcome.is_some(),
                    success: listed(|o| &o.created),
                    updated: listed(|o| &o.updated),
                    failure: listed(|o| &o.failed),
                    callback: b.callback.clone(),
                }
            })
            .collect();
    }
}

/// The importer's own rate limits, on top of the account's requests per second.
#[derive(Debug)]
pub(crate) struct ImportWindows {
    single_contact: RateWindow,
    multiple_contacts: RateWindow,
}

impl Default for ImportWindows {
    fn default() -> Self {
        Self {
            single_contact: RateWindow::new(Duration::from_secs(60)),
            multiple_contacts: RateWindow::new(Duration::from_secs(60)),
        }
    }
}

impl ImportWindows {
    /// Admits an import of `contacts` contacts at `now`, or refuses it with AC's 400.
    pub(crate) fn admit(&mut self, now: Instant, contacts: usize) -> Result<(), ApiError> {
        let (window, limit) = if contacts == 1 {
            (&mut self.single_contact, SINGLE_CONTACT_IMPORTS_PER_MINUTE)
        } else {
            (&mut self.multiple_contacts, IMPORTS_PER_MINUTE)
        };
        window
            .admit(now, limit)
            .map_err(|_| ApiError::import_rate_limited(limit, contacts == 1))
    }
}

/// Whether `email` is one of `rejected` (compared trimmed and ignoring case).
pub(crate) fn listed(rejected: &[String], email: &str) -> bool {
    let email = email.trim();
    rejected
        .iter()
        .any(|r| r.trim().eq_ignore_ascii_case(email))
}

impl AccountData {
    /// Applies every queued batch due by `now`, each contact as `POST /contact/sync` would
    /// (same email rule, ids and records). `rejected` are the emails the account's faults
    /// refuse; those contacts fail, as invalid ones do.
    pub(crate) fn settle_imports(&mut self, now: Instant, rejected: &[String]) {
        while self.imports.is_due(now) {
            let Some(index) = self.imports.pending.pop_front() else {
                break;
            };
            let contacts = std::mem::take(&mut self.imports.batches[index].contacts);
            let mut outcome = Outcome {
                created: Vec::new(),
                updated: Vec::new(),
                failed: Vec::new(),
                completed_on: chrono::Utc::now().date_naive(),
            };
            for contact in contacts {
                let email = contact.email.clone();
                match self.import_contact(contact, rejected) {
                    Some((id, true)) => outcome.created.push(id.to_string()),
                    Some((id, false)) => outcome.updated.push(id.to_string()),
                    None => outcome.failed.push(email),
                }
            }
            let batch = &mut self.imports.batches[index];
            tracing::info!(
                batch = batch.id,
                created = outcome.created.len(),
                updated = outcome.updated.len(),
                failed = outcome.failed.len(),
                "Processed a bulk import"
            );
            if let Some(callback) = &batch.callback {
                tracing::info!(batch = batch.id, %callback, "Did not call the bulk import callback: the sandbox makes no outside requests");
            }
            batch.outcome = Some(outcome);
        }
    }

    /// Writes one contact; `None` when it fails. Returns its id and whether it was created.
    fn import_contact(
        &mut self,
        contact: ImportContact,
        rejected: &[String],
    ) -> Option<(u64, bool)> {
        if !is_valid_email(&contact.email) || listed(rejected, &contact.email) {
            return None;
        }
        let (id, created) = self
            .sync_contact(ContactInput {
                email: Some(contact.email),
                first_name: contact.first_name,
                last_name: contact.last_name,
                phone: contact.phone,
                field_values: contact.fields,
            })
            .ok()?;
        for name in contact.tags {
            self.import_tag(id, &name);
        }
        for list in contact.subscribe {
            self.import_list_status(id, list, 1);
        }
        for list in contact.unsubscribe {
            self.import_list_status(id, list, 2);
        }
        Some((id, created))
    }

    /// Applies the tag of this name, creating it if the account has none ("New tags will be
    /// created if they do not already exist").
    fn import_tag(&mut self, contact: u64, name: &str) {
        let existing = self
            .tags()
            .find(|t| t.tag.to_lowercase() == name.to_lowercase())
            .and_then(|t| t.id.parse().ok());
        let tag = match existing {
            Some(tag) => tag,
            None => match self.create_tag(Some(name.to_owned()), None, None) {
                Ok(tag) => tag,
                Err(error) => {
                    tracing::info!(
                        contact,
                        tag = name,
                        ?error,
                        "Skipped a bulk import tag AC would refuse"
                    );
                    return;
                }
            },
        };
        if let Err(error) = self.tag_contact(contact, tag) {
            tracing::info!(contact, tag, ?error, "Skipped a bulk import tag");
        }
    }

    /// Subscribes (1) or unsubscribes (2) the contact. Lists that do not exist are skipped, and
    /// so is a subscription to a list the contact has unsubscribed from (the spec: "Contacts
    /// may not be subscribed to lists which they have previously unsubscribed from").
    fn import_list_status(&mut self, contact: u64, list: u64, status: u8) {
        if self.list(list).is_none() {
            tracing::info!(
                contact,
                list,
                "Skipped a bulk import list that does not exist"
            );
            return;
        }
        let unsubscribed = self
            .contact_lists_of(contact)
            .any(|cl| cl.list == list.to_string() && cl.status == 2);
        if status == 1 && unsubscribed {
            tracing::info!(
                contact,
                list,
                "Did not resubscribe a contact that unsubscribed"
            );
            return;
        }
        if let Err(error) = self.set_list_status(contact, list, status) {
            tracing::info!(contact, list, ?error, "Skipped a bulk import list status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activecampaign::state::{FieldInput, ListInput};

    fn request(body: Value) -> Result<ImportRequest, ApiError> {
        ImportRequest::parse(body.to_string().as_bytes())
    }

    fn contacts(n: usize) -> Value {
        json!((0..n)
            .map(|i| json!({"email": format!("c{i}@example.com")}))
            .collect::<Vec<_>>())
    }

    fn reasons(error: &ApiError) -> Value {
        assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
        error.body()["failureReasons"].clone()
    }

    #[test]
    fn validation_refuses_the_whole_request() {
        assert!(request(json!({"contacts": contacts(250)})).is_ok());
        for body in [
            json!({"contacts": contacts(251)}),
            json!({"contacts": []}),
            json!({}),
            json!([]),
            json!({"contacts": contacts(2), "callback": {"url": "https://example.com"}}),
        ] {
            let error = request(body.clone()).unwrap_err();
            assert!(reasons(&error)[0].is_string(), "{body}");
        }
        let error = request(json!({"contacts": [
            {"email": "ok@example.com"},
            {"email": "no-at-sign"},
            {"first_name": "No email"},
            {"email": "tags@example.com", "tags": "not-an-array"},
            {"email": "fields@example.com", "fields": [{"id": "x", "value": "1"}]},
            {"email": "lists@example.com", "subscribe": [{"list": 1}]},
        ]}))
        .unwrap_err();
        let failed: Vec<u64> = reasons(&error)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["contact"].as_u64().unwrap())
            .collect();
        assert_eq!(failed, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            reasons(&error)[0]["failureReason"],
            "Field\u{2018} email\u{2019} incorrect format"
        );
        let oversized = format!(
            r#"{{"contacts": [{{"email": "a@example.com", "first_name": "{}"}}]}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        assert!(ImportRequest::parse(oversized.as_bytes()).is_err());
    }

    #[test]
    fn a_batch_applies_contacts_tags_fields_and_lists_when_due() {
        let mut data = AccountData::default();
        let field = data
            .create_field(FieldInput {
                title: Some("Plan".into()),
                field_type: Some("text".into()),
                ..FieldInput::default()
            })
            .unwrap();
        let list = |data: &mut AccountData, name: &str| {
            data.create_list(ListInput {
                name: Some(name.into()),
                stringid: Some(name.into()),
                sender_url: Some("https://example.com".into()),
                sender_reminder: Some("You signed up".into()),
            })
            .unwrap()
        };
        let (news, offers) = (list(&mut data, "news"), list(&mut data, "offers"));
        let existing = data
            .create_contact(ContactInput {
                email: Some("old@example.com".into()),
                ..ContactInput::default()
            })
            .unwrap();
        data.create_tag(Some("Customer".into()), None, None)
            .unwrap();
        data.set_list_status(existing, offers, 2).unwrap();

        let start = Instant::now();
        let delay = Duration::from_secs(10);
        let parsed = request(json!({"contacts": [
            {"email": "new@example.com", "first_name": "Ada", "tags": ["customer", "Trial"],
             "fields": [{"id": field, "value": "pro"}, {"id": 99, "value": "ignored"}],
             "subscribe": [{"listid": news}, {"listid": "77"}]},
            {"email": "OLD@example.com", "last_name": "Byron",
             "subscribe": [{"listid": offers}], "unsubscribe": [{"listid": news}]},
            {"email": "broken@nodomain"},
        ]}))
        .unwrap();
        let (id, due) = data.imports.queue(parsed, start, delay);
        assert_eq!(due, start + delay);

        let info = |data: &AccountData, at: Instant| data.imports.info(&id, at).unwrap();
        assert_eq!(info(&data, start)["status"], json!(false));
        assert_eq!(info(&data, start + delay / 2)["status"], "active");
        data.settle_imports(start + delay / 2, &[]);
        assert_eq!(
            data.snapshot().contacts.len(),
            1,
            "nothing written before the batch is due"
        );

        data.settle_imports(due, &[]);
        let done = info(&data, due);
        let snapshot = data.snapshot();
        let created = snapshot.contact_by_email("new@example.com").unwrap();
        assert_eq!(done["status"], "completed");
        assert_eq!(done["success"], json!([created.id]));
        assert_eq!(done["failure"], json!(["broken@nodomain"]));
        assert_eq!(snapshot.contacts.len(), 2);
        assert_eq!(created.first_name, "Ada");
        assert_eq!(
            snapshot.tags_of(&created.id),
            vec!["Customer".to_owned(), "Trial".to_owned()]
        );
        assert_eq!(snapshot.tags.len(), 2);
        assert_eq!(
            snapshot.field_value(&created.id, "Plan").as_deref(),
            Some("pro")
        );
        assert_eq!(snapshot.lists_of(&created.id), vec![(news.to_string(), 1)]);
        let old = existing.to_string();
        assert_eq!(
            snapshot
                .contact_by_email("old@example.com")
                .unwrap()
                .last_name,
            "Byron"
        );
        let mut lists = snapshot.lists_of(&old);
        lists.sort();
        assert_eq!(lists, vec![(news.to_string(), 2), (offers.to_string(), 2)]);
        assert_eq!(snapshot.bulk_imports[0].updated, vec![old]);
    }

    #[test]
    fn rejected_emails_fail_alone_and_hurry_makes_batches_due() {
        let mut data = AccountData::default();
        let start = Instant::now();
        let parsed = request(json!({"contacts": contacts(3)})).unwrap();
        let (id, _) = data.imports.queue(parsed, start, Duration::from_secs(3600));
        assert!(!data.imports.is_due(start));
        data.imports.hurry(start);
        assert!(data.imports.is_due(start));
        data.settle_imports(start, &[" C1@Example.com".into()]);
        let info = data.imports.info(&id, start).unwrap();
        assert_eq!(info["success"].as_array().unwrap().len(), 2);
        assert_eq!(info["failure"], json!(["c1@example.com"]));
        assert!(data.imports.info("unknown", start).is_none());
    }

    #[test]
    fn batch_ids_are_version_4_uuids() {
        let id = batch_id();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert_ne!(id, batch_id());
    }

    #[test]
    fn import_windows_count_single_and_multiple_contact_imports_apart() {
        let mut windows = ImportWindows::default();
        let now = Instant::now();
        for _ in 0..SINGLE_CONTACT_IMPORTS_PER_MINUTE {
            windows.admit(now, 1).unwrap();
        }
        assert!(windows.admit(now, 1).is_err());
        for _ in 0..IMPORTS_PER_MINUTE {
            windows.admit(now, 2).unwrap();
        }
        assert!(windows.admit(now, 250).is_err());
        assert!(windows.admit(now + Duration::from_secs(60), 1).is_ok());
    }
}
