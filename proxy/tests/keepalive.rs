//! TCP keepalive (proxy/README.md, "Sessions and sockets": 60 s idle, then probes) is on for
//! both sockets the proxy holds for a connection: the client's accepted socket and the
//! outbound socket to the target. Read from the kernel's socket table with `ss -o`, which
//! shows a `keepalive` timer only on a socket with SO_KEEPALIVE set, counting down from
//! TCP_KEEPIDLE.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::process::Command;

/// The `timer:(keepalive,...)` field of the one established socket matching `filter`,
/// waiting (up to 3 s) for a retransmission timer of recent traffic to give way to it.
fn keepalive_timer(filter: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let t = timer(filter);
        if t.starts_with("timer:(keepalive,") || std::time::Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The `timer:(...)` field of the one established socket matching `filter`.
fn timer(filter: &str) -> String {
    let out = Command::new("ss")
        .args(["-H", "-t", "-n", "-o", "state", "established", filter])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ss ({e}): these tests need iproute2 (tools/test/unit.sh installs it)")
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one socket for {filter}: {text}");
    let timer = lines[0]
        .split_whitespace()
        .find(|f| f.starts_with("timer:("))
        .unwrap_or_else(|| panic!("no timer (keepalive off) on {filter}: {text}"));
    timer.to_owned()
}

/// Seconds left on a `timer:(keepalive,59sec,0)` field.
fn seconds_left(timer: &str) -> u64 {
    let rest = timer
        .strip_prefix("timer:(keepalive,")
        .unwrap_or_else(|| panic!("not a keepalive timer: {timer}"));
    let secs = rest.split(',').next().unwrap();
    // `59sec`, or `1min` when a kernel rounds up exactly 60 s.
    match (secs.strip_suffix("sec"), secs.strip_suffix("min")) {
        (Some(s), _) => s.parse::<f64>().unwrap() as u64,
        (_, Some(m)) => m.parse::<u64>().unwrap() * 60,
        _ => panic!("unexpected timer: {timer}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_on_client_and_target_sockets() {
    let (echo, proxy) = echo_proxy(&[]).await;
    let mut ws = Ws::v1(&proxy, "alice").await;
    ws.opened(1, echo).await;
    ws.echo(1, b"ping").await;
    // The proxy's end of the client connection: local port = the listening port.
    let accepted = keepalive_timer(&format!("( sport = :{} )", proxy.addr.port()));
    // The proxy's outbound socket: remote port = the target's (the echo server's own end has
    // it as its local port and no keepalive).
    let outbound = keepalive_timer(&format!("( dport = :{} )", echo.port()));
    for t in [&accepted, &outbound] {
        let left = seconds_left(t);
        // 60 s idle before the first probe (the kernel's default would be 7200 s).
        assert!((30..=60).contains(&left), "keepalive idle time not 60 s: {t}");
    }
}
