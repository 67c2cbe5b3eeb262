//! Zoho CRM's contract, which every request to the emulated API is checked against: the
//! vendored v8 spec files (`specs/zoho-crm/v8.0`), amended where Zoho's documentation says
//! more, and the accounts server's token endpoint, which crm-oas does not describe, from
//! Zoho's OAuth documentation.

use axum::http::{header, HeaderMap};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use crate::kit::openapi::{ApiSpec, LazySpec, Place, Problem, ProblemKind, SpecViolation};

use super::state::MAX_RECORDS_PER_CALL;

macro_rules! zoho_documents {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../specs/zoho-crm/v8.0/", $name)))),*]
    };
}

/// The operations billsync calls are in these; the rest are what their `$ref`s reach.
const ENTRIES: [&str; 5] = [
    "record.json",
    "users.json",
    "layouts.json",
    "pipeline.json",
    "fields.json",
];

/// The v8 spec as the emulator checks requests against it.
pub(crate) static SPEC: LazySpec = LazySpec::new(|| {
    let documents = zoho_documents![
        "record.json",
        "users.json",
        "layouts.json",
        "pipeline.json",
        "common.json",
        "custom_views.json",
        "fields.json",
        "modules.json",
        "profiles.json",
        "related_lists.json",
        "tags.json",
    ];
    ApiSpec::new(&documents, &ENTRIES)
        // The spec's `iam-oauth2-schema` is OAuth 2, whose tokens are `Bearer`; Zoho
        // takes them as `Authorization: Zoho-oauthtoken <token>` (its OAuth docs).
        .with_oauth2_prefix("Zoho-oauthtoken ")
        // Insert, update and upsert take at most 100 records a call (Zoho's "Upsert
        // Records" docs; specs/README.md); the spec's `Body_Wrapper` sets no bound.
        .amend(
            "record.json",
            "/components/schemas/Body_Wrapper/properties/data",
            |data| data["maxItems"] = json!(MAX_RECORDS_PER_CALL),
        )
        // One schema serves both the fields Zoho lists and the field a request creates, so
        // it marks ~70 properties that only Zoho sets (`id`, `api_name`, `created_time`...)
        // as required. Zoho's "Create Custom Fields" docs require `field_label` and
        // `data_type` of a new field; the others are optional or answered by Zoho.
        .amend(
            "fields.json",
            "/components/schemas/fields/required",
            |required| *required = json!(["field_label", "data_type"]),
        )
});

/// `POST {accounts}/oauth/v2/token` to refresh an access token, as Zoho's docs ("Refresh
/// Access Tokens", API v8) give it, since crm-oas has no accounts server: `grant_type=
/// refresh_token`, `client_id`, `client_secret` and `refresh_token`, all required, nothing
/// else. The docs put them in the query; OAuth 2 (RFC 6749 §6) in a form body, which Zoho
/// takes too: either is valid, each parameter once.
///
/// Answers the parameters, or what is wrong with the request.
pub(crate) fn check_token_request(
    method: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, SpecViolation> {
    let mut problems = Vec::new();
    let mut problem = |place: Place, at: &str, kind: ProblemKind, detail: String| {
        problems.push(Problem {
            place,
            at: at.to_string(),
            kind,
            detail,
        });
    };
    if method != "POST" {
        problem(
            Place::Route,
            "",
            ProblemKind::UnknownOperation,
            "the token endpoint takes POST".into(),
        );
    }
    let mut given = Map::new();
    let mut add =
        |place: Place, pairs: &[u8], problem: &mut dyn FnMut(Place, &str, ProblemKind, String)| {
            for (key, value) in form_urlencoded::parse(pairs) {
                if given
                    .insert(key.to_string(), Value::String(value.into_owned()))
                    .is_some()
                {
                    problem(
                        place,
                        &key,
                        ProblemKind::TooLarge,
                        "given more than once".into(),
                    );
                }
            }
        };
    add(Place::Query, query.as_bytes(), &mut problem);
    if !body.iter().all(u8::is_ascii_whitespace) {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if content_type == "application/x-www-form-urlencoded" {
            add(Place::Body, body, &mut problem);
        } else {
            problem(
                Place::Body,
                "",
                ProblemKind::ContentType,
                format!("content type {content_type:?} is not application/x-www-form-urlencoded"),
            );
        }
    }
    let schema = json!({
        "type": "object",
        "required": ["grant_type", "client_id", "client_secret", "refresh_token"],
        "additionalProperties": false,
        "properties": {
            "grant_type": {"type": "string", "enum": ["refresh_token"]},
            "client_id": {"type": "string", "minLength": 1},
            "client_secret": {"type": "string", "minLength": 1},
            "refresh_token": {"type": "string", "minLength": 1},
        },
    });
    let value = Value::Object(given);
    problems.extend(SPEC.get().check_value(&schema, &value, Place::Body));
    if problems.is_empty() {
        let Value::Object(given) = value else {
            unreachable!("built as an object")
        };
        return Ok(given
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
            .collect());
    }
    Err(SpecViolation {
        method: method.to_string(),
        path: "/oauth/v2/token".into(),
        operation: Some("refreshAccessToken (POST /oauth/v2/token, Zoho's OAuth docs)".into()),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::openapi::{problems_of, SpecRequest};

    fn zoho_headers(json: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "Zoho-oauthtoken 1000.abc".parse().unwrap(),
        );
        if json {
            headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        }
        headers
    }

    fn check(method: &str, target: &str, body: &str) -> Result<(), SpecViolation> {
        SPEC.get()
            .check_target(method, target, &zoho_headers(!body.is_empty()), body)
    }

    /// The requests billsync's Zoho client sends, as it sends them.
    #[test]
    fn the_calls_billsync_makes_are_valid() {
        let upsert = json!({
            "data": [{"Last_Name": "Doe", "Email": "a@b.example", "Account_Name": {"id": "1"}}],
            "duplicate_check_fields": ["Email"],
            "trigger": [],
        });
        check("POST", "/crm/v8/Contacts/upsert", &upsert.to_string()).unwrap();
        check("GET", "/crm/v8/Contacts/search?email=a%40b.example", "").unwrap();
        check(
            "GET",
            "/crm/v8/Deals/search?criteria=%28Billing_Id%3Aequals%3Ax%29",
            "",
        )
        .unwrap();
        check("GET", "/crm/v8/Deals/5725767000000411001", "").unwrap();
        check("DELETE", "/crm/v8/Deals/5725767000000411001", "").unwrap();
        check("GET", "/crm/v8/users?type=ActiveUsers", "").unwrap();
        check("GET", "/crm/v8/settings/layouts?module=Deals", "").unwrap();
        check(
            "GET",
            "/crm/v8/settings/pipeline?layout_id=5725767000000091023",
            "",
        )
        .unwrap();
    }

    #[test]
    fn more_than_100_records_are_refused() {
        let records: Vec<Value> = (0..101)
            .map(|i| json!({"Last_Name": format!("n{i}")}))
            .collect();
        let body = json!({"data": records}).to_string();
        assert_eq!(
            problems_of(check("POST", "/crm/v8/Contacts/upsert", &body)),
            [(Place::Body, "/data".into(), ProblemKind::TooLarge)]
        );
    }

    #[test]
    fn invalid_calls_are_refused() {
        assert_eq!(
            problems_of(check("GET", "/crm/v8/settings/layouts", "")),
            [(Place::Query, "module".into(), ProblemKind::Missing)]
        );
        assert_eq!(
            problems_of(check("GET", "/crm/v8/users?type=Everyone&sort=name", "")),
            [
                (Place::Query, "sort".into(), ProblemKind::Unknown),
                (Place::Query, "type".into(), ProblemKind::NotInEnum),
            ]
        );
        assert_eq!(
            problems_of(check("GET", "/crm/v8/Contacts/search?per_page=many", "")),
            [(Place::Query, "per_page".into(), ProblemKind::WrongType)]
        );
        assert_eq!(
            problems_of(check(
                "POST",
                "/crm/v8/Contacts/upsert",
                r#"{"data": {"Last_Name": "x"}, "trigger": "workflow"}"#
            )),
            [
                (Place::Body, "/data".into(), ProblemKind::WrongType),
                (Place::Body, "/trigger".into(), ProblemKind::WrongType),
            ]
        );
        assert_eq!(
            problems_of(check("PATCH", "/crm/v8/Contacts/upsert", "")),
            [(Place::Route, String::new(), ProblemKind::UnknownOperation)]
        );
        assert_eq!(
            problems_of(check("GET", "/crm/v2/Contacts", "")),
            [(Place::Route, String::new(), ProblemKind::UnknownOperation)]
        );
        let bearer = {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, "Bearer 1000.abc".parse().unwrap());
            headers
        };
        let result = SPEC.get().check(&SpecRequest {
            method: "GET",
            path: "/crm/v8/users",
            query: "",
            headers: &bearer,
            body: b"",
        });
        assert_eq!(
            problems_of(result),
            [(Place::Header, "authorization".into(), ProblemKind::Missing)]
        );
    }

    #[test]
    fn the_token_request_is_checked_against_the_oauth_docs() {
        let form = {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                "application/x-www-form-urlencoded".parse().unwrap(),
            );
            headers
        };
        let full = "grant_type=refresh_token&client_id=c&client_secret=s&refresh_token=r";
        let grant = check_token_request("POST", "", &form, full.as_bytes()).unwrap();
        assert_eq!(grant["refresh_token"], "r");
        check_token_request("POST", full, &HeaderMap::new(), b"").unwrap();

        assert_eq!(
            problems_of(check_token_request(
                "POST",
                "client_id=c",
                &form,
                b"grant_type=authorization_code&client_id=c&client_secret=s&scope=x"
            )),
            [
                (Place::Body, "/grant_type".into(), ProblemKind::NotInEnum),
                (Place::Body, "/refresh_token".into(), ProblemKind::Missing),
                (Place::Body, "/scope".into(), ProblemKind::Unknown),
                (Place::Body, "client_id".into(), ProblemKind::TooLarge),
            ]
        );
        // A body not sent as a form is not read: its parameters are missing too.
        assert!(problems_of(check_token_request(
            "POST",
            "",
            &HeaderMap::new(),
            full.as_bytes()
        ))
        .contains(&(Place::Body, String::new(), ProblemKind::ContentType)));
    }
}
