//! The page at `/`: what each emulated account holds, refreshed every two seconds so a
//! newcomer running the demo watches contacts arrive.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use crate::activecampaign::ActiveCampaign;
use crate::kit::Tenant as _;
use crate::pipedrive::Pipedrive;
use crate::zoho::Zoho;

/// Contacts listed per account, newest first.
const RECENT_CONTACTS: usize = 20;

pub(crate) async fn page(
    State((ac, zoho, pd)): State<(ActiveCampaign, Zoho, Pipedrive)>,
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
    zoho.index_section(&mut html);
    html.push_str(&pd.index_section());
    html.push_str("</body></html>");
    Html(html)
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
