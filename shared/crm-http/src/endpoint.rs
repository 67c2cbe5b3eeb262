//! The bounded `endpoint` label of a request: its path without the query, ids replaced.

/// `path` as a template: the query dropped and every segment that is an id — all digits, a
/// UUID, or a long hexadecimal string — replaced by `{id}`, so that `/contacts/123?x=1` and
/// `/contacts/456` are one `/contacts/{id}`. A vendor whose ids look like words names its
/// template itself ([`crate::Call::endpoint`]).
pub fn template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    path.split('/')
        .map(|segment| if is_id(segment) { "{id}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

fn is_id(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let digits = segment.bytes().all(|b| b.is_ascii_digit());
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = segment.len() == 36
        && segment.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && hex(&segment.replace('-', ""));
    // 16+ hex digits, one of them a digit: hashes such as Pipedrive's 40-character field
    // keys; a resource name made only of the letters a-f has no digit.
    let long_hex =
        segment.len() >= 16 && hex(segment) && segment.bytes().any(|b| b.is_ascii_digit());
    digits || uuid || long_hex
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn ids_become_placeholders_and_names_stay() {
        assert_eq!(template("/contacts/123"), "/contacts/{id}");
        assert_eq!(
            template("/contacts/123/contactTags"),
            "/contacts/{id}/contactTags"
        );
        assert_eq!(template("/tags?search=a%20b&limit=100"), "/tags");
        assert_eq!(template("/contact/sync"), "/contact/sync");
        assert_eq!(
            template("/crm/v8/Contacts/5725767000000411001"),
            "/crm/v8/Contacts/{id}"
        );
        assert_eq!(
            template("/api/v2/deals/3fa85f64-5717-4562-b3fc-2c963f66afa6"),
            "/api/v2/deals/{id}"
        );
        assert_eq!(
            template("/personFields/0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"),
            "/personFields/{id}"
        );
        assert_eq!(template("/api/v2/persons/search"), "/api/v2/persons/search");
        assert_eq!(template("/"), "/");
    }
}
