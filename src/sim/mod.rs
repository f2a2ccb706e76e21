//! Evaluation built on the core and never imported by it: the seeded fleet simulator with
//! planted faults ([`fleet`]), the commands that run it (`vigil demo`, `vigil simulate`),
//! the learning loop's benchmark stream and `vigil replay` ([`replay`], [`replay_command`]),
//! the cold-start detector over CSV series and the NAB scoring rule (`vigil detect`,
//! `vigil eval nab`: [`detect`], [`nab`]). Storing a simulated history is [`history`].

pub mod demo;
pub mod detect;
pub mod fleet;
pub mod history;
pub mod nab;
pub mod replay;
pub mod replay_command;
pub mod simulate;
