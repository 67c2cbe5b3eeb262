//! ActiveCampaign's v3 REST API as billsync uses it.

mod client;
mod rate_limit;
mod tracking;
pub mod types;

pub use client::{classify, ActiveCampaignClient, Prior};
pub use rate_limit::RateLimiter;
pub use tracking::{EventTracker, DEFAULT_TRACKING_URL};
