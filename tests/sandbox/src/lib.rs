//! Stateful emulators of the vendor APIs billsync talks to, served on loopback for tests and
//! the local demo.
//!
//! One HTTP server carries every vendor under its own path prefix (`/activecampaign/...`,
//! `/chargebee/...`), plus `/__sandbox/...` routes to read state and inject faults, and a human index at `/`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use billsync_sandbox::{AcAccount, SandboxConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sandbox = billsync_sandbox::start(listener, SandboxConfig::default()).await?;
//! sandbox.activecampaign.add_account(AcAccount::new("acme", "token"));
//! let base = sandbox.activecampaign_base_url("acme"); // + "/api/3/contact/sync"
//! sandbox.chargebee.add_site(billsync_sandbox::CbSite::new("acme-test", "cb_key"));
//! let site = sandbox.chargebee_base_url("acme-test"); // + "/api/v2/events"
//! # let _ = (base, site);
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod activecampaign;
pub mod chargebee;
mod index;
mod kit;
pub mod pipedrive;
pub mod stripe;
pub mod zoho;

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use activecampaign::{
    AcAccount, AcBulkImport, AcContact, AcContactList, AcContactTag, AcFaults, AcField,
    AcFieldValue, AcList, AcSnapshot, AcTag, ActiveCampaign,
};
pub use chargebee::{
    CbChange, CbCustomer, CbCustomerInput, CbEvent, CbFaults, CbInvoice, CbInvoiceInput,
    CbSandboxError, CbSite, CbSnapshot, CbSubscription, CbSubscriptionInput, Chargebee,
};
pub use kit::openapi::{Place, Problem, ProblemKind, SpecViolation};
pub use kit::{ApiFaults, RequestCounts, SpecChecks};
pub use pipedrive::{PdCompany, PdEntity, PdFaults, PdSnapshot, PdTokens, Pipedrive};
pub use stripe::{Stripe, StripeAccount, StripeFaults, StripeResource, StripeSeed};
pub use zoho::{Zoho, ZohoFaults, ZohoOrg, ZohoPipeline, ZohoSnapshot, ZohoUser};

/// What the sandbox starts with; more accounts can be added while it runs (Chargebee sites
/// are added with [`Chargebee::add_site`] on [`RunningSandbox::chargebee`]).
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub activecampaign_accounts: Vec<AcAccount>,
}

/// A sandbox serving on `addr`. Dropping it stops the server too; `shutdown` also waits for
/// in-flight requests to finish.
#[derive(Debug)]
pub struct RunningSandbox {
    pub addr: SocketAddr,
    pub activecampaign: ActiveCampaign,
    pub chargebee: Chargebee,
    pub stripe: Stripe,
    pub zoho: Zoho,
    pub pipedrive: Pipedrive,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Serves the sandbox on `listener` until [`RunningSandbox::shutdown`] or drop.
pub async fn start(
    listener: tokio::net::TcpListener,
    config: SandboxConfig,
) -> anyhow::Result<RunningSandbox> {
    let addr = listener
        .local_addr()
        .context("reading the sandbox listener's address")?;
    let url = base_url(addr);
    let activecampaign = ActiveCampaign::new(format!("{url}/activecampaign"));
    for account in config.activecampaign_accounts {
        activecampaign.add_account(account);
    }
    let chargebee = Chargebee::new(format!("{url}/chargebee"));
    let stripe = Stripe::new(format!("{url}/stripe"));
    let zoho = Zoho::new(format!("{url}/zoho"));
    let pipedrive = Pipedrive::new(format!("{url}/pipedrive"));

    let app = Router::new()
        .nest(
            "/activecampaign/{account}/api/3",
            activecampaign::routes::api(activecampaign.clone()),
        )
        .merge(activecampaign::routes::control(activecampaign.clone()))
        .nest(
            "/chargebee/{site}/api/v2",
            chargebee::routes::api(chargebee.clone()),
        )
        .merge(chargebee::routes::control(chargebee.clone()))
        .nest("/stripe/{account}/v1", stripe::routes::api(stripe.clone()))
        .merge(stripe::routes::control(stripe.clone()))
        .nest("/zoho/{org}/crm/v8", zoho::routes::api(zoho.clone()))
        .merge(zoho::routes::control(zoho.clone()))
        .nest(
            "/pipedrive/{company}",
            pipedrive::routes::api(pipedrive.clone()),
        )
        .merge(pipedrive::routes::control(pipedrive.clone()))
        .route(
            "/",
            get(index::page).with_state((
                activecampaign.clone(),
                chargebee.clone(),
                zoho.clone(),
                pipedrive.clone(),
            )),
        )
        .fallback(not_found);

    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "Sandbox server stopped with an error");
        }
    });
    tracing::info!(%url, "Sandbox listening");
    Ok(RunningSandbox {
        addr,
        activecampaign,
        chargebee,
        stripe,
        zoho,
        pipedrive,
        shutdown: Some(stop),
        server: Some(server),
    })
}

/// `http://IP:PORT`, with loopback standing in for an unspecified bind address.
fn base_url(addr: SocketAddr) -> String {
    let mut shown = addr;
    if addr.ip().is_unspecified() {
        shown.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{shown}")
}

async fn not_found() -> impl IntoResponse {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"message": "Not Found"})),
    )
}

impl RunningSandbox {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        base_url(self.addr)
    }

    /// `http://127.0.0.1:PORT/activecampaign/{account}`; clients append `/api/3/...`, as they
    /// would to `https://{account}.api-us1.com`.
    pub fn activecampaign_base_url(&self, account: &str) -> String {
        format!("{}/activecampaign/{account}", self.url())
    }

    /// `http://127.0.0.1:PORT/chargebee/{site}`; clients append `/api/v2/...`, as they would
    /// to `https://{site}.chargebee.com`.
    pub fn chargebee_base_url(&self, site: &str) -> String {
        self.chargebee.base_url(site)
    }

    /// `http://127.0.0.1:PORT/stripe/{account}`: the `api_base` of a Stripe connection; clients
    /// append `/v1/...`, as they would to `https://api.stripe.com`.
    pub fn stripe_base_url(&self, account: &str) -> String {
        self.stripe.base_url(account)
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            if let Err(error) = server.await {
                tracing::error!(%error, "Sandbox server task failed");
            }
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}
