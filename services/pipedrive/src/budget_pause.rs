//! The connection paused while Pipedrive's daily token budget is spent: one clear message
//! when it starts and when it ends, the `billsync_pipedrive_paused` gauge, and no call sent
//! meanwhile (each event waits and comes back), resuming by itself when tokens are free.
//!
//! The transport's ledger refuses a call the budget cannot pay for, and Pipedrive answers
//! 429 when its own count says so; either way the wait is long (tokens return as the
//! rolling day moves on), unlike the burst window's second or two.

use billsync_worker::DeliveryError;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A wait this long is the daily budget, not the burst window.
const BUDGET_WAIT: Duration = Duration::from_secs(60);

pub(crate) struct BudgetPause {
    connection: String,
    until: Mutex<Option<Instant>>,
}

impl BudgetPause {
    pub(crate) fn new(connection: &str) -> Self {
        Self {
            connection: connection.to_string(),
            until: Mutex::new(None),
        }
    }

    fn gauge(&self, paused: bool) {
        metrics::gauge!("billsync_pipedrive_paused", "connection" => self.connection.clone())
            .set(if paused { 1.0 } else { 0.0 });
    }

    /// Why the connection is paused, while it is.
    pub(crate) fn reason(&self) -> Option<String> {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|at| *at > Instant::now()).map(|at| {
            format!(
                "Pipedrive's daily token budget is spent; paused, resuming by itself in {} s",
                (at - Instant::now()).as_secs()
            )
        })
    }

    /// Refuses to start an event while paused, saying when it resumes.
    pub(crate) fn check(&self) -> Result<(), DeliveryError> {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        match *until {
            Some(at) if at > Instant::now() => {
                let wait = at - Instant::now();
                Err(DeliveryError::Retryable {
                    message: format!(
                        "paused: the Pipedrive connection {}'s daily token budget is spent; \
                         it resumes by itself in {} s",
                        self.connection,
                        wait.as_secs()
                    ),
                    retry_after: Some(wait),
                    http_status: None,
                })
            }
            Some(_) => {
                *until = None;
                self.gauge(false);
                tracing::info!(connection = %self.connection, "Pipedrive tokens are available again; the connection resumes.");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Pauses the connection when `result` says the budget is spent.
    pub(crate) fn observe<T>(&self, result: &Result<T, DeliveryError>) {
        let Err(DeliveryError::Retryable {
            retry_after: Some(wait),
            message,
            ..
        }) = result
        else {
            return;
        };
        if *wait < BUDGET_WAIT {
            return;
        }
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.is_none() {
            tracing::warn!(connection = %self.connection, resume_in_secs = wait.as_secs(), reason = %message,
                "Pipedrive's daily token budget is spent; the connection is paused and resumes by itself. Raise daily_token_budget only if the company's plan allows more.");
            self.gauge(true);
        }
        *until = Some(Instant::now() + *wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_pauses_until_tokens_return() {
        let pause = BudgetPause::new("pd");
        assert!(pause.check().is_ok());
        let burst: Result<(), _> = Err(DeliveryError::Retryable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(2)),
            http_status: Some(429),
        });
        pause.observe(&burst);
        assert!(pause.check().is_ok(), "a burst wait does not pause");
        let spent: Result<(), _> = Err(DeliveryError::Retryable {
            message: "not sent".into(),
            retry_after: Some(Duration::from_secs(600)),
            http_status: None,
        });
        pause.observe(&spent);
        match pause.check() {
            Err(DeliveryError::Retryable {
                retry_after: Some(wait),
                message,
                ..
            }) => {
                assert!(wait <= Duration::from_secs(600));
                assert!(message.contains("daily token budget is spent"));
            }
            other => panic!("expected a pause, got {other:?}"),
        }
        assert!(pause
            .reason()
            .is_some_and(|r| r.contains("budget is spent")));
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(pause.reason(), None);
        assert!(pause.check().is_ok(), "resumes by itself");
    }
}
