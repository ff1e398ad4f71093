//! Linux errno values as the kernel sees them (asm-generic numbering, the
//! same on x86_64 and wasm32), independent of the host's libc: lwabi's,
//! generated from the kernel's <asm-generic/errno.h>.

pub use lwabi::errno::{
    EACCES, EAGAIN, EBADF, EBUSY, ECONNREFUSED, ECONNRESET, EFAULT, EHOSTUNREACH, EINPROGRESS, EINVAL, EIO,
    EMFILE, ENAMETOOLONG, ENOENT, ENOSPC, ENOTCONN, EPIPE, ERANGE, ETIMEDOUT,
};

/// The largest value treated as an errno (as the kernel's MAX_ERRNO).
pub const MAX_ERRNO: i32 = 4095;
