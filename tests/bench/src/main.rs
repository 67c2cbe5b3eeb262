//! `bench-ingest` (`make bench-ingest`): how fast the Stripe webhook path stores events,
//! against how fast JetStream itself stores the same payloads, on this machine, in one run.
//!
//! After a warm-up of 2,000 webhooks:
//! 1. Ingest at a steady 2,000 events/s: p99 latency, counted from when each webhook was due
//!    (run first, before the flat-out phases leave the server busy writing their backlog).
//! 2. Raw JetStream: a plain async-nats client publishes the same kind of payloads into a
//!    stream declared like the events stream, 256 acks in flight: the ceiling for a durable
//!    ack here.
//! 3. Ingest flat out: 64 keep-alive connections post unique, signed ~3 KB webhooks to the
//!    real ingest service (`billsync_ingest::run`, in its own runtime); each answer is a 200
//!    that came after JetStream's ack. Accepted events/s, p50/p99 latency, and the ratio to 2.
//!
//! Everything runs on loopback against the machine's NATS (`--nats-url`), under a prefix of
//! its own that is deleted afterwards.

mod jetstream;
mod load;
mod payloads;
mod stats;

use anyhow::Context as _;
use billsync_bus::{StreamSettings, Topology};
use clap::Parser;
use load::PhaseResult;
use stats::per_second;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the Stripe webhook path against raw JetStream, on loopback.")]
struct Args {
    #[arg(
        long,
        env = "BILLSYNC_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Concurrent HTTP connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Webhooks sent flat out (phase 2).
    #[arg(long, default_value_t = 60_000)]
    events: usize,
    /// Messages the raw JetStream client publishes (phase 1).
    #[arg(long, default_value_t = 150_000)]
    raw_events: usize,
    /// Acks the raw client keeps in flight.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Approximate size of each webhook body, in bytes.
    #[arg(long, default_value_t = 3_072)]
    payload_bytes: usize,
    /// Rate of the steady phase, events per second.
    #[arg(long, default_value_t = 2_000.0)]
    steady_rate: f64,
    #[arg(long, default_value_t = 10)]
    steady_secs: u64,
    /// Worker threads of the ingest service's runtime.
    #[arg(long, default_value_t = 2)]
    ingest_threads: usize,
    /// Exit with status 1 when a target is missed.
    #[arg(long)]
    strict: bool,
}

const CONNECTION: &str = "bench";
/// Issue 6's targets.
const TARGET_RATIO: f64 = 0.2;
const TARGET_STEADY_P99_MS: f64 = 10.0;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let secrets = tempfile::tempdir()?;
    let secret_file = secrets.path().join("whsec");
    std::fs::write(&secret_file, &secret)?;
    let config = Arc::new(
        billsync_config::Config::from_toml(
            &format!(
                r#"
[nats]
url = "{url}"
prefix = "{prefix}"
retention_days = 1
[telemetry]
log_level = "warn"
[[sources.stripe]]
name = "{CONNECTION}"
webhook_secrets = [{{ file = "{file}" }}]
"#,
                url = args.nats_url,
                file = secret_file.display(),
            ),
            std::path::Path::new("bench.toml"),
        )
        .context("bench configuration")?,
    );

    // The service under test gets a runtime of its own, as it would in its own process.
    let ingest_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.ingest_threads)
        .thread_name("ingest")
        .enable_all()
        .build()?;
    let load_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ingest = {
        let (config, shutdown) = (Arc::clone(&config), shutdown.clone());
        ingest_runtime.spawn(async move {
            let client = billsync_bus::connect(&config.nats.url, "bench-ingest").await?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            billsync_ingest::run(config, client, listener, shutdown).await
        })
    };

    let result = load_runtime.block_on(bench(&args, &config, &prefix, &secret, addr));
    shutdown.cancel();
    let _ = ingest_runtime.block_on(ingest);
    load_runtime.block_on(cleanup(&args.nats_url, &prefix));
    let verdict = result?;
    if args.strict && !verdict {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the three phases and prints the report; true when both targets are met.
async fn bench(
    args: &Args,
    config: &billsync_config::Config,
    prefix: &str,
    secret: &str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<bool> {
    let path = format!("/webhooks/stripe/{CONNECTION}");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "billsync ingest benchmark — loopback, {cpus} CPUs, NATS {}",
        args.nats_url
    );

    // Wait for the service, then warm it (and the stream) up.
    let ready = wait_ready(addr).await?;
    let now = || chrono_now();
    let warmup = Arc::new(payloads::webhooks(2_000, args.payload_bytes, secret, now()));
    let body_len = warmup[0].body.len();
    let connections = load::open_all(addr, &path, args.connections).await?;
    let warm = load::closed_loop(connections, Arc::clone(&warmup)).await;
    anyhow::ensure!(
        warm.accepted == warmup.len(),
        "warm-up: only {} of {} webhooks accepted ({} refused, {} failed) after {ready:?}",
        warm.accepted,
        warmup.len(),
        warm.refused,
        warm.failed
    );
    println!(
        "payload: {body_len} bytes per webhook (signed Stripe customer.updated events, unique ids)"
    );

    // 1. Ingest at a steady rate.
    let count = (args.steady_rate * args.steady_secs as f64) as usize;
    let steady_payloads = Arc::new(payloads::webhooks(count, args.payload_bytes, secret, now()));
    let connections = load::open_all(addr, &path, args.connections).await?;
    let steady = load::open_loop(connections, steady_payloads, args.steady_rate).await;
    print_phase(
        &format!(
            "ingest steady  ({:.0}/s for {} s, open loop)",
            args.steady_rate, args.steady_secs
        ),
        &steady,
    );

    // 2. Raw JetStream.
    let raw_prefix = format!("{prefix}raw");
    let raw_payloads = payloads::webhooks(
        args.events.min(args.raw_events),
        args.payload_bytes,
        secret,
        now(),
    );
    let client = async_nats::connect(&args.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let raw_topology = Topology::new(&raw_prefix);
    raw_topology
        .ensure_events_stream(&js, &StreamSettings::from(&config.nats))
        .await?;
    let raw_subject = format!("{raw_prefix}.billing.stripe.{CONNECTION}.customer.customer.updated");
    let raw_elapsed = jetstream::publish(
        &js,
        &raw_subject,
        &raw_payloads,
        args.raw_events,
        args.in_flight,
    )
    .await?;
    drop(raw_payloads);
    // Its 450 MB would weigh on the server for the rest of the run.
    js.delete_stream(raw_topology.events_stream()).await?;
    let raw_rate = per_second(args.raw_events, raw_elapsed);
    println!(
        "raw JetStream  (async-nats, {} acks in flight): {} msgs in {:.2} s = {:>8.0} msgs/s",
        args.in_flight,
        args.raw_events,
        raw_elapsed.as_secs_f64(),
        raw_rate
    );

    // 3. Ingest flat out.
    let flat = Arc::new(payloads::webhooks(
        args.events,
        args.payload_bytes,
        secret,
        now(),
    ));
    let connections = load::open_all(addr, &path, args.connections).await?;
    let max = load::closed_loop(connections, Arc::clone(&flat)).await;
    drop(flat);
    let ingest_rate = per_second(max.accepted, max.elapsed);
    print_phase(
        &format!(
            "ingest max     ({} connections, closed loop)",
            args.connections
        ),
        &max,
    );
    println!("               accepted {ingest_rate:>8.0} events/s");

    // Every 200 is in the stream.
    let expected = (warm.accepted + max.accepted + steady.accepted) as u64;
    let mut stream = js.get_stream(Topology::new(prefix).events_stream()).await?;
    let stored = stream.info().await?.state.messages;
    println!("stream check: {stored} events stored for {expected} webhooks answered 200");

    let ratio = ingest_rate / raw_rate;
    let p99 = steady.latencies.percentile_ms(99.0);
    let ratio_ok = ratio >= TARGET_RATIO && max.refused + max.failed == 0;
    let p99_ok = p99 < TARGET_STEADY_P99_MS && steady.refused + steady.failed == 0;
    println!();
    println!("ingest / raw JetStream: {ingest_rate:.0} / {raw_rate:.0} = {ratio:.2}  (target ≥ {TARGET_RATIO})  {}", verdict(ratio_ok));
    println!(
        "p99 at {:.0}/s: {p99:.2} ms  (target < {TARGET_STEADY_P99_MS} ms)  {}",
        args.steady_rate,
        verdict(p99_ok)
    );
    anyhow::ensure!(
        stored == expected,
        "the stream holds {stored} events, not {expected}"
    );
    Ok(ratio_ok && p99_ok)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

fn print_phase(name: &str, result: &PhaseResult) {
    println!(
        "{name}: {} accepted, {} refused, {} failed in {:.2} s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        result.accepted,
        result.refused,
        result.failed,
        result.elapsed.as_secs_f64(),
        result.latencies.percentile_ms(50.0),
        result.latencies.percentile_ms(99.0),
        result.latencies.max_ms(),
    );
}

async fn wait_ready(addr: std::net::SocketAddr) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request =
                format!("GET /readyz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer).await;
                if answer.starts_with(b"HTTP/1.1 200") {
                    return Ok(started.elapsed());
                }
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "ingest did not become ready on {addr} (is NATS with JetStream running?)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cleanup(nats_url: &str, prefix: &str) {
    if let Ok(client) = async_nats::connect(nats_url).await {
        let js = async_nats::jetstream::new(client);
        for p in [prefix.to_string(), format!("{prefix}raw")] {
            let _ = js.delete_stream(Topology::new(&p).events_stream()).await;
        }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
