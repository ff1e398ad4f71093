//! Wait/notify on a 32-bit word of the shared region: `futex` natively (the
//! shared kind, because the other side may be another process, e.g.
//! user-mode Linux), `memory.atomic.wait32`/`notify` on wasm32.
//!
//! On wasm32 the instructions are reached either through the nightly-only
//! `core::arch::wasm32` intrinsics (feature `wasm-intrinsics`) or, on a
//! stable compiler, through two imports from module `lwhost` that the
//! embedder implements with `Atomics.wait`/`Atomics.notify`:
//! `atomic_wait32(ptr: i32, expected: i32, timeout_ns: i64) -> i32` (0 woken,
//! 1 not-equal, 2 timed out) and `atomic_notify(ptr: i32, count: i32) -> i32`.

use core::sync::atomic::AtomicU32;
use core::time::Duration;

/// Why [`wait`] returned. Callers re-check the word in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Woken by a notify (or spuriously).
    Woken,
    /// The word did not hold the expected value.
    Changed,
    /// The timeout elapsed.
    TimedOut,
}

/// Sleeps while `word == expected`, at most `timeout` (None = forever).
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    imp::wait(word, expected, timeout)
}

/// Wakes up to `count` waiters on `word`; returns how many were woken.
pub fn wake(word: &AtomicU32, count: u32) -> u32 {
    imp::wake(word, count)
}

/// Wakes every waiter on `word`.
pub fn wake_all(word: &AtomicU32) -> u32 {
    imp::wake(word, i32::MAX as u32)
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Wake;
    use core::sync::atomic::AtomicU32;
    use core::time::Duration;
    use rustix::io::Errno;
    use rustix::thread::futex;

    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        let ts = timeout.map(|t| futex::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: t.subsec_nanos().into(),
        });
        // Flags::empty(): a shared futex, keyed by the page, so it works
        // across processes that map the same memfd.
        match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
            Ok(()) => Wake::Woken,
            Err(Errno::AGAIN) => Wake::Changed,
            Err(Errno::TIMEDOUT) => Wake::TimedOut,
            Err(_) => Wake::Woken, // EINTR and the like: the caller re-checks
        }
    }

    pub fn wake(word: &AtomicU32, count: u32) -> u32 {
        futex::wake(word, futex::Flags::empty(), count).map_or(0, |n| n as u32)
    }
}

#[cfg(all(target_arch = "wasm32", feature = "wasm-intrinsics"))]
mod imp {
    use super::Wake;
    use core::arch::wasm32;
    use core::sync::atomic::AtomicU32;
    use core::time::Duration;

    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        let ns = timeout.map_or(-1, |t| t.as_nanos().min(i64::MAX as u128) as i64);
        // SAFETY: the pointer comes from a live reference to an aligned word.
        match unsafe { wasm32::memory_atomic_wait32(word.as_ptr().cast(), expected as i32, ns) } {
            0 => Wake::Woken,
            1 => Wake::Changed,
            _ => Wake::TimedOut,
        }
    }

    pub fn wake(word: &AtomicU32, count: u32) -> u32 {
        // SAFETY: as above.
        unsafe { wasm32::memory_atomic_notify(word.as_ptr().cast(), count) }
    }
}

#[cfg(all(target_arch = "wasm32", not(feature = "wasm-intrinsics")))]
mod imp {
    use super::Wake;
    use core::sync::atomic::AtomicU32;
    use core::time::Duration;

    #[link(wasm_import_module = "lwhost")]
    extern "C" {
        fn atomic_wait32(ptr: *const u32, expected: i32, timeout_ns: i64) -> i32;
        fn atomic_notify(ptr: *const u32, count: i32) -> i32;
    }

    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        let ns = timeout.map_or(-1, |t| t.as_nanos().min(i64::MAX as u128) as i64);
        // SAFETY: the import only reads the word at a valid, aligned address.
        match unsafe { atomic_wait32(word.as_ptr(), expected as i32, ns) } {
            0 => Wake::Woken,
            1 => Wake::Changed,
            _ => Wake::TimedOut,
        }
    }

    pub fn wake(word: &AtomicU32, count: u32) -> u32 {
        let count = count.min(i32::MAX as u32) as i32;
        // SAFETY: as above.
        unsafe { atomic_notify(word.as_ptr(), count) }.max(0) as u32
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_returns_at_once_when_the_word_differs() {
        let w = AtomicU32::new(5);
        assert_eq!(wait(&w, 4, Some(Duration::from_secs(5))), Wake::Changed);
    }

    #[test]
    fn wait_times_out() {
        let w = AtomicU32::new(0);
        let t = Instant::now();
        assert_eq!(wait(&w, 0, Some(Duration::from_millis(20))), Wake::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn wake_releases_a_waiter() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let th = std::thread::spawn(move || {
            while w2.load(Ordering::SeqCst) == 0 {
                wait(&w2, 0, Some(Duration::from_secs(10)));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::SeqCst);
        wake_all(&w);
        th.join().expect("waiter thread");
    }
}
