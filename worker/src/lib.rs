//! Consumes assigned streams, runs each invocation in the runtime, completes it
//! atomically, reclaims crashed work and drains on SIGTERM. (Built in issue 3.)
#![forbid(unsafe_code)]
