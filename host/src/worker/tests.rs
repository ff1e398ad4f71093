//! Unit tests of the worker side against a region whose main side is
//! played by hand (the real one is tested in tests/).

use super::*;
use lwabi::{LWHOST_STORE_COMMIT, LWHOST_STORE_TRUNC, LWHOST_STORE_WRITE};
use std::sync::atomic::Ordering;

fn region() -> Arc<Region> {
    let r = Region::new_memfd().expect("memfd region");
    r.init_header();
    Arc::new(r)
}

/// Plays the main side: takes a REQUESTED slot to OPEN.
fn accept(r: &Region, id: i32) -> Conn<'_> {
    let (slot, _) = split_id(id).expect("valid id");
    let c = r.conn(slot).expect("slot");
    assert_eq!(c.state().load(Ordering::Acquire), LWHOST_CONN_REQUESTED);
    c.state().store(LWHOST_CONN_OPEN, Ordering::Release);
    c
}

/// Opens a connection from `w` and plays the main side accepting it.
fn open_accepted<'r>(r: &'r Region, w: &Worker) -> (i32, Conn<'r>) {
    let id = w.net_open(b"h", 80, 0, 0);
    (id, accept(r, id))
}

/// Plays the main side's teardown after a close.
fn reap(r: &Region, id: i32) {
    let (slot, _) = split_id(id).expect("valid id");
    let c = r.conn(slot).expect("slot");
    assert_ne!(c.worker_flags().load(Ordering::Acquire) & LWHOST_WF_CLOSE, 0);
    c.tx().reset();
    c.rx().reset();
    c.main_flags().store(0, Ordering::Relaxed);
    c.error().store(0, Ordering::Relaxed);
    c.worker_flags().store(0, Ordering::Relaxed);
    c.state().store(LWHOST_CONN_FREE, Ordering::Release);
}

#[test]
fn open_fills_the_slot_and_rings_the_host() {
    let r = region();
    let w = Worker::new(r.clone());
    let bell = r.host_doorbell().load(Ordering::Relaxed);
    let id = w.net_open(b"example.com", 443, LWHOST_OPEN_TLS, 1500);
    assert!(id >= 0, "{id}");
    assert_eq!(r.host_doorbell().load(Ordering::Relaxed), bell + 1);
    let (slot, generation) = split_id(id).expect("id");
    assert_eq!(generation, 1);
    let c = r.conn(slot).expect("slot");
    assert_eq!(c.port().load(Ordering::Relaxed), 443);
    assert_eq!(c.open_flags().load(Ordering::Relaxed), LWHOST_OPEN_TLS);
    assert_eq!(c.timeout_ms().load(Ordering::Relaxed), 1500);
    assert_eq!(c.host_len().load(Ordering::Relaxed), 11);
    // SAFETY: 11 bytes of a live slot's host buffer.
    let host = unsafe { core::slice::from_raw_parts(c.host_ptr(), 11) };
    assert_eq!(host, b"example.com");
    // Not open yet: nothing to read or write, no readiness.
    assert_eq!(w.net_poll(id), 0);
    assert_eq!(w.net_read(id, &mut [0; 8]), -EAGAIN);
    assert_eq!(w.net_write(id, b"x"), -EAGAIN);
    assert_eq!(w.net_shutdown(id), -ENOTCONN);
}

#[test]
fn open_rejects_bad_arguments() {
    let w = Worker::new(region());
    assert_eq!(w.net_open(b"", 80, 0, 0), -EINVAL);
    assert_eq!(w.net_open(&[b'a'; 256], 80, 0, 0), -EINVAL);
    assert!(w.net_open(&[b'a'; 255], 80, 0, 0) >= 0);
    assert_eq!(w.net_open(b"a\0b", 80, 0, 0), -EINVAL);
    assert_eq!(w.net_open(b"host", 0, 0, 0), -EINVAL);
    assert_eq!(w.net_open(b"host", 65536, 0, 0), -EINVAL);
    assert_eq!(w.net_open(b"host", 80, 0x100, 0), -EINVAL);
}

#[test]
fn every_call_fails_once_the_main_side_is_gone() {
    let r = region();
    let w = Worker::new(r.clone());
    let (id, _) = open_accepted(&r, &w);
    r.main_alive().store(0, Ordering::Release);
    assert_eq!(w.net_open(b"h", 80, 0, 0), -ECONNRESET);
    assert_eq!(w.net_write(id, b"x"), -ECONNRESET);
    assert_eq!(w.net_read(id, &mut [0; 4]), -ECONNRESET);
    let p = w.net_poll(id);
    assert_ne!(p as u32 & LWHOST_POLL_ERR, 0);
    assert_eq!(p >> LWHOST_POLL_ERRNO_SHIFT, ECONNRESET);
    let req = StoreRequest {
        op: LWHOST_STORE_STAT,
        key: b"k",
        ..Default::default()
    };
    assert_eq!(w.store_submit(&req), -EIO);
}

#[test]
fn a_zeroed_uninitialised_region_is_refused() {
    let r = Arc::new(Region::new_memfd().expect("memfd"));
    assert!(!r.header_ok());
    let w = Worker::new(r);
    assert_eq!(w.net_open(b"h", 80, 0, 0), -ECONNRESET);
    // Id 0 would be slot 0 generation 0: never issued.
    assert_eq!(w.net_poll(0), -EBADF);
}

#[test]
fn bad_and_stale_ids_are_ebadf() {
    let r = region();
    let w = Worker::new(r.clone());
    for bad in [
        -1,
        i32::MIN,
        31,
        32,
        0xff,
        make_id(40, 1),
        make_id(3, 1),
        make_id(0, 0),
    ] {
        assert_eq!(w.net_poll(bad), -EBADF, "id {bad}");
        assert_eq!(w.net_read(bad, &mut [0; 4]), -EBADF);
        assert_eq!(w.net_write(bad, b"x"), -EBADF);
        assert_eq!(w.net_shutdown(bad), -EBADF);
        w.net_close(bad); // ignored, must not panic
    }
    let (id, _) = open_accepted(&r, &w);
    let (slot, generation) = split_id(id).expect("id");
    assert_eq!(w.net_poll(make_id(slot, generation + 1)), -EBADF);
    w.net_close(id);
    // Closed: the id is dead at once, before the main side reaps it.
    assert_eq!(w.net_poll(id), -EBADF);
    reap(&r, id);
    let again = w.net_open(b"h", 80, 0, 0);
    assert_eq!(split_id(again).expect("id"), (slot, generation + 1));
    accept(&r, again);
    assert_eq!(w.net_poll(id), -EBADF, "stale generation");
    assert_ne!(w.net_poll(again), -EBADF);
}

#[test]
fn all_connection_slots_used_is_emfile() {
    let r = region();
    let w = Worker::new(r.clone());
    let ids: Vec<i32> = (0..CONNS).map(|_| w.net_open(b"h", 80, 0, 0)).collect();
    assert!(ids.iter().all(|&id| id >= 0));
    assert_eq!(w.net_open(b"h", 80, 0, 0), -EMFILE);
    accept(&r, ids[7]);
    w.net_close(ids[7]);
    reap(&r, ids[7]);
    assert!(w.net_open(b"h", 80, 0, 0) >= 0);
}

#[test]
fn bytes_flow_both_ways_through_the_rings() {
    let r = region();
    let w = Worker::new(r.clone());
    let (id, c) = open_accepted(&r, &w);
    assert_eq!(w.net_poll(id) as u32, LWHOST_POLL_OUT);
    assert_eq!(w.net_write(id, b"hello"), 5);
    let mut got = [0u8; 16];
    assert_eq!(c.tx().pop(&mut got), Some(5));
    assert_eq!(&got[..5], b"hello");
    assert_eq!(c.rx().push(b"world"), Some(5));
    assert_eq!(w.net_poll(id) as u32, LWHOST_POLL_IN | LWHOST_POLL_OUT);
    let mut buf = [0u8; 3];
    assert_eq!(w.net_read(id, &mut buf), 3);
    assert_eq!(&buf, b"wor");
    assert_eq!(w.net_read(id, &mut buf), 2);
    assert_eq!(&buf[..2], b"ld");
    assert_eq!(w.net_read(id, &mut buf), -EAGAIN);
    assert_eq!(w.net_read(id, &mut []), 0);
    // Peer EOF: readable, then HUP once drained, read returns 0.
    c.rx().push(b"!").expect("push");
    c.main_flags().store(LWHOST_MF_PEER_EOF, Ordering::Release);
    let p = w.net_poll(id) as u32;
    assert_eq!(p & (LWHOST_POLL_IN | LWHOST_POLL_HUP), LWHOST_POLL_IN);
    assert_eq!(w.net_read(id, &mut buf), 1);
    assert_eq!(w.net_read(id, &mut buf), 0);
    assert_ne!(w.net_poll(id) as u32 & LWHOST_POLL_HUP, 0);
    // Half-close: no more writes.
    assert_eq!(w.net_shutdown(id), 0);
    assert_eq!(w.net_write(id, b"x"), -EPIPE);
    assert_eq!(w.net_poll(id) as u32 & LWHOST_POLL_OUT, 0);
}

#[test]
fn full_tx_ring_is_eagain_and_wraps_correctly() {
    let r = region();
    let w = Worker::new(r.clone());
    let (id, c) = open_accepted(&r, &w);
    let big = vec![7u8; RING_SIZE as usize + 100];
    assert_eq!(w.net_write(id, &big), RING_SIZE as i32);
    assert_eq!(w.net_write(id, b"x"), -EAGAIN);
    assert_eq!(w.net_poll(id) as u32 & LWHOST_POLL_OUT, 0);
    let mut sink = vec![0u8; 1000];
    assert_eq!(c.tx().pop(&mut sink), Some(1000));
    // The next write wraps around the end of the data array.
    let pattern: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    assert_eq!(w.net_write(id, &pattern), 1000);
    let mut rest = vec![0u8; RING_SIZE as usize];
    assert_eq!(c.tx().pop(&mut rest), Some(RING_SIZE as usize));
    assert!(rest[..RING_SIZE as usize - 1000].iter().all(|&b| b == 7));
    assert_eq!(&rest[RING_SIZE as usize - 1000..], &pattern[..]);
}

#[test]
fn failed_connections_report_their_errno() {
    let r = region();
    let w = Worker::new(r.clone());
    let id = w.net_open(b"h", 80, 0, 0);
    let (slot, _) = split_id(id).expect("id");
    let c = r.conn(slot).expect("slot");
    c.error().store(ECONNREFUSED as u32, Ordering::Relaxed);
    c.state().store(LWHOST_CONN_FAILED, Ordering::Release);
    assert_eq!(w.net_read(id, &mut [0; 4]), -ECONNREFUSED);
    assert_eq!(w.net_write(id, b"x"), -ECONNREFUSED);
    let p = w.net_poll(id);
    assert_ne!(p as u32 & LWHOST_POLL_ERR, 0);
    assert_eq!(p >> LWHOST_POLL_ERRNO_SHIFT, ECONNREFUSED);
}

#[test]
fn garbage_from_the_other_side_is_eio_not_a_crash() {
    let r = region();
    let w = Worker::new(r.clone());
    let (id, c) = open_accepted(&r, &w);
    // A head far past the tail: more "data" than the ring holds.
    c.rx().head().store(RING_SIZE * 3, Ordering::Release);
    assert_eq!(w.net_read(id, &mut [0; 4]), -EIO);
    assert_eq!(w.net_poll(id) >> LWHOST_POLL_ERRNO_SHIFT, EIO);
    c.rx().reset();
    // A tail past the head on tx.
    c.tx().tail().store(12345, Ordering::Release);
    assert_eq!(w.net_write(id, b"x"), -EIO);
    c.tx().reset();
    // A nonsense errno and a nonsense state.
    c.error().store(u32::MAX, Ordering::Relaxed);
    c.state().store(LWHOST_CONN_FAILED, Ordering::Release);
    assert_eq!(w.net_read(id, &mut [0; 4]), -EIO);
    c.state().store(99, Ordering::Release);
    assert_eq!(w.net_read(id, &mut [0; 4]), -EIO);
}

fn store_req<'a>(op: u32, key: &'a [u8]) -> StoreRequest<'a> {
    StoreRequest {
        op,
        key,
        capacity: 64,
        ..Default::default()
    }
}

/// Plays the main side of the store: completes the slot of `ticket`.
fn complete(r: &Region, ticket: i32, result: i32, data: &[u8]) {
    let (slot, _) = split_id(ticket).expect("ticket");
    let s = r.store_slot(slot).expect("slot");
    assert_eq!(s.state().load(Ordering::Acquire), LWHOST_SLOT_SUBMITTED);
    // SAFETY: test plays the main side, which owns a SUBMITTED slot.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), s.data_ptr(), data.len()) };
    s.result().store(result as u32, Ordering::Relaxed);
    s.state().store(LWHOST_SLOT_DONE, Ordering::Release);
}

#[test]
fn store_submit_copies_the_request_and_poll_returns_the_output() {
    let r = region();
    let w = Worker::new(r.clone());
    let req = StoreRequest {
        op: LWHOST_STORE_WRITE,
        flags: LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT,
        key: b"lwsync/a",
        offset: 0,
        data: b"payload",
        ..Default::default()
    };
    let t = w.store_submit(&req);
    assert!(t >= 0);
    let (slot, _) = split_id(t).expect("ticket");
    let s = r.store_slot(slot).expect("slot");
    assert_eq!(s.op().load(Ordering::Relaxed), LWHOST_STORE_WRITE);
    assert_eq!(s.len().load(Ordering::Relaxed), 7);
    assert_eq!(s.key_len().load(Ordering::Relaxed), 8);
    assert_eq!(w.store_poll(t, &mut []), -EINPROGRESS);
    complete(&r, t, 7, &[]);
    assert_eq!(w.store_poll(t, &mut []), 7);
    assert_eq!(w.store_poll(t, &mut []), -EBADF, "ticket released");

    let list = StoreRequest {
        op: LWHOST_STORE_LIST,
        key: b"lw",
        after: b"lwsync/a",
        capacity: 100,
        ..Default::default()
    };
    let t = w.store_submit(&list);
    let (slot, _) = split_id(t).expect("ticket");
    let s = r.store_slot(slot).expect("slot");
    // SAFETY: 10 bytes of the key buffer of a live slot.
    let key = unsafe { core::slice::from_raw_parts(s.key_ptr(), 10) };
    assert_eq!(key, b"lwlwsync/a");
    complete(&r, t, 4, b"b\0c\0");
    let mut out = [0u8; 100];
    assert_eq!(w.store_poll(t, &mut out), 4);
    assert_eq!(&out[..4], b"b\0c\0");
}

#[test]
fn store_rejects_malformed_requests() {
    let w = Worker::new(region());
    // A well-formed request of `op` on `key` with one field changed by `edit`.
    let with = |op, key: &'static [u8], edit: fn(&mut StoreRequest<'static>)| {
        let mut req = store_req(op, key);
        edit(&mut req);
        req
    };
    const LONG: &[u8] = &[b'k'; 513];
    // One byte more than a slot's data holds.
    const OVER: usize = LWHOST_STORE_BUF as usize + 1;
    let cases = [
        (store_req(0, b"k"), -EINVAL),
        (store_req(6, b"k"), -EINVAL),
        (store_req(LWHOST_STORE_READ, b""), -EINVAL),
        (store_req(LWHOST_STORE_READ, LONG), -ENAMETOOLONG),
        (with(LWHOST_STORE_LIST, b"", |r| r.after = LONG), -ENAMETOOLONG),
        (with(LWHOST_STORE_READ, b"k", |r| r.after = b"x"), -EINVAL),
        (
            with(LWHOST_STORE_WRITE, b"k", |r| r.flags = LWHOST_STORE_FLAGS_ALL + 1),
            -EINVAL,
        ),
        (with(LWHOST_STORE_READ, b"k", |r| r.flags = 1), -EINVAL),
        (
            with(LWHOST_STORE_READ, b"k", |r| r.capacity = OVER as u32),
            -EINVAL,
        ),
        (with(LWHOST_STORE_LIST, b"", |r| r.capacity = 0), -EINVAL),
        (
            with(LWHOST_STORE_LIST, b"", |r| r.capacity = OVER as u32),
            -EINVAL,
        ),
        (with(LWHOST_STORE_WRITE, b"k", |r| r.data = &[0; OVER]), -EINVAL),
        (with(LWHOST_STORE_DELETE, b"k", |r| r.data = b"x"), -EINVAL),
    ];
    for (i, (req, want)) in cases.iter().enumerate() {
        assert_eq!(w.store_submit(req), *want, "case {i}");
    }
    // The limits themselves are fine.
    let max = [b'k'; 512];
    assert!(
        w.store_submit(&StoreRequest {
            data: &[0; LWHOST_STORE_BUF as usize],
            ..store_req(LWHOST_STORE_WRITE, &max)
        }) >= 0
    );
    for op in [LWHOST_STORE_READ, LWHOST_STORE_LIST] {
        let full = with(op, b"k", |r| r.capacity = LWHOST_STORE_BUF);
        assert!(w.store_submit(&full) >= 0, "op {op}");
    }
}

#[test]
fn all_store_slots_used_is_ebusy_and_bad_tickets_ebadf() {
    let r = region();
    let w = Worker::new(r.clone());
    let req = store_req(LWHOST_STORE_STAT, b"k");
    let tickets: Vec<i32> = (0..STORE_SLOTS).map(|_| w.store_submit(&req)).collect();
    assert!(tickets.iter().all(|&t| t >= 0));
    assert_eq!(w.store_submit(&req), -EBUSY);
    for bad in [-5, make_id(4, 1), make_id(0, 0), tickets[0] + (1 << 8)] {
        assert_eq!(w.store_poll(bad, &mut [0; 8]), -EBADF, "ticket {bad}");
    }
    // Output larger than the caller's buffer: refused, ticket released.
    complete(&r, tickets[0], 8, &42u64.to_le_bytes());
    assert_eq!(w.store_poll(tickets[0], &mut [0; 4]), -EINVAL);
    assert_eq!(w.store_poll(tickets[0], &mut [0; 8]), -EBADF);
    // A result past the data buffer or a nonsense errno is -EIO.
    complete(&r, tickets[1], LWHOST_STORE_BUF as i32 + 1, &[]);
    assert_eq!(w.store_poll(tickets[1], &mut [0; 8]), -EIO);
    complete(&r, tickets[2], -100000, &[]);
    assert_eq!(w.store_poll(tickets[2], &mut [0; 8]), -EIO);
    complete(&r, tickets[3], -ENOENT, &[]);
    assert_eq!(w.store_poll(tickets[3], &mut [0; 8]), -ENOENT);
    // Main side gone with a request in flight: -EIO and the slot is freed.
    let t = w.store_submit(&req);
    r.main_alive().store(0, Ordering::Release);
    assert_eq!(w.store_poll(t, &mut [0; 8]), -EIO);
    let (slot, _) = split_id(t).expect("ticket");
    assert_eq!(
        r.store_slot(slot).expect("slot").state().load(Ordering::Relaxed),
        LWHOST_SLOT_FREE
    );
}

#[test]
fn guest_pointers_are_bounds_checked() {
    let mem = [0u8; 100];
    assert_eq!(guest_slice(&mem, 0, 100).map(<[u8]>::len), Ok(100));
    assert_eq!(guest_slice(&mem, 99, 1).map(<[u8]>::len), Ok(1));
    assert_eq!(guest_slice(&mem, 100, 1), Err(-EFAULT));
    assert_eq!(guest_slice(&mem, 50, 51), Err(-EFAULT));
    assert_eq!(guest_slice(&mem, u64::MAX, 2), Err(-EFAULT));
    assert_eq!(guest_slice(&mem, u64::MAX, 0).map(<[u8]>::len), Ok(0));
    let mut m = [0u8; 10];
    assert_eq!(guest_slice_mut(&mut m, 5, 6).err(), Some(-EFAULT));

    let mut mem = vec![0u8; 4096];
    mem[100..105].copy_from_slice(b"key/a");
    let raw = lwhost_store_req {
        op: LWHOST_STORE_READ,
        key: 100,
        key_len: 5,
        len: 64,
        ..Default::default()
    };
    let req = StoreRequest::from_guest(&raw, &mem).expect("valid");
    assert_eq!(req.key, b"key/a");
    assert_eq!(req.capacity, 64);
    let past = lwhost_store_req { key: 4094, ..raw };
    assert_eq!(StoreRequest::from_guest(&past, &mem).err(), Some(-EFAULT));
    let write = lwhost_store_req {
        op: LWHOST_STORE_WRITE,
        data: 4000,
        len: 200,
        ..raw
    };
    assert_eq!(StoreRequest::from_guest(&write, &mem).err(), Some(-EFAULT));
    let reserved = lwhost_store_req { reserved: 1, ..raw };
    assert_eq!(StoreRequest::from_guest(&reserved, &mem).err(), Some(-EINVAL));
    let long = lwhost_store_req { key_len: 513, ..raw };
    assert_eq!(StoreRequest::from_guest(&long, &mem).err(), Some(-ENAMETOOLONG));
    // One byte past a slot's data: refused before the data is looked at.
    for op in [LWHOST_STORE_READ, LWHOST_STORE_WRITE, LWHOST_STORE_LIST] {
        let over = lwhost_store_req {
            op,
            len: LWHOST_STORE_BUF + 1,
            ..raw
        };
        assert_eq!(
            StoreRequest::from_guest(&over, &mem).err(),
            Some(-EINVAL),
            "op {op}"
        );
    }
    let full = lwhost_store_req {
        len: LWHOST_STORE_BUF,
        ..raw
    };
    assert_eq!(
        StoreRequest::from_guest(&full, &mem).map(|r| r.capacity),
        Ok(LWHOST_STORE_BUF)
    );
}

#[test]
fn many_threads_open_and_close_without_sharing_a_slot() {
    let r = region();
    let w = Worker::new(r.clone());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || (0..4).map(|_| w.net_open(b"h", 80, 0, 0)).collect::<Vec<_>>())
        })
        .collect();
    let mut slots: Vec<usize> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .map(|id| split_id(id).expect("id").0)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), CONNS, "32 opens, 32 distinct slots");
}

#[test]
fn wait_guest_doorbell_returns_on_a_bump_or_timeout() {
    let r = region();
    let w = Worker::new(r.clone());
    let seen = w.guest_doorbell();
    let t = std::time::Instant::now();
    assert_eq!(w.wait_guest_doorbell(seen, Duration::from_millis(20)), seen);
    assert!(t.elapsed() >= Duration::from_millis(15));
    let r2 = r.clone();
    let bumper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        r2.ring_guest();
    });
    assert_eq!(w.wait_guest_doorbell(seen, Duration::from_secs(10)), seen + 1);
    bumper.join().expect("thread");
}
