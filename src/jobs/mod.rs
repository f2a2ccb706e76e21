//! Jobs that `serve` runs in the background and the CLI runs on demand (retention,
//! training). Each job
//! exposes `run_once`, so that tests and `vigil <job>` never wait for a schedule.

pub mod retention;
pub mod train;
