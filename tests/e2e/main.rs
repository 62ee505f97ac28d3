//! End-to-end: real `redis-server` per test, real `eddy worker` processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod api_errors;
mod callbacks;
mod cluster;
mod crash;
mod deployment;
mod drain;
mod example;
mod failures;
mod flow;
mod gateway;
mod hostile;
mod idle;
mod in_process;
mod metrics;
mod otel;
mod outbound;
mod projects;
mod scaling;
mod schedules;
mod secrets;
mod ui;
