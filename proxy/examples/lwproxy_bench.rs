//! Side-by-side benchmark: lwproxy (v1 JSON and lwproxy.v2 binary), wasmnet 0.2.0 (JSON and
//! binary) and socat as a plain TCP relay ceiling, all on loopback against target servers run
//! by this process. Run through `./linux-wasm.sh bench proxy` (tools/bench/proxy.sh).
//!
//! Figures: single-stream download throughput, 64-byte echo round trip p50/p99, and the RSS
//! the proxy process adds per idle WebSocket session (and per session holding one idle
//! connection) at N sessions.
#![allow(clippy::unwrap_used)]

#[path = "bench/wisp.rs"]
mod wisp;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use lwproxy::protocol::{self, client, ServerMsg, BINARY_HEADER, MAX_WINDOW, SUBPROTOCOL_V2, WINDOW};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Parser)]
#[command(about = "lwproxy vs wasmnet vs socat on loopback")]
struct Args {
    /// lwproxy binary (release build).
    #[arg(long)]
    lwproxy: PathBuf,
    /// wasmnet-server binary (0.2.0); skipped when absent.
    #[arg(long)]
    wasmnet: Option<PathBuf>,
    /// socat binary; skipped when absent.
    #[arg(long)]
    socat: Option<PathBuf>,
    /// Bytes for the single-stream throughput run.
    #[arg(long, default_value_t = 256 << 20)]
    bytes: usize,
    /// Rounds; each runs every system once (best throughput reported, echo samples pooled).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Echo round trips per system, spread over the rounds.
    #[arg(long, default_value_t = 6000)]
    rtt_count: usize,
    /// Idle sessions for the memory figure.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Node.js, for the wisp-js server of the Wisp table.
    #[arg(long)]
    node: Option<PathBuf>,
    /// wisp-js's server CLI (src/bin/server_cli.mjs of @mercuryworkshop/wisp-js); skipped when absent.
    #[arg(long)]
    wisp_js: Option<PathBuf>,
    /// Python with wisp-python installed (a venv's python); skipped when absent.
    #[arg(long)]
    wisp_python: Option<PathBuf>,
    /// Only the Wisp table (the socat ceiling is still measured).
    #[arg(long)]
    wisp_only: bool,
    /// Only the 64-byte echo of socat and lwproxy binary (v2): no stream, no memory figure,
    /// no JSON, no wasmnet, no Wisp table (for profiling and quick p50 comparisons).
    #[arg(long, conflicts_with = "wisp_only")]
    echo_only: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Mode {
    Socat,
    LwBinary,
    LwJson,
    WnBinary,
    WnJson,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Socat => "socat TCP relay",
            Mode::LwBinary => "lwproxy binary (v2)",
            Mode::LwJson => "lwproxy JSON (v1)",
            Mode::WnBinary => "wasmnet 0.2.0 binary",
            Mode::WnJson => "wasmnet 0.2.0 JSON",
        }
    }
}

// --- target servers ------------------------------------------------------------------

/// The loopback servers and helpers are lwtest's (thread per connection, off the runtime).
async fn source_server(n: usize) -> Result<SocketAddr> {
    lwtest::servers::source(n)
}

async fn echo_server() -> Result<SocketAddr> {
    lwtest::servers::echo()
}

pub(crate) async fn free_port() -> Result<u16> {
    lwtest::free_port()
}

pub(crate) async fn wait_port(port: u16) -> Result<()> {
    tokio::task::spawn_blocking(move || lwtest::wait_port(port, Duration::from_secs(5))).await?
}

use lwtest::proxy::{cpu_ns, own_cpu_ns, rss_kib};

// --- the systems under test -------------------------------------------------------------

struct Systems {
    lwproxy: (Process, SocketAddr),
    wasmnet: Option<(Process, SocketAddr)>,
    socat_source: Option<(Process, SocketAddr)>,
    socat_echo: Option<(Process, SocketAddr)>,
}

impl Systems {
    /// The process that relays `mode`'s echo round trips, for its CPU time.
    fn relay_pid(&self, mode: Mode) -> Option<u32> {
        let p = match mode {
            Mode::Socat => &self.socat_echo.as_ref()?.0,
            Mode::LwBinary | Mode::LwJson => &self.lwproxy.0,
            Mode::WnBinary | Mode::WnJson => &self.wasmnet.as_ref()?.0,
        };
        p.pid().ok()
    }
}

/// A server under test, stopped when dropped: lwproxy as lwtest's launcher runs it (killed
/// and reaped), the others as tokio children (`kill_on_drop`).
pub(crate) enum Process {
    Lwproxy(lwtest::proxy::Proxy),
    Child(Child),
}

impl Process {
    pub(crate) fn pid(&self) -> Result<u32> {
        match self {
            Process::Lwproxy(p) => Ok(p.pid()),
            Process::Child(c) => c.id().context("server exited"),
        }
    }
}

/// Runs `cmd` (output discarded) as `what`, and waits until it accepts connections on
/// 127.0.0.1:`port`.
pub(crate) async fn spawn_listening(
    cmd: &mut Command,
    what: &str,
    port: u16,
) -> Result<(Process, SocketAddr)> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    wait_port(port).await?;
    Ok((Process::Child(child), SocketAddr::from(([127, 0, 0, 1], port))))
}

/// lwproxy through lwtest's launcher: a free loopback port, loopback targets admitted, no
/// limits, no auth, room for `sessions` sessions (twice, plus some); its address from its
/// ready line.
async fn start_lwproxy(path: &Path, sessions: usize) -> Result<(Process, SocketAddr)> {
    let mut cmd = lwtest::proxy::loopback_command(path, "127.0.0.1:0");
    cmd.arg("--no-auth")
        .args(["--max-sessions-per-identity", "0", "--max-sessions"])
        .arg((sessions * 2 + 100).to_string())
        .env("RUST_LOG", "error");
    let proxy = tokio::task::spawn_blocking(move || lwtest::proxy::Proxy::spawn(cmd)).await??;
    let addr = proxy.addr;
    Ok((Process::Lwproxy(proxy), addr))
}

async fn start_wasmnet(path: &Path) -> Result<(Process, SocketAddr)> {
    let port = free_port().await?;
    let mut cmd = Command::new(path);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--no-policy"])
        .env("RUST_LOG", "error");
    spawn_listening(&mut cmd, &path.display().to_string(), port).await
}

async fn start_socat(path: &Path, target: SocketAddr) -> Result<(Process, SocketAddr)> {
    let port = free_port().await?;
    // A 256 KiB relay buffer (socat's default is 8 KiB) so the ceiling is a real one.
    let mut cmd = Command::new(path);
    cmd.args(["-b", &WINDOW.to_string()])
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
        .arg(format!("TCP:{target},nodelay"));
    spawn_listening(&mut cmd, &path.display().to_string(), port).await
}

// --- clients -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct WnMsg<'a> {
    ev: &'a str,
    #[serde(borrow)]
    data: Option<&'a str>,
    #[serde(borrow)]
    msg: Option<&'a str>,
}

enum Client {
    Tcp(TcpStream, Vec<u8>),
    Ws {
        ws: Box<WebSocketStream<TcpStream>>,
        mode: Mode,
        unacked: u64,
        /// The proxy-to-client window `opened` granted (v2).
        window: u64,
    },
}

/// The client's WebSocket read buffer (tungstenite's `read_buffer_size`) for the stream runs:
/// tungstenite's default, so a 64 KiB message arrives in one or two reads.
pub(crate) const STREAM_READ_BUFFER: usize = 128 * 1024;

/// The client's WebSocket read buffer for the echo runs. tungstenite 0.28 zero-fills the free
/// part of its read buffer, up to this size, before every read (`FrameCodec::read_in`), twice
/// per echo (the read that brings the reply and the one that finds the socket empty): with the
/// default 128 KiB that is 256 KiB of memset per 64-byte echo (2.2 µs per 128 KiB on the
/// 2-core bench machine), a cost of this client, on the round trip's critical path, that the
/// raw TCP client of the socat row does not pay. 4 KiB, the size tungstenite's documentation
/// suggests for connections without a high read load, holds a 70-byte echo frame many times.
pub(crate) const ECHO_READ_BUFFER: usize = 4 * 1024;

/// A WebSocket session with the server at `addr` (path `/`), offering `protocol`, reading
/// with a `read_buffer`-byte buffer.
async fn ws_connect(
    addr: SocketAddr,
    protocol: Option<&str>,
    read_buffer: usize,
) -> Result<WebSocketStream<TcpStream>> {
    ws_connect_url(&format!("ws://{addr}/"), protocol, read_buffer).await
}

/// A WebSocket session to `url` (`ws://IP:PORT/PATH`), offering `protocol`: Nagle off,
/// messages up to 64 MiB, a read buffer of `read_buffer` bytes ([`STREAM_READ_BUFFER`] or
/// [`ECHO_READ_BUFFER`]).
pub(crate) async fn ws_connect_url(
    url: &str,
    protocol: Option<&str>,
    read_buffer: usize,
) -> Result<WebSocketStream<TcpStream>> {
    let mut req = url.into_client_request()?;
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p)?);
    }
    let addr: SocketAddr = req
        .uri()
        .authority()
        .context("no address in the url")?
        .as_str()
        .parse()?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .read_buffer_size(read_buffer);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(cfg)).await?;
    Ok(ws)
}

const ID: u32 = 1;

fn wn_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.push(kind);
    f.extend_from_slice(&u64::from(ID).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl Client {
    /// A session (no connection yet), reading with a `read_buffer`-byte buffer.
    async fn session(mode: Mode, sys: &Systems, read_buffer: usize) -> Result<WebSocketStream<TcpStream>> {
        match mode {
            Mode::LwBinary => ws_connect(sys.lwproxy.1, Some(SUBPROTOCOL_V2), read_buffer).await,
            Mode::LwJson => ws_connect(sys.lwproxy.1, None, read_buffer).await,
            Mode::WnBinary | Mode::WnJson => {
                ws_connect(sys.wasmnet.as_ref().context("wasmnet")?.1, None, read_buffer).await
            }
            Mode::Socat => bail!("socat has no sessions"),
        }
    }

    /// Opens a connection to `target` (for socat: connects to the relay for that target); a
    /// WebSocket client reads with a `read_buffer`-byte buffer.
    async fn open(
        mode: Mode,
        sys: &Systems,
        target: SocketAddr,
        relay: Option<SocketAddr>,
        read_buffer: usize,
    ) -> Result<Client> {
        if mode == Mode::Socat {
            let s = TcpStream::connect(relay.context("socat relay")?).await?;
            s.set_nodelay(true)?;
            return Ok(Client::Tcp(s, vec![0u8; 256 * 1024]));
        }
        let ws = Self::session(mode, sys, read_buffer).await?;
        let mut c = Client::Ws {
            ws: Box::new(ws),
            mode,
            unacked: 0,
            window: WINDOW,
        };
        c.send_open(target).await?;
        Ok(c)
    }

    async fn send_open(&mut self, target: SocketAddr) -> Result<()> {
        let Client::Ws { ws, mode, window, .. } = self else {
            bail!("not a WebSocket client")
        };
        let host = target.ip().to_string();
        let msg = match mode {
            // The binary client reads as fast as it can, so it offers the largest window.
            Mode::LwBinary => {
                let open = client::open_window(ID, &host, target.port(), false, None, Some(MAX_WINDOW));
                Message::Text(open.into())
            }
            Mode::LwJson => Message::Text(client::open(ID, &host, target.port(), false, None).into()),
            Mode::WnJson => Message::Text(
                serde_json::json!({"op": "connect", "id": ID, "addr": host, "port": target.port()})
                    .to_string()
                    .into(),
            ),
            Mode::WnBinary => {
                let mut p = target.port().to_be_bytes().to_vec();
                p.extend_from_slice(host.as_bytes());
                Message::Binary(wn_frame(0x01, &p).into())
            }
            Mode::Socat => unreachable!(),
        };
        ws.send(msg).await?;
        // Wait for the open to complete.
        loop {
            match ws.next().await.context("closed while opening")?? {
                // lwproxy's replies are the protocol crate's messages; wasmnet's have `ev`.
                Message::Text(t) if matches!(mode, Mode::LwBinary | Mode::LwJson) => {
                    match serde_json::from_str(t.as_str())? {
                        ServerMsg::Opened { window: w, .. } => {
                            *window = w.unwrap_or(WINDOW);
                            return Ok(());
                        }
                        ServerMsg::Error { code, msg, .. } => bail!("open failed: {code:?} {msg}"),
                        _ => {}
                    }
                }
                Message::Text(t) => {
                    let m: WnMsg = serde_json::from_str(t.as_str())?;
                    match m.ev {
                        "connected" => return Ok(()),
                        "error" | "denied" => bail!("open failed: {}", m.msg.unwrap_or("")),
                        _ => {}
                    }
                }
                Message::Binary(b) if *mode == Mode::WnBinary => match b.first() {
                    Some(0x81) => return Ok(()),
                    Some(0x86) | Some(0x87) => bail!("open failed: {}", String::from_utf8_lossy(&b[9..])),
                    _ => {}
                },
                other => bail!("unexpected while opening: {other:?}"),
            }
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Client::Tcp(s, _) => Ok(s.write_all(data).await?),
            Client::Ws { ws, mode, .. } => {
                let msg = match mode {
                    Mode::LwBinary => Message::Binary(protocol::data_binary(ID, data)),
                    Mode::LwJson => Message::Text(client::write_json(ID, data).into()),
                    Mode::WnJson => Message::Text(
                        format!(r#"{{"op":"send","id":{ID},"data":"{}"}}"#, B64.encode(data)).into(),
                    ),
                    Mode::WnBinary => Message::Binary(wn_frame(0x04, data).into()),
                    Mode::Socat => unreachable!(),
                };
                Ok(ws.send(msg).await?)
            }
        }
    }

    /// Next chunk of data; `None` at the end of the stream.
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        match self {
            Client::Tcp(s, buf) => {
                let n = s.read(buf).await?;
                Ok((n > 0).then(|| Bytes::copy_from_slice(&buf[..n])))
            }
            Client::Ws {
                ws,
                mode,
                unacked,
                window,
            } => loop {
                let Some(m) = ws.next().await else { return Ok(None) };
                match (m?, *mode) {
                    (Message::Binary(b), Mode::LwBinary) => {
                        let payload = b.slice(BINARY_HEADER..);
                        *unacked += payload.len() as u64;
                        if *unacked >= *window / 4 {
                            ws.send(Message::Text(client::ack(ID, *unacked).into())).await?;
                            *unacked = 0;
                        }
                        return Ok(Some(payload));
                    }
                    (Message::Text(t), Mode::LwBinary | Mode::LwJson) => {
                        match serde_json::from_str(t.as_str())? {
                            ServerMsg::Data { b64, .. } => return Ok(Some(B64.decode(b64)?.into())),
                            ServerMsg::Closed { .. } | ServerMsg::Eof { .. } => return Ok(None),
                            ServerMsg::Error { msg, .. } => bail!("lwproxy: {msg}"),
                            _ => {}
                        }
                    }
                    (Message::Text(t), Mode::WnJson | Mode::WnBinary) => {
                        let m: WnMsg = serde_json::from_str(t.as_str())?;
                        match m.ev {
                            "data" => return Ok(Some(B64.decode(m.data.unwrap_or(""))?.into())),
                            "closed" => return Ok(None),
                            "error" | "denied" => bail!("wasmnet: {}", m.msg.unwrap_or("")),
                            _ => {}
                        }
                    }
                    (Message::Binary(b), Mode::WnBinary) if b.len() >= 9 => match b[0] {
                        0x82 => return Ok(Some(b.slice(9..))),
                        0x85 => return Ok(None),
                        0x86 | 0x87 => bail!("wasmnet: {}", String::from_utf8_lossy(&b[9..])),
                        _ => {}
                    },
                    (Message::Close(_), _) => return Ok(None),
                    _ => {}
                }
            },
        }
    }
}

// --- measurements ---------------------------------------------------------------------------

async fn throughput(mode: Mode, sys: &Systems, source: SocketAddr, bytes: usize) -> Result<f64> {
    let relay = sys.socat_source.as_ref().map(|s| s.1);
    let started = Instant::now();
    let mut c = Client::open(mode, sys, source, relay, STREAM_READ_BUFFER).await?;
    download(&mut c, bytes, started)
        .await
        .with_context(|| mode.name())
}

/// What the measurements need of a client (the lwproxy/wasmnet/socat one and the Wisp one).
trait BenchClient {
    /// Sends one message (one chunk of bytes).
    async fn send(&mut self, data: &[u8]) -> Result<()>;
    /// Next chunk of data; `None` at the end of the stream.
    async fn recv(&mut self) -> Result<Option<Bytes>>;
}

impl BenchClient for Client {
    async fn send(&mut self, data: &[u8]) -> Result<()> {
        Client::send(self, data).await
    }
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        Client::recv(self).await
    }
}

/// Reads `bytes` from `c`; MB/s since `started`.
async fn download<C: BenchClient>(c: &mut C, bytes: usize, started: Instant) -> Result<f64> {
    let mut got = 0usize;
    while let Some(chunk) = c.recv().await? {
        got += chunk.len();
        if got >= bytes {
            break;
        }
    }
    if got != bytes {
        bail!("received {got} of {bytes} bytes");
    }
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// What an echo run measured: round-trip times in microseconds (after 100 warm-up round
/// trips), and the CPU time spent during the timed ones by the relay (its process and the
/// processes it forked, e.g. socat's per-connection child: [`lwtest::proxy::cpu_ns`]; `None`
/// when unknown, e.g. a thread that did the work ended between the readings) and by this
/// process (the client and the echo server: [`lwtest::proxy::own_cpu_ns`]), in nanoseconds.
pub(crate) struct EchoRun {
    pub samples: Vec<f64>,
    pub relay_cpu_ns: Option<u64>,
    pub own_cpu_ns: u64,
}

/// 64-byte echo round trips on `c` (see [`EchoRun`]); `relay` is the pid of the process
/// relaying them, if its CPU time is wanted.
pub(crate) async fn echo_samples<C: BenchClient>(
    c: &mut C,
    count: usize,
    relay: Option<u32>,
) -> Result<EchoRun> {
    let payload = [0x42u8; 64];
    let mut samples = Vec::with_capacity(count);
    let cpu = || -> Result<(Option<u64>, u64)> {
        let relay = relay.map(|pid| cpu_ns(pid, true)).transpose()?;
        Ok((relay, own_cpu_ns()))
    };
    let mut start = (None, 0);
    for i in 0..count + 100 {
        if i == 100 {
            start = cpu()?;
        }
        let t = Instant::now();
        c.send(&payload).await?;
        let mut got = 0;
        while got < payload.len() {
            got += c.recv().await?.context("echo closed")?.len();
        }
        if i >= 100 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let end = cpu()?;
    Ok(EchoRun {
        samples,
        relay_cpu_ns: end.0.zip(start.0).and_then(|(e, s)| e.checked_sub(s)),
        own_cpu_ns: end.1.saturating_sub(start.1),
    })
}

/// Echo round trips through the system of `mode` (see [`EchoRun`]).
async fn rtt(mode: Mode, sys: &Systems, echo: SocketAddr, count: usize) -> Result<EchoRun> {
    let relay = sys.socat_echo.as_ref().map(|s| s.1);
    let mut c = Client::open(mode, sys, echo, relay, ECHO_READ_BUFFER).await?;
    echo_samples(&mut c, count, sys.relay_pid(mode)).await
}

/// KiB a fresh proxy process adds per idle session, and per session holding one idle
/// connection. Fresh, so heap grown by the throughput runs does not hide the cost.
async fn idle_memory(mode: Mode, args: &Args, echo: SocketAddr, n: usize) -> Result<(f64, f64)> {
    let (process, addr) = match mode {
        Mode::LwBinary => start_lwproxy(&args.lwproxy, n).await?,
        Mode::WnBinary => start_wasmnet(args.wasmnet.as_ref().context("wasmnet")?).await?,
        _ => bail!("memory is measured for the binary modes"),
    };
    let sys = Systems {
        lwproxy: (process, addr),
        wasmnet: None,
        socat_source: None,
        socat_echo: None,
    };
    let pid = sys.lwproxy.0.pid()?;
    let session = |sys: &Systems| {
        let addr = sys.lwproxy.1;
        async move {
            match mode {
                Mode::LwBinary => ws_connect(addr, Some(SUBPROTOCOL_V2), STREAM_READ_BUFFER).await,
                _ => ws_connect(addr, None, STREAM_READ_BUFFER).await,
            }
        }
    };
    // One session and connection first, so one-time allocations are not counted per session.
    let mut warm = Client::Ws {
        ws: Box::new(session(&sys).await?),
        mode,
        unacked: 0,
        window: WINDOW,
    };
    warm.send_open(echo).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid)?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::Ws {
            ws: Box::new(session(&sys).await?),
            mode,
            unacked: 0,
            window: WINDOW,
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_sessions = rss_kib(pid)?;
    for c in &mut clients {
        c.send_open(echo).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_conns = rss_kib(pid)?;
    Ok((
        with_sessions.saturating_sub(before) as f64 / n as f64,
        with_conns.saturating_sub(before) as f64 / n as f64,
    ))
}

#[derive(Default, Clone, Copy)]
struct Row {
    mbps: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    /// CPU microseconds per timed echo, the mean over the timed echoes: the relay's, and this
    /// process's (client + echo server).
    relay_cpu: Option<f64>,
    own_cpu: Option<f64>,
    idle: Option<f64>,
    idle_conn: Option<f64>,
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "-".into())
}

/// A row of the goal table: the bound a measured figure must stay within.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    /// `met`, `MISSED`, or `not measured` (no figure).
    fn verdict(self, v: Option<f64>) -> &'static str {
        match (v, self) {
            (None, _) => "not measured",
            (Some(v), Goal::AtLeast(g)) if v >= g => "met",
            (Some(v), Goal::AtMost(g)) if v <= g => "met",
            _ => "MISSED",
        }
    }
}

/// As the goal column shows it: `>= 1.0`, `<= 64.0`.
impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Goal::AtLeast(g) => write!(f, ">= {g:?}"),
            Goal::AtMost(g) => write!(f, "<= {g:?}"),
        }
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), for the table's context.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let load_start = load_average();
    let source = source_server(args.bytes).await?;
    let echo = echo_server().await?;
    let sys = Systems {
        lwproxy: start_lwproxy(&args.lwproxy, args.sessions).await?,
        wasmnet: match &args.wasmnet {
            Some(p) => Some(start_wasmnet(p).await?),
            None => None,
        },
        socat_source: match &args.socat {
            Some(p) => Some(start_socat(p, source).await?),
            None => None,
        },
        socat_echo: match &args.socat {
            Some(p) => Some(start_socat(p, echo).await?),
            None => None,
        },
    };
    let mut modes = vec![];
    if sys.socat_source.is_some() {
        modes.push(Mode::Socat);
    }
    if args.echo_only {
        modes.push(Mode::LwBinary);
    } else if !args.wisp_only {
        modes.extend([Mode::LwBinary, Mode::LwJson]);
    }
    if sys.wasmnet.is_some() && !args.wisp_only && !args.echo_only {
        modes.extend([Mode::WnBinary, Mode::WnJson]);
    }

    // Rounds interleave the systems so that background load hits them all alike.
    let mut rows: std::collections::HashMap<Mode, Row> = modes.iter().map(|m| (*m, Row::default())).collect();
    let mut samples: std::collections::HashMap<Mode, Vec<f64>> =
        modes.iter().map(|m| (*m, Vec::new())).collect();
    // CPU nanoseconds over the timed echoes, pooled over the rounds: relay, own, echoes.
    let mut cpu: std::collections::HashMap<Mode, (Option<u64>, u64, usize)> = Default::default();
    for round in 0..args.runs {
        for &mode in &modes {
            let mbps = if args.echo_only {
                0.0
            } else {
                throughput(mode, &sys, source, args.bytes).await?
            };
            let row = rows.get_mut(&mode).context("row")?;
            if !args.echo_only {
                row.mbps = Some(row.mbps.unwrap_or(0.0).max(mbps));
            }
            let run = rtt(mode, &sys, echo, args.rtt_count / args.runs.max(1)).await?;
            eprintln!(
                "round {round}: {:<22} {mbps:>8.1} MB/s, {} echo samples",
                mode.name(),
                run.samples.len()
            );
            let c = cpu.entry(mode).or_insert((Some(0), 0, 0));
            c.0 = c.0.zip(run.relay_cpu_ns).map(|(a, b)| a + b);
            c.1 += run.own_cpu_ns;
            c.2 += run.samples.len();
            samples.get_mut(&mode).context("samples")?.extend(run.samples);
        }
    }
    for (mode, s) in &mut samples {
        s.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            s.get(((s.len() as f64 * p) as usize).min(s.len().saturating_sub(1)))
                .copied()
        };
        let row = rows.get_mut(mode).context("row")?;
        row.p50 = pct(0.50);
        row.p99 = pct(0.99);
        if let Some(&(relay, own, n)) = cpu.get(mode).filter(|c| c.2 > 0) {
            row.relay_cpu = relay.map(|r| r as f64 / n as f64 / 1e3);
            row.own_cpu = Some(own as f64 / n as f64 / 1e3);
        }
    }
    // Memory on fresh processes, for one dialect per proxy (session state does not depend on it).
    for mode in [Mode::LwBinary, Mode::WnBinary] {
        if args.echo_only {
            break;
        }
        if let Some(row) = rows.get_mut(&mode) {
            let (idle, idle_conn) = idle_memory(mode, &args, echo, args.sessions).await?;
            row.idle = Some(idle);
            row.idle_conn = Some(idle_conn);
        }
    }

    let socat = rows.get(&Mode::Socat).and_then(|r| r.mbps);
    println!();
    println!(
        "lwproxy benchmark: loopback, {} MiB single stream (best of {} rounds), 64-byte echo x{}, {} idle sessions",
        args.bytes >> 20,
        args.runs,
        args.rtt_count,
        args.sessions
    );
    println!(
        "load average (1, 5, 15 min): {load_start} at the start, {} at the end; ratios are only meaningful on a quiet machine (load below 2, little CPU steal: `./linux-wasm.sh bench proxy` prints it)",
        load_average()
    );
    println!(
        "| system | throughput MB/s | x socat | echo p50 us | echo p99 us | relay CPU us/echo (mean) | client+echo server CPU us/echo (mean) | RSS/idle session KiB | RSS/session+idle conn KiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &mode in &modes {
        let r = rows[&mode];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            mode.name(),
            fmt(r.mbps, 1),
            fmt(ratio(r.mbps, socat), 2),
            fmt(r.p50, 1),
            fmt(r.p99, 1),
            fmt(r.relay_cpu, 1),
            fmt(r.own_cpu, 1),
            fmt(r.idle, 1),
            fmt(r.idle_conn, 1)
        );
    }
    let get = |m: Mode| rows.get(&m).copied().unwrap_or_default();
    let (lb, lj, wb, wj) = (
        get(Mode::LwBinary),
        get(Mode::LwJson),
        get(Mode::WnBinary),
        get(Mode::WnJson),
    );
    println!();
    println!("| target | measured | goal | verdict |");
    println!("|---|---:|---:|---|");
    let sp50 = rows.get(&Mode::Socat).and_then(|r| r.p50);
    use Goal::{AtLeast, AtMost};
    // lwproxy against wasmnet in one dialect: at least its throughput, at most its p99 echo.
    let vs_wasmnet = |dialect: &str, lw: Row, wn: Row| {
        [
            (
                format!("{dialect} / wasmnet {dialect} throughput"),
                ratio(lw.mbps, wn.mbps),
                AtLeast(1.0),
            ),
            (
                format!("{dialect} p99 echo / wasmnet {dialect} p99"),
                ratio(lw.p99, wn.p99),
                AtMost(1.0),
            ),
        ]
    };
    let [binary_mbps, binary_p99] = vs_wasmnet("binary", lb, wb);
    let [json_mbps, json_p99] = vs_wasmnet("JSON", lj, wj);
    for (what, v, goal) in [
        binary_mbps,
        (
            "binary / socat throughput".into(),
            ratio(lb.mbps, socat),
            AtLeast(0.85),
        ),
        json_mbps,
        binary_p99,
        (
            "binary p50 echo / socat p50".into(),
            ratio(lb.p50, sp50),
            AtMost(1.0),
        ),
        json_p99,
        ("RSS per idle session, KiB".into(), lb.idle, AtMost(64.0)),
    ] {
        println!("| {what} | {} | {goal} | {} |", fmt(v, 2), goal.verdict(v));
    }
    if args.echo_only {
        return Ok(());
    }
    let s = rows.get(&Mode::Socat).copied().unwrap_or_default();
    wisp::table(&args, source, echo, [s.mbps, s.p50, s.p99]).await
}
