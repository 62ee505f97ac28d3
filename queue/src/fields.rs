//! The one decoder for numbers in hashes and stream entries: a missing or
//! empty field is `None` (its reader says what absence means; the scripts
//! write `''` for "none", e.g. an unpinned version), a field that does not
//! parse is [`Error::Corrupt`] naming it, never a silent 0.

use std::str::FromStr;

use crate::{Error, Result};

/// `key` of `what` (e.g. `invocation <id>`) as a number, if present.
pub(crate) fn number<T: FromStr>(
    what: &str,
    key: &str,
    value: Option<impl AsRef<[u8]>>,
) -> Result<Option<T>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value.as_ref();
    if value.is_empty() {
        return Ok(None);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "{what}: field `{key}` is not a number: {:?}",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            ))
        })
}

/// A counter (`HINCRBY`): absent is 0, and a negative value, which only a
/// bug could write, reads as 0 rather than wrapping.
pub(crate) fn counter(what: &str, key: &str, value: Option<impl AsRef<[u8]>>) -> Result<u64> {
    Ok(number::<i64>(what, key, value)?.unwrap_or(0).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_or_empty_is_none_and_garbage_is_corrupt() {
        assert_eq!(number::<u64>("r", "k", Some("42")).unwrap(), Some(42));
        assert_eq!(number::<u64>("r", "k", None::<&str>).unwrap(), None);
        let e = number::<u64>("invocation x", "depth", Some("4x")).unwrap_err();
        assert!(e.to_string().contains("invocation x: field `depth`"), "{e}");
        assert!(number::<u32>("r", "k", Some(b"\xff".as_slice())).is_err());
        assert_eq!(counter("t", "pending", Some("-3")).unwrap(), 0);
        assert_eq!(counter("t", "pending", None::<&str>).unwrap(), 0);
        assert_eq!(counter("t", "pending", Some("")).unwrap(), 0);
        assert_eq!(
            number::<u32>("invocation x", "version", Some("")).unwrap(),
            None
        );
        assert!(counter("t", "pending", Some(" 1")).is_err());
    }
}
