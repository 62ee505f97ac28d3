//! The `tenant` and `function` labels of per-function metrics, bounded: a
//! process labels at most [`set_max_functions`] functions by name (the first
//! it sees, for its lifetime), and at most a tenth of them per tenant, so one
//! tenant cannot take every name. A tenant's other functions are summed
//! under `function="_other"`; once the bound is reached, new tenants' under
//! `tenant="_other"` too. Without a bound, series grow with tenants ×
//! functions, which tenants control (tenants themselves are the operator's).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::names::{FunctionName, TenantId};

/// The label values of functions over the bound.
pub const OTHER: &str = "_other";

/// How many functions a process labels by name unless told otherwise.
pub const DEFAULT_MAX_FUNCTIONS: usize = 1000;

static MAX: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_FUNCTIONS);

/// The functions labelled by name, and how many per tenant.
#[derive(Default)]
struct Labelled {
    functions: HashSet<(TenantId, FunctionName)>,
    per_tenant: HashMap<TenantId, usize>,
}

fn labelled() -> &'static Mutex<Labelled> {
    static SET: OnceLock<Mutex<Labelled>> = OnceLock::new();
    SET.get_or_init(Mutex::default)
}

/// Sets the bound (0: no function labelled by name). The binary sets it once
/// at start, before any metric is registered.
pub fn set_max_functions(n: usize) {
    MAX.store(n, Ordering::Relaxed);
}

/// The `(tenant, function)` label values of a function's series.
pub fn of(tenant: &TenantId, function: &FunctionName) -> (String, String) {
    let mut l = labelled().lock();
    let key = (tenant.clone(), function.clone());
    if l.functions.contains(&key) {
        return (tenant.to_string(), function.to_string());
    }
    let max = MAX.load(Ordering::Relaxed);
    let known = l.per_tenant.get(tenant).copied();
    if l.functions.len() >= max && known.is_none() {
        return (OTHER.to_string(), OTHER.to_string());
    }
    if l.functions.len() >= max || known.unwrap_or(0) >= (max / 10).max(1) {
        return (tenant.to_string(), OTHER.to_string());
    }
    l.functions.insert(key);
    *l.per_tenant.entry(tenant.clone()).or_default() += 1;
    (tenant.to_string(), function.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_past_the_bounds_share_labels() {
        set_max_functions(20);
        let t = |n: &str| TenantId::new(n).unwrap();
        let f = |n: &str| FunctionName::new(n).unwrap();
        let named = |a: &str, b: &str| (a.to_string(), b.to_string());
        // Two per tenant (a tenth of 20).
        assert_eq!(of(&t("acme"), &f("a")), named("acme", "a"));
        assert_eq!(of(&t("acme"), &f("b")), named("acme", "b"));
        assert_eq!(of(&t("acme"), &f("c")), named("acme", OTHER));
        for i in 0..9 {
            let tenant = t(&format!("t{i}"));
            assert_eq!(of(&tenant, &f("x")), named(tenant.as_str(), "x"));
            assert_eq!(of(&tenant, &f("y")), named(tenant.as_str(), "y"));
        }
        // The bound reached: a known tenant's new function under its own
        // `_other`, a new tenant's under `_other` alone.
        assert_eq!(of(&t("t1"), &f("z")), named("t1", OTHER));
        assert_eq!(of(&t("late"), &f("a")), named(OTHER, OTHER));
        // Labelled once, labelled for good.
        assert_eq!(of(&t("acme"), &f("a")), named("acme", "a"));
        set_max_functions(DEFAULT_MAX_FUNCTIONS);
    }
}
