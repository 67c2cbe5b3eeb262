//! New and changed contacts of many customers at once through ActiveCampaign's bulk importer
//! (`POST /import/bulk_import`): one request for up to 250 contacts, with their custom
//! fields and list, instead of a `contact/sync` and a `contactLists` call each.
//!
//! Every contact write is offered to the kit's batcher, which gathers the writes of the
//! events in flight for [`BULK_WINDOW`]. A group of at least [`MIN_BULK`] contacts (more on
//! an account allowed more than 5 requests/s: see [`min_group`]) is imported (a backfill, a
//! "sync all" run, a burst); a smaller one goes back to each event's own `contact/sync`, as
//! ActiveCampaign advises for fewer than ten contacts. The importer
//! works asynchronously: the batch is polled with `GET /import/info` until it completes,
//! then each event learns its contact's id, so it links the contact exactly as the single
//! path does. A contact the importer refused is written again alone through
//! `contact/sync`, whose answer says why, so it fails alone, with ActiveCampaign's reason,
//! and shows in the errors list; the others of the batch are written.

use crate::api::types::{BulkContact, Contact};
use crate::api::ActiveCampaignClient;
use billsync_worker::DeliveryError;
use billsync_worker::{BatchSink, Batcher};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// How long a contact write waits for others to share its import.
pub const BULK_WINDOW: Duration = Duration::from_secs(1);
/// About what an import costs in time beyond its calls: the window, the importer's own
/// processing and the polls. A group is imported only when its single writes would take
/// longer than this at the account's rate.
const IMPORT_ROUND_TRIP_SECS: usize = 2;
/// "Up to 250 contacts may be included in a single request" (the spec).
pub const MAX_BULK: usize = 250;
/// "The suggested minimum number of contacts is 10. If less than that, then contact/sync api
/// request should be used" (the spec).
pub const MIN_BULK: usize = 10;
/// Requests must stay under 400,000 bytes (AC's bulk import guide); a batch above this is
/// split.
const MAX_BODY_BYTES: usize = 390_000;
/// How long an import may take before its contacts are handed back to be retried.
const IMPORT_PATIENCE: Duration = Duration::from_secs(300);

/// What became of one contact of a bulk write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The importer wrote it: this is its contact.
    Contact(String),
    /// Write it through `contact/sync`: the group was too small for an import, or the
    /// importer refused this contact (the single call gives ActiveCampaign's reason).
    Single,
}

/// The batcher's sink: imports a group of contacts and answers each one's contact id.
pub struct ContactImports {
    client: Arc<ActiveCampaignClient>,
    /// The smallest group worth an import at the account's rate.
    min_group: usize,
}

pub type BulkContacts = Batcher<ContactImports>;

pub fn bulk_contacts(client: Arc<ActiveCampaignClient>, requests_per_second: u32) -> BulkContacts {
    let sink = ContactImports {
        client,
        min_group: min_group(requests_per_second),
    };
    Batcher::new(sink, MAX_BULK, BULK_WINDOW)
}

/// The smallest group worth an import: ActiveCampaign's suggested minimum, or as many
/// contacts as the account writes one by one in an import's round trip, whichever is more.
/// At 5 requests/s that is 10; an account with a lifted limit writes faster one by one.
pub fn min_group(requests_per_second: u32) -> usize {
    MIN_BULK.max(IMPORT_ROUND_TRIP_SECS * requests_per_second as usize)
}

/// Whether imports can pay at this rate at all: a full one beats single writes.
pub fn imports_pay(requests_per_second: u32) -> bool {
    min_group(requests_per_second) <= MAX_BULK
}

impl BatchSink for ContactImports {
    type Key = ();
    type Item = BulkContact;
    type Output = Imported;

    async fn flush(
        &self,
        _key: &(),
        items: Vec<BulkContact>,
    ) -> Result<Vec<Result<Imported, DeliveryError>>, DeliveryError> {
        if items.len() < self.min_group {
            return Ok(vec![Ok(Imported::Single); items.len()]);
        }
        let mut answers = Vec::with_capacity(items.len());
        for part in parts_under_the_size_limit(&items) {
            answers.extend(self.import(part).await?);
        }
        Ok(answers)
    }
}

/// `items` in consecutive parts whose request bodies stay under [`MAX_BODY_BYTES`].
fn parts_under_the_size_limit(items: &[BulkContact]) -> Vec<&[BulkContact]> {
    let size = |part: &[BulkContact]| {
        serde_json::to_vec(&crate::api::types::BulkImportRequest { contacts: part })
            .map_or(usize::MAX, |b| b.len())
    };
    if items.len() <= 1 || size(items) < MAX_BODY_BYTES {
        return vec![items];
    }
    let (first, second) = items.split_at(items.len() / 2);
    let mut parts = parts_under_the_size_limit(first);
    parts.extend(parts_under_the_size_limit(second));
    parts
}

impl ContactImports {
    /// Imports one request's worth of contacts: one answer per contact, in order.
    async fn import(
        &self,
        contacts: &[BulkContact],
    ) -> Result<Vec<Result<Imported, DeliveryError>>, DeliveryError> {
        let batch = match self.client.bulk_import(contacts).await {
            Ok(batch) => batch,
            Err(error) if importer_rate_limited(&error) => {
                return Err(DeliveryError::Retryable {
                    message: "ActiveCampaign's importer takes 100 imports a minute; this \
                              batch waits for the next minute"
                        .into(),
                    retry_after: Some(Duration::from_secs(60)),
                    http_status: Some(400),
                })
            }
            // The importer refused the request as a whole (a contact its validator rejects):
            // each contact goes through contact/sync, which refuses only the bad one, with
            // the reason.
            Err(DeliveryError::Permanent { message, .. }) => {
                tracing::warn!(contacts = contacts.len(), reason = %message, "ActiveCampaign's importer refused the batch; writing its contacts one by one.");
                return Ok(vec![Ok(Imported::Single); contacts.len()]);
            }
            Err(other) => return Err(other),
        };
        let info = self.wait_for(&batch).await?;
        let refused: BTreeSet<String> = info.failure.iter().map(|e| normal(e)).collect();
        let mut ids = self.created_contacts(&info.created_ids()).await?;
        let mut answers = Vec::with_capacity(contacts.len());
        for contact in contacts {
            let email = normal(&contact.email);
            if refused.contains(&email) {
                answers.push(Ok(Imported::Single));
                continue;
            }
            let id = match ids.remove(&email).or_else(|| contact.known_id.clone()) {
                Some(id) => Ok(Some(id)),
                // A contact the account had already, and billsync did not know: updated,
                // and not in `success`.
                None => self
                    .client
                    .find_contact(&contact.email)
                    .await
                    .map(|found| found.map(|c| c.id)),
            };
            answers.push(match id {
                Ok(Some(id)) => Ok(Imported::Contact(id)),
                Ok(None) => Ok(Imported::Single),
                Err(error) => Err(error),
            });
        }
        tracing::info!(
            batch,
            contacts = contacts.len(),
            refused = refused.len(),
            "Imported contacts in bulk."
        );
        Ok(answers)
    }

    /// Polls the batch until the importer has processed it.
    async fn wait_for(&self, batch: &str) -> Result<crate::api::types::ImportInfo, DeliveryError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_secs(1);
        loop {
            tokio::time::sleep(pause).await;
            let info = self.client.import_info(batch).await?;
            if info.completed() {
                return Ok(info);
            }
            if started.elapsed() > IMPORT_PATIENCE {
                return Err(DeliveryError::Retryable {
                    message: format!(
                        "ActiveCampaign's importer has not completed batch {batch} in \
                         {IMPORT_PATIENCE:?}; its contacts are written again"
                    ),
                    retry_after: None,
                    http_status: None,
                });
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Email → id of the contacts with these ids, read in pages of 100 in id order.
    async fn created_contacts(
        &self,
        ids: &[u64],
    ) -> Result<HashMap<String, String>, DeliveryError> {
        let wanted: BTreeSet<u64> = ids.iter().copied().collect();
        let (Some(&first), Some(&last)) = (wanted.first(), wanted.last()) else {
            return Ok(HashMap::new());
        };
        let mut found = HashMap::new();
        let mut after = first.saturating_sub(1);
        while after < last {
            let page = self.client.contacts_after(after).await?;
            let Some(next) = page.iter().filter_map(|c| c.id.parse::<u64>().ok()).max() else {
                break;
            };
            for Contact { id, email } in page {
                if id.parse().is_ok_and(|id: u64| wanted.contains(&id)) {
                    found.insert(normal(&email), id);
                }
            }
            if next <= after {
                break;
            }
            after = next;
        }
        Ok(found)
    }
}

fn normal(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The importer's own 400 for more than 100 imports a minute.
fn importer_rate_limited(error: &DeliveryError) -> bool {
    matches!(
        error,
        DeliveryError::Permanent { http_status: Some(400), detail, .. }
            if detail.get("message").and_then(|m| m.as_str()) == Some("Rate limit exceeded.")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_start_at_ten_contacts_at_five_requests_a_second_and_never_when_unthrottled() {
        assert_eq!(min_group(5), 10);
        assert_eq!(min_group(50), 100);
        assert!(imports_pay(5) && imports_pay(100));
        assert!(!imports_pay(100_000));
    }

    fn contact(email: &str, padding: usize) -> BulkContact {
        BulkContact {
            email: email.into(),
            first_name: Some("x".repeat(padding)),
            last_name: None,
            phone: None,
            fields: Vec::new(),
            tags: Vec::new(),
            subscribe: Vec::new(),
            known_id: None,
        }
    }

    #[test]
    fn a_batch_over_the_size_limit_is_split_in_order() {
        let small: Vec<_> = (0..250)
            .map(|i| contact(&format!("c{i}@x.io"), 10))
            .collect();
        assert_eq!(parts_under_the_size_limit(&small).len(), 1);
        let large: Vec<_> = (0..250)
            .map(|i| contact(&format!("c{i}@x.io"), 3_000))
            .collect();
        let parts = parts_under_the_size_limit(&large);
        assert!(parts.len() > 1);
        let rejoined: Vec<_> = parts.concat();
        assert_eq!(rejoined, large, "every contact once, in order");
        for part in parts {
            let body = serde_json::to_vec(&crate::api::types::BulkImportRequest { contacts: part })
                .expect("json");
            assert!(body.len() < MAX_BODY_BYTES);
        }
    }
}
