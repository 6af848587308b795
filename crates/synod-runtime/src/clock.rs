//! The node's clocks: a monotonic clock that counts from the node's start, and the wall clock.

use synod_core::{Duration, Instant, WallClock};

/// The longest the node loop sleeps without looking at its timers again. It bounds the
/// conversion of far deadlines (an `Instant::MAX` would overflow tokio's clock).
const SLEEP_SPAN_MAX: Duration = Duration::from_secs(3_600);

/// Reads real time for one node. `now` is nanoseconds since the node started, taken from the
/// operating system's monotonic clock, so it never goes backwards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_nanos(Duration::from_std(self.origin.elapsed()).as_nanos())
    }

    /// Calendar time in nanoseconds since the Unix epoch (negative before it).
    pub(crate) fn wall_clock() -> WallClock {
        let now = std::time::SystemTime::now();
        let nanos = match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        WallClock(nanos)
    }

    /// The tokio instant at which this clock reads `deadline`, no further than an hour out.
    pub(crate) fn to_tokio(self, deadline: Instant) -> tokio::time::Instant {
        let now = self.now();
        let wait = (deadline - now).min(SLEEP_SPAN_MAX);
        tokio::time::Instant::now() + wait.to_std()
    }
}
