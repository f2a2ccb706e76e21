use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestApp;

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight_and_accepts_no_new_one() {
    let mut app = TestApp::spawn().await;
    let body = br#"{"class":"web","labels":{"dc":"east"}}"#;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "PUT /v1/assets/in-flight HTTP/1.1\r\nhost: vigil\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    // The handler is now waiting for the rest of the body.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let server = app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );
    assert!(
        TcpStream::connect(app.addr).await.is_err(),
        "no new connection is accepted"
    );

    stream.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the response arrives")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops once the request is done")
        .unwrap()
        .unwrap();
    let stored = app.db.store.asset_by_name("in-flight").await.unwrap();
    assert_eq!(stored.class, "web");
}

#[tokio::test]
async fn shutdown_with_nothing_in_flight_is_immediate() {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let server = app.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("idle server stops at once")
        .unwrap()
        .unwrap();
}
