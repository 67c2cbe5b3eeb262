//! The runtime every destination worker shares.
//!
//! A worker owns one durable JetStream consumer per destination connection (plus one on
//! the replay stream). Messages are dispatched to one queue per billing customer, so events
//! of one customer apply in stream order while a failing customer never stalls the others.
//! Each event is checked against the last version applied (stale or repeated events change
//! nothing), delivered with retries that honour `Retry-After`, and only then acked — after
//! its effect is in the CRM or its failure is recorded on the outcomes stream. Records an
//! operator ignored are skipped until an event shows them modified (seed 004).

mod destination;
mod lanes;
mod retry;
mod runtime;
mod unreadable;

pub use destination::{Delivered, DeliveryError, Destination, Pass};
pub use retry::RetrySchedule;
pub use runtime::{run_worker, WorkerContext, WorkerError, IGNORED_REASON};
