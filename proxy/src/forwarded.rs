//! The client's address behind a trusted load balancer (`--trusted-proxy CIDR`): from a PROXY
//! protocol header (v1 text or v2 binary, haproxy's proxy-protocol.txt), read before anything
//! else on the socket, or else from `X-Forwarded-For`. Both are honoured only when the TCP peer
//! is a trusted proxy; from anyone else they would be a free choice of identity.

use crate::policy::{canonical, Cidr};
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature (proxy-protocol.txt §2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (§2.1).
const V1_MAX: usize = 107;
/// The largest v2 header accepted (16 fixed bytes + addresses + TLVs we ignore).
const V2_MAX: usize = 16 + 1024;

/// Whether `ip` is one of the `--trusted-proxy` ranges.
pub fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|c| c.contains(ip))
}

/// Peeks until at least `n` bytes are buffered (or the peer stops sending).
async fn peek_at_least(tcp: &TcpStream, buf: &mut [u8], n: usize) -> Result<usize> {
    loop {
        let got = tcp.peek(buf).await.context("reading a PROXY header")?;
        if got >= n || got == 0 || got == buf.len() {
            return Ok(got);
        }
        // More is on the way; the caller's handshake deadline bounds the wait.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Consumes a PROXY header if the stream starts with one and returns the client address it
/// names (`None` for `UNKNOWN`/`LOCAL`, or when there is no header). A malformed header is
/// an error: the connection is closed.
pub async fn read_proxy_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>> {
    let mut buf = [0u8; 16];
    let got = peek_at_least(tcp, &mut buf, 12).await?;
    if buf[..got].starts_with(b"PROXY ") {
        let mut line = [0u8; V1_MAX];
        let mut len = 0;
        // Byte by byte up to CRLF, so nothing after the header is consumed.
        while !line[..len].ends_with(b"\r\n") {
            if len == V1_MAX {
                bail!("PROXY v1 header longer than {V1_MAX} bytes");
            }
            tcp.read_exact(&mut line[len..=len])
                .await
                .context("PROXY v1 header")?;
            len += 1;
        }
        let h =
            ppp::v1::Header::try_from(&line[..len]).map_err(|e| anyhow::anyhow!("PROXY v1 header: {e:?}"))?;
        return Ok(match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if got >= 12 && &buf[..12] == V2_SIGNATURE {
        let got = peek_at_least(tcp, &mut buf, 16).await?;
        if got < 16 {
            bail!("PROXY v2 header cut short");
        }
        let total = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if total > V2_MAX {
            bail!("PROXY v2 header of {total} bytes (at most {V2_MAX})");
        }
        let mut header = vec![0u8; total];
        tcp.read_exact(&mut header).await.context("PROXY v2 header")?;
        let h =
            ppp::v2::Header::try_from(&header[..]).map_err(|e| anyhow::anyhow!("PROXY v2 header: {e:?}"))?;
        if h.command == ppp::v2::Command::Local {
            return Ok(None);
        }
        return Ok(match h.addresses {
            ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            _ => None,
        });
    }
    Ok(None)
}

/// The client address from `X-Forwarded-For` values (each a comma-separated list, appended to
/// by every proxy on the way): the rightmost entry that is not itself a trusted proxy. An
/// entry that is not an address ends the search there (nothing left of it can be trusted).
pub fn from_forwarded_for(values: &[String], trusted: &[Cidr]) -> Result<Option<IpAddr>, String> {
    let entries: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut last = None;
    for e in entries.iter().rev() {
        let ip = e
            .parse::<IpAddr>()
            .ok()
            .or_else(|| e.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .ok_or_else(|| format!("X-Forwarded-For entry '{}' is not an address", e.escape_default()))?;
        let ip = canonical(ip);
        last = Some(ip);
        if !is_trusted(trusted, ip) {
            return Ok(Some(ip));
        }
    }
    Ok(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_takes_the_rightmost_untrusted() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = |s: &[&str]| from_forwarded_for(&v(s), &trusted);
        assert_eq!(f(&["1.2.3.4"]), Ok(Some("1.2.3.4".parse().unwrap())));
        assert_eq!(
            f(&["6.6.6.6, 1.2.3.4, 10.0.0.2"]),
            Ok(Some("1.2.3.4".parse().unwrap()))
        );
        assert_eq!(
            f(&["6.6.6.6", "1.2.3.4,10.0.0.2"]),
            Ok(Some("1.2.3.4".parse().unwrap()))
        );
        assert_eq!(
            f(&["[2001:db8::1]:443"]),
            Ok(Some("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(f(&["10.0.0.3, 10.0.0.2"]), Ok(Some("10.0.0.3".parse().unwrap())));
        assert_eq!(f(&[]), Ok(None));
        assert!(f(&["evil, 1.2.3.4"]).is_ok());
        assert!(f(&["1.2.3.4, evil"]).is_err());
    }
}
