//! Policy matrix against the real binary: address spellings, names, ports, --allow, files.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// An echo server that counts accepted connections (a denial must never reach it).
async fn counted_echo() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, count)
}

fn assert_refused(v: &serde_json::Value, what: &str) {
    assert_eq!(v["t"], "error", "{what}: {v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.contains("refused by policy"), "{what}: {msg}");
    assert_eq!(code(v), "policy", "{what}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_non_public_address_is_refused() {
    let (echo, accepted) = counted_echo().await;
    // The port is allowed, so only the address decides.
    let proxy = Proxy::start(&["--ports", &echo.port().to_string()]);
    let mut ws = Ws::v1(&proxy, "alice").await;
    let spellings = [
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "0x7f.1",
        "0x7f000001",
        "2130706433",
        "0177.0.0.1",
        "017700000001",
        "127.0.0.1.",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "[::ffff:7f00:1]",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "2002:7f00:1::1",
        "0.0.0.0",
        "0",
        "::",
        "255.255.255.255",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "fe80::1",
        "fd00::1",
        "localhost",
        "LOCALHOST.",
    ];
    for (i, host) in spellings.iter().enumerate() {
        let id = i as u32 + 1;
        let v = ws.open(id, host, echo.port()).await;
        assert_refused(&v, host);
        assert_eq!(ws.expect("closed", id).await["id"], id);
    }
    // Garbage that looks numeric is rejected, never handed to the resolver.
    for (i, host) in ["256.1.1.1", "0x7g.1", "1.2.3.4.5", "127.0.0.1..", "fe80::1%lo"]
        .iter()
        .enumerate()
    {
        let v = ws.open(100 + i as u32, host, echo.port()).await;
        assert_eq!(v["t"], "error");
        assert!(v["msg"].as_str().unwrap().contains("invalid host"), "{host}: {v}");
        assert_eq!(code(&v), "invalid_host", "{host}: {v}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a denied open reached the target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_admits_exactly_one_address_and_port() {
    let (echo, accepted) = counted_echo().await;
    let (other, other_accepted) = counted_echo().await;
    let proxy = Proxy::allowing(&[echo], &[]);
    let mut ws = Ws::v1(&proxy, "alice").await;

    let v = ws.open(1, "127.0.0.1", echo.port()).await;
    assert_eq!(v["t"], "opened", "{v}");
    ws.echo(1, b"through the hole").await;
    // Another spelling of the same address is the same destination.
    assert_eq!(ws.open(2, "0x7f.1", echo.port()).await["t"], "opened");
    assert_eq!(ws.open(3, "::ffff:127.0.0.1", echo.port()).await["t"], "opened");

    assert_refused(&ws.open(4, "127.0.0.1", other.port()).await, "other port");
    assert_refused(&ws.open(5, "127.0.0.2", echo.port()).await, "other address");
    assert_refused(&ws.open(6, "::1", echo.port()).await, "v6 loopback");
    assert_refused(&ws.open(7, "127.0.0.1", 80).await, "port 80 on loopback");
    // Public addresses on ports outside the allowlist are refused before any connect.
    assert_refused(&ws.open(8, "8.8.8.8", 22).await, "public, port 22");
    assert_refused(&ws.open(9, "example.invalid", 22).await, "name, port 22");
    assert_eq!(other_accepted.load(Ordering::SeqCst), 0);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_without_port_uses_the_port_allowlist() {
    let (a, _) = counted_echo().await;
    let (b, _) = counted_echo().await;
    let proxy = Proxy::start(&["--allow", "127.0.0.0/8", "--ports", &a.port().to_string()]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    let v = ws.open(1, "127.0.0.1", a.port()).await;
    assert_eq!(v["t"], "opened");
    assert_eq!(v["addr"], format!("127.0.0.1:{}", a.port()));
    ws.echo(1, b"range allowed").await;
    assert_refused(&ws.open(2, "127.0.0.1", b.port()).await, "port not listed");
    assert_refused(&ws.open(3, "::1", a.port()).await, "v6 loopback not in range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_and_its_errors() {
    let (echo, _) = counted_echo().await;
    let dir = std::env::temp_dir();
    let good = dir.join(format!("lwproxy-policy-{}.toml", std::process::id()));
    std::fs::write(
        &good,
        format!(
            "ports = [443]\nallow = [\"127.0.0.1/32:{}\"]\ndeny = [\"8.8.8.0/24\"]\n[limits]\nmax_concurrent = 1\n",
            echo.port()
        ),
    )
    .unwrap();
    let proxy = Proxy::start(&["--policy", good.to_str().unwrap()]);
    let mut ws = Ws::v1(&proxy, "alice").await;
    ws.opened(1, echo).await;
    let v = ws.open(2, "127.0.0.1", echo.port()).await;
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("limit: concurrent connections (1)"),
        "{v}"
    );
    ws.send_json(json!({"t": "close", "id": 1})).await;
    ws.expect("closed", 1).await;
    let v = ws.open(3, "8.8.8.8", 443).await;
    assert!(v["msg"].as_str().unwrap().contains("denied range"), "{v}");

    let bad = dir.join(format!("lwproxy-badpolicy-{}.toml", std::process::id()));
    std::fs::write(&bad, "allow = [\"not-an-address\"]\n").unwrap();
    let err = Proxy::try_start(&["--policy", bad.to_str().unwrap()], true)
        .err()
        .unwrap();
    assert!(err.contains("not-an-address"), "{err}");
    std::fs::write(&bad, "bogus_key = 1\n").unwrap();
    let err = Proxy::try_start(&["--policy", bad.to_str().unwrap()], true)
        .err()
        .unwrap();
    assert!(err.contains("bogus_key"), "{err}");
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}
