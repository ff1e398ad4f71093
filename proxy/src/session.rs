//! One WebSocket session: reads client messages, keeps the table of connections, and
//! multiplexes their output onto the WebSocket ([`Out`]: written by the sending task when
//! uncontended, else through a short queue and one writer task). Nothing a client sends can end the
//! session except closing it; bad input gets an `error` and the session carries on.

use crate::config::Config;
use crate::frames::{self, DataSink, FrameIo};
use crate::limits::Identity;
use crate::policy;
use crate::protocol::{self, ClientMsg, Dialect, ErrorCode, Failure, WINDOW};
use crate::relay::{self, ConnParams, DirectCount, DirectWriter, Upstream, UpstreamPath, Window};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Messages queued towards the client. Small: with data messages of at most 64 KiB (+base64)
/// this bounds a session's outgoing buffer at about 1.5 MiB however slow its reader is.
const OUT_QUEUE: usize = 16;

pub struct SessionCtx {
    pub cfg: Arc<Config>,
    pub identity: Arc<Identity>,
    pub peer: SocketAddr,
    pub dialect: Dialect,
    pub shutdown: watch::Receiver<bool>,
    /// Counted by the server to know when all sessions have drained.
    pub _live: Arc<()>,
    /// The session's places (global `--max-sessions`, per identity), freed when it ends.
    pub _slots: (tokio::sync::OwnedSemaphorePermit, crate::limits::SessionSlot),
}

/// What a connection task tells its session.
pub enum ConnEvent {
    /// Connection `id` ended, with `failure` when it ended abnormally. The session leaves the
    /// table first and then writes the `error` (if any) and `closed`, so a client that opens
    /// again on `closed` finds the id free, and a draining session never closes before the
    /// last `closed` is written.
    Finished { id: u32, failure: Option<Failure> },
}

struct ConnEntry {
    tx: mpsc::UnboundedSender<Upstream>,
    /// Bytes handed to `tx` and not yet written to the target.
    queued: Arc<AtomicU64>,
    drained: Arc<Notify>,
    /// The target socket's write half, once connected (plain TCP only).
    direct: DirectWriter,
    /// Bytes the session wrote through `direct` not yet accounted by the connection task.
    written: DirectCount,
    window: Arc<Window>,
    kill: watch::Sender<Option<Failure>>,
    /// The client closed it: no more writes; `closed` will follow.
    closing: bool,
    /// The client half-closed it: no more writes.
    shut: bool,
    abort: AbortHandle,
}

/// The client's WebSocket sink, type-erased so that [`Out`] does not depend on the transport.
type WsSink = Pin<Box<dyn DataSink + Send>>;

/// A message towards the client.
enum OutMsg {
    /// Written by tungstenite.
    Ws(Message),
    /// A binary data message, written as a frame of its own ([`DataSink::poll_data`]).
    Data(bytes::Bytes),
}

/// The client's WebSocket sink and how long it has been blocked.
struct SinkSlot {
    /// `None` once writing failed or stalled.
    sink: Option<WsSink>,
    /// Since when a write has been waiting on the client, if one is: a write cancelled midway
    /// (its task ended) leaves it set, so the next write does not restart the stall clock.
    blocked_since: Option<Instant>,
}

/// What the senders of a session and its writer task share.
struct OutShared {
    sink: tokio::sync::Mutex<SinkSlot>,
    /// Messages taken from the queue's capacity and not yet fed to the sink. A message may
    /// bypass the queue only when this is zero, checked under the sink's lock, so the
    /// messages of a session reach the client in the order they were sent.
    pending: AtomicUsize,
    /// A client that stops reading for this long loses its session.
    stall_limit: Duration,
    peer: SocketAddr,
    /// Notified when writing failed or stalled: the writer task ends, and with it the session.
    failed: Notify,
}

impl OutShared {
    /// Feeds `first` and whatever `next` yields to the sink (under its lock), then flushes
    /// them in one go, within the stall limit. A data message's frame is written whole by
    /// itself, after flushing what tungstenite holds (pongs among it), so a batch of data
    /// messages alone needs no flush after it (each frame flushes the socket itself, so a TLS
    /// stream sends its records at once). On failure the sink is dropped and the writer
    /// task told; false then.
    async fn write(
        &self,
        slot: &mut SinkSlot,
        first: OutMsg,
        mut next: impl FnMut() -> Option<OutMsg>,
    ) -> bool {
        let Some(sink) = slot.sink.as_mut() else {
            return false;
        };
        let batch = async {
            let mut msg = Some(first);
            let mut fed = false;
            while let Some(m) = msg.take() {
                match m {
                    OutMsg::Data(b) => {
                        let mut data = Some(b);
                        std::future::poll_fn(|cx| sink.as_mut().poll_data(cx, &mut data)).await?;
                    }
                    OutMsg::Ws(m) => {
                        fed = true;
                        let is_close = matches!(m, Message::Close(_));
                        sink.feed(m).await?;
                        if is_close {
                            break;
                        }
                    }
                }
                msg = next();
            }
            if fed {
                sink.flush().await
            } else {
                Ok(())
            }
        };
        let result = {
            tokio::pin!(batch);
            // Most batches are written at once (the socket has room): those need no clock
            // read and no timer. One that waits is bounded by the stall limit, counted from
            // when a write first waited (`blocked_since`).
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(batch.as_mut(), cx))
            })
            .await;
            match first {
                std::task::Poll::Ready(r) => Ok(r),
                std::task::Poll::Pending => {
                    let since = *slot.blocked_since.get_or_insert_with(Instant::now);
                    tokio::time::timeout_at(since + self.stall_limit, batch).await
                }
            }
        };
        match result {
            Ok(Ok(())) => {
                slot.blocked_since = None;
                return true;
            }
            Ok(Err(e)) => tracing::debug!(peer = %self.peer, "session write: {e}"),
            Err(_) => {
                let (peer, limit) = (self.peer, self.stall_limit);
                tracing::info!(%peer, "client stopped reading for {limit:?}: session closed");
            }
        }
        slot.sink = None;
        self.failed.notify_one();
        false
    }
}

/// Sends to the client; `false` once the client is gone. A message is written to the
/// WebSocket by the sending task itself when nothing is queued and no one else is writing
/// (no hand-off between tasks on the hot path); otherwise it waits in the session's queue
/// of [`Protocol::OUT_QUEUE`] messages, which the writer task ([`spawn_writer`]) drains.
#[derive(Clone)]
pub struct Out {
    queue: mpsc::Sender<OutMsg>,
    shared: Arc<OutShared>,
}

impl Out {
    /// Sends one message, directly or through the queue (see [`Out`]).
    pub async fn send(&self, msg: Message) -> bool {
        self.put(OutMsg::Ws(msg)).await
    }

    /// Sends one binary data message (the relay's hot path: its frame is written straight to
    /// the socket, without a copy into tungstenite's buffer; see [`frames`]), directly or
    /// through the queue (see [`Out`]).
    pub async fn data(&self, b: bytes::Bytes) -> bool {
        self.put(OutMsg::Data(b)).await
    }

    async fn put(&self, msg: OutMsg) -> bool {
        let s = &*self.shared;
        if s.pending.load(Ordering::Acquire) == 0 {
            if let Ok(mut slot) = s.sink.try_lock() {
                if s.pending.load(Ordering::Acquire) == 0 {
                    return s.write(&mut slot, msg, || None).await;
                }
            }
        }
        // Counted once it holds a place in the queue, and sent at once (no await between):
        // a sender cancelled while waiting for room leaves no count behind.
        let Ok(permit) = self.queue.reserve().await else {
            return false;
        };
        s.pending.fetch_add(1, Ordering::AcqRel);
        permit.send(msg);
        true
    }
    pub async fn text(&self, s: String) -> bool {
        self.send(Message::Text(s.into())).await
    }
    pub async fn binary(&self, b: bytes::Bytes) -> bool {
        self.send(Message::Binary(b)).await
    }
    pub async fn error(&self, id: Option<u32>, code: ErrorCode, msg: &str) -> bool {
        self.text(protocol::error(id, code, msg)).await
    }
    pub async fn failure(&self, id: u32, f: &Failure) -> bool {
        self.error(Some(id), f.code, &f.msg).await
    }
    /// An `error` with [`ErrorCode::Protocol`] about connection `id`.
    pub async fn protocol_error(&self, id: u32, msg: &str) -> bool {
        self.error(Some(id), ErrorCode::Protocol, msg).await
    }
}

/// The sending side of a session's WebSocket ([`Out`]) and the task that writes what is
/// queued, batching whatever is queued into one flush (used by every protocol). A client that
/// stops reading for longer than `stall_limit` loses its session, so a stuck peer cannot pin
/// resources. The task ends when every [`Out`] is gone (after closing the WebSocket), when
/// the client is, or when a write failed or stalled.
pub fn spawn_writer<W>(
    sink: W,
    queue_len: usize,
    stall_limit: Duration,
    peer: SocketAddr,
) -> (Out, JoinHandle<()>)
where
    W: DataSink + Send + 'static,
{
    let (queue, mut out_rx) = mpsc::channel::<OutMsg>(queue_len);
    let shared = Arc::new(OutShared {
        sink: tokio::sync::Mutex::new(SinkSlot {
            sink: Some(Box::pin(sink)),
            blocked_since: None,
        }),
        pending: AtomicUsize::new(0),
        stall_limit,
        peer,
        failed: Notify::new(),
    });
    let s = shared.clone();
    let task = tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                m = out_rx.recv() => m,
                _ = s.failed.notified() => return,
            };
            let Some(first) = first else { break };
            let mut slot = s.sink.lock().await;
            s.pending.fetch_sub(1, Ordering::AcqRel);
            let next = || {
                let m = out_rx.try_recv().ok()?;
                s.pending.fetch_sub(1, Ordering::AcqRel);
                Some(m)
            };
            if !s.write(&mut slot, first, next).await {
                return;
            }
        }
        if let Some(sink) = s.sink.lock().await.sink.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
        }
    });
    (Out { queue, shared }, task)
}

/// Session liveness, the same for every protocol: a ping after `--ping-interval` of silence
/// from the client, answered within `--pong-timeout` (any message counts as an answer); and a
/// session with no connection that sends nothing for the idle timeout is closed.
pub struct Liveness {
    ping_interval: Duration,
    pong_timeout: Duration,
    idle_limit: Duration,
    heard: Instant,
    idle_since: Instant,
    pong_due: Option<Instant>,
}

impl Liveness {
    pub fn new(cfg: &Config) -> Self {
        Liveness {
            ping_interval: cfg.ping_interval,
            pong_timeout: cfg.pong_timeout,
            idle_limit: cfg.limits.idle_timeout,
            heard: Instant::now(),
            idle_since: Instant::now(),
            pong_due: None,
        }
    }

    /// When [`Self::fire`] is next due.
    pub fn deadline(&self, has_conns: bool) -> Instant {
        let timer = self.pong_due.unwrap_or(self.heard + self.ping_interval);
        if has_conns {
            timer
        } else {
            timer.min(self.idle_since + self.idle_limit)
        }
    }

    /// A message arrived from the client.
    pub fn heard(&mut self, msg: &Message) {
        self.heard = Instant::now();
        self.pong_due = None;
        if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
            self.idle_since = self.heard;
        }
    }

    /// The session's last connection ended: the idle clock starts.
    pub fn conns_gone(&mut self) {
        self.idle_since = Instant::now();
    }

    /// The timer fired (at or before [`Self::deadline`]): pings, or closes an idle session,
    /// when that is due; nothing otherwise. False when the session ends.
    pub async fn fire(&mut self, has_conns: bool, out: &Out, peer: SocketAddr) -> bool {
        let now = Instant::now();
        if !has_conns && now >= self.idle_since + self.idle_limit {
            tracing::info!(%peer, "session idle for {:?} without a connection: closed", self.idle_limit);
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "idle session".into(),
            };
            let _ = out.send(Message::Close(Some(frame))).await;
            return false;
        }
        match self.pong_due {
            Some(due) if now >= due => {
                tracing::info!(%peer, "no answer to a ping within {:?}: session closed", self.pong_timeout);
                false
            }
            None if now >= self.heard + self.ping_interval => {
                self.pong_due = Some(now + self.pong_timeout);
                out.send(Message::Ping(bytes::Bytes::new())).await
            }
            _ => true,
        }
    }
}

/// The WebSocket close a draining server sends once a session has no connections left.
pub fn going_away() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    }))
}

/// One protocol's half of a session: its table of streams and what its frames mean. The
/// driver ([`drive`]) owns everything the protocols share: the writer task, liveness, the
/// drain on shutdown, the message-size limit and the end of the session.
pub trait Protocol: Send + Sized {
    /// What a stream task reports to the session when it ends.
    type Event: Send + 'static;
    /// Messages queued towards the client (bounds a session's outgoing buffer with a slow
    /// reader).
    const OUT_QUEUE: usize;

    /// The protocol's state for a new session; `out` reaches the client, `events` the driver.
    fn new(ctx: Arc<SessionCtx>, out: Out, events: mpsc::UnboundedSender<Self::Event>) -> Self;

    /// What the server sends first (Wisp: the CONTINUE on stream 0); false once the client
    /// is gone.
    fn start(&mut self) -> impl std::future::Future<Output = bool> + Send {
        async { true }
    }

    /// A stream task ended: the protocol drops it from its table, then writes the stream's
    /// last messages to the client. False once the client is gone.
    fn finished(&mut self, ev: Self::Event) -> impl std::future::Future<Output = bool> + Send;

    /// Whether any stream is open (an open stream keeps a quiet session alive, and a
    /// draining server waits for them).
    fn has_streams(&self) -> bool;

    /// A text or binary message longer than `--max-message`: its data cannot be delivered,
    /// so the stream it names ends with `why` rather than going on with a gap. False once the
    /// client is gone.
    fn oversized(&mut self, msg: &Message, why: Failure) -> impl std::future::Future<Output = bool> + Send;

    /// A text or binary message within the size limit. False once the client is gone.
    fn message(&mut self, msg: Message, draining: bool) -> impl std::future::Future<Output = bool> + Send;

    /// The session ends: every stream task is stopped.
    fn abort_all(&mut self);
}

/// What woke a session's loop.
enum Step<E> {
    Finished(E),
    Timer,
    Read(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// Runs a session of protocol `P` until the client leaves, stops reading, fails liveness,
/// or the server drains and no stream is left.
pub async fn drive<P: Protocol, S>(ws: WebSocketStream<FrameIo<S>>, ctx: SessionCtx)
where
    S: AsyncRead + AsyncWrite + frames::ReadReady + Unpin + Send + 'static,
{
    let (mut stream, sink) = frames::split(ws);
    let (out, mut writer) = spawn_writer(sink, P::OUT_QUEUE, ctx.cfg.limits.idle_timeout, ctx.peer);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<P::Event>();
    let ctx = Arc::new(ctx);
    let mut proto = P::new(ctx.clone(), out.clone(), ev_tx);
    let mut shutdown = ctx.shutdown.clone();
    let mut draining = *shutdown.borrow();
    // The drain signal (or the server gone), as one future for the session's life: made anew
    // in each turn of the loop, it took the watch's lock and joined and left its waiter list
    // for every message the session read.
    let drain = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(drain);
    let max_message = ctx.cfg.limits.max_message;
    let mut live = Liveness::new(&ctx.cfg);
    // One timer for the session's life, armed at or before the liveness deadline: moved
    // earlier when the deadline is, and left early when a message moves it later (it then
    // fires, finds nothing due and is re-armed), so a message costs no timer update.
    let timer = tokio::time::sleep_until(live.deadline(false));
    tokio::pin!(timer);

    let mut alive = proto.start().await;
    while alive {
        let had_streams = proto.has_streams();
        if draining && !had_streams {
            let _ = out.send(going_away()).await;
            break;
        }
        let due = live.deadline(had_streams);
        if due < timer.deadline() {
            timer.as_mut().reset(due);
        }
        let step = tokio::select! {
            biased;
            Some(ev) = ev_rx.recv() => Step::Finished(ev),
            _ = &mut timer => Step::Timer,
            _ = &mut drain, if !draining => {
                draining = true;
                continue;
            }
            _ = &mut writer => break, // the client went away
            m = stream.next() => Step::Read(m),
        };
        // The awaited work is done outside `select!`, whose state may not live across awaits.
        let msg = match step {
            Step::Finished(ev) => {
                alive = proto.finished(ev).await;
                if had_streams && !proto.has_streams() {
                    live.conns_gone();
                }
                continue;
            }
            Step::Timer => {
                alive = live.fire(had_streams, &out, ctx.peer).await;
                timer.as_mut().reset(live.deadline(proto.has_streams()));
                continue;
            }
            Step::Read(m) => m,
        };
        let msg = match msg {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(peer = %ctx.peer, "session read: {e}");
                break;
            }
            Some(Ok(m)) => m,
        };
        live.heard(&msg);
        alive = match msg {
            Message::Close(_) => false,
            // Pings are answered by tungstenite itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => true,
            m if m.len() > max_message => {
                let why = Failure::new(
                    ErrorCode::Limit,
                    format!("limit: message size ({max_message} bytes)"),
                );
                proto.oversized(&m, why).await
            }
            m => proto.message(m, draining).await,
        };
        if had_streams && !proto.has_streams() {
            live.conns_gone();
        }
    }
    proto.abort_all();
    drop(proto);
    drop(out);
    // Let the writer flush the close frame, but do not wait on a client that stopped reading.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    tracing::debug!(peer = %ctx.peer, "session end");
}

/// The lwproxy protocols (v1 and `lwproxy.v2`): the connection table of one session.
pub struct LwSession {
    ctx: Arc<SessionCtx>,
    out: Out,
    events: mpsc::UnboundedSender<ConnEvent>,
    conns: HashMap<u32, ConnEntry>,
}

impl Protocol for LwSession {
    type Event = ConnEvent;
    const OUT_QUEUE: usize = OUT_QUEUE;

    fn new(ctx: Arc<SessionCtx>, out: Out, events: mpsc::UnboundedSender<ConnEvent>) -> Self {
        let conns = HashMap::new();
        LwSession {
            ctx,
            out,
            events,
            conns,
        }
    }

    async fn finished(&mut self, ConnEvent::Finished { id, failure }: ConnEvent) -> bool {
        self.conns.remove(&id);
        if let Some(f) = &failure {
            if !self.out.failure(id, f).await {
                return false;
            }
        }
        self.out.text(protocol::closed(id)).await
    }

    fn has_streams(&self) -> bool {
        !self.conns.is_empty()
    }

    async fn oversized(&mut self, msg: &Message, why: Failure) -> bool {
        let id = match msg {
            Message::Text(t) => text_id(t.as_str()),
            Message::Binary(b) => protocol::split_binary(b).map(|(id, _)| id),
            _ => None,
        };
        // The connection ends with `error` (the id), then `closed`.
        match id.and_then(|id| self.conns.get_mut(&id)) {
            Some(c) if !c.closing => {
                c.closing = true;
                let _ = c.kill.send(Some(why));
                true
            }
            _ => self.out.error(id, why.code, &why.msg).await,
        }
    }

    async fn message(&mut self, msg: Message, draining: bool) -> bool {
        let parsed = match msg {
            Message::Text(t) => protocol::parse_text(t.as_str(), self.ctx.dialect),
            Message::Binary(b) => protocol::parse_binary(b, self.ctx.dialect),
            _ => return true,
        };
        match parsed {
            Err(e) => self.out.error(e.id, e.code, &e.msg).await,
            Ok(m) => self.handle(m, draining).await,
        }
    }

    fn abort_all(&mut self) {
        for (_, c) in self.conns.drain() {
            c.abort.abort();
        }
    }
}

/// The `id` of a JSON message, read without building the rest (for an oversized `write`).
fn text_id(text: &str) -> Option<u32> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<u32>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|m| m.id)
}

impl LwSession {
    /// Handles one valid message; returns false when the client is gone.
    async fn handle(&mut self, msg: ClientMsg, draining: bool) -> bool {
        let LwSession {
            ctx,
            out,
            events: ev_tx,
            conns,
        } = self;
        let SessionCtx {
            cfg,
            identity,
            peer,
            dialect,
            ..
        } = &**ctx;
        let (peer, dialect) = (*peer, *dialect);
        match msg {
            ClientMsg::Open {
                id,
                host,
                port,
                tls,
                timeout_ms,
                window,
            } => {
                if draining {
                    return out
                        .error(
                            Some(id),
                            ErrorCode::Unavailable,
                            "server shutting down: no new connections",
                        )
                        .await;
                }
                if conns.contains_key(&id) {
                    return out
                        .protocol_error(id, &format!("duplicate id {id}: that connection is still open"))
                        .await;
                }
                let host_parsed = match policy::parse_host(&host) {
                    Ok(h) => h,
                    Err(e) => return out.error(Some(id), ErrorCode::InvalidHost, &e).await,
                };
                // Policy before limits (see the policy module's notes on the order).
                if let Err(e) = policy::precheck(&cfg.policy, &host_parsed, port) {
                    tracing::info!(identity = %identity.name, target = %host, "{e}");
                    let audit = crate::audit::Audit::new(
                        identity.name.clone(),
                        peer,
                        id,
                        format!("{host}:{port}"),
                        tls,
                    );
                    audit.set_outcome(format!("error: {e}"));
                    drop(audit);
                    // As for a denial found after the lookup: `error`, then `closed`.
                    return out.error(Some(id), ErrorCode::Policy, &e).await
                        && out.text(protocol::closed(id)).await;
                }
                let slot = match identity.try_open(&cfg.limits).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::info!(identity = %identity.name, "{e}");
                        return out.error(Some(id), ErrorCode::Limit, &e).await;
                    }
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let queued = Arc::new(AtomicU64::new(0));
                let drained = Arc::new(Notify::new());
                let direct = DirectWriter::default();
                let written = DirectCount::default();
                let window = Arc::new(Window::new(dialect, protocol::grant_window(window)));
                let (kill, kill_rx) = watch::channel(None);
                let params = ConnParams {
                    id,
                    host: host_parsed,
                    host_text: host,
                    port,
                    tls,
                    timeout_ms,
                    cfg: cfg.clone(),
                    identity: identity.clone(),
                    client: peer,
                    dialect,
                    out: out.clone(),
                    events: ev_tx.clone(),
                    upstream: rx,
                    queued: queued.clone(),
                    drained: drained.clone(),
                    direct: direct.clone(),
                    written: written.clone(),
                    window: window.clone(),
                    kill: kill_rx,
                    slot,
                };
                let task = tokio::spawn(relay::run(params));
                conns.insert(
                    id,
                    ConnEntry {
                        tx,
                        queued,
                        drained,
                        direct,
                        written,
                        window,
                        kill,
                        closing: false,
                        shut: false,
                        abort: task.abort_handle(),
                    },
                );
                true
            }
            ClientMsg::Write { id, data } => {
                let Some(c) = conns.get_mut(&id) else {
                    return out
                        .protocol_error(id, &format!("write to unknown connection id {id}"))
                        .await;
                };
                if c.closing || c.shut {
                    return out
                        .protocol_error(
                            id,
                            &format!("write to connection {id}, which is closed for writing"),
                        )
                        .await;
                }
                if data.is_empty() {
                    return true;
                }
                let len = data.len() as u64;
                let queued = c.queued.load(Ordering::Acquire);
                if dialect == Dialect::V2 && queued + len > WINDOW {
                    // The client broke flow control: end this connection only.
                    c.closing = true;
                    let _ = c.kill.send(Some(Failure::new(
                        ErrorCode::Limit,
                        format!("limit: flow-control window ({WINDOW} bytes) exceeded by the client"),
                    )));
                    return true;
                }
                let path = UpstreamPath {
                    tx: &c.tx,
                    queued: &c.queued,
                    direct: &c.direct,
                    written: &c.written,
                };
                if !relay::forward(&path, data, identity, &cfg.limits) {
                    return true; // the connection is ending; its task reports why
                }
                if dialect == Dialect::V1 {
                    // v1 has no acks: hold the whole session (back-pressure on the
                    // WebSocket) until this connection's buffer drains below one window.
                    let (queued, drained) = (c.queued.clone(), c.drained.clone());
                    loop {
                        let notified = drained.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        if queued.load(Ordering::Acquire) <= WINDOW || c.tx.is_closed() {
                            break;
                        }
                        notified.await;
                    }
                }
                true
            }
            ClientMsg::Close { id } => {
                match conns.get_mut(&id) {
                    Some(c) if !c.closing => {
                        c.closing = true;
                        let _ = c.tx.send(Upstream::Close);
                        true
                    }
                    Some(_) => true, // already closing: `closed` is on its way
                    None => {
                        out.protocol_error(id, &format!("close of unknown connection id {id}"))
                            .await
                    }
                }
            }
            ClientMsg::Shutdown { id } => match conns.get_mut(&id) {
                Some(c) if !c.closing && !c.shut => {
                    c.shut = true;
                    let _ = c.tx.send(Upstream::Shutdown);
                    true
                }
                Some(_) => true,
                None => {
                    out.protocol_error(id, &format!("shutdown of unknown connection id {id}"))
                        .await
                }
            },
            ClientMsg::Ack { id, bytes, window } => match conns.get(&id) {
                Some(c) => match c.window.ack(bytes) {
                    Ok(()) => {
                        if let Some(w) = window {
                            c.window.grow(w);
                        }
                        true
                    }
                    Err(e) => out.error(Some(id), ErrorCode::Protocol, &e).await,
                },
                // Acks may cross a `closed` in flight: not an error worth a message.
                None => true,
            },
        }
    }
}
