//! A strict, bounded JSON parser (RFC 8259) for the package index: no
//! trailing commas, no duplicate keys, a depth limit, numbers kept as text.

use crate::fs::{Error, Result};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written (validated JSON number syntax).
    Num(String),
    Str(String),
    Arr(Vec<Value>),
    /// Members in document order; keys are unique.
    Obj(Vec<(String, Value)>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// A non-negative integer without fraction or exponent.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Num(n) if n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok(),
            _ => None,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Num(_) => "a number",
            Value::Str(_) => "a string",
            Value::Arr(_) => "an array",
            Value::Obj(_) => "an object",
        }
    }
}

pub fn parse(text: &[u8]) -> Result<Value> {
    let mut p = Parser { s: text, i: 0 };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing data after the JSON value"));
    }
    Ok(v)
}

/// A container being parsed: its items so far; an object also the key of
/// the member whose value comes next.
enum Open {
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>, String),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::msg(format!("JSON: {what} at byte {}", self.i))
    }
    /// Steps over an opening bracket and the white space after it; true (and
    /// past `close` too) when the container is empty.
    fn open_is_empty(&mut self, close: u8) -> bool {
        self.i += 1;
        self.ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.i += 1;
        }
        empty
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn lit(&mut self, word: &[u8], v: Value) -> Result<Value> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("unexpected token"))
        }
    }
    /// One value. Containers are kept on an explicit stack on the heap, not
    /// by recursion, so the deepest document accepted does not grow the
    /// (8 KiB, binfmt_wasm) stack; the depth of a value is the number of
    /// containers open around it.
    fn value(&mut self) -> Result<Value> {
        let mut open: Vec<Open> = Vec::new();
        'value: loop {
            if open.len() > MAX_DEPTH {
                return Err(self.err("nested too deeply"));
            }
            let mut v = match self.peek() {
                None => return Err(self.err("unexpected end")),
                Some(b'n') => self.lit(b"null", Value::Null)?,
                Some(b't') => self.lit(b"true", Value::Bool(true))?,
                Some(b'f') => self.lit(b"false", Value::Bool(false))?,
                Some(b'"') => Value::Str(self.string()?),
                Some(b'[') => {
                    if self.open_is_empty(b']') {
                        Value::Arr(Vec::new())
                    } else {
                        open.push(Open::Arr(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'{') => {
                    if self.open_is_empty(b'}') {
                        Value::Obj(Vec::new())
                    } else {
                        let k = self.key(&[])?;
                        open.push(Open::Obj(Vec::new(), k));
                        continue 'value;
                    }
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.err("unexpected character")),
            };
            // `v` is complete: add it to the innermost open container,
            // closing every container that ends here.
            loop {
                match open.last_mut() {
                    None => return Ok(v),
                    Some(Open::Arr(items)) => {
                        items.push(v);
                        self.ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                self.ws();
                                continue 'value;
                            }
                            Some(b']') => {
                                self.i += 1;
                                v = Value::Arr(core::mem::take(items));
                            }
                            _ => return Err(self.err("expected ',' or ']'")),
                        }
                    }
                    Some(Open::Obj(members, key)) => {
                        members.push((core::mem::take(key), v));
                        self.ws();
                        match self.peek() {
                            Some(b',') => {
                                self.i += 1;
                                *key = self.key(members)?;
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.i += 1;
                                v = Value::Obj(core::mem::take(members));
                            }
                            _ => return Err(self.err("expected ',' or '}'")),
                        }
                    }
                }
                open.pop();
            }
        }
    }
    /// A member's key and the `:` after it (whitespace around both
    /// skipped); refused if `members` already has it.
    fn key(&mut self, members: &[(String, Value)]) -> Result<String> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a key"));
        }
        let k = self.string()?;
        if members.iter().any(|(m, _)| *m == k) {
            return Err(self.err(&format!("duplicate key {k:?}")));
        }
        self.ws();
        if self.peek() != Some(b':') {
            return Err(self.err("expected ':'"));
        }
        self.i += 1;
        self.ws();
        Ok(k)
    }
    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }
    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(self.err("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("bad number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("bad number"));
            }
        }
        let text = core::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("bad number"))?;
        Ok(Value::Num(String::from(text)))
    }
    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let t = core::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err("bad \\u escape"));
        }
        self.i += 4;
        u32::from_str_radix(t, 16).map_err(|_| self.err("bad \\u escape"))
    }
    fn string(&mut self) -> Result<String> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.err("lone surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("bad surrogate pair"));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else if (0xdc00..0xe000).contains(&hi) {
                                return Err(self.err("lone surrogate"));
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("bad code point"))?
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in string")),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not valid UTF-8"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents() {
        let v = parse(br#" {"a": [1, -2.5e3, true, null, "x\u00e9\ud83d\ude00\n"], "b": {}} "#).unwrap();
        let a = match v.get("a") {
            Some(Value::Arr(a)) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(a[0].as_u64(), Some(1));
        assert_eq!(a[1].as_u64(), None);
        assert_eq!(a[4].as_str(), Some("x\u{e9}\u{1f600}\n"));
        assert_eq!(v.get("b"), Some(&Value::Obj(Vec::new())));
    }

    #[test]
    fn depth_limit_and_error_positions() {
        // 32 levels around a value are accepted, 33 are not (the value inside counts).
        let ok = "[".repeat(32) + "0" + &"]".repeat(32);
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = "[".repeat(33) + "0" + &"]".repeat(33);
        assert_eq!(
            parse(deep.as_bytes()).unwrap_err().to_string(),
            "JSON: nested too deeply at byte 33"
        );
        let v = parse(br#"[[1, {"a": [[]], "b": {}}], {"c": {"d": null}}]"#).unwrap();
        let Value::Arr(top) = &v else { panic!("{v:?}") };
        assert_eq!(top.len(), 2);
        assert_eq!(top[1].get("c").and_then(|c| c.get("d")), Some(&Value::Null));
        for (bad, msg) in [
            (&b"[1 2]"[..], "JSON: expected ',' or ']' at byte 3"),
            (b"{\"a\" 1}", "JSON: expected ':' at byte 5"),
            (b"{\"a\":1 \"b\":2}", "JSON: expected ',' or '}' at byte 7"),
            (b"{\"a\":1, 2}", "JSON: expected a key at byte 8"),
            (
                b"{\"a\":{\"b\":1,\"b\":2}}",
                "JSON: duplicate key \"b\" at byte 15",
            ),
            (b"[[", "JSON: unexpected end at byte 2"),
        ] {
            assert_eq!(
                parse(bad).unwrap_err().to_string(),
                msg,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn refuses_hostile_documents() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        for bad in [
            &b""[..],
            b"{",
            b"[1,]",
            b"{\"a\":1,}",
            b"{\"a\":1,\"a\":2}",
            b"01",
            b"1.",
            b"-",
            b"\"abc",
            b"\"a\x01\"",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\x\"",
            b"\"\xff\"",
            b"nul",
            b"{} {}",
            b"{'a':1}",
            deep.as_bytes(),
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
