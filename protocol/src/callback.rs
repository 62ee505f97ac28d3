//! Callback targets: which URLs a callback may be sent to.
//!
//! Callbacks are POSTed by Eddy from inside the cluster, so a URL pointing at
//! loopback, private, link-local or otherwise internal addresses would let a
//! tenant reach what it should not (SSRF). Such targets are refused unless an
//! operator allowlists them. The check runs at invoke time on the URL and
//! again at delivery time on every resolved address (DNS can change).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::names::TenantId;

/// One callback to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// `invocation` or `run`.
    pub kind: String,
    /// The invocation or run id.
    pub id: String,
    pub url: String,
    /// When the first attempt was queued, ms since epoch.
    pub at: u64,
    /// Attempts made before this one.
    pub attempt: u32,
    /// The trace context of the attempt that queued it (`traceparent`,
    /// empty for none): the parent of the delivery's span.
    #[serde(rename = "tp", default)]
    pub traceparent: String,
    #[serde(skip)]
    pub tenant: Option<TenantId>,
    #[serde(skip)]
    pub stream: String,
    #[serde(skip)]
    pub entry_id: String,
}

/// A callback given up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadCallback {
    pub entry_id: String,
    pub kind: String,
    pub id: String,
    pub url: String,
    pub attempts: u32,
    pub error: String,
    pub at_ms: u64,
    pub dead_at_ms: u64,
}

/// Why a callback target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("callback URL is not a valid absolute URL: {0}")]
    Invalid(String),
    #[error("callback URL must use http or https, not `{0}`")]
    Scheme(String),
    #[error("callback URL has no host")]
    NoHost,
    #[error("callback address {0} is {1} and not allowlisted")]
    Forbidden(IpAddr, &'static str),
    #[error("callback URL is {0} bytes, more than the limit of {MAX_URL_BYTES}")]
    TooLong(usize),
}

/// Longest callback URL accepted: it is stored with every invocation.
pub const MAX_URL_BYTES: usize = 2048;

/// Addresses or networks (`127.0.0.1`, `10.0.0.0/8`, `::1`) allowed as
/// callback or outbound targets even though they are internal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<(IpAddr, u8)>);

impl Allowlist {
    /// Parses a comma-separated list of addresses and CIDR networks.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| format!("bad address `{item}`"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("bad prefix `{item}`"))?,
                None => max,
            };
            nets.push((ip, bits));
        }
        Ok(Allowlist(nets))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = if *bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(*bits))
                };
                u32::from(*n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = if *bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(*bits))
                };
                u128::from(*n) & mask == u128::from(i) & mask
            }
            _ => false,
        })
    }
}

/// `ip` in `net`/`len`?
fn in_v4(ip: [u8; 4], net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from_be_bytes(ip) & mask == u32::from_be_bytes(net) & mask
}

fn in_v6(ip: u128, net: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip & mask == net & mask
}

/// The IPv4 ranges of IANA's special-purpose registry that are not globally
/// reachable (RFC 6890 and its updates), plus multicast, with what each is.
const V4_RANGES: [([u8; 4], u32, &str); 16] = [
    ([0, 0, 0, 0], 8, "not a unicast address"),
    ([10, 0, 0, 0], 8, "a private address"),
    ([100, 64, 0, 0], 10, "a private address"),
    ([127, 0, 0, 0], 8, "a loopback address"),
    ([169, 254, 0, 0], 16, "a link-local address"),
    ([172, 16, 0, 0], 12, "a private address"),
    ([192, 0, 0, 0], 24, "a reserved address"),
    ([192, 0, 2, 0], 24, "a documentation address"),
    ([192, 88, 99, 0], 24, "a reserved address"),
    ([192, 168, 0, 0], 16, "a private address"),
    ([198, 18, 0, 0], 15, "a benchmarking address"),
    ([198, 51, 100, 0], 24, "a documentation address"),
    ([203, 0, 113, 0], 24, "a documentation address"),
    ([224, 0, 0, 0], 4, "not a unicast address"),
    ([255, 255, 255, 255], 32, "not a unicast address"),
    ([240, 0, 0, 0], 4, "a reserved address"),
];

/// The same for IPv6. Forms that carry an IPv4 address (mapped,
/// NAT64 `64:ff9b::/96`) are judged by that address; the other transition
/// forms (IPv4-compatible, 6to4, Teredo) are refused whole.
const V6_RANGES: [(u128, u32, &str); 13] = [
    (0, 128, "not a unicast address"),
    (1, 128, "a loopback address"),
    (0, 96, "a reserved address"),
    (0x0064_ff9b_0001 << 80, 48, "a private address"),
    (0x0100 << 112, 64, "a reserved address"),
    (0x2001 << 112, 23, "a reserved address"),
    (0x2001_0db8 << 96, 32, "a documentation address"),
    (0x2002 << 112, 16, "a reserved address"),
    (0x3fff << 112, 20, "a documentation address"),
    (0x5f00 << 112, 16, "a reserved address"),
    (0xfc00 << 112, 7, "a private address"),
    (0xfe80 << 112, 10, "a link-local address"),
    (0xfec0 << 112, 10, "a private address"),
];

/// What kind of internal or special-purpose address `ip` is, if any.
fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            V4_RANGES
                .iter()
                .find(|(net, len, _)| in_v4(o, *net, *len))
                .map(|(_, _, kind)| *kind)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let bits = u128::from(v6);
            if in_v6(bits, 0x0064_ff9b << 96, 96) {
                let [a, b, c, d] = (bits as u32).to_be_bytes();
                return internal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            if (bits >> 120) == 0xff {
                return Some("not a unicast address");
            }
            V6_RANGES
                .iter()
                .find(|(net, len, _)| in_v6(bits, *net, *len))
                .map(|(_, _, kind)| *kind)
        }
    }
}

/// What kind of internal address `ip` is, when it is one and `allow` does
/// not let it through: the one rule for callbacks and outbound requests.
pub fn refused(ip: IpAddr, allow: &Allowlist) -> Option<&'static str> {
    internal(ip).filter(|_| !allow.contains(ip))
}

/// Refuses `ip` if it is internal and not allowlisted.
pub fn check_ip(ip: IpAddr, allow: &Allowlist) -> Result<(), CallbackError> {
    match refused(ip, allow) {
        Some(kind) => Err(CallbackError::Forbidden(ip, kind)),
        None => Ok(()),
    }
}

/// Parses a callback URL and checks its host when it is a literal address.
/// Returns the URL and its host (a name still to resolve, or an address).
pub fn check_url(s: &str, allow: &Allowlist) -> Result<url::Url, CallbackError> {
    if s.len() > MAX_URL_BYTES {
        return Err(CallbackError::TooLong(s.len()));
    }
    let url = url::Url::parse(s).map_err(|e| CallbackError::Invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(CallbackError::Scheme(url.scheme().to_string()));
    }
    match url.host() {
        None => return Err(CallbackError::NoHost),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow)?,
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow)?,
        Some(url::Host::Domain(_)) => {}
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_targets_are_refused_unless_allowlisted() {
        let none = Allowlist::default();
        let check =
            |s: &str, allow: &Allowlist| check_url(s, allow).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(check("https://hooks.example.com/x", &none), Ok(()));
        assert_eq!(check("http://93.184.216.34/x", &none), Ok(()));
        assert_eq!(
            check("http://127.0.0.1:9/x", &none),
            Err("callback address 127.0.0.1 is a loopback address and not allowlisted".into())
        );
        assert_eq!(
            check("http://10.1.2.3/x", &none),
            Err("callback address 10.1.2.3 is a private address and not allowlisted".into())
        );
        assert_eq!(
            check("http://169.254.169.254/latest", &none),
            Err(
                "callback address 169.254.169.254 is a link-local address and not allowlisted"
                    .into()
            )
        );
        assert_eq!(
            check("http://[::1]/x", &none),
            Err("callback address ::1 is a loopback address and not allowlisted".into())
        );
        assert_eq!(
            check("http://[::ffff:192.168.0.1]/x", &none),
            Err(
                "callback address ::ffff:192.168.0.1 is a private address and not allowlisted"
                    .into()
            )
        );
        assert_eq!(
            check("ftp://example.com/x", &none),
            Err("callback URL must use http or https, not `ftp`".into())
        );
        assert_eq!(
            check("not a url", &none),
            Err("callback URL is not a valid absolute URL: relative URL without a base".into())
        );
        // Every range of IANA's special-purpose registries that is not
        // globally reachable, at its first and last address, and the
        // public addresses around them.
        for (ip, kind) in [
            ("0.0.0.0", Some("not a unicast address")),
            ("0.255.255.255", Some("not a unicast address")),
            ("10.255.255.255", Some("a private address")),
            ("100.64.0.0", Some("a private address")),
            ("100.127.255.255", Some("a private address")),
            ("100.128.0.0", None),
            ("127.255.255.255", Some("a loopback address")),
            ("169.254.0.1", Some("a link-local address")),
            ("172.16.0.0", Some("a private address")),
            ("172.31.255.255", Some("a private address")),
            ("172.32.0.0", None),
            ("192.0.0.8", Some("a reserved address")),
            ("192.0.2.1", Some("a documentation address")),
            ("192.0.3.1", None),
            ("192.88.99.1", Some("a reserved address")),
            ("192.168.255.255", Some("a private address")),
            ("198.18.0.0", Some("a benchmarking address")),
            ("198.19.255.255", Some("a benchmarking address")),
            ("198.20.0.0", None),
            ("198.51.100.7", Some("a documentation address")),
            ("203.0.113.255", Some("a documentation address")),
            ("224.0.0.1", Some("not a unicast address")),
            ("240.0.0.1", Some("a reserved address")),
            ("255.255.255.255", Some("not a unicast address")),
            ("8.8.8.8", None),
            ("::", Some("not a unicast address")),
            ("::1", Some("a loopback address")),
            ("::7f00:1", Some("a reserved address")),
            ("::ffff:10.0.0.1", Some("a private address")),
            ("::ffff:0:0", Some("not a unicast address")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::a00:1", Some("a private address")),
            ("64:ff9b::7f00:1", Some("a loopback address")),
            ("64:ff9b::808:808", None),
            ("64:ff9b:1::1", Some("a private address")),
            ("100::1", Some("a reserved address")),
            ("2001::1", Some("a reserved address")),
            ("2001:1ff:ffff::1", Some("a reserved address")),
            ("2001:200::1", None),
            ("2001:db8::1", Some("a documentation address")),
            ("2002:a00:1::1", Some("a reserved address")),
            ("3fff::1", Some("a documentation address")),
            ("5f00::1", Some("a reserved address")),
            ("fc00::1", Some("a private address")),
            ("fdff:ffff::1", Some("a private address")),
            ("fe80::1", Some("a link-local address")),
            ("febf::1", Some("a link-local address")),
            ("fec0::1", Some("a private address")),
            ("ff02::1", Some("not a unicast address")),
            ("2606:4700::1111", None),
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(internal(parsed), kind, "{ip}");
        }
        let long = format!("https://example.com/{}", "a".repeat(300 << 10));
        assert_eq!(
            check(&long, &none),
            Err(format!(
                "callback URL is {} bytes, more than the limit of 2048",
                long.len()
            ))
        );
        let allow = Allowlist::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        assert_eq!(check("http://127.0.0.1:9/x", &allow), Ok(()));
        assert_eq!(check("http://10.200.0.1/x", &allow), Ok(()));
        assert!(check("http://127.0.0.2/x", &allow).is_err());
        assert_eq!(
            Allowlist::parse("10.0.0.0/33"),
            Err("bad prefix `10.0.0.0/33`".into())
        );
    }
}
