//! Billing customers → Pipedrive persons (seed 004): matched the first time by the unique id
//! (email, or a person custom field), linked from then on; several persons matching the
//! first time is a sync error listing them, never a guess; duplicates appearing after the
//! link are ignored; a linked person deleted in Pipedrive is created again and the link
//! updated. Several customers with one unique id share one person, as the seed warns.

use crate::api::{PersonInput, PipedriveClient, SearchHit};
use crate::links::{self, digest, is_gone};
use crate::options::UniqueId;
use billsync_events::FailureClass;
use billsync_worker::{DeliveryError, Pass, RecordStore};
use serde_json::Value;

/// A person to write for one billing customer.
pub(crate) struct PersonWrite<'a> {
    /// `{source connection}/{customer id}`.
    pub(crate) customer: &'a str,
    pub(crate) unique_id: &'a UniqueId,
    /// The customer's value of the unique id, if it has one.
    pub(crate) unique_value: Option<&'a str>,
    /// The `custom_fields` key of the unique id when it is a custom field (`None`: email, or
    /// a field that does not exist yet).
    pub(crate) unique_key: Option<String>,
    pub(crate) input: PersonInput,
    pub(crate) pass: Pass,
}

pub(crate) fn link_key(customer: &str) -> String {
    format!("person/{customer}")
}

/// The person linked to `customer` (`{source connection}/{customer id}`), if any.
pub(crate) async fn linked(
    records: &RecordStore,
    customer: &str,
) -> Result<Option<u64>, DeliveryError> {
    Ok(links::load(records, &link_key(customer))
        .await?
        .map(|link| link.id))
}

/// Writes the customer's person and returns its id.
pub(crate) async fn write(
    client: &PipedriveClient,
    records: &RecordStore,
    person: PersonWrite<'_>,
) -> Result<u64, DeliveryError> {
    let key = link_key(person.customer);
    let fingerprint = digest(&person.input);
    if let Some(link) = links::load(records, &key).await? {
        if link.unchanged(&fingerprint, person.pass) {
            return Ok(link.id);
        }
        match client.update_person(link.id, &person.input).await {
            Ok(updated) => {
                links::save(records, &key, updated.id, fingerprint).await?;
                return Ok(updated.id);
            }
            Err(error) if is_gone(&error) => {
                // Deleted in Pipedrive since: created again, the link moved to the new one.
                let created = client.create_person(&person.input).await?;
                tracing::info!(customer = %person.customer, old = link.id, new = created.id,
                    "The linked Pipedrive person was deleted; created it again.");
                links::save(records, &key, created.id, fingerprint).await?;
                return Ok(created.id);
            }
            Err(error) => return Err(error),
        }
    }
    let Some(value) = person.unique_value.filter(|v| !v.trim().is_empty()) else {
        return Err(DeliveryError::permanent(
            FailureClass::InvalidEvent,
            format!(
                "billing customer {} has no {} (the unique id persons are matched by); add it \
                 in the billing system, or ignore this error",
                person.customer,
                person.unique_id.field()
            ),
        ));
    };
    let hits = match person.unique_id {
        UniqueId::Email => client.find_persons_by_email(value).await?,
        UniqueId::Field(_) => {
            let hits = client.find_persons_by_custom_field(value).await?;
            holding(client, hits, person.unique_key.as_deref(), value).await?
        }
    };
    let id = match hits.as_slice() {
        [] => {
            claim_create(records, person.unique_id, value).await?;
            client.create_person(&person.input).await?.id
        }
        [one] => client.update_person(one.id, &person.input).await?.id,
        many => {
            let ids: Vec<String> = many.iter().map(|hit| hit.id.to_string()).collect();
            return Err(DeliveryError::permanent(
                FailureClass::Rejected,
                format!(
                    "{} Pipedrive persons have {} {value:?} (ids {}); billsync links a customer \
                     to one person and does not guess: merge or delete the duplicates in \
                     Pipedrive, then retry this error",
                    many.len(),
                    person.unique_id.field(),
                    ids.join(", ")
                ),
            ));
        }
    };
    links::save(records, &key, id, fingerprint).await?;
    Ok(id)
}

/// The hits whose custom field `key` holds `value`. Pipedrive's search of `custom_fields`
/// matches the value in any custom field and answers their values without keys, so each
/// hit is read (1 token) to keep only the persons holding it in the unique id's field.
async fn holding(
    client: &PipedriveClient,
    hits: Vec<SearchHit>,
    key: Option<&str>,
    value: &str,
) -> Result<Vec<SearchHit>, DeliveryError> {
    let Some(key) = key else {
        // The field does not exist yet: no person holds a value in it.
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    for hit in hits {
        let Some(found) = client.get_person(hit.id).await? else {
            continue;
        };
        let held = match found.custom_fields.get(key) {
            Some(Value::String(text)) => text.trim() == value.trim(),
            Some(Value::Number(number)) => number.to_string() == value.trim(),
            _ => false,
        };
        if held && !found.is_deleted {
            kept.push(hit);
        }
    }
    Ok(kept)
}

/// How long a claim to create the person of one unique id holds off other customers with
/// that id: long enough for the create, short enough that a claim left by a crash expires.
const CREATE_CLAIM: std::time::Duration = std::time::Duration::from_secs(30);

/// Claims the create of the person of `value`, so that two customers with one unique id
/// (the seed's shared person) syncing at once make one person: the second waits, and on
/// its retry its search finds the first's person.
async fn claim_create(
    records: &RecordStore,
    unique_id: &UniqueId,
    value: &str,
) -> Result<(), DeliveryError> {
    let key = format!(
        "creating/person/{}/{}",
        unique_id.describe(),
        value.trim().to_lowercase()
    );
    let now = chrono::Utc::now().timestamp_millis();
    if records.create_text(&key, &now.to_string()).await? {
        return Ok(());
    }
    let claimed_at = records
        .get_text(&key)
        .await?
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or_default();
    let age = std::time::Duration::from_millis(now.saturating_sub(claimed_at).max(0) as u64);
    if age < CREATE_CLAIM {
        return Err(DeliveryError::Retryable {
            message: format!(
                "another billing customer with {} {value:?} is creating its person; this one \
                 links to it next",
                unique_id.field()
            ),
            retry_after: Some(std::time::Duration::from_secs(1)),
            http_status: None,
        });
    }
    // An old claim: its create finished (the person was deleted since) or never happened.
    records.put_text(&key, &now.to_string()).await
}
