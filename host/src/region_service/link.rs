//! The region service's link to lwproxy: one WebSocket (`lwproxy.v2`),
//! reconnected with backoff; the protocol's messages in both directions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::{conn_at, now_us, OpenRequest, Service};
use crate::errno::*;
use crate::shm::CONNS;
use lwabi::{LWHOST_CONN_CONNECTING, LWHOST_CONN_OPEN};
use lwproxy::protocol::{
    client, split_binary, ErrorCode, ServerMsg, WindowTuner, BEARER_PREFIX, BINARY_HEADER,
    SUBPROTOCOL_V2 as SUBPROTOCOL, WINDOW,
};
use std::sync::atomic::Ordering;

pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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

pub(super) enum Link {
    Down,
    Connecting,
    Up { out: mpsc::UnboundedSender<Message> },
}

/// Events from the link tasks, tagged with the link epoch they belong to.
pub(super) enum LinkEvent {
    Connected(u64, mpsc::UnboundedSender<Message>),
    ConnectFailed(u64, String),
    Message(u64, Message),
    Lost(u64, String),
}

impl Service {
    pub(super) fn connect(&mut self) {
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

    pub(super) fn on_link(&mut self, ev: LinkEvent) {
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
    pub(super) fn link_down(&mut self, errno: i32) {
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

    pub(super) fn send(&mut self, m: Message) {
        if let Link::Up { out } = &self.link {
            if out.send(m).is_err() {
                // The writer ended; its Lost event is on the way.
            }
        }
    }

    pub(super) fn send_text(&mut self, text: String) {
        self.send(Message::Text(text.into()));
    }

    pub(super) fn send_open(&mut self, i: usize, req: OpenRequest) {
        let id = self.next_proxy_id;
        self.next_proxy_id = self.next_proxy_id.wrapping_add(1).max(1);
        let timeout_ms = (req.timeout_ms != 0).then_some(u64::from(req.timeout_ms));
        // Offer the default window; the autotuning grows it as the reader keeps up.
        let tuner = WindowTuner::new(WINDOW, now_us());
        let open = client::open_window(id, &req.host, req.port, req.tls, timeout_ms, Some(tuner.window()));
        self.slots[i].rx_window = Some(tuner);
        self.slots[i].proxy_id = Some(id);
        self.by_proxy_id.insert(id, i);
        self.send_text(open);
    }

    pub(super) fn on_message(&mut self, m: Message) {
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

    pub(super) fn on_control(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Opened { id, window, .. } => {
                let Some(&i) = self.by_proxy_id.get(&id) else {
                    return;
                };
                if let Some(t) = self.slots[i].rx_window.as_mut() {
                    t.granted(window);
                }
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

    pub(super) fn on_data(&mut self, id: u32, bytes: Bytes) {
        let Some(&i) = self.by_proxy_id.get(&id) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        let s = &mut self.slots[i];
        // Bytes not yet in the ring are unacked, so they never exceed the window the proxy
        // last saw, which is at most the one we last advertised.
        let window = s.rx_window.as_ref().map_or(WINDOW, WindowTuner::window);
        if (s.pending_bytes + bytes.len()) as u64 > window {
            tracing::warn!(
                slot = i,
                window,
                "proxy overran the flow-control window; failing the connection"
            );
            self.fail(i, EIO); // also closes it at the proxy
            return;
        }
        if let Some(t) = s.rx_window.as_mut() {
            t.on_received(bytes.len() as u64, now_us());
        }
        s.pending_bytes += bytes.len();
        s.pending_rx.push_back(bytes);
        self.pump_rx(i);
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
