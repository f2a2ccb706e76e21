//! Connections held open without a request: closed after the header timeout, and the cap on
//! connections leaves room for a readiness probe.

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
