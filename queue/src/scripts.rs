//! The Lua scripts, loaded once per process (EVALSHA, falling back to EVAL
//! after a Redis restart flushed the script cache).

use std::sync::LazyLock;

use redis::Script;

/// A script that counts or checks a tenant's stored bytes, with the
/// functions of `lua/stored.lua` before it.
macro_rules! with_stored {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("lua/stored.lua"), include_str!($file))))
    };
}

pub(crate) static ENQUEUE: LazyLock<Script> = with_stored!("lua/enqueue.lua");
pub(crate) static COMPLETE: LazyLock<Script> = with_stored!("lua/complete.lua");
pub(crate) static DEPLOY: LazyLock<Script> = with_stored!("lua/deploy.lua");
pub(crate) static PUT_ARTIFACT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/put_artifact.lua")));
pub(crate) static DELETE_FUNCTION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_function.lua")));
pub(crate) static SET_VARIABLE: LazyLock<Script> = with_stored!("lua/set_variable.lua");
pub(crate) static DELETE_VARIABLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_variable.lua")));
pub(crate) static RESEAL_VARIABLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reseal_variable.lua")));
pub(crate) static PUT_SCHEDULE: LazyLock<Script> = with_stored!("lua/put_schedule.lua");
pub(crate) static DELETE_SCHEDULE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_schedule.lua")));
pub(crate) static SETTLE_SCHEDULE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/settle_schedule.lua")));
pub(crate) static REINDEX_SCHEDULE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reindex_schedule.lua")));
pub(crate) static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote.lua")));
pub(crate) static REDRIVE: LazyLock<Script> = with_stored!("lua/redrive.lua");
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
pub(crate) static FORGET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/forget.lua")));
pub(crate) static CALLBACK_RETRY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/cb_retry.lua")));
pub(crate) static CALLBACK_PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/cb_promote.lua")));
pub(crate) static DUE_CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/due_claim.lua")));
pub(crate) static DUE_SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/due_settle.lua")));
pub(crate) static DUE_AUDIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/due_audit.lua")));
pub(crate) static CALLBACK_NEXT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/cb_next.lua")));

#[cfg(test)]
mod tests {
    use eddy_protocol::ErrorClass;

    /// Every script, as its source.
    const SOURCES: [&str; 22] = [
        include_str!("lua/stored.lua"),
        include_str!("lua/enqueue.lua"),
        include_str!("lua/complete.lua"),
        include_str!("lua/deploy.lua"),
        include_str!("lua/delete_function.lua"),
        include_str!("lua/promote.lua"),
        include_str!("lua/redrive.lua"),
        include_str!("lua/release.lua"),
        include_str!("lua/forget.lua"),
        include_str!("lua/cb_retry.lua"),
        include_str!("lua/cb_promote.lua"),
        include_str!("lua/cb_next.lua"),
        include_str!("lua/due_claim.lua"),
        include_str!("lua/due_settle.lua"),
        include_str!("lua/due_audit.lua"),
        include_str!("lua/set_variable.lua"),
        include_str!("lua/delete_variable.lua"),
        include_str!("lua/reseal_variable.lua"),
        include_str!("lua/put_schedule.lua"),
        include_str!("lua/delete_schedule.lua"),
        include_str!("lua/settle_schedule.lua"),
        include_str!("lua/reindex_schedule.lua"),
    ];

    #[test]
    fn every_class_the_scripts_write_is_a_variant() {
        let mut seen = 0;
        for source in SOURCES {
            for (i, _) in source.match_indices("class = '") {
                let rest = &source[i + "class = '".len()..];
                let name = &rest[..rest.find('\'').unwrap()];
                assert_ne!(
                    ErrorClass::parse(name),
                    ErrorClass::Unknown,
                    "a script writes class `{name}`, which protocol::ErrorClass does not have"
                );
                seen += 1;
            }
        }
        assert!(
            seen >= 3,
            "found only {seen} classes written by the scripts"
        );
    }
}
