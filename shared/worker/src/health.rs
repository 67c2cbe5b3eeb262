//! Whether a destination connection's credentials work, for `/readyz`.
//!
//! The runtime watches every delivery: a CRM that refuses the credentials (401, or a 403
//! its `classify` reads as a refused token) makes the connection not ready until a later
//! delivery succeeds — or, with no events flowing, until the destination's `healthcheck`
//! passes. The probe runs from `/readyz` at most once per [`PROBE_EVERY`], so a kubelet
//! polling every few seconds never spends a CRM's rate limit.

use crate::destination::{DeliveryError, Destination};
use billsync_events::FailureClass;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How often a connection whose credentials were refused is probed again.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);

/// One connection's credential state, shared by its worker loop and the readiness check.
#[derive(Debug, Default)]
pub struct ConnectionHealth {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Why the CRM refused the credentials, while it does.
    refused: Option<String>,
    last_probe: Option<Instant>,
}

impl DeliveryError {
    /// Whether the CRM refused the connection's credentials (not one record): a
    /// configuration failure answered with 401 or 403.
    pub fn refuses_credentials(&self) -> bool {
        matches!(
            self,
            DeliveryError::Permanent {
                class: FailureClass::Configuration,
                http_status: Some(401 | 403),
                ..
            }
        )
    }
}

impl ConnectionHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes what a delivery's outcome says of the credentials: a refusal marks them
    /// refused, a success clears that; other failures say nothing about them.
    pub fn observe<T>(&self, result: &Result<T, DeliveryError>) {
        match result {
            Ok(_) => self.state().refused = None,
            Err(error) if error.refuses_credentials() => {
                let mut state = self.state();
                if state.refused.is_none() {
                    tracing::error!(reason = %error, "The CRM refused the connection's credentials; readiness is now false until they work.");
                }
                state.refused = Some(error.to_string());
                state.last_probe = Some(Instant::now());
            }
            Err(_) => {}
        }
    }

    /// Why the connection is not ready, if it is not: paused (see [`Destination::paused`]),
    /// or its credentials refused. While refused, probes the CRM with the destination's
    /// `healthcheck` at most once per [`PROBE_EVERY`].
    pub async fn check<D: Destination>(&self, destination: &D) -> Result<(), String> {
        if let Some(reason) = destination.paused() {
            return Err(format!(
                "connection {} is paused: {reason}",
                destination.connection()
            ));
        }
        let refusal = {
            let mut state = self.state();
            let Some(reason) = state.refused.clone() else {
                return Ok(());
            };
            let due = state
                .last_probe
                .is_none_or(|at| at.elapsed() >= PROBE_EVERY);
            if !due {
                return Err(format!("connection {}: {reason}", destination.connection()));
            }
            state.last_probe = Some(Instant::now());
            reason
        };
        match destination.healthcheck().await {
            Ok(()) => {
                tracing::info!(connection = %destination.connection(), "The CRM accepts the connection's credentials again; ready.");
                self.state().refused = None;
                Ok(())
            }
            Err(error) => {
                // A probe that fails otherwise (a timeout) keeps the refusal's reason.
                let reason = if error.refuses_credentials() {
                    error.to_string()
                } else {
                    refusal
                };
                self.state().refused = Some(reason.clone());
                Err(format!("connection {}: {reason}", destination.connection()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::{Delivered, Pass};
    use billsync_events::{BillingEventV1, DestinationKind};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A CRM whose credentials work when `accepts` says so; counts its probes.
    #[derive(Default)]
    struct Probed {
        accepts: AtomicBool,
        probes: AtomicUsize,
    }

    fn refused() -> DeliveryError {
        DeliveryError::Permanent {
            class: FailureClass::Configuration,
            message: "the CRM refused the API token (401)".into(),
            http_status: Some(401),
            detail: serde_json::Value::Null,
        }
    }

    impl Destination for Probed {
        fn kind(&self) -> DestinationKind {
            DestinationKind::Activecampaign
        }
        fn connection(&self) -> &str {
            "probed"
        }
        async fn deliver(&self, _: &BillingEventV1, _: Pass) -> Result<Delivered, DeliveryError> {
            unreachable!("readiness never delivers")
        }
        async fn healthcheck(&self) -> Result<(), DeliveryError> {
            self.probes.fetch_add(1, Ordering::Relaxed);
            if self.accepts.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(refused())
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refused_credentials_make_it_unready_until_a_probe_or_a_delivery_passes() {
        let crm = Probed::default();
        let health = ConnectionHealth::new();
        assert_eq!(health.check(&crm).await, Ok(()));
        assert_eq!(
            crm.probes.load(Ordering::Relaxed),
            0,
            "no probe while ready"
        );

        // A record the CRM refuses says nothing about the credentials.
        health.observe::<()>(&Err(DeliveryError::permanent(
            FailureClass::Rejected,
            "bad email",
        )));
        assert_eq!(health.check(&crm).await, Ok(()));

        health.observe::<()>(&Err(refused()));
        let reason = health.check(&crm).await.expect_err("not ready");
        assert!(
            reason.contains("probed") && reason.contains("401"),
            "{reason}"
        );
        assert_eq!(
            crm.probes.load(Ordering::Relaxed),
            0,
            "the refusal was just seen"
        );

        // Readiness is polled often; the CRM is probed at most once per PROBE_EVERY.
        crm.accepts.store(true, Ordering::Relaxed);
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(health.check(&crm).await.is_err());
        }
        assert_eq!(crm.probes.load(Ordering::Relaxed), 0);
        tokio::time::advance(PROBE_EVERY).await;
        assert_eq!(health.check(&crm).await, Ok(()));
        assert_eq!(crm.probes.load(Ordering::Relaxed), 1);

        // A successful delivery clears a refusal at once.
        health.observe::<()>(&Err(refused()));
        assert!(health.check(&crm).await.is_err());
        health.observe(&Ok(()));
        assert_eq!(health.check(&crm).await, Ok(()));
    }
}
