//! Times the parsing of `POST /v1/score` bodies (`api::input::parse_json` into
//! `ScoreRequest`), the part of a scored request's cost that comes before any model:
//!
//!     cargo run --release --example parse_bench -- <seed>/results/models/sample_requests.jsonl
//!
//! Parses the first 1000 bodies 20 times, three rounds, and prints microseconds per body.
use std::time::Instant;

use vigil::api::input::parse_json;
use vigil::api::score::ScoreRequest;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: parse_bench <sample_requests.jsonl>"))?;
    let text = std::fs::read_to_string(&path)?;
    let bodies: Vec<&[u8]> = text.lines().map(str::as_bytes).take(1000).collect();
    anyhow::ensure!(!bodies.is_empty(), "{path} holds no request body");
    let bytes = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len();
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..20 {
            for body in &bodies {
                let request: ScoreRequest =
                    parse_json(body).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                std::hint::black_box(request);
            }
        }
        let secs = started.elapsed().as_secs_f64() / (20 * bodies.len()) as f64;
        println!("{:.2} us per body ({bytes} bytes on average)", secs * 1e6);
    }
    Ok(())
}
