//! Simulated node clocks: a monotonic clock that drifts, and a wall clock that is offset,
//! drifts with it and jumps.
//!
//! Both clocks of a node run off one simulated oscillator whose rate differs from true time
//! by `drift_ppm` parts per million. Between two changes of that rate a clock is a straight
//! line through an anchor point, so readings are exact integer arithmetic (no accumulated
//! rounding, the same on every platform):
//!
//! ```text
//! local(t) = anchor_local + (t - anchor_global) * (1_000_000 + drift_ppm) / 1_000_000
//! wall(t)  = anchor_wall  + (t - anchor_global) * (1_000_000 + drift_ppm) / 1_000_000
//! ```
//!
//! A rate change or a wall-clock jump moves the anchor to the current time first, so the
//! monotonic clock is continuous and never goes backwards; the wall clock may jump either way.

use synod_core::{Duration, Instant, WallClock};

/// Parts per million: the unit of a drift rate.
pub const PPM: i64 = 1_000_000;
/// The largest drift rate the simulator accepts in either direction, even in its
/// outside-the-bound fault mode: the oscillator must keep running forwards.
pub const DRIFT_PPM_LIMIT: i64 = 500_000;
/// The wall-clock reading at virtual time zero for a clock with no offset: 2025-01-01T00:00Z.
pub const WALL_EPOCH_NANOS: i64 = 1_735_689_600 * 1_000_000_000;

/// One node's simulated clocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeClock {
    anchor_global: u64,
    anchor_local: u64,
    anchor_wall: i64,
    drift_ppm: i64,
}

impl NodeClock {
    /// A clock whose monotonic reading at virtual time zero is `origin` and whose wall
    /// clock is `offset_nanos` away from true time.
    pub fn new(origin: Instant, offset_nanos: i64, drift_ppm: i64) -> NodeClock {
        assert_drift(drift_ppm);
        NodeClock {
            anchor_global: 0,
            anchor_local: origin.as_nanos(),
            anchor_wall: WALL_EPOCH_NANOS.saturating_add(offset_nanos),
            drift_ppm,
        }
    }

    /// The span of node-local time that passes while `global_span` of true time passes.
    fn scale(&self, global_span: u64) -> u64 {
        // The common case skips the 128-bit division, which shows in profiles.
        if self.drift_ppm == 0 {
            return global_span;
        }
        let rate = i128::from(PPM + self.drift_ppm);
        let scaled = i128::from(global_span) * rate / i128::from(PPM);
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }

    fn since_anchor(&self, now: Instant) -> u64 {
        assert!(
            now.as_nanos() >= self.anchor_global,
            "clock read at {now:?}, before its anchor at {}ns",
            self.anchor_global
        );
        self.scale(now.as_nanos() - self.anchor_global)
    }

    /// The monotonic reading at virtual time `now`.
    pub fn local(&self, now: Instant) -> Instant {
        Instant::from_nanos(self.anchor_local.saturating_add(self.since_anchor(now)))
    }

    /// The wall-clock reading at virtual time `now`.
    pub fn wall(&self, now: Instant) -> WallClock {
        let elapsed = i64::try_from(self.since_anchor(now)).unwrap_or(i64::MAX);
        WallClock(self.anchor_wall.saturating_add(elapsed))
    }

    /// How far the wall clock is from true time at `now`, in signed nanoseconds.
    pub fn offset_nanos(&self, now: Instant) -> i64 {
        let truth = WALL_EPOCH_NANOS.saturating_add(i64::try_from(now.as_nanos()).unwrap_or(0));
        self.wall(now).0.saturating_sub(truth)
    }

    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    /// Whether both the offset and the drift are within the given bounds at `now`.
    pub fn within_bound(&self, now: Instant, offset_max: Duration, drift_ppm_max: i64) -> bool {
        let offset_max = i64::try_from(offset_max.as_nanos()).unwrap_or(i64::MAX);
        self.offset_nanos(now).unsigned_abs() <= offset_max.unsigned_abs()
            && self.drift_ppm.abs() <= drift_ppm_max
    }

    /// Moves the anchor to `now` so that a change from here on keeps both clocks continuous.
    fn reanchor(&mut self, now: Instant) {
        let local = self.local(now).as_nanos();
        let wall = self.wall(now).0;
        self.anchor_global = now.as_nanos();
        self.anchor_local = local;
        self.anchor_wall = wall;
    }

    /// Changes the oscillator's rate from `now` on.
    pub fn set_drift(&mut self, now: Instant, drift_ppm: i64) {
        assert_drift(drift_ppm);
        self.reanchor(now);
        self.drift_ppm = drift_ppm;
    }

    /// Steps the wall clock by `delta_nanos` (either way); the monotonic clock is unaffected.
    pub fn jump_wall(&mut self, now: Instant, delta_nanos: i64) {
        self.reanchor(now);
        self.anchor_wall = self.anchor_wall.saturating_add(delta_nanos);
    }

    /// Steps the wall clock so that its offset from true time is `offset_nanos` at `now`.
    pub fn set_offset(&mut self, now: Instant, offset_nanos: i64) {
        let delta = offset_nanos.saturating_sub(self.offset_nanos(now));
        self.jump_wall(now, delta);
    }

    /// The earliest virtual time, not before `now`, at which the monotonic clock reads at
    /// least `local_deadline`: where a node-local timer deadline falls in global time.
    pub fn to_global(&self, now: Instant, local_deadline: Instant) -> Instant {
        if local_deadline <= self.local(now) {
            return now;
        }
        let local_span = local_deadline.as_nanos() - self.anchor_local;
        let rate = i128::from(PPM + self.drift_ppm);
        // Rounding up: the timer must not fire before its local deadline.
        let global_span = (i128::from(local_span) * i128::from(PPM) + rate - 1) / rate;
        let global = i128::from(self.anchor_global) + global_span;
        Instant::from_nanos(u64::try_from(global).unwrap_or(u64::MAX)).max(now)
    }
}

fn assert_drift(drift_ppm: i64) {
    assert!(
        drift_ppm.abs() <= DRIFT_PPM_LIMIT,
        "clock drift of {drift_ppm} ppm is outside the simulator's limit of {DRIFT_PPM_LIMIT}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn at(nanos: u64) -> Instant {
        Instant::from_nanos(nanos)
    }

    #[test]
    fn drift_scales_local_time_exactly() {
        // Checks the monotonic and wall readings for a table of drift rates after one
        // second of true time, with integer (floor) arithmetic.
        let table = [
            (0, SECOND, 0),
            (100, SECOND + 100_000, 100_000),
            (-250, SECOND - 250_000, -250_000),
            (500_000, SECOND + SECOND / 2, 500_000_000),
            (-500_000, SECOND / 2, -500_000_000),
        ];
        for (drift, local, offset) in table {
            let clock = NodeClock::new(at(0), 0, drift);
            assert_eq!(clock.local(at(SECOND)), at(local), "drift {drift}");
            assert_eq!(clock.offset_nanos(at(SECOND)), offset, "drift {drift}");
            assert_eq!(clock.wall(at(0)), WallClock(WALL_EPOCH_NANOS));
        }
    }

    #[test]
    fn jumps_move_the_wall_clock_both_ways_but_never_the_monotonic_clock() {
        // Checks that wall-clock jumps forward and back change the offset by exactly the
        // jump, leave the monotonic clock continuous, and that set_offset lands exactly.
        let mut clock = NodeClock::new(at(5 * SECOND), 2_000, 0);
        let before = clock.local(at(SECOND));
        clock.jump_wall(at(SECOND), -3_000_000);
        assert_eq!(clock.local(at(SECOND)), before);
        assert_eq!(clock.offset_nanos(at(SECOND)), 2_000 - 3_000_000);
        clock.jump_wall(at(2 * SECOND), 10_000_000);
        assert_eq!(clock.offset_nanos(at(2 * SECOND)), 2_000 + 7_000_000);
        clock.set_offset(at(3 * SECOND), -42);
        assert_eq!(clock.offset_nanos(at(3 * SECOND)), -42);
        assert_eq!(clock.local(at(3 * SECOND)), at(8 * SECOND));
    }

    #[test]
    fn drift_changes_keep_the_monotonic_clock_continuous() {
        // Checks that changing the rate mid-run neither jumps nor rewinds the monotonic
        // clock, and that the new rate applies from the change on.
        let mut clock = NodeClock::new(at(0), 0, 1_000);
        let mut previous = Instant::ZERO;
        for step in 1..=20u64 {
            let now = at(step * SECOND / 10);
            if step % 5 == 0 {
                let drift = if step % 10 == 0 { -400_000 } else { 300_000 };
                let before = clock.local(now);
                clock.set_drift(now, drift);
                assert_eq!(clock.local(now), before);
            }
            let reading = clock.local(now);
            assert!(reading >= previous, "went backwards at step {step}");
            previous = reading;
        }
        clock.set_drift(at(3 * SECOND), 0);
        let base = clock.local(at(3 * SECOND));
        assert_eq!(clock.local(at(4 * SECOND)) - base, Duration::from_secs(1));
    }

    #[test]
    fn local_deadlines_convert_to_the_first_global_time_that_reaches_them() {
        // Checks the timer conversion: the global time found reads at least the deadline,
        // one nanosecond earlier reads less, and past deadlines map to now.
        for drift in [0, 1, 77, -77, 123_456, -499_999] {
            let mut clock = NodeClock::new(at(1_000), 0, 0);
            clock.set_drift(at(SECOND), drift);
            let now = at(2 * SECOND);
            for span in [1, 999, 1_000_003, 7 * SECOND + 13] {
                let deadline = clock.local(now) + Duration::from_nanos(span);
                let global = clock.to_global(now, deadline);
                assert!(clock.local(global) >= deadline, "drift {drift} span {span}");
                let earlier = at(global.as_nanos() - 1);
                assert!(clock.local(earlier) < deadline, "drift {drift} span {span}");
            }
            assert_eq!(clock.to_global(now, clock.local(now)), now);
            assert_eq!(clock.to_global(now, Instant::ZERO), now);
        }
    }

    #[test]
    fn bound_check_covers_offset_and_drift() {
        // Checks within_bound against a table of offsets and drifts.
        let offset_max = Duration::from_millis(10);
        let table = [
            (0, 0, true),
            (10_000_000, 100, true),
            (-10_000_000, -100, true),
            (10_000_001, 0, false),
            (0, 101, false),
            (-20_000_000, 0, false),
        ];
        for (offset, drift, within) in table {
            let clock = NodeClock::new(at(0), offset, drift);
            assert_eq!(
                clock.within_bound(at(0), offset_max, 100),
                within,
                "{offset} {drift}"
            );
        }
    }
}
