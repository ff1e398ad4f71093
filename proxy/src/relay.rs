//! One proxied connection: resolve and check (policy), connect (timeout), optional TLS,
//! then relay both directions with flow control, half-close, idle timeout and byte limits.
//! Every connection that entered the session's table ends with exactly one `closed`,
//! preceded by an `error` when it ended abnormally.

use crate::audit::Audit;
use crate::config::Config;
use crate::limits::{ConnSlot, Identity, Limits};
use crate::policy::{self, Host};
use crate::protocol::{self, Dialect, ErrorCode, Failure, BINARY_HEADER, WINDOW};
use crate::session::{ConnEvent, Out};
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;

/// Largest read from a target, i.e. the largest data message we send.
const CHUNK: usize = 64 * 1024;
/// Acks are coalesced up to this many bytes (a quarter of the window) ...
const ACK_BATCH: u64 = WINDOW / 4;
/// ... or sent this long after the first byte they cover was written.
const ACK_DELAY: Duration = Duration::from_millis(2);

/// Client-to-target commands, in order.
#[derive(Debug)]
pub enum Upstream {
    /// Client data to write to the target; `charged` when its bytes were already charged to
    /// the identity's byte budget (the rest of a partial [`forward`]).
    Data {
        bytes: Bytes,
        charged: bool,
    },
    /// The session wrote bytes to the target itself ([`forward`]) and counted them in the
    /// connection's [`DirectCount`]: the connection task takes the count and accounts for the
    /// bytes (audit, activity, acks). Sent only when the count starts from nothing outside an
    /// ack period, or crosses [`ACK_BATCH`] bytes: one wake-up per ack period, not per write.
    Written,
    Shutdown,
    Close,
}

/// The write half of a plain (not TLS) target socket, shared by a connection task and its
/// session once connected, so that the session can write client data to the target itself
/// ([`forward`]). Empty for TLS targets and until the connection is established.
pub type DirectWriter = Arc<std::sync::OnceLock<Arc<OwnedWriteHalf>>>;

/// Bytes the session wrote to a plain target itself ([`forward`]) that the connection task
/// has not accounted for yet (audit, activity, acks), with [`PERIOD_OPEN`] set while the
/// connection task has an ack period open (its ack timer armed, `lwproxy.v2` only): it takes
/// the count when the period ends, so the session need not wake it for each write.
pub type DirectCount = Arc<AtomicU64>;

/// The flag bit of a [`DirectCount`]; the other bits count bytes.
const PERIOD_OPEN: u64 = 1 << 63;

/// The bytes of a [`DirectCount`] value.
fn direct_bytes(v: u64) -> u64 {
    v & !PERIOD_OPEN
}

/// What the session holds of a connection's client-to-target path.
pub struct UpstreamPath<'a> {
    pub tx: &'a mpsc::UnboundedSender<Upstream>,
    /// Bytes handed to `tx` and not yet written to the target.
    pub queued: &'a AtomicU64,
    pub direct: &'a DirectWriter,
    pub written: &'a DirectCount,
}

/// Hands client data for one connection towards its target, in order. When nothing is queued
/// for the connection and its target socket is plain TCP, the calling task (the session)
/// charges the bytes and writes what the socket takes at once, without a hand-off to the
/// connection task (which accounts for them afterwards from the [`DirectCount`], woken by
/// [`Upstream::Written`] at most once an ack period or [`ACK_BATCH`] bytes); the rest, or
/// all of it otherwise, is queued for the connection task and counted in `queued`, which the
/// session's flow control and back-pressure read. Returns false when the connection is
/// ending (its task reports why).
pub fn forward(path: &UpstreamPath<'_>, data: Bytes, identity: &Identity, limits: &Limits) -> bool {
    let (mut data, mut charged) = (data, false);
    // The session runs on the connection task's thread (one runtime per core), and nothing
    // is queued, so the connection task is not writing: these bytes cannot overtake earlier
    // ones. A closed queue means the connection task has finished: nothing more reaches the
    // target. A byte budget that refuses them is left to the connection task to report.
    if let Some(w) = path.direct.get() {
        if path.queued.load(Ordering::Acquire) == 0
            && !path.tx.is_closed()
            && identity.charge_bytes(data.len(), limits).is_ok()
        {
            charged = true;
            // Any error (the socket is full, or failed) leaves the bytes to the connection
            // task, whose write waits for room or reports the failure.
            let n = w.try_write(&data).unwrap_or(0);
            if n > 0 {
                let prev = path.written.fetch_add(n as u64, Ordering::AcqRel);
                let before = direct_bytes(prev);
                let wake = prev == 0 || (before < ACK_BATCH && before + n as u64 >= ACK_BATCH);
                if wake && path.tx.send(Upstream::Written).is_err() {
                    return false;
                }
            }
            if n == data.len() {
                return true;
            }
            data = data.slice(n..);
        }
    }
    let len = data.len() as u64;
    path.queued.fetch_add(len, Ordering::AcqRel);
    if path.tx.send(Upstream::Data { bytes: data, charged }).is_err() {
        path.queued.fetch_sub(len, Ordering::AcqRel);
        return false;
    }
    true
}

/// The connection task's side of a [`DirectWriter`]: writes through the shared half.
struct SharedWrite(Arc<OwnedWriteHalf>);

impl AsyncWrite for SharedWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let tcp: &TcpStream = (*self.0).as_ref();
        loop {
            std::task::ready!(tcp.poll_write_ready(cx))?;
            // A stale readiness is cleared by try_write's WouldBlock: wait again.
            match tcp.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let tcp: &TcpStream = (*self.0).as_ref();
        Poll::Ready(socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write))
    }
}

/// Target-to-client credit (v2): at most `size` bytes sent and not yet acked.
#[derive(Debug)]
pub struct Window {
    credit: Semaphore,
    unacked: Mutex<u64>,
    enabled: bool,
    /// Bytes; grows (never shrinks) when the client raises it in an `ack`.
    size: AtomicU64,
}

impl Window {
    /// A window of `size` bytes (the one granted in `opened`); v1 has none.
    pub fn new(dialect: Dialect, size: u64) -> Self {
        Window {
            credit: Semaphore::new(
                usize::try_from(size)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            ),
            unacked: Mutex::new(0),
            enabled: dialect == Dialect::V2,
            size: AtomicU64::new(size),
        }
    }

    /// The window's size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// The client raises the window to `offer` bytes (`"window"` of an `ack`): granted as in
    /// `open` ([`protocol::grant_window`], at most `MAX_WINDOW`); a smaller offer changes
    /// nothing. Only the session's reader calls this.
    pub fn grow(&self, offer: u64) {
        let want = protocol::grant_window(Some(offer));
        let old = self.size.fetch_max(want, Ordering::Relaxed);
        if self.enabled && want > old {
            self.credit
                .add_permits(usize::try_from(want - old).unwrap_or(usize::MAX));
        }
    }

    /// Takes up to `max` bytes of credit (at least one) if there is some now, without waiting;
    /// `None` when the window is used up: the client holds a window's worth of bytes it has
    /// not acknowledged (or the window was closed, which [`Self::take`] reports).
    fn try_take(&self, max: usize) -> Option<usize> {
        if !self.enabled {
            return Some(max);
        }
        let n = self.credit.available_permits().min(max);
        let permits = self.credit.try_acquire_many(u32::try_from(n).ok()?).ok()?;
        permits.forget();
        (n > 0).then_some(n)
    }

    /// Waits for credit and takes up to `max` bytes of it.
    async fn take(&self, max: usize) -> Result<usize, String> {
        if !self.enabled {
            return Ok(max);
        }
        let first = self
            .credit
            .acquire()
            .await
            .map_err(|_| "window closed".to_string())?;
        first.forget();
        let extra = self.credit.available_permits().min(max - 1);
        if extra > 0 {
            if let Ok(p) = self.credit.try_acquire_many(extra as u32) {
                p.forget();
                return Ok(1 + extra);
            }
        }
        Ok(1)
    }

    /// Returns credit taken by `take` that was not used.
    fn give_back(&self, n: usize) {
        if self.enabled && n > 0 {
            self.credit.add_permits(n);
        }
    }

    fn sent(&self, n: usize) {
        if self.enabled {
            *self.unacked.lock().unwrap_or_else(|p| p.into_inner()) += n as u64;
        }
    }

    /// The client consumed `bytes`.
    pub fn ack(&self, bytes: u64) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let mut unacked = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        if bytes > *unacked {
            return Err(format!(
                "ack of {bytes} bytes exceeds the {} bytes unacknowledged",
                *unacked
            ));
        }
        *unacked -= bytes;
        self.credit.add_permits(bytes as usize);
        Ok(())
    }
}

pub struct ConnParams {
    pub id: u32,
    pub host: Host,
    pub host_text: String,
    pub port: u16,
    pub tls: bool,
    pub timeout_ms: Option<u64>,
    pub cfg: Arc<Config>,
    pub identity: Arc<Identity>,
    pub client: SocketAddr,
    pub dialect: Dialect,
    pub out: Out,
    pub events: mpsc::UnboundedSender<ConnEvent>,
    pub upstream: mpsc::UnboundedReceiver<Upstream>,
    pub queued: Arc<AtomicU64>,
    pub drained: Arc<Notify>,
    pub direct: DirectWriter,
    pub written: DirectCount,
    pub window: Arc<Window>,
    pub kill: watch::Receiver<Option<Failure>>,
    pub slot: ConnSlot,
}

/// Shared between the two directions of one connection (same task).
struct Shared<'a> {
    p: &'a ConnParams,
    audit: &'a Audit,
    last_activity: Mutex<Instant>,
    target_eof: AtomicBool,
    client_shut: AtomicBool,
    /// The connection waits on its client: data is being handed to it, or (`lwproxy.v2`) its
    /// window is used up, i.e. it holds bytes it has not acknowledged. Such a connection is
    /// not idle: a reader paused longer than the idle timeout (a pager, a suspended job) keeps
    /// its connection, as a TCP peer advertising a zero window does; a client that stops
    /// reading its WebSocket loses its session after the stall limit instead.
    awaiting_client: AtomicBool,
}

impl Shared<'_> {
    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
    fn last(&self) -> Instant {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// TCP keepalive on a client or target socket: a peer that vanished without a FIN or RST
/// (powered off, NAT state dropped) is noticed after about 60 s + 4 x 15 s instead of never.
pub fn set_keepalive(s: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&ka) {
        tracing::debug!("TCP keepalive not set: {e}");
    }
}

pub async fn run(mut p: ConnParams) {
    let target = format!("{}:{}", p.host_text, p.port);
    let audit = Audit::new(p.identity.name.clone(), p.client, p.id, target, p.tls);
    let mut kill = p.kill.clone();
    let mut upstream = std::mem::replace(&mut p.upstream, mpsc::unbounded_channel().1);
    let result = tokio::select! {
        r = connect_and_relay(&p, &audit, &mut upstream) => r,
        k = kill.wait_for(|k| k.is_some()) => Err(k.ok().and_then(|k| k.clone()).unwrap_or_else(gone)),
    };
    // Bytes the session wrote to the target itself that the relay, stopped, did not count.
    audit.add_up(direct_bytes(p.written.swap(0, Ordering::AcqRel)) as usize);
    match &result {
        Ok(()) => audit.set_outcome("closed"),
        Err(e) => audit.set_outcome(format!("error: {e}")),
    }
    // Unblock a session waiting for this connection's buffer (v1 back-pressure).
    drop(upstream);
    p.drained.notify_waiters();
    // Free the slot before `closed` reaches the client, so a client that opens again on
    // `closed` finds the slot free; the session writes the last messages (ConnEvent).
    drop(p.slot);
    let _ = p.events.send(ConnEvent::Finished {
        id: p.id,
        failure: result.err(),
    });
}

async fn connect_and_relay(
    p: &ConnParams,
    audit: &Audit,
    upstream: &mut mpsc::UnboundedReceiver<Upstream>,
) -> Result<(), Failure> {
    let limits = &p.cfg.limits;
    let timeout = match p.timeout_ms {
        Some(ms) => limits.connect_timeout.min(Duration::from_millis(ms)),
        None => limits.connect_timeout,
    };
    let secs = timeout.as_secs_f64();
    let deadline = Instant::now() + timeout;
    let timed_out = || {
        Failure::new(
            ErrorCode::Timeout,
            format!("limit: connect timeout ({secs} s): connect timed out"),
        )
    };

    let addrs = tokio::time::timeout_at(deadline, policy::resolve_checked(&p.cfg.policy, &p.host, p.port))
        .await
        .map_err(|_| timed_out())?
        .inspect_err(|e| tracing::info!(identity = %p.identity.name, target = %p.host_text, "{e}"))?;

    let mut last_err = Failure::new(ErrorCode::Unreachable, "no address");
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(s)) => {
                set_keepalive(&s);
                audit.set_resolved(addr);
                tcp = Some((s, addr));
                break;
            }
            Ok(Err(e)) => last_err = io_failure(&e),
        }
    }
    let (tcp, addr) = tcp.ok_or(last_err)?;
    tcp.set_nodelay(true).ok();

    if p.tls {
        let name = crate::tls::server_name(&p.host).map_err(|m| Failure::new(ErrorCode::Tls, m))?;
        let connector = tokio_rustls::TlsConnector::from(p.cfg.tls_client.clone());
        let stream = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| {
                Failure::new(
                    ErrorCode::Tls,
                    format!("tls: handshake with {} failed: {e}", p.host_text),
                )
            })?;
        announce(p, addr).await?;
        let (rd, wr) = tokio::io::split(stream);
        relay(rd, wr, p, audit, upstream).await
    } else {
        announce(p, addr).await?;
        // Owned halves of a plain socket: no lock between the directions on each poll; the
        // write half is shared with the session (DirectWriter).
        let (rd, wr) = tcp.into_split();
        let wr = Arc::new(wr);
        // Set once, here: a connection is announced and relayed once.
        let _ = p.direct.set(wr.clone());
        relay(rd, SharedWrite(wr), p, audit, upstream).await
    }
}

async fn announce(p: &ConnParams, addr: SocketAddr) -> Result<(), Failure> {
    let addr = addr.to_string();
    let extra = (p.dialect == Dialect::V2).then_some((addr.as_str(), p.window.size()));
    if p.out.text(protocol::opened(p.id, extra)).await {
        Ok(())
    } else {
        Err(gone())
    }
}

/// The client went away: ends the connection; never sent (there is no one to send it to).
fn gone() -> Failure {
    Failure::new(ErrorCode::Io, "client gone")
}

/// A limit hit (the text names the limit).
fn limit(msg: String) -> Failure {
    Failure::new(ErrorCode::Limit, msg)
}

/// The code and text of an I/O error on a target socket (every protocol classifies them here).
pub(crate) fn io_failure(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Failure::new(ErrorCode::Refused, "connection refused"),
        HostUnreachable | NetworkUnreachable => {
            Failure::new(ErrorCode::Unreachable, format!("unreachable: {e}"))
        }
        ConnectionReset | ConnectionAborted | BrokenPipe => {
            Failure::new(ErrorCode::Reset, "connection reset by the target")
        }
        TimedOut => Failure::new(ErrorCode::Timeout, "connection timed out"),
        _ => Failure::new(ErrorCode::Io, format!("i/o error: {e}")),
    }
}

async fn relay<R, W>(
    mut rd: R,
    mut wr: W,
    p: &ConnParams,
    audit: &Audit,
    upstream: &mut mpsc::UnboundedReceiver<Upstream>,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let sh = Shared {
        p,
        audit,
        last_activity: Mutex::new(Instant::now()),
        target_eof: AtomicBool::new(false),
        client_shut: AtomicBool::new(false),
        awaiting_client: AtomicBool::new(false),
    };
    let idle = p.cfg.limits.idle_timeout;
    let down = downstream(&mut rd, &sh);
    let up = upstream_loop(&mut wr, &sh, upstream);
    tokio::pin!(down, up);
    let mut down_done = false;
    loop {
        let idle_at = sh.last() + idle;
        tokio::select! {
            r = &mut down, if !down_done => {
                r?;
                down_done = true;
                if p.dialect == Dialect::V1 {
                    return Ok(()); // v1 has no half-close: EOF ends it
                }
                sh.target_eof.store(true, Ordering::Release);
                if !p.out.text(protocol::eof(p.id)).await {
                    return Err(gone());
                }
                if sh.client_shut.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
            r = &mut up => return r,
            _ = tokio::time::sleep_until(idle_at) => {
                if sh.awaiting_client.load(Ordering::Acquire) {
                    sh.touch();
                } else if sh.last() + idle <= Instant::now() {
                    return Err(Failure::new(
                        ErrorCode::Timeout,
                        format!("limit: idle timeout ({} s): connection timed out", idle.as_secs_f64()),
                    ));
                }
            }
        }
    }
}

/// Target to client. Returns Ok on the target's EOF.
async fn downstream<R: AsyncRead + Unpin>(rd: &mut R, sh: &Shared<'_>) -> Result<(), Failure> {
    let p = sh.p;
    let limits = &p.cfg.limits;
    let headroom = if p.dialect == Dialect::V2 {
        BINARY_HEADER
    } else {
        0
    };
    // The connection's read buffer (at most CHUNK + headroom bytes), never zero-filled:
    // capacity a read did not use is not resident. A v2 frame is split off it and sent;
    // once the frame is gone (written, or copied into the WebSocket's buffer) the next
    // `reserve` takes the same memory back instead of allocating; only a frame still waiting
    // in the session's queue makes it allocate a new one.
    let mut buf = BytesMut::new();
    loop {
        // Waiting for window credit is waiting on the client, not idleness (see `Shared`).
        let budget = match p.window.try_take(CHUNK) {
            Some(b) => b,
            None => {
                sh.awaiting_client.store(true, Ordering::Release);
                let b = p.window.take(CHUNK).await;
                sh.awaiting_client.store(false, Ordering::Release);
                sh.touch();
                b.map_err(|_| gone())?
            }
        };
        buf.clear();
        buf.reserve(headroom + budget);
        buf.resize(headroom, 0);
        let n = match (&mut *rd).take(budget as u64).read_buf(&mut buf).await {
            Ok(n) => n,
            // A TLS target that closes without close_notify (common on the web): rustls reports
            // UnexpectedEof. Treat it as the end of stream, as browsers and curl do, so the bytes
            // already relayed stay a complete response; HTTP framing catches real truncation.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io_failure(&e)),
        };
        p.window.give_back(budget - n);
        if n == 0 {
            return Ok(());
        }
        p.identity.charge_bytes(n, limits).map_err(limit)?;
        sh.awaiting_client.store(true, Ordering::Release);
        let delivered = if p.dialect == Dialect::V2 {
            protocol::fill_binary_header(p.id, &mut buf);
            p.window.sent(n);
            p.out.data(buf.split().freeze()).await
        } else {
            p.out.text(protocol::data_json(p.id, &buf)).await
        };
        sh.awaiting_client.store(false, Ordering::Release);
        if !delivered {
            return Err(gone());
        }
        sh.audit.add_down(n);
        sh.touch();
    }
}

/// Client to target. Returns Ok when the client closed the connection (or, after both
/// half-closes, when the target had already finished), or the session dropped it.
async fn upstream_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    sh: &Shared<'_>,
    rx: &mut mpsc::UnboundedReceiver<Upstream>,
) -> Result<(), Failure> {
    let p = sh.p;
    let v2 = p.dialect == Dialect::V2;
    let mut unacked: u64 = 0;
    // Acks are coalesced: one per ACK_BATCH bytes, and one when the ack period ends, ACK_DELAY
    // after the first byte it covers was written. A client never waits on them before a
    // quarter of its window is in flight, so small writes (interactive traffic) do not cost an
    // extra message each. One timer, armed only when a period starts, keeps the per-message
    // cost nil; while a period is open the session counts its own writes without waking this
    // task ([`DirectCount`]), and the period's end takes them.
    let mut period = false;
    let ack_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(ack_timer);
    loop {
        let cmd = tokio::select! {
            biased;
            cmd = rx.recv() => cmd,
            _ = &mut ack_timer, if period => {
                period = false;
                let n = direct_bytes(p.written.swap(0, Ordering::AcqRel));
                if n > 0 {
                    sh.audit.add_up(n as usize);
                    sh.touch();
                }
                unacked += n;
                if unacked > 0 && !p.out.text(protocol::ack(p.id, unacked)).await {
                    return Err(gone());
                }
                unacked = 0;
                continue;
            }
        };
        let Some(cmd) = cmd else { return Ok(()) };
        let n = match cmd {
            Upstream::Data { bytes, charged } => {
                let n = bytes.len();
                if !charged {
                    p.identity.charge_bytes(n, &p.cfg.limits).map_err(limit)?;
                }
                wr.write_all(&bytes).await.map_err(|e| io_failure(&e))?;
                p.queued.fetch_sub(n as u64, Ordering::AcqRel);
                p.drained.notify_waiters();
                n as u64
            }
            Upstream::Written => {
                // The period opens (v2), so the session's next writes only count.
                let keep = if v2 { PERIOD_OPEN } else { 0 };
                direct_bytes(p.written.swap(keep, Ordering::AcqRel))
            }
            Upstream::Shutdown => {
                wr.shutdown().await.map_err(|e| io_failure(&e))?;
                sh.client_shut.store(true, Ordering::Release);
                if sh.target_eof.load(Ordering::Acquire) {
                    return Ok(());
                }
                continue;
            }
            Upstream::Close => return Ok(()),
        };
        sh.audit.add_up(n as usize);
        sh.touch();
        if v2 {
            if !period {
                period = true;
                p.written.fetch_or(PERIOD_OPEN, Ordering::AcqRel);
                ack_timer.as_mut().reset(Instant::now() + ACK_DELAY);
            }
            unacked += n;
            if unacked >= ACK_BATCH {
                if !p.out.text(protocol::ack(p.id, unacked)).await {
                    return Err(gone());
                }
                unacked = 0;
            }
        }
    }
}
