//! Variables and secrets: what a function reads through `wasi:config/store`.
//!
//! A tenant's variables apply to all its functions; a function's own
//! variables override them by name. A variable is plain (its value is shown
//! to the tenant) or secret: write-only, stored sealed with the operator's
//! key ([`Keyring`]), opened only by workers when a guest asks for it.
//!
//! Sealing is ChaCha20-Poly1305 (ring) with a random 96-bit nonce per value
//! and the tenant, scope and name as associated data, so a sealed value
//! copied to another tenant, function or name does not open.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::names::{FunctionName, TenantId};

/// Longest variable name.
pub const MAX_NAME: usize = 64;
/// Largest value, in bytes (a PEM certificate chain fits).
pub const MAX_VALUE: usize = 8 << 10;
/// Variables one scope (the tenant, or one function) may have.
pub const MAX_PER_SCOPE: usize = 64;

/// A variable name: 1 to [`MAX_NAME`] bytes of ASCII letters, digits, `_`,
/// `-` and `.`, starting with a letter or `_`. Case matters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if name.len() > MAX_NAME || !ok_first || !ok_rest {
        return Err(format!(
            "invalid variable name `{}`: 1 to {MAX_NAME} ASCII letters, digits, `_`, `-` or `.`, \
             starting with a letter or `_`",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// A value: at most [`MAX_VALUE`] bytes.
pub fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE {
        return Err(format!(
            "the value is {} bytes, more than the limit of {MAX_VALUE} bytes",
            value.len()
        ));
    }
    Ok(())
}

/// Where a variable is set: for the whole tenant, or for one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Tenant,
    Function(&'a FunctionName),
}

/// A variable as stored in Redis (a hash field's value).
#[derive(Clone, PartialEq, Eq)]
pub enum Stored {
    /// `p:<value>`.
    Plain(String),
    /// `s:<key id>:<base64 of nonce, ciphertext and tag>`.
    Sealed { key_id: String, data: String },
}

impl fmt::Debug for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stored::Plain(_) => f.write_str("Plain(..)"),
            Stored::Sealed { key_id, .. } => write!(f, "Sealed({key_id})"),
        }
    }
}

impl Stored {
    pub fn parse(s: &str) -> Option<Stored> {
        if let Some(v) = s.strip_prefix("p:") {
            return Some(Stored::Plain(v.to_string()));
        }
        let (key_id, data) = s.strip_prefix("s:")?.split_once(':')?;
        Some(Stored::Sealed {
            key_id: key_id.to_string(),
            data: data.to_string(),
        })
    }

    pub fn encode(&self) -> String {
        match self {
            Stored::Plain(v) => format!("p:{v}"),
            Stored::Sealed { key_id, data } => format!("s:{key_id}:{data}"),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, Stored::Sealed { .. })
    }
}

/// A variable as a guest gets it. `Debug` never shows a secret's value.
#[derive(Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = if self.secret {
            &"<secret>"
        } else {
            &self.value
        };
        f.debug_struct("Variable")
            .field("name", &self.name)
            .field("value", value)
            .field("secret", &self.secret)
            .finish()
    }
}

/// What a reseal did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resealed {
    /// Secrets sealed again with the current key.
    pub resealed: u64,
    /// Secrets already under the current key.
    pub current: u64,
    /// Secrets that no key opens (sealed with a key no longer listed, or
    /// damaged): left as they are, and named in the log.
    pub unopenable: u64,
}

/// A secret a worker could not open, by name, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unopened {
    pub name: String,
    pub reason: String,
}

/// The associated data that binds a sealed value to where it is stored.
fn aad(tenant: &TenantId, scope: Scope<'_>, name: &str) -> Vec<u8> {
    let scope = match scope {
        Scope::Tenant => "",
        Scope::Function(f) => f.as_str(),
    };
    format!("eddy-secret\0{tenant}\0{scope}\0{name}").into_bytes()
}

const NONCE: usize = aead::NONCE_LEN;

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it was sealed with key `{0}`, which this process does not have (EDDY_SECRETS_KEYS)")]
    UnknownKey(String),
    #[error("it does not open with key `{0}` (damaged, or moved from elsewhere)")]
    Damaged(String),
}

/// Derives a key's artifact-signing key.
const ARTIFACT_LABEL: &[u8] = b"eddy artifact signing v1";
/// The first bytes of a signed artifact.
const ARTIFACT_MAGIC: &[u8] = b"EDA1";

/// The HMAC message of an artifact: module, engine, then the SHA-256 of
/// each chunk (hashed on every core: this is on a cold start's path).
fn artifact_tag(
    key: &ring::hmac::Key,
    sha256: &str,
    engine: &str,
    chunks: &[&[u8]],
) -> ring::hmac::Tag {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len().max(1));
    let per = chunks.len().div_ceil(threads.max(1)).max(1);
    let digests: Vec<ring::digest::Digest> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .chunks(per)
            .map(|group| {
                s.spawn(move || {
                    group
                        .iter()
                        .map(|c| ring::digest::digest(&ring::digest::SHA256, c))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(sha256.as_bytes());
    ctx.update(&[0]);
    ctx.update(engine.as_bytes());
    ctx.update(&[0]);
    ctx.update(&(chunks.len() as u64).to_le_bytes());
    for d in &digests {
        ctx.update(d.as_ref());
    }
    ctx.sign()
}

/// The operator's secret keys, from `EDDY_SECRETS_KEYS`: `id:base64,...`,
/// each key 32 random bytes. The first seals; every one opens, so a key is
/// rotated by putting the new one first, resealing, then dropping the old.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
    /// Per key, an HMAC key derived from it that signs compiled artifacts
    /// shared through Redis (see [`Keyring::sign_artifact`]).
    signing: Vec<ring::hmac::Key>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("keys", &ids).finish()
    }
}

impl Keyring {
    /// Parses `id:base64,id:base64`. Empty: `Ok(None)` (secrets off).
    pub fn parse(spec: &str) -> Result<Option<Keyring>, String> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        let mut signing = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((id, key)) = entry.split_once(':') else {
                return Err(
                    "each key is `id:base64` (32 random bytes, e.g. `openssl rand -base64 32`)"
                        .into(),
                );
            };
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "key id `{}`: 1 to 32 ASCII letters, digits, `_` or `-`",
                    id.escape_debug()
                ));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(format!("key id `{id}` is listed twice"));
            }
            let bytes = B64
                .decode(key.trim())
                .map_err(|_| format!("key `{id}` is not base64"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "key `{id}` is {} bytes; a key is 32 random bytes (`openssl rand -base64 32`)",
                    bytes.len()
                ));
            }
            let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                .map_err(|_| format!("key `{id}` was refused by the cipher"))?;
            keys.push((id.to_string(), LessSafeKey::new(unbound)));
            // Its own key for artifacts: HMAC(key, label), so the sealing
            // key itself is used for one purpose only.
            let derived = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
                ARTIFACT_LABEL,
            );
            signing.push(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                derived.as_ref(),
            ));
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Keyring {
            keys,
            signing,
            random: SystemRandom::new(),
        }))
    }

    /// A new random key as an `EDDY_SECRETS_KEYS` entry, `id:base64`.
    pub fn generate(id: &str) -> Result<String, String> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "the system random source failed".to_string())?;
        Ok(format!("{id}:{}", B64.encode(key)))
    }

    /// Signs a compiled artifact of module `sha256` for engine `engine`,
    /// stored as `chunks`, with the current key; returns the signature:
    /// `EDA1`, the key id's length and id, the chunk count (u32 LE) and the
    /// HMAC-SHA256 tag. A worker maps such an artifact as native code, so
    /// one read from Redis is trusted only with a tag of a key it holds
    /// ([`Keyring::verify_artifact`]): write access to Redis alone cannot
    /// run code in a worker.
    pub fn sign_artifact(&self, sha256: &str, engine: &str, chunks: &[&[u8]]) -> Vec<u8> {
        let id = &self.keys[0].0;
        let tag = artifact_tag(&self.signing[0], sha256, engine, chunks);
        let mut out = Vec::with_capacity(ARTIFACT_MAGIC.len() + 1 + id.len() + 4 + 32);
        out.extend_from_slice(ARTIFACT_MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The chunk count a signature names, if it is one.
    pub fn artifact_chunks(signature: &[u8]) -> Option<usize> {
        let rest = signature.strip_prefix(ARTIFACT_MAGIC)?;
        let (&len, rest) = rest.split_first()?;
        let (_, rest) = rest.split_at_checked(usize::from(len))?;
        let (n, _) = rest.split_at_checked(4)?;
        Some(u32::from_le_bytes(n.try_into().ok()?) as usize)
    }

    /// Whether a key of this ring signed `chunks` as the artifact of this
    /// module for this engine.
    pub fn verify_artifact(
        &self,
        sha256: &str,
        engine: &str,
        signature: &[u8],
        chunks: &[&[u8]],
    ) -> bool {
        let check = || -> Option<bool> {
            let rest = signature.strip_prefix(ARTIFACT_MAGIC)?;
            let (&len, rest) = rest.split_first()?;
            let (id, rest) = rest.split_at_checked(usize::from(len))?;
            let (n, tag) = rest.split_at_checked(4)?;
            if u32::from_le_bytes(n.try_into().ok()?) as usize != chunks.len() || tag.len() != 32 {
                return Some(false);
            }
            let i = self.keys.iter().position(|(k, _)| k.as_bytes() == id)?;
            let want = artifact_tag(&self.signing[i], sha256, engine, chunks);
            // Constant time: every byte is compared whatever the first
            // differing one.
            let diff = want
                .as_ref()
                .iter()
                .zip(tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            Some(diff == 0)
        };
        check().unwrap_or(false)
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `value` for `tenant`'s `name` in `scope` with the current key.
    pub fn seal(
        &self,
        tenant: &TenantId,
        scope: Scope<'_>,
        name: &str,
        value: &str,
    ) -> Result<Stored, String> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE];
        self.random
            .fill(&mut nonce)
            .map_err(|_| "the system random source failed".to_string())?;
        let mut data = value.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(tenant, scope, name)),
            &mut data,
        )
        .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(Stored::Sealed {
            key_id: id.clone(),
            data: B64.encode(out),
        })
    }

    /// Opens a sealed value.
    pub fn open(
        &self,
        tenant: &TenantId,
        scope: Scope<'_>,
        name: &str,
        key_id: &str,
        data: &str,
    ) -> Result<String, OpenError> {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return Err(OpenError::UnknownKey(key_id.to_string()));
        };
        let damaged = || OpenError::Damaged(key_id.to_string());
        let bytes = B64.decode(data).map_err(|_| damaged())?;
        if bytes.len() < NONCE {
            return Err(damaged());
        }
        let (nonce, sealed) = bytes.split_at(NONCE);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| damaged())?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad(tenant, scope, name)), &mut sealed)
            .map_err(|_| damaged())?;
        String::from_utf8(plain.to_vec()).map_err(|_| damaged())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    #[test]
    fn artifacts_verify_only_with_a_key_for_their_module_and_engine() {
        let ring = Keyring::parse(&format!("k1:{K1}")).unwrap().unwrap();
        let chunks: [&[u8]; 3] = [b"native", b" ", b"code"];
        let sig = ring.sign_artifact("aa", "e1", &chunks);
        assert_eq!(Keyring::artifact_chunks(&sig), Some(3));
        assert!(ring.verify_artifact("aa", "e1", &sig, &chunks));
        // Another module, another engine, a changed or missing chunk, a
        // different split of the same bytes, a damaged signature.
        assert!(!ring.verify_artifact("ab", "e1", &sig, &chunks));
        assert!(!ring.verify_artifact("aa", "e2", &sig, &chunks));
        assert!(!ring.verify_artifact("aa", "e1", &sig, &[b"native", b" ", b"codE"]));
        assert!(!ring.verify_artifact("aa", "e1", &sig, &chunks[..2]));
        assert!(!ring.verify_artifact("aa", "e1", &sig, &[b"nativ", b"e ", b"code"]));
        let mut flipped = sig.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(!ring.verify_artifact("aa", "e1", &flipped, &chunks));
        assert!(!ring.verify_artifact("aa", "e1", &sig[..10], &chunks));
        assert!(!ring.verify_artifact("aa", "e1", b"", &chunks));
        // A ring without the signing key; after a rotation the old key
        // still verifies what it signed.
        let other = Keyring::parse(&format!("k1:{K2}")).unwrap().unwrap();
        assert!(!other.verify_artifact("aa", "e1", &sig, &chunks));
        let rotated = Keyring::parse(&format!("k2:{K2},k1:{K1}"))
            .unwrap()
            .unwrap();
        assert!(rotated.verify_artifact("aa", "e1", &sig, &chunks));
    }

    #[test]
    fn names_and_values() {
        for ok in ["API_TOKEN", "a", "_x", "db.url", "x-1", &"a".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["", "1a", "-a", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_value(&"x".repeat(MAX_VALUE)).unwrap();
        assert_eq!(
            check_value(&"x".repeat(MAX_VALUE + 1)).unwrap_err(),
            "the value is 8193 bytes, more than the limit of 8192 bytes"
        );
    }

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let ring = Keyring::parse(&format!("k1:{K1}")).unwrap().unwrap();
        let f = FunctionName::new("fetch").unwrap();
        let sealed = ring
            .seal(&t("acme"), Scope::Function(&f), "TOKEN", "s3cr3t")
            .unwrap();
        let encoded = sealed.encode();
        assert!(encoded.starts_with("s:k1:"), "{encoded}");
        assert!(!encoded.contains("s3cr3t"));
        let Some(Stored::Sealed { key_id, data }) = Stored::parse(&encoded) else {
            panic!("{encoded}")
        };
        assert_eq!(
            ring.open(&t("acme"), Scope::Function(&f), "TOKEN", &key_id, &data)
                .unwrap(),
            "s3cr3t"
        );
        // Another tenant, scope or name: does not open.
        for (tenant, scope, name) in [
            ("other", Scope::Function(&f), "TOKEN"),
            ("acme", Scope::Tenant, "TOKEN"),
            ("acme", Scope::Function(&f), "TOKEN2"),
        ] {
            assert_eq!(
                ring.open(&t(tenant), scope, name, &key_id, &data),
                Err(OpenError::Damaged("k1".into()))
            );
        }
        // Two seals of one value differ (a fresh nonce each).
        let again = ring
            .seal(&t("acme"), Scope::Function(&f), "TOKEN", "s3cr3t")
            .unwrap();
        assert_ne!(again, sealed);
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_first_key() {
        let old = Keyring::parse(&format!("k1:{K1}")).unwrap().unwrap();
        let sealed = old.seal(&t("acme"), Scope::Tenant, "A", "v").unwrap();
        let Stored::Sealed { key_id, data } = sealed else {
            panic!()
        };
        let both = Keyring::parse(&format!("k2:{K2}, k1:{K1}"))
            .unwrap()
            .unwrap();
        assert_eq!(both.current(), "k2");
        assert_eq!(
            both.open(&t("acme"), Scope::Tenant, "A", &key_id, &data)
                .unwrap(),
            "v"
        );
        let new = Keyring::parse(&format!("k2:{K2}")).unwrap().unwrap();
        assert_eq!(
            new.open(&t("acme"), Scope::Tenant, "A", &key_id, &data),
            Err(OpenError::UnknownKey("k1".into()))
        );
        // Same id, another key: damaged, not garbage.
        let liar = Keyring::parse(&format!("k1:{K2}")).unwrap().unwrap();
        assert_eq!(
            liar.open(&t("acme"), Scope::Tenant, "A", &key_id, &data),
            Err(OpenError::Damaged("k1".into()))
        );
    }

    #[test]
    fn key_specs() {
        assert!(Keyring::parse("").unwrap().is_none());
        assert!(Keyring::parse(" , ").unwrap().is_none());
        for (spec, err) in [
            ("nokey", "each key is `id:base64`"),
            ("k1:!!", "key `k1` is not base64"),
            ("k1:AAAA", "key `k1` is 3 bytes"),
            (&format!("k1:{K1},k1:{K2}"), "key id `k1` is listed twice"),
            (&format!("a b:{K1}"), "key id `a b`"),
        ] {
            let e = Keyring::parse(spec).unwrap_err();
            assert!(e.starts_with(err), "{spec}: {e}");
        }
        let ring = Keyring::parse(&format!("k1:{K1}")).unwrap().unwrap();
        assert_eq!(format!("{ring:?}"), r#"Keyring { keys: ["k1"] }"#);
        let generated = Keyring::generate("local").unwrap();
        assert_ne!(generated, Keyring::generate("local").unwrap());
        let ring = Keyring::parse(&generated).unwrap().unwrap();
        assert_eq!(ring.current(), "local");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let v = Variable {
            name: "T".into(),
            value: "s3cr3t".into(),
            secret: true,
        };
        assert!(!format!("{v:?}").contains("s3cr3t"));
        let s = Stored::Plain("visible".into());
        assert!(!format!("{s:?}").contains("visible"));
    }
}
