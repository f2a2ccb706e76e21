//! Times the parsing of `POST /v1/score` bodies, the part of a scored request's cost that
//! comes before any model: `ScoreRequest::parse` (the fast path for the usual shape) against
//! serde_json alone (`api::input::parse_json`), on the same bodies in the same run:
//!
//!     cargo run --release --example parse_bench -- <seed>/results/models/sample_requests.jsonl
//!
//! Parses the first 1000 bodies 20 times per round, three rounds alternating the two, and
//! prints microseconds per body and the ratio.
use std::time::Instant;

use vigil::api::error::ApiError;
use vigil::api::input::parse_json;
use vigil::api::score::ScoreRequest;

/// Seconds per body of `parse` over `bodies`, 20 passes.
fn time(
    bodies: &[&[u8]],
    parse: fn(&[u8]) -> Result<ScoreRequest, ApiError>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for _ in 0..20 {
        for body in bodies {
            let request = parse(body).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            std::hint::black_box(request);
        }
    }
    Ok(started.elapsed().as_secs_f64() / (20 * bodies.len()) as f64)
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: parse_bench <sample_requests.jsonl>"))?;
    let text = std::fs::read_to_string(&path)?;
    let bodies: Vec<&[u8]> = text.lines().map(str::as_bytes).take(1000).collect();
    anyhow::ensure!(!bodies.is_empty(), "{path} holds no request body");
    let bytes = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len();
    for _ in 0..3 {
        let fast = time(&bodies, ScoreRequest::parse)?;
        let serde = time(&bodies, parse_json)?;
        println!(
            "ScoreRequest::parse {:.2} us, serde_json {:.2} us per body ({bytes} bytes on average): {:.1}x",
            fast * 1e6,
            serde * 1e6,
            serde / fast
        );
    }
    Ok(())
}
