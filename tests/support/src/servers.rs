//! Loopback servers for tests and benchmarks: each binds `127.0.0.1:0`, serves every connection
//! in a thread of its own for as long as the process lives, and returns its address. Plain
//! threads (no async runtime), so sync tests and async ones use the same servers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use anyhow::{Context, Result};

/// A TLS connection as the handlers of [`tls`] get it.
pub type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// Runs `handler` on every connection, each in a thread; accept errors are skipped.
pub fn tcp(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback server")?;
    let addr = listener.local_addr()?;
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || handler(conn));
        }
    });
    Ok(addr)
}

/// Echoes everything; on the client's FIN, finishes and closes.
pub fn echo() -> Result<SocketAddr> {
    tcp(|mut s| {
        let _ = s.set_nodelay(true);
        let Ok(mut r) = s.try_clone() else { return };
        let _ = std::io::copy(&mut r, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// Sends `n` bytes of [`crate::pattern`] to each client, closes its sending side, then reads
/// until the client closes (so closing never resets what is still in flight).
pub fn source(n: usize) -> Result<SocketAddr> {
    tcp(move |mut s| {
        let _ = s.set_nodelay(true);
        let block = crate::pattern(64 * 1024);
        let mut left = n;
        while left > 0 {
            let k = left.min(block.len());
            if s.write_all(&block[..k]).is_err() {
                return;
            }
            left -= k;
        }
        let _ = s.shutdown(Shutdown::Write);
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    })
}

/// HTTP/1.0: reads a request head (up to 16 KiB), answers `200 OK` with `body(path)` and a
/// Content-Length, and closes.
pub fn http(body: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Result<SocketAddr> {
    tcp(move |mut s| {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
            if req.len() > 16 * 1024 {
                return;
            }
        }
        let text = String::from_utf8_lossy(&req);
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body = body(&path);
        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        if s.write_all(head.as_bytes()).is_ok() && s.write_all(&body).is_ok() {
            let _ = s.shutdown(Shutdown::Write);
        }
    })
}

/// Runs `handler` on every connection once its TLS handshake (with `config`) completed;
/// connections whose handshake fails are dropped.
pub fn tls(
    config: Arc<rustls::ServerConfig>,
    handler: impl Fn(TlsStream) + Send + Sync + 'static,
) -> Result<SocketAddr> {
    tcp(move |mut sock| {
        let Ok(mut conn) = rustls::ServerConnection::new(Arc::clone(&config)) else {
            return;
        };
        while conn.is_handshaking() {
            if conn.complete_io(&mut sock).is_err() {
                return;
            }
        }
        handler(rustls::StreamOwned::new(conn, sock));
    })
}

/// A TLS echo server: echoes until the client closes, then sends close_notify and closes.
pub fn tls_echo(config: Arc<rustls::ServerConfig>) -> Result<SocketAddr> {
    tls(config, |mut s| {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        s.conn.send_close_notify();
        let _ = s.flush();
        let _ = s.sock.shutdown(Shutdown::Write);
    })
}
