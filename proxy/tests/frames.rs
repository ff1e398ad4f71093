//! Data frames written straight to the client's socket (proxy/src/frames.rs): a stream
//! arrives byte-identical in well-formed frames while the client's pings are answered between
//! them, and a close arriving mid-stream is answered after the frame on the wire, with no data
//! frame after it. The client's receive buffer is kept small so that the proxy's frames are
//! often only partly written when a pong or close reply wants to go out.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use lwproxy::protocol::{self, client, BEARER_PREFIX, MAX_WINDOW, SUBPROTOCOL_V2};
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Client = WebSocketStream<tokio::net::TcpStream>;

/// Word `i` (big-endian) at byte offset 4 i: no 4-byte-aligned run repeats, so a reordered,
/// lost or duplicated piece shows.
fn counter_pattern(n: usize) -> Vec<u8> {
    (0..n.div_ceil(4) as u32)
        .flat_map(u32::to_be_bytes)
        .take(n)
        .collect()
}

/// A target that sends `n` bytes of [`counter_pattern`], then closes.
fn counter_source(n: usize) -> SocketAddr {
    let data = counter_pattern(n);
    lwtest::servers::tcp(move |mut s| {
        let _ = s.write_all(&data);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    })
    .unwrap()
}

/// An `lwproxy.v2` client whose socket receives into a 4 KiB buffer, and connection 1 opened
/// to `target` with the largest window, so the proxy writes far more than the socket takes.
async fn small_buffer_client(proxy: &Proxy, target: SocketAddr) -> Client {
    let mut req = format!("ws://{}/", proxy.addr).into_client_request().unwrap();
    let offer = format!("{SUBPROTOCOL_V2}, {BEARER_PREFIX}{}", token("alice"));
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(&offer).unwrap());
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(proxy.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    let open = client::open_window(1, "127.0.0.1", target.port(), false, None, Some(MAX_WINDOW));
    ws.send(Message::Text(open.into())).await.unwrap();
    match next(&mut ws).await {
        Message::Text(t) if t.as_str().contains("\"opened\"") => ws,
        other => panic!("while opening: {other:?}"),
    }
}

async fn next(ws: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("a message within 15 s")
        .expect("the session is open")
        .expect("a well-formed frame")
}

/// A pong with `payload` arrived: it answers a ping later than the last one answered (RFC 6455
/// §5.5.3 lets a peer answer only the latest of several pings); `last` becomes its number.
fn answered(last: &mut u32, payload: &[u8]) {
    let n = u32::from_be_bytes(payload.try_into().expect("a pong carries its ping's 4 bytes"));
    assert!(n > *last, "pong {n} after pong {last}");
    *last = n;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_arrives_whole_with_pings_answered_between_frames() {
    let total = 8 << 20;
    let target = counter_source(total);
    let proxy = Proxy::unmetered(&[target], &[]);
    let mut ws = small_buffer_client(&proxy, target).await;
    let (mut data, mut frames) = (Vec::with_capacity(total), 0u32);
    let (mut pings, mut pongs) = (0u32, 0u32);
    loop {
        match next(&mut ws).await {
            Message::Binary(b) => {
                let (id, payload) = protocol::split_binary(&b).unwrap();
                assert_eq!(id, 1);
                data.extend_from_slice(payload);
                ws.send(Message::Text(client::ack(1, payload.len() as u64).into()))
                    .await
                    .unwrap();
                frames += 1;
                // A ping every few frames, and now and then a pause that lets the proxy's
                // socket fill up mid-frame before the ping is read.
                if frames % 4 == 0 {
                    pings += 1;
                    ws.send(Message::Ping(pings.to_be_bytes().to_vec().into()))
                        .await
                        .unwrap();
                    if frames % 32 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            Message::Pong(p) => answered(&mut pongs, &p),
            // The target's end: every byte was sent before it (the connection stays open).
            Message::Text(t) if t.as_str().contains("\"eof\"") => break,
            other => panic!("{other:?}"),
        }
    }
    // The last ping is answered (earlier ones may be answered only by a later pong).
    while pongs < pings {
        match next(&mut ws).await {
            Message::Pong(p) => answered(&mut pongs, &p),
            other => panic!("{other:?}"),
        }
    }
    assert!(pings >= 16, "only {pings} pings in {frames} frames");
    assert_eq!(data.len(), total);
    assert!(data == counter_pattern(total), "the stream arrived changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_mid_stream_is_answered_after_the_frame_on_the_wire() {
    let target = counter_source(64 << 20);
    let proxy = Proxy::unmetered(&[target], &[]);
    let mut ws = small_buffer_client(&proxy, target).await;
    let mut data = Vec::new();
    while data.len() < 256 * 1024 {
        if let Message::Binary(b) = next(&mut ws).await {
            data.extend_from_slice(protocol::split_binary(&b).unwrap().1);
        }
    }
    // Unacked, the proxy keeps sending up to its 4 MiB window into the 4 KiB buffer: a frame
    // is part-written when the close arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::Close(None)).await.unwrap();
    // Whole frames up to the close reply, then the end: a frame cut by the reply, or data
    // after it, is an error here (tungstenite refuses frames after a close).
    let mut after = 0;
    let reply = loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap();
        match m {
            Some(Ok(Message::Binary(b))) => {
                data.extend_from_slice(protocol::split_binary(&b).unwrap().1);
                after += 1;
            }
            Some(Ok(Message::Close(c))) => break c,
            Some(Ok(Message::Text(_))) => {}
            other => panic!("before the close reply: {other:?}"),
        }
    };
    assert!(reply.is_none() || reply.is_some_and(|c| u16::from(c.code) == 1000));
    assert!(after > 0, "the frames in flight arrive before the close reply");
    let end = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .unwrap();
    assert!(end.is_none(), "after the close reply: {end:?}");
    assert!(data == counter_pattern(data.len()), "the stream arrived changed");
    // The connection ended and was accounted for.
    for _ in 0..100 {
        if proxy.logged("\"target\":\"audit\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        proxy.log_text().contains("\"target\":\"audit\""),
        "{}",
        proxy.log_text()
    );
}
