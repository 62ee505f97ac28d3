//! The control messages Eddy publishes on Redis pub/sub: one type per
//! channel, each with its one encoding. Pub/sub is not durable, so every
//! message is an optimisation over something its receiver also finds by
//! itself (a read, a TTL, an audit); a message that does not decode is
//! dropped.
//!
//! The reply channels of gateways (`keys::reply_channel`) carry finished
//! invocations, not control messages: see the queue's `replies`.

use crate::{FunctionName, TenantId, keys};

/// A message of one channel.
pub trait Message: Sized + Clone + Send + 'static {
    /// The channel it is published on.
    const CHANNEL: &'static str;
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
}

/// `eddy:wake`: a stream got work that a worker may not be reading yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A sync invocation (someone waits for it): `!<stream>`, published by
    /// the enqueue script; a worker reads it on its interactive lane.
    Interactive(String),
    /// A stream that may have no warm capacity: `<stream>`.
    Backlog(String),
}

impl Message for Wake {
    const CHANNEL: &'static str = keys::WAKE;
    fn encode(&self) -> String {
        match self {
            Wake::Interactive(s) => format!("!{s}"),
            Wake::Backlog(s) => s.clone(),
        }
    }
    fn decode(text: &str) -> Option<Self> {
        let (interactive, stream) = match text.strip_prefix('!') {
            Some(s) => (true, s),
            None => (false, text),
        };
        keys::parse_stream(stream)?;
        Some(if interactive {
            Wake::Interactive(stream.to_string())
        } else {
            Wake::Backlog(stream.to_string())
        })
    }
}

/// `eddy:functions:changed`: a function was deployed, rolled back or
/// deleted; gateways drop their cached spec of it. `<tenant>/<function>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionChanged {
    pub tenant: TenantId,
    pub function: FunctionName,
}

impl Message for FunctionChanged {
    const CHANNEL: &'static str = keys::FUNCTIONS_CHANGED;
    fn encode(&self) -> String {
        format!("{}/{}", self.tenant, self.function)
    }
    fn decode(text: &str) -> Option<Self> {
        let (t, f) = text.split_once('/')?;
        Some(FunctionChanged {
            tenant: TenantId::new(t).ok()?,
            function: FunctionName::new(f).ok()?,
        })
    }
}

/// `eddy:modules:freed`: the modules a delete left unreferenced; workers
/// drop them and their compiled artifacts. `<tenant> <sha256>...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulesFreed {
    pub tenant: TenantId,
    /// Lower-case hex SHA-256 digests.
    pub shas: Vec<String>,
}

impl Message for ModulesFreed {
    const CHANNEL: &'static str = keys::MODULES_FREED;
    fn encode(&self) -> String {
        let mut s = self.tenant.to_string();
        for sha in &self.shas {
            s.push(' ');
            s.push_str(sha);
        }
        s
    }
    fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let tenant = TenantId::new(words.next()?).ok()?;
        let shas = words
            .map(|w| is_sha256(w).then(|| w.to_string()))
            .collect::<Option<Vec<_>>>()?;
        Some(ModulesFreed { tenant, shas })
    }
}

/// `eddy:keys:revoked`: the hash of an API key that was just revoked;
/// gateways drop it from their key cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRevoked(pub String);

impl Message for KeyRevoked {
    const CHANNEL: &'static str = keys::KEYS_REVOKED;
    fn encode(&self) -> String {
        self.0.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        is_sha256(text).then(|| KeyRevoked(text.to_string()))
    }
}

/// `eddy:assign`: the controller wrote new assignments; workers read theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentsChanged;

impl Message for AssignmentsChanged {
    const CHANNEL: &'static str = keys::ASSIGN;
    fn encode(&self) -> String {
        "changed".to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        (text == "changed").then_some(AssignmentsChanged)
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<M: Message + PartialEq + std::fmt::Debug>(m: M) {
        assert_eq!(M::decode(&m.encode()), Some(m));
    }

    #[test]
    fn every_message_decodes_its_own_encoding() {
        let t = TenantId::new("acme").unwrap();
        let f = FunctionName::new("echo").unwrap();
        let stream = keys::stream(&t, &f);
        round_trip(Wake::Interactive(stream.clone()));
        round_trip(Wake::Backlog(stream.clone()));
        round_trip(FunctionChanged {
            tenant: t.clone(),
            function: f,
        });
        round_trip(ModulesFreed {
            tenant: t,
            shas: vec!["ab".repeat(32), "0f".repeat(32)],
        });
        round_trip(KeyRevoked("e3".repeat(32)));
        round_trip(AssignmentsChanged);
        // The enqueue script's own encoding (`'!' .. stream`).
        assert_eq!(
            Wake::decode(&format!("!{stream}")),
            Some(Wake::Interactive(stream))
        );
    }

    #[test]
    fn malformed_messages_are_dropped() {
        assert_eq!(Wake::decode("not-a-stream"), None);
        assert_eq!(Wake::decode("!"), None);
        assert_eq!(FunctionChanged::decode("acme"), None);
        assert_eq!(FunctionChanged::decode("acme/Not Valid"), None);
        assert_eq!(ModulesFreed::decode("acme nothex"), None);
        assert_eq!(ModulesFreed::decode(""), None);
        assert_eq!(KeyRevoked::decode("short"), None);
        assert_eq!(AssignmentsChanged::decode("other"), None);
    }
}
