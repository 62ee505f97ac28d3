//! Outbound HTTP: which origins a function may call, and what the record
//! says about each call.
//!
//! A processor calls out through `wasi:http/outgoing-handler`. Nothing is
//! allowed by default: a function's `allowed_hosts` lists the origins it may
//! call, in the form Spin uses for `allowed_outbound_hosts`:
//!
//! - `https://api.example.com`: that host, on the scheme's default port;
//! - `http://10.1.2.3:8080`: an address and a port;
//! - `https://*.example.com`: every subdomain (not `example.com` itself);
//! - `*://example.com:*`: either scheme, any port; `https://*` any host.
//!
//! An allowed origin is not enough: every address a name resolves to also
//! passes the SSRF guard of [`crate::callback`] at connect time, so internal
//! addresses stay refused unless the operator lets them through
//! (`EDDY_OUTBOUND_ALLOWLIST`).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most entries one function's `allowed_hosts` may hold.
pub const MAX_ALLOWED_HOSTS: usize = 64;

/// Longest entry of `allowed_hosts`.
const MAX_ENTRY_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemeMatch {
    Any,
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// A name (lower case) or an address.
    Exact(String),
    /// Strict subdomains of this name.
    Subdomains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    Any,
    /// 80 for http, 443 for https.
    Default,
    Port(u16),
}

/// One entry of `allowed_hosts`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: SchemeMatch,
    host: HostMatch,
    port: PortMatch,
}

/// The default port of `scheme` (`http` or `https`).
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// A host as the checks compare it (and as it is resolved): lower case,
/// without trailing dots, an IPv6 address without its brackets. Idempotent.
pub fn normal_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6.to_string(),
        _ => host.to_string(),
    }
}

fn same_host(pattern: &str, host: &str) -> bool {
    match (pattern.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), Err(_)) => pattern == host,
        _ => false,
    }
}

/// A DNS name as `allowed_hosts` takes it: ASCII labels of letters, digits
/// and `-` (internationalized names in their `xn--` form), the last one not
/// all digits (`10.1` is an address to the resolver, not a name).
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl AllowedHost {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("`{entry}`: {why}");
        if entry.len() > MAX_ENTRY_BYTES {
            let start: String = entry.chars().take(32).collect();
            return Err(format!("`{start}…`: longer than {MAX_ENTRY_BYTES} bytes"));
        }
        let (scheme, rest) = entry
            .trim()
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host[:port], e.g. https://api.example.com"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => SchemeMatch::Http,
            "https" => SchemeMatch::Https,
            "*" => SchemeMatch::Any,
            _ => return Err(bad("the scheme must be http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "an allowed host is an origin (scheme://host[:port]), without a path, query or user",
            ));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address between the brackets"));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected `:port` after the address"))?,
                ),
            };
            (addr.to_ascii_lowercase(), port)
        } else {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                return Err(bad(
                    "an IPv6 address goes in brackets, e.g. http://[::1]:8080",
                ));
            }
            // One trailing dot (the DNS root) is the same name; `*.` alone
            // is not a pattern.
            let host = match host.strip_suffix('.') {
                Some(h) if h.is_empty() || h.ends_with(['.', '*']) => {
                    return Err(bad(
                        "the host must be a DNS name, an address, `*` or `*.` and a name",
                    ));
                }
                Some(h) => h,
                None => host,
            };
            (host.to_ascii_lowercase(), port)
        };
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => PortMatch::Port(n),
                _ => return Err(bad("the port must be a number from 1 to 65535, or *")),
            },
        };
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(parent) = host.strip_prefix("*.") {
            if !is_dns_name(parent) {
                return Err(bad("after `*.` comes a DNS name"));
            }
            HostMatch::Subdomains(parent.to_string())
        } else if host.parse::<IpAddr>().is_ok() || is_dns_name(&host) {
            HostMatch::Exact(host)
        } else {
            return Err(bad(
                "the host must be a DNS name, an address, `*` or `*.` and a name",
            ));
        };
        Ok(AllowedHost { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` matches.
    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = match self.scheme {
            SchemeMatch::Any => scheme == "http" || scheme == "https",
            SchemeMatch::Http => scheme == "http",
            SchemeMatch::Https => scheme == "https",
        };
        let port_ok = match self.port {
            PortMatch::Any => true,
            PortMatch::Default => port == default_port(scheme),
            PortMatch::Port(p) => port == p,
        };
        let host = normal_host(host);
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(h) => same_host(h, &host),
            HostMatch::Subdomains(parent) => host
                .strip_suffix(parent.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        };
        scheme_ok && port_ok && host_ok
    }
}

/// A function's `allowed_hosts`, parsed. Empty: no outbound request at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        if entries.len() > MAX_ALLOWED_HOSTS {
            return Err(format!(
                "{} entries, more than the {MAX_ALLOWED_HOSTS} a function may list",
                entries.len()
            ));
        }
        entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowedHosts)
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.0.iter().any(|h| h.allows(scheme, host, port))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `scheme://host[:port]`, the port shown only when it is not the scheme's
/// default: how records and errors name where a request went.
pub fn origin(scheme: &str, host: &str, port: u16) -> String {
    if port == default_port(scheme) {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// One outbound request in an invocation's record. The path and query are
/// not kept: they may carry tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundCall {
    pub method: String,
    /// `scheme://host[:port]`.
    pub origin: String,
    /// The response's status; absent when none came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes sent.
    pub bytes_out: u64,
    /// Response body bytes the guest received.
    pub bytes_in: u64,
    /// From the request to the end of the response body (or the failure).
    pub duration_us: u64,
    /// Why it failed (denied, refused address, limit, timeout, I/O).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl fmt::Display for OutboundCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.origin)?;
        if let Some(s) = self.status {
            write!(f, " -> {s}")?;
        }
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_or_say_what_is_wrong() {
        for ok in [
            "https://api.example.com",
            "http://10.1.2.3:8080",
            "https://*.example.com",
            "*://example.com:*",
            "https://*",
            "http://[::1]:8080",
            "HTTPS://API.Example.com/",
            "https://api.example.com.:8443",
        ] {
            assert!(AllowedHost::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            (
                "api.example.com",
                "`api.example.com`: expected scheme://host[:port], e.g. https://api.example.com",
            ),
            (
                "ftp://example.com",
                "`ftp://example.com`: the scheme must be http, https or *",
            ),
            (
                "https://example.com/v1",
                "`https://example.com/v1`: an allowed host is an origin (scheme://host[:port]), without a path, query or user",
            ),
            (
                "https://example.com:0",
                "`https://example.com:0`: the port must be a number from 1 to 65535, or *",
            ),
            (
                "https://example.com:99999",
                "`https://example.com:99999`: the port must be a number from 1 to 65535, or *",
            ),
            (
                "https://ex ample.com",
                "`https://ex ample.com`: the host must be a DNS name, an address, `*` or `*.` and a name",
            ),
            (
                "https://a.*.com",
                "`https://a.*.com`: the host must be a DNS name, an address, `*` or `*.` and a name",
            ),
            (
                "http://[::1",
                "`http://[::1`: an IPv6 address needs its closing `]`",
            ),
        ] {
            assert_eq!(AllowedHost::parse(bad).unwrap_err(), why);
        }
        let many: Vec<String> = (0..65).map(|i| format!("https://h{i}.example")).collect();
        assert_eq!(
            AllowedHosts::parse(&many).unwrap_err(),
            "65 entries, more than the 64 a function may list"
        );
    }

    #[test]
    fn requests_match_scheme_host_and_port() {
        let hosts = AllowedHosts::parse(&[
            "https://api.example.com",
            "http://10.1.2.3:8080",
            "https://*.files.example",
            "*://any-scheme.example:*",
            "http://[::1]:9000",
        ])
        .unwrap();
        for (scheme, host, port, want) in [
            ("https", "api.example.com", 443, true),
            ("https", "API.EXAMPLE.COM", 443, true),
            ("http", "api.example.com", 80, false),
            ("https", "api.example.com", 8443, false),
            ("https", "evil.example.com", 443, false),
            ("https", "api.example.com.evil", 443, false),
            ("http", "10.1.2.3", 8080, true),
            ("http", "10.1.2.3", 80, false),
            ("https", "a.files.example", 443, true),
            ("https", "a.b.files.example", 443, true),
            ("https", "files.example", 443, false),
            ("https", "xfiles.example", 443, false),
            ("http", "any-scheme.example", 1234, true),
            ("https", "any-scheme.example", 1, true),
            ("http", "[::1]", 9000, true),
            ("http", "::1", 9000, true),
            ("http", "[0:0::1]", 9000, true),
            ("https", "api.example.com.", 443, true),
            ("https", "api.example.com..", 443, true),
            ("https", "[api.example.com]", 443, false),
            ("https", "10.1.2.3", 443, false),
        ] {
            assert_eq!(
                hosts.allows(scheme, host, port),
                want,
                "{scheme}://{host}:{port}"
            );
        }
        assert!(!AllowedHosts::default().allows("https", "example.com", 443));
        assert_eq!(normal_host("API.example.com.."), "api.example.com");
        assert_eq!(normal_host(&normal_host("[::1]")), "::1");
    }

    #[test]
    fn origins_hide_default_ports() {
        assert_eq!(origin("https", "a.example", 443), "https://a.example");
        assert_eq!(origin("http", "a.example", 443), "http://a.example:443");
        assert_eq!(origin("http", "[::1]", 80), "http://[::1]");
    }
}
