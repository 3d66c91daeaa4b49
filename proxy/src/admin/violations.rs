//! Violations in the last hour, for `GET /status`: sixty one-minute buckets,
//! so memory is fixed and old minutes fall out as the clock moves.

use std::sync::Mutex;

const BUCKETS: usize = 60;
const MINUTE_MS: u64 = 60_000;

#[derive(Debug)]
pub struct ViolationWindow {
    /// (minute since the epoch, count) per slot `minute % 60`.
    buckets: Mutex<[(u64, u64); BUCKETS]>,
}

impl Default for ViolationWindow {
    fn default() -> Self {
        ViolationWindow {
            buckets: Mutex::new([(0, 0); BUCKETS]),
        }
    }
}

impl ViolationWindow {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, at_ms: u64) {
        let minute = at_ms / MINUTE_MS;
        let mut b = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let slot = &mut b[(minute % BUCKETS as u64) as usize];
        if slot.0 == minute {
            slot.1 += 1;
        } else {
            *slot = (minute, 1);
        }
    }

    /// Violations in the 60 minutes ending at `now_ms` (the current minute
    /// included, so the window is 59 to 60 minutes long).
    pub fn last_hour(&self, now_ms: u64) -> u64 {
        let now = now_ms / MINUTE_MS;
        let b = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        b.iter()
            .filter(|(m, _)| *m <= now && now - *m < BUCKETS as u64)
            .map(|(_, c)| c)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_hour_and_forgets_older_minutes() {
        let w = ViolationWindow::new();
        let t0 = 1_700_000_000_000u64;
        assert_eq!(w.last_hour(t0), 0);
        w.add(t0);
        w.add(t0 + 1);
        w.add(t0 + 30 * MINUTE_MS);
        assert_eq!(w.last_hour(t0 + 30 * MINUTE_MS), 3);
        // an hour later the first minute has left the window
        assert_eq!(w.last_hour(t0 + 60 * MINUTE_MS), 1);
        // the slot of minute 0 is reused by minute 60, not added to
        w.add(t0 + 60 * MINUTE_MS);
        assert_eq!(w.last_hour(t0 + 60 * MINUTE_MS), 2);
        assert_eq!(w.last_hour(t0 + 200 * MINUTE_MS), 0);
    }
}
