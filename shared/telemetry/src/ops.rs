//! `/healthz`, `/readyz` and `/metrics`, served by every service.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Check = dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// What a service must reach to do its work; `/readyz` answers 503 with the reason otherwise.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<(&'static str, Arc<Check>)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self { checks: Vec::new() }
    }

    /// Ready only while the NATS connection is up.
    pub fn nats(self, client: async_nats::Client) -> Self {
        self.check("nats", move || {
            let client = client.clone();
            async move {
                match client.connection_state() {
                    async_nats::connection::State::Connected => Ok(()),
                    state => Err(format!("NATS connection is {state:?}")),
                }
            }
        })
    }

    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()))));
        self
    }

    async fn evaluate(&self) -> Result<(), String> {
        for (name, check) in &self.checks {
            check()
                .await
                .map_err(|reason| format!("{name}: {reason}"))?;
        }
        Ok(())
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

/// Routes for health and metrics, to merge into a service's own router.
pub fn ops_router<S>(readiness: Readiness) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let handle = crate::metrics_handle();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready).with_state(Arc::new(readiness)))
        .route("/metrics", get(move || std::future::ready(handle.render())))
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> (StatusCode, String) {
    match readiness.evaluate().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Serves only the ops routes (for workers, which have no API of their own) until shutdown.
pub async fn serve_ops(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app: Router = ops_router(readiness);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
