//! Remote-write as Prometheus sends it, for `bench/soak.sh`: for SECS seconds, one request at
//! a time, each with SAMPLES new samples of the series `rw_load{instance="rw-load"}`; a
//! request answered 5xx (or lost to a connection error) is sent again after a back-off until
//! it is acknowledged, as Prometheus retries. Prints one line: `acknowledged A requests R
//! retried T refused F`, where A counts the samples of acknowledged (2xx) requests and F the
//! requests refused for good (4xx).
//!
//!   cargo run --release --example remote_write_load -- URL [SECS] [SAMPLES]

use std::time::{Duration, Instant};

use prost::Message;
use vigil::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: remote_write_load URL [SECS] [SAMPLES]");
    let secs: u64 = args.next().map_or(30, |s| s.parse().expect("SECS"));
    let per_request: i64 = args.next().map_or(1000, |s| s.parse().expect("SAMPLES"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    // One millisecond apart, from an hour ago: every sample is new and in range.
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let (mut acknowledged, mut requests, mut retried, mut refused) = (0i64, 0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next = 0i64;
    while Instant::now() < end {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "rw_load".into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: "rw-load".into(),
                    },
                ],
                samples: (next..next + per_request)
                    .map(|i| Sample {
                        value: (i % 100) as f64,
                        timestamp: base + i,
                    })
                    .collect(),
                ..TimeSeries::default()
            }],
            ..WriteRequest::default()
        };
        next += per_request;
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("snappy compresses");
        requests += 1;
        let mut wait = Duration::from_millis(30);
        loop {
            let sent = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    acknowledged += per_request;
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    refused += 1;
                    break;
                }
                _ => {
                    retried += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    println!("acknowledged {acknowledged} requests {requests} retried {retried} refused {refused}");
}
