//! ActiveCampaign's v3 REST API as billsync uses it.

mod client;
mod tracking;
mod turns;
pub mod types;

pub use client::{classify, ActiveCampaignApi, ActiveCampaignClient, Prior};
pub use tracking::{EventTracker, EventTrackingApi, DEFAULT_TRACKING_URL};
pub use turns::{as_one_event, Turns};
