//! Test support for lwnet's crates (a dev-dependency; nothing in production depends on it).
//!
//! - [`proxy`]: the real `lwproxy` binary on loopback ([`proxy::Proxy`]), found or built with
//!   the caller's profile ([`cargo_bin`]).
//! - [`ca`]: a throwaway CA and a `localhost`/`127.0.0.1` certificate it signed, as PEM files
//!   and as a rustls server configuration.
//! - [`servers`]: loopback TCP and TLS servers (echo, a byte source, HTTP/1.0, your own
//!   handler), each on a fresh port, one thread per connection, so they serve sync tests and
//!   async ones (any runtime) alike.
//! - [`TempDir`], [`free_port`], [`wait_port`], [`pattern`].
//!
//! Errors are `anyhow` errors that say what failed; the helpers never panic on their own.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod ca;
pub mod proxy;
pub mod servers;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/lwtest-<tag>-<pid>-<n>` (`n` counts within this process), empty.
    pub fn new(tag: &str) -> Result<TempDir> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("lwtest-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `path().join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port nothing listened on a moment ago (bound to port 0, then released).
/// Another process may take it before the caller does: use it only for programs that cannot
/// listen on port 0 and report their address.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("binding a loopback port")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, polling every 25 ms up
/// to `timeout`.
pub fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on port {port} after {timeout:?}")
}

/// The test byte pattern: byte `i` of a stream is `(i % 65536) % 251`, what
/// [`servers::source`] sends.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i % (64 * 1024)) % 251) as u8).collect()
}

/// The path of binary `name` of package `package` of this workspace, built (or found up to
/// date) by `cargo build -p PACKAGE --bin NAME` in the profile of the running test or example:
/// `target/<profile>/NAME`, `<profile>` read from this executable's path
/// (`target/<profile>/deps/...` or `target/<profile>/examples/...`). `$CARGO` names cargo when
/// set (cargo sets it for tests and `cargo run`).
pub fn cargo_bin(package: &str, name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("the running executable's path")?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("no target/<profile> above {}", exe.display()))?;
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["build", "-q", "-p", package, "--bin", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let ok = cmd
        .status()
        .with_context(|| format!("running cargo build -p {package}"))?
        .success();
    let bin = dir.join(name);
    if !ok || !bin.exists() {
        bail!(
            "{} missing (cargo build -p {package} --bin {name} failed)",
            bin.display()
        );
    }
    Ok(bin)
}
