//! Variables and secrets (feature `config`), through `wasi:config/store`,
//! the WASI interface other hosts implement too.
//!
//! A function sees its tenant's variables and its own (which win by name),
//! set with `eddy var set` or the API; changes show on the next invocation.
//! Secrets read the same way; Eddy redacts their values from this
//! invocation's logs and error messages.
//!
//! ```no_run
//! # fn f() -> Result<(), eddy_sdk::Error> {
//! let token = eddy_sdk::config::require("API_TOKEN")?;
//! let region = eddy_sdk::config::get("REGION")?.unwrap_or_else(|| "eu".into());
//! # Ok(()) }
//! ```

use crate::Error;

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/wasi-config",
        world: "wasi:config/imports",
    });
}

use bindings::wasi::config::store;

fn unavailable(e: store::Error) -> Error {
    let message = match e {
        store::Error::Upstream(m) | store::Error::Io(m) => m,
    };
    Error::retryable("config-unavailable", message)
}

/// The value of `name`, `None` when it is not set. A failure to read the
/// variables is a retryable error.
pub fn get(name: &str) -> Result<Option<String>, Error> {
    store::get(name).map_err(unavailable)
}

/// The value of `name`; not set is a non-retryable `config-missing` error
/// naming it.
pub fn require(name: &str) -> Result<String, Error> {
    get(name)?.ok_or_else(|| {
        Error::new(
            "config-missing",
            format!("variable `{name}` is not set (eddy var set {name} ...)"),
        )
    })
}

/// Every variable the function sees, as (name, value).
pub fn all() -> Result<Vec<(String, String)>, Error> {
    store::get_all().map_err(unavailable)
}
