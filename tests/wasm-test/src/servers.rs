//! The loopback pieces: an HTTP server, a TLS echo server (certificate from
//! a test CA made here), and the real lwproxy binary trusting that CA, all
//! from lwtest.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use lwtest::ca::TestCa;
use lwtest::{servers, TempDir};

pub struct Servers {
    pub http_port: u16,
    pub tls_port: u16,
    pub ca_file: PathBuf,
    pub dir: TempDir,
}

impl Servers {
    pub fn start() -> Result<Servers> {
        let dir = TempDir::new("wasm-test")?;
        let http_port = servers::http(http_body)?.port();
        let ca = TestCa::new(dir.path(), "lwhost wasm-test CA")?;
        let tls_port = servers::tls_echo(ca.server_config)?.port();
        Ok(Servers {
            http_port,
            tls_port,
            ca_file: ca.ca_pem,
            dir,
        })
    }
}

/// The HTTP server's body for `path`: `/bulk/N` is N bytes of i % 251, anything else a small
/// page naming the path.
fn http_body(path: &str) -> Vec<u8> {
    match path.strip_prefix("/bulk/").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => (0..n).map(|i| (i % 251) as u8).collect(),
        None => format!("<html>you asked for {path}</html>\n").into_bytes(),
    }
}

/// A running lwproxy, killed on drop.
pub struct Proxy {
    pub binary: PathBuf,
    pub port: u16,
    proc: Option<lwtest::proxy::Proxy>,
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
        let mut cmd = Command::new(binary);
        cmd.args([
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
        .args(lwtest::proxy::NO_LIMITS)
        .stderr(Stdio::null());
        let proc =
            lwtest::proxy::Proxy::spawn(cmd).with_context(|| format!("running {}", binary.display()))?;
        Ok(Proxy {
            binary: binary.to_path_buf(),
            port: proc.addr.port(),
            proc: Some(proc),
        })
    }

    pub fn kill(&mut self) {
        self.proc = None;
    }
}
