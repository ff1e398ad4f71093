//! The loopback pieces: an HTTP server, a TLS echo server (certificate from
//! a test CA made here), and the real lwproxy binary trusting that CA.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("lwhost-wasm-test.{}.{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Servers {
    pub http_port: u16,
    pub tls_port: u16,
    pub ca_file: PathBuf,
    pub dir: TempDir,
}

impl Servers {
    pub async fn start() -> Result<Servers> {
        let dir = TempDir::new()?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let http_port = http.local_addr()?.port();
        tokio::spawn(serve_http(http));

        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lwhost wasm-test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem())?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
            .signed_by(&leaf_key, &ca)?;
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("test key: {e}"))?;
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], key)?;
        let tls = TcpListener::bind("127.0.0.1:0").await?;
        let tls_port = tls.local_addr()?.port();
        tokio::spawn(serve_tls_echo(
            tls,
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ));
        Ok(Servers {
            http_port,
            tls_port,
            ca_file,
            dir,
        })
    }
}

/// HTTP/1.0: echoes the path in a small page, or `/bulk/N` bytes of i % 251.
async fn serve_http(listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req);
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            if let Some(n) = path.strip_prefix("/bulk/").and_then(|n| n.parse::<usize>().ok()) {
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {n}\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block: Vec<u8> = (0..251 * 256).map(|i| (i % 251) as u8).collect();
                let mut sent = 0;
                while sent < n {
                    let k = (n - sent).min(block.len());
                    if s.write_all(&block[..k]).await.is_err() {
                        return;
                    }
                    sent += k;
                }
            } else {
                let body = format!("<html>you asked for {path}</html>\n");
                let resp = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            }
            let _ = s.shutdown().await;
        });
    }
}

async fn serve_tls_echo(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(s).await else {
                return;
            };
            let mut buf = [0u8; 4096];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tls.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tls.shutdown().await;
        });
    }
}

/// A running lwproxy, killed on drop.
pub struct Proxy {
    pub binary: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Proxy {
    /// Starts lwproxy admitting exactly the two servers' ports on loopback,
    /// trusting the test CA; on `port` (Some: a restart) or a free one.
    pub fn start(binary: &Path, servers: &Servers, port: Option<u16>) -> Result<Proxy> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Self::try_start(binary, servers, port) {
                Ok(p) => return Ok(p),
                // The old port may linger a moment after a kill.
                Err(e) if port.is_some() && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "lwproxy restart, retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_start(binary: &Path, servers: &Servers, port: Option<u16>) -> Result<Proxy> {
        let (h, t) = (servers.http_port, servers.tls_port);
        let mut child = Command::new(binary)
            .args([
                "--listen",
                &format!("127.0.0.1:{}", port.unwrap_or(0)),
                "--no-auth",
            ])
            .args([
                "--allow",
                &format!("127.0.0.1/32:{h}"),
                "--allow",
                &format!("127.0.0.1/32:{t}"),
            ])
            .args(["--ports", &format!("{h},{t}")])
            .arg("--extra-ca")
            .arg(&servers.ca_file)
            .args([
                "--bytes-per-min",
                "0",
                "--conns-per-min",
                "0",
                "--max-concurrent",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break l,
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("lwproxy exited before listening");
                }
            }
        };
        // Keep draining stdout so the proxy never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in {line:?}"))?;
        Ok(Proxy {
            binary: binary.to_path_buf(),
            port,
            child: Some(child),
        })
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}
