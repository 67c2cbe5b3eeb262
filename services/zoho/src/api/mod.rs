//! Zoho CRM v8 client: OAuth with one access token per connection shared through NATS KV
//! (`auth`), typed requests and answers (`types`), and the calls on the CRM transport
//! (`client`).

pub mod auth;
pub mod client;
pub mod types;

pub use auth::{OAuthSettings, TokenSource};
pub use client::{ZohoClient, ZohoCrm, MAX_RECORDS_PER_UPSERT};
pub use types::{Field, Layout, Module, Pipeline, RecordResult, Stage, Trigger, User};
