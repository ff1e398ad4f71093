//! The local record (`/var/lib/lwsync/state`): for every file the last
//! save or restore handled, its inode, size, mtime, ctime and the digest of
//! its chunk list. A file still matching its record is not read again.
//!
//! Restore writes it because it gives every file it writes a new ctime:
//! without it the first save after each boot would read everything. It is
//! local, kept outside the saved roots, and only ever makes lwsync skip
//! reading a file whose every stamp is unchanged; an unreadable or damaged
//! record only costs time (every file is read again).
//!
//! Text: `lwsync-state 1`, then `INO SIZE MSEC MNSEC CSEC CNSEC LIST PATH`
//! per file (PATH encoded as in the manifest).

use crate::manifest;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use lwguest::fs::{self, Error, Result};

pub const PATH: &str = "/var/lib/lwsync/state";
const HEADER: &str = "lwsync-state 1";
const MAX_STATE: usize = 64 << 20;

/// What identifies one version of a file on this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    /// sha256 (hex) of the file's chunk list.
    pub list: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    files: BTreeMap<Vec<u8>, Stamp>,
}

impl State {
    pub fn get(&self, path: &[u8]) -> Option<&Stamp> {
        self.files.get(path)
    }

    pub fn insert(&mut self, path: Vec<u8>, s: Stamp) {
        self.files.insert(path, s);
    }

    pub fn entries_mut(&mut self) -> impl Iterator<Item = (&Vec<u8>, &mut Stamp)> {
        self.files.iter_mut()
    }

    /// The record at `path`; empty when absent or unreadable.
    pub fn load(path: &[u8]) -> State {
        let Ok(p) = core::str::from_utf8(path) else {
            return State::default();
        };
        match fs::lstat(p) {
            Ok(Some(_)) => {}
            _ => return State::default(),
        }
        fs::read_file(p, MAX_STATE)
            .ok()
            .and_then(|t| State::parse(&t))
            .unwrap_or_default()
    }

    /// None when the text is not a record this lwsync wrote.
    pub fn parse(text: &[u8]) -> Option<State> {
        let text = core::str::from_utf8(text).ok()?;
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut s = State::default();
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let [ino, size, ms, mn, cs, cn, list, path] = f[..] else {
                return None;
            };
            let stamp = Stamp {
                ino: ino.parse().ok()?,
                size: size.parse().ok()?,
                mtime: (ms.parse().ok()?, mn.parse().ok()?),
                ctime: (cs.parse().ok()?, cn.parse().ok()?),
                list: String::from(list),
            };
            s.files.insert(manifest::decode(path).ok()?, stamp);
        }
        Some(s)
    }

    pub fn to_text(&self) -> String {
        let mut t = String::from(HEADER);
        t.push('\n');
        for (p, s) in &self.files {
            t.push_str(&format!(
                "{} {} {} {} {} {} {} {}\n",
                s.ino,
                s.size,
                s.mtime.0,
                s.mtime.1,
                s.ctime.0,
                s.ctime.1,
                s.list,
                manifest::encode(p)
            ));
        }
        t
    }

    /// Writes the record atomically (temporary file + rename), creating
    /// its directory.
    pub fn store(&self, path: &[u8]) -> Result<()> {
        let p = core::str::from_utf8(path).map_err(|_| Error::msg("the record's path is not UTF-8"))?;
        if let Some(dir) = fs::parent(p) {
            fs::mkdir_p(dir, 0o700)?;
        }
        fs::write_file_atomic(p, self.to_text().as_bytes(), 0o600)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_junk_is_ignored() {
        let mut s = State::default();
        s.insert(
            b"/home/caf\xe9 x".to_vec(),
            Stamp {
                ino: 7,
                size: 9,
                mtime: (-1, 5),
                ctime: (3, 999_999_999),
                list: String::from("ab"),
            },
        );
        assert_eq!(State::parse(s.to_text().as_bytes()), Some(s.clone()));
        assert_eq!(State::parse(b"lwsync-state 1\n1 2 3\n"), None);
        assert_eq!(State::parse(b"other\n"), None);
    }
}
