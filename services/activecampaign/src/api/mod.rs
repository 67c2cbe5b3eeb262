//! ActiveCampaign's v3 REST API as billsync uses it.

mod client;
mod rate_limit;
pub mod types;

pub use client::{classify, ActiveCampaignClient};
pub use rate_limit::RateLimiter;
