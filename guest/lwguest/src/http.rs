//! A small HTTP/1.1 client: GET only, Content-Length, chunked and
//! read-until-close bodies, bounded redirects and interim responses, deadlines,
//! hard limits on everything a server sends. The parser reads from a
//! [`Source`], so tests feed it scripted, split input with a scripted clock;
//! [`get`] runs it over `/dev/lwnet`.
//!
//! Header values and reason phrases are bytes (RFC 9110 §5.5 obs-text): only
//! the syntax the client needs (status code, header names, Content-Length,
//! Transfer-Encoding, Location) is interpreted. References are resolved by
//! RFC 3986 §5 (the `iri-string` crate); fragments never reach the wire.

use crate::fs::{Error, Result};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use iri_string::types::{UriAbsoluteStr, UriReferenceStr};

/// A byte stream the HTTP parser reads from (a connection, or a test script).
pub trait Source {
    /// One read: bytes read, 0 at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
    /// Waits up to `ms` milliseconds for data: true when a read will not
    /// block. The default (a source that never blocks) is always ready.
    fn wait(&mut self, _ms: u64) -> Result<bool> {
        Ok(true)
    }
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
const MAX_CHUNK_LINE: usize = 1024;

/// The limits of one request, configurable (lwpkg reads them from
/// `/etc/lwpkg/lwpkg.conf`; the names in the messages are its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request that receives nothing for this long fails (ms; 0 = never).
    /// Also the connect timeout.
    pub idle_ms: u64,
    /// A transfer slower than this (bytes per second), averaged over
    /// `rate_window_ms`, fails (0 = no minimum).
    pub min_rate: u64,
    /// The averaging window of `min_rate` (ms).
    pub rate_window_ms: u64,
    /// At most this many 1xx interim responses before the final one.
    pub max_interim: usize,
    /// At most this many redirects.
    pub max_redirects: usize,
}

impl Default for Limits {
    /// 30 s without data, 1 KiB/s over 30 s, 8 interim responses, 5 redirects
    /// (a slow or endless server fails within its window instead of hanging).
    fn default() -> Self {
        Limits {
            idle_ms: 30_000,
            min_rate: 1024,
            rate_window_ms: 30_000,
            max_interim: 8,
            max_redirects: 5,
        }
    }
}

/// An http:// or https:// URL without user information or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    /// Lower case; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with '/'.
    pub path: String,
}

impl Url {
    /// `host` or `[v6]`, with `:port` unless it is the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == (if self.tls { 443 } else { 80 }) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl core::fmt::Display for Url {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Parses an absolute http:// or https:// URL (https = TLS at the proxy).
/// Scheme and host are case-insensitive; a fragment is dropped (RFC 3986
/// §3.5: it never goes to the server).
pub fn parse_url(s: &str) -> Result<Url> {
    let bad = |why: &str| Error::msg(format!("bad URL {s:?}: {why}"));
    let s_nofrag = s.split('#').next().unwrap_or("");
    let (scheme, rest) = s_nofrag
        .split_once("://")
        .ok_or_else(|| bad("only http:// and https:// are supported"))?;
    let tls = if scheme.eq_ignore_ascii_case("http") {
        false
    } else if scheme.eq_ignore_ascii_case("https") {
        true
    } else {
        return Err(bad("only http:// and https:// are supported"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
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
        None | Some("") => {
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
    if path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(bad("spaces, control or non-ASCII characters in path"));
    }
    Ok(Url {
        tls,
        host: host.to_ascii_lowercase(),
        port,
        path,
    })
}

/// Resolves a URI reference against an absolute base URI by RFC 3986 §5.2
/// (strict parser: `http:g` is the scheme `http` and the path `g`), with
/// dot segments removed. Both are strings here; see [`resolve`] for URLs.
pub fn resolve_str(base: &str, reference: &str) -> Result<String> {
    let base = base.split('#').next().unwrap_or("");
    let base = UriAbsoluteStr::new(base).map_err(|_| Error::msg(format!("bad base URI {base:?}")))?;
    let r = UriReferenceStr::new(reference)
        .map_err(|_| Error::msg(format!("bad URI reference {reference:?}")))?;
    let out = r.resolve_against(base);
    out.ensure_rfc3986_normalizable()
        .map_err(|_| Error::msg(format!("cannot resolve {reference:?} against {base}")))?;
    Ok(out.to_string())
}

/// Resolves a reference (from `Location` or an index `url`) against `base`:
/// RFC 3986 §5 ([`resolve_str`]), then [`parse_url`] (http/https only, the
/// fragment dropped).
pub fn resolve(base: &Url, reference: &str) -> Result<Url> {
    let abs = resolve_str(&base.to_string(), reference.trim())?;
    parse_url(&abs)
}

/// The request we send: HTTP/1.1, one request per connection.
pub fn request(url: &Url, user_agent: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority()
    )
}

/// Enforces [`Limits::idle_ms`] and [`Limits::min_rate`] on a source, with
/// `clock` giving monotonic milliseconds (a scripted clock in tests).
pub struct Timed<S, C> {
    src: S,
    clock: C,
    limits: Limits,
    last_data: u64,
    window_start: u64,
    window_bytes: u64,
}

impl<S: Source, C: FnMut() -> u64> Timed<S, C> {
    /// Wraps a freshly connected `src`: both clocks start now.
    pub fn new(src: S, mut clock: C, limits: Limits) -> Self {
        let now = clock();
        Timed {
            src,
            clock,
            limits,
            last_data: now,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Errors when a limit is crossed at `now`; else how long one may wait
    /// for data before the next check (ms; None = no deadline).
    fn check(&mut self, now: u64) -> Result<Option<u64>> {
        let l = &self.limits;
        let idle = now.saturating_sub(self.last_data);
        if l.idle_ms > 0 && idle >= l.idle_ms {
            return Err(Error::msg(format!(
                "nothing received for {} ms (limit idle_timeout = {} s)",
                idle,
                fmt_secs(l.idle_ms)
            )));
        }
        let span = now.saturating_sub(self.window_start);
        if l.min_rate > 0 && l.rate_window_ms > 0 && span >= l.rate_window_ms {
            if self.window_bytes.saturating_mul(1000) < l.min_rate.saturating_mul(span) {
                return Err(Error::msg(format!(
                    "transfer too slow: {} bytes in {} ms (limit min_speed = {} bytes/s over speed_window = {} s)",
                    self.window_bytes,
                    span,
                    l.min_rate,
                    fmt_secs(l.rate_window_ms)
                )));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        let mut wait: Option<u64> = None;
        if l.idle_ms > 0 {
            wait = Some(l.idle_ms - idle);
        }
        if l.min_rate > 0 && l.rate_window_ms > 0 {
            let left = (self.window_start + l.rate_window_ms).saturating_sub(now).max(1);
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
        Ok(wait)
    }
}

fn fmt_secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    }
}

impl<S: Source, C: FnMut() -> u64> Source for Timed<S, C> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            let now = (self.clock)();
            let wait = self.check(now)?;
            if self.src.wait(wait.unwrap_or(u64::MAX))? {
                break;
            }
        }
        let n = self.src.read(buf)?;
        if n > 0 {
            self.last_data = (self.clock)();
            self.window_bytes += n as u64;
        }
        Ok(n)
    }
}

impl<S: Stream, C: FnMut() -> u64> Stream for Timed<S, C> {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        self.src.send(data)
    }
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

    /// A line of bytes without its CR LF (a bare LF is accepted too);
    /// errors past `max` bytes.
    fn line(&mut self, max: usize) -> Result<Option<Vec<u8>>> {
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
                return Ok(Some(out));
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

/// A response head. Values and the reason phrase are the bytes received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: Vec<u8>,
    /// (name as sent, value without surrounding whitespace)
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads a status line and headers, skipping at most `max_interim` 1xx
/// interim responses (RFC 9110 §15.2). `101 Switching Protocols` is an
/// error: this client never asks for an upgrade.
pub fn read_head<S: Source>(r: &mut Reader<S>, max_interim: usize) -> Result<Head> {
    let mut interim = 0;
    loop {
        let head = read_one_head(r)?;
        if head.status == 101 {
            return Err(Error::msg(
                "101 Switching Protocols, but no protocol upgrade was requested",
            ));
        }
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
        interim += 1;
        if interim > max_interim {
            return Err(Error::msg(format!(
                "more than {max_interim} interim (1xx) responses (limit max_interim)"
            )));
        }
    }
}

/// Printable text of received bytes for messages: ASCII kept, others as \xNN.
pub fn lossy(b: &[u8], n: usize) -> String {
    let mut s = String::new();
    for &c in b.iter().take(n) {
        if (b' '..0x7f).contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &b[start..end]
}

/// RFC 9110 §5.6.2 token characters (header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn read_one_head<S: Source>(r: &mut Reader<S>) -> Result<Head> {
    let status_line = r
        .line(MAX_HEAD)?
        .ok_or_else(|| Error::msg("connection closed before any response"))?;
    // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4)
    let mut parts = status_line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or(b"");
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(Error::msg(format!(
            "not an HTTP/1.x response: \"{}\"",
            lossy(&status_line, 40)
        )));
    }
    let code = parts.next().unwrap_or(b"");
    let status = match core::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(s) if code.len() == 3 && (100..600).contains(&s) => s,
        _ => return Err(Error::msg(format!("bad status code \"{}\"", lossy(code, 10)))),
    };
    let reason = parts.next().unwrap_or(b"").to_vec();
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
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err(Error::msg("folded header lines are not accepted"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| Error::msg(format!("bad header line \"{}\"", lossy(&line, 40))))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Error::msg(format!("bad header name \"{}\"", lossy(name, 40))));
        }
        // tchar is ASCII, so the name is text.
        let name = String::from_utf8_lossy(name).into_owned();
        headers.push((name, trim(value).to_vec()));
    }
    Ok(Head {
        status,
        reason,
        headers,
    })
}

/// Decides the framing per RFC 9112 §6.3, refusing ambiguous messages.
pub fn framing(head: &Head) -> Result<Framing> {
    let mut te: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    for (k, v) in &head.headers {
        if k.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Err(Error::msg("repeated Transfer-Encoding"));
            }
            te = Some(v.as_slice());
        } else if k.eq_ignore_ascii_case("content-length") {
            // "5, 5" (a list of equal values) is legal; anything else is not a length.
            for item in v.split(|&b| b == b',') {
                let item = trim(item);
                if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                    return Err(Error::msg(format!("bad Content-Length \"{}\"", lossy(v, 30))));
                }
                let n = core::str::from_utf8(item)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| Error::msg("bad Content-Length"))?;
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
        (Some(t), None) if t.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
        (Some(t), None) => Err(Error::msg(format!(
            "unsupported Transfer-Encoding \"{}\"",
            lossy(t, 30)
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
                let size_text = trim(line.split(|&b| b == b';').next().unwrap_or(b""));
                if size_text.is_empty()
                    || size_text.len() > 15
                    || !size_text.iter().all(u8::is_ascii_hexdigit)
                {
                    return Err(Error::msg(format!("bad chunk size \"{}\"", lossy(&line, 30))));
                }
                let size = core::str::from_utf8(size_text)
                    .ok()
                    .and_then(|t| u64::from_str_radix(t, 16).ok())
                    .ok_or_else(|| Error::msg("bad chunk size"))?;
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

/// GET `url` into `sink` within `limits` (redirects, interim responses;
/// the caller's `connect` applies the deadlines, see [`Timed`]);
/// `connect` opens a stream to a URL's host (TLS per the URL). Any status
/// but 2xx is an error naming it. Every error names the URL it concerns.
/// Returns the final URL.
pub fn get_with<S: Stream>(
    url: &Url,
    connect: &mut dyn FnMut(&Url) -> Result<S>,
    sink: &mut dyn Sink,
    max: u64,
    limits: &Limits,
) -> Result<Url> {
    let mut url = url.clone();
    let mut redirects = 0;
    loop {
        let mut stream = connect(&url)?;
        stream
            .send(request(&url, "lwpkg/0.1").as_bytes())
            .map_err(|e| e.context(&url))?;
        let mut reader = Reader::new(stream);
        let head = read_head(&mut reader, limits.max_interim).map_err(|e| e.context(&url))?;
        if matches!(head.status, 301 | 302 | 303 | 307 | 308) {
            let loc = head
                .header("location")
                .ok_or_else(|| Error::msg(format!("{url}: redirect without Location")))?;
            let loc = core::str::from_utf8(loc)
                .map_err(|_| Error::msg(format!("{url}: Location \"{}\" is not a URI", lossy(loc, 60))))?;
            if redirects >= limits.max_redirects {
                return Err(Error::msg(format!(
                    "{url}: more than {} redirects (limit max_redirects)",
                    limits.max_redirects
                )));
            }
            redirects += 1;
            url = resolve(&url, loc).map_err(|e| e.context(&url))?;
            continue;
        }
        if !(200..300).contains(&head.status) {
            return Err(Error::msg(format!(
                "{url}: HTTP {} {}",
                head.status,
                lossy(&head.reason, 60)
            )));
        }
        let framing = framing(&head).map_err(|e| e.context(&url))?;
        read_body(&mut reader, framing, sink, max).map_err(|e| e.context(&url))?;
        return Ok(url);
    }
}

impl Stream for crate::net::Conn {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        self.write_all(data).map_err(|e| Error::sys("send request", e))
    }
}

/// GET over `/dev/lwnet` (https:// = TLS started at the proxy), within
/// `limits` (the idle limit is also the connect timeout).
pub fn get(url: &Url, sink: &mut dyn Sink, max: u64, limits: &Limits) -> Result<Url> {
    let timeout_ms = u32::try_from(limits.idle_ms).unwrap_or(u32::MAX);
    let mut connect = |u: &Url| {
        let conn = crate::net::Conn::connect(&u.host, u.port, u.tls, timeout_ms).map_err(|e| {
            if e.errno != 0 && !e.msg.contains("missing") {
                let limit = if e.errno == crate::sys::ETIMEDOUT {
                    format!(" (limit idle_timeout = {} s)", fmt_secs(limits.idle_ms))
                } else {
                    String::new()
                };
                Error::msg(format!(
                    "{u}: cannot connect to {}:{}: {}{limit}",
                    u.host,
                    u.port,
                    crate::net::connect_reason(e.errno)
                ))
            } else {
                e.context(u)
            }
        })?;
        Ok(Timed::new(conn, crate::fs::now_ms, *limits))
    };
    get_with(url, &mut connect, sink, max, limits)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    /// Serves `data` in pieces of the given sizes (cycled), to test split reads.
    struct Script {
        data: Vec<u8>,
        pos: usize,
        splits: Vec<usize>,
        n: usize,
        sent: Rc<std::cell::RefCell<Vec<u8>>>,
        /// A scripted clock, advanced by `ms_per_read` on every read.
        clock: Rc<Cell<u64>>,
        ms_per_read: u64,
    }

    impl Script {
        fn new(data: &[u8], splits: &[usize]) -> Self {
            Script {
                data: data.to_vec(),
                pos: 0,
                splits: splits.to_vec(),
                n: 0,
                sent: Rc::default(),
                clock: Rc::default(),
                ms_per_read: 0,
            }
        }
    }

    impl Source for Script {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
            let want = self.splits[self.n % self.splits.len()].max(1);
            self.n += 1;
            self.clock.set(self.clock.get() + self.ms_per_read);
            let n = want.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Stream for Script {
        fn send(&mut self, data: &[u8]) -> Result<()> {
            self.sent.borrow_mut().extend_from_slice(data);
            Ok(())
        }
    }

    fn fetch(resp: &[u8], splits: &[usize], max: u64) -> Result<Vec<u8>> {
        let mut r = Reader::new(Script::new(resp, splits));
        let head = read_head(&mut r, Limits::default().max_interim)?;
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
        let r = get_with(
            &parse_url(start).unwrap(),
            &mut connect,
            &mut body,
            1000,
            &Limits::default(),
        );
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
        assert_eq!(n, Limits::default().max_redirects + 1);

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

    /// RFC 3986 §5.4.1 (normal) and §5.4.2 (abnormal) examples, base
    /// "http://a/b/c/d;p?q", every row.
    #[test]
    fn rfc3986_section_5_4_examples() {
        let base = "http://a/b/c/d;p?q";
        let rows = [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            // §5.4.2 abnormal examples
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g#s/./x"),
            ("g#s/../x", "http://a/b/c/g#s/../x"),
            ("http:g", "http:g"),
        ];
        for (reference, want) in rows {
            assert_eq!(resolve_str(base, reference).unwrap(), want, "{reference:?}");
        }
    }

    #[test]
    fn references_resolve_by_rfc3986_and_drop_fragments() {
        // Hostile cases: `Location: ?mirror=1` from /query/index.json, and a fragment.
        let q = parse_url("http://h/query/index.json").unwrap();
        assert_eq!(
            resolve(&q, "?mirror=1").unwrap().path,
            "/query/index.json?mirror=1"
        );
        let r = parse_url("http://h/repo/").unwrap();
        assert_eq!(
            resolve(&r, "/repo/index.json#v2").unwrap().path,
            "/repo/index.json"
        );
        assert_eq!(resolve(&r, "pkg/a.bin#frag").unwrap().path, "/repo/pkg/a.bin");
        assert_eq!(resolve(&r, "../x/./y").unwrap().path, "/x/y");
        // Absolute and network-path forms; scheme and host case.
        assert_eq!(
            resolve(&r, "//other:82/z").unwrap().to_string(),
            "http://other:82/z"
        );
        assert_eq!(
            resolve(&r, "HTTPS://Mirror.Example/z").unwrap().to_string(),
            "https://mirror.example/z"
        );
        assert_eq!(parse_url("HTTP://A:80/x#y").unwrap().to_string(), "http://a/x");
        assert_eq!(
            parse_url("http://[::1]:81/x").unwrap().to_string(),
            "http://[::1]:81/x"
        );
        assert!(resolve(&r, "ftp://x/").is_err());
        assert!(resolve(&r, "a b").is_err());
    }

    /// Runs a GET over one scripted server with a scripted clock.
    fn timed_get(resp: &[u8], split: usize, ms_per_read: u64, limits: Limits) -> (Result<Url>, Vec<u8>, u64) {
        let clock: Rc<Cell<u64>> = Rc::default();
        let sent: Rc<std::cell::RefCell<Vec<u8>>> = Rc::default();
        let mut connect = |_: &Url| {
            let mut s = Script::new(resp, &[split]);
            s.clock = clock.clone();
            s.sent = sent.clone();
            s.ms_per_read = ms_per_read;
            let c = clock.clone();
            Ok(Timed::new(s, move || c.get(), limits))
        };
        let mut body = Vec::new();
        let url = parse_url("http://127.0.0.1:8080/repo/index.json").unwrap();
        let r = get_with(&url, &mut connect, &mut body, 1 << 20, &limits);
        let t = clock.get();
        (r, body, t)
    }

    #[test]
    fn a_body_at_one_byte_per_second_fails_within_the_window() {
        // Hostile case: a 100,000-byte body sent at 1 byte/s.
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat_n(b'x', 100_000));
        let (r, _, t) = timed_get(&resp, 1, 1000, Limits::default());
        let e = r.unwrap_err();
        assert!(
            e.msg.contains("http://127.0.0.1:8080/repo/index.json") && e.msg.contains("min_speed = 1024"),
            "{e}"
        );
        assert!(t <= 31_000, "gave up only after {t} ms");
        // Fast enough: the same body at 64 KiB per 100 ms passes.
        let (r, body, _) = timed_get(&resp, 65536, 100, Limits::default());
        r.unwrap();
        assert_eq!(body.len(), 100_000);
    }

    /// A source that never has data: its wait returns false after the time asked.
    struct Stalled {
        clock: Rc<Cell<u64>>,
        head: Vec<u8>,
    }
    impl Source for Stalled {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
            let n = self.head.len().min(buf.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head.drain(..n);
            Ok(n)
        }
        fn wait(&mut self, ms: u64) -> Result<bool> {
            if !self.head.is_empty() {
                return Ok(true);
            }
            self.clock.set(self.clock.get() + ms);
            Ok(false)
        }
    }

    #[test]
    fn a_stalled_server_hits_the_idle_limit() {
        let clock: Rc<Cell<u64>> = Rc::default();
        let limits = Limits {
            idle_ms: 2000,
            min_rate: 0,
            ..Limits::default()
        };
        let src = Stalled {
            clock: clock.clone(),
            head: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab".to_vec(),
        };
        let c = clock.clone();
        let mut r = Reader::new(Timed::new(src, move || c.get(), limits));
        let head = read_head(&mut r, 8).unwrap();
        let e = read_body(&mut r, framing(&head).unwrap(), &mut Vec::new(), 100).unwrap_err();
        assert!(e.msg.contains("idle_timeout = 2 s"), "{e}");
        assert_eq!(clock.get(), 2000);
    }

    #[test]
    fn interim_responses_are_bounded_and_101_refused() {
        // Hostile case: `HTTP/1.1 100 Continue` again and again.
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n";
        let endless: Vec<u8> = cont.iter().copied().cycle().take(cont.len() * 1000).collect();
        let e = fetch(&endless, &[64], 100).unwrap_err();
        assert!(e.msg.contains("more than 8 interim"), "{e}");
        let mut eight: Vec<u8> = cont.iter().copied().cycle().take(cont.len() * 8).collect();
        eight.extend(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n");
        let e = fetch(&eight, &[64], 100).unwrap_err();
        assert!(e.msg.contains("more than 8"), "{e}");
        let mut seven: Vec<u8> = cont.iter().copied().cycle().take(cont.len() * 7).collect();
        seven.extend(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(fetch(&seven, &[5], 100).unwrap(), b"ok");
        let e = fetch(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            &[64],
            100,
        )
        .unwrap_err();
        assert!(
            e.msg.contains("101") && e.msg.contains("no protocol upgrade was requested"),
            "{e}"
        );
    }

    #[test]
    fn header_values_and_reasons_are_bytes() {
        // Hostile case: `Server: Caf\xe9`.
        let resp = b"HTTP/1.1 200 OK\r\nServer: Caf\xe9\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(fetch(resp, &[3], 100).unwrap(), b"ok");
        let mut r = Reader::new(Script::new(resp, &[64]));
        assert_eq!(
            read_head(&mut r, 8).unwrap().header("server"),
            Some(&b"Caf\xe9"[..])
        );
        let (r, _, _) = run_get(
            &[(
                "http://a/x",
                b"HTTP/1.1 404 Nicht gef\xfcnden\r\nContent-Length: 0\r\n\r\n",
            )],
            "http://a/x",
        );
        let e = r.unwrap_err();
        assert!(e.msg.contains("HTTP 404 Nicht gef\\xfcnden"), "{e}");
        let e = fetch(b"HTTP/1.1 200 OK\r\nBad\xe9Name: x\r\n\r\n", &[64], 100).unwrap_err();
        assert!(e.msg.contains("bad header name"), "{e}");
    }

    #[test]
    fn fragments_and_query_redirects_on_the_wire() {
        let clock: Rc<Cell<u64>> = Rc::default();
        let sent: Rc<std::cell::RefCell<Vec<u8>>> = Rc::default();
        let mut replies: VecDeque<&[u8]> = VecDeque::from([
            &b"HTTP/1.1 302 Found\r\nLocation: /repo/index.json#v2\r\n\r\n"[..],
            &b"HTTP/1.1 302 Found\r\nLocation: ?mirror=1\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..],
        ]);
        let mut connect = |_: &Url| {
            let mut s = Script::new(replies.pop_front().unwrap(), &[9]);
            s.sent = sent.clone();
            s.clock = clock.clone();
            Ok(s)
        };
        let start = parse_url("http://h/query/index.json#top").unwrap();
        let u = get_with(&start, &mut connect, &mut Vec::new(), 10, &Limits::default()).unwrap();
        assert_eq!(u.to_string(), "http://h/repo/index.json?mirror=1");
        let wire = String::from_utf8(sent.borrow().clone()).unwrap();
        let lines: Vec<&str> = wire.lines().filter(|l| l.starts_with("GET ")).collect();
        assert_eq!(
            lines,
            [
                "GET /query/index.json HTTP/1.1",
                "GET /repo/index.json HTTP/1.1",
                "GET /repo/index.json?mirror=1 HTTP/1.1"
            ]
        );
    }

    /// A real loopback TCP connection: `wait` is a peek with a read timeout.
    struct Tcp(std::net::TcpStream);
    impl Source for Tcp {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
            self.0.set_read_timeout(None).unwrap();
            std::io::Read::read(&mut self.0, buf).map_err(|e| Error::msg(e.to_string()))
        }
        fn wait(&mut self, ms: u64) -> Result<bool> {
            let ms = ms.clamp(1, 60_000);
            self.0
                .set_read_timeout(Some(std::time::Duration::from_millis(ms)))
                .unwrap();
            match self.0.peek(&mut [0u8; 1]) {
                Ok(_) => Ok(true),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(Error::msg(e.to_string())),
            }
        }
    }
    impl Stream for Tcp {
        fn send(&mut self, data: &[u8]) -> Result<()> {
            std::io::Write::write_all(&mut self.0, data).map_err(|e| Error::msg(e.to_string()))
        }
    }

    /// A loopback server that answers one request with `head`, then sends
    /// `trickle` bytes one every `gap_ms` (or holds the connection).
    fn server(head: &'static [u8], trickle: usize, gap_ms: u64) -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let _ = c.write_all(head);
            for _ in 0..trickle {
                std::thread::sleep(std::time::Duration::from_millis(gap_ms));
                if c.write_all(b"x").is_err() {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_secs(5));
        });
        addr
    }

    fn real_get(addr: std::net::SocketAddr, limits: Limits) -> (Result<Url>, std::time::Duration) {
        let start = std::time::Instant::now();
        let mut connect = |_: &Url| {
            let c = Tcp(std::net::TcpStream::connect(addr).unwrap());
            Ok(Timed::new(c, move || start.elapsed().as_millis() as u64, limits))
        };
        let url = parse_url(&format!("http://{addr}/repo/index.json")).unwrap();
        let r = get_with(&url, &mut connect, &mut Vec::new(), 1 << 20, &limits);
        (r, start.elapsed())
    }

    #[test]
    fn real_sockets_stalled_and_trickling_servers_end_within_the_limits() {
        let limits = Limits {
            idle_ms: 300,
            min_rate: 1024,
            rate_window_ms: 600,
            ..Limits::default()
        };
        // A server that sends the headers, then `trickle` bytes `gap_ms` apart:
        // the fetch fails with both `words` in its message, within `ms`.
        let check = |trickle, gap_ms, words: [&str; 2], ms: core::ops::Range<u128>| {
            let addr = server(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
                trickle,
                gap_ms,
            );
            let (r, took) = real_get(addr, limits);
            let e = r.unwrap_err();
            assert!(words.iter().all(|w| e.msg.contains(w)), "{e}");
            assert!(ms.contains(&took.as_millis()), "{took:?}");
        };
        // Headers, then nothing.
        check(
            0,
            0,
            ["/repo/index.json: nothing received", "idle_timeout = 0.300 s"],
            300..2000,
        );
        // One byte every 50 ms: never idle, far too slow.
        check(100, 50, ["transfer too slow", "min_speed = 1024"], 600..2500);
    }
}
