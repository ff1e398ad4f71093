//! The client's WebSocket as the session uses it: one reader, writers that take turns, and
//! data messages written as frames straight to the socket.
//!
//! Why not through tungstenite: tungstenite formats every frame into its write buffer, so
//! each data message relayed to the client was copied once more in user space before the
//! kernel copied it again (89% of lwproxy's own instructions per streamed MiB, measured with
//! valgrind callgrind). A data message is lwproxy's core hot path, so here, and only here,
//! the frame is written by us: its header formatted by tungstenite's own
//! [`FrameHeader::format`], then header and payload go to the socket in one vectored write,
//! the payload from the buffer the target was read into. Everything else (text messages,
//! pings, pongs, the close handshake, reading) stays tungstenite's.
//!
//! Framing, RFC 6455 §5.2: one final frame (FIN set, RSV bits clear, opcode 0x2 binary), the
//! payload length in 7 bits, or 126 + 16 bits, or 127 + 64 bits, network byte order; frames
//! from a server are not masked (§5.1), so the payload goes out as it is.
//!
//! Frames must never interleave on the wire. Two rules keep them apart:
//! - a data frame starts only once tungstenite's write buffer is empty (flushed first, under
//!   the lock every user of the WebSocket takes for each poll), so it never lands inside one
//!   of tungstenite's frames;
//! - a data frame that the socket did not take whole stays in [`FrameIo`], the transport
//!   under tungstenite, which writes its rest before anything else: tungstenite's writes,
//!   among them the pongs and close replies it sends from its read side, wait for the frame
//!   boundary (its read side treats the wait as a blocked write and goes on reading).
//!
//! No data frame follows a close frame (§5.5.1): once a close was sent or received, or the
//! read side failed, data messages are refused as tungstenite refuses writes after a close.

use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The longest header of an unmasked frame: 2 bytes + a 64-bit length (RFC 6455 §5.2).
const MAX_HEADER: usize = 10;

/// A data frame on its way to the socket.
struct Pending {
    head: [u8; MAX_HEADER],
    head_len: usize,
    payload: Bytes,
    /// Bytes of header and payload already written.
    done: usize,
}

/// The transport under the client's WebSocket: the client socket `S`, plus the data frame
/// being written directly, if one is (see the module notes). Reads pass through; every write,
/// flush and shutdown first finishes that frame.
pub struct FrameIo<S> {
    inner: S,
    pending: Option<Pending>,
    /// Tasks that found a frame in the way, woken when it is out.
    waiting: Vec<Waker>,
}

impl<S> FrameIo<S> {
    pub fn new(inner: S) -> Self {
        FrameIo {
            inner,
            pending: None,
            waiting: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> FrameIo<S> {
    /// Starts a binary data frame carrying `payload` (one final frame, unmasked). The caller
    /// makes sure that nothing else is half-written: tungstenite's buffer is flushed and no
    /// other frame is pending.
    fn start(&mut self, payload: Bytes) {
        debug_assert!(self.pending.is_none());
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            ..FrameHeader::default()
        };
        let mut head = [0u8; MAX_HEADER];
        let mut cursor = std::io::Cursor::new(&mut head[..]);
        // Cannot fail: an unmasked header is at most MAX_HEADER bytes.
        let _ = header.format(payload.len() as u64, &mut cursor);
        let head_len = cursor.position() as usize;
        self.pending = Some(Pending {
            head,
            head_len,
            payload,
            done: 0,
        });
    }

    /// Writes the rest of the pending frame, if any; Ready(Ok) once none is left.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some(f) = &mut self.pending {
            let total = f.head_len + f.payload.len();
            let n = if f.done < f.head_len {
                let bufs = [
                    IoSlice::new(&f.head[f.done..f.head_len]),
                    IoSlice::new(&f.payload),
                ];
                Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs)
            } else {
                Pin::new(&mut self.inner).poll_write(cx, &f.payload[f.done - f.head_len..])
            };
            let n = match n {
                Poll::Pending => {
                    if !self.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                        self.waiting.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(r) => r?,
            };
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            f.done += n;
            if f.done >= total {
                self.pending = None;
                for w in self.waiting.drain(..) {
                    w.wake();
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        std::task::ready!(me.poll_pending(cx))?;
        Pin::new(&mut me.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        std::task::ready!(me.poll_pending(cx))?;
        Pin::new(&mut me.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        std::task::ready!(me.poll_pending(cx))?;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        std::task::ready!(me.poll_pending(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

/// The WebSocket and whether data frames may still be sent.
struct Link<S> {
    ws: WebSocketStream<FrameIo<S>>,
    /// A close frame was sent or received, or reading failed: no more data frames.
    closed: bool,
}

type Shared<S> = Arc<Mutex<Link<S>>>;

fn lock<S>(link: &Shared<S>) -> MutexGuard<'_, Link<S>> {
    link.lock().unwrap_or_else(|p| p.into_inner())
}

/// Splits a session's WebSocket into its reader and its writer. Unlike a `split` through a
/// `BiLock`, both halves take one lock per poll only (never across an await), and the
/// writer can also send data frames directly ([`DataSink::poll_data`]).
pub fn split<S>(ws: WebSocketStream<FrameIo<S>>) -> (Reader<S>, Writer<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let link = Arc::new(Mutex::new(Link { ws, closed: false }));
    (Reader(link.clone()), Writer(link))
}

/// The reading half ([`split`]): tungstenite's messages, pings answered by tungstenite.
pub struct Reader<S>(Shared<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Reader<S> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut link = lock(&self.0);
        let r = link.ws.poll_next_unpin(cx);
        if matches!(r, Poll::Ready(None | Some(Err(_)) | Some(Ok(Message::Close(_))))) {
            link.closed = true;
        }
        r
    }
}

/// The writing half ([`split`]): a [`Sink`] of tungstenite messages, and [`DataSink`].
pub struct Writer<S>(Shared<S>);

/// A WebSocket sink that can also write a binary data message as a frame of its own, straight
/// to the socket (see the module notes).
pub trait DataSink: Sink<Message, Error = WsError> {
    /// Sends `data` (taken out of the option when its frame starts) as one binary message;
    /// Ready(Ok) once the whole frame is written and the socket flushed. Dropped midway, the frame is still finished
    /// before anything else is written. Errors: the socket's, or
    /// `Protocol(SendAfterClosing)` once a close frame was sent or received.
    fn poll_data(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &mut Option<Bytes>,
    ) -> Poll<Result<(), WsError>>;
}

impl<S: AsyncRead + AsyncWrite + Unpin> DataSink for Writer<S> {
    fn poll_data(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &mut Option<Bytes>,
    ) -> Poll<Result<(), WsError>> {
        let mut link = lock(&self.0);
        let link = &mut *link;
        if data.is_some() {
            if link.closed {
                return Poll::Ready(Err(WsError::Protocol(ProtocolError::SendAfterClosing)));
            }
            // Whatever tungstenite holds goes first, so the frame starts on a boundary.
            std::task::ready!(Pin::new(&mut link.ws).poll_flush(cx))?;
            if let Some(payload) = data.take() {
                link.ws.get_mut().start(payload);
            }
        }
        // Flushed, not only written: a TLS stream (tokio-rustls) accepts the frame into its
        // buffer and answers Ready(Ok) when the socket would block, and nothing else would
        // send those records until the session's next write. On plain TCP the flush is free.
        Pin::new(link.ws.get_mut()).poll_flush(cx).map_err(WsError::Io)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Writer<S> {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut lock(&self.0).ws).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        let mut link = lock(&self.0);
        if matches!(msg, Message::Close(_)) {
            link.closed = true;
        }
        Pin::new(&mut link.ws).start_send(msg)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut lock(&self.0).ws).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut link = lock(&self.0);
        link.closed = true;
        Pin::new(&mut link.ws).poll_close(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_util::SinkExt;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A server-side link and a plain tungstenite client over an in-memory pipe of `buffer`
    /// bytes (small: frames are written in pieces).
    async fn pair(
        buffer: usize,
    ) -> (
        Reader<DuplexStream>,
        Writer<DuplexStream>,
        WebSocketStream<DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(buffer);
        let server = WebSocketStream::from_raw_socket(FrameIo::new(a), Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (r, w) = split(server);
        (r, w, client)
    }

    async fn send_data(w: &mut Writer<DuplexStream>, b: Bytes) -> Result<(), WsError> {
        let mut data = Some(b);
        std::future::poll_fn(|cx| Pin::new(&mut *w).poll_data(cx, &mut data)).await
    }

    /// Every length class of RFC 6455 §5.2 (7-bit, 16-bit, 64-bit), written in pieces through
    /// a 1000-byte pipe with tungstenite's own messages between them, reads back as the same
    /// messages in the same order at a standard client.
    #[tokio::test]
    async fn data_frames_of_every_length_class_between_tungstenite_messages() {
        let (_r, mut w, mut client) = pair(1000).await;
        let lens = [0usize, 1, 125, 126, 65_535, 65_536, 300_000];
        let payloads: Vec<Bytes> = lens
            .iter()
            .map(|&n| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into())
            .collect();
        let sent = payloads.clone();
        let server = tokio::spawn(async move {
            for (i, p) in sent.into_iter().enumerate() {
                send_data(&mut w, p).await.unwrap();
                w.send(Message::Text(format!("after {i}").into())).await.unwrap();
            }
            w
        });
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(client.next().await.unwrap().unwrap(), Message::Binary(p.clone()));
            assert_eq!(
                client.next().await.unwrap().unwrap(),
                Message::Text(format!("after {i}").into())
            );
        }
        server.await.unwrap();
    }

    /// A transport that, like a TLS stream, takes every write into its own buffer and sends
    /// it only when flushed.
    struct FlushToSend {
        out: DuplexStream,
        held: Vec<u8>,
    }

    impl AsyncRead for FlushToSend {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.out).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for FlushToSend {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            let me = &mut *self;
            while !me.held.is_empty() {
                let n = std::task::ready!(Pin::new(&mut me.out).poll_write(cx, &me.held))?;
                me.held.drain(..n);
            }
            Pin::new(&mut me.out).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    /// A data frame reaches the client with nothing sent after it, also through a transport
    /// that holds writes until flushed (a TLS stream whose socket would block).
    #[tokio::test]
    async fn a_data_frame_is_flushed_through_a_buffering_transport() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let io = FrameIo::new(FlushToSend {
            out: a,
            held: Vec::new(),
        });
        let server = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (_r, mut w) = split(server);
        let mut data = Some(Bytes::from_static(b"the last bytes of a response"));
        std::future::poll_fn(|cx| Pin::new(&mut w).poll_data(cx, &mut data))
            .await
            .unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), client.next()).await;
        assert!(
            matches!(&got, Ok(Some(Ok(Message::Binary(b)))) if b.as_ref() == b"the last bytes of a response"),
            "{got:?}"
        );
    }

    /// Once the client's close was read, data frames are refused (RFC 6455 §5.5.1), while
    /// tungstenite answers the close.
    #[tokio::test]
    async fn no_data_frame_after_a_close() {
        let (mut r, mut w, mut client) = pair(64 * 1024).await;
        client.send(Message::Close(None)).await.unwrap();
        assert!(matches!(r.next().await, Some(Ok(Message::Close(_)))));
        let refused = send_data(&mut w, Bytes::from_static(b"late")).await;
        assert!(
            matches!(refused, Err(WsError::Protocol(ProtocolError::SendAfterClosing))),
            "{refused:?}"
        );
        // The close reply goes out on the next flush; nothing follows it.
        let _ = w.flush().await;
        assert!(matches!(client.next().await, Some(Ok(Message::Close(_)))));
        // The server's end of the pipe closes with the session.
        drop((r, w));
        assert!(client.next().await.is_none());
    }
}
