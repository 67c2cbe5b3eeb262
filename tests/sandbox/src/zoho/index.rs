//! The Zoho CRM part of the sandbox's index page: each organisation's contacts and deals.

use std::fmt::Write as _;

use serde_json::Value;

use super::Zoho;
use crate::index::escape;

/// Records listed per module and organisation, newest first.
const RECENT: usize = 20;

impl Zoho {
    /// Appends the Zoho CRM section to the index page.
    pub(crate) fn index_section(&self, html: &mut String) {
        html.push_str("<h2>Zoho CRM</h2>");
        let names = self.org_names();
        if names.is_empty() {
            html.push_str(
                "<p>No organisations. Start with <code>serve --zoho-org \
                 NAME:CLIENT_ID:CLIENT_SECRET:REFRESH_TOKEN</code>.</p>",
            );
        }
        for name in names {
            let snapshot = self.snapshot(&name);
            let counts = self.request_counts(&name);
            let checks = self.spec_checks(&name);
            let shown = escape(&name);
            let _ = write!(
                html,
                "<h3>{shown}</h3><p>{} contacts, {} accounts, {} deals; {} API calls accepted, \
                 {} refused (429); {} requests checked against the v8 spec, \
                 <a href=\"/__sandbox/zoho/{shown}/violations\">{} invalid</a>; \
                 {} credits used; {} access tokens issued. accounts_url: \
                 <code>{}</code> &middot; <a href=\"/__sandbox/zoho/{shown}\">state as JSON</a></p>",
                snapshot.contacts.len(),
                snapshot.accounts.len(),
                snapshot.deals.len(),
                counts.accepted,
                counts.refused,
                checks.checked,
                checks.invalid,
                snapshot.credits_used,
                snapshot.tokens.issued,
                escape(&self.accounts_url(&name)),
            );
            table(
                html,
                &snapshot.contacts,
                &["id", "Email", "Full_Name", "Account_Name", "Modified_Time"],
            );
            table(
                html,
                &snapshot.deals,
                &[
                    "id",
                    "Deal_Name",
                    "Stage",
                    "Amount",
                    "Contact_Name",
                    "Modified_Time",
                ],
            );
        }
    }
}

fn table(html: &mut String, records: &[Value], columns: &[&str]) {
    if records.is_empty() {
        return;
    }
    html.push_str("<table><tr>");
    for column in columns {
        let _ = write!(html, "<th>{column}</th>");
    }
    html.push_str("</tr>");
    for record in records.iter().rev().take(RECENT) {
        html.push_str("<tr>");
        for column in columns {
            let cell = match record.get(*column) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(lookup)) => lookup
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            let _ = write!(html, "<td>{}</td>", escape(&cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
}
