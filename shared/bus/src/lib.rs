//! billsync's use of NATS JetStream: names, stream and bucket setup, publishing, acking.
//!
//! Every stream, subject, consumer, bucket and header name is spelled in [`topology`] and
//! nowhere else. Publishing always carries `Nats-Msg-Id` (so JetStream drops duplicates) and
//! the W3C trace context (so one trace spans webhook → stream → CRM write), and waits for
//! the stream's ack: nothing upstream is told "done" before the event is durable.

pub mod budget;
pub mod cas;
pub mod delivery;
pub mod ignores;
pub mod lease;
pub mod publish;
pub mod rate_limit;
pub mod retry_after;
pub mod setup;
pub mod token;
pub mod topology;
pub mod trace;

pub use budget::{SharedBudget, Spend};
pub use delivery::Delivery;
pub use ignores::{data_fingerprint, ignore_key, IgnoredRecord};
pub use publish::{PublishError, Published, Publisher};
pub use rate_limit::SharedRateLimiter;
pub use retry_after::{parse_retry_after, retry_after_header, MAX_RETRY_AFTER};
pub use setup::{connect, BusError, StreamSettings};
pub use token::token_matches;
pub use topology::Topology;
