//! `lwproxy`: the WebSocket-to-TCP/TLS proxy of lwnet. See proxy/README.md.

use anyhow::{Context, Result};
use clap::Parser;
use lwproxy::config::{Cli, Command, Config, LogFormat};
use lwproxy::{auth, server};
use std::io::Write as _;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lwproxy: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let secret = std::env::var("JWT_SECRET").ok().filter(|s| !s.is_empty());
    if let Some(Command::Token { sub, ttl }) = &cli.command {
        let secret = secret.context("JWT_SECRET must be set to mint a token")?;
        let ttl = auth::parse_duration_secs(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
        if sub.is_empty() || sub.len() > 128 {
            anyhow::bail!("--sub must be 1 to 128 bytes");
        }
        println!("{}", auth::mint(secret.as_bytes(), sub, ttl)?);
        return Ok(());
    }
    init_logging(cli.serve.log_format);
    let cfg = Arc::new(Config::from_args(&cli.serve, secret)?);
    run_sharded(cfg)
}

/// One single-threaded runtime per core (`available_parallelism`, which follows the CPU
/// affinity and cgroup quota): this thread accepts and serves its share of the clients, and
/// each further thread serves its own share (see [`server::serve`]). A work-stealing runtime
/// woke a second thread for nearly every message a session relayed (a profile of `bench
/// proxy` showed a quarter of the proxy's time in the scheduler's context switches); a
/// session pinned to one thread hands messages between its tasks without a wake-up.
fn run_sharded(cfg: Arc<Config>) -> Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let main_rt = runtime()?;
    let mut shards = vec![main_rt.handle().clone()];
    // Dropping `stop` ends the other shards' threads (after `serve` drained the sessions).
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut threads = Vec::new();
    for i in 1..workers {
        let rt = runtime()?;
        shards.push(rt.handle().clone());
        let mut stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lwproxy-shard-{i}"))
            .spawn(move || rt.block_on(async move { while stopped.changed().await.is_ok() {} }))
            .context("starting a worker thread")?;
        threads.push(thread);
    }
    let result = main_rt.block_on(serve(cfg, shards));
    drop(stop);
    for t in threads {
        let _ = t.join();
    }
    result
}

/// Raises the soft descriptor limit to the hard one (the default soft 1024 is far below what
/// thousands of sessions need) and warns when the worst case cannot fit: every session at
/// its per-identity connection cap, plus the pre-authentication sockets, plus some slack.
fn raise_nofile(cfg: &Config) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let old = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::info!(from = ?old, to = ?lim.current, "raised the soft descriptor limit"),
            Err(e) => {
                tracing::warn!("could not raise the soft descriptor limit: {e}");
                lim = getrlimit(Resource::Nofile);
            }
        }
    }
    let per_session = u64::from(cfg.limits.max_concurrent.max(1)) + 1;
    let need = (cfg.max_sessions as u64)
        .saturating_mul(per_session)
        .saturating_add(cfg.max_preauth as u64)
        .saturating_add(64);
    if let Some(have) = lim.current {
        if have < need {
            tracing::warn!(
                have,
                need,
                "descriptor limit too low for --max-sessions x (--max-concurrent + 1) + --max-preauth: \
                 raise it (ulimit -n, LimitNOFILE=) or lower those flags; accepts fail with EMFILE \
                 when it runs out"
            );
        }
    }
}

async fn serve(cfg: Arc<Config>, shards: Vec<tokio::runtime::Handle>) -> Result<()> {
    raise_nofile(&cfg);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr().context("local address")?;
    if cfg.jwt_secret.is_none() {
        tracing::warn!(
            "AUTHENTICATION DISABLED (--no-auth): anyone who can reach {addr} can open connections \
             through this proxy. Local development only."
        );
    }
    let scheme = if cfg.tls_server.is_some() { "wss" } else { "ws" };
    tracing::info!(
        %addr,
        scheme,
        ports = ?cfg.policy.ports,
        allow = ?cfg.policy.allow.iter().map(|r| format!("{}{}", r.cidr, r.port.map(|p| format!(":{p}")).unwrap_or_default())).collect::<Vec<_>>(),
        limits = ?cfg.limits,
        "lwproxy ready"
    );
    // The SIGTERM handler is in place before the ready line: a supervisor may stop the proxy
    // as soon as it has read it.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    // Scripts wait for this line on stdout.
    println!("lwproxy: listening on {addr} ({scheme})");
    std::io::stdout().flush().ok();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal(term).await;
        let _ = stop_tx.send(true);
    });
    server::serve(listener, cfg, stop_rx, shards).await?;
    tracing::info!("lwproxy stopped");
    Ok(())
}

/// Returns on SIGTERM (through `term`, the handler installed at startup) or SIGINT.
async fn wait_for_signal(term: std::io::Result<tokio::signal::unix::Signal>) {
    let mut term = match term {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install the SIGTERM handler: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
