//! Every per-identity limit is hit and enforced, while another identity carries on.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections() {
    let (echo, proxy) = echo_proxy(&["--max-concurrent", "2"]).await;
    let mut alice = Ws::v1(&proxy, "alice").await;
    let mut alice2 = Ws::v2(&proxy, "alice").await; // same identity, another session
    let mut bob = Ws::v1(&proxy, "bob").await;
    alice.opened(1, echo).await;
    alice2.opened(1, echo).await;
    assert_eq!(
        alice.open_error(2, echo, "limit").await,
        "limit: concurrent connections (2)"
    );
    // Bob is unaffected, and so are Alice's open connections.
    bob.opened(1, echo).await;
    bob.echo(1, b"bob").await;
    alice.echo(1, b"alice").await;
    // Closing one frees a slot.
    alice2.send_json(json!({"t": "close", "id": 1})).await;
    alice2.expect("closed", 1).await;
    alice.opened(3, echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_minute() {
    let (echo, proxy) = echo_proxy(&["--conns-per-min", "3"]).await;
    let mut alice = Ws::v1(&proxy, "alice").await;
    for id in 1..=3 {
        alice.opened(id, echo).await;
        alice.send_json(json!({"t": "close", "id": id})).await;
        alice.expect("closed", id).await;
    }
    assert_eq!(
        alice.open_error(4, echo, "limit").await,
        "limit: connections per minute (3)"
    );
    // A new session does not reset the count: it belongs to the identity.
    let mut again = Ws::v1(&proxy, "alice").await;
    assert!(msg(&again.open(1, "127.0.0.1", echo.port()).await).contains("per minute"));
    let mut bob = Ws::v1(&proxy, "bob").await;
    bob.opened(1, echo).await;
    bob.echo(1, b"fine").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_per_minute() {
    let (echo, proxy) = echo_proxy(&["--bytes-per-min", "200000"]).await;
    let mut alice = Ws::v2(&proxy, "alice").await;
    let mut bob = Ws::v1(&proxy, "bob").await;
    alice.opened(1, echo).await;
    bob.opened(1, echo).await;
    // Echo counts twice (up and down): 60 KB x 2 fits, the next 60 KB x 2 does not.
    alice.echo(1, &vec![1u8; 60_000]).await;
    alice.write(1, &vec![2u8; 60_000]).await;
    let (_, control) = alice.read_data(1, 60_000).await;
    let err = control.iter().find(|v| v["t"] == "error").expect("an error");
    assert_eq!(msg(err), "limit: bytes per minute (200000)");
    alice.expect("closed", 1).await;
    bob.echo(1, &vec![3u8; 50_000]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_idle_timeouts() {
    let silent = silent_server().await;
    let echo = echo_server().await;
    let proxy = Proxy::allowing(
        &[silent, echo],
        &[
            "--idle-timeout",
            "2s",
            "--extra-ca",
            test_ca("timeouts").ca_pem.to_str().unwrap(),
        ],
    );
    let mut alice = Ws::v2(&proxy, "alice").await;
    let mut bob = Ws::v1(&proxy, "bob").await;
    // A TLS handshake the server never answers is bounded by the connect timeout.
    let started = std::time::Instant::now();
    let v = alice
        .open_with(json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": silent.port(), "tls": true, "timeout_ms": 500}))
        .await;
    assert_eq!(v["t"], "error");
    assert!(
        msg(&v).contains("limit: connect timeout (0.5 s): connect timed out"),
        "{v}"
    );
    assert_eq!(code(&v), "timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    alice.expect("closed", 1).await;
    // An idle connection is closed after the idle timeout; a busy one is not.
    alice.opened(2, silent).await;
    bob.opened(1, echo).await;
    for _ in 0..6 {
        bob.echo(1, b"keepalive").await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let v = alice.expect("error", 2).await;
    assert_eq!(msg(&v), "limit: idle timeout (2 s): connection timed out");
    assert_eq!(code(&v), "timeout");
    alice.expect("closed", 2).await;
    bob.echo(1, b"still open").await;
}

/// A `lwproxy.v2` reader that pauses with its window used up (a pager, a suspended job) is
/// waiting, not idle: its connection outlives the idle timeout, and once it acks, the rest of
/// the stream arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_paused_on_a_full_window_is_not_idle() {
    let total = 3 * WINDOW;
    let source = source_server(total).await;
    let proxy = Proxy::allowing(&[source], &["--idle-timeout", "1s"]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    assert_eq!(ws.opened(1, source).await["window"], WINDOW as u64);
    // Read the first window without acking: the proxy then waits for the client.
    let mut got = Vec::new();
    while got.len() < WINDOW {
        match ws.recv().await {
            Msg::Bin(1, b) => got.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    // Paused for three idle timeouts: nothing arrives, no error either.
    assert!(ws.try_recv(std::time::Duration::from_secs(3)).await.is_none());
    ws.send_json(json!({"t": "ack", "id": 1, "bytes": got.len()}))
        .await;
    let (rest, control) = ws.read_data(1, total - got.len()).await;
    assert!(control.is_empty(), "{control:?}");
    got.extend(rest);
    assert_eq!(got, pattern(total));
    ws.expect("eof", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_is_decided_before_the_rate_limits() {
    let (echo, proxy) = echo_proxy(&["--conns-per-min", "1"]).await;
    let mut alice = Ws::v1(&proxy, "alice").await;
    // A denied target neither counts against the limit...
    for (id, host) in [(1, "10.0.0.1"), (2, "168.63.129.16"), (3, "8.8.8.8")] {
        let port = if id == 3 { 22 } else { 80 };
        assert!(
            msg(&alice.open(id, host, port).await).starts_with("refused by policy"),
            "{host}"
        );
    }
    alice.opened(4, echo).await;
    // ...nor is reported as a limit once the identity is over it.
    assert_eq!(
        msg(&alice.open(5, "127.0.0.1", echo.port()).await),
        "limit: connections per minute (1)"
    );
    assert!(msg(&alice.open(6, "127.0.0.1", 80).await).starts_with("refused by policy"));
    assert!(msg(&alice.open(7, "example.invalid", 22).await).starts_with("refused by policy"));
}
