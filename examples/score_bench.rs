//! In-process scoring latency: features plus every model (isolation forest, calibrated
//! failure model, diagnosis, time to failure, explanation) for one window, as `POST /v1/score` computes it,
//! timed call by call over the seed-baseline's request bodies; prints p50, p99 and max.
//!
//!   vigil train --input metrics.csv --incidents incidents.csv -o bundle.json
//!   cargo run --release --example score_bench -- bundle.json ../shared/bench/seed-baseline/sample_requests.jsonl

use std::collections::BTreeMap;
use std::time::Instant;

use vigil::jobs::train::Bundle;

#[derive(serde::Deserialize)]
struct Request {
    asset: String,
    window: BTreeMap<String, Vec<f64>>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (bundle, requests) = match (args.get(1), args.get(2)) {
        (Some(b), Some(r)) => (b, r),
        _ => panic!("usage: score_bench BUNDLE.json REQUESTS.jsonl"),
    };
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    let requests: Vec<Request> = std::fs::read_to_string(requests)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Warm up, then time each call.
    for r in &requests {
        std::hint::black_box(bundle.score(&r.asset, None, &r.window, None, 5).unwrap());
    }
    let rounds = 2000;
    let mut nanos = Vec::with_capacity(rounds * requests.len());
    for _ in 0..rounds {
        for r in &requests {
            let started = Instant::now();
            std::hint::black_box(bundle.score(&r.asset, None, &r.window, None, 5).unwrap());
            nanos.push(started.elapsed().as_nanos() as u64);
        }
    }
    nanos.sort_unstable();
    let at = |q: f64| nanos[((nanos.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{{\"calls\": {}, \"metrics\": {}, \"window\": {}, \"p50_us\": {:.2}, \"p99_us\": {:.2}, \"max_us\": {:.2}}}",
        nanos.len(),
        bundle.schema.metrics.len(),
        bundle.schema.window,
        at(0.5),
        at(0.99),
        *nanos.last().unwrap() as f64 / 1000.0
    );
}
