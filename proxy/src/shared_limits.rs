//! Per-identity limits shared by replicas behind a load balancer (`--shared-limits
//! redis://HOST:PORT[/DB]`): bytes per minute, connections per minute, concurrent connections
//! and sessions per identity hold across every replica that points at the same Redis.
//!
//! # Data model (all keys under `lwproxy:`)
//!
//! | key | type | what | expiry |
//! |---|---|---|---|
//! | `replicas` | sorted set | member = replica id, score = the ms deadline of its last heartbeat + TTL | members past their score are pruned by every admission |
//! | `r:<replica>` | hash | field `c:<identity>` = that replica's open connections of the identity, `s:<identity>` = its sessions; `v:<field>` = the version of that count | `--shared-limits-ttl`, refreshed by the heartbeat |
//! | `opens:<identity>` | sorted set | one member per admitted connection, score = ms time | 60 s |
//! | `bytes:<identity>` | hash | `tok`, `ts`: a token bucket of `bytes_per_min` refilled continuously | 60 s (a bucket unused that long is full anyway) |
//!
//! A replica's own process is the truth for its slots: each admission sends its local count
//! after the increment, a release sends the new count, and the heartbeat (every TTL / 3)
//! rewrites its whole hash from the local counts. So a replica that dies (`kill -9`) stops
//! refreshing and its hash expires: its slots are free within the TTL. A replica cut off from
//! Redis longer than the TTL republishes its counts at its first heartbeat after reconnecting.
//!
//! Counts are absolute, so messages of one replica may reach Redis in any order: each count
//! is read together with a version ([`next_version`], increasing in the replica's process)
//! under the identity's lock, and the scripts store a count only if its version is newer than
//! the stored one (`v:<field>`). An admission read before another one, but run after it, so
//! never overwrites the newer count with an older, lower one. The heartbeat takes a version
//! `H` before reading its counts; it removes the fields it does not carry (this replica holds
//! none of them) only where the stored version is older than `H`, so a change that reached
//! Redis before it is never undone.
//!
//! # Atomicity
//!
//! Admission is one Lua script (Redis runs scripts atomically, and with effects replication
//! `TIME` is allowed in them): prune the per-minute log and dead replicas, sum the other live
//! replicas' counts for the identity, refuse or record. Two replicas admitting the last slot
//! at once are serialised by Redis; exactly one wins. The script reads the other replicas'
//! hashes by name (keys not passed in `KEYS`), so it needs a single Redis, not Redis Cluster.
//!
//! # Bytes are batched
//!
//! Charging a byte count never waits for Redis. Each replica adds the bytes it moves to a
//! local counter; every [`BATCH`] (1 s) a background task sends each active identity's
//! counter to the shared bucket (one pipelined script call per identity that moved bytes or
//! was admitted in the last minute) and gets back what remains. Between two flushes a
//! replica allows what remained at its last answer, refilled since, minus what it moved
//! itself since (the bytes of a flush whose answer is pending included).
//!
//! Another replica's bytes are seen here only once that replica has flushed them and this
//! replica has had the answer to its own next flush: up to two batch intervals (plus round
//! trips). Overshoot: across N replicas the bucket can be overdrawn by at most what the
//! N - 1 others move in two batch intervals (each of them also stops at the level it last
//! saw). The debt is repaid before anyone moves more, but the script clamps the level at
//! `-bytes_per_min`: at most one minute's budget of debt is kept, so after a larger
//! overdraft the identity waits about a minute, not longer.
//!
//! # Fallback
//!
//! If Redis cannot be reached (at start, or a command fails or takes longer than
//! [`COMMAND_TIMEOUT`]), the replica logs it, answers `GET /health` with
//! `shared-limits=local-fallback`, and enforces its local limits alone: across N replicas an
//! identity can then get up to N times each limit. The background task reconnects every
//! second; once connected it republishes its counts and enforcement is shared again.

use crate::limits::Identity;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Interval at which byte counts are flushed to Redis.
pub const BATCH: Duration = Duration::from_secs(1);
/// Longest a Redis command may take before the replica falls back to local limits.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
const PREFIX: &str = "lwproxy:";

static VERSION: AtomicU64 = AtomicU64::new(1);

/// The next version of this replica's counts: each call returns a larger number than every
/// earlier call in this process (the replica id changes with the process).
pub fn next_version() -> u64 {
    VERSION.fetch_add(1, Ordering::Relaxed)
}

/// Lua: `put(key, field, count, version)` stores `count` (deletes the field at 0) and its
/// version in the hash `key`, unless the stored version is the same or newer.
macro_rules! put_lua {
    () => {
        r"
local function put(key, field, count, version)
  local vf = 'v:' .. field
  if tonumber(version) <= tonumber(redis.call('HGET', key, vf) or '0') then return end
  if tonumber(count) > 0 then
    redis.call('HSET', key, field, count, vf, version)
  else
    redis.call('HDEL', key, field)
    redis.call('HSET', key, vf, version)
  end
end
"
    };
}

/// Admission of a connection or session. KEYS: replicas, own hash, opens log, bytes bucket.
/// ARGV: replica id, field, local count after the increment, max concurrent (0 = none),
/// TTL ms, opens per minute (0 = none), opens member, bytes per minute (0 = none), prefix,
/// version of the count. Returns {code, bytes remaining}: code 0 admitted, 1 per-minute
/// limit, 2 concurrent limit.
const ADMIT: &str = concat!(
    put_lua!(),
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])
local rate = tonumber(ARGV[6])
local cap = tonumber(ARGV[8])
local tok = -1
if cap > 0 then
  local b = redis.call('HMGET', KEYS[4], 'tok', 'ts')
  tok = cap
  if b[1] then
    tok = math.min(cap, tonumber(b[1]) + math.floor((now - tonumber(b[2])) * cap / 60000))
  end
end
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[3]) >= rate then return {1, tok} end
end
local max = tonumber(ARGV[4])
if max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local others = 0
  for _, r in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if r ~= ARGV[1] then
      others = others + (tonumber(redis.call('HGET', ARGV[9] .. 'r:' .. r, ARGV[2])) or 0)
    end
  end
  if others + tonumber(ARGV[3]) > max then return {2, tok} end
end
put(KEYS[2], ARGV[2], ARGV[3], ARGV[10])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if rate > 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[7])
  redis.call('PEXPIRE', KEYS[3], 60000)
end
return {0, tok}
"
);

/// A release: the replica's new count of one field. KEYS: own hash. ARGV: field, count,
/// TTL ms, version.
const SET: &str = concat!(
    put_lua!(),
    r"
put(KEYS[1], ARGV[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"
);

/// The heartbeat: rewrites the replica's hash from its local counts and renews its lease.
/// KEYS: replicas, own hash. ARGV: replica id, TTL ms, the version `H` taken before the
/// counts were read, then field, count, version triples (the nonzero counts). Fields not
/// carried are removed where their stored version is older than `H`.
const HEARTBEAT: &str = concat!(
    put_lua!(),
    r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = {}
for i = 4, #ARGV, 3 do
  put(KEYS[2], ARGV[i], ARGV[i + 1], ARGV[i + 2])
  seen[ARGV[i]] = true
end
local h = tonumber(ARGV[3])
for i, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  local field = f
  if string.sub(f, 1, 2) == 'v:' then field = string.sub(f, 3) end
  if not seen[field] and tonumber(redis.call('HGET', KEYS[2], 'v:' .. field) or '0') < h then
    redis.call('HDEL', KEYS[2], field, 'v:' .. field)
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return 0
"
);

/// A batch of bytes moved: refills the bucket, takes them out (it may go into debt, clamped
/// at one minute's budget: `-bytes_per_min`) and returns what remains. KEYS: bucket. ARGV: bytes, bytes per minute.
const BYTES: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tok', 'ts')
local tok = cap
if b[1] then
  tok = math.min(cap, tonumber(b[1]) + math.floor((now - tonumber(b[2])) * cap / 60000))
end
tok = math.max(-cap, tok - tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'tok', tok, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return tok
";

/// Which per-identity count a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Open connections (`--max-concurrent`).
    Conn,
    /// WebSocket sessions (`--max-sessions-per-identity`).
    Session,
}

impl Kind {
    fn field(self, identity: &str) -> String {
        match self {
            Kind::Conn => format!("c:{identity}"),
            Kind::Session => format!("s:{identity}"),
        }
    }
}

/// What Redis said about an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    PerMinute,
    Concurrent,
}

/// One of this replica's counts of an identity and its version ([`next_version`]), read
/// together under the identity's lock: of two stamps of one count, the one with the larger
/// version was read later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub count: u32,
    pub version: u64,
}

/// The admission request of one connection or session.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub kind: Kind,
    /// This replica's count of `kind` for the identity, this admission included.
    pub local: Stamp,
    /// Concurrent cap across replicas (0 = none).
    pub max: u32,
    /// Opens per minute across replicas (0 = none; sessions pass 0).
    pub per_min: u32,
    /// Bytes per minute (0 = none): the answer carries the shared bucket's level.
    pub bytes_per_min: u64,
}

/// A freed slot: which count, of which identity (its new count is read when sent).
type Release = (Kind, Weak<Identity>);

/// Whether shared enforcement is on, for `GET /health` and the logs.
#[derive(Debug, Clone)]
enum State {
    Up,
    Down { since: Instant, why: String },
}

/// The connection to Redis and this replica's identity in it.
pub struct SharedLimits {
    client: redis::Client,
    /// Display form of the URL (no password).
    target: String,
    replica: String,
    ttl: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    /// The fallback was logged (once per outage, including one at start).
    warned: AtomicBool,
    state: Mutex<State>,
    releases: mpsc::UnboundedSender<Release>,
    /// Taken by [`SharedLimits::run`].
    release_rx: Mutex<Option<mpsc::UnboundedReceiver<Release>>>,
    admit: Script,
    set: Script,
    heartbeat: Script,
    bytes: Script,
    seq: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("target", &self.target)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// Parses `redis://HOST:PORT[/DB]` (also `redis://:PASSWORD@HOST...` and `rediss://` are left
/// to the client crate, which validates the URL).
pub fn parse_url(url: &str) -> Result<redis::Client, String> {
    if !url.starts_with("redis://") {
        return Err(format!(
            "--shared-limits: '{url}' must look like redis://HOST:PORT[/DB]"
        ));
    }
    redis::Client::open(url).map_err(|e| format!("--shared-limits: '{url}': {e}"))
}

fn random_id() -> String {
    let r = RandomState::new().hash_one(std::process::id());
    format!("{}-{r:016x}", std::process::id())
}

/// Runs a prepared script with the command deadline; the error is the reason to log.
async fn call<T: redis::FromRedisValue>(
    inv: &redis::ScriptInvocation<'_>,
    conn: &mut MultiplexedConnection,
    what: &str,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, inv.invoke_async(conn)).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {COMMAND_TIMEOUT:?}")),
    }
}

impl SharedLimits {
    /// A handle for Redis at `client`; `ttl` is the replica lease (heartbeat every ttl/3).
    /// Nothing is contacted until [`SharedLimits::run`].
    pub fn new(client: redis::Client, ttl: Duration) -> Arc<Self> {
        let info = client.get_connection_info();
        let target = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(SharedLimits {
            client,
            target,
            replica: random_id(),
            ttl,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            state: Mutex::new(State::Down {
                since: Instant::now(),
                why: "not connected yet".into(),
            }),
            releases: tx,
            release_rx: Mutex::new(Some(rx)),
            admit: Script::new(ADMIT),
            set: Script::new(SET),
            heartbeat: Script::new(HEARTBEAT),
            bytes: Script::new(BYTES),
            seq: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// True while limits are enforced through Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// One line for `GET /health`: `shared-limits=redis` or
    /// `shared-limits=local-fallback (...)`.
    pub fn health(&self) -> String {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Up => format!("shared-limits=redis ({})", self.target),
            State::Down { since, why } => format!(
                "shared-limits=local-fallback ({} unreachable for {} s: {why}; each replica enforces its own limits)",
                self.target,
                since.elapsed().as_secs()
            ),
        }
    }

    fn own_key(&self) -> String {
        format!("{PREFIX}r:{}", self.replica)
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.is_up() {
            return None;
        }
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark_down(&self, why: String) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.up.store(false, Ordering::Release);
        if !self.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                redis = %self.target,
                "shared limits: Redis unreachable ({why}); falling back to this replica's local limits"
            );
        }
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Down {
            since: Instant::now(),
            why,
        };
    }

    fn mark_up(&self, conn: MultiplexedConnection) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Up;
        self.up.store(true, Ordering::Release);
        self.warned.store(false, Ordering::Release);
        tracing::info!(redis = %self.target, replica = %self.replica, "shared limits: connected to Redis");
    }

    /// Asks Redis to admit a connection or session of `identity`. `None`: Redis is not
    /// available (the caller applies its local limits only); the failure is logged once.
    pub async fn admit(&self, identity: &str, a: Admission) -> Option<(Verdict, Option<i64>)> {
        let mut conn = self.connection()?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut inv = self.admit.prepare_invoke();
        inv.key(format!("{PREFIX}replicas"))
            .key(self.own_key())
            .key(format!("{PREFIX}opens:{identity}"))
            .key(format!("{PREFIX}bytes:{identity}"))
            .arg(&self.replica)
            .arg(a.kind.field(identity))
            .arg(a.local.count)
            .arg(a.max)
            .arg(self.ttl_ms())
            .arg(a.per_min)
            .arg(format!("{}:{seq}", self.replica))
            .arg(a.bytes_per_min)
            .arg(PREFIX)
            .arg(a.local.version);
        match call::<(i64, i64)>(&inv, &mut conn, "admission").await {
            Ok((code, tok)) => {
                let verdict = match code {
                    0 => Verdict::Admitted,
                    1 => Verdict::PerMinute,
                    _ => Verdict::Concurrent,
                };
                Some((verdict, (a.bytes_per_min > 0).then_some(tok)))
            }
            Err(why) => {
                self.mark_down(why);
                None
            }
        }
    }

    /// A slot of `identity` was freed: its new local count is sent by the background task.
    pub fn release(&self, kind: Kind, identity: &Arc<Identity>) {
        if self.is_up() {
            let _ = self.releases.send((kind, Arc::downgrade(identity)));
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1000)
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| format!("connecting: {e}"))
    }

    /// Rewrites this replica's hash from the counts of `identities` (read now). `before` is a
    /// [`next_version`] taken before `identities` was listed: an identity missing from the
    /// list was created later, so each of its counts has a newer version than `before`.
    async fn send_heartbeat(
        &self,
        conn: &mut MultiplexedConnection,
        before: u64,
        identities: &[Arc<Identity>],
    ) -> Result<(), String> {
        let mut inv = self.heartbeat.prepare_invoke();
        inv.key(format!("{PREFIX}replicas"))
            .key(self.own_key())
            .arg(&self.replica)
            .arg(self.ttl_ms())
            .arg(before);
        for (field, s) in counts(identities) {
            inv.arg(field).arg(s.count).arg(s.version);
        }
        call::<i64>(&inv, conn, "heartbeat").await.map(drop)
    }

    async fn send_count(
        &self,
        conn: &mut MultiplexedConnection,
        field: String,
        s: Stamp,
    ) -> Result<(), String> {
        let mut inv = self.set.prepare_invoke();
        inv.key(self.own_key())
            .arg(field)
            .arg(s.count)
            .arg(self.ttl_ms())
            .arg(s.version);
        call::<i64>(&inv, conn, "release").await.map(drop)
    }

    async fn send_bytes(
        &self,
        conn: &mut MultiplexedConnection,
        identity: &str,
        used: u64,
        per_min: u64,
    ) -> Result<i64, String> {
        let mut inv = self.bytes.prepare_invoke();
        inv.key(format!("{PREFIX}bytes:{identity}"))
            .arg(used)
            .arg(per_min);
        call(&inv, conn, "byte flush").await
    }

    /// The background task: connects (and reconnects every second while Redis is away),
    /// renews the lease every TTL / 3 with the full local counts, sends releases as they
    /// happen (all those queued meanwhile together, pipelined, one per count) and flushes byte counts every [`BATCH`]. `identities` lists the live identities
    /// of this replica; `bytes_per_min` is the configured byte limit (0 = none).
    pub async fn run<F>(self: Arc<Self>, identities: F, bytes_per_min: u64)
    where
        F: Fn() -> Vec<Arc<Identity>> + Send + 'static,
    {
        let Some(mut releases) = self.release_rx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let beat_every = (self.ttl / 3).max(Duration::from_millis(300));
        let mut tick = tokio::time::interval(BATCH.min(beat_every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat: Option<Instant> = None;
        let mut last_flush = Instant::now();
        loop {
            let released = tokio::select! {
                _ = tick.tick() => Vec::new(),
                r = releases.recv() => match r {
                    Some(r) => {
                        let mut all = vec![r];
                        while let Ok(r) = releases.try_recv() {
                            all.push(r);
                        }
                        all
                    }
                    None => return,
                },
            };
            let Some(mut conn) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
                if !released.is_empty() {
                    continue; // republished by the heartbeat after reconnecting
                }
                match self.connect().await {
                    Ok(mut conn) => match self
                        .send_heartbeat(&mut conn, next_version(), &identities())
                        .await
                    {
                        Ok(()) => {
                            last_beat = Some(Instant::now());
                            self.mark_up(conn);
                        }
                        Err(why) => self.mark_down(why),
                    },
                    Err(why) => self.mark_down(why),
                }
                continue;
            };
            let result = async {
                if !released.is_empty() {
                    // One message per count, however many slots of it were freed: each
                    // carries the count as it is when sent.
                    let mut once = std::collections::HashSet::new();
                    let this = &*self;
                    let sends = released.into_iter().filter_map(|(kind, id)| {
                        let id = id.upgrade()?;
                        if !once.insert((kind, id.name.clone())) {
                            return None;
                        }
                        let mut conn = conn.clone();
                        Some(async move {
                            this.send_count(&mut conn, kind.field(&id.name), id.stamp(kind))
                                .await
                        })
                    });
                    for r in futures_util::future::join_all(sends).await {
                        r?;
                    }
                    return Ok(());
                }
                if last_beat.is_none_or(|t| t.elapsed() >= beat_every) {
                    // Arguments are evaluated in order: the version before the listing.
                    self.send_heartbeat(&mut conn, next_version(), &identities())
                        .await?;
                    last_beat = Some(Instant::now());
                }
                if bytes_per_min > 0
                    && last_flush.elapsed() >= BATCH.saturating_sub(Duration::from_millis(50))
                {
                    last_flush = Instant::now();
                    // All identities at once: the multiplexed connection pipelines them.
                    let this = &*self;
                    let flushes = identities().into_iter().filter_map(|id| {
                        let used = id.take_unflushed()?;
                        let mut conn = conn.clone();
                        Some(async move {
                            let left = this.send_bytes(&mut conn, &id.name, used, bytes_per_min).await;
                            id.flushed(used, left.as_ref().ok().copied());
                            left.map(drop)
                        })
                    });
                    for r in futures_util::future::join_all(flushes).await {
                        r?;
                    }
                }
                Ok::<(), String>(())
            }
            .await;
            if let Err(why) = result {
                self.mark_down(why);
            }
        }
    }
}

/// Every nonzero count of this replica, as hash fields.
fn counts(identities: &[Arc<Identity>]) -> Vec<(String, Stamp)> {
    let mut out = Vec::new();
    for id in identities {
        for kind in [Kind::Conn, Kind::Session] {
            let s = id.stamp(kind);
            if s.count > 0 {
                out.push((kind.field(&id.name), s));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("redis://127.0.0.1:6379/2").is_ok());
        assert!(parse_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_url("http://127.0.0.1:6379")
            .unwrap_err()
            .contains("redis://HOST:PORT"));
        assert!(parse_url("127.0.0.1:6379").is_err());
        let s = SharedLimits::new(
            parse_url("redis://127.0.0.1:6390/3").unwrap(),
            Duration::from_secs(15),
        );
        assert!(!s.is_up());
        assert!(
            s.health()
                .starts_with("shared-limits=local-fallback (redis://127.0.0.1:6390/3"),
            "{}",
            s.health()
        );
        assert_ne!(random_id(), random_id());
    }
}
