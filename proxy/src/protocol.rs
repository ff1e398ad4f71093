//! The wire protocol (spec A): parsing of client messages and building of server messages.
//! Pure functions, no I/O, so every hostile input can be unit-tested.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

/// Subprotocol that enables binary data frames, `ack`, `shutdown` and `eof`.
pub const SUBPROTOCOL_V2: &str = "lwproxy.v2";
/// Subprotocol naming the seed protocol explicitly (same as offering none).
pub const SUBPROTOCOL_V1: &str = "lwproxy.v1";
/// Prefix of the subprotocol that carries a token (never echoed).
pub const BEARER_PREFIX: &str = "bearer.";
/// Most un-acked bytes a sender may have in flight per connection and direction.
pub const WINDOW: u64 = 262_144;
/// Size of a binary data frame header: the connection id, big-endian.
pub const BINARY_HEADER: usize = 4;

/// Which dialect a session speaks, fixed at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Seed 000 JSON: base64 data, no flow control messages.
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
    },
}

/// Why a client message was rejected; `id` is set when the message named a usable id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub id: Option<u32>,
    pub msg: String,
}

impl ProtoError {
    fn new(id: Option<u32>, msg: impl Into<String>) -> Self {
        ProtoError { id, msg: msg.into() }
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
            let timeout_ms = match obj.get("timeout_ms") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| err("field 'timeout_ms' must be a positive integer".into()))?,
                ),
            };
            Ok(ClientMsg::Open {
                id,
                host: host.to_owned(),
                port,
                tls,
                timeout_ms,
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
            Ok(ClientMsg::Ack { id, bytes })
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

pub fn opened(id: u32, addr: Option<&str>) -> String {
    match addr {
        Some(a) => json!({"t": "opened", "id": id, "addr": a}).to_string(),
        None => json!({"t": "opened", "id": id}).to_string(),
    }
}

pub fn closed(id: u32) -> String {
    json!({"t": "closed", "id": id}).to_string()
}

pub fn eof(id: u32) -> String {
    json!({"t": "eof", "id": id}).to_string()
}

pub fn ack(id: u32, bytes: u64) -> String {
    json!({"t": "ack", "id": id, "bytes": bytes}).to_string()
}

/// An error; `id` 0 is used for errors that concern no connection (e.g. invalid JSON).
pub fn error(id: Option<u32>, msg: &str) -> String {
    json!({"t": "error", "id": id.unwrap_or(0), "msg": msg}).to_string()
}

/// A seed `data` message with base64 payload.
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

/// A v2 binary data frame from a payload (copies; for tests).
#[cfg(test)]
pub fn data_binary(id: u32, payload: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(BINARY_HEADER + payload.len());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(payload);
    Bytes::from(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v1(s: &str) -> Result<ClientMsg, ProtoError> {
        parse_text(s, Dialect::V1)
    }

    #[test]
    fn seed_messages_parse() {
        assert_eq!(
            v1(r#"{"t":"open","id":1,"host":"example.com","port":80}"#),
            Ok(ClientMsg::Open {
                id: 1,
                host: "example.com".into(),
                port: 80,
                tls: false,
                timeout_ms: None
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
                timeout_ms: Some(500)
            })
        );
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
            Ok(ClientMsg::Ack { id: 3, bytes: 1000 })
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
        let e: Value = serde_json::from_str(&error(None, "x \"quoted\"")).unwrap();
        assert_eq!(e["id"], 0);
        assert_eq!(e["msg"], "x \"quoted\"");
        let o: Value = serde_json::from_str(&opened(1, Some("1.2.3.4:80"))).unwrap();
        assert_eq!(o["addr"], "1.2.3.4:80");
    }
}
