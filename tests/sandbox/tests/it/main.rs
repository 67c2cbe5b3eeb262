//! Integration tests: the sandbox on a random loopback port, driven over HTTP with reqwest.

mod activecampaign;
mod activecampaign_bulk;
mod chargebee;
mod sandbox;
mod stripe;

use billsync_sandbox::{AcAccount, RunningSandbox, SandboxConfig};

/// A sandbox on `127.0.0.1:0` with one ActiveCampaign account `acme` (token `acme-token`)
/// whose rate limit is high enough not to interfere.
async fn spawn_sandbox() -> RunningSandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let config = SandboxConfig {
        activecampaign_accounts: vec![AcAccount {
            requests_per_second: 10_000,
            ..AcAccount::new("acme", "acme-token")
        }],
    };
    billsync_sandbox::start(listener, config)
        .await
        .expect("starting the sandbox")
}
