//! Pipedrive's contract, which every request to the emulated API is checked against: the
//! vendored v2 spec (`specs/pipedrive/pipedrive-v2-openapi.yml`, paths under `/api/v2`) and
//! v1 (`-v1-`, under `/v1`, for what v2 lacks), amended where Pipedrive's documented
//! behaviour differs from its spec (specs/README.md, "Spec quirks").

use serde_json::json;

use crate::kit::openapi::{ApiSpec, LazySpec};

/// Both specs as the emulator checks requests against them.
pub(crate) static SPEC: LazySpec = LazySpec::new(|| {
    let v2 = "pipedrive-v2-openapi.yml";
    let v1 = "pipedrive-v1-openapi.yml";
    let documents = [
        (
            v2,
            include_str!("../../specs/pipedrive/pipedrive-v2-openapi.yml"),
        ),
        (
            v1,
            include_str!("../../specs/pipedrive/pipedrive-v1-openapi.yml"),
        ),
    ];
    let body = |path: &str| {
        format!(
            "/paths/{}/post/requestBody/content/application~1json/schema",
            path.replace('/', "~1")
        )
    };
    ApiSpec::new(&documents, &[v2, v1])
        // `POST /organizations` lists `title` as required, but the property is `name`,
        // which the API requires.
        .amend(
            v2,
            &format!("{}/required", body("/organizations")),
            |required| {
                *required = json!(["name"]);
            },
        )
        // `POST /persons` marks nothing required, but the API needs `name`.
        .amend(v2, &body("/persons"), |schema| {
            schema["required"] = json!(["name"]);
        })
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::openapi::{problems_of, Place, ProblemKind, SpecViolation};
    use axum::http::{header, HeaderMap};

    fn check(method: &str, target: &str, body: &str) -> Result<(), SpecViolation> {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-token", "token".parse().unwrap());
        if !body.is_empty() {
            headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        }
        SPEC.get().check_target(method, target, &headers, body)
    }

    /// The requests billsync's Pipedrive client sends, as it sends them.
    #[test]
    fn the_calls_billsync_makes_are_valid() {
        let person = json!({
            "name": "Ada", "emails": [{"value": "a@b.example", "primary": true, "label": "work"}],
            "org_id": 3, "custom_fields": {"0123456789abcdef0123456789abcdef01234567": "cus_1"},
        });
        check("POST", "/api/v2/persons", &person.to_string()).unwrap();
        check("PATCH", "/api/v2/persons/7", r#"{"name": "Ada B"}"#).unwrap();
        check("GET", "/api/v2/persons/7", "").unwrap();
        check(
            "GET",
            "/api/v2/persons/search?term=a%40b.example&fields=email&exact_match=true",
            "",
        )
        .unwrap();
        check("POST", "/api/v2/organizations", r#"{"name": "Acme"}"#).unwrap();
        let deal = json!({"title": "sub_1", "value": 10.5, "currency": "EUR", "status": "lost",
            "lost_reason": "cancelled", "person_id": 7, "pipeline_id": 1, "stage_id": 2,
            "expected_close_date": "2026-12-31"});
        check("POST", "/api/v2/deals", &deal.to_string()).unwrap();
        check("GET", "/api/v2/personFields?limit=500", "").unwrap();
        check(
            "POST",
            "/api/v2/dealFields",
            r#"{"field_name": "MRR", "field_type": "monetary"}"#,
        )
        .unwrap();
        check("GET", "/api/v2/stages?pipeline_id=1&limit=500", "").unwrap();
        check("POST", "/v1/notes", r#"{"content": "hi", "person_id": 7}"#).unwrap();
        check("GET", "/v1/users", "").unwrap();
    }

    #[test]
    fn the_documented_quirks_are_applied() {
        assert_eq!(
            problems_of(check(
                "POST",
                "/api/v2/organizations",
                r#"{"address": {"value": "x"}}"#
            )),
            [(Place::Body, "/name".into(), ProblemKind::Missing)]
        );
        assert_eq!(
            problems_of(check("POST", "/api/v2/persons", r#"{"emails": []}"#)),
            [(Place::Body, "/name".into(), ProblemKind::Missing)]
        );
    }

    #[test]
    fn invalid_calls_are_refused() {
        // v2 is strict: numbers are not read from strings, booleans are true/false.
        assert_eq!(
            problems_of(check(
                "POST",
                "/api/v2/deals",
                r#"{"title": "t", "value": "10", "person_id": "7"}"#
            )),
            [
                (Place::Body, "/person_id".into(), ProblemKind::WrongType),
                (Place::Body, "/value".into(), ProblemKind::WrongType),
            ]
        );
        assert_eq!(
            problems_of(check(
                "GET",
                "/api/v2/persons/search?term=x&fields=mail&exact_match=yes&sort=id",
                ""
            )),
            [
                (Place::Query, "exact_match".into(), ProblemKind::WrongType),
                (Place::Query, "fields".into(), ProblemKind::NotInEnum),
                (Place::Query, "sort".into(), ProblemKind::Unknown),
            ]
        );
        assert_eq!(
            problems_of(check("GET", "/api/v2/persons/search", "")),
            [(Place::Query, "term".into(), ProblemKind::Missing)]
        );
        assert_eq!(
            problems_of(check("PUT", "/api/v2/persons/7", r#"{"name": "x"}"#)),
            [(Place::Route, String::new(), ProblemKind::UnknownOperation)]
        );
        // Persons are v2 only.
        assert_eq!(
            problems_of(check("POST", "/v1/persons", r#"{"name": "x"}"#)),
            [(Place::Route, String::new(), ProblemKind::UnknownOperation)]
        );
    }
}
