//! The load generator: keep-alive HTTP/1.1 connections to the ingest endpoint, driven either
//! flat out (closed loop) or at a fixed rate (open loop, latency counted from the moment a
//! request was due, so a stalled server cannot hide its backlog).

use crate::payloads::Webhook;
use crate::stats::Latencies;
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// One keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
    path: Arc<str>,
}

impl Connection {
    pub async fn open(addr: SocketAddr, path: Arc<str>) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            authority: addr.to_string(),
            path,
        })
    }

    /// Sends one webhook and reads the whole answer; returns the status.
    pub async fn send(&mut self, webhook: &Webhook) -> anyhow::Result<u16> {
        self.sender.ready().await.context("connection closed")?;
        let request = Request::post(&*self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", &webhook.signature)
            .body(Full::new(webhook.body.clone()))
            .expect("a valid request");
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

pub async fn open_all(
    addr: SocketAddr,
    path: &str,
    count: usize,
) -> anyhow::Result<Vec<Connection>> {
    let path: Arc<str> = Arc::from(path);
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(Connection::open(addr, Arc::clone(&path)).await?);
    }
    Ok(connections)
}

/// What a load phase measured.
#[derive(Debug, Default)]
pub struct PhaseResult {
    pub accepted: usize,
    pub refused: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

/// Every connection sends its next webhook as soon as the last one is answered, until all
/// `webhooks` are sent.
pub async fn closed_loop(connections: Vec<Connection>, webhooks: Arc<Vec<Webhook>>) -> PhaseResult {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        let (next, webhooks) = (Arc::clone(&next), Arc::clone(&webhooks));
        tasks.spawn(async move {
            let mut result = PhaseResult {
                latencies: Latencies::with_capacity(webhooks.len() / 32),
                ..PhaseResult::default()
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(webhook) = webhooks.get(i) else {
                    break;
                };
                let sent = Instant::now();
                match connection.send(webhook).await {
                    Ok(200) => {
                        result.latencies.record(sent.elapsed());
                        result.accepted += 1;
                    }
                    Ok(_) => result.refused += 1,
                    Err(_) => {
                        result.failed += 1;
                        break;
                    }
                }
            }
            (connection, result)
        });
    }
    let mut total = PhaseResult::default();
    while let Some(joined) = tasks.join_next().await {
        let (_connection, result) = joined.expect("load task");
        total.accepted += result.accepted;
        total.refused += result.refused;
        total.failed += result.failed;
        total.latencies.merge(result.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.finish();
    total
}

/// Sends `webhooks` at `rate` per second spread over the connections; a webhook's latency
/// runs from when it was handed out, so time spent waiting for a free connection counts.
pub async fn open_loop(
    connections: Vec<Connection>,
    webhooks: Arc<Vec<Webhook>>,
    rate: f64,
) -> PhaseResult {
    let (jobs, queue) = mpsc::channel::<(usize, Instant)>(webhooks.len().max(1));
    let queue = Arc::new(Mutex::new(queue));
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        let (queue, webhooks) = (Arc::clone(&queue), Arc::clone(&webhooks));
        tasks.spawn(async move {
            let mut result = PhaseResult::default();
            loop {
                let job = queue.lock().await.recv().await;
                let Some((i, due)) = job else { break };
                match connection.send(&webhooks[i]).await {
                    Ok(200) => {
                        result.latencies.record(due.elapsed());
                        result.accepted += 1;
                    }
                    Ok(_) => result.refused += 1,
                    Err(_) => {
                        result.failed += 1;
                        break;
                    }
                }
            }
            result
        });
    }
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut sent = 0;
    while sent < webhooks.len() {
        // Hand out everything due by now; the timer wakes us about once a millisecond.
        let due_count = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(webhooks.len());
        let handed_at = Instant::now();
        while sent < due_count {
            if jobs.send((sent, handed_at)).await.is_err() {
                break;
            }
            sent += 1;
        }
        tokio::time::sleep_until((started + interval * sent as u32).into()).await;
    }
    drop(jobs);
    let mut total = PhaseResult::default();
    while let Some(joined) = tasks.join_next().await {
        let result = joined.expect("load task");
        total.accepted += result.accepted;
        total.refused += result.refused;
        total.failed += result.failed;
        total.latencies.merge(result.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.finish();
    total
}
