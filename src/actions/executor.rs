//! Executors: how a permitted action runs. `webhook` POSTs a JSON description signed with
//! HMAC-SHA256 (header `X-Vigil-Signature: sha256=<hex>`), with a timeout and bounded
//! retries; `command` runs an argv template from config, filled with validated fields and
//! never through a shell; `dry_run` records what would have run.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::{ActionSettings, ExecutorKind};

/// The validated fields an action is run with.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The action's id.
    pub action_id: i64,
    /// The asset (a valid name: no spaces, cannot start with `-`).
    pub asset: String,
    /// Its class (a valid name).
    pub class: String,
    /// The failure kind (a valid name, else `unknown`).
    pub kind: String,
    pub alert_id: Option<i64>,
    /// Why it runs.
    pub reason: String,
}

/// What an execution did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// It succeeded.
    pub ok: bool,
    /// Details to store (status, attempts, exit code, output).
    pub result: Value,
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104), the signature a webhook receiver checks.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Whether `signature` (the hex after `sha256=` in `X-Vigil-Signature`) is the HMAC-SHA256 of
/// `message` under `key`, compared in constant time: what a receiver of Vigil's webhooks
/// should run.
pub fn verify_signature(key: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.verify_slice(&bytes).is_ok()
}

/// The argv of a command action: each template argument with `{asset}`, `{class}`,
/// `{kind}` and `{action_id}` replaced. Unknown placeholders are refused. Values are
/// inserted as they are into one argument each time, so a value can never add arguments or
/// reach a shell.
pub fn fill_argv(template: &[String], target: &Target) -> Result<Vec<String>, String> {
    template
        .iter()
        .map(|arg| {
            let filled = arg
                .replace("{asset}", &target.asset)
                .replace("{class}", &target.class)
                .replace("{kind}", &target.kind)
                .replace("{action_id}", &target.action_id.to_string());
            if arg.contains('{')
                && let Some(bad) = unknown_placeholder(arg)
            {
                return Err(format!("unknown placeholder {{{bad}}} in argv {arg:?}"));
            }
            Ok(filled)
        })
        .collect()
}

fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        if !matches!(name, "asset" | "class" | "kind" | "action_id") {
            return Some(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    None
}

/// The JSON description of an action sent to webhooks and recorded for dry runs.
pub fn describe(spec: &ActionSettings, target: &Target) -> Value {
    json!({
        "action_id": target.action_id,
        "action": spec.name,
        "asset": target.asset,
        "asset_class": target.class,
        "failure_kind": target.kind,
        "alert_id": target.alert_id,
        "reason": target.reason,
        "mode": spec.mode,
    })
}

/// The wait before webhook attempt `attempt` (from 1): 200 ms, then twice as long each time.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(attempt.saturating_sub(1).min(16)))
}

/// The longest [`execute`] can take: every attempt timing out, with the waits between them.
pub fn longest_run(spec: &ActionSettings) -> Duration {
    let timeout = Duration::from_secs(spec.timeout_secs);
    match spec.executor {
        ExecutorKind::DryRun => Duration::ZERO,
        ExecutorKind::Webhook => {
            timeout * (spec.retries + 1) + (1..=spec.retries).map(backoff).sum::<Duration>()
        }
        ExecutorKind::Command => timeout,
    }
}

/// Runs the action.
pub async fn execute(spec: &ActionSettings, target: &Target, client: &reqwest::Client) -> Outcome {
    match spec.executor {
        ExecutorKind::DryRun => Outcome {
            ok: true,
            result: json!({ "dry_run": true, "would_run": describe(spec, target) }),
        },
        ExecutorKind::Webhook => webhook(spec, target, client).await,
        ExecutorKind::Command => command(spec, target).await,
    }
}

async fn webhook(spec: &ActionSettings, target: &Target, client: &reqwest::Client) -> Outcome {
    let Some(url) = &spec.url else {
        return Outcome {
            ok: false,
            result: json!({ "error": "no url" }),
        };
    };
    let body = describe(spec, target).to_string();
    let signature = spec.secret.as_ref().map(|s| {
        format!(
            "sha256={}",
            hex::encode(hmac_sha256(s.as_bytes(), body.as_bytes()))
        )
    });
    let mut attempts = Vec::new();
    for attempt in 0..=spec.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let mut request = client
            .post(url)
            .timeout(Duration::from_secs(spec.timeout_secs))
            .header("content-type", "application/json")
            .header("x-vigil-action-id", target.action_id)
            .body(body.clone());
        if let Some(sig) = &signature {
            request = request.header("x-vigil-signature", sig);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                attempts.push(json!({ "status": response.status().as_u16() }));
                return Outcome {
                    ok: true,
                    result: json!({ "attempts": attempts }),
                };
            }
            Ok(response) => {
                let status = response.status();
                attempts.push(json!({ "status": status.as_u16() }));
                if status.is_client_error() {
                    // The receiver refused this request; sending it again would not help.
                    break;
                }
            }
            Err(e) => attempts.push(json!({
                "error": if e.is_timeout() { "timeout".to_owned() } else { e.to_string() }
            })),
        }
    }
    Outcome {
        ok: false,
        result: json!({ "attempts": attempts }),
    }
}

async fn command(spec: &ActionSettings, target: &Target) -> Outcome {
    let argv = match fill_argv(&spec.argv, target) {
        Ok(argv) if !argv.is_empty() => argv,
        Ok(_) => {
            return Outcome {
                ok: false,
                result: json!({ "error": "empty argv" }),
            };
        }
        Err(e) => {
            return Outcome {
                ok: false,
                result: json!({ "error": e }),
            };
        }
    };
    let run = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let clip = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned();
    match tokio::time::timeout(Duration::from_secs(spec.timeout_secs), run).await {
        Ok(Ok(out)) => Outcome {
            ok: out.status.success(),
            result: json!({
                "argv": argv,
                "exit_code": out.status.code(),
                "stdout": clip(&out.stdout),
                "stderr": clip(&out.stderr),
            }),
        },
        Ok(Err(e)) => Outcome {
            ok: false,
            result: json!({ "argv": argv, "error": e.to_string() }),
        },
        Err(_) => Outcome {
            ok: false,
            result: json!({ "argv": argv, "error": "timeout" }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(asset: &str) -> Target {
        Target {
            action_id: 7,
            asset: asset.to_owned(),
            class: "web".to_owned(),
            kind: "memory_leak".to_owned(),
            alert_id: Some(3),
            reason: "test".to_owned(),
        }
    }

    #[test]
    fn the_longest_run_counts_every_attempt_and_the_waits_between() {
        let spec = |executor, retries| ActionSettings {
            executor,
            retries,
            timeout_secs: 2,
            ..serde_json::from_value(json!({ "name": "restart", "executor": "dry_run" })).unwrap()
        };
        assert_eq!(
            longest_run(&spec(ExecutorKind::Webhook, 2)),
            Duration::from_millis(3 * 2000 + 200 + 400)
        );
        assert_eq!(
            longest_run(&spec(ExecutorKind::Command, 2)),
            Duration::from_secs(2)
        );
        assert_eq!(longest_run(&spec(ExecutorKind::DryRun, 2)), Duration::ZERO);
        // The store's retries of a result's recording: 0.25 + 0.5 + ... + 8 + 8 s.
        assert_eq!(
            crate::store::retry_unavailable_waits(super::super::RECORD_RETRIES),
            Duration::from_millis(47_750)
        );
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (RFC 4231 case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        let body = b"what do ya want for nothing?";
        let good = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(verify_signature(b"Jefe", body, good));
        assert!(!verify_signature(
            b"Jefe",
            b"what do ya want for something?",
            good
        ));
        assert!(!verify_signature(b"Jefe", body, "not hex"));
    }

    #[test]
    fn argv_placeholders_fill_whole_values_and_unknown_ones_are_refused() {
        let template = vec![
            "/usr/bin/systemctl".to_owned(),
            "restart".to_owned(),
            "app@{asset}".to_owned(),
            "--reason={kind}/{action_id}".to_owned(),
        ];
        let argv = fill_argv(&template, &target("web-01")).unwrap();
        assert_eq!(
            argv,
            [
                "/usr/bin/systemctl",
                "restart",
                "app@web-01",
                "--reason=memory_leak/7"
            ]
        );
        // A hostile-looking value stays one argument, never a shell word split.
        let argv = fill_argv(&template, &target("a;rm -rf /")).unwrap();
        assert_eq!(argv.len(), 4);
        assert_eq!(argv[2], "app@a;rm -rf /");
        let bad = vec!["echo".to_owned(), "{secret}".to_owned()];
        assert!(
            fill_argv(&bad, &target("x"))
                .unwrap_err()
                .contains("{secret}")
        );
    }
}
