//! Destination policy (proxy/README.md, "Policy"): deny every address that is not public unicast, however it
//! is spelt; a port allowlist; explicit `--allow CIDR[:PORT]` holes and `deny` ranges.
//! Names are resolved once; every address is checked; the caller connects only to the
//! addresses returned from here.
//!
//! Order of the checks for one address: `--deny` ranges; `--allow` rules (an exact
//! `CIDR:PORT` admits at once); cloud platform endpoints ([`crate::platform`], admitted only
//! by a rule inside their own range); non-public addresses; the port allowlist.
//!
//! Order against the rate limits (per identity: connections per minute, concurrent
//! connections): [`precheck`] runs first, so an address or port the policy denies is answered
//! "refused by policy" and is not charged. A name is resolved after the limits (a lookup is
//! spent only for a client within them) and each of its addresses then goes through
//! [`Policy::check`]; so only a client already over its limits, opening a name, hears about
//! the limit rather than the policy.

use ipnet::{IpNet, Ipv4Net};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::protocol::{ErrorCode, Failure};

/// Every denial's text contains this phrase (its code is [`ErrorCode::Policy`]).
pub const REFUSED: &str = "refused by policy";

/// An address range: an [`IpNet`] written by the operator. A bare address is its own /32 or
/// /128; an IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it maps, because
/// [`canonical`] turns every mapped destination into IPv4 before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// Whether `ip` (already [`canonical`]) lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        // Rules are written by the operator: only canonical address spellings.
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}': '{addr}' is not an IP address"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
        };
        let net = canonical(net);
        let prefix = if net.is_ipv4() && max == 128 {
            prefix.saturating_sub(96)
        } else {
            prefix
        };
        IpNet::new(net, prefix)
            .map(Cidr)
            .map_err(|e| format!("'{s}': {e}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `--allow CIDR[:PORT]`: admits a range through the default deny; with a port, exactly that
/// port (which need not be in the port allowlist), otherwise the allowlisted ports.
/// IPv6 with a port is written `[CIDR]:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowRule {
    pub cidr: Cidr,
    pub port: Option<u16>,
}

impl FromStr for AllowRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse_port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("'{s}': port must be 1..=65535"))
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (cidr, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{s}': missing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("'{s}': expected ':PORT' after ']'"))?,
                )?),
            };
            return Ok(AllowRule {
                cidr: cidr.parse()?,
                port,
            });
        }
        // More than one ':' means a bare IPv6 range without a port.
        if s.matches(':').count() == 1 {
            let (cidr, port) = s.split_once(':').unwrap_or((s, ""));
            return Ok(AllowRule {
                cidr: cidr.parse()?,
                port: Some(parse_port(port)?),
            });
        }
        Ok(AllowRule {
            cidr: s.parse()?,
            port: None,
        })
    }
}

/// Parses `80,443,8000-8100`.
pub fn parse_ports(s: &str) -> Result<BTreeSet<u16>, String> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let one = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("'{p}' is not a port (1..=65535)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                if a > b {
                    return Err(format!("port range '{part}' is reversed"));
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(one(part)?);
            }
        }
    }
    if out.is_empty() {
        return Err("the port list is empty".into());
    }
    Ok(out)
}

/// The destination policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ports: BTreeSet<u16>,
    pub allow: Vec<AllowRule>,
    pub deny: Vec<Cidr>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ports: [80, 443].into_iter().collect(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// A destination host as the client wrote it, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Normalises a client-supplied host. Numeric spellings are decoded the way the C library
/// would (`inet_aton`: 1–4 parts, decimal/octal/hex), so they cannot slip past the checks;
/// anything that looks numeric but does not decode is rejected rather than resolved.
pub fn parse_host(raw: &str) -> Result<Host, String> {
    let invalid = |why: &str| format!("invalid host '{}': {why}", raw.escape_default());
    if raw.is_empty() {
        return Err(invalid("empty"));
    }
    if raw.len() > 255 {
        return Err(invalid("longer than 255 bytes"));
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| invalid("missing ']'"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|a| Host::Ip(IpAddr::V6(a)))
            .map_err(|_| invalid("not an IPv6 address"));
    }
    if raw.contains(':') {
        return raw
            .parse::<Ipv6Addr>()
            .map(|a| Host::Ip(IpAddr::V6(a)))
            .map_err(|_| invalid("not an IPv6 address (zone ids are not accepted)"));
    }
    // One trailing dot is the absolute form of the same name or address.
    let host = raw.strip_suffix('.').unwrap_or(raw);
    if host.is_empty() || host.ends_with('.') {
        return Err(invalid("empty label"));
    }
    let last = host.rsplit('.').next().unwrap_or(host);
    if last.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_ipv4_loose(host)
            .map(|a| Host::Ip(IpAddr::V4(a)))
            .ok_or_else(|| invalid("not a valid IPv4 address"));
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("each label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("only letters, digits, '-', '_' and '.' are allowed"));
        }
    }
    Ok(Host::Name(host.to_ascii_lowercase()))
}

/// `inet_aton` semantics: `a`, `a.b`, `a.b.c`, `a.b.c.d`; each part decimal, `0x` hex or
/// leading-zero octal; the last part fills the remaining bytes.
pub fn parse_ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let v = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u64::from_str_radix(hex, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            if !p.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            u64::from_str_radix(p, 8).ok()?
        } else {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse::<u64>().ok()?
        };
        nums.push(v);
    }
    let (last, head) = nums.split_last()?;
    let mut value: u64 = 0;
    for (i, v) in head.iter().enumerate() {
        if *v > 0xff {
            return None;
        }
        value |= v << (24 - 8 * i);
    }
    let rest_bits = 32 - 8 * head.len() as u32;
    if rest_bits < 64 && *last >= (1u64 << rest_bits) {
        return None;
    }
    value |= last;
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the same destination as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Shorthand for the const tables below.
const fn v4net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

/// IPv4 special-purpose ranges that are not public unicast (IANA IPv4 Special-Purpose
/// Address Registry, RFC 6890 and its updates).
const V4_SPECIAL: &[(Ipv4Net, &str)] = &[
    (v4net(0, 0, 0, 0, 8), "an unspecified (\"this network\") address"),
    (v4net(10, 0, 0, 0, 8), "a private address"),
    (v4net(100, 64, 0, 0, 10), "a shared (carrier-grade NAT) address"),
    (v4net(127, 0, 0, 0, 8), "a loopback address"),
    (v4net(169, 254, 0, 0, 16), "a link-local address"),
    (v4net(172, 16, 0, 0, 12), "a private address"),
    (v4net(192, 0, 0, 0, 24), "an IETF protocol assignment"),
    (v4net(192, 0, 2, 0, 24), "a documentation address"),
    (v4net(192, 88, 99, 0, 24), "a 6to4 relay anycast address"),
    (v4net(192, 168, 0, 0, 16), "a private address"),
    (v4net(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4net(198, 51, 100, 0, 24), "a documentation address"),
    (v4net(203, 0, 113, 0, 24), "a documentation address"),
    (v4net(224, 0, 0, 0, 4), "a multicast address"),
    (v4net(240, 0, 0, 0, 4), "a reserved or broadcast address"),
];

fn v4_reason(a: Ipv4Addr) -> Option<&'static str> {
    V4_SPECIAL
        .iter()
        .find_map(|(net, why)| net.contains(&a).then_some(*why))
}

fn v6_embedded_v4(bytes: &[u8; 16], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// Why an address is not public unicast, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<String> {
    match canonical(ip) {
        IpAddr::V4(a) => v4_reason(a).map(str::to_owned),
        IpAddr::V6(a) => {
            let b = a.octets();
            let seg = a.segments();
            if a.is_unspecified() {
                return Some("the unspecified address".into());
            }
            if a.is_loopback() {
                return Some("a loopback address".into());
            }
            if seg[..6] == [0; 6] {
                return Some("an IPv4-compatible IPv6 address (deprecated)".into());
            }
            if seg[0] == 0x64 && seg[1] == 0xff9b {
                if seg[2..6] == [0; 4] {
                    let v4 = v6_embedded_v4(&b, 12);
                    return v4_reason(v4).map(|r| format!("a NAT64 address embedding {v4}, {r}"));
                }
                return Some("a local-use NAT64 address".into());
            }
            if seg[0] == 0x2002 {
                let v4 = v6_embedded_v4(&b, 2);
                return v4_reason(v4).map(|r| format!("a 6to4 address embedding {v4}, {r}"));
            }
            // Global unicast is 2000::/3; everything else (ULA, link-local, site-local,
            // multicast, discard, reserved) is not reachable on the internet.
            if seg[0] & 0xe000 != 0x2000 {
                return Some(match seg[0] {
                    s if s & 0xfe00 == 0xfc00 => "a unique-local (private) address".into(),
                    s if s & 0xffc0 == 0xfe80 => "a link-local address".into(),
                    s if s & 0xffc0 == 0xfec0 => "a site-local address".into(),
                    s if s & 0xff00 == 0xff00 => "a multicast address".into(),
                    _ => "a reserved IPv6 address".into(),
                });
            }
            if seg[0] == 0x2001 && seg[1] < 0x0200 {
                return Some("an IETF protocol assignment (Teredo, benchmarking, ORCHID)".into());
            }
            if seg[0] == 0x2001 && seg[1] == 0x0db8 {
                return Some("a documentation address".into());
            }
            if seg[0] == 0x3fff && seg[1] & 0xf000 == 0 {
                return Some("a documentation address".into());
            }
            None
        }
    }
}

impl Policy {
    /// Checks one concrete destination. The error text always contains [`REFUSED`].
    pub fn check(&self, ip: IpAddr, port: u16) -> Result<(), String> {
        let ip = canonical(ip);
        if let Some(rule) = self.deny.iter().find(|c| c.contains(ip)) {
            return Err(format!("{REFUSED}: {ip} is in the denied range {rule}"));
        }
        let platform = crate::platform::refusal(ip);
        let mut range_allowed = false;
        for rule in self.allow.iter().filter(|r| {
            r.cidr.contains(ip) && (platform.is_none() || crate::platform::admitted_by(&r.cidr, ip))
        }) {
            match rule.port {
                Some(p) if p == port => return Ok(()),
                Some(_) => {}
                None => range_allowed = true,
            }
        }
        if !range_allowed {
            if let Some(why) = platform {
                return Err(format!("{REFUSED}: {why}"));
            }
            if let Some(why) = non_public_reason(ip) {
                return Err(format!("{REFUSED}: {ip} is {why}"));
            }
        }
        if !self.ports.contains(&port) {
            return Err(format!("{REFUSED}: port {port} is not allowed"));
        }
        Ok(())
    }
}

/// Everything the policy can decide before a lookup: the whole check for an address, the
/// port for a name. Runs before the rate limits, so a denied target is refused by policy
/// (never reported as a limit) and costs no slot.
pub fn precheck(policy: &Policy, host: &Host, port: u16) -> Result<(), String> {
    match host {
        Host::Ip(ip) => policy.check(*ip, port),
        Host::Name(_) => {
            if !policy.ports.contains(&port) && !policy.allow.iter().any(|r| r.port == Some(port)) {
                return Err(format!("{REFUSED}: port {port} is not allowed"));
            }
            Ok(())
        }
    }
}

/// Resolves (once) and checks every address; returns the checked addresses to connect to.
/// Errors: [`ErrorCode::Policy`] for a refused address or port, [`ErrorCode::Unreachable`]
/// for a name that does not resolve.
pub async fn resolve_checked(policy: &Policy, host: &Host, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let refused = |m: String| Failure::new(ErrorCode::Policy, m);
    precheck(policy, host, port).map_err(refused)?;
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(canonical(*ip), port)]),
        Host::Name(name) => {
            let unreachable = |m: String| Failure::new(ErrorCode::Unreachable, m);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| unreachable(format!("name not found: could not resolve '{name}': {e}")))?
                .collect();
            if addrs.is_empty() {
                return Err(unreachable(format!("name not found: '{name}' has no addresses")));
            }
            let mut checked = Vec::with_capacity(addrs.len());
            for a in addrs {
                policy
                    .check(a.ip(), port)
                    .map_err(|e| refused(format!("{e} ('{name}' resolves to {})", a.ip())))?;
                let addr = SocketAddr::new(canonical(a.ip()), port);
                if !checked.contains(&addr) {
                    checked.push(addr);
                }
            }
            Ok(checked)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The default policy with these `--allow` and `--deny` rules.
    fn with_rules(allow: &[&str], deny: &[&str]) -> Policy {
        Policy {
            allow: allow.iter().map(|r| r.parse().unwrap()).collect(),
            deny: deny.iter().map(|r| r.parse().unwrap()).collect(),
            ..Policy::default()
        }
    }

    fn ip_of(s: &str) -> IpAddr {
        match parse_host(s).unwrap() {
            Host::Ip(ip) => ip,
            Host::Name(n) => panic!("{s} parsed as name {n}"),
        }
    }

    #[test]
    fn loose_ipv4_spellings_decode_like_inet_aton() {
        let lo = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        for s in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "0177.0.0.01",
            "0x7f.1",
            "017700000001",
            "127.0.0.1.",
            "0x7f.0x0.0x0.0x1",
        ] {
            assert_eq!(ip_of(s), lo, "{s}");
        }
        assert_eq!(ip_of("0"), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(ip_of("0x0"), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(ip_of("4294967295"), IpAddr::V4(Ipv4Addr::BROADCAST));
    }

    #[test]
    fn numeric_lookalikes_are_rejected_not_resolved() {
        for s in [
            "256.0.0.1",
            "1.2.3.4.5",
            "4294967296",
            "0x",
            "08.0.0.1",
            "1.2.3.0x100",
            "1..2",
            "127.0.0.1..",
            "1.2.3.4a",
        ] {
            assert!(parse_host(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn names_are_normalised_and_validated() {
        assert_eq!(
            parse_host("Example.COM.").unwrap(),
            Host::Name("example.com".into())
        );
        assert_eq!(parse_host("1e100.net").unwrap(), Host::Name("1e100.net".into()));
        for s in [
            "",
            ".",
            "a b",
            "exa$mple.com",
            "a..b",
            "fe80::1%eth0",
            "[::1",
            "x\0y",
        ] {
            assert!(parse_host(s).is_err(), "{s:?} accepted");
        }
        assert!(parse_host(&"a".repeat(64)).is_err());
    }

    #[test]
    fn non_public_addresses_are_denied_however_spelt() {
        let p = Policy::default();
        for s in [
            "127.0.0.1",
            "0x7f.1",
            "2130706433",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "[::1]",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "[::ffff:10.0.0.1]",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
        ] {
            let ip = ip_of(s);
            let err = p.check(ip, 80).unwrap_err();
            assert!(err.contains(REFUSED), "{s}: {err}");
        }
    }

    #[test]
    fn public_addresses_pass_on_allowed_ports_only() {
        let p = Policy::default();
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "::ffff:8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(p.check(ip_of(s), 443).is_ok(), "{s}");
            assert!(p.check(ip_of(s), 22).unwrap_err().contains("port 22"), "{s}");
        }
        assert!(p.check(ip_of("172.32.0.1"), 80).is_ok());
        assert!(p.check(ip_of("172.15.255.255"), 80).is_ok());
    }

    #[test]
    fn allow_punches_exactly_one_hole() {
        let p = with_rules(&["127.0.0.1/32:8080"], &[]);
        assert!(p.check(ip_of("127.0.0.1"), 8080).is_ok());
        assert!(p.check(ip_of("::ffff:127.0.0.1"), 8080).is_ok());
        assert!(p.check(ip_of("127.0.0.1"), 8081).is_err());
        assert!(p.check(ip_of("127.0.0.1"), 80).is_err());
        assert!(p.check(ip_of("127.0.0.2"), 8080).is_err());
        assert!(p.check(ip_of("::1"), 8080).is_err());

        let range = with_rules(&["10.0.0.0/8"], &[]);
        assert!(range.check(ip_of("10.9.9.9"), 443).is_ok());
        assert!(range.check(ip_of("10.9.9.9"), 8080).is_err());
        assert!(range.check(ip_of("11.0.0.1"), 443).is_ok());

        let v6 = with_rules(&["[::1]:9000", "fd00::/8"], &[]);
        assert!(v6.check(ip_of("::1"), 9000).is_ok());
        assert!(v6.check(ip_of("fd00::5"), 80).is_ok());
    }

    #[test]
    fn deny_wins_over_public() {
        let p = with_rules(&[], &["8.8.8.0/24"]);
        assert!(p
            .check(ip_of("8.8.8.8"), 443)
            .unwrap_err()
            .contains("denied range"));
        assert!(p.check(ip_of("8.8.4.4"), 443).is_ok());
    }

    #[test]
    fn rule_parsing() {
        assert!("127.0.0.1/33".parse::<Cidr>().is_err());
        assert!("127.0.0.1:0".parse::<AllowRule>().is_err());
        assert!("127.0.0.1:x".parse::<AllowRule>().is_err());
        assert!("localhost:80".parse::<AllowRule>().is_err());
        assert!("[::1/128]:80".parse::<AllowRule>().is_ok());
        assert_eq!(parse_ports("80, 443,8000-8002").unwrap().len(), 5);
        assert!(parse_ports("9-1").is_err());
        assert!(parse_ports("").is_err());
        assert!(parse_ports("0").is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let p = Policy::default();
        let err = resolve_checked(&p, &parse_host("localhost.").unwrap(), 80)
            .await
            .unwrap_err();
        assert!(err.msg.contains(REFUSED), "{err}");
        assert_eq!(err.code, ErrorCode::Policy);
    }
}
