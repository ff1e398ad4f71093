//! Native benchmark of the host shim against the plain design.
//!
//! `cargo run --release -p lwhost --example bench [-- --mib N]`
//!
//! lwhost: worker calls are plain loads/stores on the shared region; the
//! worker sleeps (futex) only when a read finds nothing. Baseline (the plain
//! way: "post a message, then Atomics.wait for the answer"): each host call is a
//! request on a channel to the main side plus a blocking wait for its reply.
//!
//! Measures (each for lwhost and baseline):
//! - latency of a non-waiting `net_poll` on an open connection;
//! - throughput of N MiB (default 64) read in 4 KiB calls
//!   (a) end to end from a loopback TCP server through the real lwproxy, and
//!   (b) from main-side memory to the worker (the shim alone, no proxy).
//!
//! Output: a human table, then one line `BENCH_JSON {...}` for scripts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use lwabi::{LWHOST_CONN_OPEN, LWHOST_POLL_OUT};
use lwhost::errno::EAGAIN;
use lwhost::region_service::{self, MainConfig};
use lwhost::shm::Region;
use lwhost::worker::Worker;
use lwproxy::protocol::{client, ServerMsg, BINARY_HEADER, SUBPROTOCOL_V2};

const READ_SIZE: usize = 4096;
const POLL_CALLS: usize = 1_000_000;
const BASELINE_POLL_CALLS: usize = 100_000;

fn main() -> anyhow::Result<()> {
    let mib = parse_mib()?;
    let total = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let poll = poll_lwhost();
    let poll_base = poll_baseline();
    let shim = shim_lwhost(total)?;
    let shim_base = shim_baseline(total)?;
    let (e2e, e2e_base) = rt.block_on(end_to_end(total))?;

    println!("lwhost native benchmark ({mib} MiB, {READ_SIZE}-byte reads)");
    println!("{:<44} {:>12} {:>12} {:>8}", "", "lwhost", "baseline", "ratio");
    let row = |name: &str, a: f64, b: f64, unit: &str, higher_better: bool| {
        let ratio = if higher_better { a / b } else { b / a };
        println!("{name:<44} {a:>9.3} {unit:<2} {b:>9.3} {unit:<2} {ratio:>7.1}x");
    };
    row("net_poll latency p50 (us)", poll.0, poll_base.0, "", false);
    row("net_poll latency p99 (us)", poll.1, poll_base.1, "", false);
    row("read via lwproxy, end to end (MiB/s)", e2e, e2e_base, "", true);
    row(
        "read main side -> worker, shim only (MiB/s)",
        shim,
        shim_base,
        "",
        true,
    );
    println!(
        "BENCH_JSON {{\"mib\":{mib},\"read_size\":{READ_SIZE},\
         \"poll_p50_us\":{:.4},\"poll_p99_us\":{:.4},\
         \"baseline_poll_p50_us\":{:.4},\"baseline_poll_p99_us\":{:.4},\
         \"proxy_mib_s\":{e2e:.1},\"baseline_proxy_mib_s\":{e2e_base:.1},\
         \"shim_mib_s\":{shim:.1},\"baseline_shim_mib_s\":{shim_base:.1}}}",
        poll.0, poll.1, poll_base.0, poll_base.1
    );
    Ok(())
}

fn parse_mib() -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(64),
        [flag, n] if flag == "--mib" => n.parse().context("--mib takes a number"),
        _ => bail!("usage: bench [--mib N]"),
    }
}

fn percentiles(mut ns: Vec<u64>) -> (f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

/// A region with connection slot 0 opened by hand (the main side's part).
fn open_region() -> anyhow::Result<(Arc<Region>, Worker, i32)> {
    let region = Arc::new(Region::new_memfd()?);
    region.init_header();
    let worker = Worker::new(region.clone());
    let id = worker.net_open(b"bench", 80, 0, 0);
    if id < 0 {
        bail!("net_open: {id}");
    }
    let c = region.conn(0).context("slot 0")?;
    c.state().store(LWHOST_CONN_OPEN, Ordering::Release);
    Ok((region, worker, id))
}

/// net_poll timed call by call (the timer's own ~20 ns included).
fn poll_lwhost() -> (f64, f64) {
    let Ok((_region, worker, id)) = open_region() else {
        return (f64::NAN, f64::NAN);
    };
    let mut ns = Vec::with_capacity(POLL_CALLS);
    for _ in 0..POLL_CALLS {
        let t = Instant::now();
        let p = std::hint::black_box(worker.net_poll(std::hint::black_box(id)));
        ns.push(t.elapsed().as_nanos() as u64);
        assert_eq!(p as u32 & LWHOST_POLL_OUT, LWHOST_POLL_OUT);
    }
    percentiles(ns)
}

/// The plain baseline: each poll is a message to the main side and a blocking
/// wait for the answer.
fn poll_baseline() -> (f64, f64) {
    let (req_tx, req_rx) = std_mpsc::channel::<std_mpsc::SyncSender<i32>>();
    let main = std::thread::spawn(move || {
        for reply in req_rx {
            let _ = reply.send(LWHOST_POLL_OUT as i32);
        }
    });
    let (reply_tx, reply_rx) = std_mpsc::sync_channel(1);
    let mut ns = Vec::with_capacity(BASELINE_POLL_CALLS);
    for _ in 0..BASELINE_POLL_CALLS {
        let t = Instant::now();
        if req_tx.send(reply_tx.clone()).is_err() {
            break;
        }
        let p = reply_rx.recv().unwrap_or(0);
        ns.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(p);
    }
    drop(req_tx);
    let _ = main.join();
    percentiles(ns)
}

fn mib_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / t.as_secs_f64()
}

/// Reads `total` bytes in 4 KiB calls, sleeping on the guest doorbell when
/// nothing is there; returns the bytes read (stops early at EOF or error).
fn worker_read_all(worker: &Worker, id: i32, total: usize) -> usize {
    let mut buf = vec![0u8; READ_SIZE];
    let mut got = 0;
    let mut seen = worker.guest_doorbell();
    while got < total {
        match worker.net_read(id, &mut buf) {
            n if n > 0 => got += n as usize,
            e if e == -EAGAIN => seen = worker.wait_guest_doorbell(seen, Duration::from_millis(100)),
            _ => break,
        }
    }
    got
}

/// The ring protocol alone: a thread plays the main side, filling rx from
/// memory and sleeping on host_doorbell when it is full.
fn shim_lwhost(total: usize) -> anyhow::Result<f64> {
    let (region, worker, id) = open_region()?;
    let r = region.clone();
    let t = Instant::now();
    let main = std::thread::spawn(move || {
        let c = r.conn(0).expect("slot 0");
        let rx = c.rx();
        let src = vec![0xa5u8; 65536];
        let mut sent = 0;
        while sent < total {
            let seen = r.host_doorbell().load(Ordering::SeqCst);
            let n = rx.push(&src[..(total - sent).min(src.len())]).unwrap_or(0);
            if n > 0 {
                sent += n;
                r.ring_guest();
                continue;
            }
            r.host_waiting().store(1, Ordering::SeqCst);
            if rx.writable() == Some(0) {
                lwhost::futex::wait(r.host_doorbell(), seen, Some(Duration::from_millis(100)));
            }
            r.host_waiting().store(0, Ordering::SeqCst);
        }
    });
    let got = worker_read_all(&worker, id, total);
    let elapsed = t.elapsed();
    main.join().map_err(|_| anyhow::anyhow!("main thread panicked"))?;
    if got != total {
        bail!("shim: read {got} of {total} bytes");
    }
    Ok(mib_s(total, elapsed))
}

/// Baseline: each 4 KiB read is a request to the main thread and a
/// blocking wait for the reply carrying the bytes.
fn shim_baseline(total: usize) -> anyhow::Result<f64> {
    let (req_tx, req_rx) = std_mpsc::channel::<(usize, std_mpsc::SyncSender<Vec<u8>>)>();
    let main = std::thread::spawn(move || {
        let src = vec![0xa5u8; 65536];
        let mut sent = 0usize;
        for (want, reply) in req_rx {
            let n = want.min(total - sent).min(src.len());
            sent += n;
            let _ = reply.send(src[..n].to_vec());
        }
    });
    let t = Instant::now();
    let (reply_tx, reply_rx) = std_mpsc::sync_channel(1);
    let mut got = 0;
    let mut buf = vec![0u8; READ_SIZE];
    while got < total {
        req_tx
            .send((READ_SIZE, reply_tx.clone()))
            .context("main thread gone")?;
        let data = reply_rx.recv().context("main thread gone")?;
        buf[..data.len()].copy_from_slice(&data);
        got += data.len();
    }
    let elapsed = t.elapsed();
    drop(req_tx);
    let _ = main.join();
    Ok(mib_s(total, elapsed))
}

// ---- end to end through lwproxy -----------------------------------------

/// The lwproxy binary: `$LWPROXY`, or this workspace's (built with this example's profile).
fn lwproxy_path() -> anyhow::Result<PathBuf> {
    match std::env::var_os("LWPROXY") {
        Some(p) => Ok(PathBuf::from(p)),
        None => lwtest::cargo_bin("lwproxy", "lwproxy"),
    }
}

/// lwproxy on a free loopback port, loopback admitted, no limits (lwtest's launcher).
fn start_proxy() -> anyhow::Result<lwtest::proxy::Proxy> {
    let mut cmd = lwtest::proxy::loopback_command(&lwproxy_path()?, "127.0.0.1:0");
    cmd.arg("--no-auth");
    lwtest::proxy::Proxy::spawn(cmd)
}

async fn end_to_end(total: usize) -> anyhow::Result<(f64, f64)> {
    let proxy = start_proxy()?;
    let source = lwtest::servers::source(total)?;
    let url = proxy.url("");
    let a = e2e_lwhost(&url, source, total).await?;
    let b = e2e_baseline(&url, source, total).await?;
    Ok((a, b))
}

async fn e2e_lwhost(url: &str, source: SocketAddr, total: usize) -> anyhow::Result<f64> {
    let store = std::env::temp_dir().join(format!("lwhost-bench-store-{}", std::process::id()));
    let region = Arc::new(Region::new_memfd()?);
    let main = region_service::spawn(
        region.clone(),
        MainConfig {
            proxy_url: url.into(),
            token: None,
            store_dir: store.clone(),
            store_quota: 1 << 20,
            extra_ca: Vec::new(),
        },
    )?;
    let worker = Worker::new(region);
    let port = u32::from(source.port());
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let id = worker.net_open(b"127.0.0.1", port, 0, 0);
        if id < 0 {
            bail!("net_open: {id}");
        }
        let mut seen = worker.guest_doorbell();
        let deadline = Instant::now() + Duration::from_secs(10);
        while worker.net_poll(id) as u32 & LWHOST_POLL_OUT == 0 {
            if worker.net_poll(id) < 0 || worker.net_poll(id) as u32 & lwabi::LWHOST_POLL_ERR != 0 {
                bail!("open failed: poll {:#x}", worker.net_poll(id));
            }
            if Instant::now() > deadline {
                bail!("open timed out");
            }
            seen = worker.wait_guest_doorbell(seen, Duration::from_millis(100));
        }
        let t = Instant::now();
        let got = worker_read_all(&worker, id, total);
        let elapsed = t.elapsed();
        worker.net_close(id);
        if got != total {
            bail!("lwhost end to end: read {got} of {total} bytes");
        }
        Ok(mib_s(total, elapsed))
    })
    .await?;
    main.shutdown().await;
    let _ = std::fs::remove_dir_all(store);
    result
}

/// The plain baseline's main side over the same proxy: bytes wait in a queue on the
/// main side; each 4 KiB read is a request plus a blocking wait.
async fn e2e_baseline(url: &str, source: SocketAddr, total: usize) -> anyhow::Result<f64> {
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL_V2));
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("baseline: connecting to lwproxy")?;
    let (mut sink, mut stream) = ws.split();
    let open = client::open(1, "127.0.0.1", source.port(), false, None);
    sink.send(Message::Text(open.into())).await?;
    let (read_tx, mut read_rx) = mpsc::channel::<(usize, oneshot::Sender<Vec<u8>>)>(1);
    let main = tokio::spawn(async move {
        let mut queue: VecDeque<u8> = VecDeque::new();
        let mut waiting: Option<(usize, oneshot::Sender<Vec<u8>>)> = None;
        let mut eof = false;
        loop {
            if let Some((want, _)) = &waiting {
                if !queue.is_empty() || eof {
                    let n = (*want).min(queue.len());
                    let data: Vec<u8> = queue.drain(..n).collect();
                    if let Some((_, reply)) = waiting.take() {
                        let _ = reply.send(data);
                    }
                    if n > 0 {
                        let ack = client::ack(1, n as u64);
                        if sink.send(Message::Text(ack.into())).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            }
            tokio::select! {
                r = read_rx.recv(), if waiting.is_none() => match r {
                    Some(req) => waiting = Some(req),
                    None => return,
                },
                m = stream.next(), if !eof => match m {
                    Some(Ok(Message::Binary(b))) if b.len() > BINARY_HEADER => queue.extend(&b[BINARY_HEADER..]),
                    Some(Ok(Message::Text(t))) if matches!(
                        serde_json::from_str(&t),
                        Ok(ServerMsg::Eof { .. } | ServerMsg::Closed { .. } | ServerMsg::Error { .. })
                    ) => eof = true,
                    Some(Ok(_)) => {}
                    _ => eof = true,
                },
            }
        }
    });
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let t = Instant::now();
        let mut got = 0;
        let mut buf = vec![0u8; READ_SIZE];
        while got < total {
            let (reply_tx, reply_rx) = oneshot::channel();
            read_tx
                .blocking_send((READ_SIZE, reply_tx))
                .context("baseline main side gone")?;
            let data = reply_rx.blocking_recv().context("baseline main side gone")?;
            if data.is_empty() {
                break;
            }
            buf[..data.len()].copy_from_slice(&data);
            got += data.len();
        }
        if got != total {
            bail!("baseline end to end: read {got} of {total} bytes");
        }
        Ok(mib_s(total, t.elapsed()))
    })
    .await?;
    main.abort();
    result
}
