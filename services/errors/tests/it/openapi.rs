//! The OpenAPI document and the web page: served without a token, and the document lists
//! exactly the routes the service answers.

use crate::app::spawn_app;
use serde_json::Value;
use std::collections::BTreeSet;

/// Every route of the admin API. A route added to the router without being documented (or
/// documented without existing) fails `the_openapi_document_lists_every_route`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/failures"),
    ("get", "/api/v1/failures.csv"),
    ("get", "/api/v1/failures/summary"),
    ("post", "/api/v1/failures/ignore"),
    ("post", "/api/v1/failures/retry"),
    ("get", "/api/v1/failures/{id}"),
    ("post", "/api/v1/failures/{id}/ignore"),
    ("post", "/api/v1/failures/{id}/retry"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/runs/{run_id}"),
    ("get", "/api/v1/openapi.json"),
];

fn concrete(path: &str) -> String {
    path.replace("{id}", "1").replace("{run_id}", "run_1")
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .expect("openapi");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("application/json"));
    let document: Value = response.json().await.expect("the document is JSON");
    assert!(document["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.0")));
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            assert!(
                operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            assert!(
                operation["responses"]["200"].is_object(),
                "{method} {path} documents no 200 answer"
            );
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes);

    // Every `$ref` points at something the document defines.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = format!(
            "/{}",
            &reference[..reference.find('"').expect("closing quote")]
        );
        assert!(
            document.pointer(&pointer).is_some(),
            "dangling reference #{pointer}"
        );
    }

    // The service answers each documented route: without a token every API route is refused
    // (401), where a path it does not serve would be 404.
    for (method, path) in ROUTES {
        let url = format!("{}{}", app.base, concrete(path));
        let request = match *method {
            "get" => app.http.get(&url),
            _ => app.http.post(&url),
        };
        let status = request.send().await.expect("request").status();
        let expected = if *path == "/api/v1/openapi.json" {
            200
        } else {
            401
        };
        assert_eq!(status, expected, "{method} {path}");
    }
    let unknown = app
        .http
        .get(format!("{}/api/v1/nothing-here", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn the_web_page_and_its_files_are_served_without_a_token() {
    let app = spawn_app().await;
    for (path, content_type, marker) in [
        ("/", "text/html", "id=\"token\""),
        ("/ui", "text/html", "Sync errors"),
        ("/ui/app.js", "text/javascript", "/api/v1/failures"),
        ("/ui/app.css", "text/css", "#filters"),
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with(content_type),
            "{path}: {headers:?}"
        );
        assert!(headers["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("script-src 'self'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path} lacks {marker:?}");
        assert!(
            !body.contains(&app.secrets.admin_token),
            "{path} carries the admin token"
        );
    }
    app.stop().await;
}
