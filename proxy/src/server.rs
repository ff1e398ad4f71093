//! The listener: accepts TCP (optionally TLS), answers `GET /health`, checks origin and token,
//! negotiates the subprotocol, completes the WebSocket handshake and starts a session.

use crate::auth;
use crate::config::Config;
use crate::limits::Registry;
use crate::preauth::{client_group, group_name, Preauth, PreauthSlot};
use crate::protocol::{Dialect, BEARER_PREFIX, SUBPROTOCOL_V1, SUBPROTOCOL_V2};
use crate::session::{self, SessionCtx};
use crate::shared_limits::SharedLimits;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A client stream, plain or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    /// Delegated, so that a data frame's header and payload ([`crate::frames`]) leave in one
    /// `writev` rather than the header in a write (and a TCP segment) of its own.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A plain socket tells its read readiness; a TLS stream cannot (it may hold decrypted bytes).
impl crate::frames::ReadReady for ClientStream {
    fn poll_read_ready(&self, cx: &mut TaskContext<'_>) -> Option<Poll<std::io::Result<()>>> {
        match self {
            ClientStream::Plain(s) => Some(s.poll_read_ready(cx)),
            ClientStream::Tls(_) => None,
        }
    }
}

/// Shared by every connection handler.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub registry: Arc<Registry>,
    /// `--shared-limits`: the Redis the replicas share, if any.
    pub shared_limits: Option<Arc<SharedLimits>>,
    pub shutdown: watch::Receiver<bool>,
    /// One clone per live session; the count is how many are live.
    pub sessions: Arc<()>,
    /// `--max-sessions` places; one is taken before the 101 is written.
    pub session_slots: Arc<tokio::sync::Semaphore>,
    /// Caps on sockets not yet authenticated.
    pub preauth: Arc<Preauth>,
}

/// Runs until `shutdown` turns true, then drains sessions (up to the drain timeout).
///
/// Each accepted client is handed, in turn, to one of `shards` (single-threaded runtimes, one
/// per core: see `main.rs`), and its session and connections stay on that thread: a message
/// relayed between tasks of one session never wakes another thread. With no shards, clients
/// run on the calling runtime.
pub async fn serve(
    listener: TcpListener,
    cfg: Arc<Config>,
    shutdown: watch::Receiver<bool>,
    shards: Vec<tokio::runtime::Handle>,
) -> Result<()> {
    let acceptor = cfg.tls_server.clone().map(tokio_rustls::TlsAcceptor::from);
    let shared_limits = match &cfg.shared_limits {
        Some(url) => {
            let client = crate::shared_limits::parse_url(url).map_err(anyhow::Error::msg)?;
            Some(SharedLimits::new(client, cfg.shared_limits_ttl))
        }
        None => None,
    };
    let registry = Arc::new(Registry::new(shared_limits.clone()));
    if let Some(sh) = &shared_limits {
        let reg = registry.clone();
        tokio::spawn(sh.clone().run(move || reg.all(), cfg.limits.bytes_per_min));
    }
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        registry,
        shared_limits,
        shutdown: shutdown.clone(),
        sessions: Arc::new(()),
        session_slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_sessions)),
        preauth: Preauth::new(cfg.max_preauth, cfg.max_preauth_per_ip, cfg.ipv6_prefix),
    });
    let mut stop = shutdown.clone();
    let mut next_shard = 0usize;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        // Over a pre-authentication cap: closed before anything is read.
        let from_balancer = crate::forwarded::is_trusted(&shared.cfg.trusted_proxies, peer.ip());
        let slot = match shared.preauth.try_enter(peer.ip(), !from_balancer) {
            Ok(s) => s,
            Err(why) => {
                tracing::debug!(%peer, "closed at once: {why}");
                drop(tcp);
                continue;
            }
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let Some(shard) = shards.get(next_shard % shards.len().max(1)).cloned() else {
            tokio::spawn(async move {
                if let Err(e) = handle_client(tcp, peer, from_balancer, acceptor, shared, slot).await {
                    tracing::debug!(%peer, "client: {e:#}");
                }
            });
            continue;
        };
        next_shard = next_shard.wrapping_add(1);
        // The socket leaves this runtime's reactor and joins the shard's.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%peer, "client: could not hand over the socket: {e}");
                continue;
            }
        };
        shard.spawn(async move {
            let r = match TcpStream::from_std(tcp) {
                Ok(tcp) => handle_client(tcp, peer, from_balancer, acceptor, shared, slot).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = r {
                tracing::debug!(%peer, "client: {e:#}");
            }
        });
    }
    drop(listener);
    let live = Arc::strong_count(&shared.sessions) - 1;
    tracing::info!(sessions = live, "SIGTERM: stopped accepting; draining sessions");
    let deadline = tokio::time::Instant::now() + cfg.drain_timeout + Duration::from_secs(2);
    while Arc::strong_count(&shared.sessions) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = Arc::strong_count(&shared.sessions) - 1;
    if left > 0 {
        tracing::warn!(sessions = left, "drain timeout: exiting with sessions still open");
    }
    Ok(())
}

struct Request {
    path: String,
    query: Option<String>,
    upgrade: bool,
    key: Option<String>,
    version_ok: bool,
    origin: Option<String>,
    protocols: Vec<String>,
    /// Every `X-Forwarded-For` value, in order.
    forwarded_for: Vec<String>,
}

fn parse_request(head: &[u8]) -> Result<Request, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err("malformed HTTP request"),
    }
    if req.method != Some("GET") {
        return Err("only GET is supported");
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut r = Request {
        path,
        query,
        upgrade: false,
        key: None,
        version_ok: false,
        origin: None,
        protocols: Vec::new(),
        forwarded_for: Vec::new(),
    };
    let mut connection_upgrade = false;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        match h.name.to_ascii_lowercase().as_str() {
            "upgrade" => r.upgrade = value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection_upgrade = value.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-key" => r.key = Some(value.to_owned()),
            "sec-websocket-version" => r.version_ok = value == "13",
            "origin" => r.origin = Some(value.to_owned()),
            "x-forwarded-for" => r.forwarded_for.push(value.to_owned()),
            "sec-websocket-protocol" => r.protocols.extend(
                value
                    .split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty()),
            ),
            _ => {}
        }
    }
    r.upgrade &= connection_upgrade;
    Ok(r)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

async fn respond<S: AsyncWrite + Unpin>(s: &mut S, status: &str, body: &str) -> Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(msg.as_bytes()).await?;
    s.shutdown().await.ok();
    Ok(())
}

/// Reads the request head; returns it and any bytes the client sent after it.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.context("reading the request")?;
        if n == 0 {
            anyhow::bail!("client closed before sending a request");
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = scan_from + pos + 4;
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            anyhow::bail!("request head larger than {MAX_REQUEST_HEAD} bytes");
        }
    }
}

pub fn ws_config(cfg: &Config) -> WebSocketConfig {
    // Our own message limit answers with an `error` and keeps the session; tungstenite's
    // hard limit (above it) only guards memory against absurd frames.
    let hard = cfg.limits.max_message.saturating_mul(2).saturating_add(64 * 1024);
    // tungstenite zero-fills its whole read buffer on the first read (on a plain socket, the
    // first that finds bytes: see frames::ReadGate), so its size is resident per session once
    // the client has sent something: 16 KiB keeps a session small; frames larger than it still
    // arrive whole.
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
}

async fn handle_client(
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    from_balancer: bool,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut preauth: PreauthSlot,
) -> Result<()> {
    tcp.set_nodelay(true).ok();
    crate::relay::set_keepalive(&tcp);
    let cfg = &shared.cfg;
    let setup = async {
        // A trusted balancer's PROXY header comes first, before any TLS.
        let proxied = match from_balancer {
            true => crate::forwarded::read_proxy_header(&mut tcp).await?,
            false => None,
        };
        // The real client is known now: its own pre-auth cap applies before the TLS work.
        if let Some(client) = proxied {
            preauth.rebind(client.ip()).map_err(anyhow::Error::msg)?;
        }
        let mut stream = match &acceptor {
            None => ClientStream::Plain(tcp),
            Some(a) => ClientStream::Tls(Box::new(a.accept(tcp).await.context("TLS handshake")?)),
        };
        let (head, rest) = read_head(&mut stream).await?;
        anyhow::Ok((stream, head, rest, proxied))
    };
    let (mut stream, head, rest, proxied) = tokio::time::timeout(cfg.handshake_timeout, setup)
        .await
        .context("handshake timed out")??;

    let req = match parse_request(&head) {
        Ok(r) => r,
        Err(why) => return respond(&mut stream, "400 Bad Request", why).await,
    };
    // Behind a trusted balancer the client is the one it names (PROXY header, else
    // X-Forwarded-For); every later use of `peer` (identity, logs, audit) sees that client.
    if from_balancer {
        let balancer = peer;
        match proxied {
            Some(client) => peer = client,
            None => match crate::forwarded::from_forwarded_for(&req.forwarded_for, &cfg.trusted_proxies) {
                Ok(Some(ip)) => peer = SocketAddr::new(ip, 0),
                Ok(None) => {}
                Err(why) => return respond(&mut stream, "400 Bad Request", &why).await,
            },
        }
        tracing::debug!(%balancer, client = %peer, "client address from a trusted proxy");
        // X-Forwarded-For names the client only now; its pre-auth cap applies from here on.
        if let Err(why) = preauth.rebind(peer.ip()) {
            tracing::debug!(%balancer, client = %peer, "closed: {why}");
            return respond(&mut stream, "429 Too Many Requests", why).await;
        }
    }
    if !req.upgrade {
        return if req.path == "/health" {
            // Still 200 in fallback: the replica serves, with its local limits only.
            let body = match &shared.shared_limits {
                None => "ok".to_owned(),
                Some(sh) => format!("ok {}", sh.health()),
            };
            respond(&mut stream, "200 OK", &body).await
        } else {
            respond(
                &mut stream,
                "426 Upgrade Required",
                "this is a WebSocket endpoint; GET /health for status",
            )
            .await
        };
    }
    let Some(key) = req.key.as_deref().filter(|_| req.version_ok) else {
        return respond(
            &mut stream,
            "400 Bad Request",
            "WebSocket version 13 with a key is required",
        )
        .await;
    };
    // Wisp (spec "Choosing a Websocket URL"): `/wisp/`, or `/wisp/<JWT>/` with the token as
    // the path prefix the spec allows for gatekeeping.
    let wisp = match crate::wisp_session::endpoint(&req.path) {
        Some(Err(why)) => return respond(&mut stream, "404 Not Found", why).await,
        Some(Ok(path_token)) => Some(path_token),
        None => None,
    };
    if !auth::origin_allowed(&cfg.origins, req.origin.as_deref()) {
        tracing::warn!(%peer, origin = req.origin.as_deref().unwrap_or(""), "rejected: origin not allowed");
        return respond(&mut stream, "403 Forbidden", "origin not allowed").await;
    }
    let token = query_param(req.query.as_deref(), "token")
        .or_else(|| wisp.clone().flatten())
        .or_else(|| {
            req.protocols
                .iter()
                .find_map(|p| p.strip_prefix(BEARER_PREFIX).map(str::to_owned))
        });
    let identity = match &cfg.jwt_secret {
        None => group_name(&client_group(peer.ip(), cfg.ipv6_prefix)),
        Some(secret) => {
            let verdict = match token {
                None => Err(auth::AuthError::Missing),
                Some(t) => auth::verify(secret, &t),
            };
            match verdict {
                Ok(sub) => sub,
                Err(e) => {
                    tracing::warn!(%peer, "rejected: {e}");
                    return respond(&mut stream, "401 Unauthorized", &format!("unauthorized: {e}")).await;
                }
            }
        }
    };
    // Both session places are taken here, atomically, before the 101 is written.
    let Ok(global_slot) = shared.session_slots.clone().try_acquire_owned() else {
        return respond(&mut stream, "503 Service Unavailable", "limit: sessions").await;
    };
    let identity = shared.registry.get(&identity, &cfg.limits);
    let identity_slot = match identity.try_session(cfg.max_sessions_per_identity).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%peer, identity = %identity.name, "{e}");
            return respond(&mut stream, "429 Too Many Requests", &e).await;
        }
    };
    if *shared.shutdown.borrow() {
        return respond(&mut stream, "503 Service Unavailable", "server shutting down").await;
    }
    // Wisp picks no subprotocol: a v2 client offering `wisp-v2` then speaks v1 (v2 is a draft).
    let (dialect, chosen) = if wisp.is_some() {
        (Dialect::V1, None)
    } else if req.protocols.iter().any(|p| p == SUBPROTOCOL_V2) {
        (Dialect::V2, Some(SUBPROTOCOL_V2))
    } else if req.protocols.iter().any(|p| p == SUBPROTOCOL_V1) {
        (Dialect::V1, Some(SUBPROTOCOL_V1))
    } else {
        (Dialect::V1, None)
    };
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = chosen {
        resp.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    resp.push_str("\r\n");
    stream
        .write_all(resp.as_bytes())
        .await
        .context("writing the handshake")?;

    drop(preauth);
    let mut ws_cfg = ws_config(cfg);
    if wisp.is_some() {
        ws_cfg = ws_cfg.read_buffer_size(crate::wisp_session::READ_BUFFER);
    }
    let ws = WebSocketStream::from_partially_read(
        crate::frames::FrameIo::with_read_ahead(stream, &rest),
        rest,
        Role::Server,
        Some(ws_cfg),
    )
    .await;
    tracing::debug!(%peer, identity = %identity.name, ?dialect, "session start");
    let ctx = SessionCtx {
        cfg: cfg.clone(),
        identity,
        peer,
        dialect,
        shutdown: shared.shutdown.clone(),
        _live: shared.sessions.clone(),
        _slots: (global_slot, identity_slot),
    };
    if wisp.is_some() {
        session::drive::<crate::wisp_session::WispSession, _>(ws, ctx).await;
    } else {
        session::drive::<session::LwSession, _>(ws, ctx).await;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A data frame's header and payload leave in one system call ([`crate::frames`]) only if
    /// the client stream passes vectored writes through.
    #[tokio::test]
    async fn client_streams_write_vectored() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let io = crate::frames::FrameIo::new(ClientStream::Plain(c));
        assert!(io.is_write_vectored());
    }

    #[test]
    fn request_parsing() {
        let r = parse_request(
            b"GET /ws?x=1&token=abc HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
              Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: lwproxy.v2, bearer.t.u.v\r\n\r\n",
        )
        .unwrap();
        assert!(r.upgrade && r.version_ok);
        assert_eq!(r.path, "/ws");
        assert_eq!(query_param(r.query.as_deref(), "token").as_deref(), Some("abc"));
        assert_eq!(r.protocols, vec!["lwproxy.v2", "bearer.t.u.v"]);
        assert!(parse_request(b"POST / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request(b"\x00\x01garbage\r\n\r\n").is_err());
    }
}
