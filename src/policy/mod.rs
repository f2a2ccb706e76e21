//! Policy: the decisions that learn from feedback, as plain functions over data (no IO).
//!
//! - [`threshold`]: the alert threshold of an asset class that minimizes the expected cost
//!   of false alarms and missed failures over labelled history, moved in bounded steps.
//! - [`bandit`]: per (failure kind, asset class, action), a Beta posterior of "this action
//!   healed it", and Thompson sampling among the actions the guard permits.
//! - [`guard`]: the safety guard's verdict on one proposed action (mode, kill switch,
//!   cooldown, rate limit, blast-radius budget, circuit breaker).

pub mod bandit;
pub mod guard;
pub mod threshold;
