//! Auth matrix, origin allowlist, --no-auth, the token subcommand, /health and wss://.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Error as WsError;

const ORIGIN: &str = "https://app.example";

async fn status_of(p: &Proxy, query: &str, protocols: &[&str], origin: Option<&str>) -> u16 {
    match connect_raw(p.addr, query, protocols, origin).await {
        Ok(_) => 101,
        Err(WsError::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix() {
    let proxy = Proxy::start(&["--origin", ORIGIN]);
    let key = SECRET.as_bytes();
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let t = now();
    let cases: Vec<(&str, String, u16)> = vec![
        ("missing", String::new(), 401),
        ("good", token("alice"), 101),
        (
            "expired",
            sign(&hs, &json!({"sub": "a", "exp": t - 120}), key),
            401,
        ),
        (
            "not yet valid",
            sign(&hs, &json!({"sub": "a", "exp": t + 600, "nbf": t + 300}), key),
            401,
        ),
        (
            "wrong key",
            sign(
                &hs,
                &json!({"sub": "a", "exp": t + 600}),
                b"some-other-secret-xxxxxxxx",
            ),
            401,
        ),
        ("no exp", sign(&hs, &json!({"sub": "a"}), key), 401),
        (
            "alg HS512",
            sign(
                &json!({"alg": "HS512"}),
                &json!({"sub": "a", "exp": t + 600}),
                key,
            ),
            401,
        ),
        ("garbage", "a.b.c".into(), 401),
    ];
    for (what, tok, want) in &cases {
        let q = if tok.is_empty() {
            String::new()
        } else {
            format!("?token={tok}")
        };
        assert_eq!(status_of(&proxy, &q, &[], None).await, *want, "{what} (query)");
        if !tok.is_empty() {
            let bearer = format!("bearer.{tok}");
            assert_eq!(
                status_of(&proxy, "", &["lwproxy.v1", &bearer], None).await,
                *want,
                "{what} (subprotocol)"
            );
        }
    }
    // alg "none" with an empty signature: the classic bypass.
    let none = {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            e.encode(json!({"alg": "none"}).to_string()),
            e.encode(json!({"sub": "a", "exp": t + 600}).to_string())
        )
    };
    assert_eq!(status_of(&proxy, &format!("?token={none}"), &[], None).await, 401);

    // Origin allowlist: the right origin passes, a wrong one is refused even with a good token.
    let good = format!("?token={}", token("alice"));
    assert_eq!(status_of(&proxy, &good, &[], Some(ORIGIN)).await, 101);
    assert_eq!(
        status_of(&proxy, &good, &[], Some("https://evil.example")).await,
        403
    );

    // The bearer subprotocol is never echoed; the dialect is.
    for dialect in ["lwproxy.v2", "lwproxy.v1"] {
        let bearer = format!("bearer.{}", token("x"));
        let ws = connect_raw(proxy.addr, "", &[dialect, &bearer], None)
            .await
            .unwrap();
        assert_eq!(ws.protocol.as_deref(), Some(dialect));
    }
    assert!(proxy.logged("token expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_required_unless_no_auth_which_is_loud() {
    let err = Proxy::try_start(&[], false).err().unwrap();
    assert!(err.contains("JWT_SECRET is not set"), "{err}");
    let proxy = Proxy::start_with(&["--no-auth"], false);
    let ws = connect_raw(proxy.addr, "", &[], None).await;
    assert!(ws.is_ok());
    assert!(proxy.logged("AUTHENTICATION DISABLED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_subcommand_mints_a_working_token() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lwproxy"))
        .args(["token", "--sub", "carol", "--ttl", "1h"])
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success());
    let tok = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let proxy = Proxy::start(&[]);
    assert!(connect_raw(proxy.addr, &format!("?token={tok}"), &[], None)
        .await
        .is_ok());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_lwproxy"))
        .args(["token", "--sub", "carol", "--ttl", "forever"])
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_without_auth_and_non_websocket_requests() {
    let proxy = Proxy::start(&[]);
    let r = http_get(
        tokio::net::TcpStream::connect(proxy.addr).await.unwrap(),
        "/health",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("ok"), "{r}");
    let r = http_get(tokio::net::TcpStream::connect(proxy.addr).await.unwrap(), "/").await;
    assert!(r.starts_with("HTTP/1.1 426"), "{r}");
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_listening() {
    let ca = test_ca("wss");
    let echo = echo_server().await;
    let proxy = Proxy::wss(&ca, &["--allow", &allow(echo)]);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca.ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let tls = connector.connect(name.clone(), tcp).await.unwrap();
    assert!(http_get(tls, "/health").await.starts_with("HTTP/1.1 200"));

    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let url = format!("wss://localhost:{}/?token={}", proxy.addr.port(), token("alice"));
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let open = json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": echo.port()});
    ws.send(Message::Text(open.to_string().into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("opened"), "{reply}");

    // A plain client cannot talk to the TLS listener.
    assert!(connect_raw(proxy.addr, "", &[], None).await.is_err());
}
