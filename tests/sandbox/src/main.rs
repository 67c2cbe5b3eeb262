//! `billsync-sandbox`: serve the vendor emulators, or play Stripe against a running ingest.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use billsync_sandbox::{stripe, AcAccount, SandboxConfig};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the emulators until SIGINT or SIGTERM.
    Serve {
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: SocketAddr,
        /// An ActiveCampaign account as NAME:TOKEN[:REQUESTS_PER_SECOND]; repeatable.
        #[arg(long = "ac-account", value_name = "NAME:TOKEN[:RPS]", value_parser = parse_ac_account)]
        ac_accounts: Vec<AcAccount>,
    },
    /// Send signed `customer.created` events for made-up customers, as Stripe would.
    StripeDemo {
        /// The webhook endpoint, e.g. http://127.0.0.1:8080/webhooks/stripe/stripe-demo.
        #[arg(long)]
        url: String,
        /// Name of the environment variable holding the webhook secret (`whsec_...`).
        #[arg(long, default_value = "STRIPE_WEBHOOK_SECRET")]
        secret_env: String,
        #[arg(long, default_value_t = 5)]
        count: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
}

fn parse_ac_account(spec: &str) -> Result<AcAccount, String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(name), Some(token)) = (parts.next(), parts.next()) else {
        return Err("expected NAME:TOKEN[:RPS]".into());
    };
    if name.is_empty() || token.is_empty() {
        return Err("NAME and TOKEN must not be empty".into());
    }
    let mut account = AcAccount::new(name, token);
    if let Some(rps) = parts.next() {
        account.requests_per_second = rps
            .parse()
            .map_err(|_| format!("RPS must be a whole number, got {rps:?}"))?;
    }
    Ok(account)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            ac_accounts,
        } => serve(listen, ac_accounts).await,
        Command::StripeDemo {
            url,
            secret_env,
            count,
            interval_ms,
        } => {
            let secret = std::env::var(&secret_env)
                .with_context(|| format!("reading the webhook secret from ${secret_env}"))?;
            stripe_demo(&url, &secret, count, Duration::from_millis(interval_ms)).await
        }
    }
}

async fn serve(listen: SocketAddr, ac_accounts: Vec<AcAccount>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let config = SandboxConfig {
        activecampaign_accounts: ac_accounts,
    };
    let sandbox = billsync_sandbox::start(listener, config).await?;
    for name in sandbox.activecampaign.account_names() {
        tracing::info!(account = %name, base_url = %sandbox.activecampaign_base_url(&name), "ActiveCampaign account ready");
    }
    tracing::info!(url = %sandbox.url(), "Open the URL in a browser to watch the accounts");
    shutdown_signal().await?;
    tracing::info!("Shutting down");
    sandbox.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("listening for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}

async fn stripe_demo(
    url: &str,
    secret: &str,
    count: usize,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut refused = 0;
    for (i, customer) in stripe::demo_customers(count).into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let customer_id = stripe::random_id("cus_", 14);
        let event = stripe::customer_created_event(&customer_id, &customer.email, &customer.name);
        let status = stripe::send_webhook(url, secret, &event).await?;
        println!(
            "{} customer.created {customer_id} {} <{}> -> HTTP {status}",
            event["id"].as_str().unwrap_or_default(),
            customer.name,
            customer.email
        );
        if !(200..300).contains(&status) {
            refused += 1;
        }
    }
    anyhow::ensure!(
        refused == 0,
        "{refused} of {count} events were not accepted"
    );
    Ok(())
}
