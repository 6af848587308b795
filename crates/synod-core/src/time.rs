//! Time that works the same under a virtual clock and a real one.
//!
//! [`Instant`] is a monotonic point in nanoseconds since an arbitrary origin (the boot of the
//! node, or the start of a simulation). It is a plain integer: it can be constructed from any
//! value, compared and subtracted, and never reads a clock. The executor supplies `now`.
//! [`WallClock`] is a node's idea of calendar time (Unix nanoseconds), which may be skewed
//! and may jump; it is kept a different type so that the two are never confused.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A span of time in nanoseconds. Arithmetic saturates: a span never wraps.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Duration(u64);

impl Duration {
    pub const ZERO: Duration = Duration(0);
    pub const MAX: Duration = Duration(u64::MAX);

    pub const fn from_nanos(nanos: u64) -> Duration {
        Duration(nanos)
    }
    pub const fn from_micros(micros: u64) -> Duration {
        Duration(micros.saturating_mul(1_000))
    }
    pub const fn from_millis(millis: u64) -> Duration {
        Duration(millis.saturating_mul(1_000_000))
    }
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs.saturating_mul(1_000_000_000))
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    pub const fn saturating_mul(self, factor: u64) -> Duration {
        Duration(self.0.saturating_mul(factor))
    }
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    /// Converts to the standard library's span, for the tokio executor.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }
    pub fn from_std(span: std::time::Duration) -> Duration {
        Duration(u64::try_from(span.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, other: Duration) -> Duration {
        Duration(self.0.saturating_add(other.0))
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0;
        if nanos >= 1_000_000_000 {
            write!(f, "{:.3}s", nanos as f64 / 1e9)
        } else if nanos >= 1_000_000 {
            write!(f, "{:.3}ms", nanos as f64 / 1e6)
        } else if nanos >= 1_000 {
            write!(f, "{:.3}us", nanos as f64 / 1e3)
        } else {
            write!(f, "{nanos}ns")
        }
    }
}

/// A monotonic point in time, nanoseconds since the executor's origin.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub const MAX: Instant = Instant(u64::MAX);

    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// The span since `earlier`, or zero if `earlier` is in the future.
    pub const fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
    pub const fn saturating_add(self, span: Duration) -> Instant {
        Instant(self.0.saturating_add(span.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, span: Duration) -> Instant {
        self.saturating_add(span)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, span: Duration) {
        *self = self.saturating_add(span);
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{:.6}s", self.0 as f64 / 1e9)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A node's calendar clock reading: signed nanoseconds since the Unix epoch. It can be
/// skewed against other nodes and can jump backwards; never use it to measure a span.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Debug,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct WallClock(pub i64);

impl WallClock {
    /// Signed difference `self - other` in nanoseconds.
    pub const fn offset_from(self, other: WallClock) -> i64 {
        self.0.saturating_sub(other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        // Checks that time arithmetic at the edges saturates, so a timer computed from
        // Instant::MAX or a reordered pair of instants never wraps around.
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(
            Instant::from_nanos(5) - Instant::from_nanos(9),
            Duration::ZERO
        );
        assert_eq!(Duration::MAX + Duration::from_nanos(1), Duration::MAX);
        assert_eq!(Duration::from_millis(1500).as_secs_f64(), 1.5);
    }

    #[test]
    fn durations_print_in_the_largest_fitting_unit() {
        // Checks the human-readable forms used in reports and traces.
        let table = [
            (Duration::from_nanos(12), "12ns"),
            (Duration::from_micros(3), "3.000us"),
            (Duration::from_millis(250), "250.000ms"),
            (Duration::from_secs(2), "2.000s"),
        ];
        for (span, text) in table {
            assert_eq!(span.to_string(), text);
        }
    }
}
