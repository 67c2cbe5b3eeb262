//! The page at `/`: what each emulated account holds, refreshed every two seconds so a
//! newcomer running the demo watches contacts arrive.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use crate::activecampaign::ActiveCampaign;
use crate::chargebee::Chargebee;
use crate::kit::Tenant as _;
use crate::pipedrive::Pipedrive;
use crate::zoho::Zoho;

/// Contacts listed per account, newest first.
const RECENT_CONTACTS: usize = 20;

pub(crate) async fn page(
    State((ac, cb, zoho, pd)): State<(ActiveCampaign, Chargebee, Zoho, Pipedrive)>,
) -> Html<String> {
    let mut html = String::from(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"2\"><title>billsync sandbox</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style></head><body>",
        "<h1>billsync sandbox</h1>",
    ));
    html.push_str("<h2>ActiveCampaign</h2>");
    let accounts = ac.accounts();
    if accounts.is_empty() {
        html.push_str("<p>No accounts. Start with <code>serve --ac-account NAME:TOKEN</code>.</p>");
    }
    for account in accounts {
        let name = escape(account.name());
        let snapshot = account.data().snapshot();
        let _ = write!(
            html,
            "<h3>{name}</h3><p>{} contacts, {} tags, {} custom fields, {} lists, {} API requests served. \
             API base: <code>{}</code> &middot; <a href=\"/__sandbox/activecampaign/{name}\">state as JSON</a></p>",
            snapshot.contacts.len(),
            snapshot.tags.len(),
            snapshot.fields.len(),
            snapshot.lists.len(),
            ac.request_count(account.name()),
            escape(account.api_url()),
        );
        if snapshot.contacts.is_empty() {
            continue;
        }
        html.push_str(
            "<table><tr><th>id</th><th>email</th><th>name</th><th>tags</th><th>updated</th></tr>",
        );
        for contact in snapshot.contacts.iter().rev().take(RECENT_CONTACTS) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                escape(&contact.id),
                escape(&contact.email),
                escape(&contact.first_name),
                escape(&contact.last_name),
                escape(&snapshot.tags_of(&contact.id).join(", ")),
                escape(&contact.udate),
            );
        }
        html.push_str("</table>");
    }
    chargebee_sites(&cb, &mut html);
    zoho.index_section(&mut html);
    html.push_str(&pd.index_section());
    html.push_str("</body></html>");
    Html(html)
}

/// Each Chargebee site: where its API is, and its newest customers with their subscriptions.
fn chargebee_sites(cb: &Chargebee, html: &mut String) {
    html.push_str("<h2>Chargebee</h2>");
    let sites = cb.site_names();
    if sites.is_empty() {
        html.push_str("<p>No sites. Start with <code>serve --cb-site NAME:API_KEY</code>.</p>");
    }
    for site in sites {
        let snapshot = cb.snapshot(&site);
        let name = escape(&site);
        let _ = write!(
            html,
            "<h3>{name}</h3><p>{} customers, {} subscriptions, {} events, {} API requests served. \
             API base (<code>base_url</code>): <code>{}</code> &middot; \
             <a href=\"/__sandbox/chargebee/{name}\">state as JSON</a></p>",
            snapshot.customers.len(),
            snapshot.subscriptions.len(),
            snapshot.events.len(),
            cb.request_count(&site),
            escape(&cb.base_url(&site)),
        );
        if snapshot.customers.is_empty() {
            continue;
        }
        html.push_str(
            "<table><tr><th>id</th><th>email</th><th>name</th><th>subscriptions</th></tr>",
        );
        for customer in snapshot.customers.iter().rev().take(RECENT_CONTACTS) {
            let subscriptions: Vec<String> = snapshot
                .subscriptions
                .iter()
                .filter(|s| s.customer_id == customer.id)
                .map(|s| format!("{} ({})", s.id, s.status))
                .collect();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
                escape(&customer.id),
                escape(customer.email.as_deref().unwrap_or_default()),
                escape(customer.first_name.as_deref().unwrap_or_default()),
                escape(customer.last_name.as_deref().unwrap_or_default()),
                escape(&subscriptions.join(", ")),
            );
        }
        html.push_str("</table>");
    }
}

pub(crate) fn escape(text: &str) -> String {
    text.chars()
        .fold(String::with_capacity(text.len()), |mut out, c| {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                c => out.push(c),
            }
            out
        })
}
