//! Write [Eddy](https://example.invalid/eddy) processors in plain Rust.
//!
//! An Eddy processor is a WebAssembly component (`wasm32-wasip2`) that
//! implements the `eddy:processor@0.2.0` world (`wit/processor.wit` in the
//! Eddy repository): Eddy calls its `handle` export once per invocation, in a
//! fresh instance, and the processor may call back into the host to
//! [`emit`] follow-up invocations and to [`log`].
//!
//! This crate hides the generated bindings. A processor is one function and
//! one macro call in a `cdylib` crate:
//!
//! ```no_run
//! use eddy_sdk::{Error, Invocation, Output};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Request {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Reply {
//!     greeting: String,
//!     attempt: u32,
//! }
//!
//! fn handle(inv: Invocation) -> Result<Output, Error> {
//!     // Bad JSON becomes a non-retryable `bad-input` error.
//!     let req: Request = inv.json()?;
//!     if req.name.is_empty() {
//!         return Err(Error::bad_input("`name` must not be empty"));
//!     }
//!     let greeting = format!("{}, {}!", inv.config("greeting").unwrap_or("Hello"), req.name);
//!     eddy_sdk::info(format!("greeted {}", req.name));
//!
//!     // Queue a follow-up invocation of another function in the same run.
//!     // It is committed only if this invocation succeeds.
//!     if let Some(audit) = inv.config("audit") {
//!         eddy_sdk::emit_json(audit, &serde_json::json!({ "greeted": req.name }))?;
//!     }
//!
//!     Output::json(&Reply { greeting, attempt: inv.attempt })
//! }
//!
//! eddy_sdk::export!(handle);
//! ```
//!
//! with a `Cargo.toml` such as:
//!
//! ```toml
//! [package]
//! name = "greeter"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! eddy-sdk = { path = "../../sdk" }
//! serde = { version = "1", features = ["derive"] }
//! serde_json = "1"
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the component
//! is `target/wasm32-wasip2/release/greeter.wasm`.
//!
//! # Errors and retries
//!
//! A handler returns `Err(`[`Error`]`)` for failures it detects itself. Eddy
//! retries (with backoff) only errors made with [`Error::retryable`]; others
//! ([`Error::new`], [`Error::bad_input`], [`Error::internal`]) fail the
//! invocation at once. A panic, a trap or a limit hit (time, memory, output
//! size, emits, logs) also ends the invocation, and its follow-ups are dropped.
//!
//! # Standard output
//!
//! `println!` and `eprintln!` work (WASI stdout and stderr) and count, like
//! [`log`] calls, against the function's log limit. Prefer the leveled
//! functions ([`info`], [`warn`], ...): they keep the level.

#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The bindings generated from `wit/processor.wit`. Not part of the stable
/// API: use the re-exports at the crate root.
#[doc(hidden)]
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod wit {
    wit_bindgen::generate!({
        world: "processor",
        path: "../../wit",
        // The export macro is used from the processor's crate (through
        // `eddy_sdk::export!`), so it must be public and find these bindings
        // through `$crate`.
        pub_export_macro: true,
        default_bindings_module: "$crate::wit",
        export_macro_name: "__export_processor",
        additional_derives: [Clone, PartialEq, Eq],
    });
}

pub use wit::eddy::processor::types::{EmitOptions, Error, Invocation, Level, Output};

use wit::eddy::processor::host;

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "config")]
pub mod config;

/// Common MIME types.
pub mod mime {
    /// `application/json`, the default content type of follow-ups.
    pub const JSON: &str = "application/json";
    /// `text/plain; charset=utf-8`, the content type of [`Output::text`](crate::Output::text).
    pub const TEXT: &str = "text/plain; charset=utf-8";
    /// `text/csv`.
    pub const CSV: &str = "text/csv";
    /// `application/octet-stream`.
    pub const OCTET_STREAM: &str = "application/octet-stream";
}

impl Invocation {
    /// Parses the payload as JSON.
    ///
    /// Malformed JSON, or JSON that does not fit `T`, is reported as a
    /// non-retryable [`Error::bad_input`] naming the problem, so `?` is all a
    /// handler needs.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::bad_input(format!("the payload is not valid JSON input: {e}")))
    }

    /// The payload as UTF-8 text; a non-retryable [`Error::bad_input`] if it
    /// is not valid UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.payload)
            .map_err(|e| Error::bad_input(format!("the payload is not valid UTF-8: {e}")))
    }

    /// The configuration value `key` (set when the function was deployed), if
    /// any. If a key appears more than once the first value wins.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Time left until [`Invocation::deadline_ms`], when the host stops the
    /// instance; zero once it has passed. Check it before work that cannot
    /// finish in time (and return [`Error::retryable`] instead).
    pub fn time_left(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::time::Duration::from_millis(self.deadline_ms).saturating_sub(now)
    }

    /// The configuration value `key`, or `default` when it is not set.
    pub fn config_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.config(key).unwrap_or(default)
    }

    /// The content type without parameters, trimmed: `text/csv` for
    /// `text/csv; charset=utf-8`. Compare it case-insensitively.
    pub fn media_type(&self) -> &str {
        self.content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    }

    /// Whether the payload is declared as JSON (`application/json` or any
    /// `+json` type).
    pub fn is_json(&self) -> bool {
        let media = self.media_type().to_ascii_lowercase();
        media == mime::JSON || media.ends_with("+json")
    }
}

impl Output {
    /// A JSON output (`application/json`).
    ///
    /// Returns a `Result` so that it can end a handler directly; it fails
    /// (non-retryable, code `internal`) only when `value` cannot be
    /// serialized, e.g. a map with non-string keys.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output, Error> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("serializing the output as JSON: {e}")))?;
        Ok(Output {
            content_type: mime::JSON.to_string(),
            payload,
        })
    }

    /// A text output (`text/plain; charset=utf-8`).
    pub fn text(text: impl Into<String>) -> Output {
        Output {
            content_type: mime::TEXT.to_string(),
            payload: text.into().into_bytes(),
        }
    }

    /// An output of any content type.
    pub fn bytes(content_type: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Output {
        Output {
            content_type: content_type.into(),
            payload: bytes.into(),
        }
    }
}

impl Error {
    /// Code of errors made by [`Error::bad_input`] (and by
    /// [`Invocation::json`] and [`Invocation::text`]).
    pub const BAD_INPUT: &'static str = "bad-input";
    /// Code of errors made by [`Error::internal`].
    pub const INTERNAL: &'static str = "internal";

    /// A non-retryable error: Eddy fails the invocation without retrying.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A retryable error: Eddy retries the invocation with backoff (up to
    /// the function's attempt limit). Use it for transient failures.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            code: code.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// A non-retryable `bad-input` error: the payload cannot be processed and
    /// retrying would not help.
    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::new(Error::BAD_INPUT, message)
    }

    /// A non-retryable `internal` error: a bug or an impossible state in the
    /// processor itself.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Error::INTERNAL, message)
    }
}

/// Queues a follow-up invocation of `function` in the same run, with a JSON
/// payload (`application/json`).
///
/// Follow-ups are committed only if this invocation succeeds. Exceeding the
/// function's emit limits (count or total bytes) ends this invocation with a
/// `limit exceeded` error: the call does not return.
pub fn emit(function: &str, payload: impl AsRef<[u8]>) {
    host::emit(
        function,
        payload.as_ref(),
        &EmitOptions { content_type: None },
    );
}

/// Like [`emit`], with `value` serialized as JSON. Fails (non-retryable, code
/// `internal`) only when `value` cannot be serialized.
pub fn emit_json<T: Serialize + ?Sized>(function: &str, value: &T) -> Result<(), Error> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| Error::internal(format!("serializing a follow-up as JSON: {e}")))?;
    emit(function, payload);
    Ok(())
}

/// Like [`emit`], with an explicit content type.
pub fn emit_with(function: &str, payload: impl AsRef<[u8]>, content_type: &str) {
    host::emit(
        function,
        payload.as_ref(),
        &EmitOptions {
            content_type: Some(content_type.to_string()),
        },
    );
}

/// Appends a line to the invocation's log at `level`.
///
/// Logs count against the function's log limit; exceeding it ends the
/// invocation with a `limit exceeded` error.
pub fn log(level: Level, message: impl AsRef<str>) {
    host::log(level, message.as_ref());
}

/// Logs at [`Level::Trace`].
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message);
}

/// Logs at [`Level::Debug`].
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Logs at [`Level::Info`].
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Logs at [`Level::Warn`].
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Logs at [`Level::Error`].
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}

/// Exports a handler as the processor's `handle`.
///
/// The argument is the path of a function
/// `fn(Invocation) -> Result<Output, Error>`. Use it once, in the `cdylib`
/// crate of the processor:
///
/// ```no_run
/// fn handle(inv: eddy_sdk::Invocation) -> Result<eddy_sdk::Output, eddy_sdk::Error> {
///     Ok(eddy_sdk::Output::bytes(inv.content_type, inv.payload))
/// }
///
/// eddy_sdk::export!(handle);
/// ```
#[macro_export]
macro_rules! export {
    ($handler:path) => {
        const _: () = {
            struct EddyProcessor;

            impl $crate::__private::Guest for EddyProcessor {
                fn handle(
                    invocation: $crate::Invocation,
                ) -> ::core::result::Result<$crate::Output, $crate::Error> {
                    $crate::__private::call($handler, invocation)
                }
            }

    $crate::wit::__export_processor!(EddyProcessor with_types_in $crate::wit);
        };
    };
}

/// Used by [`export!`]; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::wit::Guest;
    use crate::{Error, Invocation, Output};

    /// Calls the handler; its bound gives a clear error for a handler of the
    /// wrong type.
    #[inline(always)]
    pub fn call<F>(handler: F, invocation: Invocation) -> Result<Output, Error>
    where
        F: FnOnce(Invocation) -> Result<Output, Error>,
    {
        handler(invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(content_type: &str, payload: &[u8]) -> Invocation {
        Invocation {
            id: "0190b7a4-0000-7000-8000-000000000001".into(),
            run_id: "0190b7a4-0000-7000-8000-000000000001".into(),
            function: "test".into(),
            attempt: 1,
            depth: 0,
            content_type: content_type.into(),
            payload: payload.to_vec(),
            config: vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("a".into(), "3".into()),
            ],
            tenant: "acme".into(),
            version: 3,
            deadline_ms: 0,
            traceparent: None,
        }
    }

    #[test]
    fn time_left_counts_down_to_the_deadline() {
        let mut inv = invocation(mime::JSON, b"{}");
        assert_eq!(inv.time_left(), std::time::Duration::ZERO, "long past");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        inv.deadline_ms = now + 5_000;
        let left = inv.time_left();
        assert!(
            left > std::time::Duration::from_secs(4) && left <= std::time::Duration::from_secs(5),
            "{left:?}"
        );
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Req {
        text: String,
    }

    #[test]
    fn json_ok_and_bad_input() {
        let inv = invocation(mime::JSON, br#"{"text":"hi"}"#);
        assert_eq!(inv.json::<Req>().unwrap(), Req { text: "hi".into() });

        let err = invocation(mime::JSON, b"{nope").json::<Req>().unwrap_err();
        assert_eq!(err.code, "bad-input");
        assert!(!err.retryable);
        assert!(err.message.contains("not valid JSON"), "{}", err.message);

        let err = invocation(mime::JSON, br#"{"other":1}"#)
            .json::<Req>()
            .unwrap_err();
        assert_eq!(err.code, "bad-input");
    }

    #[test]
    fn text() {
        assert_eq!(invocation(mime::TEXT, b"hello").text().unwrap(), "hello");
        let err = invocation(mime::TEXT, &[0xff, 0xfe]).text().unwrap_err();
        assert_eq!(err.code, Error::BAD_INPUT);
    }

    #[test]
    fn config_lookup() {
        let inv = invocation(mime::JSON, b"");
        assert_eq!(inv.config("a"), Some("1"));
        assert_eq!(inv.config("b"), Some("2"));
        assert_eq!(inv.config("c"), None);
        assert_eq!(inv.config_or("c", "x"), "x");
        assert_eq!(inv.config.len(), 3);
    }

    #[test]
    fn media_type() {
        let inv = invocation(" Text/CSV ; charset=utf-8", b"");
        assert_eq!(inv.media_type(), "Text/CSV");
        assert!(!inv.is_json());
        assert!(invocation("application/json", b"").is_json());
        assert!(invocation("application/cloudevents+json; x=y", b"").is_json());
        assert_eq!(invocation("", b"").media_type(), "");
    }

    #[test]
    fn outputs() {
        let out = Output::json(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(out.content_type, "application/json");
        assert_eq!(out.payload, br#"{"a":1}"#);

        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), 3);
        let err = Output::json(&bad).unwrap_err();
        assert_eq!(err.code, Error::INTERNAL);

        let out = Output::text("hi");
        assert_eq!(out.content_type, mime::TEXT);
        assert_eq!(out.payload, b"hi");

        let out = Output::bytes("image/png", vec![1, 2, 3]);
        assert_eq!(out.content_type, "image/png");
        assert_eq!(out.payload, [1, 2, 3]);
    }

    #[test]
    fn errors() {
        let e = Error::new("nope", "no");
        assert_eq!(
            (e.code.as_str(), e.message.as_str(), e.retryable),
            ("nope", "no", false)
        );
        let e = Error::retryable("later", "try again");
        assert!(e.retryable);
        assert_eq!(e.code, "later");
        let e = Error::bad_input("bad");
        assert_eq!((e.code.as_str(), e.retryable), ("bad-input", false));
    }
}
