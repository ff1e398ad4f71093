//! The real `lwproxy` binary on loopback: start it, wait for its ready line, read its address.
//!
//! lwproxy prints one line on stdout once its listener is bound:
//! `lwproxy: listening on ADDR (ws|wss)` (proxy/src/main.rs); with `--listen 127.0.0.1:0` that
//! is the only way to learn the port.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What lwproxy's ready line says before the address.
pub const READY: &str = "listening on ";

/// The flags that switch off lwproxy's per-identity rate and concurrency limits (0 = none), so
/// they never get in a test's or a benchmark's way.
pub const NO_LIMITS: [&str; 6] = [
    "--bytes-per-min",
    "0",
    "--conns-per-min",
    "0",
    "--max-concurrent",
    "0",
];

/// An lwproxy command line for tests and benchmarks: `bin --listen LISTEN`, every loopback
/// port admitted (`--allow 127.0.0.1/32 --ports 1-65535`), [`NO_LIMITS`], text logs, stderr
/// discarded. Add `--no-auth` or a `JWT_SECRET`, then [`Proxy::spawn`] it.
pub fn loopback_command(bin: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--listen",
        listen,
        "--allow",
        "127.0.0.1/32",
        "--ports",
        "1-65535",
    ])
    .args(NO_LIMITS)
    .args(["--log-format", "text"])
    .stderr(Stdio::null());
    cmd
}

/// The address in a ready line (`... listening on ADDR ...`), if it is one.
pub fn ready_addr(line: &str) -> Option<SocketAddr> {
    line.split(READY).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// A running lwproxy; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    /// Where it listens (from its ready line).
    pub addr: SocketAddr,
}

impl Proxy {
    /// The lwproxy of this workspace ([`crate::cargo_bin`]).
    pub fn command() -> Result<Command> {
        Ok(Command::new(crate::cargo_bin("lwproxy", "lwproxy")?))
    }

    /// Runs `cmd` (an lwproxy command line, `--listen` included; stdin and stderr as the caller
    /// set them, stdout is taken here) and waits until it prints its ready line. Fails, with the
    /// process reaped, when it exits first. The rest of its stdout is drained by a thread so it
    /// never blocks on a full pipe.
    pub fn spawn(mut cmd: Command) -> Result<Proxy> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let stdout = child.stdout.take().context("lwproxy's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => match ready_addr(&line) {
                    Some(addr) => break addr,
                    None => continue,
                },
                _ => {
                    let _ = child.kill();
                    let status = child.wait();
                    bail!("{program} exited before listening ({status:?})");
                }
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Proxy { child, addr })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ws://ADDR/` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}/{path}", self.addr)
    }

    /// Kills (SIGKILL) and reaps it; later calls do nothing.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).context("lwproxy's pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).context("SIGTERM to lwproxy")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("lwproxy did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS for {pid}"))
}

/// CPU time, in nanoseconds, that process `pid`'s live threads have run so far, and with
/// `children` also those of the processes it forked (recursively, those alive now): the sum of
/// the first field of `/proc/PID/task/TID/schedstat` (the scheduler's run time, nanosecond
/// resolution, unlike the clock ticks of `/proc/PID/stat`). A thread or child that has ended
/// is no longer counted, so a difference of two readings is only right when the threads that
/// did the work live through both (a relay's long-lived threads; socat's per-connection child
/// while its connection is open); for this process, whose threads come and go, use
/// [`own_cpu_ns`]. Errors: `pid` is gone.
pub fn cpu_ns(pid: u32, children: bool) -> Result<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("reading /proc/{pid}/task"))?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let dir = task.path();
        // A thread may end between the listing and the read: it is simply not counted.
        if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if !children {
            continue;
        }
        if let Ok(list) = std::fs::read_to_string(dir.join("children")) {
            for child in list.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                total += cpu_ns(child, true).unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// CPU time, in nanoseconds, that this process has run so far, every thread counted, those
/// that have ended too (`CLOCK_PROCESS_CPUTIME_ID`, clock_gettime(2)).
pub fn own_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::ready_addr;

    #[test]
    fn own_cpu_time_counts_work() {
        let before = super::own_cpu_ns();
        // A fixed amount of work (a dependent multiply chain: about 3 cycles a step, so at
        // least 15 ms at 10 GHz), counted whatever else the machine runs.
        let mut x = 0u64;
        for _ in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = super::own_cpu_ns();
        let spent = after
            .checked_sub(before)
            .expect("the process CPU clock went back");
        assert!(spent >= 5_000_000, "{before} -> {after}");
    }

    #[test]
    fn cpu_time_of_a_process_and_of_its_forked_children() {
        use std::time::{Duration, Instant};
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let pid = busy.id();
        let first = super::cpu_ns(pid, false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut now = first;
        while now < first + 5_000_000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            now = super::cpu_ns(pid, false).unwrap();
        }
        // Read after `now`: the child's share alone is at least `now`.
        let with_children = super::cpu_ns(std::process::id(), true).unwrap();
        busy.kill().unwrap();
        busy.wait().unwrap();
        assert!(now >= first + 5_000_000, "{first} -> {now} in 20 s");
        assert!(with_children >= now, "{with_children} < {now}");
        assert!(super::cpu_ns(pid, false).is_err(), "a reaped child still read");
    }

    #[test]
    fn ready_line_address() {
        let line = "lwproxy: listening on 127.0.0.1:40123 (ws)";
        assert_eq!(ready_addr(line), Some("127.0.0.1:40123".parse().unwrap()));
        assert_eq!(
            ready_addr("lwproxy: listening on [::1]:443 (wss)"),
            Some("[::1]:443".parse().unwrap())
        );
        assert_eq!(ready_addr("lwproxy: listening on nowhere"), None);
        assert_eq!(ready_addr("starting"), None);
    }
}
