//! The destination kit: the runtime every destination worker shares, and what each one
//! would otherwise write again (service start-up, readiness on credentials, the KV record
//! store).
//!
//! A worker owns one durable JetStream consumer per destination connection (plus one on
//! the replay stream). Messages are dispatched to one queue per billing customer, so events
//! of one customer apply in stream order while a failing customer never stalls the others.
//! Each event is checked against the last version applied (stale or repeated events change
//! nothing), delivered with retries that honour `Retry-After`, and only then acked — after
//! its effect is in the CRM or its failure is recorded on the outcomes stream. Records an
//! operator ignored are skipped until an event shows them modified (seed 004).

mod batch;
#[cfg(feature = "conformance")]
pub mod conformance;
mod destination;
mod health;
mod lanes;
mod pause;
mod retry;
mod runtime;
mod service;
mod store;
mod unreadable;
mod waiting;

pub use batch::{BatchSink, Batcher};
pub use destination::{
    Delivered, DeliveryError, Destination, Pass, DEFAULT_CONCURRENCY, MAX_CALLING, MAX_CONCURRENCY,
    NO_EVENT_EFFECTS,
};
pub use health::{ConnectionHealth, PROBE_EVERY};
pub use pause::Pause;
pub use retry::RetrySchedule;
pub use runtime::{run_worker, WorkerContext, WorkerError, IGNORED_REASON};
pub use service::{serve_destinations, DestinationStores};
pub use store::{kv_error, RecordStore, Versioned};
