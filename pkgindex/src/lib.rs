//! The lwpkg package index format, the rules both sides must agree on: the guest's `lwpkg`
//! (through `lwguest::index`) reads indexes with them and the registry's `lwpkg-index` writes
//! them. `no_std` + `alloc`, so the guest tools can use it.
//!
//! The index document: `{"format": FORMAT, "serial": N, "expires": "YYYY-MM-DDTHH:MM:SSZ",
//! "packages": {NAME: ENTRY or [ENTRY, ...]}}`, ENTRY being `{"version", "description", "url",
//! "size", "sha256" (64 hex digits), "arch" (one of [`ARCHES`]), "depends": [NAME...], "bin"}`.
//! It is signed by a detached ed25519 signature over its exact bytes. Key and signature files
//! are hex text ([`hex_payload`]).
#![no_std]

extern crate alloc;

use alloc::string::String;

/// The `format` number of the index document this code reads and writes.
pub const FORMAT: u64 = 1;

/// The architectures a package may be built for.
pub const ARCHES: &[&str] = &["wasm32", "x86_64"];

/// Longest name, version or command (bytes).
pub const MAX_WORD: usize = 64;

/// 1 to [`MAX_WORD`] bytes, starting with a letter or digit, each byte in `extra` or accepted by
/// `class`. Package names, versions and commands become path components: keep them plain.
fn plain_word(s: &str, class: fn(u8) -> bool, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_WORD
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| class(b) || extra.contains(&b))
}

fn lower_or_digit(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A package name: lower-case letters, digits and `._+-`, starting with a letter or digit.
pub fn valid_name(s: &str) -> bool {
    plain_word(s, lower_or_digit, b"._+-")
}

/// A version: letters, digits and `._+~-`, starting with a letter or digit.
pub fn valid_version(s: &str) -> bool {
    plain_word(s, |b| b.is_ascii_alphanumeric(), b"._+~-")
}

/// A command name (a file in /usr/local/bin): letters, digits and `._+-`.
pub fn valid_bin(s: &str) -> bool {
    plain_word(s, |b| b.is_ascii_alphanumeric(), b"._+-")
}

/// Whether `s` is one of [`ARCHES`].
pub fn valid_arch(s: &str) -> bool {
    ARCHES.contains(&s)
}

/// Lower-case hex of `bytes` (how the index spells `sha256`, keys and signatures).
pub fn hex_encode(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Decodes exactly `N` bytes from `2 * N` hex digits (either case); `None` otherwise.
pub fn hex_decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The hex payload of a key or signature file: its lines, trimmed, without `#` comment
/// lines. A public key file holds 64 hex digits (32 bytes), a secret key file (the
/// ed25519 seed) 64, a signature file 128 (64 bytes).
pub fn hex_payload(text: &str) -> String {
    let mut s = String::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('#') {
            s.push_str(line);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_commands() {
        for ok in ["hello", "hello-fancy", "lib.z+2", "0ad"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Hello", "-x", ".x", "../x", "a/b", "a b", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&"a".repeat(64)));
        assert!(valid_version("1.0~rc1+b2-3"));
        assert!(valid_version("1.0A"));
        for bad in ["", "~1", "1/2", "1 2", "1..\0"] {
            assert!(!valid_version(bad), "{bad}");
        }
        assert!(valid_bin("Tool"));
        assert!(!valid_bin("a/b"));
        assert!(!valid_bin("~x"));
        assert!(valid_arch("wasm32") && valid_arch("x86_64") && !valid_arch("arm"));
    }

    #[test]
    fn hex_round_trip_and_hostile_input() {
        let bytes = [0u8, 1, 0xab, 0xff];
        let h = hex_encode(&bytes);
        assert_eq!(h, "0001abff");
        assert_eq!(hex_decode::<4>(&h), Some(bytes));
        assert_eq!(hex_decode::<4>("0001ABFF"), Some(bytes));
        assert_eq!(hex_decode::<4>("0001abf"), None);
        assert_eq!(hex_decode::<4>("0001abfg"), None);
        assert_eq!(hex_decode::<4>("+001abff"), None);
        // Multi-byte characters never decode (and never panic).
        assert_eq!(hex_decode::<2>("ééé"), None);
    }

    #[test]
    fn key_files_skip_comments_and_space() {
        assert_eq!(hex_payload("# a key\n  abcd \n\t# more\nef\n"), "abcdef");
        assert_eq!(hex_payload(""), "");
    }
}
