//! `soak` (`make soak`): the resident memory of every billsync process through a long run
//! (issue 16): ingest, errors and the ActiveCampaign worker as `billsync` processes, fed
//! signed Stripe webhooks (customers created, subscribed, changed, charged; default
//! 1,000,000 events) at the rate the worker keeps up with — the load waits whenever the
//! worker has more than `--max-backlog` events unsettled — against the `billsync-sandbox`
//! binary's ActiveCampaign account with its rate limit lifted (see `billsync_e2e::pipeline`).
//!
//! Nothing scrapes the services' `/metrics` until the end unless `--scrape-secs` says how
//! often (Prometheus's interval), as a deployment without Prometheus runs.
//!
//! `VmRSS` of each billsync process (and of nothing else) is sampled once they are ready
//! (start), when `--steady-at` of the events are settled (steady), every `--sample-secs`,
//! and when every event is settled (end). Prints a table per service — start, steady, end,
//! max and the growth from steady to end — with the events/s reached and the time the full
//! 1,000,000 events take at that rate; exits non-zero when a process exceeds `--limit-mib`,
//! or grows from steady to end by more than `--growth-pct` of its steady figure or
//! `--growth-mib`, whichever is larger, or when an event is not synced.

use billsync_e2e::pipeline::{Pipeline, PipelineOptions, ProcessUsage, SERVICES};
use billsync_e2e::workload::events;
use clap::Parser;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    about = "Soak: RSS of every billsync process through a long run, flat and under a limit."
)]
struct Args {
    /// Events in all, spread evenly over the customers.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// The load waits while the worker has more than this many events unsettled.
    #[arg(long, default_value_t = 2_000)]
    max_backlog: u64,
    /// Webhooks posted to ingest at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// The fraction of the events settled at which the steady-state sample is taken.
    #[arg(long, default_value_t = 0.1)]
    steady_at: f64,
    /// No process may exceed this resident memory.
    #[arg(long, default_value_t = 64.0)]
    limit_mib: f64,
    /// Allowed growth from steady to end, in percent of steady…
    #[arg(long, default_value_t = 10.0)]
    growth_pct: f64,
    /// …or in MiB, whichever is larger.
    #[arg(long, default_value_t = 4.0)]
    growth_mib: f64,
    /// Scrape every service's `/metrics` this often, as Prometheus does (the PodMonitor's
    /// interval is 30 s); 0 never scrapes until the end, as a deployment without
    /// Prometheus runs.
    #[arg(long, default_value_t = 0)]
    scrape_secs: u64,
    /// `[workers] max_in_flight` (billsync's default when unset).
    #[arg(long)]
    max_in_flight: Option<usize>,
}

/// One sample: when, how many events were settled, each service's usage (in `SERVICES` order).
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    settled: u64,
    usage: Vec<ProcessUsage>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let per_customer = (args.events / args.customers.max(1)).max(1);
    let total = (per_customer * args.customers) as u64;
    let mut pipeline = Pipeline::start(PipelineOptions {
        max_in_flight: args.max_in_flight,
    })
    .await?;
    for service in SERVICES {
        pipeline.start_service(service).await;
    }
    let pids: Vec<u32> = SERVICES
        .iter()
        .map(|s| pipeline.pid(s).expect("the service runs"))
        .collect();
    println!(
        "soak: {} customers x {per_customer} events = {total} events, at most {} unsettled; \
         /metrics scraped {}; logs in {}",
        args.customers,
        args.max_backlog,
        match args.scrape_secs {
            0 => "only at the end".to_string(),
            n => format!("every {n} s"),
        },
        pipeline.log_dir().display()
    );
    let pipeline = Arc::new(pipeline);
    let started = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sample = {
        let (pipeline, samples) = (Arc::clone(&pipeline), Arc::clone(&samples));
        move || {
            let (pipeline, samples, pids) =
                (Arc::clone(&pipeline), Arc::clone(&samples), pids.clone());
            async move {
                let stored = pipeline.events_in_stream().await;
                let settled = stored.saturating_sub(pipeline.worker_backlog().await.unwrap_or(0));
                let usage: Vec<ProcessUsage> = pids
                    .iter()
                    .map(|pid| ProcessUsage::of(*pid).unwrap_or_default())
                    .collect();
                let at = started.elapsed();
                let line: Vec<String> = SERVICES
                    .iter()
                    .zip(&usage)
                    .map(|(s, u)| format!("{s} {:.1} MiB", u.rss_mib()))
                    .collect();
                println!(
                    "  {:>7.0} s  {settled:>9} settled  {:>6.0}/s  {}  ({})",
                    at.as_secs_f64(),
                    settled as f64 / at.as_secs_f64().max(0.001),
                    line.join(", "),
                    billsync_e2e::pipeline::machine_load()
                );
                samples
                    .lock()
                    .expect("samples")
                    .push(Sample { at, settled, usage });
            }
        }
    };
    sample().await;
    let sampler = {
        let sample = sample.clone();
        let every = Duration::from_secs(args.sample_secs.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                sample().await;
            }
        })
    };
    let scraper = (args.scrape_secs > 0).then(|| {
        let pipeline = Arc::clone(&pipeline);
        let every = Duration::from_secs(args.scrape_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(error) = pipeline.scrape_metrics().await {
                    eprintln!("soak: a scrape of /metrics failed: {error:#}");
                }
            }
        })
    });
    pipeline
        .post_all(
            events(args.customers, per_customer),
            args.concurrency,
            Some(args.max_backlog),
        )
        .await?;
    pipeline.settled(total, Duration::from_secs(3600)).await;
    for task in std::iter::once(sampler).chain(scraper) {
        task.abort();
        let _ = task.await;
    }
    sample().await;
    drop(sample);
    let elapsed = started.elapsed().as_secs_f64();

    let results = pipeline.worker_events().await?;
    let result = |name: &str| results.get(name).copied().unwrap_or(0);
    let counts = pipeline.request_counts().await?;
    let samples = samples.lock().expect("samples").clone();
    let rate = total as f64 / elapsed;
    println!(
        "events: {total} in {elapsed:.0} s = {rate:.1} events/s ({} synced, {} skipped, {} failed); \
         CRM requests {} accepted, {} refused with 429",
        result("synced"),
        result("skipped"),
        result("failed"),
        counts.accepted,
        counts.refused,
    );
    println!(
        "at this rate 1,000,000 events take {:.1} h",
        1_000_000.0 / rate / 3600.0
    );
    let steady_index = samples
        .iter()
        .position(|s| s.settled as f64 >= args.steady_at * total as f64)
        .unwrap_or(samples.len() - 1);
    let steady = &samples[steady_index];
    println!(
        "RSS in MiB: start after readiness, steady at {:.0}% of the events ({} settled, {:.0} s), \
         end after the last; limit {} MiB, allowed growth from steady to end {}% or {} MiB, \
         whichever is larger",
        args.steady_at * 100.0,
        steady.settled,
        steady.at.as_secs_f64(),
        args.limit_mib,
        args.growth_pct,
        args.growth_mib
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}  verdict",
        "service", "start", "steady", "end", "max", "growth", "CPU ms/ev"
    );
    let mut failures = Vec::new();
    for (i, service) in SERVICES.iter().enumerate() {
        let mib = |s: &Sample| s.usage[i].rss_mib();
        let (start, end) = (mib(&samples[0]), mib(&samples[samples.len() - 1]));
        let steady_mib = mib(steady);
        let max = samples.iter().map(mib).fold(0.0, f64::max);
        let growth = end - steady_mib;
        let allowed = (steady_mib * args.growth_pct / 100.0).max(args.growth_mib);
        let cpu = samples[samples.len() - 1].usage[i].cpu_secs;
        let mut verdict = Vec::new();
        if max > args.limit_mib {
            verdict.push(format!("over {} MiB", args.limit_mib));
        }
        if growth > allowed {
            verdict.push(format!("grew {growth:.1} MiB > {allowed:.1} MiB allowed"));
        }
        println!(
            "{service:<16} {start:>8.1} {steady_mib:>8.1} {end:>8.1} {max:>8.1} {growth:>+8.1} {:>10.3}  {}",
            cpu * 1000.0 / total as f64,
            if verdict.is_empty() {
                "ok".to_string()
            } else {
                verdict.join("; ")
            }
        );
        failures.extend(verdict.into_iter().map(|v| format!("{service}: {v}")));
    }
    if result("failed") > 0 || result("synced") + result("skipped") < total {
        failures.push(format!(
            "{} of {total} events not synced",
            total.saturating_sub(result("synced") + result("skipped"))
        ));
    }
    match Arc::try_unwrap(pipeline) {
        Ok(pipeline) => pipeline.stop().await,
        Err(_) => anyhow::bail!("a task still holds the pipeline"),
    }
    if failures.is_empty() {
        println!("soak: passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("soak: FAILED: {}", failures.join(", "));
        Ok(ExitCode::FAILURE)
    }
}
