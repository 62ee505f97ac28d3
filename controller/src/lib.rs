//! Backlog and activity to warm capacity per (tenant, function) and worker
//! replicas; scale-to-zero; leader lease. (Built in issue 5; never links wasmtime.)
#![forbid(unsafe_code)]
