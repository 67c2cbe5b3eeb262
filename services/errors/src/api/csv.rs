//! The sync-error CSV: RFC 4180 quoting, and no cell a spreadsheet would run as a formula.

use crate::scrub::Scrubber;
use crate::store::FailureRow;
use chrono::{DateTime, SecondsFormat, Utc};

pub const HEADER: &str = "id,destination,destination_connection,source,source_connection,\
    record_key,event_type,error_class,http_status,message,count,first_seen,last_seen\r\n";

/// One line of the CSV for `row`, ending in CRLF.
pub fn line(row: &FailureRow, scrubber: &Scrubber) -> String {
    let cells = [
        row.id.to_string(),
        text(&row.destination),
        text(&row.destination_connection),
        text(&row.source),
        text(&row.source_connection),
        text(&row.record_key),
        text(&row.event_type),
        text(&row.error_class),
        row.http_status.map(|s| s.to_string()).unwrap_or_default(),
        text(&scrubber.text(&row.message)),
        row.count.to_string(),
        time(row.first_seen),
        time(row.last_seen),
    ];
    let mut line = cells.join(",");
    line.push_str("\r\n");
    line
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A text cell: quoted when it holds a separator, quote or line break; a leading `=`, `+`,
/// `-`, `@`, tab or CR gets a `'` so spreadsheet programs show it instead of evaluating it
/// (vendor error text is not ours to trust).
fn text(value: &str) -> String {
    let guarded;
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{value}");
        guarded.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ') {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_only_when_needed() {
        assert_eq!(text("plain"), "plain");
        assert_eq!(text("a,b"), "\"a,b\"");
        assert_eq!(text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(text("two\nlines"), "\"two\nlines\"");
        assert_eq!(text(" padded"), "\" padded\"");
        assert_eq!(text(""), "");
    }

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text("-1"), "'-1");
        assert_eq!(text("@cmd"), "'@cmd");
    }

    #[test]
    fn header_names_thirteen_columns() {
        assert_eq!(HEADER.trim_end().split(',').count(), 13);
        assert!(HEADER.starts_with("id,destination,destination_connection,source,"));
    }
}
