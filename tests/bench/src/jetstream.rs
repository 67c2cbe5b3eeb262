//! The ceiling: a plain async-nats client publishing the same payloads into a JetStream
//! stream declared like the events stream, with a fixed number of acks in flight.

use crate::payloads::Webhook;
use async_nats::jetstream::{self, context::Publish};
use async_nats::HeaderMap;
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::{Duration, Instant};

/// Publishes `total` messages, cycling through `webhooks` (each lap under new message ids, so
/// the stream stores every one), keeping `in_flight` acks outstanding. Returns the time taken.
pub async fn publish(
    js: &jetstream::Context,
    subject: &str,
    webhooks: &[Webhook],
    total: usize,
    in_flight: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..total {
        let webhook = &webhooks[i % webhooks.len()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}-{}", webhook.id, i / webhooks.len()).as_str(),
        );
        let publish = Publish::build()
            .payload(webhook.body.clone())
            .headers(headers);
        let ack = js.send_publish(subject.to_string(), publish).await?;
        pending.push(std::future::IntoFuture::into_future(ack));
        if pending.len() >= in_flight {
            if let Some(acked) = pending.next().await {
                acked?;
            }
        }
    }
    while let Some(acked) = pending.next().await {
        acked?;
    }
    Ok(started.elapsed())
}
