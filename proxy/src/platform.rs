//! Cloud platform endpoints (instance metadata, WireServer, private API front doors), some of
//! them on public unicast addresses. The table is `proxy/PLATFORM-ENDPOINTS.md`, compiled in,
//! so the document and the enforcement cannot drift apart.

use crate::policy::Cidr;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

/// The document the table lives in (markdown; one table, five columns).
const TABLE: &str = include_str!("../PLATFORM-ENDPOINTS.md");

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Who runs it, e.g. "Microsoft Azure".
    pub provider: String,
    /// The address or range.
    pub cidr: Cidr,
    /// What it is, briefly.
    pub what: String,
}

/// Parses the markdown table: rows after the `|---|` separator, cells split on `|`.
fn parse(text: &str) -> Result<Vec<Endpoint>, String> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("|---") {
            in_table = true;
            continue;
        }
        if !in_table || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [provider, addr, ports, what, source] = cells[..] else {
            return Err(format!("line {}: expected 5 cells, got {}", n + 1, cells.len()));
        };
        let cidr = addr.parse::<Cidr>().map_err(|e| format!("line {}: {e}", n + 1))?;
        // The ports column is for the reader (every port is refused); the source must be there.
        if provider.is_empty() || ports.is_empty() || what.is_empty() || !source.starts_with("https://") {
            return Err(format!(
                "line {}: provider, ports, what and an https source are required",
                n + 1
            ));
        }
        rows.push(Endpoint {
            provider: provider.to_owned(),
            cidr,
            what: what.to_owned(),
        });
    }
    if rows.is_empty() {
        return Err("no rows".into());
    }
    Ok(rows)
}

/// Every row of the table. The table is part of the source; a malformed row is a build
/// defect, caught by the unit test below, so an empty table here cannot reach a release.
pub fn endpoints() -> &'static [Endpoint] {
    static ROWS: LazyLock<Vec<Endpoint>> = LazyLock::new(|| parse(TABLE).unwrap_or_default());
    &ROWS
}

/// The row an address (already canonical: IPv4-mapped turned into IPv4) belongs to.
pub fn lookup(ip: IpAddr) -> Option<&'static Endpoint> {
    endpoints().iter().find(|e| e.cidr.contains(ip))
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`, RFC 6052) or 6to4 (`2002::/16`, RFC 3056)
/// address carries, with the name of the form; `None` for any other address.
pub fn embedded_v4(ip: IpAddr) -> Option<(&'static str, Ipv4Addr)> {
    let IpAddr::V6(a) = ip else { return None };
    let s = a.segments();
    let o = a.octets();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(("NAT64", Ipv4Addr::new(o[12], o[13], o[14], o[15])));
    }
    if s[0] == 0x2002 {
        return Some(("6to4", Ipv4Addr::new(o[2], o[3], o[4], o[5])));
    }
    None
}

/// Why `ip` is refused as a platform endpoint, in any spelling, or `None`. The text follows
/// "refused by policy: " in the error.
pub fn refusal(ip: IpAddr) -> Option<String> {
    if let Some(e) = lookup(ip) {
        return Some(format!("{ip} is a {} platform endpoint ({})", e.provider, e.what));
    }
    let (form, v4) = embedded_v4(ip)?;
    lookup(IpAddr::V4(v4)).map(|e| {
        format!(
            "{ip} ({form} for {v4}) is a {} platform endpoint ({})",
            e.provider, e.what
        )
    })
}

/// Whether an `--allow` range containing `ip` may admit it: for a platform endpoint only a
/// range inside that endpoint's own range does ("one by one"), so `0.0.0.0/0` never does; a
/// NAT64 or 6to4 spelling of an endpoint is admitted by no rule. Other addresses: always.
pub fn admitted_by(rule: &Cidr, ip: IpAddr) -> bool {
    if let Some(e) = lookup(ip) {
        return e.cidr.0.contains(&rule.0);
    }
    !matches!(embedded_v4(ip), Some((_, v4)) if lookup(IpAddr::V4(v4)).is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_every_row_is_sourced() {
        let rows = parse(TABLE).unwrap();
        assert_eq!(rows.len(), endpoints().len());
        assert!(rows.iter().any(|r| r.cidr.to_string() == "168.63.129.16/32"));
        assert!(parse("|---|\n| a | 1.2.3.4 |  | x | https://x |\n").is_err());
    }

    #[test]
    fn malformed_tables_are_errors() {
        assert!(parse("no table").is_err());
        assert!(parse("|---|\n| a | 1.2.3.4 | 80 | x |\n").is_err());
        assert!(parse("|---|\n| a | nope | 80 | x | https://x |\n").is_err());
        assert!(parse("|---|\n| a | 1.2.3.4 | 80 | x | ftp://x |\n").is_err());
    }

    #[test]
    fn every_spelling_names_the_provider() {
        for s in ["168.63.129.16", "64:ff9b::a83f:8110", "2002:a83f:8110::1"] {
            let why = refusal(s.parse().unwrap()).unwrap();
            assert!(why.contains("is a Microsoft Azure platform endpoint"), "{why}");
        }
        assert!(refusal("168.63.129.17".parse().unwrap()).is_none());
        assert!(refusal("8.8.8.8".parse().unwrap()).is_none());
        assert!(refusal("64:ff9b::808:808".parse().unwrap()).is_none());
    }

    #[test]
    fn only_a_rule_inside_the_row_admits() {
        let ip: IpAddr = "199.36.153.9".parse().unwrap();
        for (rule, ok) in [
            ("199.36.153.9", true),
            ("199.36.153.8/30", true),
            ("199.36.153.0/24", false),
            ("0.0.0.0/0", false),
        ] {
            assert_eq!(admitted_by(&rule.parse().unwrap(), ip), ok, "{rule}");
        }
        let nat64: IpAddr = "64:ff9b::c724:9909".parse().unwrap();
        assert!(!admitted_by(&"64:ff9b::/96".parse().unwrap(), nat64));
        assert!(admitted_by(
            &"0.0.0.0/0".parse().unwrap(),
            "8.8.8.8".parse().unwrap()
        ));
    }
}
