//! The wasmtime tier of lwhost (`tools/test/wasm-host.sh`).
//!
//! The browser build of the worker side (`host/web`'s `lwhost_web.wasm`:
//! `lwhost::worker::Worker` compiled to wasm32 with shared memory) runs in
//! several wasmtime threads, one instance each, over ONE shared memory. The
//! region inside that memory is served by the REAL native main side
//! (`lwhost::region_service::spawn` over `Region::from_raw`) against a real
//! `lwproxy` and loopback TCP and TLS servers this program starts. The
//! module's `lwhost.atomic_wait32/notify` imports are real futexes on the
//! shared words, so native and wasm sides wake each other as in production.
//!
//! Prints one line per check (`ok NAME` / `FAIL NAME: why`); exits 1 if any
//! failed.

mod servers;
mod shim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::servers::{Proxy, Servers};
use crate::shim::{Guest, Shim};

#[derive(Parser, Debug)]
#[command(about = "Runs lwhost's wasm32 worker side under wasmtime against the native main side and lwproxy")]
struct Args {
    /// The lwhost-web module (host/web/build.sh puts it in $LW_BUILD/web/wasm/).
    #[arg(long)]
    shim: PathBuf,
    /// The lwproxy binary to start.
    #[arg(long)]
    proxy: PathBuf,
    /// Worker threads that make requests at once.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

const TIMEOUT: Duration = Duration::from_secs(20);

/// Errno values the checks expect: the kernel's (asm-generic) numbering.
use lwabi::errno;

struct Report {
    failed: usize,
    total: usize,
}

impl Report {
    fn check(&mut self, name: &str, result: Result<()>) {
        self.total += 1;
        match result {
            Ok(()) => println!("ok {name}"),
            Err(e) => {
                self.failed += 1;
                println!("FAIL {name}: {e:#}");
            }
        }
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
    let servers = Servers::start().context("starting loopback servers")?;
    let mut proxy = Proxy::start(&args.proxy, &servers, None).context("starting lwproxy")?;
    let shim = Arc::new(Shim::load(&args.shim).context("loading the shim module")?);

    let store_dir = servers.dir.path().join("store");
    let main = {
        let _enter = rt.enter();
        lwhost::region_service::spawn(
            shim.region().context("the region inside the shared memory")?,
            lwhost::region_service::MainConfig {
                proxy_url: format!("ws://127.0.0.1:{}/", proxy.port),
                token: None,
                store_dir,
                store_quota: 64 << 20,
                extra_ca: Vec::new(),
            },
        )
        .context("starting the native main side")?
    };

    let mut report = Report { failed: 0, total: 0 };
    report.check("wasm_host.region_served", wait_main_alive(&shim));
    report.check(
        "wasm_host.http_threads",
        http_threads(&shim, &servers, args.threads),
    );
    report.check(
        "wasm_host.bulk_flow_control",
        bulk_with_neighbours(&shim, &servers),
    );
    report.check("wasm_host.tls_echo", tls_echo(&shim, &servers));
    report.check("wasm_host.store", store_ops(&shim));
    report.check("wasm_host.hostile_pointers", hostile_pointers(&shim, &servers));
    report.check("wasm_host.hostile_ids", hostile_ids(&shim, &servers));
    report.check("wasm_host.proxy_loss", proxy_loss(&shim, &servers, &mut proxy));

    rt.block_on(main.shutdown());
    report.check("wasm_host.main_gone", main_gone(&shim));
    drop(proxy);
    println!("{} checks, {} failed", report.total, report.failed);
    if report.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn wait_main_alive(shim: &Shim) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while !shim.main_alive() {
        if Instant::now() > deadline {
            bail!("main_alive never became 1");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// GET `path` through the proxy from one guest thread; the whole response.
fn http_get(g: &mut Guest, port: u16, path: &str) -> Result<Vec<u8>> {
    let id = g.connect("127.0.0.1", port, 0, TIMEOUT)?;
    g.write_all(
        id,
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
        TIMEOUT,
    )?;
    let r = g.net_shutdown(id);
    if r != 0 {
        bail!("shutdown: {r}");
    }
    let body = g.read_to_end(id, 4096, TIMEOUT)?;
    g.net_close(id);
    Ok(body)
}

fn http_threads(shim: &Arc<Shim>, servers: &Servers, threads: usize) -> Result<()> {
    let port = servers.http_port;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let shim = shim.clone();
            std::thread::spawn(move || -> Result<()> {
                let mut g = shim.guest()?;
                for round in 0..3 {
                    let path = format!("/t{t}/r{round}");
                    let body = http_get(&mut g, port, &path)?;
                    let text = String::from_utf8_lossy(&body);
                    if !text.starts_with("HTTP/1.0 200") || !text.contains(&path) {
                        bail!(
                            "thread {t}: unexpected response {:?}",
                            &text[..text.len().min(120)]
                        );
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a guest thread panicked"))??;
    }
    Ok(())
}

/// 8 MiB through 4 KiB reads (many ring refills and acks) while another
/// thread does small requests: the bulk reader never blocks the other.
fn bulk_with_neighbours(shim: &Arc<Shim>, servers: &Servers) -> Result<()> {
    let port = servers.http_port;
    let total = 8 << 20;
    let bulk = {
        let shim = shim.clone();
        std::thread::spawn(move || -> Result<()> {
            let mut g = shim.guest()?;
            let body = http_get(&mut g, port, &format!("/bulk/{total}"))?;
            let start = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .context("no header end")?
                + 4;
            let data = &body[start..];
            if data.len() != total {
                bail!("got {} bytes, want {total}", data.len());
            }
            if let Some(i) = data.iter().enumerate().position(|(i, b)| *b != (i % 251) as u8) {
                bail!("byte {i} corrupted");
            }
            Ok(())
        })
    };
    let mut g = shim.guest()?;
    for i in 0..10 {
        let body = http_get(&mut g, port, &format!("/side/{i}"))?;
        if !String::from_utf8_lossy(&body).contains(&format!("/side/{i}")) {
            bail!("side request {i} failed");
        }
    }
    bulk.join().map_err(|_| anyhow::anyhow!("bulk thread panicked"))?
}

fn tls_echo(shim: &Arc<Shim>, servers: &Servers) -> Result<()> {
    let mut g = shim.guest()?;
    let id = g.connect("127.0.0.1", servers.tls_port, lwabi::LWHOST_OPEN_TLS, TIMEOUT)?;
    let msg = b"hello over tls from wasm\n";
    g.write_all(id, msg, TIMEOUT)?;
    let r = g.net_shutdown(id);
    if r != 0 {
        bail!("shutdown: {r}");
    }
    let back = g.read_to_end(id, 4096, TIMEOUT)?;
    g.net_close(id);
    if back != msg {
        bail!("echo mismatch: {:?}", String::from_utf8_lossy(&back));
    }
    Ok(())
}

fn store_ops(shim: &Arc<Shim>) -> Result<()> {
    let mut g = shim.guest()?;
    let value: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 256) as u8).collect();
    g.store_put(b"wt/dir/a", &value, TIMEOUT)?;
    g.store_put(b"wt/dir/b", b"small", TIMEOUT)?;
    let back = g.store_get(b"wt/dir/a", value.len() + 10, TIMEOUT)?;
    if back != value {
        bail!("read back {} bytes, differing", back.len());
    }
    let list = g.store_list(b"wt/", 4096, TIMEOUT)?;
    if list != b"wt/dir/a\0wt/dir/b\0" {
        bail!("list: {:?}", String::from_utf8_lossy(&list));
    }
    let r = g.store_simple(lwabi::LWHOST_STORE_DELETE, b"wt/dir/b", TIMEOUT)?;
    if r != 0 {
        bail!("delete: {r}");
    }
    let r = g.store_simple(lwabi::LWHOST_STORE_STAT, b"wt/dir/b", TIMEOUT)?;
    if r != -errno::ENOENT {
        bail!("stat after delete: {r}");
    }
    let r = g.store_simple(lwabi::LWHOST_STORE_STAT, b"wt/../x", TIMEOUT)?;
    if r != -errno::EINVAL {
        bail!("dot-dot key: {r}");
    }
    Ok(())
}

fn expect(what: &str, got: i32, want: i32, bad: &mut Vec<String>) {
    if got != want {
        bad.push(format!("{what} = {got}, want {want}"));
    }
}

/// Pointers past the end of memory, wrapping, null, into the region: all
/// -EFAULT, nothing traps, and the thread still works afterwards.
fn hostile_pointers(shim: &Arc<Shim>, servers: &Servers) -> Result<()> {
    let mut g = shim.guest()?;
    let id = g.connect("127.0.0.1", servers.http_port, 0, TIMEOUT)?;
    let end = g.memory_len() as u32;
    let region = shim.layout.region;
    let mut bad = Vec::new();
    // Reads into and writes from buffers the module must refuse: (what,
    // export, pointer, length).
    let buffers = [
        ("read past end", "lw_net_read", end - 2, 16),
        ("read at end", "lw_net_read", end, 1),
        ("read null", "lw_net_read", 0, 16),
        ("read wrapping", "lw_net_read", 0xffff_fff0, 0x100),
        ("read huge len", "lw_net_read", g.scratch, u32::MAX),
        ("read into region", "lw_net_read", region + 64, 16),
        ("write past end", "lw_net_write", end - 1, 2),
        ("write from region", "lw_net_write", region, 8),
    ];
    for (what, export, ptr, len) in buffers {
        expect(what, g.call3(export, id, ptr, len)?, -errno::EFAULT, &mut bad);
    }
    expect(
        "open host past end",
        g.net_open_raw(end - 3, 10, servers.http_port as u32)?,
        -errno::EFAULT,
        &mut bad,
    );
    expect(
        "open empty host",
        g.net_open_raw(g.scratch, 0, servers.http_port as u32)?,
        -errno::EINVAL,
        &mut bad,
    );
    expect(
        "store_poll past end",
        g.call3("lw_store_poll", 1, end - 4, 64)?,
        -errno::EFAULT,
        &mut bad,
    );
    expect(
        "store_submit req past end",
        g.store_submit_raw(end - 8, g.scratch, 1024)?,
        -errno::EFAULT,
        &mut bad,
    );
    // Well-placed requests whose key is out of bounds: its offset points past
    // the area, or it is longer than a key may be: (what, key offset, key
    // length, area length, errno).
    let keys = [
        ("store key past area", 4000, 200, 1024, errno::EFAULT),
        ("store key too long", 64, 513, 4096, errno::ENAMETOOLONG),
    ];
    for (what, key, key_len, area, want) in keys {
        let req = lwabi::lwhost_store_req {
            op: lwabi::LWHOST_STORE_STAT,
            key,
            key_len,
            ..Default::default()
        };
        g.put_struct(0, &req)?;
        let got = g.store_submit_raw(g.scratch, g.scratch, area)?;
        expect(what, got, -want, &mut bad);
    }
    // Still a working connection after all that.
    g.write_all(id, b"GET /after HTTP/1.0\r\n\r\n", TIMEOUT)?;
    g.net_shutdown(id);
    let body = g.read_to_end(id, 4096, TIMEOUT)?;
    g.net_close(id);
    if !String::from_utf8_lossy(&body).contains("/after") {
        bad.push("connection unusable after hostile calls".into());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        bail!("{}", bad.join("; "))
    }
}

/// Ids that are negative, out of range, stale (old generation) or closed.
fn hostile_ids(shim: &Arc<Shim>, servers: &Servers) -> Result<()> {
    let mut g = shim.guest()?;
    let id = g.connect("127.0.0.1", servers.http_port, 0, TIMEOUT)?;
    let mut bad = Vec::new();
    let (bits, gen_mask) = (lwabi::LWHOST_ID_SLOT_BITS, lwabi::LWHOST_ID_GEN_MASK as i32);
    let slot = id & lwabi::LWHOST_ID_SLOT_MASK as i32;
    let generation = (id >> bits) & gen_mask;
    let stale = (((generation + 7) & gen_mask) << bits) | slot;
    expect("poll negative", g.net_poll(-1), -errno::EBADF, &mut bad);
    expect(
        "poll slot 200",
        g.net_poll((generation << bits) | 200),
        -errno::EBADF,
        &mut bad,
    );
    expect(
        "poll stale generation",
        g.net_poll(stale),
        -errno::EBADF,
        &mut bad,
    );
    expect(
        "read stale",
        g.call3("lw_net_read", stale as u32 as i32, g.scratch, 16)?,
        -errno::EBADF,
        &mut bad,
    );
    expect(
        "shutdown bad",
        g.net_shutdown(0x7fff_ffff),
        -errno::EBADF,
        &mut bad,
    );
    expect(
        "store_poll bad ticket",
        g.call3("lw_store_poll", 0x7f_0001, g.scratch, 16)?,
        -errno::EBADF,
        &mut bad,
    );
    g.net_close(-5);
    g.net_close(stale);
    if g.net_poll(id) < 0 {
        bad.push("a bad close hit a live connection".into());
    }
    g.net_close(id);
    expect("poll after close", g.net_poll(id), -errno::EBADF, &mut bad);
    expect("close twice then poll", g.net_poll(id), -errno::EBADF, &mut bad);
    if bad.is_empty() {
        Ok(())
    } else {
        bail!("{}", bad.join("; "))
    }
}

/// lwproxy dies with a connection open: the guest sees ECONNRESET; after a
/// restart on the same port the main side reconnects and serves new opens.
fn proxy_loss(shim: &Arc<Shim>, servers: &Servers, proxy: &mut Proxy) -> Result<()> {
    let mut g = shim.guest()?;
    let id = g.connect("127.0.0.1", servers.http_port, 0, TIMEOUT)?;
    let port = proxy.port;
    proxy.kill();
    let deadline = Instant::now() + TIMEOUT;
    let err = loop {
        let bell = g.guest_doorbell();
        let p = g.net_poll(id);
        if p < 0 {
            bail!("poll: {p}");
        }
        if p as u32 & lwabi::LWHOST_POLL_ERR != 0 {
            break p >> lwabi::LWHOST_POLL_ERRNO_SHIFT;
        }
        if Instant::now() > deadline {
            bail!("connection never failed after the proxy died (poll {p:#x})");
        }
        g.wait_guest_doorbell(bell, 100);
    };
    g.net_close(id);
    if err != errno::ECONNRESET {
        bail!("failed with errno {err}, want ECONNRESET");
    }
    *proxy = Proxy::start(&proxy.binary, servers, Some(port)).context("restarting lwproxy")?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match http_get(&mut g, servers.http_port, "/again") {
            Ok(body) if String::from_utf8_lossy(&body).contains("/again") => return Ok(()),
            Ok(_) => bail!("bad response after reconnect"),
            Err(e) if Instant::now() > deadline => return Err(e.context("no reconnect")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// After the main side shut down, calls fail fast instead of hanging.
fn main_gone(shim: &Arc<Shim>) -> Result<()> {
    let mut g = shim.guest()?;
    let host = b"127.0.0.1";
    g.put(0, host)?;
    let r = g.net_open_raw(g.scratch, host.len() as u32, 80)?;
    if r != -errno::ECONNRESET {
        bail!("open after shutdown: {r}, want -ECONNRESET");
    }
    Ok(())
}
