//! Tenant and function names: validated once, so that a name can be put into
//! a Redis key or a URL path without escaping. A name is shared, not copied:
//! it is cloned many times per request (extractors, envelopes, keys).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name `{name}`: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub reason: &'static str,
}

const MAX_NAME: usize = 64;

fn validate(kind: &'static str, name: &str) -> Result<(), NameError> {
    let err = |reason| NameError {
        kind,
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(err("must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err("only a-z, 0-9, `-` and `_` are allowed"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(err("must start with a letter or a digit"));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(std::sync::Arc<str>);

        impl $ty {
            /// Validates `name`.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                validate($kind, &name)?;
                Ok($ty(name.into()))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                n.0.to_string()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $ty::new(s)
            }
        }
    };
}

name_type!(
    /// A tenant: the unit of isolation, quota and key hash tag.
    TenantId,
    "tenant"
);
name_type!(
    /// A function name, unique within its tenant.
    FunctionName,
    "function"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let check = |name: &str, expect: Result<(), &str>| {
            let got = FunctionName::new(name)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(got, expect.map_err(str::to_string), "{name}");
        };
        check("wordcount", Ok(()));
        check("word-count_2", Ok(()));
        check("9lives", Ok(()));
        check(
            "",
            Err("invalid function name ``: must be 1 to 64 characters"),
        );
        check(
            "Upper",
            Err("invalid function name `Upper`: only a-z, 0-9, `-` and `_` are allowed"),
        );
        check(
            "a:b",
            Err("invalid function name `a:b`: only a-z, 0-9, `-` and `_` are allowed"),
        );
        check(
            "{t:x}",
            Err("invalid function name `{t:x}`: only a-z, 0-9, `-` and `_` are allowed"),
        );
        check(
            "-x",
            Err("invalid function name `-x`: must start with a letter or a digit"),
        );
        check(
            &"a".repeat(65),
            Err(&format!(
                "invalid function name `{}`: must be 1 to 64 characters",
                "a".repeat(65)
            )),
        );
    }
}
