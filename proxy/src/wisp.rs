//! The Wisp v1.2 wire format: one packet per WebSocket binary message.
//!
//! Facts from the specification (`MercuryWorkshop/wisp-protocol`, `protocol.md`, version 1.2):
//! every packet is `type: u8`, `stream id: u32`, then a payload that fills the rest of the
//! message; all integers are little-endian. Payloads: CONNECT = `stream type: u8` (1 TCP,
//! 2 UDP), `port: u16`, `hostname: UTF-8` (rest); DATA = raw bytes; CONTINUE = `buffer
//! remaining: u32`, counted in packets; CLOSE = `reason: u8`. Version 2 is a draft that says
//! not to use it in production: this is the v1 format (stream 0 of the first CONTINUE = v1).
//!
//! Pure functions, no I/O, so every hostile input is unit-tested here. The maintained Rust
//! crate (`wisp-mux`) was not used: it is LGPL-3.0-only (incompatible with this GPL-2.0-only
//! workspace) and built on fastwebsockets rather than the tungstenite stack lwproxy serves.

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the packet header: type (1) and stream id (4).
pub const HEADER: usize = 5;

/// Packet types (spec "Packet Types").
pub const CONNECT: u8 = 0x01;
pub const DATA: u8 = 0x02;
pub const CONTINUE: u8 = 0x03;
pub const CLOSE: u8 = 0x04;

/// Stream types of CONNECT.
pub const STREAM_TCP: u8 = 0x01;
pub const STREAM_UDP: u8 = 0x02;

/// Close reasons (spec "CLOSE": client/server, server-only and client-only reasons).
pub mod reason {
    /// Unspecified.
    pub const UNKNOWN: u8 = 0x01;
    /// Voluntary close (the other side ended the stream normally).
    pub const VOLUNTARY: u8 = 0x02;
    /// Unexpected close: a network error.
    pub const NETWORK_ERROR: u8 = 0x03;
    /// Stream creation failed: invalid information (bad type, host or port).
    pub const INVALID: u8 = 0x41;
    /// Stream creation failed: the destination is unreachable (e.g. does not resolve).
    pub const UNREACHABLE: u8 = 0x42;
    /// Stream creation timed out.
    pub const CONNECT_TIMEOUT: u8 = 0x43;
    /// The destination refused the connection.
    pub const REFUSED: u8 = 0x44;
    /// Data transfer timed out (idle).
    pub const TRANSFER_TIMEOUT: u8 = 0x47;
    /// The destination is blocked by the proxy's policy.
    pub const BLOCKED: u8 = 0x48;
    /// Throttled by the server (a limit).
    pub const THROTTLED: u8 = 0x49;
}

/// One parsed packet. `Data` borrows the message (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect {
        id: u32,
        stream_type: u8,
        port: u16,
        host: String,
    },
    Data {
        id: u32,
        payload: Bytes,
    },
    Continue {
        id: u32,
        remaining: u32,
    },
    Close {
        id: u32,
        reason: u8,
    },
}

/// Why a message is not a valid packet. `id` is set when the header was complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 5-byte header.
    Truncated { len: usize },
    /// A type this version does not define.
    UnknownType { kind: u8, id: u32 },
    /// A known type whose payload is malformed.
    BadPayload { kind: u8, id: u32, why: &'static str },
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Truncated { len } => {
                write!(f, "packet of {len} bytes is shorter than the 5-byte header")
            }
            ParseError::UnknownType { kind, id } => {
                write!(f, "unknown packet type {kind:#04x} (stream {id})")
            }
            ParseError::BadPayload { kind, id, why } => {
                write!(f, "packet type {kind:#04x} (stream {id}): {why}")
            }
        }
    }
}

/// Parses one WebSocket binary message.
pub fn parse(msg: Bytes) -> Result<Packet, ParseError> {
    if msg.len() < HEADER {
        return Err(ParseError::Truncated { len: msg.len() });
    }
    let kind = msg[0];
    let id = u32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
    let p = &msg[HEADER..];
    let bad = |why| ParseError::BadPayload { kind, id, why };
    match kind {
        CONNECT => {
            if p.len() < 3 {
                return Err(bad("CONNECT payload shorter than type and port"));
            }
            let host = std::str::from_utf8(&p[3..]).map_err(|_| bad("hostname is not UTF-8"))?;
            Ok(Packet::Connect {
                id,
                stream_type: p[0],
                port: u16::from_le_bytes([p[1], p[2]]),
                host: host.to_owned(),
            })
        }
        DATA => Ok(Packet::Data {
            id,
            payload: msg.slice(HEADER..),
        }),
        CONTINUE => match <[u8; 4]>::try_from(p) {
            Ok(b) => Ok(Packet::Continue {
                id,
                remaining: u32::from_le_bytes(b),
            }),
            Err(_) => Err(bad("CONTINUE payload is not 4 bytes")),
        },
        CLOSE => match p {
            [r] => Ok(Packet::Close { id, reason: *r }),
            _ => Err(bad("CLOSE payload is not 1 byte")),
        },
        _ => Err(ParseError::UnknownType { kind, id }),
    }
}

fn header(kind: u8, id: u32, payload_len: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(HEADER + payload_len);
    b.put_u8(kind);
    b.put_u32_le(id);
    b
}

/// CONTINUE: the client may send `remaining` more DATA packets on stream `id`.
pub fn encode_continue(id: u32, remaining: u32) -> Bytes {
    let mut b = header(CONTINUE, id, 4);
    b.put_u32_le(remaining);
    b.freeze()
}

/// CLOSE with a reason from [`reason`].
pub fn encode_close(id: u32, reason: u8) -> Bytes {
    let mut b = header(CLOSE, id, 1);
    b.put_u8(reason);
    b.freeze()
}

/// CONNECT (the client's packet; used by tests).
#[cfg(test)]
pub fn encode_connect(id: u32, stream_type: u8, port: u16, host: &str) -> Bytes {
    let mut b = header(CONNECT, id, 3 + host.len());
    b.put_u8(stream_type);
    b.put_u16_le(port);
    b.put_slice(host.as_bytes());
    b.freeze()
}

/// DATA from a payload (copies once; used by tests).
#[cfg(test)]
pub fn encode_data(id: u32, payload: &[u8]) -> Bytes {
    let mut b = header(DATA, id, payload.len());
    b.put_slice(payload);
    b.freeze()
}

/// Writes a DATA header into the first [`HEADER`] bytes of `buf`, which holds the payload
/// after that headroom (no copy of the payload). `buf` must be at least [`HEADER`] long.
pub fn fill_data_header(id: u32, buf: &mut [u8]) {
    buf[0] = DATA;
    buf[1..HEADER].copy_from_slice(&id.to_le_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_little_endian() {
        let c = encode_connect(0x0102_0304, STREAM_TCP, 0x1f90, "example.org");
        assert_eq!(&c[..8], &[1, 4, 3, 2, 1, 1, 0x90, 0x1f]);
        assert_eq!(
            parse(c).unwrap(),
            Packet::Connect {
                id: 0x0102_0304,
                stream_type: STREAM_TCP,
                port: 8080,
                host: "example.org".into()
            }
        );
        assert_eq!(&encode_continue(0, 32)[..], &[3, 0, 0, 0, 0, 32, 0, 0, 0]);
        assert_eq!(
            parse(encode_continue(7, 9)).unwrap(),
            Packet::Continue { id: 7, remaining: 9 }
        );
        assert_eq!(&encode_close(5, reason::BLOCKED)[..], &[4, 5, 0, 0, 0, 0x48]);
        assert_eq!(
            parse(encode_data(2, b"hi")).unwrap(),
            Packet::Data {
                id: 2,
                payload: Bytes::from_static(b"hi")
            }
        );
        let mut buf = vec![0u8; HEADER + 2];
        buf[HEADER..].copy_from_slice(b"yo");
        fill_data_header(2, &mut buf);
        assert_eq!(buf, encode_data(2, b"yo").to_vec());
        // DATA may be empty; CONNECT may carry an empty host (rejected later, by policy).
        assert!(parse(encode_data(1, b"")).is_ok());
        assert!(parse(encode_connect(1, STREAM_UDP, 53, "")).is_ok());
    }

    #[test]
    fn hostile_input() {
        for len in 0..HEADER {
            assert_eq!(
                parse(Bytes::from(vec![2u8; len])),
                Err(ParseError::Truncated { len })
            );
        }
        assert_eq!(
            parse(Bytes::from_static(&[0x05, 1, 0, 0, 0, 9])),
            Err(ParseError::UnknownType { kind: 5, id: 1 })
        );
        assert!(matches!(
            parse(Bytes::from_static(&[0xff, 0, 0, 0, 0])),
            Err(ParseError::UnknownType { kind: 0xff, .. })
        ));
        let bad =
            |b: &'static [u8]| matches!(parse(Bytes::from_static(b)), Err(ParseError::BadPayload { .. }));
        assert!(bad(&[CONNECT, 1, 0, 0, 0, 1, 80])); // no room for the port
        assert!(bad(&[CONNECT, 1, 0, 0, 0, 1, 80, 0, 0xff, 0xfe])); // host not UTF-8
        assert!(bad(&[CONTINUE, 1, 0, 0, 0, 1, 2, 3]));
        assert!(bad(&[CONTINUE, 1, 0, 0, 0, 1, 2, 3, 4, 5]));
        assert!(bad(&[CLOSE, 1, 0, 0, 0]));
        assert!(bad(&[CLOSE, 1, 0, 0, 0, 2, 2]));
        assert_eq!(
            ParseError::Truncated { len: 3 }.to_string(),
            "packet of 3 bytes is shorter than the 5-byte header"
        );
    }
}
