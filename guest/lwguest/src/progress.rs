//! A one-line progress bar on a terminal; silent otherwise.

use alloc::format;
use alloc::string::String;

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    last_ms: u64,
    enabled: bool,
    drawn: bool,
}

impl Progress {
    /// Draws on stderr only when stderr is a terminal.
    pub fn new(label: &str) -> Self {
        Progress {
            label: String::from(label),
            total: None,
            done: 0,
            last_ms: 0,
            enabled: crate::fs::isatty(2),
            drawn: false,
        }
    }

    pub fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled {
            return;
        }
        let now = crate::fs::now_ms();
        if now.saturating_sub(self.last_ms) >= 100 || self.total == Some(self.done) {
            self.last_ms = now;
            self.draw();
        }
    }

    fn draw(&mut self) {
        let line = render(&self.label, self.done, self.total);
        crate::rt::print_fd(2, format_args!("\r{line}"));
        self.drawn = true;
    }

    /// Ends the line if anything was drawn.
    pub fn finish(&mut self) {
        if self.drawn {
            self.draw();
            crate::rt::write_all_fd(2, b"\n");
            self.drawn = false;
        }
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
    #[test]
    fn renders() {
        assert_eq!(
            super::render("x", 512, Some(1024)),
            "x [##########..........]  50%  0/1 KiB"
        );
        assert_eq!(super::render("x", 2048, None), "x 2 KiB");
    }
}
