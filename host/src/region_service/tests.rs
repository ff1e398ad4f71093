//! Tests of the region service against a fake proxy.

use super::*;

use crate::worker::Worker;
use futures_util::{SinkExt as _, StreamExt as _};
use lwabi::{LWHOST_POLL_ERR, LWHOST_POLL_ERRNO_SHIFT, LWHOST_POLL_HUP, LWHOST_POLL_IN};
use lwproxy::protocol::{ErrorCode, SUBPROTOCOL_V2 as SUBPROTOCOL};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A fake proxy that reads and ignores everything (see [`fake_proxy`]).
async fn silent_proxy(v2: bool) -> String {
    fake_proxy(v2, |mut ws| async move { while ws.next().await.is_some() {} }).await
}

/// A fake proxy (the real one cannot misbehave): accepts one session,
/// echoing `lwproxy.v2` if `v2`, and hands it to `script`.
async fn fake_proxy<F, Fut>(v2: bool, script: F) -> String
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        // The callback's error type is tungstenite's; not ours to shrink.
        #[allow(clippy::result_large_err)]
        let echo = |_: &Request, mut resp: Response| {
            if v2 {
                resp.headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(SUBPROTOCOL));
            }
            Ok(resp)
        };
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, echo).await {
            script(ws).await;
        }
    });
    url
}

fn start(url: String, name: &str) -> (Arc<Region>, Worker, MainHandle) {
    let region = Arc::new(Region::new_memfd().expect("region"));
    let store_dir = std::env::temp_dir().join(format!("lwhost-ms-{name}-{}", std::process::id()));
    let cfg = MainConfig {
        proxy_url: url,
        token: None,
        store_dir,
        store_quota: 1 << 20,
        extra_ca: Vec::new(),
    };
    let main = spawn(region.clone(), cfg).expect("spawn");
    (region.clone(), Worker::new(region), main)
}

/// Runs `checks` (worker calls, which block) on a blocking thread, then shuts
/// `main` down; a failed check fails the test after the shutdown.
async fn check_then_stop(main: MainHandle, checks: impl FnOnce() + Send + 'static) {
    let checked = tokio::task::spawn_blocking(checks).await;
    main.shutdown().await;
    checked.expect("checks");
}

/// Polls `id` until `done(bits)` or 10 s pass; returns the last bits.
fn poll_until(w: &Worker, id: i32, done: impl Fn(i32) -> bool) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = w.guest_doorbell();
    loop {
        let p = w.net_poll(id);
        if done(p) || std::time::Instant::now() > deadline {
            return p;
        }
        seen = w.wait_guest_doorbell(seen, Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_proxy_frames_fail_only_their_connection() {
    let url = fake_proxy(true, |mut ws| async move {
        let mut ids = HashMap::new();
        while ids.len() < 2 {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                return;
            };
            let v: serde_json::Value = serde_json::from_str(&t).expect("json from lwhost");
            if v["t"] == "open" {
                let id = v["id"].as_u64().expect("id") as u32;
                ids.insert(v["host"].as_str().expect("host").to_string(), id);
                let _ = ws
                    .send(Message::Text(format!(r#"{{"t":"opened","id":{id}}}"#).into()))
                    .await;
            }
        }
        let (a, b) = (ids["flood"], ids["good"]);
        // Garbage that must be ignored.
        for m in [
            Message::Binary(vec![1, 2].into()),
            Message::Binary([&999u32.to_be_bytes()[..], b"stray"].concat().into()),
            Message::Text("not json".into()),
            Message::Text(r#"{"t":"ack","id":1,"bytes":18446744073709551615}"#.into()),
            Message::Text(r#"{"t":"opened"}"#.into()),
            Message::Text(r#"{"t":"error","msg":"session-level complaint"}"#.into()),
        ] {
            let _ = ws.send(m).await;
        }
        // Far past the window on one connection, never waiting for acks.
        let frame = [&a.to_be_bytes()[..], &[7u8; 65536][..]].concat();
        for _ in 0..14 {
            let _ = ws.send(Message::Binary(frame.clone().into())).await;
        }
        let _ = ws
            .send(Message::Binary([&b.to_be_bytes()[..], b"hello"].concat().into()))
            .await;
        let _ = ws
            .send(Message::Text(format!(r#"{{"t":"eof","id":{b}}}"#).into()))
            .await;
        // Keep the session up while the test reads.
        while ws.next().await.is_some() {}
    })
    .await;
    let (_region, w, main) = start(url, "hostile");
    check_then_stop(main, move || {
        let flood = w.net_open(b"flood", 80, 0, 0);
        let good = w.net_open(b"good", 80, 0, 0);
        let p = poll_until(&w, flood, |p| p as u32 & LWHOST_POLL_ERR != 0);
        assert_eq!(
            p >> LWHOST_POLL_ERRNO_SHIFT,
            EIO,
            "the flooded connection fails with EIO"
        );
        let p = poll_until(&w, good, |p| p as u32 & LWHOST_POLL_IN != 0);
        assert_eq!(p as u32 & LWHOST_POLL_ERR, 0, "the other connection is unharmed");
        let mut buf = [0u8; 16];
        assert_eq!(w.net_read(good, &mut buf), 5);
        assert_eq!(&buf[..5], b"hello");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = w.guest_doorbell();
        let end = loop {
            match w.net_read(good, &mut buf) {
                r if r == -EAGAIN && std::time::Instant::now() < deadline => {
                    seen = w.wait_guest_doorbell(seen, Duration::from_millis(50));
                }
                r => break r,
            }
        };
        // (the eof may trail the data by a moment, hence the loop)
        assert_eq!(end, 0, "end of stream after the data");
        assert_ne!(w.net_poll(good) as u32 & LWHOST_POLL_HUP, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_v2_is_refused() {
    let url = silent_proxy(false).await;
    let (_region, w, main) = start(url, "nov2");
    check_then_stop(main, move || {
        // Once the handshake fails, opens are refused rather than hung.
        std::thread::sleep(Duration::from_millis(200));
        let id = w.net_open(b"h", 80, 0, 0);
        let p = poll_until(&w, id, |p| p as u32 & LWHOST_POLL_ERR != 0);
        assert_eq!(p >> LWHOST_POLL_ERRNO_SHIFT, ECONNREFUSED);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_clears_main_alive() {
    let url = silent_proxy(true).await;
    let (region, w, main) = start(url, "shutdown");
    assert_eq!(region.main_alive().load(Ordering::Acquire), 1);
    main.shutdown().await;
    assert_eq!(region.main_alive().load(Ordering::Acquire), 0);
    assert_eq!(w.net_open(b"h", 80, 0, 0), -ECONNRESET);
}

#[test]
fn proxy_error_codes_map_to_errno() {
    for (code, want) in [
        (Some(ErrorCode::Policy), EACCES),
        (Some(ErrorCode::Refused), ECONNREFUSED),
        (Some(ErrorCode::Timeout), ETIMEDOUT),
        (Some(ErrorCode::Unreachable), EHOSTUNREACH),
        (Some(ErrorCode::Reset), ECONNRESET),
        (Some(ErrorCode::Tls), ECONNREFUSED),
        (Some(ErrorCode::Limit), EIO),
        (Some(ErrorCode::Other), EIO),
        (None, EIO),
    ] {
        assert_eq!(errno_for_proxy_error(code), want, "{code:?}");
    }
}

/// A fake proxy that streams `total` bytes to the first connection opened, honouring the
/// flow-control window (the grant, then every `"window"` of the acks), and reports the
/// offer of `open` and every window an ack raised it to.
async fn windowed_source(total: usize, report: tokio::sync::oneshot::Sender<(u64, Vec<u64>)>) -> String {
    fake_proxy(true, move |mut ws| async move {
        let (id, offer) = loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                return;
            };
            let v: serde_json::Value = serde_json::from_str(&t).expect("json from lwhost");
            if v["t"] == "open" {
                break (
                    v["id"].as_u64().expect("id") as u32,
                    v["window"].as_u64().unwrap_or(0),
                );
            }
        };
        let reply = format!(r#"{{"t":"opened","id":{id},"addr":"127.0.0.1:80","window":{offer}}}"#);
        let _ = ws.send(Message::Text(reply.into())).await;
        let (mut window, mut sent, mut unacked, mut grown) = (offer, 0usize, 0u64, Vec::new());
        while sent < total {
            while sent < total && unacked < window {
                let n = (total - sent).min(65536).min((window - unacked) as usize);
                let frame = [&id.to_be_bytes()[..], &vec![7u8; n][..]].concat();
                let _ = ws.feed(Message::Binary(frame.into())).await;
                sent += n;
                unacked += n as u64;
            }
            let _ = ws.flush().await;
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                return;
            };
            let v: serde_json::Value = serde_json::from_str(&t).expect("json from lwhost");
            if v["t"] == "ack" {
                unacked -= v["bytes"].as_u64().expect("bytes").min(unacked);
                if let Some(w) = v["window"].as_u64() {
                    assert!(w > window, "the window only grows: {w} after {window}");
                    window = w;
                    grown.push(w);
                }
            }
        }
        let _ = ws
            .send(Message::Text(format!(r#"{{"t":"eof","id":{id}}}"#).into()))
            .await;
        let _ = report.send((offer, grown));
        while ws.next().await.is_some() {}
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_grows_while_the_guest_keeps_up() {
    use lwproxy::protocol::{MAX_WINDOW, WINDOW};
    let total = 32 << 20;
    let (report, reported) = tokio::sync::oneshot::channel();
    let url = windowed_source(total, report).await;
    let (_region, w, main) = start(url, "window");
    check_then_stop(main, move || {
        let id = w.net_open(b"source", 80, 0, 0);
        let mut buf = vec![0u8; 65536];
        let (mut got, mut seen) = (0usize, w.guest_doorbell());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match w.net_read(id, &mut buf) {
                0 => break,
                n if n > 0 => got += n as usize,
                n if n == -EAGAIN && std::time::Instant::now() < deadline => {
                    seen = w.wait_guest_doorbell(seen, Duration::from_millis(50));
                }
                n => panic!("read failed: {n} after {got} bytes"),
            }
        }
        assert_eq!(got, total, "every byte arrived");
    })
    .await;
    let (offer, grown) = reported.await.expect("the fake proxy's report");
    assert_eq!(offer, WINDOW, "lwhost offers the default window in open");
    assert!(!grown.is_empty(), "a guest that keeps up grows the window");
    assert!(grown.iter().all(|w| *w <= MAX_WINDOW), "{grown:?}");
}

/// Submits every request at once (one per store slot), then polls each
/// until it is answered (10 s at most); returns the results in order.
fn store_all(w: &Worker, reqs: &[crate::worker::StoreRequest<'_>]) -> Vec<i32> {
    let tickets: Vec<i32> = reqs.iter().map(|r| w.store_submit(r)).collect();
    assert!(tickets.iter().all(|&t| t >= 0), "submitted: {tickets:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = w.guest_doorbell();
    tickets
        .iter()
        .map(|&t| loop {
            let r = w.store_poll(t, &mut [0u8; 64]);
            if r != -EINPROGRESS || std::time::Instant::now() > deadline {
                break r;
            }
            seen = w.wait_guest_doorbell(seen, Duration::from_millis(50));
        })
        .collect()
}

/// Store requests in flight together, one in every slot (a plain commit
/// that fsyncs, a lazy commit, a chunk, a stat, then a delete beside
/// stats): each is answered once and with its own result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_requests_in_flight_together_each_get_their_answer() {
    use crate::worker::StoreRequest;
    use lwabi::{
        LWHOST_STORE_COMMIT, LWHOST_STORE_DELETE, LWHOST_STORE_LAZY, LWHOST_STORE_STAT, LWHOST_STORE_TRUNC,
        LWHOST_STORE_WRITE,
    };
    let url = silent_proxy(true).await;
    let (_region, w, main) = start(url, "storemix");
    check_then_stop(main, move || {
        let tc = LWHOST_STORE_TRUNC | LWHOST_STORE_COMMIT;
        let put = |key: &'static [u8], flags: u32, data: &'static [u8]| StoreRequest {
            op: LWHOST_STORE_WRITE,
            flags,
            key,
            data,
            ..Default::default()
        };
        let stat = |key: &'static [u8]| StoreRequest {
            op: LWHOST_STORE_STAT,
            key,
            capacity: 8,
            ..Default::default()
        };
        assert_eq!(store_all(&w, &[put(b"old", tc, b"12345")]), [5]);
        for round in 0..20 {
            let got = store_all(
                &w,
                &[
                    put(b"manifest", tc, b"plain"),
                    put(b"chunk/a", tc | LWHOST_STORE_LAZY, b"lazy!!"),
                    put(b"chunk/b", LWHOST_STORE_TRUNC, b"pending"),
                    stat(b"old"),
                ],
            );
            assert_eq!(got, [5, 6, 7, 8], "round {round}");
            let gone = StoreRequest {
                op: LWHOST_STORE_DELETE,
                key: b"chunk/a",
                ..Default::default()
            };
            assert_eq!(
                store_all(&w, &[gone, stat(b"chunk/b"), stat(b"manifest")]),
                [0, -ENOENT, 8],
                "round {round}: the pending value stays unpublished"
            );
        }
    })
    .await;
}

/// The main side checks a SUBMITTED slot's length again (the region is
/// shared with the guest side): one byte past the slot's data buffer is
/// EINVAL and nothing is copied; the buffer's own size is fine.
#[test]
fn store_job_refuses_a_length_past_the_slot() {
    use crate::shm::StoreSlot;
    use lwabi::{LWHOST_STORE_LIST, LWHOST_STORE_READ, LWHOST_STORE_WRITE};
    let region = Region::new_memfd().expect("region");
    let slot = region.store_slot(0).expect("slot");
    slot.key_len().store(1, Ordering::Relaxed);
    for op in [LWHOST_STORE_WRITE, LWHOST_STORE_READ, LWHOST_STORE_LIST] {
        slot.op().store(op, Ordering::Relaxed);
        slot.len()
            .store(StoreSlot::DATA_CAP as u32 + 1, Ordering::Relaxed);
        assert_eq!(
            store_jobs::StoreJob::read_from(slot).err(),
            Some(EINVAL),
            "op {op}"
        );
        slot.len().store(StoreSlot::DATA_CAP as u32, Ordering::Relaxed);
        assert!(store_jobs::StoreJob::read_from(slot).is_ok(), "op {op}");
    }
}
