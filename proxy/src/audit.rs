//! One audit line per connection, emitted when the connection ends however it ends
//! (including a session that vanished: the record is written from `Drop`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct Audit {
    pub identity: String,
    pub client: SocketAddr,
    pub id: u32,
    pub target: String,
    pub tls: bool,
    pub resolved: Mutex<Option<SocketAddr>>,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub outcome: Mutex<String>,
    started: Instant,
}

impl Audit {
    pub fn new(identity: String, client: SocketAddr, id: u32, target: String, tls: bool) -> Self {
        Audit {
            identity,
            client,
            id,
            target,
            tls,
            resolved: Mutex::new(None),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            outcome: Mutex::new("aborted: session ended".into()),
            started: Instant::now(),
        }
    }

    pub fn add_up(&self, n: usize) {
        self.bytes_up.fetch_add(n as u64, Relaxed);
    }

    pub fn add_down(&self, n: usize) {
        self.bytes_down.fetch_add(n as u64, Relaxed);
    }

    pub fn set_resolved(&self, addr: SocketAddr) {
        *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
    }

    pub fn set_outcome(&self, outcome: impl Into<String>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = outcome.into();
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let resolved = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|a| a.to_string());
        let outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner()).clone();
        tracing::info!(
            target: "audit",
            identity = %self.identity,
            client = %self.client,
            conn_id = self.id,
            target_host = %self.target,
            resolved = resolved.as_deref().unwrap_or("-"),
            tls = self.tls,
            bytes_up = self.bytes_up.load(Relaxed),
            bytes_down = self.bytes_down.load(Relaxed),
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome = %outcome,
            "connection"
        );
    }
}
