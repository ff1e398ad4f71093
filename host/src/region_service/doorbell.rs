//! The doorbell thread of the region service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Notify;

use crate::shm::Region;

/// The doorbell thread re-checks this often even without a wake-up, in
/// case a worker bumps without waking.
const DOORBELL_RECHECK: Duration = Duration::from_millis(500);

/// The doorbell thread: sleeps on `host_doorbell`, pokes the service, and
/// waits for the service to start a scan before sleeping again, so a busy
/// worker costs one poke per scan, not one per bump.
pub(super) struct Doorbell {
    pub(super) notify: Arc<Notify>,
    shared: Arc<DoorbellShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct DoorbellShared {
    stop: AtomicBool,
    /// Set by the thread when it pokes, cleared by the service at a scan.
    poked: AtomicBool,
}

impl Doorbell {
    pub(super) fn start(region: Arc<Region>) -> anyhow::Result<Doorbell> {
        let notify = Arc::new(Notify::new());
        let shared = Arc::new(DoorbellShared {
            stop: AtomicBool::new(false),
            poked: AtomicBool::new(false),
        });
        let (n, s) = (notify.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("lwhost-doorbell".into())
            .spawn(move || doorbell_loop(&region, &n, &s))
            .context("starting the doorbell thread")?;
        Ok(Doorbell {
            notify,
            shared,
            thread: Some(thread),
        })
    }

    /// Called by the service as it starts a scan.
    pub(super) fn taken(&self) {
        self.shared.poked.store(false, Ordering::SeqCst);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    pub(super) fn stop(&mut self, region: &Region) {
        self.shared.stop.store(true, Ordering::SeqCst);
        crate::futex::wake_all(region.host_doorbell());
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if t.join().is_err() {
                tracing::warn!("doorbell thread panicked");
            }
        }
    }
}

fn doorbell_loop(region: &Region, notify: &Notify, shared: &DoorbellShared) {
    let bell = region.host_doorbell();
    let mut last = bell.load(Ordering::SeqCst);
    // Poke once at start: requests may predate us.
    let mut poke = true;
    while !shared.stop.load(Ordering::SeqCst) {
        if poke {
            shared.poked.store(true, Ordering::SeqCst);
            notify.notify_one();
            while shared.poked.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(DOORBELL_RECHECK);
            }
        }
        // Announce the sleep, then re-check, then sleep only if nothing
        // changed: pairs with the worker's bump-then-check (SeqCst both).
        region.host_waiting().store(1, Ordering::SeqCst);
        if bell.load(Ordering::SeqCst) == last && !shared.stop.load(Ordering::SeqCst) {
            crate::futex::wait(bell, last, Some(DOORBELL_RECHECK));
        }
        region.host_waiting().store(0, Ordering::SeqCst);
        let now = bell.load(Ordering::SeqCst);
        poke = now != last;
        last = now;
    }
}
