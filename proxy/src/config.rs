//! Command line and policy file, merged into one validated [`Config`].
//! Precedence: command line over policy file over built-in defaults (proxy/README.md).

use crate::limits::Limits;
use crate::policy::{parse_ports, AllowRule, Cidr, Policy};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lwproxy",
    version,
    about = "WebSocket-to-TCP/TLS proxy for lwnet: deny-by-default policy, JWT auth, per-identity limits",
    after_help = "Environment: JWT_SECRET (HS256 key; required unless --no-auth), RUST_LOG (log filter).\n\
                  Health check: GET /health -> 200 ok. Protocol (docs/protocol.md): v1 JSON, or subprotocol lwproxy.v2; Wisp v1.2 at /wisp/ (token: ?token= or /wisp/JWT/)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint an HS256 token signed with JWT_SECRET and print it.
    Token {
        /// Subject: the identity limits are counted against.
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Policy file (TOML): ports, allow, deny, origins and a [limits] table.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Admit this range through the default deny; with :PORT exactly that port
    /// (IPv6: [CIDR]:PORT). Repeatable.
    #[arg(long, value_name = "CIDR[:PORT]")]
    pub allow: Vec<AllowRule>,
    /// Deny this range even if public. Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub deny: Vec<Cidr>,
    /// Allowed destination ports, e.g. 80,443,8000-8100 [default: 80,443].
    #[arg(long, value_name = "LIST")]
    pub ports: Option<String>,
    /// Allowed browser origin (exact match). Repeatable. None: any origin (the token guards).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Vec<String>,
    /// Accept clients without a token. Local development only.
    #[arg(long)]
    pub no_auth: bool,
    /// Extra CA certificate(s) (PEM) trusted for "tls":true targets. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub extra_ca: Vec<PathBuf>,
    /// Certificate chain (PEM) to listen with TLS (wss://).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Bytes per minute per identity, both directions (0 = unlimited) [default: 10485760].
    #[arg(long, value_name = "N")]
    pub bytes_per_min: Option<u64>,
    /// New connections per minute per identity (0 = unlimited) [default: 30].
    #[arg(long, value_name = "N")]
    pub conns_per_min: Option<u32>,
    /// Concurrent connections per identity (0 = unlimited) [default: 5].
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u32>,
    /// Connect timeout (resolve + connect + TLS), e.g. 30s [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Close a connection after this long without traffic, e.g. 60s [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Largest WebSocket message accepted from a client, bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_message: Option<usize>,
    /// UDP destination ports Wisp clients may use, e.g. 53 [default: none: UDP is refused].
    #[arg(long, value_name = "LIST")]
    pub wisp_udp_ports: Option<String>,
    /// UDP datagrams per minute per identity, both directions (0 = unlimited) [default: 600].
    #[arg(long, value_name = "N")]
    pub udp_packets_per_min: Option<u32>,
    /// Most WebSocket sessions at once, all clients together [default: 4096].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<usize>,
    /// WebSocket sessions at once per identity (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_sessions_per_identity: u32,
    /// Send a WebSocket ping after this long without one.
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    pub ping_interval: String,
    /// Close a session whose client has not answered a ping within this long.
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    pub pong_timeout: String,
    /// Client sockets not yet authenticated (TLS + HTTP upgrade in progress), all clients.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_preauth: usize,
    /// Client sockets not yet authenticated from one client address (IPv6: one --ipv6-prefix).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_preauth_per_ip: usize,
    /// Deadline for TLS handshake + HTTP upgrade request of a new client socket.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub handshake_timeout: String,
    /// IPv6 clients are grouped by this prefix length (per-address caps; --no-auth identity).
    #[arg(long, value_name = "BITS", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_prefix: u8,
    /// A load balancer in front of the proxy: from peers in this range the client address is
    /// taken from a PROXY protocol header (v1/v2) or else X-Forwarded-For. Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub trusted_proxy: Vec<Cidr>,
    /// Share the per-identity limits (bytes/min, connections/min, concurrent connections,
    /// sessions) with the other replicas using this Redis. If Redis is unreachable each
    /// replica enforces its own limits alone (logged; GET /health says local-fallback).
    #[arg(long, value_name = "redis://HOST:PORT[/DB]")]
    pub shared_limits: Option<String>,
    /// Lease of this replica's slots in Redis (heartbeat every third of it): the slots of a
    /// replica that dies are free again within this.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub shared_limits_ttl: String,
    /// On SIGTERM, how long open connections may finish before they are closed.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub drain_timeout: String,
    /// Log format on stderr (audit lines are events with target "audit").
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// The policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    ports: Option<PortsValue>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    origins: Vec<String>,
    /// UDP ports for Wisp UDP streams, e.g. "53".
    wisp_udp_ports: Option<String>,
    #[serde(default)]
    limits: LimitsFile,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PortsValue {
    List(Vec<u16>),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    bytes_per_min: Option<u64>,
    conns_per_min: Option<u32>,
    max_concurrent: Option<u32>,
    connect_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_message: Option<usize>,
    max_sessions: Option<usize>,
    udp_packets_per_min: Option<u32>,
}

/// Everything the server needs, validated.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub policy: Policy,
    /// HS256 key; `None` means --no-auth.
    pub jwt_secret: Option<Vec<u8>>,
    pub origins: Vec<String>,
    pub limits: Limits,
    /// UDP ports Wisp streams may reach (own allowlist; empty = no UDP).
    pub wisp_udp_ports: BTreeSet<u16>,
    pub max_sessions: usize,
    pub drain_timeout: Duration,
    /// Sessions per identity at once; 0 = unlimited.
    pub max_sessions_per_identity: u32,
    /// Idle time after which a session is pinged.
    pub ping_interval: Duration,
    /// How long a ping may stay unanswered before the session is closed.
    pub pong_timeout: Duration,
    /// Unauthenticated client sockets at once, total and per client address group.
    pub max_preauth: usize,
    pub max_preauth_per_ip: usize,
    /// TLS handshake + upgrade request deadline.
    pub handshake_timeout: Duration,
    /// IPv6 client grouping prefix length (1..=128).
    pub ipv6_prefix: u8,
    /// `--trusted-proxy` ranges.
    pub trusted_proxies: Vec<Cidr>,
    /// `--shared-limits` Redis URL (validated) and the replica lease.
    pub shared_limits: Option<String>,
    pub shared_limits_ttl: Duration,
    pub tls_client: Arc<rustls::ClientConfig>,
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
}

fn duration(s: &str, what: &str) -> Result<Duration> {
    let secs = crate::auth::parse_duration_secs(s).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    Ok(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

impl Config {
    pub fn from_args(a: &ServeArgs, jwt_secret: Option<String>) -> Result<Config> {
        let file: PolicyFile = match &a.policy {
            None => PolicyFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading policy file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing policy file {}", path.display()))?
            }
        };

        let mut policy = Policy::default();
        match (&a.ports, &file.ports) {
            (Some(list), _) | (None, Some(PortsValue::Text(list))) => {
                policy.ports = parse_ports(list).map_err(|e| anyhow::anyhow!("--ports: {e}"))?;
            }
            (None, Some(PortsValue::List(list))) => {
                if list.is_empty() || list.contains(&0) {
                    bail!("policy file: 'ports' must list ports 1..=65535");
                }
                policy.ports = list.iter().copied().collect();
            }
            (None, None) => {}
        }
        for rule in &file.allow {
            policy.allow.push(
                rule.parse()
                    .map_err(|e| anyhow::anyhow!("policy file allow: {e}"))?,
            );
        }
        policy.allow.extend(a.allow.iter().copied());
        for rule in &file.deny {
            policy.deny.push(
                rule.parse()
                    .map_err(|e| anyhow::anyhow!("policy file deny: {e}"))?,
            );
        }
        policy.deny.extend(a.deny.iter().copied());

        let mut origins = file.origins.clone();
        origins.extend(a.origin.iter().cloned());

        let d = Limits::default();
        let fl = &file.limits;
        let limits = Limits {
            bytes_per_min: a.bytes_per_min.or(fl.bytes_per_min).unwrap_or(d.bytes_per_min),
            conns_per_min: a.conns_per_min.or(fl.conns_per_min).unwrap_or(d.conns_per_min),
            max_concurrent: a.max_concurrent.or(fl.max_concurrent).unwrap_or(d.max_concurrent),
            connect_timeout: match a.connect_timeout.as_ref().or(fl.connect_timeout.as_ref()) {
                Some(s) => duration(s, "connect timeout")?,
                None => d.connect_timeout,
            },
            idle_timeout: match a.idle_timeout.as_ref().or(fl.idle_timeout.as_ref()) {
                Some(s) => duration(s, "idle timeout")?,
                None => d.idle_timeout,
            },
            max_message: a.max_message.or(fl.max_message).unwrap_or(d.max_message),
            udp_packets_per_min: a
                .udp_packets_per_min
                .or(fl.udp_packets_per_min)
                .unwrap_or(d.udp_packets_per_min),
        };
        let wisp_udp_ports = match a.wisp_udp_ports.as_ref().or(file.wisp_udp_ports.as_ref()) {
            Some(list) => parse_ports(list).map_err(|e| anyhow::anyhow!("--wisp-udp-ports: {e}"))?,
            None => BTreeSet::new(),
        };
        // A binary frame must be able to carry a full flow-control window.
        if limits.max_message < 4096 {
            bail!("--max-message must be at least 4096 bytes");
        }

        let jwt_secret = if a.no_auth {
            None
        } else {
            match jwt_secret {
                Some(s) if s.len() >= 16 => Some(s.into_bytes()),
                Some(_) => bail!("JWT_SECRET must be at least 16 bytes"),
                None => bail!(
                    "JWT_SECRET is not set: set it (and mint tokens with `lwproxy token --sub NAME`), \
                     or pass --no-auth for local development"
                ),
            }
        };

        let tls_server = match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => Some(crate::tls::server_config(c, k)?),
            _ => None,
        };
        Ok(Config {
            listen: a.listen,
            policy,
            jwt_secret,
            origins,
            limits,
            wisp_udp_ports,
            max_sessions: a.max_sessions.or(fl.max_sessions).unwrap_or(4096),
            drain_timeout: duration(&a.drain_timeout, "drain timeout")?,
            max_sessions_per_identity: a.max_sessions_per_identity,
            ping_interval: duration(&a.ping_interval, "--ping-interval")?,
            pong_timeout: duration(&a.pong_timeout, "--pong-timeout")?,
            max_preauth: a.max_preauth.max(1),
            max_preauth_per_ip: a.max_preauth_per_ip.max(1),
            handshake_timeout: duration(&a.handshake_timeout, "--handshake-timeout")?,
            ipv6_prefix: a.ipv6_prefix,
            trusted_proxies: a.trusted_proxy.clone(),
            shared_limits: match &a.shared_limits {
                Some(url) => {
                    crate::shared_limits::parse_url(url).map_err(anyhow::Error::msg)?;
                    Some(url.clone())
                }
                None => None,
            },
            shared_limits_ttl: duration(&a.shared_limits_ttl, "--shared-limits-ttl")?,
            tls_client: crate::tls::client_config(&a.extra_ca)?,
            tls_server,
        })
    }
}
