//! The channel between lwhost and user-mode Linux: over a unix
//! stream socket lwhost sends one message, the 4 bytes `LWH1` with
//! SCM_RIGHTS `[memfd, eventfd]`; the client maps the memfd and keeps the
//! socket open for as long as it uses the region (its EOF ends the session).
//!
//! The kernel's um backend is the real client; [`connect`] is the same
//! client in Rust, for tests, benchmarks and harnesses.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::shm::Region;

/// The greeting that carries the descriptors: `LWHOST_GREETING` of
/// include/uapi/linux/lwhost.h, without its NUL.
pub const GREETING: &[u8] = lwabi::LWHOST_GREETING
    .split_at(lwabi::LWHOST_GREETING_LEN as usize)
    .0;

/// lwhost side: sends the greeting with the region's memfd and the eventfd.
pub fn send_region(socket: BorrowedFd<'_>, memfd: BorrowedFd<'_>, eventfd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [memfd, eventfd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("control buffer too small for two descriptors"));
    }
    let sent = sendmsg(
        socket,
        &[IoSlice::new(GREETING)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != GREETING.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "greeting cut short"));
    }
    Ok(())
}

/// A connected client: the socket (keep it open), the mapped region and
/// the eventfd lwhost writes when the guest has news.
pub struct Client {
    pub socket: UnixStream,
    pub region: Arc<Region>,
    pub eventfd: OwnedFd,
}

/// Connects to lwhost at `path` and maps the region it sends.
pub fn connect(path: &Path) -> io::Result<Client> {
    let socket = UnixStream::connect(path)?;
    let mut buf = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(
        &socket,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    let got = &buf[..msg.bytes.min(buf.len())];
    if got != GREETING {
        let text = String::from_utf8_lossy(got);
        return Err(io::Error::other(format!(
            "lwhost refused the connection: {}",
            text.trim()
        )));
    }
    if fds.len() != 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected 2 descriptors, got {}", fds.len()),
        ));
    }
    let eventfd = fds.pop().ok_or_else(|| io::Error::other("no eventfd"))?;
    let memfd = fds.pop().ok_or_else(|| io::Error::other("no memfd"))?;
    let region = Region::map_fd(memfd)?;
    if !region.header_ok() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "region header does not match this build",
        ));
    }
    Ok(Client {
        socket,
        region: Arc::new(region),
        eventfd,
    })
}

impl Client {
    /// Drains the eventfd (as the um IRQ handler does); returns the count.
    pub fn drain_eventfd(&self) -> u64 {
        let mut b = [0u8; 8];
        match rustix::io::read(&self.eventfd, &mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            _ => 0,
        }
    }

    /// Whether lwhost closed its end of the socket (it exited or died).
    pub fn peer_gone(&self) -> bool {
        let mut b = [0u8; 1];
        match rustix::net::recv(&self.socket, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e != rustix::io::Errno::AGAIN && e != rustix::io::Errno::INTR,
        }
    }

    /// The eventfd, for poll(2).
    pub fn eventfd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }
}
