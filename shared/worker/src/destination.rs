//! The contract between the worker runtime and one CRM.

use billsync_events::{BillingEventV1, DestinationKind, FailureClass};
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// What a destination did with an event it accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// The CRM now reflects the event; the id of the record written.
    Written { crm_id: Option<String> },
    /// Nothing to write for this destination (a resource it does not sync, say).
    NotApplicable { reason: String },
}

/// How an event reaches a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// As it happened, or redelivered: a write billsync remembers making may be skipped.
    Live,
    /// Sent again by an operator (`billsync replay`, a retry from the errors service) to
    /// repair the CRM: written again even where billsync remembers the CRM has it.
    Replay,
}

/// Why a delivery did not happen, decided by the client's one `classify` function.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again: timeouts, 429, 5xx. `retry_after` is the CRM's own hint.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    },
    /// Trying again unchanged will fail the same way.
    #[error("{message}")]
    Permanent {
        class: FailureClass,
        message: String,
        http_status: Option<u16>,
        detail: Value,
    },
}

impl DeliveryError {
    pub fn permanent(class: FailureClass, message: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            class,
            message: message.into(),
            http_status: None,
            detail: Value::Null,
        }
    }

    /// The failure of an event from `source` at destination connection `destination` when
    /// no sync between them is configured.
    pub fn no_sync(source: &str, destination: &str) -> Self {
        Self::permanent(
            FailureClass::Configuration,
            format!("no sync from {source} to {destination} is configured"),
        )
    }
}

/// The reason of what [`Destination::deliver_effects`] does by default.
pub const NO_EVENT_EFFECTS: &str = "the destination has no per-event effects";

/// How many events of one connection are worked on at once unless the destination says.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The most events of one connection worked on at once, whatever the destination says.
/// Enough for a bulk call of 250 records (ActiveCampaign's imports) to fill from the events
/// in flight. Each event that is calling the CRM holds a connection, its request and answer
/// and its work's state (about 90 KiB in the soak), so a destination that goes this high
/// lets only some of them call at once (at most [`MAX_CALLING`]), the others waiting to
/// share a bulk call or for their turn. A limit of 100,000 requests/s (the sandbox's lifted
/// account) had every event JetStream hands over (`workers.max_in_flight`, 512) calling at
/// once: 70 MiB resident.
pub const MAX_CONCURRENCY: usize = 256;

/// The most events of one connection calling the CRM at once: past this a CRM that answers
/// in 100 ms already takes 640 events/s.
pub const MAX_CALLING: usize = 64;

/// One destination connection (a CRM account).
pub trait Destination: Send + Sync + 'static {
    fn kind(&self) -> DestinationKind;

    /// The destination connection's name in the configuration.
    fn connection(&self) -> &str;

    /// Writes the event's effect into the CRM. Must be idempotent: the runtime may deliver
    /// an event again after a crash, and upserts keyed by external ids make that harmless.
    fn deliver(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> impl Future<Output = Result<Delivered, DeliveryError>> + Send;

    /// The effects an event has of its own, beside the state of its record: a tag or a
    /// tracked event in ActiveCampaign, a note or an activity elsewhere. The runtime calls
    /// this instead of [`Destination::deliver`] for an event older than what the CRM shows
    /// of its record (Stripe does not promise order: a `customer.created` may arrive after
    /// `customer.updated`), so the record never goes back while the event still has its
    /// effects. Must be idempotent, as `deliver` is: exactly once is the destination's own
    /// bookkeeping of which effects it applied.
    fn deliver_effects(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> impl Future<Output = Result<Delivered, DeliveryError>> + Send {
        let _ = (event, pass);
        async {
            Ok(Delivered::NotApplicable {
                reason: NO_EVENT_EFFECTS.to_string(),
            })
        }
    }

    /// How many of this connection's events are worked on at once: about what the CRM's
    /// budget serves in a second or two. A backlog then completes in arrival order, each
    /// event seconds after it starts, instead of all of them advancing together and
    /// finishing together minutes later; the rest wait, kept alive, in arrival order. A
    /// destination whose events share bulk calls goes higher (enough to fill one) and keeps
    /// the events making single calls at once to about that budget itself (ActiveCampaign's
    /// turns).
    ///
    /// The runtime caps it at [`MAX_CONCURRENCY`].
    fn concurrency(&self) -> usize {
        DEFAULT_CONCURRENCY
    }

    /// Why the connection takes no work now although its credentials work — its CRM's
    /// allowance spent (Zoho's API credits, Pipedrive's daily tokens) — or `None`. Its
    /// events wait for it to come back instead of failing one by one, and `/readyz`
    /// reports it as not ready while it lasts.
    fn paused(&self) -> Option<String> {
        None
    }

    /// One cheap authenticated call: whether the CRM accepts the credentials now. The
    /// runtime calls it only while they are refused (see [`crate::ConnectionHealth`]), at
    /// most every 30 s, to turn readiness back on without waiting for an event.
    fn healthcheck(&self) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}
