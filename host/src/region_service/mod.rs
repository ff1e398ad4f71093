//! The region service: a tokio service that serves one region (the
//! native host's half of `struct lwhost_shm`). It owns the WebSocket to
//! lwproxy (`lwproxy.v2`: binary data frames, per-connection windows,
//! half-close) and the store, and moves bytes between them and the region's
//! rings.
//!
//! One task owns all state (no locks on the data path); a plain thread
//! sleeps on `host_doorbell` with FUTEX_WAIT and pokes that task (the
//! region's protocol: kernel/Documentation/misc-devices/lwnet.rst).
//! The guest is woken by bumping `guest_doorbell` and, under user-mode
//! Linux, by writing the per-client eventfd.
//!
//! - this file: configuration, start and stop, the event loop and the
//!   connection slots (their states and rings);
//! - `doorbell`: the thread that sleeps on `host_doorbell`;
//! - `link`: the proxy link (connect, reconnect, the protocol's messages);
//! - `store_jobs`: store requests, copied out of their slots and run on
//!   blocking threads.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use rustix::fd::OwnedFd;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::errno::*;
use crate::shm::{Region, CONNS, STORE_SLOTS};
use crate::store::Store;
use lwabi::{
    LWHOST_CONN_CLAIMED, LWHOST_CONN_CONNECTING, LWHOST_CONN_FAILED, LWHOST_CONN_FREE, LWHOST_CONN_OPEN,
    LWHOST_CONN_REQUESTED, LWHOST_HOST_MAX, LWHOST_MF_PEER_EOF, LWHOST_OPEN_TLS, LWHOST_WF_CLOSE,
    LWHOST_WF_SHUT_WR,
};
use lwproxy::protocol::{client, WindowTuner, BINARY_HEADER, FRAME_MAX, WINDOW};

mod doorbell;
mod link;
mod store_jobs;
#[cfg(test)]
mod tests;

use doorbell::Doorbell;
pub use link::{check_proxy_url, errno_for_proxy_error, tls_config};
use link::{Link, LinkEvent, BACKOFF_MIN};
use store_jobs::StoreDone;

/// Link events handled per wake-up of the guest at most, so the doorbell
/// and the store are still served between batches.
const LINK_BATCH: usize = 32;
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
    /// The proxy-to-client window and its autotuning, from the `open` on the current link.
    rx_window: Option<WindowTuner>,
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
                Some(ev) = link_rx.recv() => {
                    self.on_link(ev);
                    // Frames that queued meanwhile go in before the guest
                    // is woken: one wake-up (an IRQ on um) for the batch.
                    for _ in 0..LINK_BATCH {
                        let Ok(ev) = link_rx.try_recv() else { break };
                        self.on_link(ev);
                    }
                }
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

    /// The region (a handle that outlives `&mut self` calls) if connection
    /// `i` is OPEN: the only state in which bytes move.
    fn region_if_open(&self, i: usize) -> Option<Arc<Region>> {
        (self.conn(i).state().load(Ordering::Acquire) == LWHOST_CONN_OPEN).then(|| self.region.clone())
    }

    /// Moves guest bytes from tx to the proxy within the window; sends the
    /// half-close once tx is drained.
    fn pump_tx(&mut self, i: usize) {
        let Some(region) = self.region_if_open(i) else {
            return;
        };
        let c = conn_at(&region, i);
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
        let Some(region) = self.region_if_open(i) else {
            return;
        };
        let c = conn_at(&region, i);
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
            // Bytes in the ring are consumed as far as the window goes: acked, and counted
            // by the autotuning, which may raise the window in the same ack.
            let grown = s
                .rx_window
                .as_mut()
                .and_then(|t| t.on_consumed(moved as u64, now_us()));
            if let Some(id) = proxy_id {
                self.send_text(client::ack_window(id, moved as u64, grown));
            }
        }
        if eof_now && c.main_flags().load(Ordering::Relaxed) & LWHOST_MF_PEER_EOF == 0 {
            c.main_flags().fetch_or(LWHOST_MF_PEER_EOF, Ordering::Release);
            self.guest_dirty = true;
        }
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

/// Microseconds on a monotonic clock (from the first call), for [`WindowTuner`].
fn now_us() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = ORIGIN.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}
