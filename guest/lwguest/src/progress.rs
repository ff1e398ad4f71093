//! A one-line progress bar on a terminal; silent otherwise.
//!
//! On a terminal (stderr) the line is redrawn in place (`\r`, then the line,
//! then "erase to end of line") at most every 100 ms and only when its text
//! changed, and ends with one final line. Nothing is drawn twice and nothing
//! at all when stderr is not a terminal.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

/// Where the drawing goes: stderr in the tools, a buffer in tests.
type Out = Box<dyn FnMut(&str)>;

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    last_ms: Option<u64>,
    /// None when not drawing (not a terminal).
    out: Option<Out>,
    /// The text last drawn ("" = nothing on the line yet).
    drawn: String,
}

impl Progress {
    /// Draws on stderr only when stderr is a terminal.
    pub fn new(label: &str) -> Self {
        let out: Option<Out> = if crate::fs::isatty(2) {
            Some(Box::new(|s: &str| {
                // A terminal that fails a write loses one frame; nothing to do.
                let _ = crate::rt::write_all_fd(2, s.as_bytes());
            }))
        } else {
            None
        };
        Self::with_output(label, out)
    }

    /// A bar drawing into `out` (None = silent).
    pub fn with_output(label: &str, out: Option<Out>) -> Self {
        Progress {
            label: String::from(label),
            total: None,
            done: 0,
            last_ms: None,
            out,
            drawn: String::new(),
        }
    }

    pub fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
    }

    /// Counts `n` more bytes; `now_ms` is a monotonic clock.
    pub fn add_at(&mut self, n: u64, now_ms: u64) {
        self.done += n;
        if self.out.is_none() {
            return;
        }
        let due = self.last_ms.is_none_or(|t| now_ms.saturating_sub(t) >= 100);
        if due || self.total == Some(self.done) {
            self.last_ms = Some(now_ms);
            self.draw();
        }
    }

    pub fn add(&mut self, n: u64) {
        let now = if self.out.is_some() {
            crate::fs::now_ms()
        } else {
            0
        };
        self.add_at(n, now);
    }

    fn draw(&mut self) {
        let line = render(&self.label, self.done, self.total);
        if line == self.drawn {
            return;
        }
        if let Some(out) = self.out.as_mut() {
            out(&format!("\r{line}\x1b[K"));
        }
        self.drawn = line;
    }

    /// Ends the line (with the final state) if anything was drawn.
    pub fn finish(&mut self) {
        if self.drawn.is_empty() {
            return;
        }
        self.draw();
        if let Some(out) = self.out.as_mut() {
            out("\n");
        }
        self.drawn.clear();
        self.out = None;
    }
}

/// "label [#####.....]  50%  512/1024 KiB" (or a byte count when the total is unknown).
pub fn render(label: &str, done: u64, total: Option<u64>) -> String {
    match total {
        Some(t) if t > 0 => {
            let pct = (done.min(t) * 100 / t) as usize;
            let filled = pct / 5;
            let bar: String = (0..20).map(|i| if i < filled { '#' } else { '.' }).collect();
            format!(
                "{label} [{bar}] {pct:3}%  {}/{} KiB",
                done / 1024,
                t.div_ceil(1024)
            )
        }
        _ => format!("{label} {} KiB", done / 1024),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn renders() {
        assert_eq!(
            render("x", 512, Some(1024)),
            "x [##########..........]  50%  0/1 KiB"
        );
        assert_eq!(render("x", 2048, None), "x 2 KiB");
    }

    fn captured() -> (Rc<RefCell<String>>, Option<Out>) {
        let log: Rc<RefCell<String>> = Rc::default();
        let l = log.clone();
        (log, Some(Box::new(move |s: &str| l.borrow_mut().push_str(s))))
    }

    #[test]
    fn one_line_in_place_nothing_twice() {
        let (log, out) = captured();
        let mut p = Progress::with_output("pkg 1.0", out);
        p.set_total(Some(4096));
        p.add_at(1024, 0); // drawn: first update
        p.add_at(1024, 50); // within 100 ms: not drawn
        p.add_at(1024, 200); // drawn
        p.add_at(1024, 210); // complete: drawn at once
        p.finish(); // the final state is already on the line: only the newline
        p.finish();
        let log = log.borrow();
        assert_eq!(
            *log,
            "\rpkg 1.0 [#####...............]  25%  1/4 KiB\x1b[K\
             \rpkg 1.0 [###############.....]  75%  3/4 KiB\x1b[K\
             \rpkg 1.0 [####################] 100%  4/4 KiB\x1b[K\n"
        );
        assert_eq!(log.matches('\n').count(), 1);
    }

    #[test]
    fn silent_when_not_a_terminal() {
        let mut p = Progress::with_output("pkg", None);
        p.set_total(Some(10));
        p.add_at(10, 0);
        p.finish();
        assert_eq!(p.done, 10);
        // Nothing drawn also means no final newline.
        let (log, out) = captured();
        let mut q = Progress::with_output("pkg", out);
        q.finish();
        assert_eq!(*log.borrow(), "");
    }
}
