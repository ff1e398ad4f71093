//! Per-identity limits (proxy/README.md, "Command line"): bytes per minute, connections per minute, concurrent
//! connections. Identity = token subject, else the client address. Hitting one ends only the
//! offending connection or open, with an error naming the limit.
//!
//! With `--shared-limits` (module [`crate::shared_limits`]) every admission is also checked
//! against the counts of the other replicas in Redis, and byte counts are flushed there in
//! batches; the local limits below still apply on their own, and alone when Redis is away.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::shared_limits::{next_version, Admission, Kind, SharedLimits, Stamp, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per minute, both directions together; 0 = unlimited.
    pub bytes_per_min: u64,
    /// New connections per minute; 0 = unlimited.
    pub conns_per_min: u32,
    /// Concurrent connections; 0 = unlimited.
    pub max_concurrent: u32,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Largest WebSocket message accepted from a client.
    pub max_message: usize,
    /// UDP datagrams per minute (Wisp UDP streams), both directions together; 0 = unlimited.
    pub udp_packets_per_min: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bytes_per_min: 10 * 1024 * 1024,
            conns_per_min: 30,
            max_concurrent: 5,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_message: 1024 * 1024,
            udp_packets_per_min: 600,
        }
    }
}

#[derive(Debug)]
struct Rates {
    opens: VecDeque<Instant>,
    tokens: f64,
    refilled_at: Instant,
    /// Token bucket of UDP datagrams, refilled at `udp_packets_per_min`.
    packets: f64,
    packets_at: Instant,
    /// The shared byte bucket's level as Redis last reported it, and when.
    shared_left: Option<(f64, Instant)>,
    /// Bytes moved here since the last flush to Redis.
    unflushed: u64,
    /// Bytes of flushes sent to Redis whose answer has not come back yet: not in
    /// `shared_left` yet, so still subtracted from it.
    in_flight: u64,
    /// Last time the identity moved bytes or was admitted here: zero-byte flushes (which only
    /// refresh `shared_left`) are sent within a minute of it, not forever.
    active: Instant,
}

impl Rates {
    /// What the shared bucket allows now: its level as last seen, refilled since (at `cap`
    /// bytes per minute, up to `cap`), less what this replica moved that Redis has not
    /// answered for yet. `None` before Redis reported a level.
    fn shared_available(&self, now: Instant, cap: f64) -> Option<f64> {
        let (left, at) = self.shared_left?;
        let refilled = (left + now.duration_since(at).as_secs_f64() * cap / 60.0).min(cap);
        Some(refilled - self.unflushed as f64 - self.in_flight as f64)
    }
}

/// The shared state of one identity, across all its sessions.
#[derive(Debug)]
pub struct Identity {
    pub name: String,
    concurrent: AtomicU32,
    /// WebSocket sessions of this identity now.
    sessions: AtomicU32,
    rates: Mutex<Rates>,
    /// Redis shared by the replicas (`--shared-limits`), if any.
    shared: Option<Arc<SharedLimits>>,
}

/// Releases a session place of an identity when the session ends.
#[derive(Debug)]
pub struct SessionSlot(Arc<Identity>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.release(Kind::Session);
    }
}

/// Releases a concurrent-connection slot when the connection ends, however it ends.
#[derive(Debug)]
pub struct ConnSlot(Arc<Identity>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.release(Kind::Conn);
    }
}

const MINUTE: Duration = Duration::from_secs(60);

impl Identity {
    fn new(name: String, limits: &Limits, shared: Option<Arc<SharedLimits>>) -> Self {
        Identity {
            name,
            concurrent: AtomicU32::new(0),
            sessions: AtomicU32::new(0),
            rates: Mutex::new(Rates {
                opens: VecDeque::new(),
                tokens: limits.bytes_per_min as f64,
                refilled_at: Instant::now(),
                packets: f64::from(limits.udp_packets_per_min),
                packets_at: Instant::now(),
                shared_left: None,
                unflushed: 0,
                in_flight: 0,
                active: Instant::now(),
            }),
            shared,
        }
    }

    fn rates(&self) -> std::sync::MutexGuard<'_, Rates> {
        // A panic elsewhere while holding the lock must not disable limiting.
        self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection or says which limit it hits: the local limits, then (with
    /// `--shared-limits` and Redis reachable) the same limits across all replicas.
    pub async fn try_open(self: &Arc<Self>, limits: &Limits) -> Result<ConnSlot, String> {
        let (slot, at) = self.try_open_local(limits)?;
        let per_min = || format!("limit: connections per minute ({})", limits.conns_per_min);
        let concurrent = || format!("limit: concurrent connections ({})", limits.max_concurrent);
        let a = Admission {
            kind: Kind::Conn,
            local: self.stamp(Kind::Conn),
            max: limits.max_concurrent,
            per_min: limits.conns_per_min,
            bytes_per_min: limits.bytes_per_min,
        };
        match self.admit_shared(a).await {
            None | Some(Verdict::Admitted) => Ok(slot),
            Some(v) => {
                // Refused elsewhere: this open does not count in the local per-minute log.
                let mut r = self.rates();
                if let Some(i) = r.opens.iter().rposition(|t| *t == at) {
                    r.opens.remove(i);
                }
                Err(if v == Verdict::PerMinute {
                    per_min()
                } else {
                    concurrent()
                })
            }
        }
    }

    /// The local half of [`Self::try_open`]: the slot and the instant recorded in the
    /// per-minute log.
    fn try_open_local(self: &Arc<Self>, limits: &Limits) -> Result<(ConnSlot, Instant), String> {
        let now = Instant::now();
        let mut r = self.rates();
        while r.opens.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
            r.opens.pop_front();
        }
        if limits.conns_per_min > 0 && r.opens.len() >= limits.conns_per_min as usize {
            return Err(format!(
                "limit: connections per minute ({})",
                limits.conns_per_min
            ));
        }
        let prev = self.concurrent.fetch_add(1, Ordering::AcqRel);
        let slot = ConnSlot(self.clone());
        if limits.max_concurrent > 0 && prev >= limits.max_concurrent {
            return Err(format!(
                "limit: concurrent connections ({})",
                limits.max_concurrent
            ));
        }
        r.opens.push_back(now);
        Ok((slot, now))
    }

    /// Asks Redis (if configured and reachable); `None` means local limits only.
    async fn admit_shared(&self, a: Admission) -> Option<Verdict> {
        self.rates().active = Instant::now();
        let (verdict, left) = self.shared.as_ref()?.admit(&self.name, a).await?;
        if let Some(left) = left {
            self.set_shared_bytes(left);
        }
        Some(verdict)
    }

    /// Takes one of the identity's `max` session places (0 = unlimited), atomically, here
    /// and (with `--shared-limits`) across all replicas.
    pub async fn try_session(self: &Arc<Self>, max: u32) -> Result<SessionSlot, String> {
        let prev = self.sessions.fetch_add(1, Ordering::AcqRel);
        let slot = SessionSlot(self.clone());
        let refused = || format!("limit: sessions per identity ({max})");
        if max > 0 && prev >= max {
            return Err(refused());
        }
        let a = Admission {
            kind: Kind::Session,
            local: self.stamp(Kind::Session),
            max,
            per_min: 0,
            bytes_per_min: 0,
        };
        match self.admit_shared(a).await {
            None | Some(Verdict::Admitted) => Ok(slot),
            Some(_) => Err(refused()),
        }
    }

    /// The counter of this replica's open connections or sessions of the identity.
    fn counter(&self, kind: Kind) -> &AtomicU32 {
        match kind {
            Kind::Conn => &self.concurrent,
            Kind::Session => &self.sessions,
        }
    }

    /// This replica's open connections or sessions of the identity.
    pub fn count(&self, kind: Kind) -> u32 {
        self.counter(kind).load(Ordering::Acquire)
    }

    /// Gives back one place of `kind` (a [`SessionSlot`] or [`ConnSlot`] ending): here, and
    /// (with `--shared-limits`) in Redis.
    fn release(self: &Arc<Self>, kind: Kind) {
        self.counter(kind).fetch_sub(1, Ordering::AcqRel);
        if let Some(sh) = &self.shared {
            sh.release(kind, self);
        }
    }

    /// This replica's count of `kind` with a fresh version, read under the identity's lock so
    /// that the larger of two versions goes with the later read ([`Stamp`]).
    pub fn stamp(&self, kind: Kind) -> Stamp {
        let _order = self.rates();
        Stamp {
            count: self.count(kind),
            version: next_version(),
        }
    }

    /// Bytes to flush to the shared bucket, or `None` when there is nothing to send: no
    /// bytes, and no activity (bytes moved, admission) in the last minute that would make a
    /// fresh level worth asking for. The bytes move from the unflushed count to the in-flight
    /// one until [`Self::flushed`] reports the answer.
    pub fn take_unflushed(&self) -> Option<u64> {
        self.take_unflushed_at(Instant::now())
    }

    fn take_unflushed_at(&self, now: Instant) -> Option<u64> {
        let mut r = self.rates();
        let used = std::mem::take(&mut r.unflushed);
        r.in_flight = r.in_flight.saturating_add(used);
        (used > 0 || now.duration_since(r.active) < MINUTE).then_some(used)
    }

    /// The answer to a flush of `used` bytes ([`Self::take_unflushed`]): the bucket's level
    /// after them (bytes, may be negative: debt), or `None` when the flush failed.
    pub fn flushed(&self, used: u64, left: Option<i64>) {
        let mut r = self.rates();
        r.in_flight = r.in_flight.saturating_sub(used);
        if let Some(left) = left {
            r.shared_left = Some((left as f64, Instant::now()));
        }
    }

    /// Records the shared bucket's level (bytes, may be negative: debt) as of now.
    pub fn set_shared_bytes(&self, left: i64) {
        self.rates().shared_left = Some((left as f64, Instant::now()));
    }

    /// Charges `n` transferred bytes against the per-minute budget (a token bucket that
    /// refills continuously, so the limit holds over any one-minute span).
    pub fn charge_bytes(&self, n: usize, limits: &Limits) -> Result<(), String> {
        if limits.bytes_per_min == 0 {
            return Ok(());
        }
        let cap = limits.bytes_per_min as f64;
        let now = Instant::now();
        let mut r = self.rates();
        r.active = now;
        let shared_up = self.shared.as_ref().is_some_and(|s| s.is_up());
        if let Some(avail) = r.shared_available(now, cap).filter(|_| shared_up) {
            if avail < n as f64 {
                return Err(format!("limit: bytes per minute ({})", limits.bytes_per_min));
            }
        }
        let elapsed = now.duration_since(r.refilled_at).as_secs_f64();
        r.tokens = (r.tokens + elapsed * cap / 60.0).min(cap);
        r.refilled_at = now;
        if r.tokens < n as f64 {
            return Err(format!("limit: bytes per minute ({})", limits.bytes_per_min));
        }
        r.tokens -= n as f64;
        if shared_up {
            r.unflushed = r.unflushed.saturating_add(n as u64);
        }
        Ok(())
    }

    /// Charges one UDP datagram of `n` bytes: one packet against the per-minute packet
    /// budget (a token bucket like the byte one), then its bytes via [`Self::charge_bytes`].
    pub fn charge_datagram(&self, n: usize, limits: &Limits) -> Result<(), String> {
        if limits.udp_packets_per_min > 0 {
            let cap = f64::from(limits.udp_packets_per_min);
            let now = Instant::now();
            let mut r = self.rates();
            let elapsed = now.duration_since(r.packets_at).as_secs_f64();
            r.packets = (r.packets + elapsed * cap / 60.0).min(cap);
            r.packets_at = now;
            if r.packets < 1.0 {
                return Err(format!(
                    "limit: UDP packets per minute ({})",
                    limits.udp_packets_per_min
                ));
            }
            r.packets -= 1.0;
        }
        self.charge_bytes(n, limits)
    }

    fn is_idle(&self, limits: &Limits) -> bool {
        let r = self.rates();
        let full = limits.bytes_per_min == 0
            || r.tokens + r.refilled_at.elapsed().as_secs_f64() * limits.bytes_per_min as f64 / 60.0
                >= limits.bytes_per_min as f64;
        self.concurrent.load(Ordering::Acquire) == 0
            && self.sessions.load(Ordering::Acquire) == 0
            && full
            && r.opens.back().is_none_or(|t| t.elapsed() >= MINUTE)
    }
}

/// All identities; entries that are idle and back to a full budget are dropped.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<Identity>>>,
    shared: Option<Arc<SharedLimits>>,
}

impl Registry {
    /// A registry whose identities also check `shared` (`--shared-limits`).
    pub fn new(shared: Option<Arc<SharedLimits>>) -> Self {
        Registry {
            map: Mutex::default(),
            shared,
        }
    }

    /// Every identity known now.
    pub fn all(&self) -> Vec<Arc<Identity>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub fn get(&self, name: &str, limits: &Limits) -> Arc<Identity> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = map.get(name) {
            return id.clone();
        }
        if map.len() >= 4096 {
            map.retain(|_, id| Arc::strong_count(id) > 1 || !id.is_idle(limits));
        }
        let id = Arc::new(Identity::new(name.to_owned(), limits, self.shared.clone()));
        map.insert(name.to_owned(), id.clone());
        id
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_limit_and_release() {
        let limits = Limits {
            max_concurrent: 2,
            ..Limits::default()
        };
        let reg = Registry::default();
        let id = reg.get("a", &limits);
        let s1 = id.try_open(&limits).await.unwrap();
        let _s2 = id.try_open(&limits).await.unwrap();
        assert_eq!(
            id.try_open(&limits).await.unwrap_err(),
            "limit: concurrent connections (2)"
        );
        drop(s1);
        assert!(id.try_open(&limits).await.is_ok());
        // Another identity is unaffected.
        assert!(reg.get("b", &limits).try_open(&limits).await.is_ok());
    }

    #[tokio::test]
    async fn connections_per_minute() {
        let limits = Limits {
            conns_per_min: 3,
            max_concurrent: 0,
            ..Limits::default()
        };
        let id = Registry::default().get("a", &limits);
        for _ in 0..3 {
            drop(id.try_open(&limits).await.unwrap());
        }
        assert!(id
            .try_open(&limits)
            .await
            .unwrap_err()
            .contains("connections per minute (3)"));
    }

    #[test]
    fn bytes_per_minute() {
        let limits = Limits {
            bytes_per_min: 1000,
            ..Limits::default()
        };
        let id = Registry::default().get("a", &limits);
        id.charge_bytes(600, &limits).unwrap();
        id.charge_bytes(300, &limits).unwrap();
        assert!(id
            .charge_bytes(200, &limits)
            .unwrap_err()
            .contains("bytes per minute (1000)"));
        let unlimited = Limits {
            bytes_per_min: 0,
            ..Limits::default()
        };
        id.charge_bytes(usize::MAX, &unlimited).unwrap();
    }

    #[test]
    fn zero_byte_flushes_stop_a_minute_after_the_last_activity() {
        let limits = Limits::default();
        let id = Registry::default().get("a", &limits);
        let now = Instant::now();
        // Just created (about to be admitted): a level is worth asking for.
        assert_eq!(id.take_unflushed_at(now), Some(0));
        // A flush answer is not activity: with nothing moved, no flush a minute later.
        id.flushed(0, Some(500));
        assert_eq!(id.take_unflushed_at(now + Duration::from_secs(61)), None);
        // Moving bytes is activity again.
        id.charge_bytes(10, &limits).unwrap();
        let moved = Instant::now();
        assert_eq!(id.take_unflushed_at(moved + Duration::from_secs(30)), Some(0));
        assert_eq!(id.take_unflushed_at(moved + Duration::from_secs(61)), None);
        // Bytes not flushed yet are always sent, however long ago.
        id.rates().unflushed = 100;
        assert_eq!(id.take_unflushed_at(moved + Duration::from_secs(3600)), Some(100));
    }

    #[test]
    fn bytes_in_flight_are_not_spendable_twice() {
        let limits = Limits::default();
        let id = Registry::default().get("a", &limits);
        let cap = 1_000_000.0;
        let now = Instant::now();
        id.rates().shared_left = Some((1000.0, now));
        id.rates().unflushed = 100;
        let avail = |id: &Identity| id.rates().shared_available(now, cap).unwrap();
        assert_eq!(avail(&id), 900.0);
        // Sent, no answer yet: still subtracted.
        assert_eq!(id.take_unflushed(), Some(100));
        assert_eq!(avail(&id), 900.0);
        // The answer includes them: the level replaces the in-flight count.
        id.flushed(100, Some(850));
        let r = id.rates();
        assert_eq!(r.in_flight, 0);
        assert!((r.shared_available(now, cap).unwrap() - 850.0).abs() < 1.0);
        drop(r);
        // A failed flush only drops the in-flight count.
        id.rates().unflushed = 50;
        assert_eq!(id.take_unflushed(), Some(50));
        id.flushed(50, None);
        assert_eq!(id.rates().in_flight, 0);
    }

    #[test]
    fn udp_packets_per_minute() {
        let limits = Limits {
            udp_packets_per_min: 3,
            bytes_per_min: 100,
            ..Limits::default()
        };
        let id = Registry::default().get("a", &limits);
        for _ in 0..3 {
            id.charge_datagram(10, &limits).unwrap();
        }
        assert!(id
            .charge_datagram(10, &limits)
            .unwrap_err()
            .contains("UDP packets per minute (3)"));
        // Bytes are charged too.
        let id = Registry::default().get("b", &limits);
        assert!(id
            .charge_datagram(101, &limits)
            .unwrap_err()
            .contains("bytes per minute"));
    }
}
