//! The Wisp v1.2 endpoint (`/wisp/`) of the real lwproxy binary: handshake, streams, every
//! refusal's close reason, UDP, and hostile input. Packets are built here by hand from the
//! spec (MercuryWorkshop/wisp-protocol protocol.md), independently of the server's codec.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const BUFFER: u32 = 16;

fn packet(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn connect_packet(id: u32, stream_type: u8, port: u16, host: &str) -> Vec<u8> {
    let mut p = vec![stream_type];
    p.extend_from_slice(&port.to_le_bytes());
    p.extend_from_slice(host.as_bytes());
    packet(1, id, &p)
}

struct Wisp {
    ws: WebSocketStream<TcpStream>,
}

/// A received packet: type, stream id, payload.
type Pkt = (u8, u32, Vec<u8>);

impl Wisp {
    async fn open(p: &Proxy, path_query: &str) -> Wisp {
        let w = connect_raw(p.addr, path_query, &[], None).await.unwrap();
        let mut w = Wisp { ws: w.ws };
        // The first packet: CONTINUE on stream 0 with the per-stream buffer.
        assert_eq!(w.recv().await, (3, 0, BUFFER.to_le_bytes().to_vec()));
        w
    }

    async fn send(&mut self, b: Vec<u8>) {
        self.ws.send(Message::Binary(b.into())).await.unwrap();
    }

    async fn try_recv(&mut self, wait: Duration) -> Option<Pkt> {
        loop {
            let m = tokio::time::timeout(wait, self.ws.next()).await.ok()??.ok()?;
            if let Message::Binary(b) = m {
                assert!(b.len() >= 5, "short packet from the server");
                let id = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
                return Some((b[0], id, b[5..].to_vec()));
            }
        }
    }

    async fn recv(&mut self) -> Pkt {
        self.try_recv(Duration::from_secs(15))
            .await
            .expect("no packet from the server")
    }

    /// Skips DATA/CONTINUE until the CLOSE of `id`; returns its reason.
    async fn close_reason(&mut self, id: u32) -> u8 {
        loop {
            let (t, i, p) = self.recv().await;
            if t == 4 && i == id {
                return p[0];
            }
        }
    }

    /// Sends `data` on `id` and reads it back (echo target).
    async fn echo(&mut self, id: u32, data: &[u8]) {
        self.send(packet(2, id, data)).await;
        let mut got = Vec::new();
        while got.len() < data.len() {
            let (t, i, p) = self.recv().await;
            assert!(t != 4 || i != id, "stream {id} closed with {p:?}");
            if t == 2 && i == id {
                got.extend_from_slice(&p);
            }
        }
        assert_eq!(got, data);
    }
}

fn tok(sub: &str) -> String {
    format!("wisp/?token={}", token(sub))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_auth_and_tcp_echo() {
    let (echo, proxy) = echo_proxy(&[]).await;
    // Token as the path prefix, then as the query.
    let mut w = Wisp::open(&proxy, &format!("wisp/{}/", token("alice"))).await;
    w.send(connect_packet(1, 1, echo.port(), "127.0.0.1")).await;
    w.echo(1, b"hello wisp").await;
    w.echo(1, &pattern(200_000)).await;
    // Client CLOSE: no CLOSE comes back, the id can be used again.
    w.send(packet(4, 1, &[2])).await;
    w.send(connect_packet(1, 1, echo.port(), "127.0.0.1")).await;
    w.echo(1, b"again").await;
    let mut q = Wisp::open(&proxy, &tok("bob")).await;
    q.send(connect_packet(7, 1, echo.port(), "127.0.0.1")).await;
    q.echo(7, b"bob").await;

    // Refused at the handshake: bad or missing token, malformed endpoint path.
    for (path, want) in [
        ("wisp/", 401),
        ("wisp/?token=x.y.z", 401),
        ("wisp/not.a.jwt/", 401),
        ("wisp", 404),
        ("wisp/a/b/", 404),
    ] {
        let err = connect_raw(proxy.addr, path, &[], None).await.err();
        let status = match err {
            Some(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            other => panic!("{path}: expected an HTTP refusal, got {other:?}"),
        };
        assert_eq!(status, want, "{path}");
    }
    // The audit line names the identity and the target.
    drop(w);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = proxy.log_text();
    assert!(log.contains("\"identity\":\"alice\"") && log.contains(&format!("127.0.0.1:{}", echo.port())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_reason() {
    let echo = echo_server().await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = Proxy::allowing(
        &[echo],
        &[
            "--allow",
            &format!("127.0.0.1/32:{closed_port}"),
            "--max-concurrent",
            "2",
        ],
    );
    let mut w = Wisp::open(&proxy, &tok("alice")).await;
    let cases: [(u32, Vec<u8>, u8); 7] = [
        (1, connect_packet(1, 1, 22, "127.0.0.1"), 0x48), // policy: port and range
        (2, connect_packet(2, 1, 80, "10.0.0.1"), 0x48),  // policy: private range
        (3, connect_packet(3, 1, 0, "127.0.0.1"), 0x41),  // port 0
        (4, connect_packet(4, 9, echo.port(), "127.0.0.1"), 0x41), // unknown stream type
        (5, connect_packet(5, 1, 80, "bad host!"), 0x41), // invalid host
        (6, connect_packet(6, 1, closed_port, "127.0.0.1"), 0x44), // refused by the target
        (7, connect_packet(7, 2, 53, "127.0.0.1"), 0x48), // UDP: no ports by default
    ];
    for (id, p, want) in cases {
        w.send(p).await;
        assert_eq!(w.close_reason(id).await, want, "stream {id}");
    }
    // Throttled: the third concurrent stream.
    for id in [10, 11] {
        w.send(connect_packet(id, 1, echo.port(), "127.0.0.1")).await;
        w.echo(id, b"x").await;
    }
    w.send(connect_packet(12, 1, echo.port(), "127.0.0.1")).await;
    assert_eq!(w.close_reason(12).await, 0x49);
    let log = proxy.log_text();
    assert!(log.contains("refused by policy"), "the refusal is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_keeps_the_session() {
    let (echo, proxy) = echo_proxy(&["--conns-per-min", "0", "--max-concurrent", "20"]).await;
    let mut w = Wisp::open(&proxy, &tok("mallory")).await;
    w.send(connect_packet(1, 1, echo.port(), "127.0.0.1")).await;
    w.echo(1, b"before").await;
    // Truncated packets, unknown types, DATA/CLOSE on unknown streams, CONTINUE from the
    // client, text frames, a malformed CONTINUE/CLOSE, CONNECT on stream 0: all dropped.
    for junk in [
        vec![],
        vec![2],
        vec![2, 1, 0, 0],
        packet(0x05, 1, b"info?"),
        packet(0xff, 0, b""),
        packet(2, 999, b"nobody"),
        packet(4, 999, &[2]),
        packet(3, 1, &1000u32.to_le_bytes()),
        packet(3, 1, &[1]),
        packet(4, 1, &[]),
        connect_packet(0, 1, echo.port(), "127.0.0.1"),
    ] {
        w.send(junk).await;
    }
    w.ws.send(Message::Text("not wisp".into())).await.unwrap();
    // A CONNECT too short to carry a port gets CLOSE 0x41 on its stream.
    w.send(packet(1, 5, &[1, 80])).await;
    assert_eq!(w.close_reason(5).await, 0x41);
    // The open stream still works and received none of the junk.
    w.echo(1, b"after").await;
    assert!(
        w.try_recv(Duration::from_millis(200)).await.is_none(),
        "nothing unasked-for came back"
    );
    // A CONNECT flood: 300 streams at once; the first 19 more open, the rest are throttled,
    // each answered once, and the session carries on.
    for id in 100..400 {
        w.send(connect_packet(id, 1, echo.port(), "127.0.0.1")).await;
    }
    let mut throttled = 0;
    while throttled < 300 - 19 {
        let (t, _, p) = w.recv().await;
        assert_eq!((t, p.as_slice()), (4, &[0x49][..]));
        throttled += 1;
    }
    for id in 100..119 {
        w.echo(id, b"ok").await;
    }
    // Reusing a live id drops that stream at both ends.
    w.send(connect_packet(100, 1, echo.port(), "127.0.0.1")).await;
    assert_eq!(w.close_reason(100).await, 0x41);
    w.echo(1, b"still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_streams_under_policy_and_limits() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    let proxy = Proxy::start(&[
        "--allow",
        "127.0.0.1/32",
        "--wisp-udp-ports",
        &port.to_string(),
        "--udp-packets-per-min",
        "6",
    ]);
    let mut w = Wisp::open(&proxy, &tok("alice")).await;
    w.send(connect_packet(1, 2, port, "127.0.0.1")).await;
    // Each DATA is one datagram; three round trips are six packets of the budget.
    for msg in [&b"one"[..], b"two", b"three"] {
        w.send(packet(2, 1, msg)).await;
        assert_eq!(w.recv().await, (2, 1, msg.to_vec()));
    }
    w.send(packet(2, 1, b"over")).await;
    assert_eq!(w.close_reason(1).await, 0x49);
    // A port outside the UDP allowlist is blocked even though the range is allowed.
    w.send(connect_packet(2, 2, port.wrapping_add(1).max(1), "127.0.0.1"))
        .await;
    assert_eq!(w.close_reason(2).await, 0x48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_without_streams_is_closed() {
    let (echo, proxy) = echo_proxy(&["--idle-timeout", "1s"]).await;
    let mut w = Wisp::open(&proxy, &tok("alice")).await;
    // A session with a stream stays while the stream has traffic ...
    w.send(connect_packet(1, 1, echo.port(), "127.0.0.1")).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        w.echo(1, b"tick").await;
    }
    // ... and, without a stream and without traffic, it is closed after the idle timeout.
    w.send(packet(4, 1, &[2])).await;
    let started = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = w.ws.next().await {
            if matches!(m, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the idle session was not closed");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packets_end_their_stream_only() {
    let (echo, proxy) = echo_proxy(&["--max-message", "4096"]).await;
    let mut w = Wisp::open(&proxy, &tok("alice")).await;
    for id in [1, 2] {
        w.send(connect_packet(id, 1, echo.port(), "127.0.0.1")).await;
        w.echo(id, b"open").await;
    }
    // A DATA packet above --max-message (header included): its stream ends with 0x49 (a
    // limit), and nothing of it reaches the target.
    w.send(packet(2, 1, &pattern(4096))).await;
    assert_eq!(w.close_reason(1).await, 0x49);
    // The other stream and the session carry on; the closed stream's later data is dropped.
    w.send(packet(2, 1, b"late")).await;
    w.echo(2, b"still open").await;
    // An oversized CONNECT is refused on its stream with the same reason.
    let long_host = "a".repeat(5000);
    w.send(connect_packet(3, 1, echo.port(), &long_host)).await;
    assert_eq!(w.close_reason(3).await, 0x49);
    // Oversized junk that names no stream, or stream 0, gets no answer.
    w.send(packet(2, 999, &pattern(5000))).await;
    w.send(packet(2, 0, &pattern(5000))).await;
    w.echo(2, b"after junk").await;
    assert!(
        w.try_recv(Duration::from_millis(200)).await.is_none(),
        "nothing unasked-for came back"
    );
    // The audit line of stream 1 says which limit ended it.
    drop(w);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.logged("limit: message size (4096 bytes)"));
}
