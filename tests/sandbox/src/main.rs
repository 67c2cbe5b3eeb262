//! `billsync-sandbox`: serve the vendor emulators, play Stripe against a running ingest, or
//! make changes in a served Chargebee site as a person would in Chargebee's web app.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use billsync_sandbox::{stripe, AcAccount, CbSite, PdCompany, SandboxConfig, ZohoOrg};
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
        /// A Chargebee site as NAME:API_KEY[:REQUESTS_PER_MINUTE]; repeatable.
        #[arg(long = "cb-site", value_name = "NAME:API_KEY[:RPM]", value_parser = parse_cb_site)]
        cb_sites: Vec<CbSite>,
        /// A Zoho CRM organisation as NAME:CLIENT_ID:CLIENT_SECRET:REFRESH_TOKEN[:CREDITS];
        /// repeatable. Its accounts_url is http://LISTEN/zoho/NAME/accounts.
        #[arg(long = "zoho-org", value_name = "NAME:CLIENT_ID:CLIENT_SECRET:REFRESH_TOKEN[:CREDITS]", value_parser = ZohoOrg::parse_spec)]
        zoho_orgs: Vec<ZohoOrg>,
        /// A Pipedrive company as NAME:API_TOKEN[:DAILY_TOKENS[:REQUESTS_PER_2S]]; repeatable.
        #[arg(long = "pipedrive-company", value_name = "NAME:TOKEN[:DAILY[:PER_2S]]", value_parser = parse_pd_company)]
        pd_companies: Vec<PdCompany>,
    },
    /// Create customers (and a subscription each) in a served Chargebee site, then change
    /// them; the site raises the events billsync polls.
    ChargebeeDemo {
        /// The sandbox, e.g. http://127.0.0.1:9100.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        url: String,
        #[arg(long)]
        site: String,
        #[arg(long, default_value_t = 5)]
        count: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Create a list in a served ActiveCampaign account through its API, as a person would
    /// under Lists > Add a list; prints the list's id (what `list_id` takes).
    ActivecampaignList {
        /// The sandbox, e.g. http://127.0.0.1:9100.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        url: String,
        #[arg(long)]
        account: String,
        /// The account's API token.
        #[arg(long)]
        token: String,
        #[arg(long)]
        name: String,
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

fn parse_cb_site(spec: &str) -> Result<CbSite, String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(name), Some(key)) = (parts.next(), parts.next()) else {
        return Err("expected NAME:API_KEY[:RPM]".into());
    };
    if name.is_empty() || key.is_empty() {
        return Err("NAME and API_KEY must not be empty".into());
    }
    let mut site = CbSite::new(name, key);
    if let Some(rpm) = parts.next() {
        site.requests_per_minute = rpm
            .parse()
            .map_err(|_| format!("RPM must be a whole number, got {rpm:?}"))?;
    }
    Ok(site)
}

fn parse_pd_company(spec: &str) -> Result<PdCompany, String> {
    let mut parts = spec.splitn(4, ':');
    let (Some(name), Some(token)) = (parts.next(), parts.next()) else {
        return Err("expected NAME:TOKEN[:DAILY_TOKENS[:REQUESTS_PER_2S]]".into());
    };
    if name.is_empty() || token.is_empty() {
        return Err("NAME and TOKEN must not be empty".into());
    }
    let mut company = PdCompany::new(name, token);
    if let Some(daily) = parts.next() {
        company.daily_tokens = daily
            .parse()
            .map_err(|_| format!("DAILY_TOKENS must be a whole number, got {daily:?}"))?;
    }
    if let Some(burst) = parts.next() {
        company.requests_per_2s = burst
            .parse()
            .map_err(|_| format!("REQUESTS_PER_2S must be a whole number, got {burst:?}"))?;
    }
    Ok(company)
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
            cb_sites,
            zoho_orgs,
            pd_companies,
        } => serve(listen, ac_accounts, cb_sites, zoho_orgs, pd_companies).await,
        Command::ChargebeeDemo {
            url,
            site,
            count,
            interval_ms,
        } => chargebee_demo(&url, &site, count, Duration::from_millis(interval_ms)).await,
        Command::ActivecampaignList {
            url,
            account,
            token,
            name,
        } => activecampaign_list(&url, &account, &token, &name).await,
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

async fn serve(
    listen: SocketAddr,
    ac_accounts: Vec<AcAccount>,
    cb_sites: Vec<CbSite>,
    zoho_orgs: Vec<ZohoOrg>,
    pd_companies: Vec<PdCompany>,
) -> anyhow::Result<()> {
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
    for site in cb_sites {
        let name = site.name.clone();
        sandbox.chargebee.add_site(site);
        tracing::info!(site = %name, base_url = %sandbox.chargebee_base_url(&name), "Chargebee site ready");
    }
    for org in zoho_orgs {
        let name = org.name.clone();
        sandbox.zoho.add_org(org);
        tracing::info!(org = %name, accounts_url = %sandbox.zoho.accounts_url(&name), "Zoho CRM organisation ready");
    }
    for company in pd_companies {
        let name = company.name.clone();
        sandbox.pipedrive.add_company(company);
        tracing::info!(company = %name, base_url = %sandbox.pipedrive.base_url(&name), "Pipedrive company ready");
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

/// `POST /api/3/lists` on a served ActiveCampaign account; prints `list ID: NAME`.
async fn activecampaign_list(
    url: &str,
    account: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<()> {
    let stringid: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/activecampaign/{account}/api/3/lists",
            url.trim_end_matches('/')
        ))
        .header("Api-Token", token)
        .json(&serde_json::json!({"list": {
            "name": name,
            "stringid": stringid,
            "sender_url": "https://example.com",
            "sender_reminder": "You signed up on our site.",
        }}))
        .send()
        .await
        .context("reaching the sandbox")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the answer")?;
    anyhow::ensure!(status.is_success(), "the sandbox answered {status}: {body}");
    let id = match &body["list"]["id"] {
        serde_json::Value::String(id) => id.clone(),
        other => other.to_string(),
    };
    println!("list {id}: {name}");
    Ok(())
}

/// Drives a served Chargebee site through its `/__sandbox/chargebee` routes: `count`
/// customers, each with a subscription, then a change to each.
async fn chargebee_demo(
    url: &str,
    site: &str,
    count: usize,
    interval: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let control = format!("{}/__sandbox/chargebee/{site}", url.trim_end_matches('/'));
    let post = |path: String, body: serde_json::Value| {
        let request = http.post(format!("{control}{path}")).json(&body);
        async move {
            let response = request.send().await.context("reaching the sandbox")?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.context("reading the answer")?;
            anyhow::ensure!(status.is_success(), "the sandbox answered {status}: {body}");
            Ok::<_, anyhow::Error>(body)
        }
    };
    for (i, customer) in stripe::demo_customers(count).into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        let (first, last) = customer
            .name
            .split_once(' ')
            .unwrap_or((customer.name.as_str(), ""));
        // Not the Stripe demo's addresses: in `make run` both feed one ActiveCampaign account.
        let email = customer
            .email
            .replace("@example.com", "@chargebee.example.com");
        let created = post(
            "/customers".into(),
            serde_json::json!({"first_name": first, "last_name": last, "email": email}),
        )
        .await?;
        let id = created["record"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let sub = post(
            format!("/customers/{id}/subscriptions"),
            serde_json::json!({"plan_id": "basic-usd", "plan_unit_price": 2900}),
        )
        .await?;
        let changed = post(
            format!("/customers/{id}"),
            serde_json::json!({"company": "Demo Inc."}),
        )
        .await?;
        for event in [&created, &sub, &changed] {
            println!(
                "{} {} {}",
                event["event"]["id"].as_str().unwrap_or_default(),
                event["event"]["event_type"].as_str().unwrap_or_default(),
                event["record"]["id"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
