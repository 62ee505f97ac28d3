//! The `tenant` and `function` labels of per-function metrics, bounded: a
//! process labels at most [`set_max_functions`] functions by name (the first
//! it sees, for its lifetime); every other function's series are summed under
//! `tenant="_other", function="_other"`. Without a bound, series grow with
//! tenants × functions, which a tenant controls.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::names::{FunctionName, TenantId};

/// The label values of functions over the bound.
pub const OTHER: &str = "_other";

/// How many functions a process labels by name unless told otherwise.
pub const DEFAULT_MAX_FUNCTIONS: usize = 1000;

static MAX: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_FUNCTIONS);

fn labelled() -> &'static Mutex<HashSet<(TenantId, FunctionName)>> {
    static SET: OnceLock<Mutex<HashSet<(TenantId, FunctionName)>>> = OnceLock::new();
    SET.get_or_init(Mutex::default)
}

/// Sets the bound (0: no function labelled by name). The binary sets it once
/// at start, before any metric is registered.
pub fn set_max_functions(n: usize) {
    MAX.store(n, Ordering::Relaxed);
}

/// The `(tenant, function)` label values of a function's series.
pub fn of(tenant: &TenantId, function: &FunctionName) -> (String, String) {
    let mut set = labelled().lock().unwrap_or_else(|e| e.into_inner());
    let key = (tenant.clone(), function.clone());
    if set.contains(&key) || set.len() < MAX.load(Ordering::Relaxed) && set.insert(key) {
        (tenant.to_string(), function.to_string())
    } else {
        (OTHER.to_string(), OTHER.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_past_the_bound_share_one_label() {
        set_max_functions(2);
        let t = TenantId::new("acme").unwrap();
        let f = |n: &str| FunctionName::new(n).unwrap();
        assert_eq!(of(&t, &f("a")), ("acme".into(), "a".into()));
        assert_eq!(of(&t, &f("b")), ("acme".into(), "b".into()));
        assert_eq!(of(&t, &f("c")), (OTHER.into(), OTHER.into()));
        // Labelled once, labelled for good.
        assert_eq!(of(&t, &f("a")), ("acme".into(), "a".into()));
        set_max_functions(DEFAULT_MAX_FUNCTIONS);
    }
}
