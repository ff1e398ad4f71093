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
//!
//! Reading stays tungstenite's, but a poll that could only find the socket empty is answered
//! here ([`ReadGate`]): tungstenite 0.28 zero-fills the free part of its read buffer (up to
//! `read_buffer_size`) before every read, also before one that finds nothing, and the session
//! polls for the next message right after each one, so a 64-byte echo paid two fills of up
//! to 16 KiB, one of them for nothing. [`FrameIo`] follows where the client's frames end in
//! the bytes tungstenite has read (headers only: nothing is decoded or validated here), and
//! when tungstenite holds no complete frame, has no reply waiting to be written, and the
//! socket has nothing to read, the poll returns Pending without entering tungstenite; every
//! byte and every decision on it is still tungstenite's.

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
/// The longest header of a masked frame (a client's): 2 bytes, a 64-bit length, the mask key.
const MAX_MASKED_HEADER: usize = 14;

/// A transport that can tell whether it has something to read without reading it.
pub trait ReadReady {
    /// `Some(Pending)` when nothing can be read now (the task is woken when something can),
    /// `Some(Ready)` when a read may find bytes (or an error or the end); `None` when the
    /// transport cannot tell, e.g. a TLS stream, which may hold decrypted bytes read ahead.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Option<Poll<std::io::Result<()>>> {
        let _ = cx;
        None
    }
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Option<Poll<std::io::Result<()>>> {
        Some(tokio::net::TcpStream::poll_read_ready(self, cx))
    }
}

impl ReadReady for tokio::io::DuplexStream {}

/// Where the client's frames end in the byte stream (RFC 6455 §5.2): reads headers across any
/// split of the bytes and skips payloads. It only counts; tungstenite decodes and validates.
#[derive(Default)]
struct FrameEnds {
    head: [u8; MAX_MASKED_HEADER],
    /// Header bytes of the current frame gathered so far.
    have: usize,
    /// Payload bytes of the current frame still to come, once its header is whole.
    payload_left: Option<u64>,
    /// The current frame ends a message: a control frame, or a data frame with FIN set.
    ends_message: bool,
}

impl FrameEnds {
    /// Follows `data`, calling `frame(ends_message)` at the end of each frame. False when a
    /// header is one tungstenite refuses (reserved bits or opcode, an unmasked frame, a bad
    /// control frame, an oversized length): the stream cannot be followed further.
    fn feed(&mut self, mut data: &[u8], mut frame: impl FnMut(bool)) -> bool {
        loop {
            if let Some(left) = self.payload_left {
                let n = left.min(data.len() as u64);
                data = &data[n as usize..];
                if left > n {
                    self.payload_left = Some(left - n);
                    return true;
                }
                self.payload_left = None;
                self.have = 0;
                frame(self.ends_message);
                continue;
            }
            let Some((&byte, rest)) = data.split_first() else {
                return true;
            };
            self.head[self.have] = byte;
            self.have += 1;
            data = rest;
            if self.have < 2 {
                continue;
            }
            let (b0, b1) = (self.head[0], self.head[1]);
            let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0f);
            let (masked, len7) = (b1 & 0x80 != 0, b1 & 0x7f);
            let control = opcode & 0x08 != 0;
            if self.have == 2
                && (rsv != 0
                    || !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xa)
                    || !masked
                    || (control && (!fin || len7 > 125)))
            {
                return false;
            }
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if self.have < 2 + ext + 4 {
                continue;
            }
            let len = match ext {
                0 => u64::from(len7),
                2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                _ => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.head[2..10]);
                    u64::from_be_bytes(b)
                }
            };
            if len >> 63 != 0 {
                return false;
            }
            self.ends_message = control || fin;
            self.payload_left = Some(len);
        }
    }
}

/// Whether a poll of the session's reader may skip tungstenite ([`Reader`]): it may when
/// tungstenite holds no complete frame, left no reply unwritten, and the socket is empty.
struct ReadGate {
    ends: FrameEnds,
    /// False once the frames could not be followed (the bytes are tungstenite's to refuse, so
    /// the session is about to end) or tungstenite did what the counts did not foresee: every
    /// poll then goes through tungstenite, as without the gate.
    on: bool,
    /// Complete frames tungstenite has read that end a message (each becomes a message it
    /// returns: text, binary, ping, pong or close) and that it has not returned yet.
    unreturned: usize,
    /// Complete frames read after the last of those (fragments of a message not yet ended).
    tail: usize,
    /// During the current poll through tungstenite: a read found the socket empty.
    read_blocked: bool,
    /// tungstenite may hold a reply to write (a pong, a close reply), which it writes at the
    /// start of its next read: the last poll through it returned a ping (whose pong it queued
    /// then), or a write in it had to wait.
    reply_due: bool,
}

impl Default for ReadGate {
    fn default() -> Self {
        ReadGate {
            ends: FrameEnds::default(),
            on: true,
            unreturned: 0,
            tail: 0,
            read_blocked: false,
            reply_due: false,
        }
    }
}

impl ReadGate {
    /// Bytes tungstenite read (or was handed at the start).
    fn read(&mut self, data: &[u8]) {
        if !self.on {
            return;
        }
        let (unreturned, tail) = (&mut self.unreturned, &mut self.tail);
        let followed = self.ends.feed(data, |ends_message| {
            if ends_message {
                *unreturned += 1;
                *tail = 0;
            } else {
                *tail += 1;
            }
        });
        if !followed {
            self.on = false;
        }
    }

    /// Nothing for tungstenite to do without new bytes from the socket.
    fn idle(&self) -> bool {
        self.on && self.unreturned == 0 && self.tail == 0 && !self.reply_due
    }

    /// A poll through tungstenite starts.
    fn start_poll(&mut self) {
        self.read_blocked = false;
        self.reply_due = false;
    }

    /// A poll through tungstenite returned a message: the frames up to the end of the first
    /// unreturned one are consumed. A ping leaves its pong queued in tungstenite.
    fn returned(&mut self, msg: &Message) {
        if matches!(msg, Message::Ping(_)) {
            self.reply_due = true;
        }
        if self.unreturned == 0 {
            self.on = false;
        } else {
            self.unreturned -= 1;
        }
    }

    /// A poll through tungstenite returned Pending: it reads only once it has no complete
    /// frame, so it consumed them all.
    fn pending(&mut self) {
        if !self.read_blocked || self.unreturned != 0 {
            self.on = false;
        }
        self.tail = 0;
    }
}

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
    /// What tungstenite has read, for [`Reader`] to skip polls that could only find nothing.
    gate: ReadGate,
}

impl<S> FrameIo<S> {
    pub fn new(inner: S) -> Self {
        FrameIo {
            inner,
            pending: None,
            waiting: Vec::new(),
            gate: ReadGate::default(),
        }
    }

    /// As [`FrameIo::new`], for a WebSocket that starts with `read_ahead`, the bytes after the
    /// handshake already read from `inner` (given to tungstenite with
    /// `WebSocketStream::from_partially_read`).
    pub fn with_read_ahead(inner: S, read_ahead: &[u8]) -> Self {
        let mut io = FrameIo::new(inner);
        io.gate.read(read_ahead);
        io
    }

    /// Notes a write that has to wait (for [`ReadGate`]).
    fn blocked<T>(&mut self, r: Poll<T>) -> Poll<T> {
        if r.is_pending() {
            self.gate.reply_due = true;
        }
        r
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
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) => me.gate.read(&buf.filled()[before..]),
            Poll::Pending => me.gate.read_blocked = true,
            Poll::Ready(Err(_)) => {}
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        me.blocked(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_write_vectored(cx, bufs),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        me.blocked(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let r = match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_flush(cx),
            other => other,
        };
        me.blocked(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let r = match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_shutdown(cx),
            other => other,
        };
        me.blocked(r)
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

/// The reading half ([`split`]): tungstenite's messages, pings answered by tungstenite. A poll
/// that tungstenite could only answer by finding the socket empty is answered here, without
/// the zero-fill of its read buffer (see the module notes).
pub struct Reader<S>(Shared<S>);

impl<S: AsyncRead + AsyncWrite + ReadReady + Unpin> Stream for Reader<S> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut link = lock(&self.0);
        let link = &mut *link;
        if !link.closed && link.ws.get_ref().gate.idle() {
            // Woken by the socket (or by nothing tungstenite waits for): the task waits on
            // the socket's readiness itself.
            if let Some(Poll::Pending) = link.ws.get_ref().inner.poll_read_ready(cx) {
                return Poll::Pending;
            }
        }
        link.ws.get_mut().gate.start_poll();
        let r = link.ws.poll_next_unpin(cx);
        let gate = &mut link.ws.get_mut().gate;
        match &r {
            Poll::Ready(Some(Ok(m))) => gate.returned(m),
            Poll::Pending => gate.pending(),
            Poll::Ready(None | Some(Err(_))) => gate.on = false,
        }
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
    use tokio::io::{AsyncWriteExt, DuplexStream};
    use tokio::net::TcpStream;
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

    async fn send_data<S: AsyncRead + AsyncWrite + Unpin>(
        w: &mut Writer<S>,
        b: Bytes,
    ) -> Result<(), WsError> {
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

    impl ReadReady for FlushToSend {}

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

    /// A frame as a client sends it: masked with `key` (RFC 6455 §5.3).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 | opcode } else { opcode }];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    /// A small deterministic generator (xorshift64) for splits and sizes.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A client stream of every kind of frame and length class, as (bytes, the messages
    /// tungstenite makes of them, whether each frame ends a message).
    fn mixed_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Message>, Vec<bool>) {
        let (mut bytes, mut msgs, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..40u32 {
            let key = i.to_be_bytes();
            let len = match rng.below(5) {
                0 => 0,
                1 => rng.below(126),
                2 => 126 + rng.below(200),
                3 => 65_535 + rng.below(3),
                _ => rng.below(5000),
            };
            let payload: Vec<u8> = (0..len).map(|j| (j * 7 + i as usize) as u8).collect();
            match rng.below(4) {
                0 => {
                    bytes.extend(client_frame(true, 0x2, &payload, key));
                    msgs.push(Message::Binary(payload.into()));
                    ends.push(true);
                }
                1 => {
                    // A text message in three fragments, with a ping between them (§5.4).
                    let text = "x".repeat(len);
                    let (a, b) = text.split_at(len / 3);
                    let (b, c) = b.split_at(b.len() / 2);
                    bytes.extend(client_frame(false, 0x1, a.as_bytes(), key));
                    bytes.extend(client_frame(false, 0x0, b.as_bytes(), key));
                    bytes.extend(client_frame(true, 0x9, b"p", key));
                    bytes.extend(client_frame(true, 0x0, c.as_bytes(), key));
                    msgs.push(Message::Ping(Bytes::from_static(b"p")));
                    msgs.push(Message::Text(text.into()));
                    ends.extend([false, false, true, true]);
                }
                2 => {
                    let p = &payload[..len.min(125)];
                    bytes.extend(client_frame(true, 0x9, p, key));
                    msgs.push(Message::Ping(Bytes::copy_from_slice(p)));
                    ends.push(true);
                }
                _ => {
                    let p = &payload[..len.min(125)];
                    bytes.extend(client_frame(true, 0xa, p, key));
                    msgs.push(Message::Pong(Bytes::copy_from_slice(p)));
                    ends.push(true);
                }
            }
        }
        (bytes, msgs, ends)
    }

    /// Frame ends are found whatever the split of the bytes (one at a time, random pieces,
    /// all at once), in every length class, for fragments and control frames.
    #[test]
    fn frame_ends_whatever_the_split() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20 {
            let (bytes, _, want) = mixed_stream(&mut rng);
            let mut ends = FrameEnds::default();
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = match round {
                    0 => 1,
                    1 => rest.len(),
                    _ => 1 + rng.below(300),
                }
                .min(rest.len());
                assert!(ends.feed(&rest[..n], |e| got.push(e)));
                rest = &rest[n..];
            }
            assert_eq!(got, want, "round {round}");
        }
    }

    /// Headers that tungstenite refuses stop the following (the gate then stays open).
    #[test]
    fn frame_ends_refuse_what_tungstenite_refuses() {
        let bad: [&[u8]; 7] = [
            &[0xc2, 0x80],                                        // RSV1
            &[0x83, 0x80],                                        // reserved data opcode
            &[0x8b, 0x80],                                        // reserved control opcode
            &[0x82, 0x00],                                        // not masked
            &[0x09, 0x80],                                        // fragmented ping
            &[0x89, 0xfe],                                        // ping longer than 125
            &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], // 64-bit length, top bit set
        ];
        for b in bad {
            let mut ends = FrameEnds::default();
            assert!(!ends.feed(b, |_| {}), "{b:x?}");
        }
    }

    /// A server-side link over a real TCP socket (the gate's readiness checks are live) and
    /// the client's socket.
    async fn tcp_pair() -> (Reader<TcpStream>, Writer<TcpStream>, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let ws = WebSocketStream::from_raw_socket(FrameIo::new(server), Role::Server, None).await;
        let (r, w) = split(ws);
        (r, w, client)
    }

    fn gate_on(r: &Reader<TcpStream>) -> bool {
        lock(&r.0).ws.get_ref().gate.on
    }

    /// Every message reaches the reader however the client's bytes are split in time (pieces
    /// of headers and payloads written apart, many frames in one write), so no poll the gate
    /// answers hides a frame tungstenite holds; the gate stays on throughout.
    #[tokio::test]
    async fn every_message_arrives_whatever_the_timing() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..4 {
            let (mut r, _w, mut client) = tcp_pair().await;
            let (bytes, want, _) = mixed_stream(&mut rng);
            let mut pieces = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(2000)).min(rest.len());
                pieces.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
            let writer = tokio::spawn(async move {
                for (i, p) in pieces.into_iter().enumerate() {
                    client.write_all(&p).await.unwrap();
                    if i % 3 == 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                }
                client
            });
            for (i, m) in want.iter().enumerate() {
                let got = tokio::time::timeout(std::time::Duration::from_secs(5), r.next()).await;
                assert!(matches!(&got, Ok(Some(Ok(g))) if g == m), "message {i}: {got:?}");
            }
            assert!(gate_on(&r));
            let _client = writer.await.unwrap();
        }
    }

    /// Bytes tungstenite refuses end the session's reading with an error, not a hang, after
    /// a frame that arrived in the same write.
    #[tokio::test]
    async fn hostile_frames_end_reading() {
        for bad in [
            client_frame(true, 0x3, b"reserved opcode", [1, 2, 3, 4]),
            vec![0x82, 0x03, b'a', b'b', b'c'], // not masked
            client_frame(false, 0x9, b"fragmented ping", [1, 2, 3, 4]),
            client_frame(true, 0x0, b"continuation of nothing", [1, 2, 3, 4]),
            client_frame(true, 0x1, &[0xff, 0xfe], [1, 2, 3, 4]), // not UTF-8
        ] {
            let (mut r, _w, mut client) = tcp_pair().await;
            let mut bytes = client_frame(true, 0x2, b"fine", [9, 9, 9, 9]);
            bytes.extend(&bad);
            client.write_all(&bytes).await.unwrap();
            let first = r.next().await;
            assert!(
                matches!(&first, Some(Ok(Message::Binary(b))) if b.as_ref() == b"fine"),
                "{first:?}"
            );
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), r.next()).await;
            assert!(matches!(next, Ok(Some(Err(_)))), "{bad:x?}: {next:?}");
        }
    }

    /// A pong that could not be written when its ping was read (a data frame was still going
    /// out to a client that did not read) leaves once the frame is out, although the client
    /// sends nothing more: the reader is not kept waiting on the socket while tungstenite
    /// holds a reply.
    #[tokio::test]
    async fn a_held_back_pong_leaves_after_the_data_frame() {
        let (mut r, mut w, client) = tcp_pair().await;
        let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, Some(cfg)).await;
        let big = Bytes::from(vec![7u8; 32 << 20]);
        let sent = big.clone();
        let data = tokio::spawn(async move {
            send_data(&mut w, sent).await.unwrap();
            w
        });
        // The frame is stuck in the socket buffers (the client does not read yet).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!data.is_finished());
        client
            .send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        assert!(matches!(r.next().await, Some(Ok(Message::Ping(_)))));
        let reader = tokio::spawn(async move { r.next().await.map(|m| m.is_ok()) });
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), client.next()).await;
        assert!(matches!(&got, Ok(Some(Ok(Message::Binary(b)))) if *b == big));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), client.next()).await;
        assert!(
            matches!(&got, Ok(Some(Ok(Message::Pong(p)))) if p.as_ref() == b"hi"),
            "{got:?}"
        );
        let _w = data.await.unwrap();
        reader.abort();
    }

    /// Frames that came with the handshake (handed to tungstenite as read-ahead) are counted
    /// too: they are read at once, with nothing more on the socket.
    #[tokio::test]
    async fn frames_read_with_the_handshake_are_not_waited_for() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut ahead = client_frame(true, 0x2, b"one", [1, 2, 3, 4]);
        ahead.extend(client_frame(true, 0x1, b"two", [5, 6, 7, 8]));
        ahead.extend(&client_frame(true, 0x2, b"three", [9, 9, 9, 9])[..5]);
        let io = FrameIo::with_read_ahead(server, &ahead);
        let ws = WebSocketStream::from_partially_read(io, ahead, Role::Server, None).await;
        let (mut r, _w) = split(ws);
        for want in [
            Message::Binary(Bytes::from_static(b"one")),
            Message::Text("two".into()),
        ] {
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), r.next()).await;
            assert!(matches!(&got, Ok(Some(Ok(m))) if *m == want), "{got:?}");
        }
        // The third frame is incomplete: nothing to return, and the gate stays on.
        let more = tokio::time::timeout(std::time::Duration::from_millis(100), r.next()).await;
        assert!(more.is_err(), "{more:?}");
        assert!(gate_on(&r));
    }
}
