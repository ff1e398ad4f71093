//! HTTP/1.1 client.

use crate::fs::Result;

/// A byte stream the HTTP parser reads from (a connection, or a test script).
pub trait Source {
    /// One read: bytes read, 0 at the end of the stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;
}
