//! Progress of long work: bars on a terminal (indicatif); off a terminal
//! (cron, the agent, systemd), a line on stderr at a steady interval —
//! bytes, rate and ETA where the work reports them, elapsed time otherwise —
//! so a log shows a long backup or restore is alive. Work that ends within
//! one interval prints nothing.
//!
//! The interval is 10 s; `KSTONE_PROGRESS_INTERVAL` (e.g. `500ms`) changes it.

use std::io::IsTerminal;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display for one piece of work.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Option<Lines>,
}

impl Progress {
    /// Work that reports bytes done of a total (`set`).
    pub fn bytes(what: &str) -> Progress {
        Progress::new(what, || {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        })
    }

    /// Work that reports nothing until it ends.
    pub fn spinner(what: &str) -> Progress {
        Progress::new(what, || {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        })
    }

    /// `bar()` on a terminal, progress lines off one.
    fn new(what: &str, bar: impl FnOnce() -> ProgressBar) -> Progress {
        if std::io::stderr().is_terminal() {
            let b = bar();
            b.set_message(what.to_string());
            return Progress {
                bar: Some(b),
                lines: None,
            };
        }
        Progress {
            bar: None,
            lines: Some(Lines::start(what)),
        }
    }

    /// `done` of `total` bytes.
    pub fn set(&self, done: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(done);
        }
        if let Some(l) = &self.lines {
            let mut s = l.shared.0.lock().unwrap_or_else(|p| p.into_inner());
            s.bytes = Some((done, total));
        }
    }

    /// The work ended (either way).
    pub fn finish(mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if let Some(l) = self.lines.take() {
            l.stop();
        }
    }
}

#[derive(Default)]
struct State {
    bytes: Option<(u64, u64)>,
    stop: bool,
}

struct Lines {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

fn interval() -> Duration {
    let default = Duration::from_secs(10);
    let Ok(s) = std::env::var("KSTONE_PROGRESS_INTERVAL") else {
        return default;
    };
    match crate::time_args::parse_duration(&s) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!(
                "warning: KSTONE_PROGRESS_INTERVAL={s:?} is not a duration above zero (e.g. 500ms, 30s); using 10s"
            );
            default
        }
    }
}

impl Lines {
    fn start(what: &str) -> Lines {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let (s, what, every) = (Arc::clone(&shared), what.to_string(), interval());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut printed = false;
            let mut g = s.0.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (next, _) =
                    s.1.wait_timeout(g, every)
                        .unwrap_or_else(|p| p.into_inner());
                g = next;
                let secs = start.elapsed().as_secs_f64();
                if g.stop {
                    if printed {
                        // Neutral: the work may have failed (its error follows).
                        eprintln!("{what}: ended after {secs:.0} s");
                    }
                    return;
                }
                eprintln!("{}", line(&what, secs, g.bytes));
                printed = true;
            }
        });
        Lines {
            shared,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `backing up: 1.2 GiB of 4.0 GiB (30%), 85.3 MiB/s, eta 34 s` or
/// `restoring: 40 s so far`.
fn line(what: &str, secs: f64, bytes: Option<(u64, u64)>) -> String {
    match bytes {
        Some((done, total)) if total > 0 && secs > 0.0 => {
            let rate = done as f64 / secs;
            let eta = if rate > 0.0 {
                format!("{:.0} s", total.saturating_sub(done) as f64 / rate)
            } else {
                "unknown".into()
            };
            format!(
                "{what}: {} of {} ({:.0}%), {}/s, eta {eta}",
                human(done as f64),
                human(total as f64),
                100.0 * done as f64 / total as f64,
                human(rate)
            )
        }
        _ => format!("{what}: {secs:.0} s so far"),
    }
}

fn human(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Run `f` with a spinner on a terminal, progress lines off one.
pub fn spin<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let p = Progress::spinner(what);
    let r = f();
    p.finish();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_bytes_rate_and_eta() {
        assert_eq!(
            line("backing up", 10.0, Some((1 << 30, 4 << 30))),
            "backing up: 1.0 GiB of 4.0 GiB (25%), 102.4 MiB/s, eta 30 s"
        );
        assert_eq!(line("restoring", 40.2, None), "restoring: 40 s so far");
        assert_eq!(line("x", 1.0, Some((0, 0))), "x: 1 s so far");
    }
}
