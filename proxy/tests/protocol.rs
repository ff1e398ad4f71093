//! The wire protocol (docs/protocol.md) end to end: v1 JSON, lwproxy.v2 (binary, acks, half-close), the audit
//! line, and hostile input — each bad message gets an `error` and the session carries on.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_json_round_trip_and_audit_line() {
    let (echo, proxy) = echo_proxy(&[]).await;
    let mut ws = Ws::v1(&proxy, "alice").await;
    assert_eq!(ws.protocol, None);
    let v = ws.open(1, "127.0.0.1", echo.port()).await;
    assert_eq!(
        v,
        json!({"t": "opened", "id": 1}),
        "seed clients get exactly the seed reply"
    );
    ws.echo(1, b"GET / HTTP/1.0\r\n\r\n").await;
    let big = pattern(300_000);
    ws.echo(1, &big).await;
    ws.send_json(json!({"t": "close", "id": 1})).await;
    assert_eq!(ws.expect("closed", 1).await, json!({"t": "closed", "id": 1}));
    // The id is free again at once.
    ws.opened(1, echo).await;

    let log = proxy.log_text();
    let audit: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "audit")
        .expect("an audit line");
    assert_eq!(audit["identity"], "alice");
    assert_eq!(audit["resolved"], format!("127.0.0.1:{}", echo.port()));
    assert_eq!(audit["bytes_up"], 18 + 300_000);
    assert_eq!(audit["bytes_down"], 18 + 300_000);
    assert_eq!(audit["outcome"], "closed");
    assert!(audit["duration_ms"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_binary_acks_and_half_close() {
    let counting = counting_server().await;
    let proxy = Proxy::unmetered(&[counting], &[]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    let v = ws.open(7, "127.0.0.1", counting.port()).await;
    assert_eq!(v["addr"], format!("127.0.0.1:{}", counting.port()));
    // Send 1 MiB in window-sized steps, waiting for acks: the server acks what it wrote.
    let total = 1 << 20;
    let mut tx = WindowedSender::new(7, total, vec![0x55u8; 32 * 1024]);
    while !tx.done() {
        tx.fill(&mut ws).await;
        match ws.recv().await {
            Msg::Json(v) if v["t"] == "ack" => tx.acked(&v),
            other => panic!("{other:?}"),
        }
    }
    ws.send_json(json!({"t": "shutdown", "id": 7})).await;
    // The target saw EOF after every byte, and answers with the count; then its own EOF.
    let mut reply = Vec::new();
    let mut saw_eof = false;
    loop {
        match ws.recv().await {
            Msg::Bin(7, b) => {
                ws.send_json(json!({"t": "ack", "id": 7, "bytes": b.len()})).await;
                reply.extend(b);
            }
            Msg::Json(v) if v["t"] == "ack" => {}
            Msg::Json(v) if v["t"] == "eof" => saw_eof = true,
            Msg::Json(v) if v["t"] == "closed" => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_eof);
    assert_eq!(String::from_utf8(reply).unwrap(), total.to_string());
}

/// Client data reaches the target in order, whether the session writes it to the target
/// socket itself (nothing queued for the connection) or queues it behind earlier bytes (the
/// socket full, a write partly done): 8 MiB of a pattern that does not repeat within a frame
/// come back from an echo target unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_client_data_keeps_its_order_direct_or_queued() {
    let (echo, proxy) = echo_proxy(&["--bytes-per-min", "0"]).await;
    let mut ws = Ws::v2(&proxy, "alice").await;
    ws.opened(3, echo).await;
    let total = 8 << 20;
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let chunk = 48 * 1024;
    let (mut sent, mut in_flight) = (0usize, 0usize);
    let mut back = Vec::with_capacity(total);
    while back.len() < total {
        while sent < total && in_flight + chunk <= WINDOW {
            let end = (sent + chunk).min(total);
            ws.send_bin(3, &data[sent..end]).await;
            in_flight += end - sent;
            sent = end;
        }
        match ws.recv().await {
            Msg::Json(v) if v["t"] == "ack" => in_flight -= v["bytes"].as_u64().unwrap() as usize,
            Msg::Bin(3, b) => {
                ws.send_json(json!({"t": "ack", "id": 3, "bytes": b.len()})).await;
                back.extend(b);
            }
            other => panic!("{other:?}"),
        }
    }
    let first_difference = back.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "echo differs");
    assert_eq!(back.len(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_target_eof_leaves_the_connection_writable() {
    // Greets, shuts its write side, then keeps reading until the client's FIN.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"hello").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let _ = got_tx.send(got);
    });
    let proxy = Proxy::allowing(&[addr], &[]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    ws.opened(1, addr).await;
    let (data, control) = ws.read_data(1, 5).await;
    assert_eq!(data, b"hello");
    assert!(control.is_empty());
    ws.expect("eof", 1).await;
    ws.send_bin(1, b"still writable").await;
    ws.expect("ack", 1).await;
    ws.send_json(json!({"t": "shutdown", "id": 1})).await;
    ws.expect("closed", 1).await;
    assert_eq!(got_rx.await.unwrap(), b"still writable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_errors_and_the_session_survives() {
    let (echo, proxy) = echo_proxy(&["--max-message", "65536"]).await;
    for v2 in [false, true] {
        let mut ws = if v2 {
            Ws::v2(&proxy, "h2").await
        } else {
            Ws::v1(&proxy, "h1").await
        };
        ws.opened(1, echo).await;
        let big_json = format!(r#"{{"t":"write","id":1,"b64":"{}"}}"#, "A".repeat(100_000));
        let cases: Vec<(String, &str)> = vec![
            ("not json at all".into(), "invalid JSON"),
            ("{\"t\":\"open\"".into(), "invalid JSON"),
            ("[]".into(), "JSON object"),
            (r#"{"id":1}"#.into(), "missing field 't'"),
            (r#"{"t":"teleport","id":1}"#.into(), "unknown message type"),
            (r#"{"t":"open","id":2,"port":80}"#.into(), "missing field 'host'"),
            (r#"{"t":"open","id":2,"host":"x"}"#.into(), "missing field 'port'"),
            (
                r#"{"t":"open","id":"two","host":"x","port":80}"#.into(),
                "'id' must be",
            ),
            (r#"{"t":"write","id":1}"#.into(), "missing field 'b64'"),
            (r#"{"t":"write","id":1,"b64":"%%%"}"#.into(), "bad base64"),
            (
                r#"{"t":"write","id":99,"b64":"aGk="}"#.into(),
                "unknown connection id 99",
            ),
            (r#"{"t":"close","id":98}"#.into(), "unknown connection id 98"),
            (
                format!(
                    r#"{{"t":"open","id":1,"host":"127.0.0.1","port":{}}}"#,
                    echo.port()
                ),
                "duplicate id 1",
            ),
        ];
        for (input, want) in &cases {
            ws.send_text(input).await;
            let v = ws.recv_json().await;
            assert_eq!(v["t"], "error", "{input:.60}: {v}");
            assert!(v["msg"].as_str().unwrap().contains(want), "{input:.60}: {v}");
            let want_code = if want.starts_with("limit:") {
                "limit"
            } else {
                "protocol"
            };
            assert_eq!(code(&v), want_code, "{input:.60}: {v}");
        }
        // An oversized write ends its connection (error with its id, then closed): its data
        // cannot be delivered, and the stream must not go on with a gap.
        ws.send_text(&big_json).await;
        let v = ws.recv_json().await;
        assert_eq!((&v["t"], &v["id"]), (&json!("error"), &json!(1)), "{v}");
        assert!(
            v["msg"]
                .as_str()
                .unwrap()
                .contains("limit: message size (65536 bytes)"),
            "{v}"
        );
        ws.expect("closed", 1).await;
        ws.opened(1, echo).await;
        // Binary: needs v2 in v1; too short, oversized and unknown ids in v2.
        if v2 {
            ws.ws
                .send(tokio_tungstenite::tungstenite::Message::Binary(
                    vec![0u8, 1].into(),
                ))
                .await
                .unwrap();
            assert!(ws.recv_json().await["msg"].as_str().unwrap().contains("shorter"));
            ws.send_bin(1, &vec![0u8; 70_000]).await;
            let v = ws.recv_json().await;
            assert_eq!(v["id"], 1, "{v}");
            assert!(v["msg"].as_str().unwrap().contains("message size"), "{v}");
            ws.expect("closed", 1).await;
            ws.opened(1, echo).await;
            ws.send_bin(42, b"x").await;
            assert!(ws.recv_json().await["msg"]
                .as_str()
                .unwrap()
                .contains("unknown connection id 42"));
            ws.send_json(json!({"t": "ack", "id": 1, "bytes": 1_000_000}))
                .await;
            assert!(ws.recv_json().await["msg"].as_str().unwrap().contains("exceeds"));
        } else {
            ws.send_bin(1, b"x").await;
            assert!(ws.recv_json().await["msg"]
                .as_str()
                .unwrap()
                .contains("lwproxy.v2"));
            ws.send_json(json!({"t": "ack", "id": 1, "bytes": 1})).await;
            assert!(ws.recv_json().await["msg"]
                .as_str()
                .unwrap()
                .contains("lwproxy.v2"));
        }
        // The original connection is untouched.
        ws.echo(1, b"still here").await;
        // Writes after close are refused.
        ws.send_json(json!({"t": "close", "id": 1})).await;
        ws.expect("closed", 1).await;
        ws.write(1, b"late").await;
        assert!(ws.recv_json().await["msg"]
            .as_str()
            .unwrap()
            .contains("unknown connection id 1"));
    }
    use futures_util::SinkExt;
    // A frame above the hard WebSocket limit ends only that session; the proxy lives on.
    let mut rude = Ws::v1(&proxy, "rude").await;
    let _ = rude
        .ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![0u8; 400_000].into(),
        ))
        .await;
    assert!(rude.try_recv(std::time::Duration::from_secs(5)).await.is_none());
    let mut ws = Ws::v1(&proxy, "after").await;
    ws.opened(1, echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_opens_is_answered_one_by_one() {
    let (echo, proxy) = echo_proxy(&[]).await;
    let mut ws = Ws::v1(&proxy, "flood").await;
    let n = 500u32;
    for id in 1..=n {
        ws.send_json(json!({"t": "open", "id": id, "host": "127.0.0.1", "port": echo.port()}))
            .await;
    }
    let (mut opened, mut limited) = (Vec::new(), 0);
    while opened.len() + limited < n as usize {
        let v = ws.recv_json().await;
        match v["t"].as_str().unwrap() {
            "opened" => opened.push(v["id"].as_u64().unwrap() as u32),
            "error" => {
                assert!(v["msg"].as_str().unwrap().contains("limit: "), "{v}");
                limited += 1;
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert_eq!(opened.len(), 5, "default concurrency limit");
    for id in opened {
        ws.echo(id, b"alive").await;
    }
}

/// Reads `id`'s binary data without acking until nothing more comes for 300 ms; the bytes.
async fn unacked_burst(ws: &mut Ws, id: u32) -> usize {
    let mut got = 0;
    while let Some(m) = ws.try_recv(std::time::Duration::from_millis(300)).await {
        match m {
            Msg::Bin(i, b) if i == id => got += b.len(),
            other => panic!("{other:?}"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_window_is_negotiated_and_capped() {
    use lwproxy::protocol::MAX_WINDOW;
    let source = source_server(16 << 20).await;
    let proxy = Proxy::unmetered(&[source], &[]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    // No offer (older clients): the fixed window, announced in `opened`.
    let v = ws.open(1, "127.0.0.1", source.port()).await;
    assert_eq!(v["window"], WINDOW as u64);
    assert_eq!(unacked_burst(&mut ws, 1).await, WINDOW);
    ws.send_json(json!({"t": "close", "id": 1})).await;
    ws.expect("closed", 1).await;
    // An offer within the cap is granted as offered, and the proxy sends exactly that much
    // before it waits for an ack; an ack lets the same amount through again.
    let offer = 1u64 << 20;
    let open = json!({"t": "open", "id": 2, "host": "127.0.0.1", "port": source.port(), "window": offer});
    assert_eq!(ws.open_with(open).await["window"], offer);
    assert_eq!(unacked_burst(&mut ws, 2).await as u64, offer);
    ws.send_json(json!({"t": "ack", "id": 2, "bytes": 4096})).await;
    assert_eq!(unacked_burst(&mut ws, 2).await, 4096);
    ws.send_json(json!({"t": "close", "id": 2})).await;
    ws.expect("closed", 2).await;
    // A larger offer is capped; a bad one is refused with an error naming the field.
    let open = json!({"t": "open", "id": 3, "host": "127.0.0.1", "port": source.port(), "window": u64::MAX});
    assert_eq!(ws.open_with(open).await["window"], MAX_WINDOW);
    assert_eq!(unacked_burst(&mut ws, 3).await as u64, MAX_WINDOW);
    let open = json!({"t": "open", "id": 4, "host": "127.0.0.1", "port": source.port(), "window": 0});
    let e = ws.open_with(open).await;
    assert_eq!((e["t"].as_str(), code(&e)), (Some("error"), "protocol"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_window_grows_on_ack_only_up_and_up_to_the_cap() {
    use lwproxy::protocol::MAX_WINDOW;
    let source = source_server(16 << 20).await;
    let proxy = Proxy::unmetered(&[source], &[]);
    let mut ws = Ws::v2(&proxy, "alice").await;
    let open = json!({"t": "open", "id": 1, "host": "127.0.0.1", "port": source.port(), "window": 65536});
    assert_eq!(ws.open_with(open).await["window"], 65536);
    assert_eq!(unacked_burst(&mut ws, 1).await, 65536);
    // An ack raising the window: the acked bytes plus the growth come through.
    ws.send_json(json!({"t": "ack", "id": 1, "bytes": 65536, "window": 262144}))
        .await;
    assert_eq!(unacked_burst(&mut ws, 1).await, 262144);
    // A smaller window never shrinks it; hostile values are refused, naming the field, and
    // change nothing (the connection keeps its window).
    ws.send_json(json!({"t": "ack", "id": 1, "bytes": 0, "window": 1000}))
        .await;
    for bad in [json!(0), json!(-1), json!(1.5), json!("4194304"), json!([1])] {
        ws.send_json(json!({"t": "ack", "id": 1, "bytes": 0, "window": bad}))
            .await;
        let e = ws.expect("error", 1).await;
        assert_eq!(code(&e), "protocol", "{bad}: {e}");
        assert!(e["msg"].as_str().unwrap_or("").contains("'window'"), "{bad}: {e}");
    }
    assert_eq!(unacked_burst(&mut ws, 1).await, 0);
    // A huge window is capped at MAX_WINDOW: that much in flight, no more.
    ws.send_json(json!({"t": "ack", "id": 1, "bytes": 0, "window": u64::MAX}))
        .await;
    assert_eq!(unacked_burst(&mut ws, 1).await as u64, MAX_WINDOW - 262144);
    ws.send_json(json!({"t": "ack", "id": 1, "bytes": 4096})).await;
    assert_eq!(unacked_burst(&mut ws, 1).await, 4096);
}
