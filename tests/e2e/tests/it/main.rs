//! End-to-end tests: one binary, one module per flow.

mod stripe_to_activecampaign;
