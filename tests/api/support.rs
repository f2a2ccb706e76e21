//! Test harness: a real PostgreSQL for every test, and the app served on port 0.
//!
//! The server is `DATABASE_URL` when set (a user who may create databases); otherwise the
//! harness starts a private cluster once per run under `target/tmp/test-pg`, with the same
//! code as Vigil's embedded default, and a watcher stops it when the test process exits.
//! Each test gets a fresh database; it is dropped when the test passes and kept (its name
//! printed) when the test fails.

use std::net::SocketAddr;
use std::path::PathBuf;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use vigil::api::App;
use vigil::config::{Scope, Settings, TokenSettings, hash_token};
use vigil::store::{EmbeddedPostgres, Store};

static ADMIN: OnceCell<PgConnectOptions> = OnceCell::const_new();

/// Connection options of a database on the test server that may create databases.
pub async fn admin_options() -> PgConnectOptions {
    ADMIN
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("DATABASE_URL") {
                return url
                    .parse()
                    .expect("DATABASE_URL is not a valid PostgreSQL URL");
            }
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-pg");
            let cluster = EmbeddedPostgres::start(&dir, "postgres")
                .await
                .unwrap_or_else(|e| {
                    panic!("no DATABASE_URL, and the test cluster cannot start: {e}")
                });
            let options = cluster.options_for("postgres");
            cluster
                .stop_when_process_exits(std::process::id())
                .expect("cannot arrange for the test cluster to stop");
            options
        })
        .await
        .clone()
}

/// A fresh database for one test.
pub struct TestDb {
    pub name: String,
    pub store: Store,
    /// A pool of the test's own on the same database, for checks in SQL (the store keeps
    /// its pool to itself).
    pub pool: sqlx::PgPool,
    admin: PgConnectOptions,
}

impl TestDb {
    /// The ids of one asset and one metric, created on first sight.
    pub async fn asset_and_metric(&self, asset: &str, metric: &str) -> (i64, i32) {
        let assets = self.store.resolve_asset_ids(&[asset.into()]).await.unwrap();
        let metrics = self
            .store
            .resolve_metric_ids(&[metric.into()])
            .await
            .unwrap();
        (assets[asset], metrics[metric])
    }

    /// A fresh database with all migrations applied.
    pub async fn migrated() -> TestDb {
        let db = Self::empty().await;
        db.store.migrate().await.expect("migrations apply");
        db
    }

    /// A fresh database with no migration applied.
    pub async fn empty() -> TestDb {
        let admin = admin_options().await;
        let name = format!("vigil_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin.connect().await.expect("connect to the test server");
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let options = admin.clone().database(&name);
        let store = Store::connect(options.clone(), &Settings::default())
            .await
            .expect("connect to the test database");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        TestDb {
            name,
            store,
            pool,
            admin,
        }
    }
}

impl TestDb {
    /// A URL for this database, for running the `vigil` binary against it.
    pub fn url(&self) -> String {
        let user = self.admin.get_username();
        match self.admin.get_socket() {
            Some(dir) => format!(
                "postgres://{user}@localhost:{}/{}?host={}",
                self.admin.get_port(),
                self.name,
                dir.display()
            ),
            None => format!(
                "postgres://{user}@{}:{}/{}",
                self.admin.get_host(),
                self.admin.get_port(),
                self.name
            ),
        }
    }

    /// Where the test server listens: a Unix socket path, or a TCP host and port.
    pub fn server_address(&self) -> (Option<std::path::PathBuf>, String, u16) {
        let port = self.admin.get_port();
        let socket = self
            .admin
            .get_socket()
            .map(|dir| dir.join(format!(".s.PGSQL.{port}")));
        (socket, self.admin.get_host().to_owned(), port)
    }

    /// Connection options of this database through `127.0.0.1:port` (a proxy).
    pub fn options_via(&self, port: u16) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username(self.admin.get_username())
            .database(&self.name)
    }

    /// Samples stored.
    pub async fn count_samples(&self) -> i64 {
        self.store
            .count_samples(None)
            .await
            .expect("samples are counted")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: keeping database {}", self.name);
            return;
        }
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = admin.connect().await.map_err(std::io::Error::other)?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .await
                .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Vigil served on 127.0.0.1:0 over a fresh database, through the same `App::build` as
/// `vigil serve`.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: std::sync::Arc<TestDb>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// A token secret used by [`TestApp::with_tokens`].
pub fn secret_for(scope: Scope) -> String {
    format!("test-token-{scope}")
}

impl TestApp {
    /// Auth off (no tokens), default settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// One token per scope, the secret of each from [`secret_for`].
    pub async fn with_tokens() -> TestApp {
        Self::spawn_with(|settings| {
            settings.auth.tokens = Scope::ALL
                .into_iter()
                .map(|scope| TokenSettings {
                    name: format!("{scope}-holder"),
                    sha256: hash_token(&secret_for(scope)),
                    scopes: vec![scope],
                })
                .collect();
        })
        .await
    }

    /// Settings changed by `tweak` before the app is built.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_on(TestDb::migrated().await, tweak).await
    }

    /// Served over a given database.
    pub async fn spawn_on(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_shared(std::sync::Arc::new(db), tweak).await
    }

    /// A second replica: another app on this app's database.
    pub async fn replica(&self) -> TestApp {
        Self::spawn_shared(self.db.clone(), |_| {}).await
    }

    async fn spawn_shared(
        db: std::sync::Arc<TestDb>,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let store = db.store.clone();
        Self::spawn_over(db, store, tweak).await
    }

    /// Served over `store` (connected some other way to `db`'s database, such as through a
    /// proxy the test can cut).
    pub async fn spawn_over(
        db: std::sync::Arc<TestDb>,
        store: Store,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Settings::default()
        };
        // Tests ask for the schedules they exercise: none runs by default.
        settings.training.schedule = String::new();
        settings.retention.samples_days = 0;
        settings.retention.scores_days = 0;
        settings.drift.enabled = false;
        tweak(&mut settings);
        let app = App::build(settings, store).await.expect("app builds");
        let addr = app.local_addr();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.serve(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            client: reqwest::Client::new(),
            db,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET without a token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request is sent")
    }

    /// Number of stored assets.
    pub async fn asset_count(&self) -> usize {
        let filter = vigil::store::assets::AssetFilter {
            limit: 1000,
            ..Default::default()
        };
        self.db
            .store
            .list_assets(&filter)
            .await
            .expect("assets are listed")
            .len()
    }

    /// An asset's series (`GET /v1/assets/{name}/series`): the answer and the keys in order.
    pub async fn series_keys(&self, asset: &str) -> (serde_json::Value, Vec<String>) {
        let listed = self.get_value(&format!("/v1/assets/{asset}/series")).await;
        let keys = listed["series"]
            .as_array()
            .expect("a list of series")
            .iter()
            .map(|s| s["key"].as_str().expect("a key").to_owned())
            .collect();
        (listed, keys)
    }

    /// GET without a token, answered with JSON.
    pub async fn get_value(&self, path: &str) -> serde_json::Value {
        self.get(path)
            .await
            .json()
            .await
            .expect("the answer is JSON")
    }

    /// POST a JSON body without a token, answered with JSON.
    pub async fn post_value(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        self.post_json(path, body)
            .await
            .json()
            .await
            .expect("the answer is JSON")
    }

    /// POST a JSON body without a token.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request is sent")
    }

    /// POST raw bytes with a given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is sent")
    }

    /// PUT a JSON body without a token.
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request is sent")
    }

    /// PUT raw bytes with a given content type.
    pub async fn put_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &'static str,
    ) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is sent")
    }

    /// Starts a graceful shutdown and returns the server task.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server still running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Checks that a response is the JSON error `code` with `status`.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status, "expected {status} {code}");
    assert_eq!(error_code(response).await, code);
}

/// Reads a JSON error body and returns its code, checking that it has exactly the two fields.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    let object = body.as_object().expect("error body is an object");
    assert_eq!(
        object.len(),
        2,
        "error body has exactly code and message: {body}"
    );
    assert!(
        object["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message is a non-empty string: {body}"
    );
    object["code"]
        .as_str()
        .expect("code is a string")
        .to_owned()
}

/// A small bundle trained on the synthetic fleet (window 20), for registry and scoring tests.
/// The `days` up to now, as the time range a registered model was trained on.
pub fn last_days(days: i64) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let now = chrono::Utc::now();
    (now - chrono::Duration::days(days), now)
}

/// A score of `asset` for the window ending at `window_end`, by no registered model:
/// probability 0.9 when alerting and 0.1 when calm, anomaly score 0.1, threshold 0.5, no
/// diagnosis. Tests change fields with struct update syntax.
pub fn score_at(
    asset: &str,
    window_end: chrono::DateTime<chrono::Utc>,
    is_alert: bool,
) -> vigil::store::scores::NewScore {
    vigil::store::scores::NewScore {
        asset: asset.to_owned(),
        model_id: None,
        model_version: "test".to_owned(),
        window_end,
        probability: Some(if is_alert { 0.9 } else { 0.1 }),
        anomaly_score: 0.1,
        threshold: 0.5,
        is_alert,
        failure_kind: None,
        kind_confidence: None,
        explanation: serde_json::json!({}),
    }
}

pub fn trained() -> vigil::jobs::train::Bundle {
    let data = vigil::jobs::train::synthetic(4, 3, 7);
    let settings = vigil::config::TrainingSettings {
        window: 20,
        stride: 3,
        n_trees: 30,
        ..Default::default()
    };
    vigil::jobs::train::train(
        data.metrics,
        &data.histories,
        &data.failures,
        &settings,
        &vigil::model::evaluation::AlertRule::default(),
        None,
        &mut |_| {},
    )
    .unwrap()
}

/// The `vigil` binary with no database or Vigil settings from the test's environment.
pub fn vigil() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VIGIL_") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `command` (a `vigil serve` without `--listen`) on `port`, its log appended to
/// `log`, and waits until `/readyz` answers 200.
pub async fn serve_ready(
    mut command: tokio::process::Command,
    port: u16,
    log: &std::path::Path,
) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("vigil serve exited early with {status}");
        }
        let ready = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200);
        if ready {
            return child;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vigil serve not ready within 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
