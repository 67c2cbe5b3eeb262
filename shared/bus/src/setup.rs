//! Connecting to NATS and declaring streams, consumers and buckets idempotently.

use crate::topology::Topology;
use async_nats::jetstream::{self, consumer, kv, stream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source} (is nats-server running with -js?)")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot declare stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot declare consumer {name} on stream {stream}: {source}")]
    Consumer {
        stream: String,
        name: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("cannot open key-value bucket {name}: {source}")]
    Bucket {
        name: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Connects with a client name that shows in `nats server report connections`.
/// After the first connection the client reconnects on its own, forever.
pub async fn connect(url: &str, client_name: &str) -> Result<async_nats::Client, BusError> {
    async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .map_err(|source| BusError::Connect {
            url: url.to_string(),
            source,
        })
}

/// Settings of the streams, from `[nats]` in the configuration.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub duplicate_window: Duration,
    pub replicas: usize,
    pub retention: Duration,
}

impl From<&billsync_config::NatsConfig> for StreamSettings {
    fn from(nats: &billsync_config::NatsConfig) -> Self {
        Self {
            duplicate_window: Duration::from_secs(nats.duplicate_window_secs),
            replicas: nats.replicas,
            retention: Duration::from_secs(nats.retention_days * 86_400),
        }
    }
}

impl Topology {
    /// Declares the events stream (owned by ingest; every service may declare it so that
    /// start order does not matter). Existing streams are updated to these settings.
    pub async fn ensure_events_stream(
        &self,
        js: &jetstream::Context,
        settings: &StreamSettings,
    ) -> Result<(), BusError> {
        self.ensure_stream(js, self.events_stream(), self.events_subjects(), settings)
            .await
    }

    /// Declares the outcomes stream (owned by the errors service, written by workers).
    pub async fn ensure_outcomes_stream(
        &self,
        js: &jetstream::Context,
        settings: &StreamSettings,
    ) -> Result<(), BusError> {
        self.ensure_stream(
            js,
            self.outcomes_stream(),
            self.outcomes_subjects(),
            settings,
        )
        .await
    }

    /// Declares the replay stream (written by the errors service and CLI, read by workers).
    pub async fn ensure_replay_stream(
        &self,
        js: &jetstream::Context,
        settings: &StreamSettings,
    ) -> Result<(), BusError> {
        self.ensure_stream(js, self.replay_stream(), self.replay_subjects(), settings)
            .await
    }

    async fn ensure_stream(
        &self,
        js: &jetstream::Context,
        name: String,
        subjects: String,
        settings: &StreamSettings,
    ) -> Result<(), BusError> {
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subjects],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: settings.retention,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        js.create_or_update_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Stream {
                name,
                source: e.into(),
            })
    }

    /// Declares a durable pull consumer with explicit acks.
    pub async fn ensure_pull_consumer(
        &self,
        js: &jetstream::Context,
        stream: &str,
        name: &str,
        filter_subject: String,
        ack_wait: Duration,
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, BusError> {
        let err = |e: async_nats::Error| BusError::Consumer {
            stream: stream.to_string(),
            name: name.to_string(),
            source: e,
        };
        let handle = js.get_stream(stream).await.map_err(|e| err(e.into()))?;
        let config = consumer::pull::Config {
            durable_name: Some(name.to_string()),
            description: Some("billsync".into()),
            filter_subject,
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait,
            max_ack_pending,
            // Redelivery is unbounded: giving up is the worker's decision, taken after it
            // has recorded a failure, never JetStream's.
            max_deliver: -1,
            ..Default::default()
        };
        handle
            .get_or_create_consumer(name, config)
            .await
            .map_err(|e| err(e.into()))
    }

    /// Opens (creating if needed) a key-value bucket.
    ///
    /// The bucket's stream is declared here rather than by `create_key_value`, which first
    /// asks for account information in a shape nats-server 2.9 does not send. The settings
    /// are those of a standard KV bucket, so any NATS tool reads it as one.
    pub async fn ensure_bucket(
        &self,
        js: &jetstream::Context,
        bucket: String,
        settings: &StreamSettings,
        max_age: Duration,
    ) -> Result<kv::Store, BusError> {
        let err = |e: async_nats::Error| BusError::Bucket {
            name: bucket.clone(),
            source: e,
        };
        if let Ok(store) = js.get_key_value(&bucket).await {
            return Ok(store);
        }
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(format!("billsync key-value bucket {bucket}")),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: settings.replicas,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| err(e.into()))?;
        js.get_key_value(&bucket).await.map_err(|e| err(e.into()))
    }
}
