//! The cost of Vigil's request instrumentation per scored request, in one run: the `metrics`
//! recorder Vigil uses (`vigil::counters::Counters`: a request counter and a latency
//! histogram by route, method and status, and the scores counter) against the hand-written
//! registry it replaced (a mutex over a map of counts and buckets, kept here as the
//! baseline). Prints nanoseconds per request of each and their ratio; `bench/score.sh` and
//! `bench/http.sh` give the CPU time of a whole scored request to compare with.
//!
//!   cargo run --release --example metrics_cost [REQUESTS]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A request's route, method and status.
type RequestKey = (String, String, u16);

/// Count, summed seconds and buckets of one request key.
type Series = (u64, f64, [u64; 14]);

/// The hand-written registry Vigil used before (commit 150b9f6, `api::metrics`).
#[derive(Default)]
struct HandWritten {
    series: Mutex<BTreeMap<RequestKey, Series>>,
    scores: AtomicU64,
}

impl HandWritten {
    fn record(&self, route: &str, method: &str, status: u16, secs: f64) {
        let mut series = self.series.lock().unwrap();
        let entry = series
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default();
        entry.0 += 1;
        entry.1 += secs;
        for (bucket, bound) in entry.2.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        self.scores.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |a| a.parse().expect("REQUESTS"));
    let routes = ["/v1/score", "/v1/score/batch", "/healthz", "/api/v1/write"];
    let secs = |i: u32| f64::from(i % 1000) * 1e-5;
    for round in 1..=3 {
        let old = HandWritten::default();
        let started = Instant::now();
        for i in 0..n {
            old.record(routes[(i % 4) as usize], "POST", 200, secs(i));
        }
        let old_ns = started.elapsed().as_nanos() as f64 / f64::from(n);
        let new = vigil::counters::Counters::new();
        let started = Instant::now();
        for i in 0..n {
            new.record_request(routes[(i % 4) as usize], "POST", 200, secs(i));
            vigil::counters::add(&new.scores_trained, 1);
        }
        let new_ns = started.elapsed().as_nanos() as f64 / f64::from(n);
        println!(
            "round {round}: metrics recorder {new_ns:.0} ns/request, hand-written {old_ns:.0} ns/request, ratio {:.2}",
            new_ns / old_ns
        );
    }
}
