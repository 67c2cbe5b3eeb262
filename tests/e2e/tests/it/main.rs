//! End-to-end tests: one binary, one module per flow.

mod chargebee_runs;
mod chargebee_to_activecampaign;
mod operator_api;
mod operator_cli;
mod replay;
mod secrets_in_logs;
mod stripe_source;
mod stripe_to_activecampaign;
mod sync_errors;
mod web_page;
