//! Faults: refused, reset mid-stream, remote close, TLS verification, a slow reader with
//! bounded memory while a writer pushes 256 MiB, and graceful SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reset_and_remote_close() {
    let refused = refused_port().await;
    let reset = reset_server(1000).await;
    let source = source_server(5000).await;
    let proxy = Proxy::allowing(&[refused, reset, source], &[]);
    let mut ws = Ws::v1(&proxy, "alice").await;

    assert_eq!(ws.open_error(1, refused, "refused").await, "connection refused");
    ws.expect("closed", 1).await;

    ws.opened(2, reset).await;
    let v = ws.expect("error", 2).await;
    assert!(msg(&v).contains("reset"), "{v}");
    assert_eq!(code(&v), "reset");
    ws.expect("closed", 2).await;

    // v1: the target closing ends the connection after all its data.
    ws.opened(3, source).await;
    let (data, control) = ws.read_data(3, 5000).await;
    assert_eq!(data, pattern(5000));
    assert!(control.is_empty());
    ws.expect("closed", 3).await;

    // v2: the target's close is an `eof`; the client then closes.
    let mut v2 = Ws::v2(&proxy, "alice").await;
    v2.opened(1, source).await;
    let (data, _) = v2.read_data(1, 5000).await;
    assert_eq!(data.len(), 5000);
    v2.expect("eof", 1).await;
    v2.send_json(json!({"t": "close", "id": 1})).await;
    v2.expect("closed", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_target_closing_without_close_notify_is_end_of_stream() {
    let ca = test_ca("abrupt");
    const REPLY: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nwhole body";
    let target = tls_abrupt_server(ca.server_config.clone(), REPLY).await;
    let proxy = Proxy::allowing(&[target], &["--extra-ca", ca.ca_pem.to_str().unwrap()]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    let open = json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": target.port(), "tls": true});
    assert_eq!(ws.open_with(open).await["t"], "opened");
    let (got, control) = ws.read_data(1, REPLY.len()).await;
    assert_eq!(got, REPLY);
    assert!(control.iter().all(|v| v["t"] != "error"), "{control:?}");
    // The data is followed by a plain end of stream, not an error.
    let v = ws.recv_json().await;
    assert_eq!(v["t"], "eof", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_target_verifies_against_extra_ca() {
    let ca = test_ca("target");
    let tls_echo = tls_echo_server(ca.server_config.clone()).await;
    let trusting = Proxy::allowing(&[tls_echo], &["--extra-ca", ca.ca_pem.to_str().unwrap()]);
    let mut ws = Ws::v2(&trusting, "alice").await;
    let open = json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": tls_echo.port(), "tls": true});
    assert_eq!(ws.open_with(open.clone()).await["t"], "opened");
    ws.echo(1, b"over tls").await;

    let other_ca = test_ca("other");
    let distrusting = Proxy::allowing(&[tls_echo], &["--extra-ca", other_ca.ca_pem.to_str().unwrap()]);
    let mut ws = Ws::v2(&distrusting, "alice").await;
    let v = ws.open_with(open).await;
    assert!(msg(&v).starts_with("tls: handshake"), "{v}");
    assert_eq!(code(&v), "tls");
    ws.expect("closed", 1).await;
    // A bad --extra-ca file is a startup error that names the file.
    let bogus = std::env::temp_dir().join(format!("lwproxy-bogus-{}.pem", std::process::id()));
    std::fs::write(&bogus, "not a certificate").unwrap();
    let err = Proxy::try_start(&["--extra-ca", bogus.to_str().unwrap()], true)
        .err()
        .unwrap();
    assert!(err.contains(bogus.to_str().unwrap()), "{err}");
    let _ = std::fs::remove_file(bogus);
}

/// One connection's reader stops; a writer on another connection of the same session pushes
/// 256 MiB; a v1 session that reads nothing at all sits beside them. The proxy's
/// memory stays bounded and the writer is not slowed by the stalled reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_keeps_memory_bounded_while_a_writer_pushes_256_mib() {
    let endless = source_server(usize::MAX).await;
    let counting = counting_server().await;
    let proxy = Proxy::unmetered(&[endless, counting], &["--idle-timeout", "120s"]);
    let baseline = proxy.rss_kib();

    // A v1 session that opens the endless source and never reads its WebSocket.
    let mut deaf = Ws::v1(&proxy, "deaf").await;
    deaf.send_json(json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": endless.port()}))
        .await;

    let mut ws = Ws::v2(&proxy, "alice").await;
    ws.opened(2, counting).await;
    // Its data is never acked.
    ws.send_json(json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": endless.port()}))
        .await;
    let total: usize = 256 << 20;
    let mut tx = WindowedSender::new(2, total, vec![0xa5u8; 64 * 1024]);
    let mut stalled_bytes = 0usize;
    let mut peak = 0u64;
    let started = Instant::now();
    while !tx.done() {
        tx.fill(&mut ws).await;
        match ws.recv().await {
            Msg::Json(v) if v["t"] == "ack" && v["id"] == 2 => tx.acked(&v),
            Msg::Bin(1, b) => stalled_bytes += b.len(),
            Msg::Json(v) if v["t"] == "opened" && v["id"] == 1 => {}
            other => panic!("{other:?}"),
        }
        if tx.sent.is_multiple_of(16 << 20) {
            peak = peak.max(proxy.rss_kib());
        }
    }
    ws.send_json(json!({"t": "shutdown", "id": 2})).await;
    let mut count = Vec::new();
    loop {
        match ws.recv().await {
            Msg::Bin(2, b) => count.extend(b),
            Msg::Bin(1, b) => stalled_bytes += b.len(),
            Msg::Json(v) if v["t"] == "closed" && v["id"] == 2 => break,
            Msg::Json(_) => {}
            other => panic!("{other:?}"),
        }
    }
    peak = peak.max(proxy.rss_kib());
    eprintln!(
        "256 MiB in {:?}; proxy RSS baseline {baseline} KiB, peak {peak} KiB; stalled conn got {stalled_bytes} bytes",
        started.elapsed()
    );
    assert_eq!(String::from_utf8(count).unwrap(), total.to_string());
    // The stalled connection received at most one window.
    assert!(stalled_bytes <= WINDOW, "{stalled_bytes}");
    assert!(
        peak < baseline + 32 * 1024,
        "RSS grew from {baseline} KiB to {peak} KiB"
    );
    // Both stalled connections are still alive and answer.
    ws.send_json(json!({"t": "close", "id": 1})).await;
    ws.expect("closed", 1).await;
    drop(deaf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_exits() {
    let (echo, mut proxy) = echo_proxy(&["--drain-timeout", "5s"]).await;
    let mut ws = Ws::v1(&proxy, "alice").await;
    let mut idle = Ws::v1(&proxy, "bob").await; // a session with nothing open
    ws.opened(1, echo).await;
    let addr = proxy.addr;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The idle session is closed (by the drain, not by this wait running out); the busy one
    // keeps working; new clients are not accepted.
    let sent = Instant::now();
    assert!(idle.try_recv(Duration::from_secs(5)).await.is_none());
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "the idle session was not closed"
    );
    // The listener closes on the accept loop's own task: poll for it rather than sleep.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ws.echo(1, b"draining").await;
    let v = ws.open(2, "127.0.0.1", echo.port()).await;
    assert!(msg(&v).contains("shutting down"), "{v}");
    assert_eq!(code(&v), "unavailable");
    assert!(connect_raw(addr, "", &[], None).await.is_err());
    ws.send_json(json!({"t": "close", "id": 1})).await;
    ws.expect("closed", 1).await;
    assert!(
        ws.try_recv(Duration::from_secs(5)).await.is_none(),
        "session closed after draining"
    );
    let status = proxy.terminate();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_session_and_its_slots() {
    let endless = source_server(usize::MAX).await;
    let echo = echo_server().await;
    let proxy = Proxy::unmetered(
        &[endless, echo],
        &["--max-concurrent", "1", "--idle-timeout", "2s"],
    );
    // Opens an endless stream and never reads the WebSocket again.
    let mut deaf = Ws::v1(&proxy, "deaf").await;
    deaf.opened(1, endless).await;
    let mut again = Ws::v1(&proxy, "deaf").await;
    let v = again.open(1, "127.0.0.1", echo.port()).await;
    assert!(msg(&v).contains("concurrent"), "{v}");
    assert_eq!(code(&v), "limit");
    // After the stall limit the proxy drops the deaf session, which frees the slot.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut id = 2;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = again.open(id, "127.0.0.1", echo.port()).await;
        if v["t"] == "opened" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never released: {v}");
        id += 1;
    }
    again.echo(id, b"mine now").await;
    assert!(proxy.logged("stopped reading"));
    drop(deaf);
}
