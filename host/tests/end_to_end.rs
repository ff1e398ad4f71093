//! lwhost end to end: the real lwhost and lwproxy binaries on loopback, a
//! Rust client in the role of user-mode Linux (socket, memfd, eventfd,
//! `Worker`), loopback TCP/HTTP servers as targets.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use lwabi::{LWHOST_STORE_DELETE, LWHOST_STORE_LIST, LWHOST_STORE_STAT};
use lwhost::errno::*;
use lwhost::worker::StoreRequest;

/// An lwproxy without auth, a new lwhost for it (no token) with its store of
/// `quota` bytes in a fresh temp dir `name`, and a guest connected to that
/// lwhost. Keep the first two alive while the guest is used.
fn connected(name: &str, quota: u64) -> (Proxy, Lwhost, Guest) {
    let proxy = proxy_no_auth();
    let host = Lwhost::start(&proxy.url(""), &tmp_dir(name), quota, None);
    let g = host.connect();
    (proxy, host, g)
}

/// GET /N answers N bytes of pattern(N).
fn sized_body(path: &str) -> Vec<u8> {
    let n: usize = path.trim_start_matches('/').parse().unwrap_or(1000);
    pattern(n as u32, n)
}

fn get(g: &Guest, port: u16, size: usize) -> Vec<u8> {
    let id = g.open("127.0.0.1", port).expect("open");
    let req = format!("GET /{size} HTTP/1.0\r\nHost: test\r\n\r\n");
    g.write_all(id, req.as_bytes()).expect("write request");
    let resp = g.read_to_end(id).expect("read response");
    g.worker.net_close(id);
    let (head, body) = split_http(&resp);
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    body
}

#[test]
fn fetches_http_through_lwhost_and_lwproxy() {
    let http = http_server(sized_body);
    let (_proxy, _host, g) = connected("fetch", 1 << 20);
    let body = get(&g, http.port(), 1_500_000);
    assert_eq!(body.len(), 1_500_000);
    assert!(body == pattern(1_500_000, 1_500_000), "body differs");
    assert!(
        g.client.drain_eventfd() > 0,
        "lwhost wakes the guest through the eventfd"
    );
}

#[test]
fn several_threads_fetch_at_once() {
    let http = http_server(sized_body);
    let (_proxy, _host, g) = connected("threads", 1 << 20);
    std::thread::scope(|s| {
        for t in 0..6usize {
            let g = &g;
            s.spawn(move || {
                for round in 0..2 {
                    let size = 50_000 + t * 37_000 + round * 1000;
                    let body = get(g, http.port(), size);
                    assert!(
                        body == pattern(size as u32, size),
                        "thread {t} round {round}: body differs"
                    );
                }
            });
        }
    });
}

#[test]
fn a_slow_reader_stalls_only_its_own_connection() {
    let http = http_server(sized_body);
    let (_proxy, _host, g) = connected("slow", 1 << 20);
    let big = 2_000_000;
    let slow = g.open("127.0.0.1", http.port()).expect("open slow");
    g.write_all(slow, format!("GET /{big} HTTP/1.0\r\n\r\n").as_bytes())
        .expect("write");
    // Let the slow connection fill its ring and window; nobody reads it.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    for _ in 0..3 {
        assert!(get(&g, http.port(), 50_000) == pattern(50_000, 50_000));
    }
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "others were stalled: {:?}",
        t.elapsed()
    );
    let resp = g.read_to_end(slow).expect("read slow");
    let (_, body) = split_http(&resp);
    assert!(body == pattern(big as u32, big), "slow body intact");
}

#[test]
fn half_close_reaches_the_peer_and_eof_comes_back() {
    // Echoes everything until EOF, then closes.
    let echo = tcp_server(|mut c: TcpStream| {
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
        let _ = c.write_all(&all);
    });
    let (_proxy, _host, g) = connected("halfclose", 1 << 20);
    let id = g.open("127.0.0.1", echo.port()).expect("open");
    let data = pattern(7, 400_000);
    g.write_all(id, &data).expect("write");
    assert_eq!(g.worker.net_shutdown(id), 0);
    assert_eq!(g.worker.net_write(id, b"late"), -EPIPE);
    let back = g.read_to_end(id).expect("read echo");
    assert!(back == data, "echo differs ({} bytes back)", back.len());
    let p = g.worker.net_poll(id) as u32;
    assert_ne!(p & lwabi::LWHOST_POLL_HUP, 0, "HUP after the peer finished");
}

#[test]
fn proxy_errors_become_errno() {
    let (_proxy, _host, g) = connected("errors", 1 << 20);
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    assert_eq!(g.open("127.0.0.1", closed_port), Err(ECONNREFUSED));
    // Private address, not allowed by the proxy's policy: nothing is dialled.
    assert_eq!(g.open("10.1.2.3", 80), Err(EACCES));
    assert_eq!(g.worker.net_open(b"bad\0host", 80, 0, 0), -EINVAL);
}

#[test]
fn killing_the_proxy_resets_live_connections_and_lwhost_reconnects() {
    // Streams data until the peer goes away.
    let firehose = tcp_server(|mut c: TcpStream| {
        let chunk = vec![0x5au8; 65536];
        while c.write_all(&chunk).is_ok() {}
    });
    let (mut proxy, _host, g) = connected("proxykill", 1 << 20);
    let addr = proxy.addr;
    let id = g.open("127.0.0.1", firehose.port()).expect("open");
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < 1_000_000 {
        got += g.read_some(id, &mut buf).expect("read before the kill");
    }
    proxy.kill();
    let err = loop {
        match g.read_some(id, &mut buf) {
            Ok(0) => panic!("clean EOF instead of a reset"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert_eq!(err, ECONNRESET);
    let p = g.worker.net_poll(id);
    assert_eq!(p >> lwabi::LWHOST_POLL_ERRNO_SHIFT, ECONNRESET);
    g.worker.net_close(id);

    // A proxy comes back on the same address: lwhost reconnects by itself.
    let _proxy = start_proxy(&addr.to_string(), &["--no-auth"], &[]);
    let http = http_server(sized_body);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match g.open("127.0.0.1", http.port()) {
            Ok(id) => {
                g.worker.net_close(id);
                break;
            }
            Err(e) => {
                assert_eq!(e, ECONNREFUSED, "while the proxy is away opens are refused");
                assert!(Instant::now() < deadline, "lwhost never reconnected");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert!(get(&g, http.port(), 10_000) == pattern(10_000, 10_000));
}

const SECRET: [(&str, &str); 1] = [("JWT_SECRET", "lwhost-integration-test-secret")];

/// A token for `sub` minted by `lwproxy token` with [`SECRET`].
fn mint(sub: &str) -> String {
    let out = Command::new(lwproxy_bin())
        .args(["token", "--sub", sub])
        .envs(SECRET)
        .output()
        .expect("lwproxy token");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf8").trim().to_string()
}

#[test]
fn token_goes_to_the_proxy_as_a_bearer_subprotocol() {
    let secret = SECRET;
    let token = mint("lwhost-test");
    let proxy = start_proxy("127.0.0.1:0", &[], &secret);
    let http = http_server(sized_body);

    let dir = tmp_dir("token");
    let host = Lwhost::start(&proxy.url(""), &dir, 1 << 20, Some(&token));
    let g = host.connect();
    assert!(get(&g, http.port(), 5000) == pattern(5000, 5000));
    drop(g);
    drop(host);

    // Without the token the proxy turns lwhost away: opens are refused.
    let dir = tmp_dir("notoken");
    let host = Lwhost::start(&proxy.url(""), &dir, 1 << 20, None);
    let g = host.connect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(g.open("127.0.0.1", http.port()), Err(ECONNREFUSED));
}

#[test]
fn one_client_at_a_time_and_a_fresh_region_for_the_next() {
    let (_proxy, host, first) = connected("clients", 1 << 20);
    let err = lwhost::uml::connect(&host.socket)
        .err()
        .expect("second client refused");
    assert!(err.to_string().contains("busy"), "{err}");
    assert_eq!(first.put(b"k", b"v1", 100), 0);
    let region = first.client.region.clone();
    drop(first);
    // lwhost tears the first session down: its region is no longer served.
    let deadline = Instant::now() + DEADLINE;
    while region.main_alive().load(std::sync::atomic::Ordering::Acquire) != 0 {
        assert!(Instant::now() < deadline, "main_alive never cleared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = loop {
        match lwhost::uml::connect(&host.socket) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let g = Guest {
        worker: lwhost::worker::Worker::new(second.region.clone()),
        client: second,
    };
    assert_eq!(g.get(b"k"), Ok(b"v1".to_vec()));
}

#[test]
fn store_put_get_stat_list_delete() {
    let proxy = proxy_no_auth();
    let dir = tmp_dir("store");
    let host = Lwhost::start(&proxy.url(""), &dir, 10 << 20, None);
    let g = host.connect();
    let big = pattern(1, 300_000);
    assert_eq!(g.put(b"lwsync/home.tar", &big, 65536), 0);
    assert_eq!(g.put(b"lwsync/manifest", b"{\"v\":1}", 65536), 0);
    assert_eq!(g.put(b"other/x", b"", 65536), 0);
    assert!(g.get(b"lwsync/home.tar") == Ok(big.clone()));
    let (r, out) = g.store(&StoreRequest {
        op: LWHOST_STORE_STAT,
        key: b"lwsync/home.tar",
        ..Default::default()
    });
    assert_eq!(r, 8);
    assert_eq!(u64::from_le_bytes(out.try_into().expect("8 bytes")), 300_000);
    let list = |after: &'static [u8], cap: u32| {
        g.store(&StoreRequest {
            op: LWHOST_STORE_LIST,
            key: b"lwsync/",
            after,
            capacity: cap,
            ..Default::default()
        })
    };
    assert_eq!(
        list(b"", 4096),
        (32, b"lwsync/home.tar\0lwsync/manifest\0".to_vec())
    );
    assert_eq!(
        list(b"", 20),
        (16, b"lwsync/home.tar\0".to_vec()),
        "whole keys only"
    );
    assert_eq!(
        list(b"lwsync/home.tar", 4096),
        (16, b"lwsync/manifest\0".to_vec())
    );
    assert_eq!(list(b"lwsync/manifest", 4096), (0, Vec::new()));
    let (r, _) = g.store(&StoreRequest {
        op: LWHOST_STORE_DELETE,
        key: b"lwsync/manifest",
        ..Default::default()
    });
    assert_eq!(r, 0);
    assert_eq!(g.get(b"lwsync/manifest"), Err(ENOENT));
    // Hostile keys are refused by lwhost, nothing escapes the directory.
    assert_eq!(g.put(b"../../etc/evil", b"x", 10), -EINVAL);
    assert_eq!(g.put(b"/abs", b"x", 10), -EINVAL);
    assert!(!dir.join("etc/evil").exists());
}

#[test]
fn store_quota_is_enospc() {
    let (_proxy, _host, g) = connected("quota", 200_000);
    assert_eq!(g.put(b"a", &pattern(2, 150_000), 65536), 0);
    assert_eq!(g.put(b"b", &pattern(3, 100_000), 65536), -ENOSPC);
    assert!(
        g.get(b"a") == Ok(pattern(2, 150_000)),
        "the committed value is untouched"
    );
    assert_eq!(g.get(b"b"), Err(ENOENT));
}

#[test]
fn kill_9_during_a_save_leaves_the_last_committed_value() {
    let proxy = proxy_no_auth();
    let dir = tmp_dir("kill9");
    let key = b"lwsync/snapshot";
    let size = 1 << 20; // 16 chunks of 64 KiB
                        // The last value whose save returned, and the one a kill interrupted
                        // (which may or may not have reached its commit).
    let mut committed: Option<Vec<u8>> = None;
    let mut interrupted: Option<Vec<u8>> = None;
    let mut cut_short = 0;
    let check = |g: &Guest, committed: &Option<Vec<u8>>, interrupted: &Option<Vec<u8>>, round: usize| {
        let now = g.get(key).ok();
        assert!(
            now == *committed || (now.is_some() && now == *interrupted),
            "round {round}: the store holds neither the committed nor the interrupted value"
        );
        now
    };
    // Kill just before chunk k goes out: early, middle, late, and racing
    // the final chunk that carries COMMIT.
    for (round, kill_at) in [1usize, 6, 13, 15].into_iter().enumerate() {
        let mut host = Lwhost::start(&proxy.url(""), &dir, 1 << 30, None);
        let g = host.connect();
        check(&g, &committed, &interrupted, round);
        let value = pattern(round as u32, size);
        assert_eq!(g.put(key, &value, 65536), 0);
        committed = Some(value);
        let next = pattern(1000 + round as u32, size);
        let (at_tx, at_rx) = std::sync::mpsc::channel();
        let result = std::thread::scope(|s| {
            let save = s.spawn(|| {
                g.put_observed(key, &next, 65536, &|i| {
                    if i == kill_at {
                        let _ = at_tx.send(());
                    }
                })
            });
            let _ = at_rx.recv_timeout(DEADLINE);
            host.kill9();
            save.join().expect("save thread")
        });
        if result != 0 {
            cut_short += 1;
        }
        interrupted = Some(next);
    }
    assert!(
        cut_short > 0,
        "no save was actually interrupted; the test proved nothing"
    );
    let host = Lwhost::start(&proxy.url(""), &dir, 1 << 30, None);
    let g = host.connect();
    assert!(check(&g, &committed, &interrupted, 4).is_some());
}

#[test]
fn lwhost_cli_has_help_and_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_lwhost"))
        .arg("--help")
        .output()
        .expect("lwhost --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--proxy",
        "--token-file",
        "--extra-ca",
        "LWHOST_TOKEN",
        "--store",
        "--quota",
        "--socket",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let dir = tmp_dir("cli");
    std::fs::write(dir.join("file"), b"not a directory").expect("file");
    // lwhost with `--proxy url --store store`, its socket in `dir`.
    let lwhost = |url: &str, store: &str| {
        Command::new(env!("CARGO_BIN_EXE_lwhost"))
            .args(["--proxy", url, "--store"])
            .arg(dir.join(store))
            .arg("--socket")
            .arg(dir.join("s.sock"))
            .output()
            .expect("lwhost")
    };
    let out = lwhost("ws://127.0.0.1:1/", "file/store");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("store"),
        "error names the store"
    );
    let out = lwhost("not a url", "store");
    assert!(!out.status.success(), "a bad proxy URL is refused at start");
}

#[test]
fn wss_proxy_verified_with_extra_ca_token_from_a_file() {
    let secret = SECRET;
    let token = mint("lwhost-wss");
    let dir = tmp_dir("wss");
    let tls = lwtest::ca::TestCa::new(&dir, "lwhost test CA").expect("test CA");
    let (ca, cert, key) = (tls.ca_pem, tls.cert_pem, tls.key_pem);
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let (cert, key) = (cert.to_str().expect("path"), key.to_str().expect("path"));
    let proxy = start_proxy("127.0.0.1:0", &["--tls-cert", cert, "--tls-key", key], &secret);
    let url = format!("wss://localhost:{}/", proxy.addr.port());
    let http = http_server(sized_body);

    let args = [
        "--token-file",
        token_file.to_str().expect("path"),
        "--extra-ca",
        ca.to_str().expect("path"),
    ];
    let host = Lwhost::start_with(&url, &dir, 1 << 20, None, &args);
    let g = host.connect();
    assert!(get(&g, http.port(), 5000) == pattern(5000, 5000));
    drop(g);
    drop(host);

    // Without the test CA the proxy's certificate is not trusted: no link, opens refused.
    let dir = tmp_dir("wss-untrusted");
    let host = Lwhost::start_with(&url, &dir, 1 << 20, None, &args[..2]);
    let g = host.connect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(g.open("127.0.0.1", http.port()), Err(ECONNREFUSED));
}
