//! Keeps alive the messages that wait for their turn: queued in a customer's lane behind a
//! long write, or for a share of the connection's budget.
//!
//! JetStream redelivers a message that has not been acked or marked in progress within
//! `ack_wait`. A waiting message is neither, so without this a backlog held back by a CRM's
//! rate limit would be redelivered every `ack_wait`, and each redelivery would queue another
//! copy of the same event. One ticker marks every waiting message in progress; a message
//! leaves the room when its work starts (its own keep-alive then takes over) or when it is
//! dropped.

use billsync_bus::delivery::Progress;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct WaitingRoom {
    waiting: Mutex<HashMap<u64, Progress>>,
    next: AtomicU64,
}

/// A message's place in the [`WaitingRoom`]; leaving is dropping it.
pub(crate) struct Seat {
    room: Arc<WaitingRoom>,
    id: u64,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.room
            .waiting
            .lock()
            .expect("waiting room lock poisoned")
            .remove(&self.id);
    }
}

impl WaitingRoom {
    pub(crate) fn enter(self: &Arc<Self>, progress: Progress) -> Seat {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.waiting
            .lock()
            .expect("waiting room lock poisoned")
            .insert(id, progress);
        Seat {
            room: Arc::clone(self),
            id,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting
            .lock()
            .expect("waiting room lock poisoned")
            .len()
    }

    /// Marks every waiting message in progress each `beat`, until shutdown.
    pub(crate) async fn keep_alive(self: Arc<Self>, beat: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let waiting: Vec<Progress> = self
                .waiting
                .lock()
                .expect("waiting room lock poisoned")
                .values()
                .cloned()
                .collect();
            for progress in waiting {
                if let Err(error) = progress.in_progress().await {
                    tracing::debug!(%error, "Progress ack of a waiting message failed.");
                }
            }
        }
    }
}
