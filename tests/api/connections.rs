//! Connections held open without a request: closed after the header timeout, and the cap on
//! connections leaves room for a readiness probe. Bulk requests wait for one of a few turns;
//! other routes take only small bodies.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestApp;

/// Waits (up to `limit`) for the server to close `stream`; how long that took, or `None`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A response (the keep-alive case sends one first): keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_half_sent_and_idle_keep_alive_connections_are_closed() {
    let app = TestApp::spawn_with(|s| s.http.header_read_timeout_secs = 1).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for (what, stream) in [
        ("silent", &mut silent),
        ("half-sent", &mut half),
        ("idle", &mut idle),
    ] {
        let took = closed_within(stream, Duration::from_secs(10)).await;
        assert!(
            took.is_some(),
            "the {what} connection is still open after 10 s"
        );
    }
}

#[tokio::test]
async fn readiness_answers_while_held_connections_fill_the_cap() {
    let app = TestApp::spawn_with(|s| {
        s.http.max_connections = 4;
        s.http.header_read_timeout_secs = 60;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // Let the server accept them all before the probe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = reqwest::Client::new()
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    // An overflow connection serves one request only and does not linger.
    let mut overflow = TcpStream::connect(app.addr).await.unwrap();
    let took = closed_within(&mut overflow, Duration::from_secs(10)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(5)), "{took:?}");
    drop(held);
}

#[tokio::test]
async fn bulk_requests_wait_for_a_turn_and_small_routes_take_small_bodies() {
    let app = TestApp::spawn_with(|s| {
        s.http.max_bulk_requests = 1;
        s.http.bulk_wait_secs = 1;
        s.http.small_body_limit_bytes = 4096;
    })
    .await;
    // A bulk request that has sent half its body holds the only turn.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(
        b"POST /v1/samples HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"rows\":[",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body =
        serde_json::json!({"rows": [{"asset": "a", "metric": "m", "ts": 1.7e9, "value": 1.0}]});
    let response = app.post_json("/v1/samples", &body).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "busy", "{error}");
    // Other routes do not wait for bulk turns.
    assert_eq!(app.get("/readyz").await.status(), 200);
    // A small route refuses a body over its own limit, though under the bulk one.
    let big = serde_json::json!({"asset": "a", "kind": "x".repeat(5000)});
    let response = app.post_json("/v1/incidents", &big).await;
    assert_eq!(response.status(), 413);
    // The turn comes back when the slow request ends.
    drop(slow);
    let mut stored = false;
    for _ in 0..50 {
        if app.post_json("/v1/samples", &body).await.status() == 200 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored,
        "the turn is given back once the slow request is gone"
    );
    assert_eq!(app.db.count_samples().await, 1);
}
