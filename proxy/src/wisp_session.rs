//! One Wisp v1.2 session (`/wisp/`): the same policy, limits and audit as the lwproxy
//! protocols, with Wisp's packets ([`crate::wisp`]) and its flow control.
//!
//! Flow control (spec "CONTINUE"): credit is counted in packets, client to server only. Every
//! stream gets the same [`BUFFER`] packets (announced once, on stream 0, when the session
//! starts). The session keeps, per stream, `queued` (packets received and not yet written to
//! the target) and `allowed` (packets the client may still send). `queued + allowed <=
//! BUFFER` always holds: a received packet moves one from `allowed` to `queued`, a written one
//! leaves `queued`, and a CONTINUE of `v = BUFFER - queued - allowed` (sent once `v` reaches
//! half the buffer, i.e. before the client runs out) adds `v` to `allowed`. A client resets
//! its counter to `v` on a CONTINUE, and whatever it sent before that was already counted in
//! `allowed`, so the bound holds whatever the timing. Memory per TCP stream is therefore at
//! most `BUFFER` × the largest accepted message (`--max-message`) plus one 64 KiB read
//! buffer. A client that sends beyond its credit loses that stream (`CLOSE 0x41`), never the
//! session, and one stream whose target stops reading holds only its own credit. A packet
//! larger than `--max-message` ends its stream with `CLOSE 0x49` ("throttled", the reason of
//! every limit; the other protocols' `limit: message size`), also without ending the session.
//!
//! UDP streams (mandatory in v1.2) carry one datagram per DATA packet, without credit: the
//! queue to the socket holds at most [`BUFFER`] datagrams and drops beyond that, as UDP may.

use crate::audit::Audit;
use crate::config::Config;
use crate::limits::{ConnSlot, Identity};
use crate::policy::{self, Host, Policy};
use crate::protocol::{ErrorCode, Failure};
use crate::relay;
use crate::session::{Out, Protocol, SessionCtx};
use crate::wisp::{self, reason, Packet, ParseError};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Packets every stream may have buffered at the server (the first CONTINUE, on stream 0).
pub const BUFFER: u32 = 16;
/// WebSocket read buffer of a Wisp session (zero-filled, so resident per session). Wisp
/// clients send small packets (TLS records, frames of an emulated NIC), so 8 KiB rather than
/// the 16 KiB of the other protocols; larger packets still arrive whole, in more reads.
pub const READ_BUFFER: usize = 8 * 1024;
/// Largest read from a target, i.e. the largest DATA payload the server sends.
const CHUNK: usize = 64 * 1024;
/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;
/// Streams one session may have open at once, whatever the per-identity limits say.
const MAX_STREAMS: usize = 1024;
/// Messages queued towards the client (bounds a session's outgoing buffer with a slow reader).
const OUT_QUEUE: usize = 32;

/// Packet credit of one TCP stream; see the module docs for the invariant.
#[derive(Debug)]
struct Credit {
    queued: u32,
    allowed: u32,
}

impl Credit {
    fn lock(m: &Mutex<Credit>) -> std::sync::MutexGuard<'_, Credit> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A packet arrived; false when the client had no credit left.
    fn receive(&mut self) -> bool {
        if self.allowed == 0 {
            return false;
        }
        self.allowed -= 1;
        self.queued += 1;
        true
    }

    /// A packet was written to the target; returns the CONTINUE value to send, if one is due.
    fn written(&mut self) -> Option<u32> {
        self.queued = self.queued.saturating_sub(1);
        let v = BUFFER.saturating_sub(self.queued + self.allowed);
        (v >= BUFFER / 2).then(|| {
            self.allowed += v;
            v
        })
    }
}

struct StreamEntry {
    gen: u64,
    tx: mpsc::Sender<Bytes>,
    /// `None` for UDP streams (no credit).
    credit: Option<Arc<Mutex<Credit>>>,
    /// Ends the task from the session's side (with the reason it sends in its CLOSE).
    kill: Option<oneshot::Sender<End>>,
    abort: AbortHandle,
}

/// A stream task tells the session it ended (`gen` tells a reused id apart). The session
/// leaves the table first and then sends the CLOSE with `close` (none when the client closed
/// the stream itself), so a client that opens again on CLOSE finds the id free and a draining
/// session never ends before the last CLOSE is written.
pub struct Finished {
    id: u32,
    gen: u64,
    close: Option<u8>,
}

/// Why a stream ended or was refused: the CLOSE reason and a text for the log and audit.
#[derive(Debug)]
struct End {
    reason: u8,
    msg: String,
    /// Send no CLOSE (the client closed the stream itself).
    silent: bool,
}

impl End {
    fn new(reason: u8, msg: impl Into<String>) -> Self {
        End {
            reason,
            msg: msg.into(),
            silent: false,
        }
    }
}

/// The Wisp close reason of a failure code of the other protocols (one mapping, no texts).
fn reason_of(code: ErrorCode) -> u8 {
    match code {
        ErrorCode::Policy => reason::BLOCKED,
        ErrorCode::Limit => reason::THROTTLED,
        ErrorCode::Unreachable => reason::UNREACHABLE,
        ErrorCode::Timeout => reason::CONNECT_TIMEOUT,
        ErrorCode::Refused => reason::REFUSED,
        ErrorCode::InvalidHost | ErrorCode::Protocol => reason::INVALID,
        ErrorCode::Unavailable => reason::UNKNOWN,
        ErrorCode::Reset | ErrorCode::Tls | ErrorCode::Io | ErrorCode::Other => reason::NETWORK_ERROR,
    }
}

impl From<Failure> for End {
    fn from(f: Failure) -> Self {
        End::new(reason_of(f.code), f.msg)
    }
}

/// A per-identity limit was hit (the limits module's errors are all limits).
fn throttled(msg: String) -> End {
    End::new(reason::THROTTLED, msg)
}

/// An I/O error on a target socket, classified as for the other protocols.
fn io_end(e: &std::io::Error) -> End {
    End::from(relay::io_failure(e))
}

/// What a stream task needs.
struct StreamParams {
    id: u32,
    gen: u64,
    udp: bool,
    host: Host,
    target: String,
    port: u16,
    cfg: Arc<Config>,
    identity: Arc<Identity>,
    client: SocketAddr,
    out: Out,
    events: mpsc::UnboundedSender<Finished>,
    credit: Option<Arc<Mutex<Credit>>>,
}

/// Whether `path` is the Wisp endpoint: `Some(Ok(None))` for `/wisp/`, `Some(Ok(Some(token)))`
/// for `/wisp/<token>/`, `Some(Err(why))` for any other path under `/wisp`, `None` otherwise.
pub fn endpoint(path: &str) -> Option<Result<Option<String>, &'static str>> {
    let rest = path.strip_prefix("/wisp")?;
    if rest.is_empty() || rest.starts_with('/') {
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        return Some(match rest.strip_suffix('/') {
            _ if rest.is_empty() && path.ends_with('/') => Ok(None),
            Some(token) if !token.is_empty() && !token.contains('/') => Ok(Some(token.to_owned())),
            _ => Err("the Wisp endpoint is /wisp/ or /wisp/<token>/"),
        });
    }
    None
}

/// The Wisp protocol's half of a session ([`session::drive`] runs it): its stream table.
pub struct WispSession {
    ctx: Arc<SessionCtx>,
    out: Out,
    events: mpsc::UnboundedSender<Finished>,
    streams: HashMap<u32, StreamEntry>,
    next_gen: u64,
}

impl Protocol for WispSession {
    type Event = Finished;
    const OUT_QUEUE: usize = OUT_QUEUE;

    fn new(ctx: Arc<SessionCtx>, out: Out, events: mpsc::UnboundedSender<Finished>) -> Self {
        let streams = HashMap::new();
        WispSession {
            ctx,
            out,
            events,
            streams,
            next_gen: 0,
        }
    }

    /// Spec "Establishing a Websocket Connection": the first packet is CONTINUE on stream 0
    /// with the buffer size every stream starts with.
    async fn start(&mut self) -> bool {
        self.out.binary(wisp::encode_continue(0, BUFFER)).await
    }

    async fn finished(&mut self, f: Finished) -> bool {
        if self.streams.get(&f.id).is_some_and(|s| s.gen == f.gen) {
            self.streams.remove(&f.id);
        }
        match f.close {
            Some(reason) => self.out.binary(wisp::encode_close(f.id, reason)).await,
            None => true,
        }
    }

    fn has_streams(&self) -> bool {
        !self.streams.is_empty()
    }

    /// An oversized DATA ends its stream with `CLOSE 0x49` (the reason of a limit); an
    /// oversized CONNECT is refused with it. Anything else oversized (text, stream 0, unknown
    /// streams) is dropped, as the spec defines no answer to it.
    async fn oversized(&mut self, msg: &Message, why: Failure) -> bool {
        let Message::Binary(b) = msg else { return true };
        let Some(&[kind, a, b2, c, d]) = b.get(..wisp::HEADER) else {
            return true;
        };
        let id = u32::from_le_bytes([a, b2, c, d]);
        tracing::info!(peer = %self.ctx.peer, stream = id, "wisp: {}", why.msg);
        if id == 0 {
            true
        } else if self.streams.contains_key(&id) {
            self.end_stream(id, End::from(why));
            true
        } else if kind == wisp::CONNECT {
            self.out.binary(wisp::encode_close(id, reason_of(why.code))).await
        } else {
            true
        }
    }

    async fn message(&mut self, msg: Message, draining: bool) -> bool {
        // Wisp is binary only.
        let Message::Binary(frame) = msg else { return true };
        let peer = self.ctx.peer;
        let packet = match wisp::parse(frame) {
            Ok(p) => p,
            Err(e) => {
                // The spec defines no answer to a malformed packet and a v1 endpoint has no
                // error channel: drop it, keep the session. A CONNECT whose payload is
                // malformed is answered on its stream, as the spec asks of invalid CONNECTs.
                tracing::debug!(%peer, "wisp: dropped: {e}");
                if let ParseError::BadPayload {
                    kind: wisp::CONNECT,
                    id,
                    ..
                } = e
                {
                    if id != 0 && !self.streams.contains_key(&id) {
                        return self.out.binary(wisp::encode_close(id, reason::INVALID)).await;
                    }
                }
                return true;
            }
        };
        match packet {
            Packet::Connect {
                id,
                stream_type,
                port,
                host,
            } => self.connect(id, stream_type, port, &host, draining).await,
            Packet::Data { id, payload } => {
                let Some(s) = self.streams.get(&id) else {
                    // Unknown stream (never opened, or already closed while this was in
                    // flight): the spec defines no answer; dropped.
                    return true;
                };
                if s.credit.as_ref().is_some_and(|c| !Credit::lock(c).receive()) {
                    let why = "client sent beyond its credit";
                    tracing::info!(%peer, stream = id, "wisp: {why}: stream closed");
                    self.end_stream(id, End::new(reason::INVALID, why));
                } else {
                    // TCP: cannot be full while the credit invariant holds. UDP: a full queue
                    // drops the datagram.
                    let _ = s.tx.try_send(payload);
                }
                true
            }
            Packet::Close { id, .. } => {
                // The client ends the stream; it expects no CLOSE back.
                if let Some(s) = self.streams.remove(&id) {
                    drop(s.tx); // the task sees the end of its queue and ends quietly
                }
                true
            }
            // CONTINUE is server-to-client only: dropped.
            Packet::Continue { .. } => true,
        }
    }

    fn abort_all(&mut self) {
        for (_, s) in self.streams.drain() {
            s.abort.abort();
        }
    }
}

impl WispSession {
    /// A CONNECT: admitted (its task started) or refused with a CLOSE. False once the client
    /// is gone.
    async fn connect(&mut self, id: u32, stream_type: u8, port: u16, host: &str, draining: bool) -> bool {
        if id == 0 {
            // Stream 0 is the session itself.
            tracing::debug!(peer = %self.ctx.peer, "wisp: dropped CONNECT on stream 0");
            return true;
        }
        if let Some(old) = self.streams.remove(&id) {
            // The client reused a live id: both ends drop that stream.
            old.abort.abort();
            return self.out.binary(wisp::encode_close(id, reason::INVALID)).await;
        }
        let refusal = if draining {
            Some(End::new(reason::UNKNOWN, "server shutting down"))
        } else if self.streams.len() >= MAX_STREAMS {
            Some(End::new(
                reason::THROTTLED,
                format!("limit: streams per session ({MAX_STREAMS})"),
            ))
        } else {
            None
        };
        self.next_gen += 1;
        let p = StreamParams {
            id,
            gen: self.next_gen,
            udp: stream_type == wisp::STREAM_UDP,
            host: Host::Name(String::new()),
            target: format!("{host}:{port}"),
            port,
            cfg: self.ctx.cfg.clone(),
            identity: self.ctx.identity.clone(),
            client: self.ctx.peer,
            out: self.out.clone(),
            events: self.events.clone(),
            credit: None,
        };
        match open(p, stream_type, host, refusal).await {
            Ok(entry) => {
                self.streams.insert(id, entry);
                true
            }
            Err((p, end)) => {
                tracing::info!(identity = %p.identity.name, target = %p.target, "wisp: CONNECT refused: {}", end.msg);
                refuse_audit(&p, &end);
                self.out.binary(wisp::encode_close(id, end.reason)).await
            }
        }
    }

    /// Ends a live stream from the session's side: it leaves the table now, and its task
    /// stops, records `end` in the audit line and sends the CLOSE.
    fn end_stream(&mut self, id: u32, end: End) {
        if let Some(mut s) = self.streams.remove(&id) {
            if let Some(kill) = s.kill.take() {
                let _ = kill.send(end);
            }
        }
    }
}

/// Admits a CONNECT (type, host, limits) and starts its task, or says why not.
#[allow(clippy::result_large_err)]
async fn open(
    mut p: StreamParams,
    stream_type: u8,
    host: &str,
    refusal: Option<End>,
) -> Result<StreamEntry, (StreamParams, End)> {
    if let Some(end) = refusal {
        return Err((p, end));
    }
    if stream_type != wisp::STREAM_TCP && stream_type != wisp::STREAM_UDP {
        let end = End::new(reason::INVALID, format!("unknown stream type {stream_type:#04x}"));
        return Err((p, end));
    }
    if p.port == 0 {
        return Err((p, End::new(reason::INVALID, "port 0")));
    }
    if p.udp && !p.cfg.wisp_udp_ports.contains(&p.port) {
        let end = End::new(
            reason::BLOCKED,
            format!("{}: UDP port {} is not allowed", policy::REFUSED, p.port),
        );
        return Err((p, end));
    }
    match policy::parse_host(host) {
        Ok(h) => p.host = h,
        Err(e) => return Err((p, End::new(reason::INVALID, e))),
    }
    // Policy before limits (as in the other protocols): a denied target is never reported as
    // a limit and costs no slot.
    let udp_policy;
    let policy = if p.udp {
        udp_policy = udp_policy_of(&p.cfg);
        &udp_policy
    } else {
        &p.cfg.policy
    };
    if let Err(e) = policy::precheck(policy, &p.host, p.port) {
        return Err((p, End::new(reason::BLOCKED, e)));
    }
    let slot = match p.identity.try_open(&p.cfg.limits).await {
        Ok(s) => s,
        Err(e) => return Err((p, throttled(e))),
    };
    let (tx, rx) = mpsc::channel(BUFFER as usize);
    let credit = (!p.udp).then(|| {
        Arc::new(Mutex::new(Credit {
            queued: 0,
            allowed: BUFFER,
        }))
    });
    p.credit = credit.clone();
    let gen = p.gen;
    let (kill, killed) = oneshot::channel();
    let task = tokio::spawn(stream_task(p, rx, killed, slot));
    Ok(StreamEntry {
        gen,
        tx,
        credit,
        kill: Some(kill),
        abort: task.abort_handle(),
    })
}

/// The address policy of UDP streams: the TCP one with the UDP port allowlist.
fn udp_policy_of(cfg: &Config) -> Policy {
    Policy {
        ports: cfg.wisp_udp_ports.clone(),
        ..cfg.policy.clone()
    }
}

/// The audit line of a CONNECT refused before its task started.
fn refuse_audit(p: &StreamParams, end: &End) {
    let audit = Audit::new(p.identity.name.clone(), p.client, p.id, audit_target(p), false);
    audit.set_outcome(format!("error: {}", end.msg));
}

fn audit_target(p: &StreamParams) -> String {
    if p.udp {
        format!("udp:{}", p.target)
    } else {
        p.target.clone()
    }
}

/// Runs one stream until it ends, or until the session ends it through `killed` (a dropped
/// sender is no such order: the client closed the stream, and `rx` ends).
async fn stream_task(
    p: StreamParams,
    rx: mpsc::Receiver<Bytes>,
    killed: oneshot::Receiver<End>,
    slot: ConnSlot,
) {
    let audit = Audit::new(p.identity.name.clone(), p.client, p.id, audit_target(&p), false);
    let work = async {
        if p.udp {
            udp_stream(&p, &audit, rx).await
        } else {
            tcp_stream(&p, &audit, rx).await
        }
    };
    let result = tokio::select! {
        biased;
        Ok(end) = killed => Err(end),
        r = work => r,
    };
    let end = match result {
        Ok(()) => End::new(reason::VOLUNTARY, "closed"),
        Err(e) => e,
    };
    audit.set_outcome(if end.reason == reason::VOLUNTARY || end.silent {
        end.msg.clone()
    } else {
        format!("error: {}", end.msg)
    });
    // Free the connection slot before CLOSE reaches the client, so a client that opens again
    // on CLOSE finds the slot free; the session sends the CLOSE (`Finished`).
    drop(slot);
    let _ = p.events.send(Finished {
        id: p.id,
        gen: p.gen,
        close: (!end.silent).then_some(end.reason),
    });
}

/// Resolves under `policy` within the connect timeout.
async fn resolve(p: &StreamParams, policy: &Policy, deadline: Instant) -> Result<Vec<SocketAddr>, End> {
    let timeout = p.cfg.limits.connect_timeout.as_secs_f64();
    tokio::time::timeout_at(deadline, policy::resolve_checked(policy, &p.host, p.port))
        .await
        .map_err(|_| {
            End::new(
                reason::CONNECT_TIMEOUT,
                format!("limit: connect timeout ({timeout} s)"),
            )
        })?
        .map_err(End::from)
}

fn client_closed() -> End {
    End {
        reason: reason::VOLUNTARY,
        msg: "closed by the client".into(),
        silent: true,
    }
}

fn client_gone() -> End {
    End {
        reason: reason::NETWORK_ERROR,
        msg: "client gone".into(),
        silent: true,
    }
}

async fn tcp_stream(p: &StreamParams, audit: &Audit, mut rx: mpsc::Receiver<Bytes>) -> Result<(), End> {
    let limits = &p.cfg.limits;
    let deadline = Instant::now() + limits.connect_timeout;
    let addrs = resolve(p, &p.cfg.policy, deadline).await?;
    let mut last = End::new(reason::UNREACHABLE, "no address");
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(End::new(reason::CONNECT_TIMEOUT, "connect timed out")),
            Ok(Ok(s)) => {
                audit.set_resolved(addr);
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = io_end(&e),
        }
    }
    let tcp = tcp.ok_or(last)?;
    tcp.set_nodelay(true).ok();
    let (mut rd, mut wr) = tcp.into_split();
    let last_activity = Mutex::new(Instant::now());
    let touch = || *last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    let credit = p.credit.clone();

    let down = async {
        loop {
            let mut buf = BytesMut::with_capacity(wisp::HEADER + CHUNK);
            buf.resize(wisp::HEADER, 0);
            let n = (&mut rd)
                .take(CHUNK as u64)
                .read_buf(&mut buf)
                .await
                .map_err(|e| io_end(&e))?;
            if n == 0 {
                return Ok::<(), End>(());
            }
            p.identity.charge_bytes(n, limits).map_err(throttled)?;
            deliver(p, audit, buf, n).await?;
            touch();
        }
    };
    let up = async {
        while let Some(data) = rx.recv().await {
            let n = data.len();
            if n > 0 {
                p.identity.charge_bytes(n, limits).map_err(throttled)?;
                wr.write_all(&data).await.map_err(|e| io_end(&e))?;
                audit.add_up(n);
                touch();
            }
            let grant = credit.as_ref().and_then(|c| Credit::lock(c).written());
            if let Some(v) = grant {
                if !p.out.binary(wisp::encode_continue(p.id, v)).await {
                    return Err(client_gone());
                }
            }
        }
        Err::<(), End>(client_closed())
    };
    idle_guard(p, down, up, &last_activity).await
}

/// Sends the `n` bytes read into `buf` after its [`wisp::HEADER`] bytes of room as DATA.
async fn deliver(p: &StreamParams, audit: &Audit, mut buf: BytesMut, n: usize) -> Result<(), End> {
    wisp::fill_data_header(p.id, &mut buf);
    if !p.out.data(buf.freeze()).await {
        return Err(client_gone());
    }
    audit.add_down(n);
    Ok(())
}

/// Runs both directions until one ends, or until the stream is idle for the idle timeout
/// (`CLOSE 0x47`). The target's EOF ends the stream (Wisp v1 has no half-close).
async fn idle_guard<D, U>(p: &StreamParams, down: D, up: U, last: &Mutex<Instant>) -> Result<(), End>
where
    D: std::future::Future<Output = Result<(), End>>,
    U: std::future::Future<Output = Result<(), End>>,
{
    let idle = p.cfg.limits.idle_timeout;
    let last = || *last.lock().unwrap_or_else(|e| e.into_inner());
    tokio::pin!(down, up);
    loop {
        tokio::select! {
            r = &mut down => return r,
            r = &mut up => return r,
            _ = tokio::time::sleep_until(last() + idle) => {
                if last() + idle <= Instant::now() {
                    return Err(End::new(reason::TRANSFER_TIMEOUT, format!("limit: idle timeout ({} s)", idle.as_secs_f64())));
                }
            }
        }
    }
}

async fn udp_stream(p: &StreamParams, audit: &Audit, mut rx: mpsc::Receiver<Bytes>) -> Result<(), End> {
    let limits = &p.cfg.limits;
    let deadline = Instant::now() + limits.connect_timeout;
    let addrs = resolve(p, &udp_policy_of(&p.cfg), deadline).await?;
    let addr = *addrs
        .first()
        .ok_or_else(|| End::new(reason::UNREACHABLE, "no address"))?;
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await.map_err(|e| io_end(&e))?;
    sock.connect(addr).await.map_err(|e| io_end(&e))?;
    audit.set_resolved(addr);
    let last_activity = Mutex::new(Instant::now());
    let touch = || *last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    let sock = &sock;
    let down = async {
        loop {
            let mut buf = BytesMut::zeroed(wisp::HEADER + MAX_DATAGRAM);
            let n = sock
                .recv(&mut buf[wisp::HEADER..])
                .await
                .map_err(|e| io_end(&e))?;
            buf.truncate(wisp::HEADER + n);
            p.identity.charge_datagram(n, limits).map_err(throttled)?;
            deliver(p, audit, buf, n).await?;
            touch();
        }
    };
    let up = async {
        while let Some(data) = rx.recv().await {
            p.identity
                .charge_datagram(data.len(), limits)
                .map_err(throttled)?;
            sock.send(&data).await.map_err(|e| io_end(&e))?;
            audit.add_up(data.len());
            touch();
        }
        Err::<(), End>(client_closed())
    };
    idle_guard(p, down, up, &last_activity).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invariant `queued + allowed <= BUFFER` under any interleaving of arrivals
    /// (bounded by `allowed`), writes and CONTINUEs, and credit comes back before it is gone.
    #[test]
    fn credit_invariant() {
        let mut c = Credit {
            queued: 0,
            allowed: BUFFER,
        };
        // A client that always spends all it may, against a target that writes one packet
        // per step: the credit never runs dry.
        let mut grants = 0;
        for step in 0..1000u32 {
            if step % 3 != 0 {
                assert!(c.receive());
            }
            if c.queued > 0 && c.written().is_some() {
                grants += 1;
            }
            assert!(c.queued + c.allowed <= BUFFER);
        }
        assert!(grants > 0);
        // A stalled target: the client spends its credit and is refused after that.
        let mut c = Credit {
            queued: 0,
            allowed: BUFFER,
        };
        for _ in 0..BUFFER {
            assert!(c.receive());
        }
        assert!(!c.receive());
        assert_eq!(c.queued, BUFFER);
        // Draining half the buffer returns exactly that half.
        for _ in 0..BUFFER / 2 - 1 {
            assert_eq!(c.written(), None);
        }
        assert_eq!(c.written(), Some(BUFFER / 2));
        assert_eq!(c.queued + c.allowed, BUFFER);
    }

    #[test]
    fn endpoint_paths() {
        assert_eq!(endpoint("/wisp/"), Some(Ok(None)));
        assert_eq!(endpoint("/wisp/a.b.c/"), Some(Ok(Some("a.b.c".into()))));
        assert!(matches!(endpoint("/wisp"), Some(Err(_))));
        assert!(matches!(endpoint("/wisp/a.b.c"), Some(Err(_))));
        assert!(matches!(endpoint("/wisp/a/b/"), Some(Err(_))));
        assert!(matches!(endpoint("/wisp//"), Some(Err(_))));
        assert_eq!(endpoint("/"), None);
        assert_eq!(endpoint("/wispy/"), None);
    }

    #[test]
    fn close_reasons() {
        let r = |code| End::from(Failure::new(code, "x")).reason;
        assert_eq!(r(ErrorCode::Policy), reason::BLOCKED);
        assert_eq!(r(ErrorCode::Limit), reason::THROTTLED);
        assert_eq!(r(ErrorCode::Timeout), reason::CONNECT_TIMEOUT);
        assert_eq!(r(ErrorCode::Unreachable), reason::UNREACHABLE);
        assert_eq!(r(ErrorCode::Refused), reason::REFUSED);
        assert_eq!(r(ErrorCode::InvalidHost), reason::INVALID);
        assert_eq!(
            throttled("limit: bytes per minute (100)".into()).reason,
            reason::THROTTLED
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_end(&refused).reason, reason::REFUSED);
    }
}
