//! The embedded cluster, through the library and through the `vigil` binary as a user runs it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
use tokio::process::Child;
use vigil::store::EmbeddedPostgres;

use crate::support::{free_port, serve_ready, vigil};

/// A temporary directory the unprivileged cluster user can enter (tempfile makes 0700 ones).
fn cluster_parent() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("vigil-it-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

async fn start_serve(data_dir: &Path, port: u16, log: &Path) -> Child {
    let mut command = vigil();
    command.arg("serve").arg("--data-dir").arg(data_dir);
    serve_ready(command, port, log).await
}

async fn terminate(mut child: Child) {
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("vigil exits after SIGTERM")
        .unwrap();
    assert!(
        status.success(),
        "vigil exits cleanly after SIGTERM: {status}"
    );
}

#[tokio::test]
async fn serve_on_the_embedded_cluster_keeps_data_across_restarts_and_stops_it() {
    let parent = cluster_parent();
    let data_dir = parent.path().join("data");
    let log = parent.path().join("vigil.log");
    let port = free_port();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/assets/pump-7");

    let first = start_serve(&data_dir, port, &log).await;
    assert!(
        data_dir.join("pg/PG_VERSION").is_file(),
        "the cluster lives in <data-dir>/pg"
    );
    let response = client
        .put(&url)
        .json(&serde_json::json!({ "class": "pump" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    terminate(first).await;
    assert!(
        !data_dir.join("pg/postmaster.pid").exists(),
        "the cluster is stopped on exit"
    );

    let second = start_serve(&data_dir, port, &log).await;
    let asset: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(asset["class"], "pump", "data survives a restart of Vigil");
    terminate(second).await;
    assert!(!data_dir.join("pg/postmaster.pid").exists());

    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log.matches("creating embedded PostgreSQL cluster").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("embedded PostgreSQL stopped").count(),
        2,
        "{log}"
    );
}

#[tokio::test]
async fn a_cluster_already_running_is_reused_and_left_to_its_starter() {
    let parent = cluster_parent();
    let dir = parent.path().join("pg");
    let owner = EmbeddedPostgres::start(&dir, "postgres").await.unwrap();
    assert!(owner.started_here());
    let guest = EmbeddedPostgres::start(&dir, "postgres").await.unwrap();
    assert!(!guest.started_here());
    guest.stop().await.unwrap();
    assert!(
        owner.is_running().await.unwrap(),
        "the guest does not stop the owner's server"
    );

    let mut conn = owner.connect_options().connect().await.unwrap();
    let one: i32 = sqlx::query_scalar("select 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();

    let probe = EmbeddedPostgres::start(&dir, "postgres").await.unwrap();
    owner.stop().await.unwrap();
    assert!(
        !probe.is_running().await.unwrap(),
        "the owner stops its server"
    );
    probe.stop().await.unwrap();
}

#[tokio::test]
async fn serve_refuses_a_public_address_without_tokens() {
    let parent = cluster_parent();
    let output = vigil()
        .arg("serve")
        .arg("--data-dir")
        .arg(parent.path().join("data"))
        .args(["--listen", "0.0.0.0:8080"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:8080 with auth off"),
        "{stderr}"
    );
    assert!(
        !parent.path().join("data/pg").exists(),
        "no database is started for nothing"
    );
}

#[tokio::test]
async fn config_command_prints_the_effective_config_masked() {
    let output = vigil()
        .env("DATABASE_URL", "postgres://vigil:hunter2@db.internal/vigil")
        .env("VIGIL_RETENTION__SAMPLES_DAYS", "30")
        .args(["config", "--data-dir", "/srv/vigil"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("postgres://vigil:****@db.internal/vigil"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
    assert!(stdout.contains("samples_days = 30"), "{stdout}");
    assert!(stdout.contains("data_dir = \"/srv/vigil\""), "{stdout}");
}

#[tokio::test]
async fn config_command_rejects_an_unknown_key() {
    let output = vigil()
        .env("VIGIL_LISTN", "127.0.0.1:1")
        .arg("config")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("listn"));
}

#[tokio::test]
async fn serve_restarts_its_embedded_cluster_after_the_postmaster_is_killed() {
    let parent = cluster_parent();
    let data_dir = parent.path().join("data");
    let log = parent.path().join("vigil.log");
    let port = free_port();
    let serve = start_serve(&data_dir, port, &log).await;
    let pid_file = data_dir.join("pg/postmaster.pid");
    let postmaster = std::fs::read_to_string(&pid_file).unwrap();
    let postmaster = postmaster.lines().next().unwrap().trim().to_owned();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &postmaster])
        .status()
        .unwrap();
    assert!(killed.success());
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    // The supervisor starts a new postmaster; then the pool reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let restarted = std::fs::read_to_string(&pid_file)
            .is_ok_and(|pid| pid.lines().next().is_some_and(|p| p.trim() != postmaster));
        let status = client
            .get(&ready)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if restarted && status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new postmaster serving 120 s after the old one was killed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored = client
        .put(format!("http://127.0.0.1:{port}/v1/assets/pump-8"))
        .json(&serde_json::json!({ "class": "pump" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 201, "writes work again");
    terminate(serve).await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("restarting it"), "{log}");
}
