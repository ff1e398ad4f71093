//! Session lifecycle against the real binary: idle sessions, pings, the per-identity session
//! cap, and the pre-authentication caps with the handshake deadline.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;

/// Silent sockets from one address: with the proxy's own descriptors, enough to exhaust a
/// limit of 1024 if nothing capped them.
const SILENT: usize = 1020;

/// A WebSocket upgrade done by hand; the socket is then left alone (no reads, so no pongs).
async fn raw_session(proxy: &Proxy, sub: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let req = format!(
        "GET /?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        token(sub)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1);
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads until the proxy closes the socket; returns how long that took.
async fn time_to_eof(mut s: TcpStream, within: Duration) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t + within).into(), s.read(&mut buf)).await {
            Err(_) => panic!("still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_and_unanswered_pings_are_closed() {
    let echo = echo_server().await;
    let proxy = Proxy::allowing(
        &[echo],
        &[
            "--idle-timeout",
            "3s",
            "--ping-interval",
            "1s",
            "--pong-timeout",
            "1s",
        ],
    );
    // Never reads, so never answers the ping sent after 1 s: closed about 1 s later.
    let mute = raw_session(&proxy, "mute").await;
    // Answers pings (tungstenite replies while reading) but opens nothing: idle after 3 s.
    let mut idle = Ws::v1(&proxy, "idle").await;
    // Busy: keeps one connection open and traffic flowing; outlives both.
    let mut busy = Ws::v2(&proxy, "busy").await;
    busy.opened(1, echo).await;

    let busy = tokio::spawn(async move {
        for _ in 0..8 {
            busy.echo(1, b"still here").await;
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    });
    let t = Instant::now();
    let mute_closed = tokio::spawn(time_to_eof(mute, Duration::from_secs(6)));
    // (about 2 s: the ping at 1 s, then 1 s for the answer)
    assert!(
        idle.try_recv(Duration::from_secs(8)).await.is_none(),
        "idle session got a message"
    );
    let idle_after = t.elapsed();
    assert!(
        idle_after >= Duration::from_millis(2800) && idle_after < Duration::from_secs(6),
        "{idle_after:?}"
    );
    let mute_after = mute_closed.await.unwrap();
    assert!(
        mute_after >= Duration::from_millis(1500) && mute_after < Duration::from_secs(5),
        "{mute_after:?}"
    );
    busy.await.unwrap();
    let log = proxy.log_text();
    assert!(log.contains("without a connection: closed"), "{log}");
    assert!(log.contains("no answer to a ping"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_identity_are_capped() {
    let proxy = Proxy::start(&["--max-sessions-per-identity", "2"]);
    let status = |r: Result<Ws, WsError>| match r {
        Ok(_) => 101,
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    let q = format!("?token={}", token("alice"));
    let a1 = connect_raw(proxy.addr, &q, &[], None).await.unwrap();
    let _a2 = connect_raw(proxy.addr, &q, &[], None).await.unwrap();
    assert_eq!(status(connect_raw(proxy.addr, &q, &[], None).await), 429);
    let bob = format!("?token={}", token("bob"));
    assert_eq!(status(connect_raw(proxy.addr, &bob, &[], None).await), 101);
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match status(connect_raw(proxy.addr, &q, &[], None).await) {
            101 => break,
            429 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            s => panic!("a freed session place was not reusable: {s}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_cannot_lock_out_other_clients() {
    // The test itself holds a thousand sockets.
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).unwrap();

    let proxy = Proxy::start(&["--handshake-timeout", "2s"]);
    // The proxy's descriptor limit at 1024, soft and hard.
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &proxy.pid().to_string(), "--nofile=1024:1024"])
        .status()
        .unwrap();
    assert!(st.success());

    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    // Another address: its TLS-less handshake and upgrade complete within a second.
    let t = Instant::now();
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse::<SocketAddr>().unwrap()).unwrap();
    let tcp = tokio::time::timeout(Duration::from_secs(1), sock.connect(proxy.addr))
        .await
        .expect("connect within a second")
        .unwrap();
    let url = format!("ws://{}/?token={}", proxy.addr, token("other"));
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(1), tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("upgrade within a second")
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Ping(vec![].into()))
        .await
        .unwrap();

    // All but the per-address cap (64) were closed at once; those 64 at the deadline.
    let mut closed_fast = 0;
    let mut waits = Vec::new();
    for s in silent {
        waits.push(tokio::spawn(time_to_eof(s, Duration::from_secs(5))));
    }
    let mut slowest = Duration::ZERO;
    for w in waits {
        let d = w.await.unwrap();
        if d < Duration::from_millis(1000) {
            closed_fast += 1;
        }
        slowest = slowest.max(d);
    }
    assert!(closed_fast >= SILENT - 64, "{closed_fast} closed at once");
    assert!(slowest < Duration::from_secs(4), "{slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_deadline_covers_tls() {
    let ca = test_ca("deadline");
    let proxy = Proxy::wss(&ca, &["--handshake-timeout", "1s"]);
    // Silent, and stalled halfway through a TLS record: both closed at the deadline.
    let silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut partial = TcpStream::connect(proxy.addr).await.unwrap();
    partial.write_all(b"\x16\x03\x01\x02\x00\x01").await.unwrap();
    let t = Instant::now();
    for s in [silent, partial] {
        time_to_eof(s, Duration::from_secs(4)).await;
        let d = t.elapsed();
        assert!(
            d >= Duration::from_millis(800) && d < Duration::from_secs(3),
            "{d:?}"
        );
    }
}
