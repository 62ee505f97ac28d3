//! Callback targets: which URLs a callback may be sent to.
//!
//! Callbacks are POSTed by Eddy from inside the cluster, so a URL pointing at
//! loopback, private, link-local or otherwise internal addresses would let a
//! tenant reach what it should not (SSRF). Such targets are refused unless an
//! operator allowlists them. The check runs at invoke time on the URL and
//! again at delivery time on every resolved address (DNS can change).

use std::net::IpAddr;

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
}

/// Addresses or networks (`127.0.0.1`, `10.0.0.0/8`, `::1`) allowed as
/// callback targets even though they are internal.
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

/// What kind of internal address `ip` is, if any.
fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("not a unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("a private address")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else {
                None
            }
        }
    }
}

/// Refuses `ip` if it is internal and not allowlisted.
pub fn check_ip(ip: IpAddr, allow: &Allowlist) -> Result<(), CallbackError> {
    match internal(ip) {
        Some(kind) if !allow.contains(ip) => Err(CallbackError::Forbidden(ip, kind)),
        _ => Ok(()),
    }
}

/// Parses a callback URL and checks its host when it is a literal address.
/// Returns the URL and its host (a name still to resolve, or an address).
pub fn check_url(s: &str, allow: &Allowlist) -> Result<url::Url, CallbackError> {
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
