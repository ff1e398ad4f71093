//! TCP connections through `/dev/lwnet`: one connection per open file.

use crate::fs::{Error, Fd, Result};
use crate::sys;
use alloc::format;
use lwabi::{lwnet_open_args, lwnet_open_ex, lwnet_status};

/// The device, from the uapi header.
pub fn device_path() -> &'static str {
    crate::sys::uapi_str(lwabi::LWNET_DEVICE, "/dev/lwnet")
}

/// The reason a connect failed, in the words a user expects (the errno mapping of docs/protocol.md).
pub fn connect_reason(errno: i32) -> &'static str {
    match errno {
        sys::EACCES => "refused by policy",
        sys::EHOSTUNREACH => "name not found or host unreachable",
        sys::ECONNREFUSED => "connection refused",
        sys::ETIMEDOUT => "timed out",
        sys::ECONNRESET => "connection reset (is the proxy reachable?)",
        sys::EINVAL => "invalid host or port",
        sys::EINTR => "interrupted",
        _ => sys::strerror(errno),
    }
}

/// An open connection; dropping it closes the file and so the connection.
pub struct Conn {
    fd: Fd,
}

impl Conn {
    /// Opens `/dev/lwnet` and connects (blocking; the host applies `timeout_ms`,
    /// 0 = its default). The error's errno is the reason (see [`connect_reason`]).
    pub fn connect(host: &str, port: u16, tls: bool, timeout_ms: u32) -> Result<Conn> {
        let fd = Fd::open_device(device_path())?;
        if host.is_empty() || host.len() >= lwabi::LWNET_HOST_MAX as usize || host.as_bytes().contains(&0) {
            return Err(Error::sys(format!("bad host name {host:?}"), sys::EINVAL));
        }
        if port == 0 {
            return Err(Error::sys("port 0", sys::EINVAL));
        }
        let mut ex = lwnet_open_ex {
            port: u32::from(port),
            flags: if tls { lwabi::LWNET_OPEN_TLS } else { 0 },
            timeout_ms,
            ..Default::default()
        };
        for (d, s) in ex.host.iter_mut().zip(host.as_bytes()) {
            *d = *s as _;
        }
        let r = loop {
            // SAFETY: ex is a valid lwnet_open_ex for this request number.
            let r = unsafe {
                sys::ioctl(
                    fd.0,
                    lwabi::LWNET_OPEN_EX as sys::c_ulong,
                    &mut ex as *mut lwnet_open_ex,
                )
            };
            if r >= 0 || sys::errno() != sys::EINTR {
                break r;
            }
        };
        if r < 0 {
            let e = sys::errno();
            // A driver with only the original ioctl still serves plain connections.
            if e == sys::ENOTTY && !tls && timeout_ms == 0 {
                let mut args = lwnet_open_args {
                    port: i32::from(port),
                    ..Default::default()
                };
                for (d, s) in args.host.iter_mut().zip(host.as_bytes()) {
                    *d = *s as _;
                }
                // SAFETY: args is a valid lwnet_open_args for this request number.
                let r = unsafe {
                    sys::ioctl(
                        fd.0,
                        lwabi::LWNET_OPEN as sys::c_ulong,
                        &mut args as *mut lwnet_open_args,
                    )
                };
                if r >= 0 {
                    return Ok(Conn { fd });
                }
                return Err(Error::last(format!("connect to {host}:{port}")));
            }
            return Err(Error::sys(format!("connect to {host}:{port}"), e));
        }
        Ok(Conn { fd })
    }

    /// After connecting: reads and writes return EAGAIN instead of waiting.
    pub fn set_nonblocking(&self) -> core::result::Result<(), i32> {
        self.fd.set_nonblocking()
    }

    /// One write: bytes accepted (maybe fewer than given), Err(errno).
    pub fn write(&mut self, buf: &[u8]) -> core::result::Result<usize, i32> {
        // SAFETY: buf is valid for its length.
        let n = unsafe { sys::write(self.fd.0, buf.as_ptr(), buf.len()) };
        if n < 0 {
            Err(sys::errno())
        } else {
            Ok(n as usize)
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.0
    }

    /// One read: bytes read, 0 at the end of the stream, Err(errno).
    pub fn read(&mut self, buf: &mut [u8]) -> core::result::Result<usize, i32> {
        self.fd.read(buf)
    }

    pub fn write_all(&mut self, buf: &[u8]) -> core::result::Result<(), i32> {
        self.fd.write_all(buf)
    }

    /// Half-close: the peer sees the end of our data; reading continues.
    pub fn shutdown(&mut self) -> core::result::Result<(), i32> {
        // SAFETY: LWNET_SHUTDOWN takes no argument.
        if unsafe { sys::ioctl(self.fd.0, lwabi::LWNET_SHUTDOWN as sys::c_ulong, 0usize) } == 0 {
            Ok(())
        } else {
            Err(sys::errno())
        }
    }

    /// The driver's view of the connection (state, error, byte counts).
    pub fn status(&self) -> core::result::Result<lwnet_status, i32> {
        let mut st = lwnet_status::default();
        // SAFETY: st is a valid lwnet_status for this request number.
        if unsafe {
            sys::ioctl(
                self.fd.0,
                lwabi::LWNET_STATUS as sys::c_ulong,
                &mut st as *mut lwnet_status,
            )
        } == 0
        {
            Ok(st)
        } else {
            Err(sys::errno())
        }
    }
}

impl crate::http::Source for Conn {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        Conn::read(self, buf).map_err(|e| Error::sys("read from connection", e))
    }

    /// poll(POLLIN) for up to `ms`; a signal ends the wait early (false).
    fn wait(&mut self, ms: u64) -> Result<bool> {
        let mut p = sys::pollfd {
            fd: self.fd.0,
            events: sys::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let r = unsafe { sys::poll(&mut p, 1, ms) };
        match r {
            r if r > 0 => Ok(true),
            0 => Ok(false),
            _ if sys::errno() == sys::EINTR => Ok(false),
            _ => Err(Error::last("poll on connection")),
        }
    }
}
