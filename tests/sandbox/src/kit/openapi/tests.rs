//! The checker on a small two-document spec written for the purpose: every kind of problem
//! it reports, and the valid requests it must let through. The vendors' own contracts are
//! tested in `zoho::contract` and `pipedrive::contract`.

use axum::http::{header, HeaderMap, HeaderValue};
use serde_json::json;

use super::*;

const MAIN: &str = r##"{
  "openapi": "3.0.0",
  "servers": [{"url": "https://api.example.com/v2"}],
  "security": [{"key": []}, {"oauth": []}],
  "components": {
    "securitySchemes": {
      "key": {"type": "apiKey", "in": "header", "name": "X-Api-Token"},
      "oauth": {"type": "oauth2", "flows": {}}
    },
    "parameters": {
      "limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}}
    }
  },
  "paths": {
    "/things": {
      "post": {
        "operationId": "addThings",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "./shared.json#/components/schemas/Batch"}}}}
      }
    },
    "/things/search": {
      "get": {
        "operationId": "searchThings",
        "parameters": [
          {"name": "term", "in": "query", "required": true, "schema": {"type": "string", "minLength": 2}},
          {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "won"]}},
          {"name": "exact", "in": "query", "schema": {"type": "boolean"}},
          {"name": "ids", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}},
          {"$ref": "#/components/parameters/limit"}
        ]
      }
    },
    "/things/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "get": {"operationId": "getThing"},
      "patch": {
        "operationId": "updateThing",
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "./shared.json#/components/schemas/Thing"}}}}
      }
    },
    "/token": {
      "post": {
        "operationId": "token",
        "security": [],
        "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {
          "type": "object", "required": ["grant"], "additionalProperties": false,
          "properties": {"grant": {"type": "string", "enum": ["refresh"]}, "ttl": {"type": "integer"}}
        }}}}
      }
    }
  }
}"##;

const SHARED: &str = r##"{
  "openapi": "3.0.0",
  "paths": {"/not/an/entry": {"get": {"operationId": "hidden"}}},
  "components": {"schemas": {
    "Batch": {"type": "object", "required": ["data"], "properties": {
      "data": {"type": "array", "maxItems": 2, "items": {"$ref": "#/components/schemas/Thing"}},
      "mode": {"oneOf": [{"type": "string", "enum": ["fast", "safe"]}, {"type": "integer"}]},
      "tag": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    }},
    "Named": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 10}}},
    "Thing": {"allOf": [{"$ref": "#/components/schemas/Named"}, {
      "type": "object", "additionalProperties": false,
      "properties": {
        "name": {"type": "string"},
        "value": {"type": "number", "nullable": true, "minimum": 0},
        "due": {"type": "string", "format": "date"},
        "custom": {"type": "object", "additionalProperties": {"type": "string"}}
      }
    }]}
  }}
}"##;

fn spec() -> ApiSpec {
    ApiSpec::new(
        &[("main.json", MAIN), ("shared.json", SHARED)],
        &["main.json"],
    )
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn check(method: &str, target: &str, headers: &HeaderMap, body: &str) -> Result<(), SpecViolation> {
    spec().check_target(method, target, headers, body)
}

fn json_headers() -> HeaderMap {
    headers(&[("x-api-token", "t"), ("content-type", "application/json")])
}

#[test]
fn valid_requests_pass() {
    let h = json_headers();
    check("POST", "/v2/things", &h, r#"{"data": [{"name": "a", "value": null, "due": "2026-12-07", "custom": {"k": "v"}}], "mode": 3, "tag": ["x"]}"#).unwrap();
    check(
        "GET",
        "/v2/things/search?term=ab&status=won&exact=true&ids=1,2&limit=500",
        &h,
        "",
    )
    .unwrap();
    check("GET", "/v2/things/search?term=ab&ids=1&ids=2", &h, "").unwrap();
    check(
        "PATCH",
        "/v2/things/7",
        &h,
        r#"{"name": "b", "value": 2.5}"#,
    )
    .unwrap();
    check("GET", "/v2/things/7", &h, "").unwrap();
    let oauth = headers(&[("authorization", "Bearer abc")]);
    check("GET", "/v2/things/7", &oauth, "").unwrap();
    let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    check("POST", "/v2/token", &form, "grant=refresh&ttl=60").unwrap();
}

#[test]
fn an_unknown_path_or_method_has_no_operation() {
    let h = json_headers();
    for (method, path) in [
        ("GET", "/v2/widgets"),
        ("DELETE", "/v2/things/7"),
        ("GET", "/things/7"),
        ("GET", "/v2/not/an/entry"),
    ] {
        let violation = check(method, path, &h, "").unwrap_err();
        assert_eq!(violation.operation, None, "{method} {path}");
        assert_eq!(violation.problems[0].kind, ProblemKind::UnknownOperation);
    }
}

#[test]
fn literal_segments_win_over_templates() {
    // `/things/search` is the search, whose `term` is missing, not the thing "search"
    // (whose id would be the wrong type).
    let violation = check("GET", "/v2/things/search", &json_headers(), "").unwrap_err();
    assert_eq!(
        violation.operation.as_deref(),
        Some("searchThings (GET /v2/things/search)")
    );
    assert_eq!(
        problems_of::<()>(Err(violation)),
        [(Place::Query, "term".into(), ProblemKind::Missing)]
    );
}

#[test]
fn a_missing_required_field_is_reported_where_it_is() {
    let result = check(
        "POST",
        "/v2/things",
        &json_headers(),
        r#"{"data": [{"name": "a"}, {"value": 1}]}"#,
    );
    assert_eq!(
        problems_of(result),
        [(Place::Body, "/data/1/name".into(), ProblemKind::Missing)]
    );
    let result = check("POST", "/v2/things", &json_headers(), r#"{"mode": "fast"}"#);
    assert_eq!(
        problems_of(result),
        [(Place::Body, "/data".into(), ProblemKind::Missing)]
    );
}

#[test]
fn wrong_types_are_reported() {
    let result = check(
        "POST",
        "/v2/things",
        &json_headers(),
        r#"{"data": [{"name": 5, "value": "5", "custom": {"k": 1}}]}"#,
    );
    assert_eq!(
        problems_of(result),
        [
            (
                Place::Body,
                "/data/0/custom/k".into(),
                ProblemKind::WrongType
            ),
            // `name` is checked once per allOf part that declares it.
            (Place::Body, "/data/0/name".into(), ProblemKind::WrongType),
            (Place::Body, "/data/0/name".into(), ProblemKind::WrongType),
            (Place::Body, "/data/0/value".into(), ProblemKind::WrongType),
        ]
    );
    let result = check("GET", "/v2/things/seven", &json_headers(), "");
    assert_eq!(
        problems_of(result),
        [(Place::Path, "id".into(), ProblemKind::WrongType)]
    );
    let result = check(
        "GET",
        "/v2/things/search?term=ab&exact=1&limit=ten",
        &json_headers(),
        "",
    );
    assert_eq!(
        problems_of(result),
        [
            (Place::Query, "exact".into(), ProblemKind::WrongType),
            (Place::Query, "limit".into(), ProblemKind::WrongType),
        ]
    );
}

#[test]
fn null_is_refused_unless_nullable() {
    let result = check(
        "PATCH",
        "/v2/things/1",
        &json_headers(),
        r#"{"name": null, "value": null}"#,
    );
    assert_eq!(
        problems_of(result),
        [
            (Place::Body, "/name".into(), ProblemKind::WrongType),
            (Place::Body, "/name".into(), ProblemKind::WrongType),
        ]
    );
}

#[test]
fn unknown_query_parameters_and_properties_are_reported() {
    let result = check(
        "GET",
        "/v2/things/search?term=ab&sort=asc",
        &json_headers(),
        "",
    );
    assert_eq!(
        problems_of(result),
        [(Place::Query, "sort".into(), ProblemKind::Unknown)]
    );
    let result = check(
        "PATCH",
        "/v2/things/1",
        &json_headers(),
        r#"{"name": "a", "colour": "red"}"#,
    );
    assert_eq!(
        problems_of(result),
        [(Place::Body, "/colour".into(), ProblemKind::Unknown)]
    );
}

#[test]
fn too_many_records_and_out_of_range_values_are_reported() {
    let result = check(
        "POST",
        "/v2/things",
        &json_headers(),
        r#"{"data": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}"#,
    );
    assert_eq!(
        problems_of(result),
        [(Place::Body, "/data".into(), ProblemKind::TooLarge)]
    );
    let result = check(
        "PATCH",
        "/v2/things/1",
        &json_headers(),
        r#"{"name": "abcdefghijk", "value": -1}"#,
    );
    assert_eq!(
        problems_of(result),
        [
            (Place::Body, "/name".into(), ProblemKind::TooLarge),
            (Place::Body, "/value".into(), ProblemKind::TooSmall),
        ]
    );
    let result = check(
        "GET",
        "/v2/things/search?term=a&limit=501",
        &json_headers(),
        "",
    );
    assert_eq!(
        problems_of(result),
        [
            (Place::Query, "limit".into(), ProblemKind::TooLarge),
            (Place::Query, "term".into(), ProblemKind::TooSmall),
        ]
    );
}

#[test]
fn enums_formats_and_alternatives_are_checked() {
    let result = check(
        "GET",
        "/v2/things/search?term=ab&status=lost",
        &json_headers(),
        "",
    );
    assert_eq!(
        problems_of(result),
        [(Place::Query, "status".into(), ProblemKind::NotInEnum)]
    );
    let result = check(
        "PATCH",
        "/v2/things/1",
        &json_headers(),
        r#"{"name": "a", "due": "07/12/2026"}"#,
    );
    assert_eq!(
        problems_of(result),
        [(Place::Body, "/due".into(), ProblemKind::BadFormat)]
    );
    let result = check(
        "POST",
        "/v2/things",
        &json_headers(),
        r#"{"data": [], "mode": "slow", "tag": 3}"#,
    );
    assert_eq!(
        problems_of(result),
        [
            (Place::Body, "/mode".into(), ProblemKind::NoMatch),
            (Place::Body, "/tag".into(), ProblemKind::NoMatch),
        ]
    );
}

#[test]
fn credentials_content_type_and_body_presence_are_checked() {
    let result = check("GET", "/v2/things/1", &HeaderMap::new(), "");
    assert_eq!(
        problems_of(result),
        [(Place::Header, "authorization".into(), ProblemKind::Missing)]
    );
    let wrong_scheme = headers(&[("authorization", "Zoho-oauthtoken abc")]);
    assert!(check("GET", "/v2/things/1", &wrong_scheme, "").is_err());
    let text = headers(&[("x-api-token", "t"), ("content-type", "text/plain")]);
    let result = check("PATCH", "/v2/things/1", &text, r#"{"name": "a"}"#);
    assert_eq!(
        problems_of(result),
        [(Place::Body, String::new(), ProblemKind::ContentType)]
    );
    let result = check("GET", "/v2/things/1", &json_headers(), r#"{"name": "a"}"#);
    assert_eq!(
        problems_of(result),
        [(Place::Body, String::new(), ProblemKind::ContentType)]
    );
    let result = check("POST", "/v2/things", &json_headers(), "{");
    assert_eq!(
        problems_of(result),
        [(Place::Body, String::new(), ProblemKind::Unreadable)]
    );
    let result = check("POST", "/v2/things", &json_headers(), "");
    assert_eq!(
        problems_of(result),
        [(Place::Body, String::new(), ProblemKind::Missing)]
    );
}

#[test]
fn form_bodies_are_read_by_their_schema() {
    let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    let result = check("POST", "/v2/token", &form, "grant=code&ttl=soon&scope=all");
    assert_eq!(
        problems_of(result),
        [
            (Place::Body, "/grant".into(), ProblemKind::NotInEnum),
            (Place::Body, "/scope".into(), ProblemKind::Unknown),
            (Place::Body, "/ttl".into(), ProblemKind::WrongType),
        ]
    );
}

#[test]
fn amendments_change_the_loaded_copy() {
    let spec = spec().amend(
        "shared.json",
        "/components/schemas/Batch/properties/data",
        |data| {
            data["maxItems"] = json!(1);
        },
    );
    let h = json_headers();
    let request = SpecRequest {
        method: "POST",
        path: "/v2/things",
        query: "",
        headers: &h,
        body: br#"{"data": [{"name": "a"}, {"name": "b"}]}"#,
    };
    let violation = spec.check(&request).unwrap_err();
    assert_eq!(violation.problems[0].kind, ProblemKind::TooLarge);
    assert_eq!(
        violation.to_string(),
        "POST /v2/things (addThings (POST /v2/things)): body /data: 2 items, at most 1"
    );
}
