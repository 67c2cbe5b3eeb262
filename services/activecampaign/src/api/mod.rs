//! ActiveCampaign's v3 REST API as billsync uses it.

mod client;
mod tracking;
pub mod types;

pub use client::{classify, ActiveCampaignApi, ActiveCampaignClient, Prior};
pub use tracking::{EventTracker, EventTrackingApi, DEFAULT_TRACKING_URL};
