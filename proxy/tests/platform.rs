//! Every row of proxy/PLATFORM-ENDPOINTS.md against the real binary, inside a private network
//! namespace (`unshare -rn`) where each endpoint address is a loopback alias with a listener on
//! its platform port: refused in every spelling by default (and by a broad --allow), naming the
//! provider; admitted one by one with --allow ADDRESS:PORT.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const INSIDE: &str = "LWPROXY_TEST_IN_NETNS";

struct Row {
    provider: String,
    addr: IpAddr,
    port: u16,
}

/// The table's rows: provider, the first address of the range, the first listed port.
fn rows() -> Vec<Row> {
    let text = include_str!("../PLATFORM-ENDPOINTS.md");
    text.lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let net: ipnet::IpNet = if cells[1].contains('/') {
                cells[1].parse().unwrap()
            } else {
                ipnet::IpNet::from(cells[1].parse::<IpAddr>().unwrap())
            };
            let port = cells[2].split(',').next().unwrap().trim().parse().unwrap();
            Row {
                provider: cells[0].to_owned(),
                addr: net.network(),
                port,
            }
        })
        .collect()
}

/// The spellings of one endpoint: itself and, for IPv4, mapped, NAT64 and 6to4.
fn spellings(ip: IpAddr) -> Vec<String> {
    match ip {
        IpAddr::V6(a) => vec![a.to_string()],
        IpAddr::V4(a) => {
            let [w, x, y, z] = a.octets();
            vec![
                a.to_string(),
                format!("::ffff:{a}"),
                format!("64:ff9b::{a}"),
                format!("2002:{:02x}{:02x}:{:02x}{:02x}::1", w, x, y, z),
            ]
        }
    }
}

async fn counted_listener(addr: SocketAddr) -> Arc<AtomicUsize> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    n
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

async fn inside_namespace() {
    sh(&["ip", "link", "set", "lo", "up"]);
    let rows = rows();
    assert!(rows.len() >= 8, "the table lost rows");
    let mut counts = Vec::new();
    for r in &rows {
        match r.addr {
            IpAddr::V4(a) => sh(&["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"]),
            IpAddr::V6(a) => sh(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{a}/128"),
                "dev",
                "lo",
                "nodad",
            ]),
        }
        counts.push(counted_listener(SocketAddr::new(r.addr, r.port)).await);
    }
    let all_ports = [
        "--ports",
        "1-65535",
        "--conns-per-min",
        "0",
        "--max-concurrent",
        "0",
    ];
    let broad = [&all_ports[..], &["--allow", "0.0.0.0/0", "--allow", "::/0"]].concat();
    for args in [&all_ports[..], &broad[..]] {
        let proxy = Proxy::start(args);
        let mut ws = Ws::v1(&proxy, "alice").await;
        let mut id = 0;
        for r in &rows {
            for s in spellings(r.addr) {
                id += 1;
                let v = ws.open(id, &s, r.port).await;
                let msg = v["msg"].as_str().unwrap_or_default();
                let want = format!("is a {} platform endpoint", r.provider);
                assert!(
                    v["t"] == "error" && msg.starts_with("refused by policy: ") && msg.contains(&want),
                    "{s} with {args:?}: {v}"
                );
                ws.expect("closed", id).await;
            }
        }
    }
    for (r, n) in rows.iter().zip(&counts) {
        assert_eq!(n.load(Ordering::SeqCst), 0, "a refusal reached {}", r.addr);
    }

    // One by one: each row admitted by its own --allow ADDRESS:PORT; the NAT64 and 6to4
    // spellings stay refused.
    let mut args: Vec<String> = vec![
        "--conns-per-min".into(),
        "0".into(),
        "--max-concurrent".into(),
        "0".into(),
    ];
    for r in &rows {
        args.push("--allow".into());
        args.push(match r.addr {
            IpAddr::V4(a) => format!("{a}:{}", r.port),
            IpAddr::V6(a) => format!("[{a}]:{}", r.port),
        });
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::start(&argv);
    let mut ws = Ws::v1(&proxy, "alice").await;
    let mut id = 1000;
    for (r, n) in rows.iter().zip(&counts) {
        for (i, s) in spellings(r.addr).iter().enumerate() {
            id += 1;
            let v = ws.open(id, s, r.port).await;
            if i < 2 {
                assert_eq!(v["t"], "opened", "{s}: {v}");
            } else {
                assert!(
                    v["msg"].as_str().unwrap().contains("platform endpoint"),
                    "{s}: {v}"
                );
            }
            ws.expect("closed", id).await;
        }
        let want = if r.addr.is_ipv4() { 2 } else { 1 };
        assert_eq!(n.load(Ordering::SeqCst), want, "{}", r.addr);
        // Another port of the same endpoint is still refused.
        id += 1;
        let v = ws.open(id, &r.addr.to_string(), r.port + 1).await;
        assert!(v["msg"].as_str().unwrap().contains("platform endpoint"), "{v}");
        ws.expect("closed", id).await;
    }
}

#[test]
fn every_platform_endpoint_row() {
    if std::env::var_os(INSIDE).is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(inside_namespace());
        return;
    }
    // Re-run this very test as root of a new user and network namespace.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--"])
        .arg(exe)
        .args([
            "--exact",
            "every_platform_endpoint_row",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INSIDE, "1")
        .output()
        .expect("unshare (util-linux) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(text.contains("1 passed"), "{text}");
}
