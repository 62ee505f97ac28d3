//! The HTTP API (axum + tower): deploy, invoke, status, runs, tenants.
//! (Built in issue 4; never links wasmtime.)
#![forbid(unsafe_code)]
