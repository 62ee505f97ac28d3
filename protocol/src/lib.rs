//! Eddy's wire types: everything that is written to Redis or crosses a role
//! boundary is defined here, once, with serde and without I/O.
//!
//! - [`names`]: validated tenant and function names.
//! - [`envelope`]: the invocation as it travels through a stream.
//! - [`function`]: function specs, versions and their configuration.
//! - [`ceilings`]: the operator's maxima for every function setting.
//! - [`record`]: invocation records, results and run records.
//! - [`outbound`]: the origins a function may call, and its record of calls.
//! - [`variables`]: variables and secrets, and the sealing of secrets.
//! - [`keys`]: every Redis key name.
//! - [`sync_first`]: how work somebody waits for goes ahead of bulk work.
#![forbid(unsafe_code)]

pub mod callback;
pub mod ceilings;
pub mod control;
pub mod envelope;
pub mod function;
pub mod keys;
pub mod labels;
pub mod messages;
pub mod names;
pub mod outbound;
pub mod record;
pub mod schedules;
pub mod sync_first;
pub mod tenant;
pub mod trace;
pub mod variables;

pub use ceilings::{CeilingError, Ceilings};
pub use envelope::{Envelope, LazyRun};
pub use function::{
    Backlog, FunctionConfig, FunctionSpec, FunctionVersions, RunLimits, merge_json,
};
pub use names::{FunctionName, NameError, TenantId};
pub use outbound::{AllowedHosts, OutboundCall};
pub use record::{
    DeadLetter, ErrorClass, ErrorInfo, InvocationRecord, InvocationStatus, LogEntry, Outcome,
    PhaseTimings, RunRecord, RunStatus,
};
pub use sync_first::SyncFirst;
pub use tenant::{ApiKey, Quota, TenantInfo};

/// Renders the process's metrics in the Prometheus text format. The binary
/// installs the recorder and hands this to every role's HTTP server.
pub type MetricsRender = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// A new invocation id: a UUIDv7, so ids sort by creation time (to the
/// millisecond). Its 74 random bits come from the thread's CSPRNG rather
/// than a `getrandom` system call per id: ids are made on the hot path of
/// every invocation and follow-up.
pub fn new_id() -> String {
    let mut random = [0u8; 10];
    rand::Rng::fill(&mut rand::rng(), &mut random);
    let id = uuid::Builder::from_unix_timestamp_millis(now_ms(), &random).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf).to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_uuid_v7_of_now_and_distinct() {
        let before = super::now_ms();
        let ids: Vec<String> = (0..1000).map(|_| super::new_id()).collect();
        let after = super::now_ms();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 7, "{id}");
            assert_eq!(u.hyphenated().to_string(), *id, "lower-case, hyphenated");
            let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
            let ms = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!(
                (before..=after).contains(&ms),
                "{id}: {ms} not in {before}..={after}"
            );
        }
    }
}
