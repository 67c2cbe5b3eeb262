//! Turns at the account's single calls: at most as many events make ActiveCampaign calls at
//! once as the account takes requests in a second, so each event's calls come within a few
//! seconds of each other and a backlog completes in arrival order.
//!
//! More events than that are in flight (their contacts share a bulk import, see
//! `crate::bulk`); an event takes its turn at its first call and keeps it to its end, so
//! waiting to share an import takes no turn, and the import itself (one call for many
//! events) needs none.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// One event's turn, taken at its first call.
#[derive(Clone, Default)]
struct Turn(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

tokio::task_local! {
    static TURN: Turn;
}

/// Runs one event's delivery: the calls it makes share one turn, given back at its end.
pub async fn as_one_event<F: Future>(delivery: F) -> F::Output {
    TURN.scope(Turn::default(), delivery).await
}

/// The turns of one account.
#[derive(Clone)]
pub struct Turns(Arc<Semaphore>);

impl Turns {
    pub fn new(at_once: u32) -> Self {
        Self(Arc::new(Semaphore::new(at_once.max(1) as usize)))
    }

    /// Waits for the current event's turn, unless it has one (or runs outside an event).
    pub(crate) async fn take(&self) {
        let Ok(turn) = TURN.try_with(Turn::clone) else {
            return;
        };
        let mut held = turn.0.lock().await;
        if held.is_none() {
            let permit = Arc::clone(&self.0).acquire_owned().await;
            *held = Some(permit.expect("the turns' semaphore is never closed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_event_keeps_its_turn_and_others_wait_for_it() {
        let turns = Turns::new(1);
        let (first_in, first_done) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
        let first = as_one_event(async {
            turns.take().await;
            first_in.notify_one();
            first_done.notified().await;
            turns.take().await; // its second call: no new turn needed
        });
        let second = async {
            first_in.notified().await;
            let waited =
                tokio::time::timeout(Duration::from_millis(100), as_one_event(turns.take())).await;
            assert!(
                waited.is_err(),
                "a second event took a turn while the only one was held"
            );
            first_done.notify_one();
            as_one_event(turns.take()).await;
        };
        tokio::join!(first, second);
        // Outside an event (a bulk import's own calls), no turn is needed.
        turns.take().await;
    }
}
