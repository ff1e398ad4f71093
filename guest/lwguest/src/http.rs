//! A small HTTP/1.1 client: GET only, Content-Length, chunked and
//! read-until-close bodies, bounded redirects, hard limits on everything a
//! server sends. The parser reads from a [`Source`], so tests feed it
//! scripted, split input; [`get`] runs it over `/dev/lwnet`.

use crate::fs::{Error, Result};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// A byte stream the HTTP parser reads from (a connection, or a test script).
pub trait Source {
    /// One read: bytes read, 0 at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
}

/// A connection: readable, and able to send the request.
pub trait Stream: Source {
    fn send(&mut self, data: &[u8]) -> Result<()>;
}

/// Where a body goes.
pub trait Sink {
    /// Called once before any data, with Content-Length when known.
    fn start(&mut self, _len: Option<u64>) -> Result<()> {
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn data(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Limits on what a server may send.
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
pub const MAX_REDIRECTS: usize = 5;
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with '/'.
    pub path: String,
}

impl core::fmt::Display for Url {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (scheme, default) = if self.tls { ("https", 443) } else { ("http", 80) };
        if self.port == default {
            write!(f, "{scheme}://{}{}", self.host, self.path)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Parses an absolute http:// or https:// URL (https = TLS at the proxy).
pub fn parse_url(s: &str) -> Result<Url> {
    let bad = |why: &str| Error::msg(format!("bad URL {s:?}: {why}"));
    let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad("only http:// and https:// are supported"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let path = match path.find('#') {
        Some(i) => path[..i].to_string(),
        None => path,
    };
    if authority.contains('@') {
        return Err(bad("user information is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or_else(|| bad("unclosed IPv6 address"))?;
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(bad("junk after IPv6 address")),
        };
        (&v6[..end], port)
    } else {
        match authority.rfind(':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        }
    };
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("bad port")),
        },
    };
    if host.is_empty() || host.len() > 253 {
        return Err(bad("bad host"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err(bad("bad characters in host"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("spaces or control characters in path"));
    }
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        path,
    })
}

/// Resolves a reference (absolute URL, "/path", or relative "x/y") against `base`.
pub fn resolve(base: &Url, reference: &str) -> Result<Url> {
    let reference = reference.trim();
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return parse_url(reference);
    }
    if reference.starts_with("//") {
        let scheme = if base.tls { "https:" } else { "http:" };
        return parse_url(&format!("{scheme}{reference}"));
    }
    if reference.contains("://") {
        return Err(Error::msg(format!("unsupported URL {reference:?}")));
    }
    let mut url = base.clone();
    url.path = if reference.starts_with('/') {
        reference.to_string()
    } else {
        let dir_end = base.path.split('?').next().unwrap_or("/").rfind('/').unwrap_or(0);
        format!("{}/{}", &base.path[..dir_end], reference)
    };
    if url.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::msg(format!("bad URL reference {reference:?}")));
    }
    Ok(url)
}

/// The request we send: HTTP/1.1, one request per connection.
pub fn request(url: &Url, user_agent: &str) -> String {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let host = if url.port == (if url.tls { 443 } else { 80 }) {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.path
    )
}

/// A buffered reader over a source.
pub struct Reader<S> {
    src: S,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl<S: Source> Reader<S> {
    pub fn new(src: S) -> Self {
        Reader {
            src,
            buf: alloc::vec![0; 16384],
            pos: 0,
            end: 0,
        }
    }

    fn fill(&mut self) -> Result<bool> {
        if self.pos < self.end {
            return Ok(true);
        }
        self.pos = 0;
        self.end = self.src.read(&mut self.buf)?;
        Ok(self.end > 0)
    }

    /// A line without its CR LF (a bare LF is accepted too); errors past `max` bytes.
    fn line(&mut self, max: usize) -> Result<Option<String>> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            if !self.fill()? {
                return if out.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::msg("connection closed in the middle of a line"))
                };
            }
            let avail = &self.buf[self.pos..self.end];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&avail[..i]);
                self.pos += i + 1;
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                if out.len() > max {
                    return Err(Error::msg("line too long"));
                }
                return String::from_utf8(out)
                    .map(Some)
                    .map_err(|_| Error::msg("line is not valid text"));
            }
            out.extend_from_slice(avail);
            self.pos = self.end;
            if out.len() > max {
                return Err(Error::msg("line too long"));
            }
        }
    }

    /// Up to `max` bytes of body; 0 at the end of the stream.
    fn some(&mut self, max: usize) -> Result<&[u8]> {
        if !self.fill()? {
            return Ok(&[]);
        }
        let n = (self.end - self.pos).min(max);
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads a status line and headers, skipping 1xx interim responses.
pub fn read_head<S: Source>(r: &mut Reader<S>) -> Result<Head> {
    loop {
        let head = read_one_head(r)?;
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
    }
}

fn read_one_head<S: Source>(r: &mut Reader<S>) -> Result<Head> {
    let status_line = r
        .line(MAX_HEAD)?
        .ok_or_else(|| Error::msg("connection closed before any response"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(Error::msg(format!(
            "not an HTTP/1.x response: {:?}",
            truncate(&status_line, 40)
        )));
    }
    let code = parts.next().unwrap_or("");
    let status = match code.parse::<u16>() {
        Ok(s) if code.len() == 3 && (100..600).contains(&s) => s,
        _ => return Err(Error::msg(format!("bad status code {:?}", truncate(code, 10)))),
    };
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut total = status_line.len();
    loop {
        let line = r
            .line(MAX_HEAD)?
            .ok_or_else(|| Error::msg("connection closed inside the response headers"))?;
        if line.is_empty() {
            break;
        }
        total += line.len() + 2;
        if total > MAX_HEAD {
            return Err(Error::msg(format!(
                "response headers larger than {MAX_HEAD} bytes"
            )));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(Error::msg(format!("more than {MAX_HEADERS} response headers")));
        }
        if line.starts_with([' ', '\t']) {
            return Err(Error::msg("folded header lines are not accepted"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Error::msg(format!("bad header line {:?}", truncate(&line, 40))))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::msg(format!("bad header name {:?}", truncate(name, 40))));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        status,
        reason,
        headers,
    })
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Decides the framing per RFC 9112 §6.3, refusing ambiguous messages.
pub fn framing(head: &Head) -> Result<Framing> {
    let mut te = None;
    let mut length: Option<u64> = None;
    for (k, v) in &head.headers {
        if k.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Err(Error::msg("repeated Transfer-Encoding"));
            }
            te = Some(v.as_str());
        } else if k.eq_ignore_ascii_case("content-length") {
            // "5, 5" (a list of equal values) is legal; anything else is not a length.
            for item in v.split(',') {
                let item = item.trim();
                if item.is_empty() || item.len() > 19 || !item.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::msg(format!("bad Content-Length {:?}", truncate(v, 30))));
                }
                let n = item
                    .parse::<u64>()
                    .map_err(|_| Error::msg("bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::msg("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        }
    }
    if head.status == 204 || head.status == 304 {
        return Ok(Framing::Length(0));
    }
    match (te, length) {
        (Some(_), Some(_)) => Err(Error::msg(
            "both Transfer-Encoding and Content-Length: refusing an ambiguous response",
        )),
        (Some(t), None) if t.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
        (Some(t), None) => Err(Error::msg(format!(
            "unsupported Transfer-Encoding {:?}",
            truncate(t, 30)
        ))),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::UntilClose),
    }
}

/// Streams the body into `sink`, refusing more than `max` bytes; returns its length.
pub fn read_body<S: Source>(
    r: &mut Reader<S>,
    framing: Framing,
    sink: &mut dyn Sink,
    max: u64,
) -> Result<u64> {
    let too_big = || Error::msg(format!("response larger than the expected {max} bytes"));
    match framing {
        Framing::Length(n) => {
            if n > max {
                return Err(too_big());
            }
            sink.start(Some(n))?;
            let mut left = n;
            while left > 0 {
                let chunk = r.some(left.min(1 << 20) as usize)?;
                if chunk.is_empty() {
                    return Err(Error::msg(format!(
                        "connection closed after {} of {n} bytes",
                        n - left
                    )));
                }
                left -= chunk.len() as u64;
                sink.data(chunk)?;
            }
            Ok(n)
        }
        Framing::UntilClose => {
            sink.start(None)?;
            let mut total = 0u64;
            loop {
                let chunk = r.some(1 << 20)?;
                if chunk.is_empty() {
                    return Ok(total);
                }
                total += chunk.len() as u64;
                if total > max {
                    return Err(too_big());
                }
                sink.data(chunk)?;
            }
        }
        Framing::Chunked => {
            sink.start(None)?;
            let mut total = 0u64;
            loop {
                let line = r
                    .line(MAX_CHUNK_LINE)?
                    .ok_or_else(|| Error::msg("connection closed before the last chunk"))?;
                let size_text = line.split(';').next().unwrap_or("").trim();
                if size_text.is_empty()
                    || size_text.len() > 15
                    || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(Error::msg(format!("bad chunk size {:?}", truncate(&line, 30))));
                }
                let size = u64::from_str_radix(size_text, 16).map_err(|_| Error::msg("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    let mut n = 0;
                    loop {
                        let t = r
                            .line(MAX_CHUNK_LINE)?
                            .ok_or_else(|| Error::msg("connection closed in the trailers"))?;
                        if t.is_empty() {
                            return Ok(total);
                        }
                        n += 1;
                        if n > MAX_HEADERS {
                            return Err(Error::msg("too many trailer lines"));
                        }
                    }
                }
                total = total.checked_add(size).ok_or_else(too_big)?;
                if total > max {
                    return Err(too_big());
                }
                let mut left = size;
                while left > 0 {
                    let chunk = r.some(left.min(1 << 20) as usize)?;
                    if chunk.is_empty() {
                        return Err(Error::msg("connection closed inside a chunk"));
                    }
                    left -= chunk.len() as u64;
                    sink.data(chunk)?;
                }
                match r.line(2)? {
                    Some(l) if l.is_empty() => {}
                    _ => return Err(Error::msg("chunk not followed by CRLF")),
                }
            }
        }
    }
}

/// GET `url` into `sink`, following up to [`MAX_REDIRECTS`] redirects;
/// `connect` opens a stream to a URL's host (TLS per the URL). Any status
/// but 2xx is an error naming it. Returns the final URL.
pub fn get_with<S: Stream>(
    url: &Url,
    connect: &mut dyn FnMut(&Url) -> Result<S>,
    sink: &mut dyn Sink,
    max: u64,
) -> Result<Url> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut stream = connect(&url)?;
        stream
            .send(request(&url, "lwpkg/0.1").as_bytes())
            .map_err(|e| e.context(&url))?;
        let mut reader = Reader::new(stream);
        let head = read_head(&mut reader).map_err(|e| e.context(&url))?;
        if matches!(head.status, 301 | 302 | 303 | 307 | 308) {
            let loc = head
                .header("location")
                .ok_or_else(|| Error::msg(format!("{url}: redirect without Location")))?;
            url = resolve(&url, loc).map_err(|e| e.context(&url))?;
            continue;
        }
        if !(200..300).contains(&head.status) {
            return Err(Error::msg(format!(
                "{url}: HTTP {} {}",
                head.status,
                truncate(&head.reason, 60)
            )));
        }
        let framing = framing(&head).map_err(|e| e.context(&url))?;
        read_body(&mut reader, framing, sink, max).map_err(|e| e.context(&url))?;
        return Ok(url);
    }
    Err(Error::msg(format!("{url}: more than {MAX_REDIRECTS} redirects")))
}

impl Stream for crate::net::Conn {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        self.write_all(data).map_err(|e| Error::sys("send request", e))
    }
}

/// GET over `/dev/lwnet` (https:// = TLS started at the proxy).
pub fn get(url: &Url, sink: &mut dyn Sink, max: u64, timeout_ms: u32) -> Result<Url> {
    let mut connect = |u: &Url| {
        crate::net::Conn::connect(&u.host, u.port, u.tls, timeout_ms).map_err(|e| {
            if e.errno != 0 && !e.msg.contains("missing") {
                Error::msg(format!(
                    "cannot connect to {}:{}: {}",
                    u.host,
                    u.port,
                    crate::net::connect_reason(e.errno)
                ))
            } else {
                e
            }
        })
    };
    get_with(url, &mut connect, sink, max)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Serves `data` in pieces of the given sizes (cycled), to test split reads.
    struct Script {
        data: Vec<u8>,
        pos: usize,
        splits: Vec<usize>,
        n: usize,
        sent: Vec<u8>,
    }

    impl Script {
        fn new(data: &[u8], splits: &[usize]) -> Self {
            Script {
                data: data.to_vec(),
                pos: 0,
                splits: splits.to_vec(),
                n: 0,
                sent: Vec::new(),
            }
        }
    }

    impl Source for Script {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
            let want = self.splits[self.n % self.splits.len()].max(1);
            self.n += 1;
            let n = want.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Stream for Script {
        fn send(&mut self, data: &[u8]) -> Result<()> {
            self.sent.extend_from_slice(data);
            Ok(())
        }
    }

    fn fetch(resp: &[u8], splits: &[usize], max: u64) -> Result<Vec<u8>> {
        let mut r = Reader::new(Script::new(resp, splits));
        let head = read_head(&mut r)?;
        let f = framing(&head)?;
        let mut body = Vec::new();
        read_body(&mut r, f, &mut body, max)?;
        Ok(body)
    }

    #[test]
    fn content_length_across_every_split() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX: y\r\n\r\nhello world";
        for split in 1..=resp.len() {
            assert_eq!(
                fetch(resp, &[split], 100).unwrap(),
                b"hello world",
                "split {split}"
            );
        }
        assert_eq!(fetch(resp, &[1, 7, 2, 30], 100).unwrap(), b"hello world");
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\n";
        for split in [1, 2, 3, 5, 64] {
            assert_eq!(fetch(resp, &[split], 100).unwrap(), b"hello world");
        }
    }

    #[test]
    fn until_close_and_bare_lf() {
        assert_eq!(
            fetch(b"HTTP/1.0 200 OK\nServer: x\n\nabc", &[4], 100).unwrap(),
            b"abc"
        );
    }

    #[test]
    fn hostile_responses_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "before any response"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status"),
            (b"HTTP/1.1 abc OK\r\n\r\n", "bad status"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "closed after 5 of 10",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nab",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                "ambiguous",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "unsupported Transfer-Encoding",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
                "bad chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
                "not followed by CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "inside a chunk",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                "before the last chunk",
            ),
            (b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n", "bad header line"),
            (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "folded"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",
                "inside the response headers",
            ),
        ];
        for (resp, want) in cases {
            let err = fetch(resp, &[3], 1000).expect_err(&String::from_utf8_lossy(resp));
            assert!(
                err.msg.contains(want),
                "{:?}: got {:?}, want {want:?}",
                String::from_utf8_lossy(resp),
                err.msg
            );
        }
    }

    #[test]
    fn size_limits_hold() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        assert!(fetch(big, &[50], 10).unwrap_err().msg.contains("larger"));
        let close = b"HTTP/1.0 200 OK\r\n\r\n0123456789abcdef";
        assert!(fetch(close, &[3], 10).unwrap_err().msg.contains("larger"));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        assert!(fetch(chunked, &[3], 10).unwrap_err().msg.contains("larger"));
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(fetch(&endless, &[4096], 10).unwrap_err().msg.contains("too long"));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("h{i}: v\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert!(fetch(&many, &[4096], 10).unwrap_err().msg.contains("more than"));
    }

    #[test]
    fn urls_parse_and_resolve() {
        let u = parse_url("http://127.0.0.1:8080/repo/index.json").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 8080, "/repo/index.json")
        );
        let u2 = parse_url("https://example.com").unwrap();
        assert_eq!((u2.tls, u2.port, u2.path.as_str()), (true, 443, "/"));
        assert_eq!(parse_url("http://[::1]:81/x").unwrap().host, "::1");
        for bad in [
            "ftp://x/",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u@h/",
            "http://h/a b",
            "http://h\0/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
        assert_eq!(resolve(&u, "pkg/a.bin").unwrap().path, "/repo/pkg/a.bin");
        assert_eq!(resolve(&u, "/top").unwrap().path, "/top");
        assert_eq!(resolve(&u, "https://other:444/z").unwrap().port, 444);
        assert_eq!(resolve(&u, "//other/z").unwrap().host, "other");
        assert!(resolve(&u, "gopher://x").is_err());
        assert!(request(&u, "t").starts_with("GET /repo/index.json HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
    }

    /// Connects to scripted servers keyed by URL.
    fn run_get(servers: &[(&str, &[u8])], start: &str) -> (Result<Url>, Vec<u8>, usize) {
        let mut map: VecDeque<(String, Vec<u8>)> =
            servers.iter().map(|(u, r)| (u.to_string(), r.to_vec())).collect();
        let mut connects = 0;
        let mut connect = |u: &Url| {
            connects += 1;
            let key = u.to_string();
            let pos = map
                .iter()
                .position(|(k, _)| *k == key)
                .ok_or_else(|| Error::msg(format!("no server for {key}")))?;
            let (_, data) = map.remove(pos).unwrap();
            Ok(Script::new(&data, &[7]))
        };
        let mut body = Vec::new();
        let r = get_with(&parse_url(start).unwrap(), &mut connect, &mut body, 1000);
        (r, body, connects)
    }

    #[test]
    fn redirects_are_followed_and_bounded() {
        let (r, body, n) = run_get(
            &[
                (
                    "http://a/x",
                    b"HTTP/1.1 302 Found\r\nLocation: /y\r\nContent-Length: 0\r\n\r\n",
                ),
                (
                    "http://a/y",
                    b"HTTP/1.1 301 Moved\r\nLocation: http://b:81/z\r\n\r\n",
                ),
                ("http://b:81/z", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            ],
            "http://a/x",
        );
        assert_eq!(r.unwrap().to_string(), "http://b:81/z");
        assert_eq!((body.as_slice(), n), (&b"ok"[..], 3));

        let lp: &[u8] = b"HTTP/1.1 302 Found\r\nLocation: /loop\r\n\r\n";
        let servers: Vec<(&str, &[u8])> = (0..10).map(|_| ("http://a/loop", lp)).collect();
        let (r, _, n) = run_get(&servers, "http://a/loop");
        assert!(r.unwrap_err().msg.contains("redirects"));
        assert_eq!(n, MAX_REDIRECTS + 1);

        let (r, _, _) = run_get(&[("http://a/x", b"HTTP/1.1 302 Found\r\n\r\n")], "http://a/x");
        assert!(r.unwrap_err().msg.contains("without Location"));
        let (r, _, _) = run_get(
            &[(
                "http://a/x",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            )],
            "http://a/x",
        );
        assert!(r.unwrap_err().msg.contains("HTTP 404"));
    }
}
