//! The HTTP service (axum): the router, its middleware stack, and [`App`], which `serve` and
//! the integration tests both use to run it.
//!
//! Middleware, outermost first: request id, tracing, panic catcher (a panic becomes a JSON
//! 500), body limit; then, for matched routes only, metrics, the request timeout and the
//! per-route auth guard. Unmatched paths and methods get JSON 404/405 from the fallbacks.

pub mod actions;
pub mod alerts;
pub mod assets;
pub mod auth;
pub mod config;
pub mod connections;
pub mod error;
pub mod health;
pub mod incidents;
pub mod input;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod policy;
pub mod remote_write;
pub mod samples;
pub mod score;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use self::auth::{Access, Auth, Guard};
use self::error::ApiError;
use self::input::BodyLimit;
use self::metrics::HttpMetrics;
use crate::config::Settings;
use crate::store::Store;

/// Header carrying the request id (generated when the client sends none).
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach: one shared [`StateParts`], so that the clone axum makes
/// for each request is one reference count, not one per part.
#[derive(Debug, Clone)]
pub struct AppState(Arc<StateParts>);

impl std::ops::Deref for AppState {
    type Target = StateParts;

    fn deref(&self) -> &StateParts {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug, Clone)]
pub struct StateParts {
    /// The database.
    pub store: Store,
    /// Effective configuration.
    pub settings: Arc<Settings>,
    /// Token table.
    pub auth: Arc<Auth>,
    /// Request metrics.
    pub metrics: Arc<HttpMetrics>,
    /// What the service did (samples, scores, alerts), shared with scoring and ingestion.
    pub counters: Arc<crate::counters::Counters>,
    /// Start time, for uptime.
    pub started: Instant,
    /// The scoring service (model, policy cache, score writer).
    pub scoring: crate::scoring::Scoring,
    /// The action runner (catalog, guard, executors, verification).
    pub actions: Arc<crate::actions::Actions>,
    /// Stores sample batches and tells scoring what became durable.
    pub ingest: crate::ingest::Ingestor,
    /// How remote-write labels map to assets and series.
    pub remote_write: Arc<crate::ingest::remote_write::Mapping>,
}

/// Errors building the app.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration forbids serving (auth off on a public address).
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound, ready-to-serve Vigil HTTP service.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Checks the exposure rule and binds `settings.listen` (port 0 picks a free port); the
    /// router on `store` is built by [`App::serve`], with the background tasks it needs.
    pub async fn build(settings: Settings, store: Store) -> Result<App, BuildError> {
        settings.check_exposure()?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let auth = Arc::new(Auth::from_settings(&settings.auth));
        if auth.is_enabled() {
            tracing::info!(
                tokens = settings.auth.tokens.len(),
                "bearer-token auth is on"
            );
        } else {
            tracing::warn!(
                listen = %settings.listen,
                "auth is off: no tokens configured, so Vigil serves loopback only; \
                 configure tokens (`vigil token new`) to expose it"
            );
        }
        let remote_write = crate::ingest::remote_write::Mapping::from_settings(
            &settings.remote_write,
        )
        .map_err(|e| crate::config::Error::Invalid(format!("remote_write.asset_template {e}")))?;
        let settings = Arc::new(settings);
        let actions = Arc::new(crate::actions::Actions::new(
            store.clone(),
            settings.clone(),
            settings.guard.sample_seed.unwrap_or_else(rand_seed),
        ));
        let counters = Arc::new(crate::counters::Counters::default());
        let state = AppState(Arc::new(StateParts {
            scoring: crate::scoring::Scoring::new(
                store.clone(),
                settings.clone(),
                actions.clone(),
                counters.clone(),
            ),
            ingest: crate::ingest::Ingestor::new(store.clone(), counters.clone()),
            remote_write: Arc::new(remote_write),
            metrics: Arc::new(HttpMetrics::new(counters.clone())),
            counters,
            store,
            settings,
            auth,
            started: Instant::now(),
            actions,
        }));
        Ok(App { listener, state })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// The shared state (tests read metrics from it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets
    /// in-flight requests finish, for at most `http.shutdown_timeout_secs`.
    pub async fn serve<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let grace = Duration::from_secs(self.state.settings.http.shutdown_timeout_secs);
        let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = begun_tx.send(());
        };
        // Every background task of `vigil serve` starts here. Scoring: the model listener,
        // the policy refresh, the score writer and scoring on ingest (fed by the ingestor's
        // events). Actions: the sweeper (expiry, lost actions, verification). Jobs: retention
        // and the training schedule.
        let store = self.state.store.clone();
        let counters = self.state.counters.clone();
        let (ingest, ingested) = if self.state.settings.scoring.on_ingest {
            let (ingest, events) = crate::ingest::Ingestor::watched(store.clone(), counters);
            (ingest, Some(events))
        } else {
            (crate::ingest::Ingestor::new(store.clone(), counters), None)
        };
        let (scoring, scoring_tasks) = self.state.scoring.start(ingested);
        // The sweeper's re-scores verify healing; they are not stored as scores (the
        // service it re-scores with has no writer), as before scoring had a room of its own.
        let sweeper = self.state.actions.clone().spawn_sweeper(
            self.state.scoring.rescore(),
            Duration::from_secs(self.state.settings.guard.sweep_every_secs.max(1)),
        );
        let jobs = crate::jobs::spawn(
            store,
            self.state.settings.clone(),
            self.state.counters.clone(),
        );
        // The health probe: how long the database has not answered (`/healthz`, scoring).
        let probe = self.state.store.spawn_health_probe(Duration::from_secs(2));
        let mut parts = StateParts::clone(&self.state);
        parts.scoring = scoring;
        parts.ingest = ingest;
        let state = AppState(Arc::new(parts));
        let limits = connections::Limits {
            header_read_timeout: Duration::from_secs(
                self.state.settings.http.header_read_timeout_secs.max(1),
            ),
            max_connections: self.state.settings.http.max_connections.max(1),
        };
        let server = connections::serve(self.listener, router(state), limits, signal);
        let deadline = async move {
            if begun_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = server => {}
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; dropping remaining requests");
            }
        };
        jobs.abort();
        probe.abort();
        sweeper.abort();
        // The router and the sweeper are gone: the ingest scorer finishes its queue, then
        // (the last holder of the started service gone) the writer drains and ends.
        scoring_tasks.finish().await;
        Ok(())
    }
}

/// A random seed for action sampling (fixed seeds are for tests and replays).
fn rand_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap_or_default();
    u64::from_le_bytes(bytes)
}

/// The full router with its middleware.
pub fn router(state: AppState) -> Router {
    let guarded = |access: Access| {
        middleware::from_fn_with_state(
            Guard {
                auth: state.auth.clone(),
                access,
            },
            auth::require,
        )
    };
    let http = &state.settings.http;
    let body_limit = http.body_limit_bytes;
    let small_body_limit = http.small_body_limit_bytes.min(body_limit);
    let turns = BulkTurns {
        turns: Arc::new(tokio::sync::Semaphore::new(http.max_bulk_requests.max(1))),
        max: http.max_bulk_requests.max(1),
        wait: Duration::from_secs(http.bulk_wait_secs),
    };
    // Every route comes from the one table that the OpenAPI document is built from. A bulk
    // route takes the large body limit and waits for a turn (after auth: a request without
    // a token takes none); every other route has the small limit.
    let mut routes = Router::new();
    for endpoint in openapi::endpoints() {
        let route = endpoint.into_route();
        let mut router = Router::new().route(route.path, route.handler);
        router = if route.bulk {
            router
                .route_layer(middleware::from_fn_with_state(turns.clone(), take_turn))
                .route_layer(Extension(BodyLimit(body_limit)))
                .route_layer(DefaultBodyLimit::max(body_limit))
        } else {
            router
                .route_layer(Extension(BodyLimit(small_body_limit)))
                .route_layer(DefaultBodyLimit::max(small_body_limit))
        };
        routes = routes.merge(match route.access {
            None => router,
            Some(access) => router.route_layer(guarded(access)),
        });
    }

    let timeout = Duration::from_secs(state.settings.http.request_timeout_secs);
    routes
        .route_layer(middleware::from_fn_with_state(timeout, enforce_timeout))
        .route_layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(BodyLimit(small_body_limit)))
        .layer(DefaultBodyLimit::max(small_body_limit))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::Internal("handler panicked".to_owned()).into_response()
            },
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), uri = %req.uri(), request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Turns for bulk requests: at most `max` at once, each request waiting up to `wait`.
#[derive(Clone)]
struct BulkTurns {
    turns: Arc<tokio::sync::Semaphore>,
    max: usize,
    wait: Duration,
}

/// Runs a bulk request once it has a turn (its body is read only then), or answers 503
/// `busy` when none comes free in time.
async fn take_turn(State(turns): State<BulkTurns>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(turns.wait, turns.turns.acquire()).await {
        Ok(Ok(_turn)) => next.run(req).await,
        _ => ApiError::Busy(turns.max).into_response(),
    }
}

async fn enforce_timeout(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn no_route(State(state): State<AppState>, method: Method, uri: Uri) -> ApiError {
    state
        .metrics
        .record(metrics::UNMATCHED, method.as_str(), 404, 0.0);
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed(State(state): State<AppState>, method: Method) -> ApiError {
    state
        .metrics
        .record(metrics::UNMATCHED, method.as_str(), 405, 0.0);
    ApiError::MethodNotAllowed(method.to_string())
}
