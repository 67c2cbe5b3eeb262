//! Subscriptions and one-time invoices → Pipedrive deals: title, value (MRR, or the invoice's
//! total), currency, status open/won/lost with `lost_reason` on cancellation, person,
//! organization, pipeline and stage. Each billing record is linked to its deal; a linked
//! deal deleted in Pipedrive is created again.

use crate::api::{DealInput, DealStatus, PipedriveClient};
use crate::links::{self, digest, is_gone};
use crate::options::SyncOptions;
use billsync_worker::{DeliveryError, Pass, RecordStore};

/// What a billing record says of its deal.
pub(crate) struct DealDraft {
    pub(crate) title: String,
    /// In the currency's major unit.
    pub(crate) value: f64,
    pub(crate) currency: Option<String>,
    pub(crate) status: DealStatus,
    /// Kept only with `status: lost`.
    pub(crate) lost_reason: Option<String>,
}

/// Where a deal belongs: `record` is `{source connection}/{subscription|invoice}/{id}`.
pub(crate) struct DealOwner {
    pub(crate) record: String,
    pub(crate) person_id: Option<u64>,
    pub(crate) org_id: Option<u64>,
}

/// Chargebee's and Stripe's subscription statuses as a deal's: not yet paying is open,
/// paying (or paused, or ending later) is won, ended is lost.
pub(crate) fn status_of_subscription(status: &str) -> DealStatus {
    match status {
        "in_trial" | "trialing" | "future" | "incomplete" => DealStatus::Open,
        "cancelled" | "canceled" | "transferred" | "incomplete_expired" => DealStatus::Lost,
        _ => DealStatus::Won,
    }
}

/// An invoice's status as a deal's: paid is won, voided or uncollectible lost, else open.
pub(crate) fn status_of_invoice(status: &str) -> DealStatus {
    match status {
        "paid" => DealStatus::Won,
        "voided" | "void" | "uncollectible" | "not_paid" => DealStatus::Lost,
        _ => DealStatus::Open,
    }
}

pub(crate) async fn write(
    client: &PipedriveClient,
    records: &RecordStore,
    deal: DealDraft,
    owner: DealOwner,
    (options, pass): (&SyncOptions, Pass),
) -> Result<u64, DeliveryError> {
    let key = format!("deal/{}", owner.record);
    let input = DealInput {
        title: Some(deal.title.clone()),
        value: Some((deal.value * 100.0).round() / 100.0),
        currency: deal.currency.clone(),
        lost_reason: match deal.status {
            DealStatus::Lost => deal.lost_reason.clone(),
            _ => None,
        },
        status: Some(deal.status),
        person_id: owner.person_id,
        org_id: owner.org_id,
        pipeline_id: options.pipeline_id,
        stage_id: options.stage_id,
        ..Default::default()
    };
    let fingerprint = digest(&input);
    if let Some(link) = links::load(records, &key).await? {
        if link.unchanged(&fingerprint, pass) {
            return Ok(link.id);
        }
        match client.update_deal(link.id, &input).await {
            Ok(updated) => {
                links::save(records, &key, updated.id, fingerprint).await?;
                return Ok(updated.id);
            }
            Err(error) if is_gone(&error) => {
                let created = client.create_deal(&input).await?;
                links::save(records, &key, created.id, fingerprint).await?;
                return Ok(created.id);
            }
            Err(error) => return Err(error),
        }
    }
    // A create that may have happened before a crash (the marker is set, the link is not)
    // is looked for by its title first, so a restart never makes a second deal.
    let first_attempt = records
        .create_text(&format!("creating/{key}"), &deal.title)
        .await?;
    let earlier = if first_attempt {
        Vec::new()
    } else {
        client.find_deals_by_title(&deal.title).await?
    };
    let id = match earlier.first() {
        Some(hit) => client.update_deal(hit.id, &input).await?.id,
        None => client.create_deal(&input).await?.id,
    };
    links::save(records, &key, id, fingerprint).await?;
    Ok(id)
}
