//! Store requests of the region service: copied out of their slot (every
//! length checked again), run on a blocking thread, the result written back.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::Service;
use crate::errno::*;
use crate::shm::StoreSlot;
use crate::store::Store;
use lwabi::{
    LWHOST_KEY_MAX, LWHOST_SLOT_DONE, LWHOST_SLOT_SUBMITTED, LWHOST_STORE_DELETE, LWHOST_STORE_LIST,
    LWHOST_STORE_READ, LWHOST_STORE_STAT, LWHOST_STORE_WRITE,
};

pub(super) struct StoreDone {
    pub(super) slot: usize,
    generation: u32,
    result: i32,
    output: Vec<u8>,
}

impl Service {
    pub(super) fn scan_store(&mut self, i: usize) {
        let Some(slot) = self.region.store_slot(i) else {
            return;
        };
        if slot.state().load(Ordering::Acquire) != LWHOST_SLOT_SUBMITTED || self.store_running[i].is_some() {
            return;
        }
        let generation = slot.generation().load(Ordering::Relaxed);
        let job = StoreJob::read_from(slot);
        self.store_running[i] = Some(generation);
        let store = self.store.clone();
        let done = self.store_tx.clone();
        tokio::task::spawn_blocking(move || {
            let (result, output) = match job {
                Ok(job) => job.run(&store),
                Err(e) => (-e, Vec::new()),
            };
            let _ = done.send(StoreDone {
                slot: i,
                generation,
                result,
                output,
            });
        });
    }

    pub(super) fn on_store_done(&mut self, done: StoreDone) {
        self.store_running[done.slot] = None;
        let Some(slot) = self.region.store_slot(done.slot) else {
            return;
        };
        if slot.state().load(Ordering::Acquire) != LWHOST_SLOT_SUBMITTED
            || slot.generation().load(Ordering::Relaxed) != done.generation
        {
            return; // the worker gave up on it
        }
        let n = done.output.len().min(StoreSlot::DATA_CAP);
        // SAFETY: the slot is SUBMITTED, so its data buffer is ours; n fits.
        unsafe { core::ptr::copy_nonoverlapping(done.output.as_ptr(), slot.data_ptr(), n) };
        slot.result().store(done.result as u32, Ordering::Relaxed);
        slot.state().store(LWHOST_SLOT_DONE, Ordering::Release);
        self.guest_dirty = true;
    }
}

/// A store request copied out of its slot.
pub(super) struct StoreJob {
    op: u32,
    flags: u32,
    key: Vec<u8>,
    after: Vec<u8>,
    offset: u64,
    data: Vec<u8>,
    capacity: usize,
}

impl StoreJob {
    /// Copies and checks a SUBMITTED slot (written by the guest side: every
    /// length is checked again).
    pub(super) fn read_from(slot: StoreSlot<'_>) -> Result<StoreJob, i32> {
        let op = slot.op().load(Ordering::Relaxed);
        let key_len = slot.key_len().load(Ordering::Relaxed) as usize;
        let after_len = slot.after_len().load(Ordering::Relaxed) as usize;
        let len = slot.len().load(Ordering::Relaxed) as usize;
        if key_len > LWHOST_KEY_MAX as usize || after_len > LWHOST_KEY_MAX as usize {
            return Err(ENAMETOOLONG);
        }
        if len > StoreSlot::DATA_CAP {
            return Err(EINVAL);
        }
        let mut key = vec![0u8; key_len];
        let mut after = vec![0u8; after_len];
        let mut data = vec![0u8; if op == LWHOST_STORE_WRITE { len } else { 0 }];
        // SAFETY: the slot is SUBMITTED (ours to read) and every length was
        // checked against its buffer (key_len + after_len <= KEY_CAP).
        unsafe {
            core::ptr::copy_nonoverlapping(slot.key_ptr(), key.as_mut_ptr(), key_len);
            core::ptr::copy_nonoverlapping(slot.key_ptr().add(key_len), after.as_mut_ptr(), after_len);
            core::ptr::copy_nonoverlapping(slot.data_ptr(), data.as_mut_ptr(), data.len());
        }
        Ok(StoreJob {
            op,
            flags: slot.flags().load(Ordering::Relaxed),
            key,
            after,
            offset: slot.offset().load(Ordering::Relaxed),
            data,
            capacity: len,
        })
    }

    /// Runs the request: (result, output bytes).
    pub(super) fn run(self, store: &Mutex<Store>) -> (i32, Vec<u8>) {
        let Ok(mut store) = store.lock() else {
            return (-EIO, Vec::new());
        };
        let as_result = |r: Result<usize, i32>| match r {
            Ok(n) => n.min(i32::MAX as usize) as i32,
            Err(e) => -e,
        };
        match self.op {
            LWHOST_STORE_WRITE => (
                as_result(store.write(&self.key, self.offset, self.flags, &self.data)),
                Vec::new(),
            ),
            LWHOST_STORE_READ => {
                let mut out = vec![0u8; self.capacity];
                let r = store.read(&self.key, self.offset, &mut out);
                out.truncate(*r.as_ref().unwrap_or(&0));
                (as_result(r), out)
            }
            LWHOST_STORE_STAT => match store.stat(&self.key) {
                Ok(size) => (8, size.to_le_bytes().to_vec()),
                Err(e) => (-e, Vec::new()),
            },
            LWHOST_STORE_DELETE => (as_result(store.delete(&self.key).map(|()| 0)), Vec::new()),
            LWHOST_STORE_LIST => {
                let mut out = vec![0u8; self.capacity];
                let r = store.list(&self.key, &self.after, &mut out);
                out.truncate(*r.as_ref().unwrap_or(&0));
                (as_result(r), out)
            }
            _ => (-EINVAL, Vec::new()),
        }
    }
}
