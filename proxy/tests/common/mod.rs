//! Test harness: starts the real `lwproxy` binary on loopback, real TCP/TLS servers, and a
//! WebSocket client speaking both dialects.
#![allow(dead_code, clippy::unwrap_used)]

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use lwproxy::protocol::{self, client, BEARER_PREFIX, SUBPROTOCOL_V2};
pub use lwtest::ca::TestCa;
use lwtest::servers;
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const SECRET: &str = "integration-test-secret-0123456789";
/// The flow-control window, as a length.
pub const WINDOW: usize = protocol::WINDOW as usize;
const WAIT: Duration = Duration::from_secs(15);

// --- the proxy process --------------------------------------------------------

pub struct Proxy {
    proc: lwtest::proxy::Proxy,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Proxy {
    /// Starts lwproxy with JWT_SECRET set, on a free loopback port, plus `args`.
    pub fn start(args: &[&str]) -> Proxy {
        Self::start_with(args, true)
    }

    /// Starts lwproxy (as [`Proxy::start`]) admitting each of `targets` (`--allow
    /// 127.0.0.1/32:PORT`), plus `args`.
    pub fn allowing(targets: &[SocketAddr], args: &[&str]) -> Proxy {
        let allowed: Vec<String> = targets.iter().map(|&t| allow(t)).collect();
        let mut all: Vec<&str> = allowed.iter().flat_map(|a| ["--allow", a.as_str()]).collect();
        all.extend_from_slice(args);
        Self::start(&all)
    }

    /// Starts lwproxy (as [`Proxy::allowing`]) with no bytes-per-minute budget
    /// (`--bytes-per-min 0`), for tests that move more than the default 10 MiB a minute.
    pub fn unmetered(targets: &[SocketAddr], args: &[&str]) -> Proxy {
        let mut all = vec!["--bytes-per-min", "0"];
        all.extend_from_slice(args);
        Self::allowing(targets, &all)
    }

    /// Starts lwproxy (as [`Proxy::start`]) listening for wss with the CA's leaf certificate
    /// (`--tls-cert`, `--tls-key`), plus `args`.
    pub fn wss(ca: &TestCa, args: &[&str]) -> Proxy {
        let mut all = vec![
            "--tls-cert",
            ca.cert_pem.to_str().unwrap(),
            "--tls-key",
            ca.key_pem.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    pub fn start_with(args: &[&str], with_secret: bool) -> Proxy {
        Self::try_start(args, with_secret).unwrap_or_else(|e| panic!("lwproxy did not start: {e}"))
    }

    /// Starts it (JSON logs at info level to a file, `log`); Err(what it logged) when it exits
    /// before listening.
    pub fn try_start(args: &[&str], with_secret: bool) -> Result<Proxy, String> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("lwproxy-test-{}-{n}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lwproxy"));
        cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env_remove("JWT_SECRET")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::from(log_file));
        if with_secret {
            cmd.env("JWT_SECRET", SECRET);
        }
        match lwtest::proxy::Proxy::spawn(cmd) {
            Ok(proc) => Ok(Proxy {
                addr: proc.addr,
                proc,
                log,
            }),
            Err(_) => Err(std::fs::read_to_string(&log).unwrap_or_default()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn url(&self, query: &str) -> String {
        self.proc.url(query)
    }

    /// Resident set size of the proxy process, from /proc.
    pub fn rss_kib(&self) -> u64 {
        self.proc.rss_kib().unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether its log so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log_text().contains(text)
    }

    /// Sends SIGTERM and waits for the exit status (with a deadline).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.proc.terminate(Duration::from_secs(20)).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

// --- tokens -------------------------------------------------------------------

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn sign(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(input.as_bytes());
    format!("{input}.{}", B64URL.encode(m.finalize().into_bytes()))
}

/// A valid token for `sub`.
pub fn token(sub: &str) -> String {
    sign(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &json!({"sub": sub, "exp": now() + 600, "nbf": now() - 10}),
        SECRET.as_bytes(),
    )
}

// --- WebSocket client ----------------------------------------------------------

#[derive(Debug)]
pub enum Msg {
    Json(Value),
    Bin(u32, Vec<u8>),
}

pub struct Ws {
    pub ws: WebSocketStream<TcpStream>,
    pub v2: bool,
    pub protocol: Option<String>,
}

/// Connects with the given path+query, offered subprotocols and Origin.
pub async fn connect_raw(
    addr: SocketAddr,
    path_query: &str,
    protocols: &[&str],
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/{path_query}").into_client_request()?;
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols.join(", ")).unwrap(),
        );
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(o).unwrap());
    }
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true).unwrap();
    let cfg = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let (ws, resp) = tokio_tungstenite::client_async_with_config(req, tcp, Some(cfg)).await?;
    let protocol = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    let v2 = protocol.as_deref() == Some(SUBPROTOCOL_V2);
    Ok(Ws { ws, v2, protocol })
}

impl Ws {
    /// v1, token in the query string.
    pub async fn v1(p: &Proxy, sub: &str) -> Ws {
        connect_raw(p.addr, &format!("?token={}", token(sub)), &[], None)
            .await
            .unwrap()
    }

    /// lwproxy.v2, token as a bearer subprotocol.
    pub async fn v2(p: &Proxy, sub: &str) -> Ws {
        let bearer = format!("{BEARER_PREFIX}{}", token(sub));
        let ws = connect_raw(p.addr, "", &[SUBPROTOCOL_V2, &bearer], None)
            .await
            .unwrap();
        assert!(ws.v2);
        ws
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::Text(s.to_owned().into())).await.unwrap();
    }

    pub async fn send_bin(&mut self, id: u32, payload: &[u8]) {
        let f = protocol::data_binary(id, payload);
        self.ws.send(Message::Binary(f)).await.unwrap();
    }

    /// Writes data in the session's dialect.
    pub async fn write(&mut self, id: u32, data: &[u8]) {
        if self.v2 {
            self.send_bin(id, data).await
        } else {
            self.send_text(&client::write_json(id, data)).await
        }
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Msg> {
        loop {
            let m = tokio::time::timeout(wait, self.ws.next()).await.ok()??.ok()?;
            match m {
                Message::Text(t) => return Some(Msg::Json(serde_json::from_str(t.as_str()).unwrap())),
                Message::Binary(b) => {
                    let (id, payload) = protocol::split_binary(&b).expect("a binary frame with an id");
                    return Some(Msg::Bin(id, payload.to_vec()));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    pub async fn recv(&mut self) -> Msg {
        self.try_recv(WAIT).await.expect("message from lwproxy")
    }

    /// The next JSON message (acks for any id are skipped).
    pub async fn recv_json(&mut self) -> Value {
        loop {
            match self.recv().await {
                Msg::Json(v) if v["t"] == "ack" => continue,
                Msg::Json(v) => return v,
                Msg::Bin(id, _) => panic!("unexpected binary data for {id}"),
            }
        }
    }

    /// Opens and returns the reply (`opened` or `error`); on `error` also consumes `closed`.
    pub async fn open(&mut self, id: u32, host: &str, port: u16) -> Value {
        self.open_with(json!({"t": "open", "id": id, "host": host, "port": port}))
            .await
    }

    pub async fn open_with(&mut self, open: Value) -> Value {
        let id = open["id"].as_u64().unwrap();
        self.send_json(open).await;
        loop {
            let v = self.recv_json().await;
            if v["id"] == id && (v["t"] == "opened" || v["t"] == "error") {
                return v;
            }
            if v["t"] == "closed" {
                continue; // the end of an earlier connection
            }
            panic!("unexpected message while opening {id}: {v}");
        }
    }

    /// Opens `id` to the loopback server `target` and asserts that it is `opened`; returns
    /// the reply.
    pub async fn opened(&mut self, id: u32, target: SocketAddr) -> Value {
        let v = self.open(id, &target.ip().to_string(), target.port()).await;
        assert_eq!(v["t"], "opened", "opening {id} to {target}: {v}");
        v
    }

    /// Opens `id` to the loopback server `target` and asserts that it is refused with an
    /// `error` whose `code` is `code`; returns the error's `msg`.
    pub async fn open_error(&mut self, id: u32, target: SocketAddr, code: &str) -> String {
        let v = self.open(id, &target.ip().to_string(), target.port()).await;
        assert_eq!(v["t"], "error", "opening {id} to {target}: {v}");
        assert_eq!(self::code(&v), code, "{v}");
        msg(&v).to_owned()
    }

    /// Reads until `n` bytes of data for `id` arrived (acking in v2); other ids' data is
    /// not expected. Returns the bytes and every control message seen meanwhile.
    pub async fn read_data(&mut self, id: u32, n: usize) -> (Vec<u8>, Vec<Value>) {
        let mut data = Vec::with_capacity(n);
        let mut control = Vec::new();
        while data.len() < n {
            match self.recv().await {
                Msg::Bin(i, b) => {
                    assert_eq!(i, id);
                    if self.v2 {
                        self.send_text(&client::ack(id, b.len() as u64)).await;
                    }
                    data.extend_from_slice(&b);
                }
                Msg::Json(v) if v["t"] == "data" => {
                    assert_eq!(v["id"], id);
                    data.extend(B64.decode(v["b64"].as_str().unwrap()).unwrap());
                }
                Msg::Json(v) if v["t"] == "ack" => {}
                Msg::Json(v) => {
                    let end = v["t"] == "closed" || v["t"] == "error";
                    control.push(v);
                    if end {
                        break;
                    }
                }
            }
        }
        (data, control)
    }

    /// Waits for a message with this `t` and `id`, ignoring data, acks and eofs before it.
    pub async fn expect(&mut self, t: &str, id: u32) -> Value {
        loop {
            match self.recv().await {
                Msg::Json(v) if v["t"] == t && v["id"] == id => return v,
                Msg::Json(v) if ["data", "ack", "eof"].contains(&v["t"].as_str().unwrap_or("")) => {}
                Msg::Bin(..) => {}
                Msg::Json(v) => panic!("waiting for {t}/{id}, got {v}"),
            }
        }
    }

    /// Echo round trip through connection `id`.
    pub async fn echo(&mut self, id: u32, payload: &[u8]) {
        self.write(id, payload).await;
        let (got, control) = self.read_data(id, payload.len()).await;
        assert!(control.is_empty(), "{control:?}");
        assert_eq!(got, payload);
    }
}

/// The human `msg` of an `error` message ("" when absent).
pub fn msg(v: &Value) -> &str {
    v["msg"].as_str().unwrap_or("")
}

/// The `code` of an `error` message ("" when absent).
pub fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

/// The client side of v2 flow control for one connection: sends `total` bytes of `chunk`s,
/// never more than [`WINDOW`] of them unacknowledged.
pub struct WindowedSender {
    pub id: u32,
    pub total: usize,
    pub chunk: Vec<u8>,
    /// Bytes sent so far.
    pub sent: usize,
    /// Bytes sent and not yet acknowledged.
    pub in_flight: usize,
}

impl WindowedSender {
    pub fn new(id: u32, total: usize, chunk: Vec<u8>) -> WindowedSender {
        WindowedSender {
            id,
            total,
            chunk,
            sent: 0,
            in_flight: 0,
        }
    }

    /// Whether all `total` bytes have been sent.
    pub fn done(&self) -> bool {
        self.sent >= self.total
    }

    /// Sends chunks while they fit in the window and bytes remain.
    pub async fn fill(&mut self, ws: &mut Ws) {
        while self.in_flight + self.chunk.len() <= WINDOW && !self.done() {
            ws.send_bin(self.id, &self.chunk).await;
            self.in_flight += self.chunk.len();
            self.sent += self.chunk.len();
        }
    }

    /// Takes an `ack` message's `bytes` off the bytes in flight.
    pub fn acked(&mut self, ack: &Value) {
        self.in_flight -= ack["bytes"].as_u64().unwrap() as usize;
    }
}

// --- loopback target servers (lwtest's, async here so tests read the same either way) -----

/// Echoes everything; on the client's FIN, finishes and closes.
pub async fn echo_server() -> SocketAddr {
    servers::echo().unwrap()
}

/// Sends `n` bytes of [`pattern`], then closes.
pub async fn source_server(n: usize) -> SocketAddr {
    servers::source(n).unwrap()
}

#[allow(unused_imports)] // not every test binary uses it
pub use lwtest::pattern;

/// Reads everything and counts it; reports the count when the client half-closes,
/// by writing it back as decimal text.
pub async fn counting_server() -> SocketAddr {
    servers::tcp(|mut s| {
        let total = std::io::copy(&mut s, &mut std::io::sink()).unwrap_or(0);
        let _ = s.write_all(total.to_string().as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
    })
    .unwrap()
}

/// Sends `n` bytes, then resets the connection (SO_LINGER 0).
pub async fn reset_server(n: usize) -> SocketAddr {
    servers::tcp(move |mut s| {
        let _ = s.write_all(&vec![7u8; n]);
        std::thread::sleep(Duration::from_millis(100));
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    })
    .unwrap()
}

/// Accepts and never reads or writes (holds the socket open).
pub async fn silent_server() -> SocketAddr {
    servers::tcp(|s| {
        std::thread::sleep(Duration::from_secs(120));
        drop(s);
    })
    .unwrap()
}

/// An echo server ([`echo_server`]) and an lwproxy admitting it, plus `args`.
pub async fn echo_proxy(args: &[&str]) -> (SocketAddr, Proxy) {
    let echo = echo_server().await;
    (echo, Proxy::allowing(&[echo], args))
}

/// A port with nothing listening.
pub async fn refused_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A test CA and a leaf for `localhost` and 127.0.0.1, in files that live as long as it.
pub fn test_ca(tag: &str) -> TestCa {
    TestCa::temp(&format!("lwproxy test CA ({tag})")).unwrap()
}

/// A TLS echo server using the test CA's leaf certificate.
pub async fn tls_echo_server(cfg: Arc<rustls::ServerConfig>) -> SocketAddr {
    servers::tls_echo(cfg).unwrap()
}

/// A TLS server that writes `reply` and then drops the TCP socket without close_notify, as
/// many web servers do.
pub async fn tls_abrupt_server(cfg: Arc<rustls::ServerConfig>, reply: &'static [u8]) -> SocketAddr {
    servers::tls(cfg, move |mut tls| {
        let _ = tls.write_all(reply);
        let _ = tls.flush();
        // dropped here: no close_notify
    })
    .unwrap()
}

/// `--allow 127.0.0.1/32:PORT` for a test server.
pub fn allow(a: SocketAddr) -> String {
    format!("127.0.0.1/32:{}", a.port())
}
