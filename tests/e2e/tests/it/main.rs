//! End-to-end tests: one binary, one module per flow.
//!
//! Every test runs on a multi-threaded runtime, as the services do in production: a test
//! that blocks a thread (building or running the `billsync` binary) must not stall the
//! in-process services it is talking to.

mod activecampaign_bulk;
mod chargebee_redelivery;
mod chargebee_runs;
mod chargebee_to_activecampaign;
mod chargebee_to_pipedrive;
mod chargebee_to_zoho;
mod operator_api;
mod operator_cli;
mod pipedrive_reliability;
mod readme;
mod replay;
mod secrets_in_logs;
mod stripe_deep_data;
mod stripe_source;
mod stripe_to_activecampaign;
mod stripe_to_pipedrive;
mod stripe_to_zoho;
mod stripe_tracking;
mod sync_errors;
mod unreadable_events;
mod web_page;
mod worker_crash;
mod worker_replicas;
mod zoho_reliability;
