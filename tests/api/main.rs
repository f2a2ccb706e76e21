//! Integration tests against a real PostgreSQL (see `support` for where it comes from).

mod actions;
mod architecture;
mod auth;
mod connections;
mod demo;
mod drift;
mod embedded;
mod errors;
mod feedback;
mod fuzz;
mod health;
mod import;
mod incidents;
mod ingest;
mod models;
mod openapi;
mod prometheus;
mod properties;
mod remote_write;
mod replicas;
mod schema;
mod score;
mod shadow;
mod shutdown;
mod store;
mod support;
