//! `/etc/lwsync.conf`: the roots lwsync saves and the only places restore
//! writes to. One absolute path per line; `#` starts a comment line; blank
//! lines are ignored. Without the file: /home, /root and /opt.

use alloc::format;
use alloc::vec::Vec;
use lwguest::fs::{self, Error, Result};

pub const PATH: &str = "/etc/lwsync.conf";
pub const DEFAULT_ROOTS: &[&str] = &["/home", "/root", "/opt"];
const MAX_CONF: usize = 64 << 10;

/// The configured roots, read from `prefix` + [`PATH`] (defaults if absent).
pub fn load(prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut path = prefix.to_vec();
    path.extend_from_slice(PATH.as_bytes());
    match fs::lstat(&path)? {
        None => Ok(DEFAULT_ROOTS.iter().map(|r| r.as_bytes().to_vec()).collect()),
        Some(_) => {
            let text = fs::read_file(&fs::show(&path), MAX_CONF)?;
            parse(&text).map_err(|e| e.context(PATH))
        }
    }
}

/// Parses the file's bytes: each root absolute, without empty, `.` or `..`
/// components, not `/` itself (that would let a snapshot write anywhere).
pub fn parse(text: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut roots = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let mut r = line;
        while r.len() > 1 && r.ends_with(b"/") {
            r = &r[..r.len() - 1];
        }
        if !crate::manifest::clean_path(r) || r == b"/" {
            return Err(Error::msg(format!(
                "line {}: {:?} is not an absolute path below / (without . or ..)",
                n + 1,
                fs::show(line)
            )));
        }
        roots.push(r.to_vec());
    }
    if roots.is_empty() {
        return Err(Error::msg("no roots configured"));
    }
    Ok(roots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roots_comments_and_bad_lines() {
        let r = parse(b"# saved trees\n/home\n\n  /srv/data/  \n/opt\n").unwrap();
        assert_eq!(
            r,
            vec![b"/home".to_vec(), b"/srv/data".to_vec(), b"/opt".to_vec()]
        );
        for bad in [
            &b"/"[..],
            b"home",
            b"/home/../etc",
            b"/a//b",
            b"# only a comment\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
