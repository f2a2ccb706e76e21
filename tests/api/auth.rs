use reqwest::Method;
use vigil::api::{App, BuildError};
use vigil::config::{self, Scope, Settings, TokenSettings, hash_token};

use crate::support::{TestApp, TestDb, error_code, secret_for};

/// Every guarded route, with a body that gets past its extractors, and what it demands
/// (`None`: any valid token). The PUT comes first so that the GETs find the asset.
pub fn guarded_routes() -> Vec<(Method, &'static str, Option<Scope>)> {
    vec![
        (Method::PUT, "/v1/assets/web-01", Some(Scope::Ingest)),
        (Method::GET, "/v1/assets", None),
        (Method::GET, "/v1/assets/web-01", None),
        (Method::GET, "/v1/config", Some(Scope::Admin)),
        (Method::GET, "/v1/models", None),
        (Method::GET, "/v1/models/1", None),
        (Method::GET, "/v1/assets/web-01/samples", None),
        (Method::GET, "/v1/assets/web-01/series", None),
        (Method::GET, "/v1/incidents", None),
        (Method::POST, "/v1/samples", Some(Scope::Ingest)),
        (Method::POST, "/api/v1/write", Some(Scope::Ingest)),
        (Method::POST, "/v1/incidents", Some(Scope::Ingest)),
        (Method::POST, "/v1/incidents/1/resolve", Some(Scope::Ingest)),
        (Method::POST, "/v1/alertmanager", Some(Scope::Ingest)),
        (Method::POST, "/v1/score", Some(Scope::Score)),
        (Method::POST, "/v1/score/batch", Some(Scope::Score)),
        (Method::GET, "/v1/assets/web-01/score", Some(Scope::Score)),
        (Method::POST, "/v1/models/1/activate", Some(Scope::Admin)),
        (Method::POST, "/v1/models/train", Some(Scope::Admin)),
        (Method::POST, "/v1/models/1/promote", Some(Scope::Admin)),
        (Method::POST, "/v1/models/1/drop", Some(Scope::Admin)),
        (Method::GET, "/v1/jobs", None),
        (Method::GET, "/v1/jobs/1", None),
        (Method::GET, "/v1/alerts", None),
        (Method::GET, "/v1/alerts/1", None),
        (Method::POST, "/v1/alerts/1/feedback", Some(Scope::Feedback)),
        (Method::GET, "/v1/policy/thresholds", None),
        (Method::PUT, "/v1/policy/thresholds/web", Some(Scope::Admin)),
        (
            Method::POST,
            "/v1/policy/thresholds/web/revert",
            Some(Scope::Admin),
        ),
        (
            Method::POST,
            "/v1/incidents/1/outcome",
            Some(Scope::Feedback),
        ),
        (Method::GET, "/v1/actions", None),
        (Method::GET, "/v1/actions/1", None),
        (Method::POST, "/v1/actions/1/approve", Some(Scope::Admin)),
        (Method::POST, "/v1/actions/1/reject", Some(Scope::Admin)),
        (Method::GET, "/v1/policy/actions", None),
        (Method::GET, "/v1/policy/kill-switch", None),
        (Method::PUT, "/v1/policy/kill-switch", Some(Scope::Admin)),
    ]
}

async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    if method == Method::PUT {
        request = request.json(&serde_json::json!({ "class": "web" }));
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_guarded_route_refuses_a_missing_or_wrong_token() {
    let app = TestApp::with_tokens().await;
    for (method, path, _) in guarded_routes() {
        let response = call(&app, &method, path, None).await;
        assert_eq!(response.status(), 401, "{method} {path} without a token");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_code(response).await, "missing_token");

        let response = call(&app, &method, path, Some("not-a-token")).await;
        assert_eq!(response.status(), 401, "{method} {path} with a wrong token");
        assert_eq!(error_code(response).await, "invalid_token");
    }
}

#[tokio::test]
async fn every_guarded_route_checks_the_scope() {
    let app = TestApp::with_tokens().await;
    for (method, path, needed) in guarded_routes() {
        for scope in Scope::ALL {
            let response = call(&app, &method, path, Some(&secret_for(scope))).await;
            let allowed = match needed {
                None => true,
                Some(needed) => scope == needed || scope == Scope::Admin,
            };
            if allowed {
                assert!(
                    response.status() != 401 && response.status() != 403,
                    "{method} {path} with {scope}: {}",
                    response.status()
                );
            } else {
                assert_eq!(response.status(), 403, "{method} {path} with {scope}");
                assert_eq!(error_code(response).await, "insufficient_scope");
            }
        }
    }
}

#[tokio::test]
async fn health_ready_and_metrics_need_no_token() {
    let app = TestApp::with_tokens().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn with_auth_off_routes_need_no_token() {
    let app = TestApp::spawn().await;
    for (method, path, _) in guarded_routes() {
        let response = call(&app, &method, path, None).await;
        let status = response.status();
        assert!(status != 401 && status != 403, "{method} {path}: {status}");
    }
}

#[tokio::test]
async fn exposed_address_without_tokens_is_refused() {
    let db = TestDb::migrated().await;
    let settings = Settings {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Settings::default()
    };
    let err = App::build(settings.clone(), db.store.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::Config(config::Error::ExposedWithoutAuth(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to listen on 0.0.0.0:0"));

    let mut with_token = settings;
    with_token.auth.tokens.push(TokenSettings {
        name: "ops".into(),
        sha256: hash_token("secret"),
        scopes: vec![Scope::Admin],
    });
    assert!(App::build(with_token, db.store.clone()).await.is_ok());
}

#[tokio::test]
async fn config_route_masks_secrets() {
    let app = TestApp::spawn_with(|s| {
        s.database_url = Some("postgres://vigil:hunter2@db.example/vigil".into());
        s.auth.tokens.push(TokenSettings {
            name: "ops".into(),
            sha256: hash_token("secret"),
            scopes: vec![Scope::Admin],
        });
    })
    .await;
    let response = app
        .client
        .get(app.url("/v1/config"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains(&hash_token("secret")), "{text}");
    assert!(text.contains("****"));
}
