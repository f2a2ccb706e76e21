//! `GET /openapi.json`: the document covers every route, and only real ones.

use reqwest::Method;
use serde_json::Value;

use crate::auth::guarded_routes;
use crate::support::TestApp;

/// Whether a concrete path (`/v1/assets/web-01`) fits a template (`/v1/assets/{name}`).
fn fits(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_covers_every_route_and_only_real_ones() {
    let app = TestApp::with_tokens().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200, "the document is open");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    // Every guarded route the auth tests know is documented, with the access it enforces.
    let mut guarded_documented = 0;
    for (method, path, scope) in guarded_routes() {
        let (template, item) = paths
            .iter()
            .find(|(t, item)| fits(t, path) && item.get(method.as_str().to_lowercase()).is_some())
            .unwrap_or_else(|| panic!("{method} {path} is not in /openapi.json"));
        let op = &item[method.as_str().to_lowercase()];
        let access = scope.map_or("any token", |s| s.as_str());
        assert_eq!(op["x-vigil-access"], access, "{method} {template}");
        guarded_documented += 1;
    }
    // ...and every documented route is real (no 404 no_route, no 405), and every guarded one
    // is in the auth tests' table (so auth is tested on it).
    let mut operations = 0;
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let path = template
                .replace("{name}", "web-01")
                .replace("{id}", "1")
                .replace("{class}", "web");
            let method: Method = method.to_uppercase().parse().unwrap();
            let response = app
                .client
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let code = body["code"].as_str().map(str::to_owned);
            assert!(
                status != 405 && code.as_deref() != Some("no_route"),
                "{method} {template}: {status} {code:?}"
            );
            if op["security"] != serde_json::json!([]) {
                assert!(
                    guarded_routes()
                        .iter()
                        .any(|(m, p, _)| *m == method && fits(template, p)),
                    "{method} {template} is guarded but not in the auth tests' table"
                );
            }
        }
    }
    assert!(
        operations > guarded_documented,
        "open routes are documented too"
    );

    // Schemas come from the wire types: the scoring body and answer, every $ref resolves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let request = &schemas["ScoreRequest"];
    assert_eq!(request["required"], serde_json::json!(["asset", "window"]));
    let answer = schemas["ScoreAnswer"]["properties"].as_object().unwrap();
    for field in [
        "model",
        "threshold",
        "alert",
        "probability",
        "drivers",
        "cold_start",
    ] {
        assert!(answer.contains_key(field), "ScoreAnswer lacks {field}");
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").expect(&r);
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
}
