//! Per-identity limits (proxy/README.md, "Command line"): bytes per minute, connections per minute, concurrent
//! connections. Identity = token subject, else the client address. Hitting one ends only the
//! offending connection or open, with an error naming the limit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

/// The shared state of one identity, across all its sessions.
#[derive(Debug)]
pub struct Identity {
    pub name: String,
    concurrent: AtomicU32,
    /// WebSocket sessions of this identity now.
    sessions: AtomicU32,
    rates: Mutex<Rates>,
}

/// Releases a session place of an identity when the session ends.
#[derive(Debug)]
pub struct SessionSlot(Arc<Identity>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Releases a concurrent-connection slot when the connection ends, however it ends.
#[derive(Debug)]
pub struct ConnSlot(Arc<Identity>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.concurrent.fetch_sub(1, Ordering::AcqRel);
    }
}

const MINUTE: Duration = Duration::from_secs(60);

impl Identity {
    fn new(name: String, limits: &Limits) -> Self {
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
            }),
        }
    }

    fn rates(&self) -> std::sync::MutexGuard<'_, Rates> {
        // A panic elsewhere while holding the lock must not disable limiting.
        self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection or says which limit it hits.
    pub fn try_open(self: &Arc<Self>, limits: &Limits) -> Result<ConnSlot, String> {
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
        Ok(slot)
    }

    /// Takes one of the identity's `max` session places (0 = unlimited), atomically.
    pub fn try_session(self: &Arc<Self>, max: u32) -> Result<SessionSlot, String> {
        let prev = self.sessions.fetch_add(1, Ordering::AcqRel);
        let slot = SessionSlot(self.clone());
        if max > 0 && prev >= max {
            return Err(format!("limit: sessions per identity ({max})"));
        }
        Ok(slot)
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
        let elapsed = now.duration_since(r.refilled_at).as_secs_f64();
        r.tokens = (r.tokens + elapsed * cap / 60.0).min(cap);
        r.refilled_at = now;
        if r.tokens < n as f64 {
            return Err(format!("limit: bytes per minute ({})", limits.bytes_per_min));
        }
        r.tokens -= n as f64;
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
}

impl Registry {
    pub fn get(&self, name: &str, limits: &Limits) -> Arc<Identity> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = map.get(name) {
            return id.clone();
        }
        if map.len() >= 4096 {
            map.retain(|_, id| Arc::strong_count(id) > 1 || !id.is_idle(limits));
        }
        let id = Arc::new(Identity::new(name.to_owned(), limits));
        map.insert(name.to_owned(), id.clone());
        id
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_limit_and_release() {
        let limits = Limits {
            max_concurrent: 2,
            ..Limits::default()
        };
        let reg = Registry::default();
        let id = reg.get("a", &limits);
        let s1 = id.try_open(&limits).unwrap();
        let _s2 = id.try_open(&limits).unwrap();
        assert_eq!(
            id.try_open(&limits).unwrap_err(),
            "limit: concurrent connections (2)"
        );
        drop(s1);
        assert!(id.try_open(&limits).is_ok());
        // Another identity is unaffected.
        assert!(reg.get("b", &limits).try_open(&limits).is_ok());
    }

    #[test]
    fn connections_per_minute() {
        let limits = Limits {
            conns_per_min: 3,
            max_concurrent: 0,
            ..Limits::default()
        };
        let id = Registry::default().get("a", &limits);
        for _ in 0..3 {
            drop(id.try_open(&limits).unwrap());
        }
        assert!(id
            .try_open(&limits)
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
