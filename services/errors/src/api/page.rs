//! The operator's web page and the OpenAPI document: static files embedded in the binary.
//!
//! These routes need no token: the page asks for it and sends it with each API call, and the
//! document describes the API without revealing anything about the data behind it.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// The admin API, described by hand: it is small, and a generator would add a dependency
/// for every handler and parameter type.
pub const OPENAPI_JSON: &str = include_str!("assets/openapi.json");

/// Only this origin's script, style and API; the page is never framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
    frame-ancestors 'none'";

/// `GET /` and `GET /ui`.
pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /ui/app.css`.
pub async fn style() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Response {
    asset(OPENAPI_JSON, "application/json")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so an upgrade never leaves an old script running.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_json_with_paths() {
        let document: serde_json::Value =
            serde_json::from_str(OPENAPI_JSON).expect("the OpenAPI document is valid JSON");
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")));
        assert!(document["paths"]
            .as_object()
            .is_some_and(|paths| !paths.is_empty()));
    }

    #[test]
    fn the_page_loads_only_its_own_script_and_style() {
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"href="/ui/app.css""#));
        // No inline script or handler: the content security policy would block it.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains("onclick="));
        // Values from the API are never parsed as HTML.
        assert!(!APP_JS.contains("innerHTML"));
    }
}
