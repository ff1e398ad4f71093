//! --trusted-proxy: the client address from PROXY protocol v1/v2 or X-Forwarded-For, only
//! from trusted peers; seen in the --no-auth identity (IPv6 grouped by --ipv6-prefix) and the
//! audit line.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Connects, writes `prefix` (a PROXY header or nothing), upgrades with an optional
/// X-Forwarded-For, opens a denied target as connection `id` and returns its audit line.
async fn audit_via(proxy: &Proxy, prefix: &[u8], xff: Option<&str>, id: u32) -> Result<Value, String> {
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(prefix).await.unwrap();
    let mut req = format!("ws://{}/", proxy.addr).into_client_request().unwrap();
    if let Some(x) = xff {
        req.headers_mut()
            .insert("X-Forwarded-For", HeaderValue::from_str(x).unwrap());
    }
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let open = json!({"t": "open", "id": id, "host": "10.9.9.9", "port": 80});
    ws.send(Message::Text(open.to_string().into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("refused by policy"), "{reply}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = proxy
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["target"] == "audit" && v["conn_id"] == id);
        if let Some(v) = found {
            return Ok(v);
        }
        assert!(std::time::Instant::now() < deadline, "no audit line for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A PROXY v2 header built by the same crate the proxy parses with (its builder side).
fn v2_header(src: &str, dst: &str) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let addrs: (std::net::SocketAddr, std::net::SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addrs)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_from_a_trusted_balancer_only() {
    let trusting = Proxy::start_with(&["--no-auth", "--trusted-proxy", "127.0.0.0/8"], false);

    let v1 = format!(
        "PROXY TCP4 203.0.113.9 127.0.0.1 5555 {}\r\n",
        trusting.addr.port()
    );
    let a = audit_via(&trusting, v1.as_bytes(), None, 1).await.unwrap();
    assert_eq!(
        (a["identity"].as_str(), a["client"].as_str()),
        (Some("203.0.113.9"), Some("203.0.113.9:5555"))
    );

    // v2, IPv6: the --no-auth identity is the client's /64.
    let v2 = v2_header("[2001:db8:7:8:1:2:3:4]:4444", "[2001:db8::1]:443");
    let a = audit_via(&trusting, &v2, None, 2).await.unwrap();
    assert_eq!(a["identity"], "2001:db8:7:8::/64", "{a}");
    assert_eq!(a["client"], "[2001:db8:7:8:1:2:3:4]:4444", "{a}");

    // X-Forwarded-For: the rightmost entry that is not a trusted proxy.
    let a = audit_via(&trusting, b"", Some("192.0.2.1, 198.51.100.4, 127.0.0.9"), 3)
        .await
        .unwrap();
    assert_eq!(a["identity"], "198.51.100.4", "{a}");
    // Nothing forwarded: the peer itself.
    assert_eq!(
        audit_via(&trusting, b"", None, 4).await.unwrap()["identity"],
        "127.0.0.1"
    );
    // A malformed PROXY header ends the connection.
    assert!(audit_via(&trusting, b"PROXY TCP4 nonsense\r\n", None, 5)
        .await
        .is_err());

    // The same from a peer that is not trusted: ignored, or (a PROXY header) not HTTP.
    let wary = Proxy::start_with(&["--no-auth", "--trusted-proxy", "192.0.2.0/24"], false);
    let a = audit_via(&wary, b"", Some("198.51.100.4"), 6).await.unwrap();
    assert_eq!(a["identity"], "127.0.0.1", "{a}");
    assert!(audit_via(&wary, v1.as_bytes(), None, 7).await.is_err());
}

/// Behind a trusted balancer, `--max-preauth-per-ip` counts the client the balancer names
/// (PROXY header: before TLS; X-Forwarded-For: once the request head is read), not the
/// balancer itself, so one client's silent sockets cannot lock out the others behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_preauth_cap_applies_to_the_real_client() {
    use tokio::io::AsyncReadExt;
    let p = Proxy::start_with(
        &[
            "--no-auth",
            "--trusted-proxy",
            "127.0.0.0/8",
            "--max-preauth-per-ip",
            "2",
        ],
        false,
    );
    let silent = |port: u16| async move {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let header = format!("PROXY TCP4 198.51.100.7 127.0.0.1 {port} 80\r\n");
        s.write_all(header.as_bytes()).await.unwrap();
        s
    };
    // Two silent sockets of one client hold its two places ...
    let held = vec![silent(1001).await, silent(1002).await];
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ... so its third is closed at once, before any TLS or request ...
    let mut third = silent(1003).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "third socket of one client not closed: {n:?}"
    );
    let xff = audit_via(&p, b"", Some("198.51.100.7"), 1).await;
    assert!(
        xff.unwrap_err().contains("429"),
        "X-Forwarded-For client over its cap"
    );
    // ... while another client behind the same balancer gets through, both ways.
    let other = b"PROXY TCP4 198.51.100.8 127.0.0.1 2001 80\r\n";
    assert_eq!(
        audit_via(&p, other, None, 2).await.unwrap()["client"],
        "198.51.100.8:2001"
    );
    audit_via(&p, b"", Some("198.51.100.9"), 3).await.unwrap();
    // Its places come back when its sockets go.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    audit_via(&p, b"", Some("198.51.100.7"), 4).await.unwrap();
}
