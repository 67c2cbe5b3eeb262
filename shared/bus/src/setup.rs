//! Connecting to NATS and declaring streams, consumers and buckets idempotently.

use crate::topology::Topology;
use async_nats::jetstream::{self, consumer, kv, stream};
use std::time::Duration;

/// Every `url` in these errors is redacted ([`redact_url`]): no password or token.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("nats.url {url} is not a NATS server address: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to NATS at {url}: {source} (is nats-server running with -js?)")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "NATS at {url} refused billsync's credentials: {source}; check the user and password \
         (nats://user:password@host:port) or token (nats://token@host:port) in nats.url or \
         BILLSYNC_NATS_URL"
    )]
    Credentials {
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
///
/// `url` may carry credentials: `nats://user:password@host:port` or `nats://token@host:port`
/// (percent-encoded where they hold `@`, `:` or `/`). Credentials that the server refuses
/// fail at once; a server that is not up yet is waited for.
pub async fn connect(url: &str, client_name: &str) -> Result<async_nats::Client, BusError> {
    let (options, addresses) = connect_options(url, client_name)?;
    // One plain attempt first: with `retry_on_initial_connect` a refused password would be
    // retried in the background forever, leaving a service that never gets ready and says
    // why only in async-nats's logs.
    match options.connect(addresses.as_slice()).await {
        Ok(client) => return Ok(client),
        Err(source) if refuses_credentials(&source) => {
            return Err(BusError::Credentials {
                url: redact_url(url),
                source,
            })
        }
        Err(error) => {
            tracing::info!(url = %redact_url(url), %error, "NATS is not reachable yet; waiting for it.");
        }
    }
    let (options, addresses) = connect_options(url, client_name)?;
    options
        .retry_on_initial_connect()
        .connect(addresses.as_slice())
        .await
        .map_err(|source| BusError::Connect {
            url: redact_url(url),
            source,
        })
}

/// The options billsync connects with, credentials from `url` included, and the server
/// addresses without them.
///
/// `url` is one server or a comma-separated list of a cluster's servers
/// (`nats://a:4222,nats://b:4222`): the client starts with whichever answers and fails over
/// to the others. Every server of a list carries the same credentials, or none.
///
/// async-nats 0.42 parses a user, password or token in the URL but never sends it: its
/// connector fills the CONNECT message from `ConnectOptions` alone (`ServerAddr::username`
/// and `password` are read nowhere), so a credentialed URL connects anonymously. The
/// addresses handed on carry no credentials, so none can reach async-nats's logs either.
pub fn connect_options(
    url: &str,
    client_name: &str,
) -> Result<(async_nats::ConnectOptions, Vec<String>), BusError> {
    let invalid = |reason: String| BusError::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    let mut credentials = None;
    let mut addresses = Vec::new();
    for server in url.split(',').map(str::trim) {
        if server.is_empty() {
            return Err(invalid("a server of the list is empty".into()));
        }
        let (server_credentials, address) = split_credentials(server).map_err(&invalid)?;
        match &credentials {
            None => credentials = Some(server_credentials),
            Some(first) if *first != server_credentials => {
                return Err(invalid(
                    "the servers of the list carry different credentials; give every server the same ones".into(),
                ))
            }
            Some(_) => {}
        }
        addresses.push(address);
    }
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    options = match credentials.unwrap_or_default() {
        (user, None) if user.is_empty() => options,
        (user, Some(_)) if user.is_empty() => {
            return Err(invalid("a password needs a user name before it".into()))
        }
        (user, None) => options.token(user),
        (user, Some(password)) => options.user_and_password(user, password),
    };
    Ok((options, addresses))
}

/// The decoded user (or token) and password of one server's URL, and its address without them.
fn split_credentials(server: &str) -> Result<((String, Option<String>), String), String> {
    let mut address = server
        .parse::<async_nats::ServerAddr>()
        .map_err(|e| e.to_string())?
        .into_inner();
    let user = percent_decode(address.username())?;
    let password = address.password().map(percent_decode).transpose()?;
    let cleared = address
        .set_password(None)
        .and_then(|()| address.set_username(""));
    if cleared.is_err() {
        return Err("its credentials cannot be separated from the host".into());
    }
    Ok(((user, password), address.to_string()))
}

/// `url` with its password, or its token, replaced by `***`, for messages and logs; works on
/// text that does not parse as a URL too, and on a comma-separated list of servers.
pub fn redact_url(url: &str) -> String {
    let servers: Vec<&str> = url.split(',').collect();
    // A list whose credentials all sit inside their own server; else (a password holding a
    // ',', say) the whole text is redacted as one, which hides more.
    if servers.len() > 1 && (!url.contains('@') || servers.iter().all(|s| s.contains('@'))) {
        return servers
            .iter()
            .map(|server| redact_server(server))
            .collect::<Vec<_>>()
            .join(",");
    }
    redact_server(url)
}

fn redact_server(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    // The last '@' anywhere: a NATS URL has no path, and a password may hold an unescaped
    // '/', '?' or '#' that would end the authority early. Hiding too much beats too little.
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let user_info = &rest[..at];
    let shown = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // A lone user part is a token: a secret in full.
        None => "***".to_string(),
    };
    format!("{scheme}{shown}{}", &rest[at..])
}

/// Whether connecting failed because the server refused who billsync said it was.
fn refuses_credentials(error: &async_nats::ConnectError) -> bool {
    matches!(
        error.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation
            | async_nats::ConnectErrorKind::Authentication
    )
}

/// Decodes the `%XX` escapes of a URL's user or password.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("its credentials hold a % that starts no %XX escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "its credentials are not UTF-8 once decoded".to_string())
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
        until_jetstream_answers(&name, || js.create_or_update_stream(config.clone()))
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
        let handle = until_jetstream_answers(stream, || js.get_stream(stream))
            .await
            .map_err(|e| err(e.into()))?;
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
        let consumer: consumer::PullConsumer =
            until_jetstream_answers(name, || handle.get_or_create_consumer(name, config.clone()))
                .await
                .map_err(|e| err(e.into()))?;
        let existing = &consumer.cached_info().config;
        let differs =
            |c: &consumer::Config| c.ack_wait != ack_wait || c.max_ack_pending != max_ack_pending;
        if !differs(existing) {
            return Ok(consumer);
        }
        // The worker times its progress acks and writer claims by the configured ack_wait:
        // a consumer left with an older one would redeliver events still being written.
        tracing::info!(
            consumer = name,
            ack_wait_was = ?existing.ack_wait,
            max_ack_pending_was = existing.max_ack_pending,
            ?ack_wait,
            max_ack_pending,
            "Updating the consumer to the configured ack_wait and max_in_flight."
        );
        let updated: consumer::PullConsumer = handle
            .create_consumer(config)
            .await
            .map_err(|e| err(e.into()))?;
        let now = &updated.cached_info().config;
        if differs(now) {
            return Err(err(format!(
                "the consumer keeps ack_wait {:?} and max_ack_pending {} while the \
                 configuration asks for {ack_wait:?} and {max_ack_pending} \
                 (workers.ack_wait_secs, workers.max_in_flight); delete the consumer \
                 (`nats consumer rm {stream} {name}`) while the workers are stopped, and \
                 start them again",
                now.ack_wait, now.max_ack_pending
            )
            .into()));
        }
        Ok(updated)
    }

    /// Deletes every stream and bucket of the deployment, ignoring those already gone: what
    /// a test leaves behind on a shared server, or a deliberate teardown.
    pub async fn remove_all(&self, js: &jetstream::Context) {
        for stream in self.streams() {
            let _ = js.delete_stream(stream).await;
        }
        for bucket in self.buckets() {
            let _ = js.delete_key_value(bucket).await;
        }
    }

    /// Opens (creating if needed) a key-value bucket.
    ///
    /// The bucket's stream is declared here rather than by `create_key_value`, which first
    /// asks for account information in a shape nats-server 2.9 does not send. The settings
    /// are those of a standard KV bucket, so any NATS tool reads it as one, except direct
    /// gets, which are off (see below).
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
        let history = self.bucket_history(&bucket);
        if let Ok(store) = js.get_key_value(&bucket).await {
            let existing = &store.stream.cached_info().config;
            if !existing.allow_direct && existing.max_messages_per_subject >= history {
                return Ok(store);
            }
            // A bucket made by an earlier billsync (or a NATS tool) with direct gets: on a
            // cluster those may be answered by a replica that has not caught up yet, so a
            // worker could read a record's applied version from before the last write and
            // let an older event overwrite a newer one. Reads go to the leader instead. Or
            // one keeping fewer revisions than its leases' compare-and-set needs.
            let mut config = existing.clone();
            config.allow_direct = false;
            config.max_messages_per_subject = config.max_messages_per_subject.max(history);
            until_jetstream_answers(&bucket, || js.update_stream(config.clone()))
                .await
                .map_err(|e| err(e.into()))?;
            return until_jetstream_answers(&bucket, || js.get_key_value(&bucket))
                .await
                .map_err(|e| err(e.into()));
        }
        let config = stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(format!("billsync key-value bucket {bucket}")),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: history,
            max_age,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            // Reads from the stream's leader, never from a replica that lags behind: what a
            // worker reads (a record's applied version, its writer claim, its links) must
            // include the last write, or an older event could overwrite a newer one.
            allow_direct: false,
            num_replicas: settings.replicas,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        if let Err(error) =
            until_jetstream_answers(&bucket, || js.get_or_create_stream(config.clone())).await
        {
            // Replicas starting together race to create it, and JetStream answers the
            // losers "stream name already in use" or "subjects overlap": use the winner's.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return until_jetstream_answers(&bucket, || js.get_key_value(&bucket))
                .await
                .map_err(|_| err(error.into()));
        }
        until_jetstream_answers(&bucket, || js.get_key_value(&bucket))
            .await
            .map_err(|e| err(e.into()))
    }
}

/// How long a declaration waits for JetStream to be able to answer it.
const DECLARE_PATIENCE: Duration = Duration::from_secs(90);

/// Runs a declaration (or a start-up read) again while JetStream cannot answer it yet — a cluster electing its
/// leaders, a node restarting, a machine too busy to answer within the request timeout — so
/// that a service starting beside its cluster waits for it instead of failing. Other errors
/// (a refused configuration, say) return at once.
pub async fn until_jetstream_answers<T, E, F, Fut>(what: &str, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + DECLARE_PATIENCE;
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await {
            Err(error)
                if jetstream_not_ready(&error.to_string())
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::info!(what, %error, "JetStream cannot answer yet; trying again.");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Whether an error says JetStream is there but cannot answer yet (timeouts, no responders,
/// JetStream's 10008 "temporarily unavailable"), as opposed to refusing the request.
fn jetstream_not_ready(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    [
        "timed out",
        "no responders",
        "temporarily unavailable",
        "10008",
    ]
    .iter()
    .any(|sign| error.contains(sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn declarations_wait_for_jetstream_but_not_for_a_refusal() {
        let mut calls = 0;
        let result: Result<u8, String> = until_jetstream_answers("s", || {
            calls += 1;
            let answer = if calls < 4 {
                Err("jetstream request timed out".to_string())
            } else {
                Ok(7)
            };
            async move { answer }
        })
        .await;
        assert_eq!((result, calls), (Ok(7), 4));
        let mut calls = 0;
        let result: Result<u8, String> = until_jetstream_answers("s", || {
            calls += 1;
            async { Err("stream name already in use with a different configuration".into()) }
        })
        .await;
        assert_eq!(calls, 1, "{result:?}");
        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let result: Result<u8, String> = until_jetstream_answers("s", || {
            calls += 1;
            async { Err("no responders".into()) }
        })
        .await;
        assert!(result.is_err() && calls > 5, "{calls}");
        assert!(
            started.elapsed() <= DECLARE_PATIENCE,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn credentials_are_taken_out_of_the_address_and_decoded() {
        let (_, address) =
            connect_options("nats://billsync:s%40cret@127.0.0.1:4222", "t").expect("valid");
        assert_eq!(address, ["nats://127.0.0.1:4222"]);
        let (_, address) = connect_options("nats://t0ken@nats:4222", "t").expect("valid");
        assert_eq!(address, ["nats://nats:4222"]);
        let (_, address) = connect_options("127.0.0.1:4222", "t").expect("valid");
        assert_eq!(address, ["nats://127.0.0.1:4222"]);
        assert_eq!(percent_decode("s%40c%3Aret"), Ok("s@c:ret".to_string()));
        assert!(percent_decode("100%").is_err());
    }

    #[test]
    fn a_cluster_is_a_list_of_servers_with_the_same_credentials() {
        let (_, addresses) =
            connect_options("nats://u:p@n1:4222, nats://u:p@n2:4222", "t").expect("valid");
        assert_eq!(addresses, ["nats://n1:4222", "nats://n2:4222"]);
        let error = connect_options("nats://u:p@n1:4222,n2:4222", "t").expect_err("n2 has none");
        assert!(
            error.to_string().contains("different credentials"),
            "{error}"
        );
        assert!(!error.to_string().contains(":p@"), "{error}");
        let (_, addresses) = connect_options("n1:4222,n2:4222,n3:4222", "t").expect("valid");
        assert_eq!(addresses.len(), 3);
        assert!(connect_options("n1:4222,,n2:4222", "t").is_err());
        assert_eq!(
            redact_url("nats://u:s3cret@n1:4222,nats://u:s3cret@n2:4222"),
            "nats://u:***@n1:4222,nats://u:***@n2:4222"
        );
        // A raw ',' inside a password: the whole text is redacted as one server.
        let redacted = redact_url("nats://u:pa,ss@n1:4222");
        assert!(
            !redacted.contains("pa") && !redacted.contains("ss@"),
            "{redacted}"
        );
    }

    #[test]
    fn redacted_urls_keep_the_user_and_hide_passwords_and_tokens() {
        assert_eq!(
            redact_url("nats://billsync:s3cret@nats:4222"),
            "nats://billsync:***@nats:4222"
        );
        assert_eq!(redact_url("nats://t0ken@nats:4222"), "nats://***@nats:4222");
        assert_eq!(redact_url("nats://nats:4222"), "nats://nats:4222");
        assert_eq!(redact_url("u:p@w@host:1"), "u:***@host:1");
        assert_eq!(redact_url("nats://u:pa/ss?#@host:1"), "nats://u:***@host:1");
        let error = connect_options("http://billsync:s3cret@nats:4222", "t")
            .expect_err("not a NATS scheme");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = connect_options("nats://:s3cret@nats:4222", "t").expect_err("no user");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}
