//! The customer's company → a Pipedrive organization, found by name or created, linked to
//! the person; two organizations with that name are a sync error naming them. A linked
//! organization deleted in Pipedrive (404 or `is_deleted`) is found by name or created
//! again, and the link follows.

use crate::api::{CustomFields, OrganizationInput, PipedriveClient};
use crate::links::{self, digest, is_gone};
use billsync_bus::lease::LeaseError;
use billsync_events::FailureClass;
use billsync_worker::{kv_error, DeliveryError, Pass, RecordStore};
use std::time::Duration;

/// How long a writer may hold an organization name while it finds or creates it (a search
/// and a create); a lease its replica abandoned expires after this.
const CREATE_LEASE_TTL: Duration = Duration::from_secs(30);

fn link_key(name: &str) -> String {
    format!("organization/{}", name.trim().to_lowercase())
}

/// The company last written for `customer` (`{source connection}/{customer id}`): events
/// that carry no customer (Chargebee's invoices, Stripe's without the unique id) find its
/// organization through it.
fn company_key(customer: &str) -> String {
    format!("company/{customer}")
}

/// Remembers `customer`'s company (`None`: it has none any more).
pub(crate) async fn remember_company(
    records: &RecordStore,
    customer: &str,
    name: Option<&str>,
) -> Result<(), DeliveryError> {
    let key = company_key(customer);
    let stored = records.get_text(&key).await?;
    match name.map(str::trim) {
        Some(name) if stored.as_deref() != Some(name) => records.put_text(&key, name).await,
        None if stored.is_some() => records.delete(&key).await,
        _ => Ok(()),
    }
}

/// The organization of `customer`'s company, as its last customer write left it.
pub(crate) async fn of_customer(
    client: &PipedriveClient,
    records: &RecordStore,
    customer: &str,
    pass: Pass,
) -> Result<Option<u64>, DeliveryError> {
    match records.get_text(&company_key(customer)).await? {
        Some(name) => Ok(Some(
            write(client, records, &name, CustomFields::new(), pass).await?,
        )),
        None => Ok(None),
    }
}

/// The organization named `name`, written with `custom_fields` (subscription fields when the
/// sync sends them to organizations); its id.
pub(crate) async fn write(
    client: &PipedriveClient,
    records: &RecordStore,
    name: &str,
    custom_fields: CustomFields,
    pass: Pass,
) -> Result<u64, DeliveryError> {
    let key = link_key(name);
    let input = OrganizationInput {
        name: Some(name.trim().to_string()),
        custom_fields,
        ..Default::default()
    };
    let fingerprint = digest(&input);
    if let Some(link) = links::load(records, &key).await? {
        if link.unchanged(&fingerprint, pass) || input.custom_fields.is_empty() {
            // Nothing to PATCH, so nothing would notice a deletion in Pipedrive: a GET
            // (1 token) does, before the person or deal is written with the id.
            match client.get_organization(link.id).await? {
                Some(found) if !found.is_deleted => return Ok(link.id),
                _ => {
                    tracing::info!(organization = %name.trim(), old = link.id,
                        "The linked Pipedrive organization was deleted; finding or creating it again.");
                    records.delete(&key).await?;
                }
            }
        } else {
            match client.update_organization(link.id, &input).await {
                Ok(updated) => {
                    links::save(records, &key, updated.id, fingerprint).await?;
                    return Ok(updated.id);
                }
                // Deleted in Pipedrive: found again by name, or created.
                Err(error) if is_gone(&error) => records.delete(&key).await?,
                Err(error) => return Err(error),
            }
        }
    }
    // Two customers of one new company written at once (by two lanes or two replicas) would
    // both find no organization and create one each — and every later write of either would
    // then be the "two organizations" error. Finding and creating hold a lease on the name.
    let lease = records.lease(
        &format!("{key}/creating"),
        &billsync_bus::lease::holder_id("pipedrive"),
        CREATE_LEASE_TTL,
    );
    let deadline = tokio::time::Instant::now() + CREATE_LEASE_TTL * 2;
    let guard = loop {
        match lease.acquire().await {
            Ok(guard) => break guard,
            Err(LeaseError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(LeaseError::Held { holder, .. }) => {
                return Err(DeliveryError::Retryable {
                    message: format!(
                        "another writer ({holder}) is still finding or creating the Pipedrive                          organization {:?}",
                        name.trim()
                    ),
                    retry_after: None,
                    http_status: None,
                })
            }
            Err(LeaseError::Store(reason)) => return Err(kv_error(reason)),
        }
    };
    let found = find_or_create(client, records, &key, name, input, fingerprint).await;
    guard.release().await;
    found
}

/// The organization named `name` found (the link the lease's previous holder saved, or
/// Pipedrive's search) or created; saves the link.
async fn find_or_create(
    client: &PipedriveClient,
    records: &RecordStore,
    key: &str,
    name: &str,
    input: OrganizationInput,
    fingerprint: String,
) -> Result<u64, DeliveryError> {
    if let Some(link) = links::load(records, key).await? {
        if input.custom_fields.is_empty() {
            return Ok(link.id);
        }
        let updated = client.update_organization(link.id, &input).await?;
        links::save(records, key, updated.id, fingerprint).await?;
        return Ok(updated.id);
    }
    let hits = client.find_organizations_by_name(name.trim()).await?;
    let id = match hits.as_slice() {
        [] => client.create_organization(&input).await?.id,
        [one] if input.custom_fields.is_empty() => one.id,
        [one] => client.update_organization(one.id, &input).await?.id,
        many => {
            let ids: Vec<String> = many.iter().map(|hit| hit.id.to_string()).collect();
            return Err(DeliveryError::permanent(
                FailureClass::Rejected,
                format!(
                    "{} Pipedrive organizations are named {:?} (ids {}); merge or rename them \
                     in Pipedrive, then retry this error",
                    many.len(),
                    name.trim(),
                    ids.join(", ")
                ),
            ));
        }
    };
    links::save(records, key, id, fingerprint).await?;
    Ok(id)
}
