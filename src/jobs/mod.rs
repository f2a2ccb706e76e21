//! Scheduled jobs that `serve` runs in the background and the CLI runs on demand. Each job
//! exposes `run_once`, so that tests and `vigil <job>` never wait for a schedule.

pub mod retention;
