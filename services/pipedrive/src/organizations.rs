//! The customer's company → a Pipedrive organization, found by name or created, linked to
//! the person; two organizations with that name are a sync error naming them. A linked
//! organization deleted in Pipedrive (404 or `is_deleted`) is found by name or created
//! again, and the link follows.

use crate::api::{CustomFields, OrganizationInput, PipedriveClient};
use crate::links::{self, digest, is_gone};
use billsync_events::FailureClass;
use billsync_worker::{DeliveryError, Pass, RecordStore};

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
    links::save(records, &key, id, fingerprint).await?;
    Ok(id)
}
