//! Helpers for the end-to-end tests: the real lwproxy and lwhost binaries
//! on loopback, loopback TCP servers, and a Rust client that plays the
//! user-mode Linux side (connects to lwhost, maps the region, drives it
//! through `Worker`).

#![allow(dead_code)] // not every test binary uses every helper

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lwhost::errno::*;
use lwhost::worker::{StoreRequest, Worker};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// The lwproxy binary, built on first use with the same profile.
pub fn lwproxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| lwtest::cargo_bin("lwproxy", "lwproxy").expect("building lwproxy"))
}

pub fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lwhost-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Reads the child's stdout until a line contains `marker`; returns it.
fn wait_line(child: &mut Child, marker: &str) -> String {
    let out = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.expect("reading child stdout");
        if line.contains(marker) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return line;
        }
    }
    panic!("child exited before printing {marker:?}");
}

/// A running lwproxy (lwtest's launcher); killed on drop.
pub type Proxy = lwtest::proxy::Proxy;

/// Starts lwproxy on `listen` with loopback allowed, no limits that would get in a test's
/// way, text logs, plus `extra` and `env`.
pub fn start_proxy(listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Proxy {
    let mut cmd = lwtest::proxy::loopback_command(lwproxy_bin(), listen);
    cmd.args(extra).envs(env.iter().copied());
    Proxy::spawn(cmd).expect("starting lwproxy")
}

/// [`start_proxy`] on a free port, with `--no-auth`.
pub fn proxy_no_auth() -> Proxy {
    start_proxy("127.0.0.1:0", &["--no-auth"], &[])
}

/// A running lwhost; SIGKILLed on drop.
pub struct Lwhost {
    pub child: Child,
    pub socket: PathBuf,
}

impl Lwhost {
    /// Starts lwhost; a token goes in its environment (`LWHOST_TOKEN`).
    pub fn start(proxy_url: &str, dir: &Path, quota: u64, token: Option<&str>) -> Lwhost {
        Self::start_with(proxy_url, dir, quota, token, &[])
    }

    /// As [`Lwhost::start`], with extra command-line arguments.
    pub fn start_with(
        proxy_url: &str,
        dir: &Path,
        quota: u64,
        token: Option<&str>,
        extra: &[&str],
    ) -> Lwhost {
        let socket = dir.join("lwhost.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lwhost"));
        cmd.args(["--proxy", proxy_url, "--store"])
            .arg(dir.join("store"))
            .args(["--quota", &quota.to_string(), "--socket"])
            .arg(&socket)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("LWHOST_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(t) = token {
            cmd.env("LWHOST_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("starting lwhost");
        let line = wait_line(&mut child, "lwhost: listening on");
        assert!(line.ends_with(&socket.display().to_string()), "{line}");
        Lwhost { child, socket }
    }

    pub fn connect(&self) -> Guest {
        let client = lwhost::uml::connect(&self.socket).expect("connecting to lwhost");
        let worker = Worker::new(client.region.clone());
        Guest { client, worker }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Lwhost {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The user-mode-Linux side, in Rust.
pub struct Guest {
    pub client: lwhost::uml::Client,
    pub worker: Worker,
}

impl Guest {
    fn wait(&self, seen: &mut u32, deadline: Instant) -> Result<(), i32> {
        if Instant::now() > deadline {
            return Err(ETIMEDOUT);
        }
        // As the um backend does: lwhost's end of the socket closing means
        // it died and nothing will ever complete.
        if self.client.peer_gone() {
            return Err(ECONNRESET);
        }
        *seen = self.worker.wait_guest_doorbell(*seen, Duration::from_millis(100));
        Ok(())
    }

    /// Opens and waits until the connection is usable (POLLOUT) or failed.
    pub fn open(&self, host: &str, port: u16) -> Result<i32, i32> {
        let id = self.worker.net_open(host.as_bytes(), port.into(), 0, 0);
        if id < 0 {
            return Err(-id);
        }
        let deadline = Instant::now() + DEADLINE;
        let mut seen = self.worker.guest_doorbell();
        loop {
            let p = self.worker.net_poll(id);
            if p < 0 {
                return Err(-p);
            }
            if p as u32 & lwabi::LWHOST_POLL_ERR != 0 {
                self.worker.net_close(id);
                return Err(p >> lwabi::LWHOST_POLL_ERRNO_SHIFT);
            }
            if p as u32 & lwabi::LWHOST_POLL_OUT != 0 {
                return Ok(id);
            }
            self.wait(&mut seen, deadline)?;
        }
    }

    pub fn write_all(&self, id: i32, mut data: &[u8]) -> Result<(), i32> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = self.worker.guest_doorbell();
        while !data.is_empty() {
            match self.worker.net_write(id, data) {
                n if n > 0 => data = &data[n as usize..],
                e if e == -EAGAIN => self.wait(&mut seen, deadline)?,
                e => return Err(-e),
            }
        }
        Ok(())
    }

    /// Reads into `buf` once, waiting for data; Ok(0) at end of stream.
    pub fn read_some(&self, id: i32, buf: &mut [u8]) -> Result<usize, i32> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = self.worker.guest_doorbell();
        loop {
            match self.worker.net_read(id, buf) {
                n if n >= 0 => return Ok(n as usize),
                e if e == -EAGAIN => self.wait(&mut seen, deadline)?,
                e => return Err(-e),
            }
        }
    }

    pub fn read_to_end(&self, id: i32) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match self.read_some(id, &mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Runs a store request to completion; returns (result, output).
    pub fn store(&self, req: &StoreRequest<'_>) -> (i32, Vec<u8>) {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = self.worker.guest_doorbell();
        let ticket = loop {
            match self.worker.store_submit(req) {
                t if t == -EBUSY => {
                    if let Err(e) = self.wait(&mut seen, deadline) {
                        return (-e, Vec::new());
                    }
                }
                t if t < 0 => return (t, Vec::new()),
                t => break t,
            }
        };
        let mut out = vec![0u8; 65536];
        loop {
            match self.worker.store_poll(ticket, &mut out) {
                r if r == -EINPROGRESS => {
                    if let Err(e) = self.wait(&mut seen, deadline) {
                        return (-e, Vec::new());
                    }
                }
                r => {
                    out.truncate(r.max(0) as usize);
                    return (r, out);
                }
            }
        }
    }

    /// Writes `value` under `key` in chunks of `chunk` bytes and commits.
    pub fn put(&self, key: &[u8], value: &[u8], chunk: usize) -> i32 {
        self.put_observed(key, value, chunk, &|_| {})
    }

    /// As `put`, calling `before_chunk(i)` before chunk `i` is submitted.
    pub fn put_observed(&self, key: &[u8], value: &[u8], chunk: usize, before_chunk: &dyn Fn(usize)) -> i32 {
        use lwabi::{LWHOST_STORE_COMMIT, LWHOST_STORE_TRUNC, LWHOST_STORE_WRITE};
        let chunks: Vec<&[u8]> = if value.is_empty() {
            vec![&[][..]]
        } else {
            value.chunks(chunk).collect()
        };
        let mut offset = 0u64;
        for (i, c) in chunks.iter().enumerate() {
            let mut flags = 0;
            if i == 0 {
                flags |= LWHOST_STORE_TRUNC;
            }
            if i == chunks.len() - 1 {
                flags |= LWHOST_STORE_COMMIT;
            }
            before_chunk(i);
            let req = StoreRequest {
                op: LWHOST_STORE_WRITE,
                flags,
                key,
                offset,
                data: c,
                ..Default::default()
            };
            let (r, _) = self.store(&req);
            if r < 0 {
                return r;
            }
            offset += c.len() as u64;
        }
        0
    }

    /// Reads a whole value; Err(errno) on failure.
    pub fn get(&self, key: &[u8]) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        loop {
            let req = StoreRequest {
                op: lwabi::LWHOST_STORE_READ,
                key,
                offset: out.len() as u64,
                capacity: 65536,
                ..Default::default()
            };
            let (r, data) = self.store(&req);
            match r {
                0 => return Ok(out),
                r if r < 0 => return Err(-r),
                _ => out.extend_from_slice(&data),
            }
        }
    }
}

/// A loopback HTTP/1.0 server answering every request with `body(path)`.
pub fn http_server(body: fn(&str) -> Vec<u8>) -> SocketAddr {
    lwtest::servers::http(body).expect("http server")
}

/// A loopback server that runs `serve` on each connection in a thread.
pub fn tcp_server(serve: fn(TcpStream)) -> SocketAddr {
    lwtest::servers::tcp(serve).expect("tcp server")
}

/// Deterministic test bytes.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Splits an HTTP response into (head, body).
pub fn split_http(resp: &[u8]) -> (String, Vec<u8>) {
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header");
    (
        String::from_utf8_lossy(&resp[..at]).into_owned(),
        resp[at + 4..].to_vec(),
    )
}
