//! A JetStream message that must be settled: acked, NAKed with a delay, or terminated.
//!
//! Dropping a `Delivery` without settling it NAKs it, so a panicking or cancelled handler
//! hands the message back at once instead of waiting out the ack timeout.

use async_nats::jetstream::{self, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::Duration;

pub struct Delivery {
    message: Option<jetstream::Message>,
}

/// Where a message sits in its stream and how often it was delivered.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryInfo {
    pub stream_sequence: u64,
    pub delivered: i64,
    pub pending: u64,
}

impl Delivery {
    pub fn new(message: jetstream::Message) -> Self {
        Self {
            message: Some(message),
        }
    }

    fn message(&self) -> &jetstream::Message {
        // Settled deliveries are consumed by value, so the message is always here.
        self.message
            .as_ref()
            .expect("an unsettled delivery holds its message")
    }

    pub fn payload(&self) -> &Bytes {
        &self.message().payload
    }

    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message().headers.as_ref()
    }

    pub fn subject(&self) -> &str {
        self.message().subject.as_str()
    }

    pub fn info(&self) -> Option<DeliveryInfo> {
        self.message().info().ok().map(|info| DeliveryInfo {
            stream_sequence: info.stream_sequence,
            delivered: info.delivered,
            pending: info.pending,
        })
    }

    /// Acknowledges and waits for the server to confirm, so a lost ack cannot cause a
    /// redelivery of work that is already done.
    pub async fn ack(mut self) -> Result<(), async_nats::Error> {
        let message = self
            .message
            .take()
            .expect("an unsettled delivery holds its message");
        message.double_ack().await
    }

    /// Hands the message back for redelivery after `delay`.
    pub async fn nak(mut self, delay: Option<Duration>) -> Result<(), async_nats::Error> {
        let message = self
            .message
            .take()
            .expect("an unsettled delivery holds its message");
        message.ack_with(AckKind::Nak(delay)).await
    }

    /// Stops redelivery without success: the message can never be processed.
    pub async fn term(mut self) -> Result<(), async_nats::Error> {
        let message = self
            .message
            .take()
            .expect("an unsettled delivery holds its message");
        message.ack_with(AckKind::Term).await
    }

    /// Tells the server work is ongoing, restarting its ack timer.
    pub async fn in_progress(&self) -> Result<(), async_nats::Error> {
        self.message().ack_with(AckKind::Progress).await
    }

    /// A handle that keeps this message alive (progress acks) from elsewhere while the
    /// delivery itself waits in a queue; it cannot settle the message.
    pub fn progress(&self) -> Progress {
        Progress(self.message().clone())
    }

    /// How long ago the message was first stored in its stream.
    pub fn age(&self) -> Option<Duration> {
        let published = self.message().info().ok()?.published;
        let age = time_since(published.unix_timestamp_nanos());
        Some(age)
    }
}

/// Sends progress acks for a message owned by a [`Delivery`] elsewhere.
#[derive(Clone)]
pub struct Progress(jetstream::Message);

impl Progress {
    /// Tells the server work on the message is ongoing, restarting its ack timer.
    pub async fn in_progress(&self) -> Result<(), async_nats::Error> {
        self.0.ack_with(AckKind::Progress).await
    }
}

/// The time from `unix_nanos` until now; zero for a time in the future (clock skew).
fn time_since(unix_nanos: i128) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default();
    Duration::from_nanos(u64::try_from((now - unix_nanos).max(0)).unwrap_or(u64::MAX))
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                        tracing::debug!(%error, "NAK of a dropped delivery failed; it will be redelivered after ack_wait");
                    }
                });
            }
        }
    }
}
