//! Generated inputs on every write route: valid bodies mutated at random (bytes flipped,
//! dropped, duplicated, JSON punctuation and odd values inserted, truncations). Nothing may
//! answer 5xx, and every error is the JSON `{code, message}` body.

use rand08::{Rng, SeedableRng};
use serde_json::json;

use vigil::api::input::parse_json;
use vigil::api::score::ScoreRequest;

use crate::support::{TestApp, error_code};

/// Requests per route: the valid body, then mutations of it.
const ROUNDS: usize = 300;

/// `body` with one to three random mutations.
fn mutate(rng: &mut rand08::rngs::SmallRng, body: &[u8]) -> Vec<u8> {
    let tokens: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"-",
        b"1e999",
        b"null",
        b"\\u0000",
        b"-6000000000000",
        b"\"\xff\xfe\"",
        b"99999999999999999999",
        b"true",
        b"[[[[",
    ];
    let mut body = body.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        if body.is_empty() {
            break;
        }
        let at = rng.gen_range(0..body.len());
        match rng.gen_range(0..5) {
            0 => body[at] = rng.r#gen(),
            1 => {
                body.remove(at);
            }
            2 => body.insert(at, body[at]),
            3 => {
                let token = tokens[rng.gen_range(0..tokens.len())];
                body.splice(at..at, token.iter().copied());
            }
            _ => body.truncate(at),
        }
    }
    body
}

#[tokio::test]
async fn mutated_bodies_on_every_write_route_never_get_a_5xx() {
    let app = TestApp::spawn().await;
    // Something for the id routes to find.
    let incident = app
        .post_json(
            "/v1/incidents",
            &json!({ "asset": "pump-1", "kind": "leak", "started_at": "2026-11-20T08:00:00Z" }),
        )
        .await;
    assert_eq!(incident.status(), 201);
    let now = chrono::Utc::now().timestamp();
    let routes: Vec<(reqwest::Method, &str, serde_json::Value)> = vec![
        (
            reqwest::Method::POST,
            "/v1/samples",
            json!({
                "rows": [{ "asset": "pump-1", "metric": "temp", "ts": now, "value": 1.5 }],
                "series": [{ "asset": "pump-2", "metric": "rpm", "timestamps": [now, now + 60], "values": [1, 2] }],
            }),
        ),
        (
            reqwest::Method::POST,
            "/v1/score",
            json!({
                "asset": "pump-1", "window": { "temp": (0..40).map(|i| f64::from(i % 7)).collect::<Vec<_>>() },
            }),
        ),
        (
            reqwest::Method::POST,
            "/v1/score/batch",
            json!({
                "windows": [{ "asset": "pump-1", "window": { "temp": [1.0, 2.0] } }],
            }),
        ),
        (
            reqwest::Method::POST,
            "/v1/incidents",
            json!({
                "asset": "pump-3", "kind": "leak", "started_at": "2026-11-20T08:00:00Z",
                "fingerprint": "f-1", "root_cause": "seal", "labels": { "site": "north" },
            }),
        ),
        (
            reqwest::Method::POST,
            "/v1/incidents/1/outcome",
            json!({
                "client_key": "k-1", "actions_tried": ["restart"], "healed_by": "restart",
                "time_to_recover_secs": 60,
            }),
        ),
        (
            reqwest::Method::POST,
            "/v1/incidents/1/resolve",
            json!({ "resolved_at": "2026-11-20T09:00:00Z" }),
        ),
        (
            reqwest::Method::PUT,
            "/v1/assets/pump-4",
            json!({ "class": "pump", "labels": { "site": "south" } }),
        ),
        (
            reqwest::Method::POST,
            "/v1/alertmanager",
            json!({
                "version": "4", "status": "firing", "receiver": "vigil", "groupLabels": {},
                "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                "groupKey": "{}", "truncatedAlerts": 0,
                "alerts": [{
                    "status": "firing", "labels": { "alertname": "Hot", "instance": "pump-5" },
                    "annotations": {}, "startsAt": "2026-11-26T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://p", "fingerprint": "abc",
                }],
            }),
        ),
    ];
    let mut rng = rand08::rngs::SmallRng::seed_from_u64(11);
    let mut answered = 0;
    for (method, path, valid) in &routes {
        let valid = serde_json::to_vec(valid).unwrap();
        for round in 0..ROUNDS {
            let body = if round == 0 {
                valid.clone()
            } else {
                mutate(&mut rng, &valid)
            };
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if round == 0 {
                assert!(
                    status < 300,
                    "{method} {path}: the valid body answered {status}"
                );
            }
            assert!(
                status < 500,
                "{method} {path} answered {status} to {}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 {
                // error_code checks the body is exactly {code, message}.
                let code = error_code(response).await;
                assert!(!code.is_empty());
            }
            answered += 1;
        }
    }
    assert_eq!(answered, routes.len() * ROUNDS);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "still ready after the barrage");
}

#[tokio::test]
async fn random_remote_write_bodies_never_get_a_5xx() {
    let app = TestApp::spawn().await;
    let mut rng = rand08::rngs::SmallRng::seed_from_u64(13);
    for round in 0..300 {
        let len = rng.gen_range(0..512);
        let raw: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        // Half the bodies are valid snappy around random protobuf-ish bytes.
        let body = if round % 2 == 0 {
            snap::raw::Encoder::new().compress_vec(&raw).unwrap()
        } else {
            raw
        };
        let response = app
            .client
            .post(app.url("/api/v1/write"))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status < 500, "remote-write answered {status}");
        if status >= 400 {
            error_code(response).await;
        }
    }
}

/// `ScoreRequest::parse` takes a fast path for the usual shape and falls back to serde_json:
/// on mutated bodies it must give what serde_json alone gives, request or error.
#[test]
fn the_fast_score_parser_agrees_with_serde_json_on_mutated_bodies() {
    let valid = br#"{"asset":"web-1","window":{"cpu":[1.5,2,-3e2,0.25],"mem":[40,41.5,42,43]},"asset_class":"web"}"#;
    let mut rng = rand08::rngs::SmallRng::seed_from_u64(7);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let body = mutate(&mut rng, valid);
        let text = String::from_utf8_lossy(&body);
        // Debug prints every f64 so that it reads back to the same bits.
        match (
            ScoreRequest::parse(&body),
            parse_json::<ScoreRequest>(&body),
        ) {
            (Ok(fast), Ok(serde)) => {
                assert_eq!(format!("{fast:?}"), format!("{serde:?}"), "{text}");
                parsed += 1;
            }
            (Err(fast), Err(serde)) => {
                assert_eq!(fast.status_and_code(), serde.status_and_code(), "{text}")
            }
            (fast, serde) => panic!("{text}: fast {fast:?}, serde_json {serde:?}"),
        }
    }
    assert!(
        parsed > 1_000,
        "the mutations left enough bodies valid: {parsed}"
    );
}
