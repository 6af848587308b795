//! The node's clocks: a monotonic clock that counts from the node's start, and the wall clock.

use std::sync::{Arc, Mutex};

use synod_core::{Duration, Instant, WallClock};

/// The longest the node loop sleeps without looking at its timers again. It bounds the
/// conversion of far deadlines (an `Instant::MAX` would overflow tokio's clock).
const SLEEP_SPAN_MAX: Duration = Duration::from_secs(3_600);

/// Reads real time for one node. `now` is nanoseconds since the node started, taken from the
/// operating system's monotonic clock, so it never goes backwards.
///
/// A node whose configuration allows clock faults carries a [`ClockFaults`]: its clocks then
/// run fast or slow by a drift rate and its wall clock is offset, as an operator or a
/// nemesis sets them at run time. Drift changes the rate, never the continuity: `now` still
/// never goes backwards.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    origin: std::time::Instant,
    faults: Option<Arc<ClockFaults>>,
}

/// The largest drift a fault may set, in parts per million (either way): the clock must keep
/// running forwards.
pub const CLOCK_DRIFT_PPM_MAX: i64 = 500_000;
/// The largest wall-clock offset a fault may set, either way.
pub const CLOCK_OFFSET_MS_MAX: i64 = 24 * 3_600 * 1_000;

/// Injected clock faults of one node: a drift of its clocks' rate and an offset of its wall
/// clock. Shared between the node's clock readers and the handle that sets them.
#[derive(Debug, Default)]
pub struct ClockFaults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct FaultState {
    drift_ppm: i64,
    offset_ns: i64,
    /// Real and faulty readings (ns since the origin) when the drift last changed.
    anchor_real_ns: u64,
    anchor_faulty_ns: u64,
    /// The last reading handed out, so rounding never makes the clock step back.
    last_ns: u64,
}

/// The clock faults in force on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockFaultSettings {
    /// How much faster (positive) or slower the node's clocks run, in parts per million.
    pub drift_ppm: i64,
    /// How far the node's wall clock is set ahead (positive) or behind, in milliseconds.
    pub offset_ms: i64,
}

impl FaultState {
    fn faulty_ns(&self, real_ns: u64) -> u64 {
        let elapsed = i128::from(real_ns.saturating_sub(self.anchor_real_ns));
        let scaled = elapsed + elapsed * i128::from(self.drift_ppm) / 1_000_000;
        let reading = i128::from(self.anchor_faulty_ns) + scaled.max(0);
        u64::try_from(reading).unwrap_or(u64::MAX).max(self.last_ns)
    }
}

impl ClockFaults {
    /// Sets the drift and offset; refuses values that would stop or reverse the clock.
    pub(crate) fn set(&self, real_ns: u64, settings: ClockFaultSettings) -> Result<(), String> {
        if settings.drift_ppm.abs() > CLOCK_DRIFT_PPM_MAX {
            return Err(format!(
                "drift_ppm {} is outside +-{CLOCK_DRIFT_PPM_MAX}",
                settings.drift_ppm
            ));
        }
        if settings.offset_ms.abs() > CLOCK_OFFSET_MS_MAX {
            return Err(format!(
                "offset_ms {} is outside +-{CLOCK_OFFSET_MS_MAX}",
                settings.offset_ms
            ));
        }
        let mut state = lock(&self.state);
        let now = state.faulty_ns(real_ns);
        state.anchor_real_ns = real_ns;
        state.anchor_faulty_ns = now;
        state.last_ns = now;
        state.drift_ppm = settings.drift_ppm;
        state.offset_ns = settings.offset_ms.saturating_mul(1_000_000);
        Ok(())
    }

    pub(crate) fn settings(&self) -> ClockFaultSettings {
        let state = lock(&self.state);
        ClockFaultSettings {
            drift_ppm: state.drift_ppm,
            offset_ms: state.offset_ns / 1_000_000,
        }
    }

    /// The faulty reading for a real one, and how far the wall clock is moved.
    fn read(&self, real_ns: u64) -> (u64, i64) {
        let mut state = lock(&self.state);
        let reading = state.faulty_ns(real_ns);
        state.last_ns = reading;
        let skew = i64::try_from(i128::from(reading) - i128::from(real_ns)).unwrap_or(0);
        (reading, state.offset_ns.saturating_add(skew))
    }
}

fn lock(mutex: &Mutex<FaultState>) -> std::sync::MutexGuard<'_, FaultState> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Clock {
    pub(crate) fn start(faults: Option<Arc<ClockFaults>>) -> Clock {
        Clock {
            origin: std::time::Instant::now(),
            faults,
        }
    }

    fn real_ns(&self) -> u64 {
        Duration::from_std(self.origin.elapsed()).as_nanos()
    }

    pub(crate) fn now(&self) -> Instant {
        let real = self.real_ns();
        match &self.faults {
            None => Instant::from_nanos(real),
            Some(faults) => Instant::from_nanos(faults.read(real).0),
        }
    }

    /// The node's wall clock: the calendar clock, moved by the injected faults if any.
    pub(crate) fn node_wall_clock(&self) -> WallClock {
        let wall = Clock::wall_clock();
        match &self.faults {
            None => wall,
            Some(faults) => WallClock(wall.0.saturating_add(faults.read(self.real_ns()).1)),
        }
    }

    /// Sets the injected faults; `Err` when this node does not allow clock faults.
    pub(crate) fn set_faults(&self, settings: ClockFaultSettings) -> Result<(), String> {
        match &self.faults {
            None => Err("clock faults are not enabled on this node".into()),
            Some(faults) => faults.set(self.real_ns(), settings),
        }
    }

    pub(crate) fn fault_settings(&self) -> Option<ClockFaultSettings> {
        self.faults.as_ref().map(|faults| faults.settings())
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
    pub(crate) fn to_tokio(&self, deadline: Instant) -> tokio::time::Instant {
        let now = self.now();
        let wait = (deadline - now).min(SLEEP_SPAN_MAX);
        // A fast clock reaches its deadlines sooner in real time, a slow one later.
        let wait = match self.fault_settings() {
            Some(settings) if settings.drift_ppm != 0 => {
                let nanos = i128::from(wait.as_nanos()) * 1_000_000
                    / (1_000_000 + i128::from(settings.drift_ppm));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
            }
            _ => wait,
        };
        tokio::time::Instant::now() + wait.to_std()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_changes_the_rate_and_the_clock_never_steps_back() {
        // Checks a faulty clock runs at 1 + ppm/1e6 of real time from the moment the drift
        // is set, keeps its reading across changes, and never goes backwards.
        let faults = ClockFaults::default();
        assert_eq!(faults.read(1_000_000).0, 1_000_000);
        let fast = ClockFaultSettings {
            drift_ppm: 100_000,
            offset_ms: 5,
        };
        faults.set(1_000_000, fast).unwrap();
        // 1 ms of real time later, the clock has run 1.1 ms.
        let (reading, wall_shift) = faults.read(2_000_000);
        assert_eq!(reading, 2_100_000);
        assert_eq!(wall_shift, 5_000_000 + 100_000);
        let slow = ClockFaultSettings {
            drift_ppm: -500_000,
            offset_ms: 0,
        };
        faults.set(2_000_000, slow).unwrap();
        assert_eq!(
            faults.read(2_000_000).0,
            2_100_000,
            "no jump when the rate changes"
        );
        assert_eq!(faults.read(4_000_000).0, 3_100_000);
        // An earlier real reading (a racing reader) never makes the clock step back.
        assert_eq!(faults.read(3_000_000).0, 3_100_000);
        let too_fast = ClockFaultSettings {
            drift_ppm: CLOCK_DRIFT_PPM_MAX + 1,
            offset_ms: 0,
        };
        assert!(faults.set(5_000_000, too_fast).is_err());
        assert_eq!(faults.settings(), slow);
    }
}
