//! Runtime integration tests: real wasmtime, real guest components built from
//! `functions/` (run `make functions` first; `make test` does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod errors;
mod examples;
mod hostile;
mod modules;
mod outbound;
mod support;
mod variables;
mod worlds;
