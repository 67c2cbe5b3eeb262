//! A destination connection paused while its CRM allowance is spent: the budget ledger
//! cannot pay for a call (it says when it can: Zoho's credits, Pipedrive's tokens), or the CRM
//! answers 429 (Zoho's `TOO_MANY_REQUESTS` carries no `Retry-After`). Events then wait for
//! the pause to end instead of failing one after another — the runtime keeps them alive
//! meanwhile — and the connection resumes by itself. Readiness is false (the destination's
//! [`crate::Destination::paused`] says why), `billsync_destination_paused` is 1 and one
//! message says why while it lasts.

use crate::destination::DeliveryError;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first pause after a 429 that says nothing of when to come back (Zoho's); doubled
/// while the CRM keeps answering 429 right after each pause, up to [`MAX_THROTTLE_PAUSE`].
const FIRST_THROTTLE_PAUSE: Duration = Duration::from_secs(2);
const MAX_THROTTLE_PAUSE: Duration = Duration::from_secs(300);

pub struct Pause {
    destination: &'static str,
    /// The budget's unit (`credits`), as the transport's "not sent" messages name it.
    unit: &'static str,
    connection: String,
    state: Mutex<State>,
    /// Cancelled at shutdown: waiting events go back to JetStream.
    shutdown: CancellationToken,
}

#[derive(Default)]
struct State {
    until: Option<Instant>,
    reason: String,
    /// The next pause a 429 starts.
    throttle: Option<Duration>,
}

impl Pause {
    /// The pause of `destination`'s connection `connection`, whose budget counts `unit`.
    pub fn new(
        destination: &'static str,
        unit: &'static str,
        connection: &str,
        shutdown: CancellationToken,
    ) -> Self {
        let pause = Self {
            destination,
            unit,
            connection: connection.to_string(),
            state: Mutex::default(),
            shutdown,
        };
        // Exported from the start, so dashboards and alerts see every connection.
        pause.gauge(false);
        pause
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gauge(&self, paused: bool) {
        metrics::gauge!("billsync_destination_paused",
            "destination" => self.destination, "connection" => self.connection.clone())
        .set(if paused { 1.0 } else { 0.0 });
    }

    /// Why the connection is paused, while it is.
    pub fn reason(&self) -> Option<String> {
        let state = self.state();
        match state.until {
            Some(until) if until > Instant::now() => Some(format!(
                "{} (resuming in {} s)",
                state.reason,
                until.saturating_duration_since(Instant::now()).as_secs()
            )),
            _ => None,
        }
    }

    /// Waits while the connection is paused; an error only when shutting down meanwhile.
    pub async fn wait(&self) -> Result<(), DeliveryError> {
        loop {
            let until = {
                let mut state = self.state();
                match state.until {
                    Some(until) if until > Instant::now() => until,
                    Some(_) => {
                        state.until = None;
                        drop(state);
                        self.gauge(false);
                        tracing::info!(destination = self.destination, connection = %self.connection, "The connection resumed.");
                        return Ok(());
                    }
                    None => return Ok(()),
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.shutdown.cancelled() => {
                    return Err(DeliveryError::Retryable {
                        message: "the connection was paused when the worker stopped".into(),
                        retry_after: None,
                        http_status: None,
                    })
                }
            }
        }
    }

    /// Notes what a delivery's outcome says of the connection's allowance.
    pub fn observe<T>(&self, result: &Result<T, DeliveryError>) {
        let (wait, reason) = match result {
            // The budget ledger cannot pay for the call: it says when it can.
            Err(DeliveryError::Retryable {
                message,
                retry_after: Some(wait),
                http_status: None,
            }) if message.contains("not sent: ") && message.contains(self.unit) => {
                (*wait, message.clone())
            }
            Err(DeliveryError::Retryable {
                message,
                http_status: Some(429),
                retry_after,
            }) => {
                let mut state = self.state();
                if state.until.is_some_and(|until| until > Instant::now()) {
                    // A call sent before the pause began, refused with the others of its
                    // burst: the pause already answers it. Counting each of them would
                    // double the pause once per concurrent call (hundreds of events in
                    // flight turned a 2 s window into 300 s of silence).
                    (retry_after.unwrap_or_default(), message.clone())
                } else if let Some(after) = retry_after {
                    // Pipedrive's 429 says when its window reopens: that is the pause.
                    (*after, message.clone())
                } else {
                    // Zoho's says nothing: back off further each time a pause was too short.
                    let wait = state.throttle.unwrap_or(FIRST_THROTTLE_PAUSE);
                    state.throttle = Some((wait * 2).min(MAX_THROTTLE_PAUSE));
                    (wait, message.clone())
                }
            }
            Ok(_) => {
                self.state().throttle = None;
                return;
            }
            Err(_) => return,
        };
        let mut state = self.state();
        let now = Instant::now();
        let was_paused = state.until.is_some_and(|until| until > now);
        let until = now + wait;
        if state.until.is_none_or(|held| held < until) {
            state.until = Some(until);
            state.reason = reason;
        }
        if !was_paused {
            let reason = state.reason.clone();
            drop(state);
            self.gauge(true);
            tracing::error!(destination = self.destination, connection = %self.connection, pause_secs = wait.as_secs(), %reason, "The CRM's allowance is spent; the connection is paused (not ready) and its events wait until it resumes by itself.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 429, with the vendor's `Retry-After` if it gave one.
    fn refused(message: &str, retry_after: Option<Duration>) -> Result<(), DeliveryError> {
        Err(DeliveryError::Retryable {
            message: message.into(),
            retry_after,
            http_status: Some(429),
        })
    }

    fn throttled() -> Result<(), DeliveryError> {
        refused("Zoho is out of API credits", None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_with_a_growing_wait_and_the_connection_resumes_by_itself() {
        let pause = Pause::new("zoho", "credits", "z", CancellationToken::new());
        assert!(pause.reason().is_none());
        pause.observe(&throttled());
        assert!(pause.reason().is_some_and(|r| r.contains("credits")));
        let started = Instant::now();
        pause.wait().await.expect("resumed");
        assert_eq!(started.elapsed(), FIRST_THROTTLE_PAUSE);
        assert!(pause.reason().is_none());
        pause.observe(&throttled());
        pause.wait().await.expect("resumed");
        assert_eq!(started.elapsed(), FIRST_THROTTLE_PAUSE * 3, "doubled");
        pause.observe(&Ok(()));
        pause.observe(&throttled());
        pause.wait().await.expect("resumed");
        assert_eq!(
            started.elapsed(),
            FIRST_THROTTLE_PAUSE * 4,
            "reset by a success"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_refusals_pauses_once_and_a_retry_after_is_the_pause() {
        let pause = Pause::new("pipedrive", "tokens", "p", CancellationToken::new());
        // The calls in flight when the CRM began refusing all come back refused.
        for _ in 0..50 {
            pause.observe(&throttled());
        }
        let started = Instant::now();
        pause.wait().await.expect("resumed");
        assert_eq!(
            started.elapsed(),
            FIRST_THROTTLE_PAUSE,
            "one pause, not 2^50 s"
        );
        pause.observe(&throttled());
        pause.wait().await.expect("resumed");
        assert_eq!(
            started.elapsed(),
            FIRST_THROTTLE_PAUSE * 3,
            "refused again right after the pause: doubled, once"
        );

        let window = refused("over the burst limit", Some(Duration::from_secs(1)));
        for _ in 0..20 {
            pause.observe(&window);
        }
        let started = Instant::now();
        pause.wait().await.expect("resumed");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "the CRM said when"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_ledger_pauses_until_it_can_pay_and_shutdown_ends_the_wait() {
        let shutdown = CancellationToken::new();
        let pause = Pause::new("zoho", "credits", "z", shutdown.clone());
        pause.observe::<()>(&Err(DeliveryError::Retryable {
            message: "not sent: the call costs 1 credits and 0 are left".into(),
            retry_after: Some(Duration::from_secs(3600)),
            http_status: None,
        }));
        assert!(pause.reason().is_some());
        shutdown.cancel();
        assert!(pause.wait().await.is_err());
    }
}
