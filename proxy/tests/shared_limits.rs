//! `--shared-limits`: two real lwproxy replicas and a real `redis-server` on loopback, one
//! identity. The limits hold across both replicas; a slot freed on one is usable on the other;
//! a replica killed with SIGKILL frees its slots within the lease; Redis going away degrades
//! to local limits without dropping open connections, and `GET /health` says so.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    async fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): these tests need the Debian package redis-server \
                     (tools/test/unit.sh installs it; or apt-get install redis-server)"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn health(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// Waits until `/health` of `p` contains `what` (or fails after `within`).
async fn wait_health(p: &Proxy, what: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let h = health(p.addr).await;
        if h.contains(what) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "health never said {what:?}: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis, an echo server, and two replicas with `limits` on that Redis and a lease of
/// `ttl` (`--shared-limits-ttl`), both connected.
async fn replicas(ttl: &str, limits: &[&str]) -> (Redis, SocketAddr, Proxy, Proxy) {
    let redis = Redis::start().await;
    let echo = echo_server().await;
    let (url, allowed) = (redis.url(), allow(echo));
    let mut all = vec![
        "--shared-limits",
        &url,
        "--shared-limits-ttl",
        ttl,
        "--allow",
        &allowed,
    ];
    all.extend_from_slice(limits);
    let (a, b) = (Proxy::start(&all), Proxy::start(&all));
    wait_health(&a, "shared-limits=redis", Duration::from_secs(5)).await;
    wait_health(&b, "shared-limits=redis", Duration::from_secs(5)).await;
    (redis, echo, a, b)
}

/// Replica `p`, on its local limits (`--max-concurrent 1`) with connection 1 of `ws` open to
/// `echo`: refuses connection 2, still relays connection 1, and has logged the fallback.
async fn holds_its_local_limit(p: &Proxy, ws: &mut Ws, echo: SocketAddr) {
    assert_eq!(
        ws.open_error(2, echo, "limit").await,
        "limit: concurrent connections (1)"
    );
    ws.echo(1, b"on local limits").await;
    assert!(p.logged("falling back to this replica's local limits"));
}

/// Opens `id` until it is admitted, for up to `within` (a release travels to Redis
/// asynchronously); returns how long it took.
async fn open_within(ws: &mut Ws, id: u32, port: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let v = ws.open(id, "127.0.0.1", port).await;
        if v["t"] == "opened" {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "never admitted: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_sessions_across_replicas_and_a_freed_slot_moves() {
    // A lease of 30 s: the heartbeat (every 10 s) cannot republish the counts within the
    // test, so a freed slot moves only if the release itself reaches Redis.
    let (_redis, echo, a, b) = replicas(
        "30s",
        &["--max-concurrent", "2", "--max-sessions-per-identity", "2"],
    )
    .await;
    let mut on_a = Ws::v1(&a, "alice").await;
    let mut on_b = Ws::v1(&b, "alice").await;
    // Sessions: two across both replicas; a third on either is refused.
    for p in [&a, &b] {
        let third = connect_raw(p.addr, &format!("?token={}", token("alice")), &[], None).await;
        match third {
            Err(e) => assert!(e.to_string().contains("429"), "{e}"),
            Ok(_) => panic!("a third session of alice was admitted"),
        }
    }
    on_a.opened(1, echo).await;
    on_b.opened(1, echo).await;
    // Two connections held, one on each replica: the third is refused on both.
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(
            ws.open_error(2, echo, "limit").await,
            "limit: concurrent connections (2)"
        );
    }
    // Another identity is not affected.
    let mut bob = Ws::v1(&b, "bob").await;
    bob.opened(1, echo).await;
    // A slot freed on A is usable on B.
    on_a.send_json(json!({"t": "close", "id": 1})).await;
    on_a.expect("closed", 1).await;
    let took = open_within(&mut on_b, 3, echo.port(), Duration::from_millis(500)).await;
    eprintln!("slot freed on A admitted on B after {took:?}");
    on_b.echo(3, b"moved").await;
    on_b.echo(1, b"still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_limits_across_replicas() {
    let (_redis, echo, a, b) = replicas("3s", &["--conns-per-min", "3", "--bytes-per-min", "100000"]).await;
    let mut on_a = Ws::v2(&a, "alice").await;
    let mut on_b = Ws::v2(&b, "alice").await;
    for id in 1..=2 {
        on_a.opened(id, echo).await;
    }
    on_b.opened(1, echo).await;
    for (ws, id) in [(&mut on_b, 2), (&mut on_a, 3)] {
        assert_eq!(
            ws.open_error(id, echo, "limit").await,
            "limit: connections per minute (3)"
        );
    }
    // Bytes: 2 x 20000 echoed on A (80000 counted: both directions). B sees that within two
    // batch intervals plus round trips (A's flush, then B's next flush answer). B probes with
    // 2000-byte echoes (4000 counted) every 200 ms: within the 4 s deadline that is at most
    // 80000 counted, which B's own bucket (100000) would allow, so only the shared bucket
    // (about 20000 left after A) can refuse a probe.
    let chunk = pattern(20_000);
    on_a.echo(1, &chunk).await;
    on_a.echo(2, &chunk).await;
    let start = Instant::now();
    let probe = pattern(2000);
    let mut moved = 0;
    loop {
        on_b.write(1, &probe).await;
        let (got, control) = on_b.read_data(1, probe.len()).await;
        if control
            .iter()
            .any(|v| msg(v).contains("limit: bytes per minute (100000)"))
        {
            break;
        }
        assert!(control.is_empty(), "{control:?}");
        moved += 2 * got.len();
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "B moved {moved} bytes more in {:?} and was never refused",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "B refused after {:?}, having moved {moved} bytes",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_frees_its_slots_within_the_lease() {
    let (_redis, echo, a, b) = replicas("3s", &["--max-concurrent", "2"]).await;
    let mut on_a = Ws::v1(&a, "alice").await;
    for id in 1..=2 {
        on_a.opened(id, echo).await;
    }
    let mut on_b = Ws::v1(&b, "alice").await;
    assert_eq!(
        on_b.open_error(1, echo, "limit").await,
        "limit: concurrent connections (2)"
    );
    // SIGKILL: no release is ever sent; the lease (3 s) runs out.
    let killed = Command::new("kill")
        .args(["-KILL", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let took = open_within(&mut on_b, 2, echo.port(), Duration::from_secs(5)).await;
    eprintln!("slots of the killed replica free after {took:?} (lease 3 s)");
    on_b.opened(3, echo).await;
    assert_eq!(
        on_b.open_error(4, echo, "limit").await,
        "limit: concurrent connections (2)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_degrades_to_local_limits_and_comes_back() {
    let (mut redis, echo, a, b) = replicas("3s", &["--max-concurrent", "1"]).await;
    let mut on_a = Ws::v1(&a, "alice").await;
    let mut on_b = Ws::v1(&b, "alice").await;
    on_a.opened(1, echo).await;
    assert_eq!(
        on_b.open_error(1, echo, "limit").await,
        "limit: concurrent connections (1)"
    );
    redis.kill();
    // The open connection carries on; both replicas report the fallback.
    on_a.echo(1, b"still open").await;
    wait_health(&a, "shared-limits=local-fallback", Duration::from_secs(3)).await;
    wait_health(&b, "shared-limits=local-fallback", Duration::from_secs(3)).await;
    // Local limits only: B admits its own one (up to N x the limit across N replicas) ...
    on_b.opened(2, echo).await;
    // ... and each replica still holds its local limit.
    holds_its_local_limit(&a, &mut on_a, echo).await;
    // Redis back on the same port: both reconnect and republish their counts (2 > 1 now).
    let _redis = Redis::start_on(redis.port).await;
    wait_health(&a, "shared-limits=redis", Duration::from_secs(4)).await;
    wait_health(&b, "shared-limits=redis", Duration::from_secs(4)).await;
    on_b.send_json(json!({"t": "close", "id": 2})).await;
    on_b.expect("closed", 2).await;
    assert_eq!(
        on_b.open_error(3, echo, "limit").await,
        "limit: concurrent connections (1)",
        "A's connection counts again"
    );
    on_a.echo(1, b"through it all").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_means_local_limits() {
    let closed = refused_port().await;
    let echo = echo_server().await;
    let url = format!("redis://127.0.0.1:{}", closed.port());
    let p = Proxy::allowing(&[echo], &["--shared-limits", &url, "--max-concurrent", "1"]);
    wait_health(&p, "shared-limits=local-fallback", Duration::from_secs(3)).await;
    let mut ws = Ws::v1(&p, "alice").await;
    ws.opened(1, echo).await;
    holds_its_local_limit(&p, &mut ws, echo).await;
    let bad = Proxy::try_start(&["--shared-limits", "http://127.0.0.1:1"], true)
        .err()
        .unwrap();
    assert!(bad.contains("must look like redis://HOST:PORT[/DB]"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_on_both_replicas_never_exceed_the_cap() {
    // Admissions of one replica may reach Redis in another order than their counts were
    // read; a lower count must never overwrite a higher one. A 30 s lease: no heartbeat
    // repairs the counts during the test.
    let (_redis, echo, a, b) = replicas("30s", &["--max-concurrent", "3", "--conns-per-min", "0"]).await;
    let mut sessions = Vec::new();
    for p in [&a, &b, &a, &b, &a, &b, &a, &b, &a, &b, &a, &b] {
        sessions.push(Ws::v1(p, "alice").await);
    }
    let mut admitted = 0;
    for round in 0..3u32 {
        // Every session asks for 4 connections at once, on both replicas.
        for ws in &mut sessions {
            for i in 1..=4 {
                let id = round * 10 + i;
                ws.send_json(json!({"t": "open", "id": id, "host": "127.0.0.1", "port": echo.port()}))
                    .await;
            }
        }
        let mut opened = Vec::new();
        for (n, ws) in sessions.iter_mut().enumerate() {
            let mut answered = 0;
            while answered < 4 {
                let v = ws.recv_json().await;
                match v["t"].as_str() {
                    Some("opened") => {
                        answered += 1;
                        opened.push((n, v["id"].as_u64().unwrap()));
                    }
                    Some("error") => {
                        assert_eq!(msg(&v), "limit: concurrent connections (3)");
                        answered += 1;
                    }
                    Some("closed") => {}
                    _ => panic!("unexpected {v}"),
                }
            }
        }
        assert!(
            opened.len() <= 3,
            "round {round}: {} connections admitted across both replicas: {opened:?}",
            opened.len()
        );
        admitted += opened.len();
        // Close them all and wait until the releases are in: every slot is free again.
        for (n, id) in opened {
            sessions[n].send_json(json!({"t": "close", "id": id})).await;
            sessions[n].expect("closed", u32::try_from(id).unwrap()).await;
        }
        open_within(
            &mut sessions[0],
            round * 10 + 9,
            echo.port(),
            Duration::from_secs(1),
        )
        .await;
        sessions[0]
            .send_json(json!({"t": "close", "id": round * 10 + 9}))
            .await;
        sessions[0].expect("closed", round * 10 + 9).await;
    }
    assert!(admitted > 0, "nothing was admitted");
    // Every release reached Redis (no heartbeat within the 30 s lease): all 3 slots are free
    // for one replica.
    for id in 100..103 {
        open_within(&mut sessions[1], id, echo.port(), Duration::from_secs(1)).await;
    }
}

/// Two admissions of one replica reach Redis in the other order than their counts were read
/// (count 2 first, then the older count 1): the older count is not stored, so the other
/// replica still sees 2 of the 3 slots taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_count_arriving_late_does_not_overwrite_a_newer_one() {
    use lwproxy::shared_limits::{next_version, parse_url, Admission, Kind, SharedLimits, Stamp, Verdict};
    let redis = Redis::start().await;
    let replica = || {
        let s = SharedLimits::new(parse_url(&redis.url()).unwrap(), Duration::from_secs(30));
        tokio::spawn(s.clone().run(Vec::new, 0));
        s
    };
    let (a, b) = (replica(), replica());
    let start = Instant::now();
    while !(a.is_up() && b.is_up()) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not connected: {}",
            a.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conn = |count, version| Admission {
        kind: Kind::Conn,
        local: Stamp { count, version },
        max: 3,
        per_min: 0,
        bytes_per_min: 0,
    };
    let admit = |s: &std::sync::Arc<SharedLimits>, a| {
        let s = s.clone();
        async move { s.admit("alice", a).await.unwrap().0 }
    };
    let (older, newer) = (next_version(), next_version());
    assert_eq!(admit(&a, conn(2, newer)).await, Verdict::Admitted);
    assert_eq!(admit(&a, conn(1, older)).await, Verdict::Admitted);
    assert_eq!(admit(&b, conn(2, next_version())).await, Verdict::Concurrent);
    assert_eq!(admit(&b, conn(1, next_version())).await, Verdict::Admitted);
}

/// Sessions of several identities ending at once on A: their releases, sent together, all
/// reach Redis, and every identity's slot is usable on B (a 30 s lease: no heartbeat helps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_of_many_identities_at_once_all_arrive() {
    let (_redis, echo, a, b) = replicas("30s", &["--max-concurrent", "1"]).await;
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut on_a = Vec::new();
    for n in names {
        let mut ws = Ws::v1(&a, n).await;
        ws.opened(1, echo).await;
        on_a.push(ws);
    }
    let mut on_b = Vec::new();
    for n in names {
        let mut ws = Ws::v1(&b, n).await;
        assert_eq!(
            ws.open_error(1, echo, "limit").await,
            "limit: concurrent connections (1)"
        );
        on_b.push(ws);
    }
    drop(on_a);
    for ws in &mut on_b {
        open_within(ws, 2, echo.port(), Duration::from_secs(1)).await;
    }
}
