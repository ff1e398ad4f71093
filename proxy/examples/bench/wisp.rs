//! The Wisp table of `lwproxy_bench`: one Rust Wisp v1 client (here, so the client is never
//! the bottleneck) against lwproxy's `/wisp/`, the wisp-js server (npm) and wisp-server-python
//! (PyPI), with socat and a raw TCP client as the ceiling; same loopback targets as the main
//! table. Packet format and credit rules: MercuryWorkshop/wisp-protocol, protocol.md (v1.2).

use super::{
    download, echo_samples, free_port, rss_kib, spawn_listening, start_lwproxy, ws_connect_url, Args,
    BenchClient, Process, ECHO_READ_BUFFER, STREAM_READ_BUFFER,
};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const STREAM: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Server {
    Lwproxy,
    WispJs,
    WispPython,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Lwproxy => "lwproxy /wisp/",
            Server::WispJs => "wisp-js 0.5.0 server (Node)",
            Server::WispPython => "wisp-server-python 0.9.0",
        }
    }
}

/// A running server and the URL of its Wisp endpoint.
pub struct Running {
    process: Process,
    pub url: String,
}

impl Drop for Running {
    /// Ends the server's children too (the server itself is killed on drop).
    fn drop(&mut self) {
        if let Ok(pids) = self.process.pid().and_then(tree_pids) {
            for pid in pids.iter().skip(1) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

impl Running {
    pub fn pid(&self) -> Result<u32> {
        self.process.pid()
    }
}

/// Starts `server` on a free loopback port, admitting loopback targets, without limits.
pub async fn start(server: Server, args: &Args, sessions: usize) -> Result<Running> {
    let port = free_port().await?;
    let mut cmd = match server {
        Server::Lwproxy => {
            let (process, addr) = start_lwproxy(&args.lwproxy, sessions).await?;
            return Ok(Running {
                process,
                url: format!("ws://{addr}/wisp/"),
            });
        }
        Server::WispJs => {
            let node = args.node.as_deref().context("--node")?;
            let cli = args.wisp_js.as_deref().context("--wisp-js")?;
            let mut c = Command::new(node);
            c.arg(cli)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--logging",
                    "NONE",
                ])
                .args([
                    "--options",
                    r#"{"allow_loopback_ips":true,"allow_private_ips":true,"wisp_version":1}"#,
                ]);
            c
        }
        Server::WispPython => {
            let py = args.wisp_python.as_deref().context("--wisp-python")?;
            let mut c = Command::new(py);
            c.args([
                "-m",
                "wisp.server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args([
                "--allow-loopback",
                "--allow-private",
                "--threads",
                "1",
                "--log-level",
                "critical",
            ]);
            c
        }
    };
    let (process, addr) = spawn_listening(&mut cmd, server.name(), port).await?;
    Ok(Running {
        process,
        url: format!("ws://{addr}/wisp/"),
    })
}

/// A Wisp v1 client with one stream, keeping the packet credit the spec asks for.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    credit: u32,
}

fn packet(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + payload.len());
    b.push(kind);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

impl Client {
    /// Opens the WebSocket (reading with a `read_buffer`-byte buffer) and waits for the first
    /// CONTINUE (stream 0).
    pub async fn session(url: &str, read_buffer: usize) -> Result<Client> {
        let ws = ws_connect_url(url, None, read_buffer).await?;
        let mut c = Client { ws, credit: 0 };
        loop {
            let (kind, id, p) = c
                .next_packet()
                .await?
                .context("closed before the first CONTINUE")?;
            if kind == 3 && id == 0 && p.len() == 4 {
                c.credit = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                return Ok(c);
            }
        }
    }

    /// A session with one TCP stream to `target`, reading with a `read_buffer`-byte buffer.
    pub async fn open(url: &str, target: SocketAddr, read_buffer: usize) -> Result<Client> {
        let mut c = Self::session(url, read_buffer).await?;
        let mut p = vec![1u8];
        p.extend_from_slice(&target.port().to_le_bytes());
        p.extend_from_slice(target.ip().to_string().as_bytes());
        c.ws.send(Message::Binary(packet(1, STREAM, &p).into())).await?;
        Ok(c)
    }

    async fn next_packet(&mut self) -> Result<Option<(u8, u32, Bytes)>> {
        loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(m) => match m? {
                    Message::Binary(b) if b.len() >= 5 => {
                        let id = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
                        return Ok(Some((b[0], id, b.slice(5..))));
                    }
                    Message::Close(_) => return Ok(None),
                    _ => {}
                },
            }
        }
    }

    /// Sends one DATA packet; waits for credit first (DATA that arrives meanwhile is an error
    /// here: the benchmark never sends while it expects data).
    async fn send_data(&mut self, data: &[u8]) -> Result<()> {
        while self.credit == 0 {
            match self
                .next_packet()
                .await?
                .context("closed while waiting for credit")?
            {
                (3, STREAM, p) if p.len() == 4 => self.credit = u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                (4, STREAM, p) => bail!("stream closed, reason {p:?}"),
                _ => {}
            }
        }
        self.credit -= 1;
        self.ws
            .send(Message::Binary(packet(2, STREAM, data).into()))
            .await?;
        Ok(())
    }

    /// Next DATA payload of the stream; `None` when it closed.
    async fn next_data(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.next_packet().await? {
                None => return Ok(None),
                Some((2, STREAM, p)) => return Ok(Some(p)),
                Some((3, STREAM, p)) if p.len() == 4 => {
                    self.credit = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                }
                Some((4, STREAM, p)) => {
                    if p.first() != Some(&0x02) {
                        bail!("stream closed, reason {p:?}");
                    }
                    return Ok(None);
                }
                Some(_) => {}
            }
        }
    }
}

impl BenchClient for Client {
    async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.send_data(data).await
    }
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        self.next_data().await
    }
}

/// MB/s of one stream downloading `bytes` from `source`.
pub async fn throughput(url: &str, source: SocketAddr, bytes: usize) -> Result<f64> {
    let started = Instant::now();
    let mut c = Client::open(url, source, STREAM_READ_BUFFER).await?;
    download(&mut c, bytes, started).await
}

/// 64-byte echo round trips in microseconds.
pub async fn rtt(url: &str, echo: SocketAddr, count: usize) -> Result<Vec<f64>> {
    let mut c = Client::open(url, echo, ECHO_READ_BUFFER).await?;
    Ok(echo_samples(&mut c, count, None).await?.samples)
}

/// `pid` and all its descendants (wisp-server-python serves from a child process).
fn tree_pids(pid: u32) -> Result<Vec<u32>> {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        for e in std::fs::read_dir("/proc")?.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state, ppid, ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && !pids.contains(&child) {
                pids.push(child);
            }
        }
        i += 1;
    }
    Ok(pids)
}

fn tree_rss_kib(pid: u32) -> Result<u64> {
    tree_pids(pid)?.iter().map(|p| rss_kib(*p)).sum()
}

/// KiB a fresh server (process and children) adds per idle Wisp session (WebSocket open,
/// first CONTINUE received, no stream), at `n` sessions.
pub async fn idle_memory(server: Server, args: &Args, n: usize) -> Result<f64> {
    let s = start(server, args, n).await?;
    let pid = s.pid()?;
    let _warm = Client::session(&s.url, STREAM_READ_BUFFER).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tree_rss_kib(pid)?;
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(Client::session(&s.url, STREAM_READ_BUFFER).await?);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = tree_rss_kib(pid)?;
    drop(sessions);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Which servers can run here: lwproxy always, the others when their runtime was given.
pub fn servers(args: &Args) -> Vec<Server> {
    let mut v = vec![Server::Lwproxy];
    if args.node.is_some() && args.wisp_js.as_deref().is_some_and(Path::exists) {
        v.push(Server::WispJs);
    }
    if args.wisp_python.is_some() {
        v.push(Server::WispPython);
    }
    v
}

/// Runs the Wisp table: every server `runs` times (interleaved), then memory on fresh
/// processes; `socat` is the ceiling row of the main table (MB/s, p50, p99), same targets.
pub async fn table(args: &Args, source: SocketAddr, echo: SocketAddr, socat: [Option<f64>; 3]) -> Result<()> {
    let servers = servers(args);
    let mut rows: Vec<[Option<f64>; 4]> = vec![[None; 4]; servers.len()];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    for round in 0..args.runs {
        for (i, &server) in servers.iter().enumerate() {
            let s = start(server, args, 16).await?;
            let mbps = throughput(&s.url, source, args.bytes)
                .await
                .with_context(|| format!("{}: throughput", server.name()))?;
            rows[i][0] = Some(rows[i][0].unwrap_or(0.0).max(mbps));
            let r = rtt(&s.url, echo, args.rtt_count / args.runs.max(1))
                .await
                .with_context(|| format!("{}: echo", server.name()))?;
            eprintln!(
                "wisp round {round}: {:<28} {mbps:>8.1} MB/s, {} echo samples",
                server.name(),
                r.len()
            );
            samples[i].extend(r);
        }
    }
    for (i, s) in samples.iter_mut().enumerate() {
        s.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            s.get(((s.len() as f64 * p) as usize).min(s.len().saturating_sub(1)))
                .copied()
        };
        rows[i][1] = pct(0.50);
        rows[i][2] = pct(0.99);
    }
    for (i, &server) in servers.iter().enumerate() {
        rows[i][3] = Some(
            idle_memory(server, args, args.sessions)
                .await
                .with_context(|| format!("{}: memory", server.name()))?,
        );
    }
    let f = |v: Option<f64>, prec: usize| v.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "-".into());
    println!();
    println!(
        "Wisp benchmark: one Rust Wisp v1 client, loopback, {} MiB single-stream download (best of {} rounds), \
         64-byte echo x{}, RSS per idle session at {} sessions",
        args.bytes >> 20,
        args.runs,
        args.rtt_count,
        args.sessions
    );
    println!("| server | throughput MB/s | x socat | echo p50 us | echo p99 us | RSS/idle session KiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| socat TCP relay, raw TCP client (ceiling) | {} | 1.00 | {} | {} | - |",
        f(socat[0], 1),
        f(socat[1], 1),
        f(socat[2], 1)
    );
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    for (i, &server) in servers.iter().enumerate() {
        let r = rows[i];
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            server.name(),
            f(r[0], 1),
            f(ratio(r[0], socat[0]), 2),
            f(r[1], 1),
            f(r[2], 1),
            f(r[3], 1)
        );
    }
    println!("| epoxy-server | not run: not published in the Rust package registry, so it cannot be built here | | | | |");
    // Targets: lwproxy at least the best of the others on each figure.
    let others = &rows[1..];
    let best = |k: usize, max: bool| {
        others
            .iter()
            .filter_map(|r| r[k])
            .fold(None, |acc: Option<f64>, v| {
                Some(match acc {
                    None => v,
                    Some(a) if max => a.max(v),
                    Some(a) => a.min(v),
                })
            })
    };
    let lw = rows[0];
    println!();
    println!("| target | lwproxy | goal | verdict |");
    println!("|---|---:|---:|---|");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    for (what, k, max) in [
        ("throughput MB/s >= best other server", 0, true),
        ("echo p50 us <= best other server", 1, false),
        ("echo p99 us <= best other server", 2, false),
        ("RSS/idle session KiB <= best other server", 3, false),
    ] {
        let b = best(k, max);
        let ok = lw[k].zip(b).map(|(v, b)| if max { v >= b } else { v <= b });
        println!("| {what} | {} | {} | {} |", f(lw[k], 1), f(b, 1), verdict(ok));
    }
    let x = ratio(lw[0], socat[0]);
    println!(
        "| throughput / socat | {} | >= 0.75 | {} |",
        f(x, 2),
        verdict(x.map(|x| x >= 0.75))
    );
    Ok(())
}
