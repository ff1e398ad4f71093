//! lwtcp HOST PORT: stdin to a TCP connection through /dev/lwnet, the
//! connection to stdout, binary-safe.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use lwguest::net::{connect_reason, Conn};
use lwguest::{errln, sys};

#[cfg(not(test))]
lwguest::entry!(run);

const USAGE: &str = "\
Usage: lwtcp [-N] [--tls] [-w SECONDS] HOST PORT

Connects to HOST:PORT through the host's proxy (/dev/lwnet). Standard input
goes to the connection and the connection to standard output, byte for byte.
When standard input ends, lwtcp keeps reading until the remote side closes.

Options:
  -N            half-close after standard input ends (the remote sees EOF)
  --tls         the proxy speaks TLS to HOST (for HTTPS and the like)
  -w SECONDS    give up connecting after SECONDS (default: the host's limit)
  -h, --help    this text

Exit status: 0 done, 1 usage error, 2 could not connect (reason printed:
refused by policy, name not found, connection refused, timed out),
3 the connection failed after it was made.";

#[derive(Debug, PartialEq, Eq)]
struct Options {
    host: String,
    port: u16,
    half_close: bool,
    tls: bool,
    timeout_ms: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Options),
    Help,
}

/// Parses the command line (args[0] is the program name).
fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut half_close = false;
    let mut tls = false;
    let mut timeout_ms = 0u32;
    let mut positional: Vec<&str> = Vec::new();
    let mut it = args.iter().skip(1);
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        let a = arg.as_str();
        if only_positional || !a.starts_with('-') || a == "-" {
            positional.push(a);
            continue;
        }
        match a {
            "--" => only_positional = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "-N" => half_close = true,
            "--tls" => tls = true,
            "-w" => {
                let v = it.next().ok_or("-w needs a number of seconds")?;
                timeout_ms = parse_timeout(v)?;
            }
            _ if a.starts_with("-w") => timeout_ms = parse_timeout(&a[2..])?,
            _ => return Err(alloc::format!("unknown option {a}")),
        }
    }
    match positional.as_slice() {
        [host, port] => {
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(alloc::format!("bad port {port:?} (1-65535)")),
            };
            if host.is_empty() || host.len() >= 256 {
                return Err(alloc::format!("bad host {host:?}"));
            }
            Ok(Parsed::Run(Options {
                host: String::from(*host),
                port,
                half_close,
                tls,
                timeout_ms,
            }))
        }
        _ => Err(String::from("expected HOST and PORT")),
    }
}

fn parse_timeout(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(s) if (1..=86_400).contains(&s) => Ok(s * 1000),
        _ => Err(alloc::format!("bad timeout {v:?} (seconds, 1-86400)")),
    }
}

// Reached through lwguest::entry!, which unit-test builds leave out.
#[cfg_attr(test, allow(dead_code))]
fn run(args: Vec<String>) -> i32 {
    let opts = match parse_args(&args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            lwguest::outln!("{USAGE}");
            return 0;
        }
        Err(e) => {
            errln!("lwtcp: {e}\n{USAGE}");
            return 1;
        }
    };
    let mut conn = match Conn::connect(&opts.host, opts.port, opts.tls, opts.timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            if e.errno == 0 || e.msg.contains("missing") {
                errln!("lwtcp: {e}");
            } else {
                errln!(
                    "lwtcp: cannot connect to {}:{}: {}",
                    opts.host,
                    opts.port,
                    connect_reason(e.errno)
                );
            }
            return 2;
        }
    };
    match pump(&mut conn, opts.half_close) {
        Ok(()) => 0,
        Err(msg) => {
            errln!("lwtcp: {}:{}: {msg}", opts.host, opts.port);
            3
        }
    }
}

/// The duplex copy: poll both sides, never block on one while the other waits.
fn pump(conn: &mut Conn, half_close: bool) -> Result<(), String> {
    conn.set_nonblocking()
        .map_err(|e| alloc::format!("set non-blocking: {}", sys::strerror(e)))?;
    let mut inbuf = alloc::vec![0u8; 65536];
    let mut netbuf = alloc::vec![0u8; 65536];
    // Bytes read from stdin not yet accepted by the connection.
    let (mut pend_start, mut pend_end) = (0usize, 0usize);
    let mut stdin_open = true;
    let mut shut_done = false;
    // The last read filled netbuf and nothing else is watched (stdin closed,
    // nothing pending): read again without a poll, one system call less per
    // buffer on a download; EAGAIN goes back to polling.
    let mut read_again = false;
    loop {
        let pending = pend_end > pend_start;
        if !stdin_open && !pending && half_close && !shut_done {
            conn.shutdown()
                .map_err(|e| alloc::format!("half-close: {}", sys::strerror(e)))?;
            shut_done = true;
        }
        let mut fds = [
            sys::pollfd {
                fd: conn.raw_fd(),
                events: sys::POLLIN | if pending { sys::POLLOUT } else { 0 },
                revents: 0,
            },
            // A negative fd is ignored by poll: stdin is only watched while
            // there is room to take more of it.
            sys::pollfd {
                fd: if stdin_open && !pending { 0 } else { -1 },
                events: sys::POLLIN,
                revents: 0,
            },
        ];
        let net = if read_again {
            sys::POLLIN
        } else {
            // SAFETY: two valid pollfds.
            let r = unsafe { sys::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                let e = sys::errno();
                if e == sys::EINTR {
                    continue;
                }
                return Err(alloc::format!("poll: {}", sys::strerror(e)));
            }
            fds[0].revents
        };
        read_again = false;
        if net & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0 {
            match conn.read(&mut netbuf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    read_again = n == netbuf.len() && !stdin_open && !pending;
                    if !lwguest::rt::write_all_fd(1, &netbuf[..n]) {
                        return Err(alloc::format!(
                            "write to standard output: {}",
                            sys::strerror(sys::errno())
                        ));
                    }
                }
                Err(sys::EAGAIN) => {}
                Err(e) => return Err(alloc::format!("connection lost: {}", sys::strerror(e))),
            }
        }
        if pending && net & (sys::POLLOUT | sys::POLLERR) != 0 {
            match conn.write(&inbuf[pend_start..pend_end]) {
                Ok(n) => pend_start += n,
                Err(sys::EAGAIN) | Err(sys::EINTR) => {}
                Err(e) => return Err(alloc::format!("send: {}", sys::strerror(e))),
            }
        }
        if fds[1].revents & (sys::POLLIN | sys::POLLHUP | sys::POLLERR | sys::POLLNVAL) != 0 {
            // SAFETY: inbuf is valid for its length.
            let n = unsafe { sys::read(0, inbuf.as_mut_ptr(), inbuf.len()) };
            if n > 0 {
                pend_start = 0;
                pend_end = n as usize;
            } else if n == 0 || fds[1].revents & sys::POLLNVAL != 0 {
                stdin_open = false;
            } else {
                let e = sys::errno();
                if e != sys::EINTR && e != sys::EAGAIN {
                    stdin_open = false;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        core::iter::once("lwtcp")
            .chain(list.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn parses_options_and_positionals() {
        let p = parse_args(&args(&["-N", "--tls", "-w", "5", "example.com", "443"])).unwrap();
        assert_eq!(
            p,
            Parsed::Run(Options {
                host: "example.com".into(),
                port: 443,
                half_close: true,
                tls: true,
                timeout_ms: 5000
            })
        );
        let p = parse_args(&args(&["-w3", "h", "80"])).unwrap();
        assert!(matches!(p, Parsed::Run(Options { timeout_ms: 3000, .. })));
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), Parsed::Help);
    }

    #[test]
    fn rejects_bad_usage() {
        for bad in [
            &["h"][..],
            &["h", "0"],
            &["h", "65536"],
            &["h", "x"],
            &["-w", "0", "h", "80"],
            &["-w"],
            &["--bogus", "h", "80"],
            &["a", "b", "c"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn connect_reasons_name_the_cause() {
        assert_eq!(connect_reason(sys::EACCES), "refused by policy");
        assert!(connect_reason(sys::EHOSTUNREACH).contains("name not found"));
        assert_eq!(connect_reason(sys::ECONNREFUSED), "connection refused");
        assert_eq!(connect_reason(sys::ETIMEDOUT), "timed out");
    }
}
