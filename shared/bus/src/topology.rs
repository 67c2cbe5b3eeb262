//! The one place that names streams, subjects, consumers, KV buckets and headers.
//!
//! Every name starts with the deployment's prefix (`billsync` by default) so that several
//! deployments, or parallel tests, can share one NATS account without seeing each other.

use billsync_events::{BillingEventV1, DestinationKind, SourceKind};

/// Header carrying the source event id; JetStream drops a second message with the same id
/// inside the stream's duplicate window.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace context headers.
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_TRACESTATE: &str = "tracestate";
/// Set on replayed events: the destination must apply them even if it already has.
pub const HEADER_REPLAY: &str = "Billsync-Replay";
/// Set by ingest on every event: the destination connections its configuration syncs the
/// event's source to, comma-separated. A worker whose own configuration lacks that sync (a
/// rollout that reached ingest first) holds the event back instead of dropping it.
pub const HEADER_DESTINATIONS: &str = "Billsync-Destinations";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// `prefix` must be a valid subject token (the configuration checks it).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn stream_prefix(&self) -> String {
        self.prefix.to_ascii_uppercase().replace('-', "_")
    }

    /// Every billing event from every source.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.stream_prefix())
    }

    pub fn events_subjects(&self) -> String {
        format!("{}.billing.>", self.prefix)
    }

    /// `{prefix}.billing.{source}.{connection}.{object}.{event_type}`; the event type keeps
    /// its dots, so `…customer.subscription.>` selects all subscription events of a customer.
    pub fn event_subject(&self, event: &BillingEventV1) -> String {
        format!(
            "{}.billing.{}.{}.{}.{}",
            self.prefix,
            event.source,
            event.connection,
            event.object,
            subject_tokens(&event.event_type)
        )
    }

    /// Every event of one source connection: `{prefix}.billing.{source}.{connection}.>`.
    pub fn source_events_subjects(&self, source: SourceKind, connection: &str) -> String {
        format!("{}.billing.{source}.{connection}.>", self.prefix)
    }

    /// Outcomes (synced, failed, skipped) reported by the workers, read by the errors service.
    pub fn outcomes_stream(&self) -> String {
        format!("{}_OUTCOMES", self.stream_prefix())
    }

    pub fn outcomes_subjects(&self) -> String {
        format!("{}.outcomes.>", self.prefix)
    }

    /// `{prefix}.outcomes.{destination_connection}.{status}`.
    pub fn outcome_subject(&self, destination_connection: &str, status: &str) -> String {
        format!("{}.outcomes.{destination_connection}.{status}", self.prefix)
    }

    /// Events sent back to one destination only (retries of failures, `billsync replay`).
    pub fn replay_stream(&self) -> String {
        format!("{}_REPLAY", self.stream_prefix())
    }

    pub fn replay_subjects(&self) -> String {
        format!("{}.replay.>", self.prefix)
    }

    pub fn replay_subject(&self, destination_connection: &str) -> String {
        format!("{}.replay.{destination_connection}", self.prefix)
    }

    /// The durable consumer of the events stream for one destination connection.
    pub fn worker_consumer(&self, destination_connection: &str) -> String {
        format!("worker-{destination_connection}")
    }

    /// The durable consumer of the replay stream for one destination connection.
    pub fn replay_consumer(&self, destination_connection: &str) -> String {
        format!("replay-{destination_connection}")
    }

    /// The errors service's durable consumer of the outcomes stream.
    pub fn errors_consumer(&self) -> String {
        "errors".to_string()
    }

    /// Source-id → CRM-id links, per destination connection.
    pub fn links_bucket(&self) -> String {
        format!("{}_links", self.prefix)
    }

    /// The last version of each record applied at each destination.
    pub fn versions_bucket(&self) -> String {
        format!("{}_versions", self.prefix)
    }

    /// Poll cursors of the polled sources.
    pub fn cursors_bucket(&self) -> String {
        format!("{}_cursors", self.prefix)
    }

    /// Leases that keep one poller per connection across replicas.
    pub fn leases_bucket(&self) -> String {
        format!("{}_leases", self.prefix)
    }

    /// Which replica is writing a customer's records at a destination (one at a time).
    pub fn writers_bucket(&self) -> String {
        format!("{}_writers", self.prefix)
    }

    /// The next free request slot of each rate-limited vendor account, shared by replicas.
    pub fn rate_limits_bucket(&self) -> String {
        format!("{}_rate_limits", self.prefix)
    }

    /// OAuth access tokens of destination connections, shared by every replica (Zoho mints
    /// only 10 per refresh token per 10 minutes), and the lease of the replica refreshing.
    pub fn tokens_bucket(&self) -> String {
        format!("{}_tokens", self.prefix)
    }

    /// What each budgeted vendor account spent (Pipedrive's daily tokens), shared by replicas.
    pub fn budgets_bucket(&self) -> String {
        format!("{}_budgets", self.prefix)
    }

    /// Records an operator chose to ignore until they change.
    pub fn ignores_bucket(&self) -> String {
        format!("{}_ignores", self.prefix)
    }

    /// Revisions kept per key in `bucket`: those holding leases or "created once" markers
    /// keep [`CAS_HISTORY`](crate::cas::CAS_HISTORY), which their compare-and-set needs on a
    /// cluster (see [`crate::cas`]); the others only the last.
    pub fn bucket_history(&self, bucket: &str) -> i64 {
        let with_leases = [
            self.links_bucket(),
            self.leases_bucket(),
            self.writers_bucket(),
            self.tokens_bucket(),
        ];
        if with_leases.iter().any(|b| b == bucket) {
            crate::cas::CAS_HISTORY
        } else {
            1
        }
    }

    /// Every stream of the deployment (see [`Topology::remove_all`]).
    pub fn streams(&self) -> [String; 3] {
        [
            self.events_stream(),
            self.outcomes_stream(),
            self.replay_stream(),
        ]
    }

    /// Every KV bucket of the deployment.
    pub fn buckets(&self) -> [String; 9] {
        [
            self.links_bucket(),
            self.versions_bucket(),
            self.cursors_bucket(),
            self.leases_bucket(),
            self.writers_bucket(),
            self.rate_limits_bucket(),
            self.ignores_bucket(),
            self.tokens_bucket(),
            self.budgets_bucket(),
        ]
    }

    /// A KV key for `(destination connection, record)`: KV keys allow `[-/_=.a-zA-Z0-9]`.
    pub fn record_kv_key(destination: DestinationKind, connection: &str, record: &str) -> String {
        let record: String = record
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_=/".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{destination}.{connection}.{record}")
    }
}

/// Turns a vendor's event type into subject tokens: dots stay separators, anything a
/// subject token cannot hold becomes `_`.
fn subject_tokens(event_type: &str) -> String {
    let cleaned: Vec<String> = event_type
        .split('.')
        .map(|token| {
            let token: String = token
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if token.is_empty() {
                "_".to_string()
            } else {
                token
            }
        })
        .collect();
    cleaned.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_the_event_type_hierarchy() {
        assert_eq!(
            subject_tokens("customer.subscription.created"),
            "customer.subscription.created"
        );
        assert_eq!(subject_tokens("weird type.>*"), "weird_type.__");
        assert_eq!(subject_tokens(".."), "_._._");
    }

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t-42");
        assert_eq!(t.events_stream(), "T_42_EVENTS");
        assert_eq!(
            t.outcome_subject("ac-main", "failed"),
            "t-42.outcomes.ac-main.failed"
        );
        assert_eq!(
            t.source_events_subjects(SourceKind::Stripe, "stripe-main"),
            "t-42.billing.stripe.stripe-main.>"
        );
        assert_eq!(
            Topology::record_kv_key(DestinationKind::Activecampaign, "ac", "customer/cus 1"),
            "activecampaign.ac.customer/cus_1"
        );
    }
}
