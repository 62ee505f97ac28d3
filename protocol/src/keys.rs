//! Every Redis key Eddy uses, defined once.
//!
//! **Invariant:** all keys of one tenant share the hash tag `{t:<tenant>}`, so
//! that a completion script touching the invocation, its stream, its run and
//! its follow-ups' streams stays in one Redis Cluster slot. Follow-ups stay
//! inside their tenant. The only untagged keys are global indexes.

use crate::names::{FunctionName, TenantId};

/// The consumer group every stream has.
pub const GROUP: &str = "workers";

/// Set of all tenants.
pub const TENANTS: &str = "eddy:tenants";

/// The hash tag of a tenant's keys.
pub fn tag(tenant: &TenantId) -> String {
    format!("{{t:{tenant}}}")
}

/// The stream of pending invocations of one function.
pub fn stream(tenant: &TenantId, function: &FunctionName) -> String {
    format!("eddy:{}:q:{function}", tag(tenant))
}

/// The tenant and function of a stream key, if it is one.
pub fn parse_stream(key: &str) -> Option<(TenantId, FunctionName)> {
    let rest = key.strip_prefix("eddy:{t:")?;
    let (tenant, rest) = rest.split_once('}')?;
    let function = rest.strip_prefix(":q:")?;
    Some((
        TenantId::new(tenant).ok()?,
        FunctionName::new(function).ok()?,
    ))
}

/// The tenant of any of its keys (`eddy:{t:<tenant>}:…`).
pub fn tenant_of(key: &str) -> Option<TenantId> {
    let start = key.find("{t:")? + 3;
    let end = start + key[start..].find('}')?;
    TenantId::new(&key[start..end]).ok()
}

/// Stream key prefix of a tenant; a function name follows it.
pub fn stream_prefix(tenant: &TenantId) -> String {
    format!("eddy:{}:q:", tag(tenant))
}

/// Hash of one function: `current`, `latest` and `v:<n>` → spec JSON.
pub fn function(tenant: &TenantId, function: &FunctionName) -> String {
    format!("eddy:{}:fn:{function}", tag(tenant))
}

/// Function key prefix of a tenant; a function name follows it.
pub fn function_prefix(tenant: &TenantId) -> String {
    format!("eddy:{}:fn:", tag(tenant))
}

/// Hash of a tenant's variables, for all its functions: name → stored form
/// (`variables::Stored`).
pub fn variables(tenant: &TenantId) -> String {
    format!("eddy:{}:vars", tag(tenant))
}

/// Hash of one function's own variables (they override the tenant's).
pub fn function_variables(tenant: &TenantId, function: &FunctionName) -> String {
    format!("eddy:{}:vars:{function}", tag(tenant))
}

/// Hash of a tenant's schedules: name → `schedules::ScheduleSpec` (JSON).
pub fn schedules(tenant: &TenantId) -> String {
    format!("eddy:{}:schedules", tag(tenant))
}

/// Hash of where a tenant's schedules stand: name →
/// `schedules::ScheduleState` (JSON; the next tick is the truth the
/// [`SCHEDULES`] index is rebuilt from).
pub fn schedule_states(tenant: &TenantId) -> String {
    format!("eddy:{}:schedules:state", tag(tenant))
}

/// Set of a tenant's function names.
pub fn functions(tenant: &TenantId) -> String {
    format!("eddy:{}:fns", tag(tenant))
}

/// Module bytes of a tenant, by sha256. Per tenant, not shared: a deploy
/// counts them against the tenant's stored bytes and a delete frees them,
/// atomically on the tenant's slot.
pub fn module(tenant: &TenantId, sha256: &str) -> String {
    format!("eddy:{}:mod:{sha256}", tag(tenant))
}

/// Hash of a module's compiled artifacts, engine key → signed artifact
/// (`Keyring::sign_artifact`): compiled once, by the deploy's gateway or
/// the first worker, and mapped by every other worker instead of compiling
/// again. Expires a week after the last store; deleted with the module.
pub fn artifact(tenant: &TenantId, sha256: &str) -> String {
    format!("eddy:{}:art:{sha256}", tag(tenant))
}

/// Hash of a tenant's module references: sha256 → how many function
/// versions use it (the module goes when the last one does).
pub fn module_refs(tenant: &TenantId) -> String {
    format!("eddy:{}:modrefs", tag(tenant))
}

/// Hash of the bytes a tenant's invocations wrote that live for the record
/// TTL (outputs, outcomes, dead letters), per slot of TTL/24: slot number →
/// bytes (see `lua/stored.lua`).
pub fn stored(tenant: &TenantId) -> String {
    format!("eddy:{}:stored", tag(tenant))
}

/// Hash of one invocation record.
pub fn invocation(tenant: &TenantId, id: &str) -> String {
    format!("eddy:{}:inv:{id}", tag(tenant))
}

/// Invocation key prefix of a tenant; an id follows it.
pub fn invocation_prefix(tenant: &TenantId) -> String {
    format!("eddy:{}:inv:", tag(tenant))
}

/// Hash of one run record.
pub fn run(tenant: &TenantId, id: &str) -> String {
    format!("eddy:{}:run:{id}", tag(tenant))
}

/// Run key prefix of a tenant; an id follows it.
pub fn run_prefix(tenant: &TenantId) -> String {
    format!("eddy:{}:run:", tag(tenant))
}

/// Sorted set of invocations waiting for a retry, scored by due time (ms).
pub fn delayed(tenant: &TenantId) -> String {
    format!("eddy:{}:delayed", tag(tenant))
}

/// Dead-letter stream of a tenant.
pub fn dead_letters(tenant: &TenantId) -> String {
    format!("eddy:{}:dlq", tag(tenant))
}

/// Stream of callbacks waiting for delivery.
pub fn callbacks(tenant: &TenantId) -> String {
    format!("eddy:{}:callbacks", tag(tenant))
}

/// Hash of a tenant: quotas, the webhook secret, the `pending` counter.
pub fn tenant(tenant: &TenantId) -> String {
    format!("eddy:{}:tenant", tag(tenant))
}

/// Fixed one-second window counter of a tenant's invocations.
pub fn rate_window(tenant: &TenantId, unix_sec: u64) -> String {
    format!("eddy:{}:rate:{unix_sec}", tag(tenant))
}

/// Sorted set of callbacks waiting for their next delivery attempt.
pub fn callback_retries(tenant: &TenantId) -> String {
    format!("eddy:{}:cb:retry", tag(tenant))
}

/// Stream of callbacks that could not be delivered within their max age.
pub fn callback_dead_letters(tenant: &TenantId) -> String {
    format!("eddy:{}:cb:dlq", tag(tenant))
}

/// Hash of API keys: sha256(key) → key JSON (global: a key names its tenant).
pub const API_KEYS: &str = "eddy:keys";

/// Hash of a tenant's keys: key id → sha256 of the key.
pub fn tenant_keys(tenant: &TenantId) -> String {
    format!("eddy:{}:keys", tag(tenant))
}

/// Pub/sub channel on which a gateway instance hears about finished sync
/// invocations.
pub fn reply_channel(gateway: &str) -> String {
    format!("eddy:reply:{gateway}")
}

/// Per-function counters of completed invocations and their busy time
/// (`done`, `busy_us`), for the controller's service-time estimate.
pub fn stats(tenant: &TenantId, function: &FunctionName) -> String {
    format!("eddy:{}:stats:{function}", tag(tenant))
}

/// Sorted set of streams by last activity (ms): what the controller looks
/// at. Idle streams fall out of its window and cost nothing.
pub const ACTIVE: &str = "eddy:active";

/// Sorted set of tenants with invocation retries waiting (score: when to
/// look next, ms). Workers look only at members that are due, so a tenant
/// without retries costs nothing.
pub const DUE_RETRIES: &str = "eddy:due:retries";

/// Sorted set of tenants with callbacks to deliver, reclaim or retry
/// (score: when to look next, ms).
pub const DUE_CALLBACKS: &str = "eddy:due:callbacks";

/// Sorted set of every tenant's schedules (`schedules::member`) by their
/// next tick (ms): the controller's leader reads only the due ones.
pub const SCHEDULES: &str = "eddy:schedules";

/// A dashboard session, by the hash of its cookie's token → `k:<key hash>`
/// or `a:<admin key hash>` (expiring).
pub fn session(token_hash: &str) -> String {
    format!("eddy:session:{token_hash}")
}

/// Pub/sub channel: a stream got work while it may have no warm capacity.
pub const WAKE: &str = "eddy:wake";

/// Pub/sub channel: the hash of an API key that was just revoked (gateways
/// drop it from their key cache).
pub const KEYS_REVOKED: &str = "eddy:keys:revoked";

/// Pub/sub channel: `<tenant>/<function>` was deployed, rolled back or
/// deleted (gateways drop their cached spec of it).
pub const FUNCTIONS_CHANGED: &str = "eddy:functions:changed";

/// Pub/sub channel: `<tenant> <sha256>...`, the modules a delete freed
/// (workers drop them and remove their compiled artifacts).
pub const MODULES_FREED: &str = "eddy:modules:freed";

/// Pub/sub channel: assignments changed.
pub const ASSIGN: &str = "eddy:assign";

/// Hash of live workers: worker id → heartbeat JSON.
pub const WORKERS: &str = "eddy:workers";

/// Hash of assignments: worker id → JSON map stream → concurrency.
pub const ASSIGNMENTS: &str = "eddy:assignments";

/// The controller leader lease (value: the leader's id).
pub const CONTROLLER_LEADER: &str = "eddy:controller:leader";

/// The controller's last decisions (JSON), for status, replicas and UIs.
pub const CONTROLLER_STATE: &str = "eddy:controller:state";

/// Idempotency key of one function → `<invocation id> <payload
/// fingerprint>`. Scoped to the function: the same key on another function
/// is another request.
pub fn idempotency(tenant: &TenantId, function: &FunctionName, key: &str) -> String {
    format!("eddy:{}:idem:{function}:{key}", tag(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_tenant_share_one_hash_tag() {
        let t = TenantId::new("acme").unwrap();
        let f = FunctionName::new("wordcount").unwrap();
        for key in [
            stream(&t, &f),
            function(&t, &f),
            functions(&t),
            invocation(&t, "x"),
            run(&t, "x"),
            delayed(&t),
            dead_letters(&t),
            callbacks(&t),
            idempotency(&t, &f, "k"),
            tenant(&t),
            rate_window(&t, 1),
            callback_retries(&t),
            callback_dead_letters(&t),
            stats(&t, &f),
            module(&t, "ab"),
            module_refs(&t),
            stored(&t),
            variables(&t),
            function_variables(&t, &f),
        ] {
            assert!(key.contains("{t:acme}"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
        }
        assert_eq!(stream(&t, &f), "eddy:{t:acme}:q:wordcount");
        assert_eq!(parse_stream(&stream(&t, &f)), Some((t.clone(), f.clone())));
        assert_eq!(parse_stream("eddy:{t:acme}:fn:wordcount"), None);
        assert_eq!(tenant_of(&callbacks(&t)), Some(t.clone()));
        assert_eq!(tenant_of("eddy:tenants"), None);
    }
}
