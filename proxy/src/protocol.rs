//! The lwproxy wire protocol, defined once for the proxy and for every client in this
//! repository (lwhost's main side, the proxy's tests, both benchmarks): message types,
//! subprotocol names, the binary frame header, the flow-control window and the error codes.
//! The document is `docs/protocol.md`.
//!
//! Server side: [`parse_text`]/[`parse_binary`] validate client messages, the builders
//! ([`opened`], [`error`], ...) write server messages. Client side: [`client`] builds client
//! messages and [`ServerMsg`] parses server messages. Pure functions, no I/O, so every hostile
//! input can be unit-tested.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Subprotocol that enables binary data frames, `ack`, `shutdown` and `eof`.
pub const SUBPROTOCOL_V2: &str = "lwproxy.v2";
/// Subprotocol naming the first protocol, v1, explicitly (same as offering none).
pub const SUBPROTOCOL_V1: &str = "lwproxy.v1";
/// Prefix of the subprotocol that carries a token (never echoed).
pub const BEARER_PREFIX: &str = "bearer.";
/// Most un-acked bytes a sender may have in flight per connection and direction, unless a
/// v2 client negotiates another proxy-to-client window in its `open` (see [`grant_window`]).
/// The client-to-proxy window is always this: it is what the proxy buffers per connection.
pub const WINDOW: u64 = 262_144;
/// Largest proxy-to-client window the proxy grants (`"window"` in `open`/`opened`). The
/// window does not grow the proxy's memory (data beyond the session's short outgoing queue
/// waits in the target's socket), only what may be in flight towards the client.
pub const MAX_WINDOW: u64 = 4 * 1024 * 1024;

/// The proxy-to-client window granted for a client's offer (`"window"` of `open`): the offer
/// capped at [`MAX_WINDOW`], or [`WINDOW`] when the client offers none (older clients).
pub fn grant_window(offer: Option<u64>) -> u64 {
    offer.map_or(WINDOW, |w| w.min(MAX_WINDOW))
}

/// Receive-window autotuning of a client's proxy-to-client window, the one rule lwhost's main
/// side follows (the page's `host/web/js/link.js` restates it; docs/protocol.md "Flow
/// control"). Modelled on Linux's dynamic right-sizing (`tcp_rcv_rtt_measure` and
/// `tcp_rcv_space_adjust` in net/ipv4/tcp_input.c, Linux 6.12):
///
/// - the round trip is estimated from the receive side alone: the time the last whole window
///   took to arrive after a mark (it cannot arrive sooner than one round trip, as the credit
///   for it must reach the proxy first). The latest sample is kept, not the smallest: a
///   window-limited stream's samples lengthen as the window grows (queues along the path,
///   scheduling jitter), and the smallest, from the first small windows, cut the measurement
///   short and stalled growth below what the path needs;
/// - once per round trip it counts `copied`: the bytes the reader consumed in it minus the
///   bytes still waiting for the reader (`copied -= inq` in `tcp_rcv_space_adjust`), so a
///   reader that leaves data queued does not grow the window. When `copied` exceeds `space`
///   (the `copied` of the last growth; half the window at the start or after a grant), the
///   window becomes `2 × copied`, plus DRS's allowance for a rising rate,
///   `2 × (2 × copied) × (copied − space) / space`, never above [`MAX_WINDOW`] (DRS's
///   `16 × advmss` cushion has no counterpart here), and `space` becomes `copied`. It never
///   shrinks.
///
/// So a reader that keeps up grows the window to [`MAX_WINDOW`] within a few round trips,
/// whatever the path's round trip does; a reader slower than the window-limited stream leaves
/// it (the rest waits queued and is subtracted). The proxy's memory does not depend on the
/// window (see [`MAX_WINDOW`]). A grown window goes to the proxy as `"window"` in the next
/// `ack` ([`client::ack_window`]). Times are microseconds on any monotonic clock; byte counts
/// are totals since the connection opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowTuner {
    window: u64,
    received: u64,
    consumed: u64,
    /// Latest round-trip sample, in microseconds (none before the first window arrived).
    rtt_us: Option<u64>,
    /// (`received` total that ends the current round-trip sample, when it started).
    rtt_mark: Option<(u64, u64)>,
    /// (`consumed` total, time) at the start of the current measurement.
    epoch: (u64, u64),
    /// Bytes per round trip the window is sized for (`rcvq_space.space`): the `copied` of the
    /// last growth, or half the window.
    space: u64,
}

impl WindowTuner {
    /// A tuner for a connection whose window is `window` bytes (what the client offered).
    pub fn new(window: u64, now_us: u64) -> Self {
        let window = window.clamp(1, MAX_WINDOW);
        WindowTuner {
            window,
            received: 0,
            consumed: 0,
            rtt_us: None,
            rtt_mark: None,
            epoch: (0, now_us),
            space: window / 2,
        }
    }

    /// The window in bytes: what the proxy may have in flight towards this client, once it
    /// has seen the last advertisement.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The proxy's grant from `opened` (`None` from proxies older than the field: [`WINDOW`]).
    pub fn granted(&mut self, grant: Option<u64>) {
        self.window = grant.unwrap_or(WINDOW).clamp(1, MAX_WINDOW);
        self.space = self.window / 2;
    }

    /// `n` bytes arrived from the proxy at `now_us`.
    pub fn on_received(&mut self, n: u64, now_us: u64) {
        self.received = self.received.saturating_add(n);
        match self.rtt_mark {
            Some((end, _)) if self.received < end => {}
            Some((_, start)) => {
                self.rtt_us = Some(now_us.saturating_sub(start).max(1));
                self.rtt_mark = Some((self.received.saturating_add(self.window), now_us));
            }
            None => self.rtt_mark = Some((self.received.saturating_add(self.window), now_us)),
        }
    }

    /// The reader consumed `n` bytes at `now_us` (they are acked now). Returns the new window
    /// when it grew, to be advertised with this ack.
    pub fn on_consumed(&mut self, n: u64, now_us: u64) -> Option<u64> {
        self.consumed = self.consumed.saturating_add(n);
        let rtt = self.rtt_us?;
        let (since, start) = self.epoch;
        if now_us.saturating_sub(start) < rtt {
            return None;
        }
        self.epoch = (self.consumed, now_us);
        let queued = self.received.saturating_sub(self.consumed);
        // Capped so the products below stay far from overflow (and exact in link.js).
        let copied = (self.consumed - since).saturating_sub(queued).min(MAX_WINDOW);
        if copied <= self.space {
            return None;
        }
        let rcvwin = copied * 2;
        // DRS's allowance for a rising rate (none when the window was 1 byte: space 0).
        let grow = (rcvwin * (copied - self.space))
            .checked_div(self.space)
            .unwrap_or(0);
        let want = (rcvwin + 2 * grow).min(MAX_WINDOW);
        self.space = copied;
        (want > self.window).then(|| {
            self.window = want;
            want
        })
    }
}
/// Size of a binary data frame header: the connection id, big-endian.
pub const BINARY_HEADER: usize = 4;
/// Largest payload the clients in this repository (lwhost, native and in the browser) put in
/// one binary data frame, in bytes: a quarter of [`WINDOW`], so acks keep the window moving.
pub const FRAME_MAX: usize = 65_536;

/// Machine-readable reason of an `error` message, sent as its `code` field beside the human
/// text `msg` (an additive field: clients that read only `msg` keep working). Serialized in
/// snake_case (`"policy"`, `"refused"`, ...); a code this build does not know parses as
/// [`ErrorCode::Other`], so new codes never break old clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message broke the protocol (bad JSON, unknown id, a v2 message on v1, ...).
    Protocol,
    /// The `host` of an `open` is not a valid name or address.
    InvalidHost,
    /// The destination is refused by the proxy's policy (address range or port).
    Policy,
    /// A per-identity limit was hit (rates, concurrency, the flow-control window).
    Limit,
    /// The proxy is shutting down and accepts no new connections.
    Unavailable,
    /// The name does not resolve, or to no address.
    Unreachable,
    /// The target refused the TCP connection.
    Refused,
    /// Connecting, or the connection, timed out (connect or idle timeout).
    Timeout,
    /// The target reset the connection.
    Reset,
    /// The TLS handshake with the target failed, or its name is not a valid server name.
    Tls,
    /// Any other I/O error on the target connection.
    Io,
    /// A code this build does not know (sent by a newer proxy).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The wire spelling, as in the `code` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Protocol => "protocol",
            ErrorCode::InvalidHost => "invalid_host",
            ErrorCode::Policy => "policy",
            ErrorCode::Limit => "limit",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unreachable => "unreachable",
            ErrorCode::Refused => "refused",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Reset => "reset",
            ErrorCode::Tls => "tls",
            ErrorCode::Io => "io",
            ErrorCode::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection (or an `open`) failed: the code and the human text of an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub msg: String,
}

impl Failure {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Failure {
            code,
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Failure {}

/// Which dialect a session speaks, fixed at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `lwproxy.v1`, the first protocol (also spoken when no subprotocol is offered): JSON
    /// text messages, base64 data, no flow-control messages.
    V1,
    /// `lwproxy.v2`: binary data frames, windowed flow control, half-close.
    V2,
}

/// A message from the client, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    Open {
        id: u32,
        host: String,
        port: u16,
        tls: bool,
        timeout_ms: Option<u64>,
        /// v2: the proxy-to-client window the client offers, in bytes (at least 1).
        window: Option<u64>,
    },
    Write {
        id: u32,
        data: Bytes,
    },
    Close {
        id: u32,
    },
    Shutdown {
        id: u32,
    },
    Ack {
        id: u32,
        bytes: u64,
        /// v2: the client raises its proxy-to-client window to this many bytes (at least 1;
        /// the proxy caps it at [`MAX_WINDOW`] and never shrinks a window).
        window: Option<u64>,
    },
}

/// Why a client message was rejected; `id` is set when the message named a usable id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub id: Option<u32>,
    pub code: ErrorCode,
    pub msg: String,
}

impl ProtoError {
    /// A [`ErrorCode::Protocol`] error.
    pub fn new(id: Option<u32>, msg: impl Into<String>) -> Self {
        ProtoError {
            id,
            code: ErrorCode::Protocol,
            msg: msg.into(),
        }
    }
}

fn field_u32(obj: &serde_json::Map<String, Value>, name: &str) -> Result<u32, String> {
    match obj.get(name) {
        None => Err(format!("missing field '{name}'")),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("field '{name}' must be an integer from 0 to 4294967295")),
    }
}

/// An optional positive integer field (absent or null: `None`).
fn field_positive(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("field '{name}' must be a positive integer")),
    }
}

fn field_str<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match obj.get(name) {
        None => Err(format!("missing field '{name}'")),
        Some(v) => v
            .as_str()
            .ok_or_else(|| format!("field '{name}' must be a string")),
    }
}

/// Parses one text frame. `dialect` decides whether v2-only messages are accepted.
pub fn parse_text(text: &str, dialect: Dialect) -> Result<ClientMsg, ProtoError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProtoError::new(None, format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ProtoError::new(None, "message must be a JSON object"))?;
    let kind = match obj.get("t") {
        None => return Err(ProtoError::new(None, "missing field 't'")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ProtoError::new(None, "field 't' must be a string")),
    };
    let id = field_u32(obj, "id").map_err(|m| ProtoError::new(None, format!("'{kind}': {m}")))?;
    let err = |m: String| ProtoError::new(Some(id), format!("'{kind}': {m}"));
    let need_v2 = |k: &str| -> Result<(), ProtoError> {
        if dialect == Dialect::V2 {
            Ok(())
        } else {
            Err(ProtoError::new(
                Some(id),
                format!("'{k}' needs subprotocol {SUBPROTOCOL_V2}"),
            ))
        }
    };
    match kind {
        "open" => {
            let host = field_str(obj, "host").map_err(err)?;
            let port = obj
                .get("port")
                .ok_or_else(|| err("missing field 'port'".into()))?
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| err("field 'port' must be an integer from 1 to 65535".into()))?;
            let tls = match obj.get("tls") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(err("field 'tls' must be a boolean".into())),
            };
            let timeout_ms = field_positive(obj, "timeout_ms").map_err(err)?;
            let window = field_positive(obj, "window").map_err(err)?;
            Ok(ClientMsg::Open {
                id,
                host: host.to_owned(),
                port,
                tls,
                timeout_ms,
                window,
            })
        }
        "write" => {
            let b64 = field_str(obj, "b64").map_err(err)?;
            let data = B64
                .decode(b64)
                .map_err(|e| err(format!("bad base64 in 'b64': {e}")))?;
            Ok(ClientMsg::Write {
                id,
                data: Bytes::from(data),
            })
        }
        "close" => Ok(ClientMsg::Close { id }),
        "shutdown" => {
            need_v2("shutdown")?;
            Ok(ClientMsg::Shutdown { id })
        }
        "ack" => {
            need_v2("ack")?;
            let bytes = obj
                .get("bytes")
                .ok_or_else(|| err("missing field 'bytes'".into()))?
                .as_u64()
                .ok_or_else(|| err("field 'bytes' must be a non-negative integer".into()))?;
            let window = field_positive(obj, "window").map_err(err)?;
            Ok(ClientMsg::Ack { id, bytes, window })
        }
        other => Err(ProtoError::new(
            Some(id),
            format!("unknown message type '{}'", truncate(other, 32)),
        )),
    }
}

/// Parses one binary frame (v2 only): 4-byte big-endian id, then payload.
pub fn parse_binary(frame: Bytes, dialect: Dialect) -> Result<ClientMsg, ProtoError> {
    if dialect != Dialect::V2 {
        return Err(ProtoError::new(
            None,
            format!("binary frames need subprotocol {SUBPROTOCOL_V2}"),
        ));
    }
    if frame.len() < BINARY_HEADER {
        return Err(ProtoError::new(
            None,
            format!(
                "binary frame of {} bytes is shorter than its 4-byte id",
                frame.len()
            ),
        ));
    }
    let id = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    Ok(ClientMsg::Write {
        id,
        data: frame.slice(BINARY_HEADER..),
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// --- server messages --------------------------------------------------------

/// `opened`; v2 (`Some((addr, window))`) adds the address reached and the granted
/// proxy-to-client window.
pub fn opened(id: u32, v2: Option<(&str, u64)>) -> String {
    match v2 {
        Some((a, w)) => json!({"t": "opened", "id": id, "addr": a, "window": w}).to_string(),
        None => id_message("opened", id),
    }
}

/// `closed`: connection `id` is gone; its id may be reused.
pub fn closed(id: u32) -> String {
    id_message("closed", id)
}

/// v2 `eof`: the target of `id` finished sending (half-close).
pub fn eof(id: u32) -> String {
    id_message("eof", id)
}

/// v2 `ack`: the receiver consumed `bytes` of `id`'s data (window credit); the proxy and
/// clients send the same message (a client may add a window, [`client::ack_window`]).
pub fn ack(id: u32, bytes: u64) -> String {
    json!({"t": "ack", "id": id, "bytes": bytes}).to_string()
}

/// A message of type `t` whose only field is the connection id.
fn id_message(t: &str, id: u32) -> String {
    json!({"t": t, "id": id}).to_string()
}

/// An error; `id` 0 is used for errors that concern no connection (e.g. invalid JSON).
pub fn error(id: Option<u32>, code: ErrorCode, msg: &str) -> String {
    json!({"t": "error", "id": id.unwrap_or(0), "code": code, "msg": msg}).to_string()
}

/// A v1 `data` message with base64 payload.
pub fn data_json(id: u32, payload: &[u8]) -> String {
    // Built by hand: serde_json would copy the base64 string once more.
    let mut s = String::with_capacity(40 + payload.len().div_ceil(3) * 4);
    s.push_str("{\"t\":\"data\",\"id\":");
    s.push_str(&id.to_string());
    s.push_str(",\"b64\":\"");
    B64.encode_string(payload, &mut s);
    s.push_str("\"}");
    s
}

/// A v2 binary data frame: writes the header in front of a payload buffer that was read
/// with `BINARY_HEADER` bytes of headroom (no copy).
pub fn fill_binary_header(id: u32, buf: &mut BytesMut) {
    buf[..BINARY_HEADER].copy_from_slice(&id.to_be_bytes());
}

/// A v2 binary data frame from a payload (copies; clients and tests).
pub fn data_binary(id: u32, payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(BINARY_HEADER + payload.len());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(payload);
    Bytes::from(b)
}

/// Splits a v2 binary data frame into the connection id and the payload; `None` when the
/// frame is shorter than [`BINARY_HEADER`].
pub fn split_binary(frame: &[u8]) -> Option<(u32, &[u8])> {
    let (head, payload) = frame.split_first_chunk::<BINARY_HEADER>()?;
    Some((u32::from_be_bytes(*head), payload))
}

// --- the client side ----------------------------------------------------------

/// A message from the proxy, as a client parses it. Unknown message types parse as
/// [`ServerMsg::Unknown`] (the protocol grows additively).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum ServerMsg {
    /// The connection is up; v2 adds the target address it reached.
    Opened {
        id: u32,
        #[serde(default)]
        addr: Option<String>,
        /// v2: the proxy-to-client window granted (absent from older proxies: [`WINDOW`]).
        #[serde(default)]
        window: Option<u64>,
    },
    /// v1 data, base64 in `b64` (v2 sends binary frames instead).
    Data { id: u32, b64: String },
    /// v2: the target finished sending (half-close).
    Eof { id: u32 },
    /// The connection is gone; its id may be reused.
    Closed { id: u32 },
    /// v2: the proxy consumed `bytes` of the client's data (window credit).
    Ack { id: u32, bytes: u64 },
    /// A failure; `id` absent or 0 when it concerns no connection. `code` is absent from
    /// proxies older than the code field.
    Error {
        #[serde(default)]
        id: Option<u32>,
        #[serde(default)]
        code: Option<ErrorCode>,
        msg: String,
    },
    #[serde(other)]
    Unknown,
}

/// Builders of client messages (text frames).
pub mod client {
    use super::B64;
    use base64::Engine as _;
    use serde_json::json;

    /// `open`: connect connection `id` to `host:port`, through TLS started at the proxy when
    /// `tls`, with a connect timeout of `timeout_ms` (the proxy's own is the upper bound).
    pub fn open(id: u32, host: &str, port: u16, tls: bool, timeout_ms: Option<u64>) -> String {
        open_window(id, host, port, tls, timeout_ms, None)
    }

    /// [`open`] offering a proxy-to-client `window` in bytes (v2; the proxy answers with what
    /// it grants in `opened`, see [`super::grant_window`]).
    pub fn open_window(
        id: u32,
        host: &str,
        port: u16,
        tls: bool,
        timeout_ms: Option<u64>,
        window: Option<u64>,
    ) -> String {
        let mut m = json!({"t": "open", "id": id, "host": host, "port": port});
        if let Some(w) = window {
            m["window"] = w.into();
        }
        if tls {
            m["tls"] = true.into();
        }
        if let Some(ms) = timeout_ms {
            m["timeout_ms"] = ms.into();
        }
        m.to_string()
    }

    /// v2 `ack` of `bytes` that also raises the proxy-to-client window of `id` to `window`
    /// bytes (see [`super::WindowTuner`]); a proxy older than the field ignores it.
    pub fn ack_window(id: u32, bytes: u64, window: Option<u64>) -> String {
        let mut m = json!({"t": "ack", "id": id, "bytes": bytes});
        if let Some(w) = window {
            m["window"] = w.into();
        }
        m.to_string()
    }

    /// v1 `write` with base64 payload (v2 clients send [`super::data_binary`] frames).
    pub fn write_json(id: u32, payload: &[u8]) -> String {
        json!({"t": "write", "id": id, "b64": B64.encode(payload)}).to_string()
    }

    /// `close`: end connection `id` in both directions.
    pub fn close(id: u32) -> String {
        super::id_message("close", id)
    }

    /// v2 `shutdown`: half-close, no more data from the client on `id`.
    pub fn shutdown(id: u32) -> String {
        super::id_message("shutdown", id)
    }

    /// v2 `ack`: the client consumed `bytes` of `id`'s data.
    pub use super::ack;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v1(s: &str) -> Result<ClientMsg, ProtoError> {
        parse_text(s, Dialect::V1)
    }

    #[test]
    fn v1_messages_parse() {
        assert_eq!(
            v1(r#"{"t":"open","id":1,"host":"example.com","port":80}"#),
            Ok(ClientMsg::Open {
                id: 1,
                host: "example.com".into(),
                port: 80,
                tls: false,
                timeout_ms: None,
                window: None
            })
        );
        assert_eq!(
            v1(r#"{"t":"write","id":7,"b64":"aGk="}"#),
            Ok(ClientMsg::Write {
                id: 7,
                data: Bytes::from_static(b"hi")
            })
        );
        assert_eq!(v1(r#"{"t":"close","id":7}"#), Ok(ClientMsg::Close { id: 7 }));
    }

    #[test]
    fn open_extensions_parse() {
        assert_eq!(
            v1(r#"{"t":"open","id":2,"host":"h","port":443,"tls":true,"timeout_ms":500}"#),
            Ok(ClientMsg::Open {
                id: 2,
                host: "h".into(),
                port: 443,
                tls: true,
                timeout_ms: Some(500),
                window: None
            })
        );
        let v2 = |s: &str| parse_text(s, Dialect::V2);
        let open = v2(r#"{"t":"open","id":2,"host":"h","port":80,"window":1048576}"#);
        assert!(matches!(
            open,
            Ok(ClientMsg::Open {
                window: Some(1_048_576),
                ..
            })
        ));
        for bad in [r#""1""#, "0", "-1", "1.5"] {
            let m = format!(r#"{{"t":"open","id":2,"host":"h","port":80,"window":{bad}}}"#);
            let e = v2(&m).unwrap_err();
            assert!(
                e.msg.contains("'window' must be a positive integer"),
                "{bad}: {e:?}"
            );
            assert_eq!(e.id, Some(2));
        }
        assert_eq!(grant_window(None), WINDOW);
        assert_eq!(grant_window(Some(1)), 1);
        assert_eq!(grant_window(Some(1 << 20)), 1 << 20);
        assert_eq!(grant_window(Some(u64::MAX)), MAX_WINDOW);
    }

    #[test]
    fn v2_ack_may_raise_the_window_and_hostile_values_are_refused() {
        let v2 = |s: &str| parse_text(s, Dialect::V2);
        assert_eq!(
            v2(r#"{"t":"ack","id":2,"bytes":5,"window":18446744073709551615}"#),
            Ok(ClientMsg::Ack {
                id: 2,
                bytes: 5,
                window: Some(u64::MAX)
            })
        );
        for bad in [r#""1""#, "0", "-1", "1.5", "1e3", "[]"] {
            let m = format!(r#"{{"t":"ack","id":2,"bytes":5,"window":{bad}}}"#);
            let e = v2(&m).unwrap_err();
            assert!(
                e.msg.contains("'window' must be a positive integer"),
                "{bad}: {e:?}"
            );
            assert_eq!(e.id, Some(2));
        }
    }

    /// Drives a tuner through a transfer limited by its window: round trip `round` lasts
    /// `rtt_us(round, window)`, one window delivered and consumed per round trip; returns the
    /// windows advertised. (Restated in host/web/test/page.js, check `window_tuner_rule`.)
    fn window_limited_transfer(rtt_us: impl Fn(u64, u64) -> u64, rounds: u64) -> Vec<u64> {
        let mut t = WindowTuner::new(WINDOW, 0);
        let mut grown = Vec::new();
        let mut now = 0;
        for round in 0..rounds {
            let w = t.window();
            let rtt = rtt_us(round, w);
            // The window arrives in 64 KiB frames spread over the round trip, each consumed
            // (and acked) as it lands.
            let frames = w.div_ceil(65_536);
            for f in 0..frames {
                let at = now + f * rtt / frames;
                let n = 65_536.min(w - f * 65_536);
                t.on_received(n, at);
                grown.extend(t.on_consumed(n, at));
            }
            now += rtt;
        }
        grown
    }

    fn assert_grows_to_the_cap(grown: &[u64]) {
        assert!(grown.windows(2).all(|w| w[0] < w[1]), "only grows: {grown:?}");
        assert_eq!(grown.last(), Some(&MAX_WINDOW), "up to the cap: {grown:?}");
    }

    #[test]
    fn tuner_grows_while_the_reader_keeps_up_up_to_max_window() {
        assert_grows_to_the_cap(&window_limited_transfer(|_, _| 1_000, 20));
    }

    /// The round trip a window-limited stream sees varies and lengthens as the window grows
    /// (here 1-4 ms of jitter plus 1 ms per 64 KiB in flight, a path draining 64 MiB/s): the
    /// smallest sample (the first window's) stalled the old rule at 640 KiB.
    #[test]
    fn tuner_reaches_max_window_when_round_trips_vary() {
        let jitter = [1_000, 4_000, 2_000, 3_000];
        let grown = window_limited_transfer(|r, w| jitter[r as usize % 4] + w * 1_000 / 65_536, 30);
        assert_grows_to_the_cap(&grown);
    }

    #[test]
    fn tuner_keeps_the_window_for_a_slow_reader() {
        let mut t = WindowTuner::new(WINDOW, 0);
        // A whole window arrives in 1 ms (the round-trip sample) ...
        for i in 0..8 {
            t.on_received(WINDOW / 4, i * 250);
        }
        // ... but the reader drains only 16 KiB per millisecond.
        let mut grown = Vec::new();
        for ms in 1..200 {
            grown.extend(t.on_consumed(16_384, ms * 1_000));
        }
        assert_eq!(grown, Vec::<u64>::new());
        assert_eq!(t.window(), WINDOW);
    }

    /// A reader slower than the stream, with the proxy refilling the window as acks return
    /// (1 ms one way): a window's arrival is paced by the reader, so the round-trip sample is
    /// long and a whole window is consumed per sample, but most of it waited queued: no growth.
    #[test]
    fn tuner_keeps_the_window_for_a_paced_slow_reader() {
        let mut t = WindowTuner::new(WINDOW, 0);
        let (mut sent, mut arriving, mut grown) = (0u64, 0u64, Vec::new());
        for ms in 0..1_000u64 {
            t.on_received(arriving, ms * 1_000);
            let n = 16_384.min(t.received - t.consumed);
            grown.extend(t.on_consumed(n, ms * 1_000));
            arriving = t.window() - (sent - t.consumed);
            sent += arriving;
        }
        assert_eq!(grown, Vec::<u64>::new());
        assert_eq!(t.window(), WINDOW);
    }

    #[test]
    fn tuner_needs_a_round_trip_sample_and_takes_the_grant() {
        let mut t = WindowTuner::new(u64::MAX, 0);
        assert_eq!(t.window(), MAX_WINDOW, "the offer is capped");
        t.granted(None);
        assert_eq!(t.window(), WINDOW, "an old proxy granted WINDOW");
        t.granted(Some(65_536));
        assert_eq!(t.window(), 65_536);
        // No data received yet: no round-trip estimate, no growth whatever is consumed.
        assert_eq!(t.on_consumed(1 << 30, 1_000_000), None);
        t.granted(Some(0));
        assert_eq!(t.window(), 1, "a zero grant is treated as the smallest window");
    }

    #[test]
    fn hostile_text_is_rejected_with_reason() {
        let cases = [
            ("not json", "invalid JSON"),
            ("[1,2]", "JSON object"),
            (r#"{"id":1}"#, "missing field 't'"),
            (r#"{"t":5,"id":1}"#, "'t' must be a string"),
            (r#"{"t":"open"}"#, "missing field 'id'"),
            (r#"{"t":"open","id":-1}"#, "'id' must be an integer"),
            (r#"{"t":"open","id":1.5}"#, "'id' must be an integer"),
            (r#"{"t":"open","id":4294967296}"#, "'id' must be an integer"),
            (r#"{"t":"open","id":1,"port":80}"#, "missing field 'host'"),
            (r#"{"t":"open","id":1,"host":"h"}"#, "missing field 'port'"),
            (r#"{"t":"open","id":1,"host":"h","port":0}"#, "'port' must be"),
            (r#"{"t":"open","id":1,"host":"h","port":70000}"#, "'port' must be"),
            (
                r#"{"t":"open","id":1,"host":"h","port":80,"tls":"yes"}"#,
                "'tls' must be",
            ),
            (r#"{"t":"write","id":1}"#, "missing field 'b64'"),
            (r#"{"t":"write","id":1,"b64":"@@@"}"#, "bad base64"),
            (r#"{"t":"bogus","id":1}"#, "unknown message type 'bogus'"),
            (r#"{"t":"ack","id":1,"bytes":5}"#, "needs subprotocol lwproxy.v2"),
            (r#"{"t":"shutdown","id":1}"#, "needs subprotocol lwproxy.v2"),
        ];
        for (input, want) in cases {
            match v1(input) {
                Ok(m) => panic!("{input} parsed as {m:?}"),
                Err(e) => assert!(e.msg.contains(want), "{input}: got '{}'", e.msg),
            }
        }
    }

    #[test]
    fn error_keeps_the_id_when_usable() {
        let e = v1(r#"{"t":"write","id":9,"b64":"!"}"#).unwrap_err();
        assert_eq!(e.id, Some(9));
        let e = v1("garbage").unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn v2_messages_parse() {
        let v2 = |s| parse_text(s, Dialect::V2);
        assert_eq!(
            v2(r#"{"t":"ack","id":3,"bytes":1000}"#),
            Ok(ClientMsg::Ack {
                id: 3,
                bytes: 1000,
                window: None
            })
        );
        assert_eq!(
            v2(r#"{"t":"shutdown","id":3}"#),
            Ok(ClientMsg::Shutdown { id: 3 })
        );
        assert!(v2(r#"{"t":"ack","id":3,"bytes":-1}"#).is_err());
    }

    #[test]
    fn binary_frames() {
        let f = data_binary(0x01020304, b"xyz");
        assert_eq!(&f[..4], &[1, 2, 3, 4]);
        assert_eq!(
            parse_binary(f.clone(), Dialect::V2),
            Ok(ClientMsg::Write {
                id: 0x01020304,
                data: Bytes::from_static(b"xyz")
            })
        );
        assert!(parse_binary(f, Dialect::V1)
            .unwrap_err()
            .msg
            .contains("lwproxy.v2"));
        assert!(parse_binary(Bytes::from_static(&[1, 2]), Dialect::V2)
            .unwrap_err()
            .msg
            .contains("shorter"));
        // A frame with an id and no payload is a valid empty write.
        assert!(parse_binary(Bytes::from_static(&[0, 0, 0, 1]), Dialect::V2).is_ok());
    }

    #[test]
    fn server_messages_are_valid_json() {
        let d: Value = serde_json::from_str(&data_json(5, b"hello")).unwrap();
        assert_eq!(d["t"], "data");
        assert_eq!(d["id"], 5);
        assert_eq!(d["b64"], "aGVsbG8=");
        let e: Value = serde_json::from_str(&error(None, ErrorCode::Protocol, "x \"quoted\"")).unwrap();
        assert_eq!(e["id"], 0);
        assert_eq!(e["code"], "protocol");
        assert_eq!(e["msg"], "x \"quoted\"");
        let o: Value = serde_json::from_str(&opened(1, Some(("1.2.3.4:80", WINDOW)))).unwrap();
        assert_eq!(o["addr"], "1.2.3.4:80");
        assert_eq!(o["window"], WINDOW);
    }

    #[test]
    fn clients_parse_what_the_server_builds() {
        let parse = |s: &str| serde_json::from_str::<ServerMsg>(s).unwrap();
        assert_eq!(
            parse(&opened(3, Some(("1.2.3.4:80", 65536)))),
            ServerMsg::Opened {
                id: 3,
                addr: Some("1.2.3.4:80".into()),
                window: Some(65536)
            }
        );
        assert_eq!(
            parse(&opened(3, None)),
            ServerMsg::Opened {
                id: 3,
                addr: None,
                window: None
            }
        );
        assert_eq!(parse(&closed(3)), ServerMsg::Closed { id: 3 });
        assert_eq!(parse(&eof(3)), ServerMsg::Eof { id: 3 });
        assert_eq!(parse(&ack(3, 100)), ServerMsg::Ack { id: 3, bytes: 100 });
        assert_eq!(
            parse(&data_json(3, b"hi")),
            ServerMsg::Data {
                id: 3,
                b64: "aGk=".into()
            }
        );
        assert_eq!(
            parse(&error(Some(3), ErrorCode::Policy, "refused by policy: x")),
            ServerMsg::Error {
                id: Some(3),
                code: Some(ErrorCode::Policy),
                msg: "refused by policy: x".into()
            }
        );
        // An older proxy (no code), a newer one (unknown code), an unknown message type.
        assert_eq!(
            parse(r#"{"t":"error","msg":"x"}"#),
            ServerMsg::Error {
                id: None,
                code: None,
                msg: "x".into()
            }
        );
        assert!(matches!(
            parse(r#"{"t":"error","id":1,"code":"martian","msg":"x"}"#),
            ServerMsg::Error {
                code: Some(ErrorCode::Other),
                ..
            }
        ));
        assert_eq!(parse(r#"{"t":"future","id":1}"#), ServerMsg::Unknown);
        assert!(serde_json::from_str::<ServerMsg>(r#"{"t":"ack","id":"x"}"#).is_err());
    }

    #[test]
    fn the_server_parses_what_clients_build() {
        let v2 = |s: String| parse_text(&s, Dialect::V2).unwrap();
        assert_eq!(
            v2(client::open(1, "h", 443, true, Some(9))),
            ClientMsg::Open {
                id: 1,
                host: "h".into(),
                port: 443,
                tls: true,
                timeout_ms: Some(9),
                window: None
            }
        );
        assert!(matches!(
            v2(client::open_window(1, "h", 80, false, None, Some(5))),
            ClientMsg::Open { window: Some(5), .. }
        ));
        assert_eq!(
            v2(client::write_json(1, b"hi")),
            ClientMsg::Write {
                id: 1,
                data: Bytes::from_static(b"hi")
            }
        );
        assert_eq!(v2(client::close(1)), ClientMsg::Close { id: 1 });
        assert_eq!(v2(client::shutdown(1)), ClientMsg::Shutdown { id: 1 });
        assert_eq!(
            v2(client::ack(1, 7)),
            ClientMsg::Ack {
                id: 1,
                bytes: 7,
                window: None
            }
        );
        assert_eq!(
            v2(client::ack_window(1, 7, Some(1 << 20))),
            ClientMsg::Ack {
                id: 1,
                bytes: 7,
                window: Some(1 << 20)
            }
        );
        assert_eq!(split_binary(&data_binary(5, b"ab")), Some((5, &b"ab"[..])));
        assert_eq!(split_binary(&[0, 1]), None);
    }

    #[test]
    fn codes_spell_as_serde_does() {
        for c in [
            ErrorCode::Protocol,
            ErrorCode::InvalidHost,
            ErrorCode::Policy,
            ErrorCode::Limit,
            ErrorCode::Unavailable,
            ErrorCode::Unreachable,
            ErrorCode::Refused,
            ErrorCode::Timeout,
            ErrorCode::Reset,
            ErrorCode::Tls,
            ErrorCode::Io,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
