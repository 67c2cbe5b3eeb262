//! Pipedrive's API as billsync uses it: v2 for persons, organizations, deals, their search,
//! fields, pipelines and stages; v1 only where v2 has no equivalent (notes, users).

mod client;
mod types;

pub use client::{classify, token_cost, PipedriveApi, PipedriveClient, PIPEDRIVE_BUDGET_WINDOW};
pub use types::*;
