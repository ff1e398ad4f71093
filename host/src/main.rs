//! lwhost: the native host of lwnet. Serves user-mode Linux over a unix
//! socket (one client at a time: a fresh shared region + eventfd each),
//! connects it to lwproxy, and keeps its store in a durable directory.

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use rustix::event::{eventfd, EventfdFlags};
use rustix::fd::AsFd as _;
use tokio::io::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use lwhost::region_service::{self, MainConfig};
use lwhost::shm::Region;
use lwhost::store::Store;
use lwhost::uml;

/// Serves the lwnet host ABI to user-mode Linux: network through lwproxy,
/// a durable blob store on disk.
#[derive(Parser, Debug)]
#[command(name = "lwhost", version)]
struct Args {
    /// lwproxy WebSocket URL, e.g. ws://127.0.0.1:8080/ or wss://proxy.example:443/
    #[arg(long, value_name = "URL")]
    proxy: String,
    /// File holding the token for lwproxy (sent as the bearer.<token> subprotocol); the
    /// environment variable LWHOST_TOKEN is the other way. Never on the command line, where
    /// every local user could read it.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Extra CA certificate(s) (PEM) trusted for a wss:// proxy, besides the system roots.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    extra_ca: Vec<PathBuf>,
    /// Store directory (created if missing)
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// Store quota in bytes of values
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    quota: u64,
    /// Unix socket user-mode Linux connects to (kernel cmdline lwhost=PATH)
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lwhost: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lwhost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The proxy token: `--token-file` (trimmed), else `LWHOST_TOKEN`, else none.
fn token(args: &Args) -> anyhow::Result<Option<String>> {
    let t = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("LWHOST_TOKEN")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    if t.is_empty() && args.token_file.is_some() {
        anyhow::bail!("the token file is empty");
    }
    Ok((!t.is_empty()).then_some(t))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Fail now, not at the first client, on a bad store or URL.
    drop(Store::open(&args.store, args.quota)?);
    region_service::check_proxy_url(&args.proxy)?;
    let cfg = MainConfig {
        proxy_url: args.proxy.clone(),
        token: token(&args)?,
        store_dir: args.store.clone(),
        store_quota: args.quota,
        extra_ca: args.extra_ca.clone(),
    };
    // Fail now, not at the first client, on a bad CA file.
    region_service::tls_config(&cfg.extra_ca)?;
    let listener = bind(&args.socket)?;
    println!("lwhost: listening on {}", args.socket.display());
    tracing::info!(socket = %args.socket.display(), proxy = %args.proxy, "ready");

    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let busy = Arc::new(AtomicBool::new(false));
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, _) = match r {
                    Ok(v) => v,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                };
                if busy.swap(true, Ordering::SeqCst) {
                    sessions.spawn(refuse(stream));
                    continue;
                }
                let (cfg, stop, busy) = (cfg.clone(), stop_rx.clone(), busy.clone());
                sessions.spawn(async move {
                    if let Err(e) = session(stream, cfg, stop).await {
                        tracing::warn!(error = %format!("{e:#}"), "session ended with an error");
                    }
                    busy.store(false, Ordering::SeqCst);
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while sessions.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

/// Binds the socket, replacing a stale one but never a live lwhost's.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another lwhost is listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))
}

async fn refuse(mut stream: UnixStream) {
    tracing::warn!("refusing a second client");
    let _ = stream
        .write_all(b"lwhost: busy: another client is connected\n")
        .await;
}

/// One client: a fresh region and eventfd, served until the client hangs up
/// or lwhost stops.
async fn session(
    mut stream: UnixStream,
    cfg: MainConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let region = Arc::new(Region::new_memfd().context("creating the shared region")?);
    region.init_header();
    let efd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC).context("creating the eventfd")?;
    let memfd = region.fd().context("region has no memfd")?;
    uml::send_region(stream.as_fd(), memfd, efd.as_fd()).context("sending the region")?;
    tracing::info!("client connected");
    let main = region_service::spawn_with_eventfd(region, cfg, Some(efd))?;
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // the client has nothing to say on the socket
            },
            _ = stop.changed() => break,
        }
    }
    tracing::info!("client gone; tearing down its session");
    main.shutdown().await;
    Ok(())
}
