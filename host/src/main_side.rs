//! The main side: a tokio service that serves one region. It owns the
//! WebSocket to lwproxy (`lwproxy.v2`: binary data frames, per-connection
//! windows, half-close) and the store, and moves bytes between them and the
//! region's rings.
//!
//! One task owns all state (no locks on the data path); a plain thread
//! sleeps on `host_doorbell` with FUTEX_WAIT (spec C) and pokes that task.
//! The guest is woken by bumping `guest_doorbell` and, under user-mode
//! Linux, by writing the per-client eventfd.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use rustix::fd::OwnedFd;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::errno::*;
use crate::shm::{Region, StoreSlot, CONNS, STORE_SLOTS};
use crate::store::Store;
use lwabi::{
    LWHOST_CONN_CLAIMED, LWHOST_CONN_CONNECTING, LWHOST_CONN_FAILED, LWHOST_CONN_FREE, LWHOST_CONN_OPEN,
    LWHOST_CONN_REQUESTED, LWHOST_HOST_MAX, LWHOST_KEY_MAX, LWHOST_MF_PEER_EOF, LWHOST_OPEN_TLS,
    LWHOST_SLOT_DONE, LWHOST_SLOT_SUBMITTED, LWHOST_STORE_DELETE, LWHOST_STORE_LIST, LWHOST_STORE_READ,
    LWHOST_STORE_STAT, LWHOST_STORE_WRITE, LWHOST_WF_CLOSE, LWHOST_WF_SHUT_WR,
};

use lwproxy::protocol::{
    client, split_binary, ErrorCode, ServerMsg, BEARER_PREFIX, BINARY_HEADER, SUBPROTOCOL_V2 as SUBPROTOCOL,
    WINDOW,
};

/// Largest binary frame we send.
const FRAME_MAX: usize = 65_536;
/// A proxy that ignores the window may get this much buffered per
/// connection before the connection is failed.
const RX_BUFFER_MAX: usize = 2 * WINDOW as usize;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The doorbell thread re-checks this often even without a wake-up, in
/// case a worker bumps without waking.
const DOORBELL_RECHECK: Duration = Duration::from_millis(500);
/// How often connections stalled on a full rx ring are retried without a
/// doorbell (the worker rings when it drains a ring below half).
const STALL_RETRY: Duration = Duration::from_millis(50);

/// What the main side needs to run.
#[derive(Debug, Clone)]
pub struct MainConfig {
    /// `ws://` or `wss://` URL of lwproxy.
    pub proxy_url: String,
    /// Token for the proxy, sent as the `bearer.<token>` subprotocol.
    pub token: Option<String>,
    /// The store directory.
    pub store_dir: PathBuf,
    /// Store quota in value bytes.
    pub store_quota: u64,
    /// CA certificates (PEM files) trusted for a `wss://` proxy besides the system roots.
    pub extra_ca: Vec<PathBuf>,
}

/// The TLS client configuration for a `wss://` proxy: the system's roots plus every
/// certificate in `extra_ca` (PEM), rustls on ring. Errors name the file at fault.
pub fn tls_config(extra_ca: &[PathBuf]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    for path in extra_ca {
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("parsing CA file {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("CA certificate in {}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            anyhow::bail!("CA file {} holds no certificate", path.display());
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A running main side. Dropping it without [`MainHandle::shutdown`] leaves
/// the task running until the runtime ends.
pub struct MainHandle {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl MainHandle {
    /// Stops serving: clears `main_alive` (so the worker fails every call),
    /// wakes the guest, closes the proxy link, waits for store work to end.
    pub async fn shutdown(self) {
        self.stop.notify_one();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "main side task ended abnormally");
        }
    }
}

/// Refuses a proxy URL that is not ws:// or wss://.
pub fn check_proxy_url(url: &str) -> anyhow::Result<()> {
    let req = url
        .into_client_request()
        .with_context(|| format!("bad proxy URL {url:?}"))?;
    match req.uri().scheme_str() {
        Some("ws" | "wss") => Ok(()),
        _ => anyhow::bail!("bad proxy URL {url:?}: want ws://HOST:PORT/ or wss://HOST:PORT/"),
    }
}

/// Starts the main side for `region` on the current tokio runtime.
pub fn spawn(region: Arc<Region>, cfg: MainConfig) -> anyhow::Result<MainHandle> {
    spawn_with_eventfd(region, cfg, None)
}

/// As [`spawn`], also writing `eventfd` (an IRQ of user-mode Linux) at each
/// guest wake-up.
pub fn spawn_with_eventfd(
    region: Arc<Region>,
    cfg: MainConfig,
    eventfd: Option<OwnedFd>,
) -> anyhow::Result<MainHandle> {
    let store = Store::open(&cfg.store_dir, cfg.store_quota)
        .with_context(|| format!("opening store {}", cfg.store_dir.display()))?;
    check_proxy_url(&cfg.proxy_url)?;
    let tls = tls_config(&cfg.extra_ca)?;
    region.init_header();
    let stop = Arc::new(Notify::new());
    let doorbell = Doorbell::start(region.clone())?;
    let (store_tx, store_rx) = mpsc::unbounded_channel();
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let service = Service {
        region,
        tls,
        cfg,
        eventfd,
        slots: (0..CONNS).map(|_| Slot::default()).collect(),
        by_proxy_id: HashMap::new(),
        next_proxy_id: 1,
        link: Link::Down,
        epoch: 0,
        backoff: BACKOFF_MIN,
        reconnect_at: None,
        link_tx,
        store: Arc::new(Mutex::new(store)),
        store_running: [None; STORE_SLOTS],
        store_tx,
        guest_dirty: false,
    };
    let task = tokio::spawn(service.run(stop.clone(), doorbell, store_rx, link_rx));
    Ok(MainHandle { stop, task })
}

/// The doorbell thread: sleeps on `host_doorbell`, pokes the service, and
/// waits for the service to start a scan before sleeping again, so a busy
/// worker costs one poke per scan, not one per bump.
struct Doorbell {
    notify: Arc<Notify>,
    shared: Arc<DoorbellShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct DoorbellShared {
    stop: AtomicBool,
    /// Set by the thread when it pokes, cleared by the service at a scan.
    poked: AtomicBool,
}

impl Doorbell {
    fn start(region: Arc<Region>) -> anyhow::Result<Doorbell> {
        let notify = Arc::new(Notify::new());
        let shared = Arc::new(DoorbellShared {
            stop: AtomicBool::new(false),
            poked: AtomicBool::new(false),
        });
        let (n, s) = (notify.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("lwhost-doorbell".into())
            .spawn(move || doorbell_loop(&region, &n, &s))
            .context("starting the doorbell thread")?;
        Ok(Doorbell {
            notify,
            shared,
            thread: Some(thread),
        })
    }

    /// Called by the service as it starts a scan.
    fn taken(&self) {
        self.shared.poked.store(false, Ordering::SeqCst);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    fn stop(&mut self, region: &Region) {
        self.shared.stop.store(true, Ordering::SeqCst);
        crate::futex::wake_all(region.host_doorbell());
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if t.join().is_err() {
                tracing::warn!("doorbell thread panicked");
            }
        }
    }
}

fn doorbell_loop(region: &Region, notify: &Notify, shared: &DoorbellShared) {
    let bell = region.host_doorbell();
    let mut last = bell.load(Ordering::SeqCst);
    // Poke once at start: requests may predate us.
    let mut poke = true;
    while !shared.stop.load(Ordering::SeqCst) {
        if poke {
            shared.poked.store(true, Ordering::SeqCst);
            notify.notify_one();
            while shared.poked.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(DOORBELL_RECHECK);
            }
        }
        // Announce the sleep, then re-check, then sleep only if nothing
        // changed: pairs with the worker's bump-then-check (SeqCst both).
        region.host_waiting().store(1, Ordering::SeqCst);
        if bell.load(Ordering::SeqCst) == last && !shared.stop.load(Ordering::SeqCst) {
            crate::futex::wait(bell, last, Some(DOORBELL_RECHECK));
        }
        region.host_waiting().store(0, Ordering::SeqCst);
        let now = bell.load(Ordering::SeqCst);
        poke = now != last;
        last = now;
    }
}

/// The errno a guest sees for a connection the proxy failed, from the `error` message's
/// `code` (docs/protocol.md); EIO for codes without a closer errno, or none.
pub fn errno_for_proxy_error(code: Option<ErrorCode>) -> i32 {
    match code {
        Some(ErrorCode::Policy) => EACCES,
        Some(ErrorCode::Refused | ErrorCode::Tls) => ECONNREFUSED,
        Some(ErrorCode::Timeout) => ETIMEDOUT,
        Some(ErrorCode::Unreachable) => EHOSTUNREACH,
        Some(ErrorCode::Reset) => ECONNRESET,
        _ => EIO,
    }
}

/// The main side's private view of a connection slot.
#[derive(Default)]
struct Slot {
    /// We took the slot's request and have not torn it down yet.
    active: bool,
    generation: u32,
    /// The id the proxy knows it by on the current link, once `open` went out.
    proxy_id: Option<u32>,
    /// Opened while the link was still connecting: send `open` when it is up.
    request: Option<OpenRequest>,
    /// Bytes from the proxy not yet in the rx ring.
    pending_rx: VecDeque<Bytes>,
    pending_front: usize,
    pending_bytes: usize,
    /// Bytes sent to the proxy and not acked.
    tx_inflight: u64,
    /// The proxy said no more bytes will come.
    peer_eof: bool,
    /// The proxy forgot the connection (`closed`): tx bytes are dropped.
    peer_closed: bool,
    shut_sent: bool,
}

#[derive(Clone)]
struct OpenRequest {
    host: String,
    port: u16,
    tls: bool,
    timeout_ms: u32,
}

enum Link {
    Down,
    Connecting,
    Up { out: mpsc::UnboundedSender<Message> },
}

/// Events from the link tasks, tagged with the link epoch they belong to.
enum LinkEvent {
    Connected(u64, mpsc::UnboundedSender<Message>),
    ConnectFailed(u64, String),
    Message(u64, Message),
    Lost(u64, String),
}

struct StoreDone {
    slot: usize,
    generation: u32,
    result: i32,
    output: Vec<u8>,
}

struct Service {
    region: Arc<Region>,
    /// TLS for a `wss://` proxy, built once from the config.
    tls: Arc<rustls::ClientConfig>,
    cfg: MainConfig,
    eventfd: Option<OwnedFd>,
    slots: Vec<Slot>,
    by_proxy_id: HashMap<u32, usize>,
    next_proxy_id: u32,
    link: Link,
    epoch: u64,
    backoff: Duration,
    reconnect_at: Option<Instant>,
    link_tx: mpsc::UnboundedSender<LinkEvent>,
    store: Arc<Mutex<Store>>,
    store_running: [Option<u32>; STORE_SLOTS],
    store_tx: mpsc::UnboundedSender<StoreDone>,
    guest_dirty: bool,
}

impl Service {
    async fn run(
        mut self,
        stop: Arc<Notify>,
        mut doorbell: Doorbell,
        mut store_rx: mpsc::UnboundedReceiver<StoreDone>,
        mut link_rx: mpsc::UnboundedReceiver<LinkEvent>,
    ) {
        self.connect();
        let bell = doorbell.notify.clone();
        loop {
            let reconnect = self.reconnect_at;
            tokio::select! {
                _ = stop.notified() => break,
                _ = bell.notified() => {
                    doorbell.taken();
                    self.scan();
                }
                Some(ev) = link_rx.recv() => self.on_link(ev),
                Some(done) = store_rx.recv() => self.on_store_done(done),
                _ = sleep_until(reconnect), if reconnect.is_some() => {
                    self.reconnect_at = None;
                    self.connect();
                }
                // Safety net for a worker side that frees rx space without
                // ringing: retry stalled connections now and then.
                _ = tokio::time::sleep(STALL_RETRY), if self.any_stalled() => {
                    for i in 0..CONNS {
                        self.pump_rx(i);
                    }
                }
            }
            self.flush_guest();
        }
        // Going away: the worker fails every call from now on.
        self.region.main_alive().store(0, Ordering::Release);
        self.guest_dirty = true;
        self.flush_guest();
        doorbell.stop(&self.region);
        self.link = Link::Down; // drops the sender: the writer closes the socket
                                // Store work in flight touches the region; let it finish.
        while self.store_running.iter().any(Option::is_some) {
            match tokio::time::timeout(Duration::from_secs(10), store_rx.recv()).await {
                Ok(Some(done)) => self.store_running[done.slot] = None,
                _ => break,
            }
        }
        tracing::info!("main side stopped");
    }

    /// Whether some connection holds proxy bytes its rx ring had no room for.
    fn any_stalled(&self) -> bool {
        self.slots.iter().any(|s| s.pending_bytes > 0)
    }

    fn flush_guest(&mut self) {
        if !std::mem::take(&mut self.guest_dirty) {
            return;
        }
        self.region.ring_guest();
        if let Some(fd) = &self.eventfd {
            // EAGAIN means the counter is already huge: the IRQ is pending.
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    // ---- the proxy link -------------------------------------------------

    fn connect(&mut self) {
        self.epoch += 1;
        self.link = Link::Connecting;
        let epoch = self.epoch;
        let events = self.link_tx.clone();
        let url = self.cfg.proxy_url.clone();
        let token = self.cfg.token.clone();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            match open_link(&url, token.as_deref(), tls).await {
                Ok(ws) => {
                    let (mut sink, mut stream) = ws.split();
                    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
                    if events.send(LinkEvent::Connected(epoch, out_tx)).is_err() {
                        return;
                    }
                    let writer_events = events.clone();
                    tokio::spawn(async move {
                        while let Some(m) = out_rx.recv().await {
                            let mut res = sink.feed(m).await;
                            while res.is_ok() {
                                match out_rx.try_recv() {
                                    Ok(m) => res = sink.feed(m).await,
                                    Err(_) => break,
                                }
                            }
                            if let Err(e) = res.and(sink.flush().await) {
                                let _ = writer_events.send(LinkEvent::Lost(epoch, format!("write: {e}")));
                                return;
                            }
                        }
                        let _ = sink.close().await;
                    });
                    loop {
                        match stream.next().await {
                            Some(Ok(m)) => {
                                if events.send(LinkEvent::Message(epoch, m)).is_err() {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                let _ = events.send(LinkEvent::Lost(epoch, e.to_string()));
                                return;
                            }
                            None => {
                                let _ = events.send(LinkEvent::Lost(epoch, "closed by proxy".into()));
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    let _ = events.send(LinkEvent::ConnectFailed(epoch, format!("{e:#}")));
                }
            }
        });
    }

    fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Connected(epoch, out) if epoch == self.epoch => {
                tracing::info!(url = %self.cfg.proxy_url, "connected to proxy");
                self.link = Link::Up { out };
                self.backoff = BACKOFF_MIN;
                for i in 0..CONNS {
                    if let Some(req) = self.slots[i].request.take() {
                        self.send_open(i, req);
                    }
                }
            }
            LinkEvent::ConnectFailed(epoch, why) if epoch == self.epoch => {
                tracing::warn!(url = %self.cfg.proxy_url, error = %why, retry_in = ?self.backoff, "cannot reach proxy");
                self.link_down(ECONNREFUSED);
            }
            LinkEvent::Lost(epoch, why) if epoch == self.epoch => {
                tracing::warn!(error = %why, retry_in = ?self.backoff, "lost the proxy");
                self.link_down(ECONNRESET);
            }
            LinkEvent::Message(epoch, m) if epoch == self.epoch => self.on_message(m),
            _ => {} // an old link's news
        }
    }

    /// The link is gone: every connection that still depends on it fails
    /// with `errno`, and a reconnect is scheduled.
    fn link_down(&mut self, errno: i32) {
        self.link = Link::Down;
        self.epoch += 1;
        self.by_proxy_id.clear();
        for i in 0..CONNS {
            let s = &mut self.slots[i];
            if s.active && !s.peer_closed && (s.proxy_id.is_some() || s.request.is_some()) {
                s.proxy_id = None;
                s.request = None;
                self.fail(i, errno);
            }
        }
        self.reconnect_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn send(&mut self, m: Message) {
        if let Link::Up { out } = &self.link {
            if out.send(m).is_err() {
                // The writer ended; its Lost event is on the way.
            }
        }
    }

    fn send_text(&mut self, text: String) {
        self.send(Message::Text(text.into()));
    }

    fn send_open(&mut self, i: usize, req: OpenRequest) {
        let id = self.next_proxy_id;
        self.next_proxy_id = self.next_proxy_id.wrapping_add(1).max(1);
        let timeout_ms = (req.timeout_ms != 0).then_some(u64::from(req.timeout_ms));
        let open = client::open(id, &req.host, req.port, req.tls, timeout_ms);
        self.slots[i].proxy_id = Some(id);
        self.by_proxy_id.insert(id, i);
        self.send_text(open);
    }

    fn on_message(&mut self, m: Message) {
        match m {
            Message::Binary(b) => {
                let Some((id, _)) = split_binary(&b) else {
                    tracing::warn!(len = b.len(), "short binary frame from proxy; ignored");
                    return;
                };
                // Bytes is a cheap view: no copy of the payload.
                self.on_data(id, b.slice(BINARY_HEADER..));
            }
            Message::Text(t) => match serde_json::from_str::<ServerMsg>(&t) {
                Ok(msg) => self.on_control(msg),
                Err(e) => tracing::warn!(error = %e, "unparsable message from proxy; ignored"),
            },
            _ => {} // ping/pong are answered by tungstenite; close ends the stream
        }
    }

    fn on_control(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Opened { id, .. } => {
                let Some(&i) = self.by_proxy_id.get(&id) else {
                    return;
                };
                let region = self.region.clone();
                let c = conn_at(&region, i);
                if c.state().load(Ordering::Acquire) == LWHOST_CONN_CONNECTING {
                    c.state().store(LWHOST_CONN_OPEN, Ordering::Release);
                    self.guest_dirty = true;
                    self.pump_rx(i);
                }
            }
            ServerMsg::Data { id, b64 } => {
                use base64::Engine as _;
                match base64::engine::general_purpose::STANDARD.decode(b64) {
                    Ok(bytes) => self.on_data(id, bytes.into()),
                    Err(e) => tracing::warn!(error = %e, "bad base64 from proxy; ignored"),
                }
            }
            ServerMsg::Eof { id } => {
                let Some(&i) = self.by_proxy_id.get(&id) else {
                    return;
                };
                self.slots[i].peer_eof = true;
                self.pump_rx(i);
            }
            ServerMsg::Closed { id } => {
                let Some(i) = self.by_proxy_id.remove(&id) else {
                    return;
                };
                let s = &mut self.slots[i];
                s.proxy_id = None;
                s.peer_closed = true;
                s.peer_eof = true;
                if self.conn(i).state().load(Ordering::Acquire) == LWHOST_CONN_CONNECTING {
                    self.fail(i, ECONNRESET);
                } else {
                    self.pump_rx(i);
                    self.pump_tx(i);
                }
            }
            ServerMsg::Ack { id, bytes } => {
                let Some(&i) = self.by_proxy_id.get(&id) else {
                    return;
                };
                let s = &mut self.slots[i];
                s.tx_inflight = s.tx_inflight.saturating_sub(bytes);
                self.pump_tx(i);
            }
            ServerMsg::Error { id, code, msg } => {
                let errno = errno_for_proxy_error(code);
                match id.and_then(|id| self.by_proxy_id.remove(&id)) {
                    Some(i) => {
                        tracing::debug!(slot = i, %msg, errno, "proxy failed a connection");
                        self.slots[i].proxy_id = None;
                        self.fail(i, errno);
                    }
                    None => tracing::warn!(%msg, "proxy error"),
                }
            }
            ServerMsg::Unknown => tracing::debug!("unknown message type from proxy; ignored"),
        }
    }

    fn on_data(&mut self, id: u32, bytes: Bytes) {
        let Some(&i) = self.by_proxy_id.get(&id) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let s = &mut self.slots[i];
        if s.pending_bytes + bytes.len() > RX_BUFFER_MAX {
            tracing::warn!(
                slot = i,
                "proxy overran the flow-control window; failing the connection"
            );
            self.fail(i, EIO); // also closes it at the proxy
            return;
        }
        s.pending_bytes += bytes.len();
        s.pending_rx.push_back(bytes);
        self.pump_rx(i);
    }

    // ---- connection slots -----------------------------------------------

    fn conn(&self, i: usize) -> crate::shm::Conn<'_> {
        conn_at(&self.region, i)
    }

    /// Looks at every slot after a doorbell.
    fn scan(&mut self) {
        for i in 0..CONNS {
            self.scan_conn(i);
        }
        for i in 0..STORE_SLOTS {
            self.scan_store(i);
        }
    }

    fn scan_conn(&mut self, i: usize) {
        let region = self.region.clone();
        let c = conn_at(&region, i);
        let state = c.state().load(Ordering::Acquire);
        let wf = c.worker_flags().load(Ordering::Acquire);
        match state {
            LWHOST_CONN_FREE | LWHOST_CONN_CLAIMED => {}
            LWHOST_CONN_REQUESTED => {
                if wf & LWHOST_WF_CLOSE != 0 {
                    self.teardown(i);
                } else {
                    self.take_request(i);
                }
            }
            LWHOST_CONN_CONNECTING | LWHOST_CONN_OPEN | LWHOST_CONN_FAILED => {
                let ours = self.slots[i].active
                    && self.slots[i].generation == c.generation().load(Ordering::Relaxed);
                if wf & LWHOST_WF_CLOSE != 0 || !ours {
                    // (!ours: a slot we never took, e.g. from before a
                    // restart of the main side; reclaim it.)
                    if let Some(id) = self.slots[i].proxy_id.take() {
                        self.by_proxy_id.remove(&id);
                        self.send_text(client::close(id));
                    }
                    self.teardown(i);
                } else if state == LWHOST_CONN_OPEN {
                    self.pump_tx(i);
                    self.pump_rx(i);
                }
            }
            _ => {} // not a state the worker may set; leave it alone
        }
    }

    fn take_request(&mut self, i: usize) {
        // A new request on a slot we still serve means the guest broke the
        // protocol; drop the old connection cleanly first.
        if let Some(id) = self.slots[i].proxy_id.take() {
            self.by_proxy_id.remove(&id);
            self.send_text(client::close(id));
        }
        let region = self.region.clone();
        let c = conn_at(&region, i);
        let host_len = c.host_len().load(Ordering::Relaxed) as usize;
        let port = c.port().load(Ordering::Relaxed);
        let flags = c.open_flags().load(Ordering::Relaxed);
        let timeout_ms = c.timeout_ms().load(Ordering::Relaxed);
        let generation = c.generation().load(Ordering::Relaxed);
        c.state().store(LWHOST_CONN_CONNECTING, Ordering::Release);
        self.slots[i] = Slot {
            active: true,
            generation,
            ..Slot::default()
        };
        let port = match u16::try_from(port) {
            Ok(p) if p != 0 && host_len != 0 && host_len < LWHOST_HOST_MAX as usize => p,
            _ => {
                self.fail(i, EINVAL);
                return;
            }
        };
        let mut host = vec![0u8; host_len];
        // SAFETY: host_len < LWHOST_HOST_MAX; the slot is REQUESTED, so its
        // request fields are ours to read.
        unsafe { core::ptr::copy_nonoverlapping(c.host_ptr(), host.as_mut_ptr(), host_len) };
        let Ok(host) = String::from_utf8(host) else {
            self.fail(i, EINVAL);
            return;
        };
        let req = OpenRequest {
            host,
            port,
            tls: flags & LWHOST_OPEN_TLS != 0,
            timeout_ms,
        };
        match self.link {
            Link::Up { .. } => self.send_open(i, req),
            Link::Connecting => self.slots[i].request = Some(req),
            Link::Down => self.fail(i, ECONNREFUSED),
        }
    }

    /// Marks a connection FAILED with `errno`; the slot stays ours until the
    /// worker closes it.
    fn fail(&mut self, i: usize, errno: i32) {
        // The proxy may still hold the connection (e.g. a broken ring):
        // end it there too, so it stops sending.
        if let Some(id) = self.slots[i].proxy_id.take() {
            self.by_proxy_id.remove(&id);
            self.send_text(client::close(id));
        }
        let s = &mut self.slots[i];
        s.pending_rx.clear();
        s.pending_front = 0;
        s.pending_bytes = 0;
        let region = self.region.clone();
        let c = conn_at(&region, i);
        c.error().store(errno as u32, Ordering::Relaxed);
        c.state().store(LWHOST_CONN_FAILED, Ordering::Release);
        self.guest_dirty = true;
    }

    /// Returns a closed slot to FREE with everything reset.
    fn teardown(&mut self, i: usize) {
        if let Some(id) = self.slots[i].proxy_id {
            self.by_proxy_id.remove(&id);
        }
        self.slots[i] = Slot::default();
        let region = self.region.clone();
        let c = conn_at(&region, i);
        c.tx().reset();
        c.rx().reset();
        c.main_flags().store(0, Ordering::Relaxed);
        c.error().store(0, Ordering::Relaxed);
        c.state().store(LWHOST_CONN_FREE, Ordering::Release);
        self.guest_dirty = true;
    }

    /// Moves guest bytes from tx to the proxy within the window; sends the
    /// half-close once tx is drained.
    fn pump_tx(&mut self, i: usize) {
        let region = self.region.clone();
        let c = conn_at(&region, i);
        if c.state().load(Ordering::Acquire) != LWHOST_CONN_OPEN {
            return;
        }
        let tx = c.tx();
        let Some(readable) = tx.readable() else {
            self.fail(i, EIO);
            return;
        };
        let s = &self.slots[i];
        let Some(id) = s.proxy_id else {
            if s.peer_closed && readable > 0 {
                // Nobody to send to: drop, like writes to a closed socket.
                tx.consume(readable);
                self.guest_dirty = true;
            }
            return;
        };
        let mut budget = (WINDOW.saturating_sub(s.tx_inflight)).min(readable as u64) as usize;
        let sent = budget;
        while budget > 0 {
            let n = budget.min(FRAME_MAX);
            let mut frame = vec![0u8; BINARY_HEADER + n];
            frame[..BINARY_HEADER].copy_from_slice(&id.to_be_bytes());
            match tx.pop(&mut frame[BINARY_HEADER..]) {
                Some(got) if got == n => {}
                _ => {
                    self.fail(i, EIO);
                    return;
                }
            }
            self.send(Message::Binary(frame.into()));
            budget -= n;
        }
        if sent > 0 {
            self.slots[i].tx_inflight += sent as u64;
            self.guest_dirty = true;
        }
        let wf = c.worker_flags().load(Ordering::Acquire);
        if wf & LWHOST_WF_SHUT_WR != 0 && !self.slots[i].shut_sent && tx.readable() == Some(0) {
            self.slots[i].shut_sent = true;
            self.send_text(client::shutdown(id));
        }
    }

    /// Moves buffered proxy bytes into the rx ring as space allows, acks
    /// what went in, and publishes PEER_EOF once everything is in.
    fn pump_rx(&mut self, i: usize) {
        let region = self.region.clone();
        let c = conn_at(&region, i);
        if c.state().load(Ordering::Acquire) != LWHOST_CONN_OPEN {
            return;
        }
        let rx = c.rx();
        let mut moved = 0usize;
        let mut broken = false;
        let s = &mut self.slots[i];
        while let Some(front) = s.pending_rx.front() {
            match rx.push(&front[s.pending_front..]) {
                None => {
                    broken = true;
                    break;
                }
                Some(0) => break,
                Some(n) => {
                    moved += n;
                    s.pending_front += n;
                    if s.pending_front == front.len() {
                        s.pending_rx.pop_front();
                        s.pending_front = 0;
                    }
                }
            }
        }
        s.pending_bytes -= moved;
        let eof_now = s.peer_eof && s.pending_rx.is_empty();
        let proxy_id = s.proxy_id;
        if broken {
            self.fail(i, EIO);
            return;
        }
        if moved > 0 {
            self.guest_dirty = true;
            if let Some(id) = proxy_id {
                self.send_text(client::ack(id, moved as u64));
            }
        }
        if eof_now && c.main_flags().load(Ordering::Relaxed) & LWHOST_MF_PEER_EOF == 0 {
            c.main_flags().fetch_or(LWHOST_MF_PEER_EOF, Ordering::Release);
            self.guest_dirty = true;
        }
    }

    // ---- store ----------------------------------------------------------

    fn scan_store(&mut self, i: usize) {
        let Some(slot) = self.region.store_slot(i) else {
            return;
        };
        if slot.state().load(Ordering::Acquire) != LWHOST_SLOT_SUBMITTED || self.store_running[i].is_some() {
            return;
        }
        let generation = slot.generation().load(Ordering::Relaxed);
        let job = StoreJob::read_from(slot);
        self.store_running[i] = Some(generation);
        let store = self.store.clone();
        let done = self.store_tx.clone();
        tokio::task::spawn_blocking(move || {
            let (result, output) = match job {
                Ok(job) => job.run(&store),
                Err(e) => (-e, Vec::new()),
            };
            let _ = done.send(StoreDone {
                slot: i,
                generation,
                result,
                output,
            });
        });
    }

    fn on_store_done(&mut self, done: StoreDone) {
        self.store_running[done.slot] = None;
        let Some(slot) = self.region.store_slot(done.slot) else {
            return;
        };
        if slot.state().load(Ordering::Acquire) != LWHOST_SLOT_SUBMITTED
            || slot.generation().load(Ordering::Relaxed) != done.generation
        {
            return; // the worker gave up on it
        }
        let n = done.output.len().min(StoreSlot::DATA_CAP);
        // SAFETY: the slot is SUBMITTED, so its data buffer is ours; n fits.
        unsafe { core::ptr::copy_nonoverlapping(done.output.as_ptr(), slot.data_ptr(), n) };
        slot.result().store(done.result as u32, Ordering::Relaxed);
        slot.state().store(LWHOST_SLOT_DONE, Ordering::Release);
        self.guest_dirty = true;
    }
}

/// Slot `i` of `region`; `i < CONNS` at every call site.
fn conn_at(region: &Region, i: usize) -> crate::shm::Conn<'_> {
    region
        .conn(i % CONNS)
        .unwrap_or_else(|| unreachable!("slot index in range"))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket, offering `lwproxy.v2` (and the token as
/// `bearer.<token>`), and insists the proxy chose `lwproxy.v2`.
async fn open_link(url: &str, token: Option<&str>, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Ws> {
    let mut req = url
        .into_client_request()
        .with_context(|| format!("bad proxy URL {url:?}"))?;
    let protocols = match token {
        Some(t) => format!("{SUBPROTOCOL}, {BEARER_PREFIX}{t}"),
        None => SUBPROTOCOL.to_string(),
    };
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&protocols).context("token is not a valid subprotocol")?,
    );
    let connector = tokio_tungstenite::Connector::Rustls(tls);
    let connect = tokio_tungstenite::connect_async_tls_with_config(req, None, true, Some(connector));
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .context("timed out connecting to proxy")?
        .with_context(|| format!("connecting to {url}"))?;
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if chosen != Some(SUBPROTOCOL) {
        anyhow::bail!("proxy did not accept subprotocol {SUBPROTOCOL} (got {chosen:?})");
    }
    Ok(ws)
}

/// A store request copied out of its slot.
struct StoreJob {
    op: u32,
    flags: u32,
    key: Vec<u8>,
    after: Vec<u8>,
    offset: u64,
    data: Vec<u8>,
    capacity: usize,
}

impl StoreJob {
    /// Copies and checks a SUBMITTED slot (written by the guest side: every
    /// length is checked again).
    fn read_from(slot: StoreSlot<'_>) -> Result<StoreJob, i32> {
        let op = slot.op().load(Ordering::Relaxed);
        let key_len = slot.key_len().load(Ordering::Relaxed) as usize;
        let after_len = slot.after_len().load(Ordering::Relaxed) as usize;
        let len = slot.len().load(Ordering::Relaxed) as usize;
        if key_len > LWHOST_KEY_MAX as usize || after_len > LWHOST_KEY_MAX as usize {
            return Err(ENAMETOOLONG);
        }
        if len > StoreSlot::DATA_CAP {
            return Err(EINVAL);
        }
        let mut key = vec![0u8; key_len];
        let mut after = vec![0u8; after_len];
        let mut data = vec![0u8; if op == LWHOST_STORE_WRITE { len } else { 0 }];
        // SAFETY: the slot is SUBMITTED (ours to read) and every length was
        // checked against its buffer (key_len + after_len <= KEY_CAP).
        unsafe {
            core::ptr::copy_nonoverlapping(slot.key_ptr(), key.as_mut_ptr(), key_len);
            core::ptr::copy_nonoverlapping(slot.key_ptr().add(key_len), after.as_mut_ptr(), after_len);
            core::ptr::copy_nonoverlapping(slot.data_ptr(), data.as_mut_ptr(), data.len());
        }
        Ok(StoreJob {
            op,
            flags: slot.flags().load(Ordering::Relaxed),
            key,
            after,
            offset: slot.offset().load(Ordering::Relaxed),
            data,
            capacity: len,
        })
    }

    /// Runs the request: (result, output bytes).
    fn run(self, store: &Mutex<Store>) -> (i32, Vec<u8>) {
        let Ok(mut store) = store.lock() else {
            return (-EIO, Vec::new());
        };
        let as_result = |r: Result<usize, i32>| match r {
            Ok(n) => n.min(i32::MAX as usize) as i32,
            Err(e) => -e,
        };
        match self.op {
            LWHOST_STORE_WRITE => (
                as_result(store.write(&self.key, self.offset, self.flags, &self.data)),
                Vec::new(),
            ),
            LWHOST_STORE_READ => {
                let mut out = vec![0u8; self.capacity];
                let r = store.read(&self.key, self.offset, &mut out);
                out.truncate(*r.as_ref().unwrap_or(&0));
                (as_result(r), out)
            }
            LWHOST_STORE_STAT => match store.stat(&self.key) {
                Ok(size) => (8, size.to_le_bytes().to_vec()),
                Err(e) => (-e, Vec::new()),
            },
            LWHOST_STORE_DELETE => (as_result(store.delete(&self.key).map(|()| 0)), Vec::new()),
            LWHOST_STORE_LIST => {
                let mut out = vec![0u8; self.capacity];
                let r = store.list(&self.key, &self.after, &mut out);
                out.truncate(*r.as_ref().unwrap_or(&0));
                (as_result(r), out)
            }
            _ => (-EINVAL, Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::worker::Worker;
    use lwabi::{LWHOST_POLL_ERR, LWHOST_POLL_ERRNO_SHIFT, LWHOST_POLL_HUP, LWHOST_POLL_IN};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    /// A fake proxy (the real one cannot misbehave): accepts one session,
    /// echoing `lwproxy.v2` if `v2`, and hands it to `script`.
    async fn fake_proxy<F, Fut>(v2: bool, script: F) -> String
    where
        F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // The callback's error type is tungstenite's; not ours to shrink.
            #[allow(clippy::result_large_err)]
            let echo = |_: &Request, mut resp: Response| {
                if v2 {
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
                }
                Ok(resp)
            };
            if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, echo).await {
                script(ws).await;
            }
        });
        url
    }

    fn start(url: String, name: &str) -> (Arc<Region>, Worker, MainHandle) {
        let region = Arc::new(Region::new_memfd().expect("region"));
        let store_dir = std::env::temp_dir().join(format!("lwhost-ms-{name}-{}", std::process::id()));
        let cfg = MainConfig {
            proxy_url: url,
            token: None,
            store_dir,
            store_quota: 1 << 20,
            extra_ca: Vec::new(),
        };
        let main = spawn(region.clone(), cfg).expect("spawn");
        (region.clone(), Worker::new(region), main)
    }

    /// Polls `id` until `done(bits)` or 10 s pass; returns the last bits.
    fn poll_until(w: &Worker, id: i32, done: impl Fn(i32) -> bool) -> i32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = w.guest_doorbell();
        loop {
            let p = w.net_poll(id);
            if done(p) || std::time::Instant::now() > deadline {
                return p;
            }
            seen = w.wait_guest_doorbell(seen, Duration::from_millis(50));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_proxy_frames_fail_only_their_connection() {
        let url = fake_proxy(true, |mut ws| async move {
            let mut ids = HashMap::new();
            while ids.len() < 2 {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    return;
                };
                let v: serde_json::Value = serde_json::from_str(&t).expect("json from lwhost");
                if v["t"] == "open" {
                    let id = v["id"].as_u64().expect("id") as u32;
                    ids.insert(v["host"].as_str().expect("host").to_string(), id);
                    let _ = ws
                        .send(Message::Text(format!(r#"{{"t":"opened","id":{id}}}"#).into()))
                        .await;
                }
            }
            let (a, b) = (ids["flood"], ids["good"]);
            // Garbage that must be ignored.
            for m in [
                Message::Binary(vec![1, 2].into()),
                Message::Binary([&999u32.to_be_bytes()[..], b"stray"].concat().into()),
                Message::Text("not json".into()),
                Message::Text(r#"{"t":"ack","id":1,"bytes":18446744073709551615}"#.into()),
                Message::Text(r#"{"t":"opened"}"#.into()),
                Message::Text(r#"{"t":"error","msg":"session-level complaint"}"#.into()),
            ] {
                let _ = ws.send(m).await;
            }
            // Far past the window on one connection, never waiting for acks.
            let frame = [&a.to_be_bytes()[..], &[7u8; 65536][..]].concat();
            for _ in 0..14 {
                let _ = ws.send(Message::Binary(frame.clone().into())).await;
            }
            let _ = ws
                .send(Message::Binary([&b.to_be_bytes()[..], b"hello"].concat().into()))
                .await;
            let _ = ws
                .send(Message::Text(format!(r#"{{"t":"eof","id":{b}}}"#).into()))
                .await;
            // Keep the session up while the test reads.
            while ws.next().await.is_some() {}
        })
        .await;
        let (_region, w, main) = start(url, "hostile");
        let checked = tokio::task::spawn_blocking(move || {
            let flood = w.net_open(b"flood", 80, 0, 0);
            let good = w.net_open(b"good", 80, 0, 0);
            let p = poll_until(&w, flood, |p| p as u32 & LWHOST_POLL_ERR != 0);
            assert_eq!(
                p >> LWHOST_POLL_ERRNO_SHIFT,
                EIO,
                "the flooded connection fails with EIO"
            );
            let p = poll_until(&w, good, |p| p as u32 & LWHOST_POLL_IN != 0);
            assert_eq!(p as u32 & LWHOST_POLL_ERR, 0, "the other connection is unharmed");
            let mut buf = [0u8; 16];
            assert_eq!(w.net_read(good, &mut buf), 5);
            assert_eq!(&buf[..5], b"hello");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut seen = w.guest_doorbell();
            let end = loop {
                match w.net_read(good, &mut buf) {
                    r if r == -EAGAIN && std::time::Instant::now() < deadline => {
                        seen = w.wait_guest_doorbell(seen, Duration::from_millis(50));
                    }
                    r => break r,
                }
            };
            // (the eof may trail the data by a moment, hence the loop)
            assert_eq!(end, 0, "end of stream after the data");
            assert_ne!(w.net_poll(good) as u32 & LWHOST_POLL_HUP, 0);
        })
        .await;
        main.shutdown().await;
        checked.expect("checks");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_proxy_without_v2_is_refused() {
        let url = fake_proxy(false, |mut ws| async move { while ws.next().await.is_some() {} }).await;
        let (_region, w, main) = start(url, "nov2");
        let checked = tokio::task::spawn_blocking(move || {
            // Once the handshake fails, opens are refused rather than hung.
            std::thread::sleep(Duration::from_millis(200));
            let id = w.net_open(b"h", 80, 0, 0);
            let p = poll_until(&w, id, |p| p as u32 & LWHOST_POLL_ERR != 0);
            assert_eq!(p >> LWHOST_POLL_ERRNO_SHIFT, ECONNREFUSED);
        })
        .await;
        main.shutdown().await;
        checked.expect("checks");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_clears_main_alive() {
        let url = fake_proxy(true, |mut ws| async move { while ws.next().await.is_some() {} }).await;
        let (region, w, main) = start(url, "shutdown");
        assert_eq!(region.main_alive().load(Ordering::Acquire), 1);
        main.shutdown().await;
        assert_eq!(region.main_alive().load(Ordering::Acquire), 0);
        assert_eq!(w.net_open(b"h", 80, 0, 0), -ECONNRESET);
    }

    #[test]
    fn proxy_error_codes_map_to_errno() {
        for (code, want) in [
            (Some(ErrorCode::Policy), EACCES),
            (Some(ErrorCode::Refused), ECONNREFUSED),
            (Some(ErrorCode::Timeout), ETIMEDOUT),
            (Some(ErrorCode::Unreachable), EHOSTUNREACH),
            (Some(ErrorCode::Reset), ECONNRESET),
            (Some(ErrorCode::Tls), ECONNREFUSED),
            (Some(ErrorCode::Limit), EIO),
            (Some(ErrorCode::Other), EIO),
            (None, EIO),
        ] {
            assert_eq!(errno_for_proxy_error(code), want, "{code:?}");
        }
    }
}
