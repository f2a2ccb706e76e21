//! Accepting and serving connections, with the limits a public listener needs: every
//! connection must send a request's whole header within `http.header_read_timeout_secs` of
//! opening or of its previous response (so a silent, half-sent or idle keep-alive
//! connection is closed), at most `http.max_connections` are served at once, and a small
//! overflow beyond that is served one request each with a 1-second header timeout, so that
//! a readiness probe still answers while the cap is held. Shutdown stops accepting and lets
//! the connections finish their requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long an overflow connection has to send its one request's header.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request's header, from opening or from the previous response.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// Overflow connections beyond the cap: a sixteenth of it, at least 16.
    fn overflow(&self) -> usize {
        (self.max_connections / 16).max(16)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for open connections
/// to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(limits.overflow()));
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait for connections to close
                // instead of spinning.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (permit, header_timeout, keep_alive) = match slots.clone().try_acquire_owned() {
            Ok(permit) => (permit, limits.header_read_timeout, true),
            Err(_) => match overflow.clone().try_acquire_owned() {
                Ok(permit) => (permit, OVERFLOW_HEADER_TIMEOUT, false),
                Err(_) => {
                    tracing::debug!("connection limit reached: connection closed");
                    continue;
                }
            },
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(keep_alive)
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
