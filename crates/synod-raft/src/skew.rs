//! Clock-rate skew between the leader and each follower, measured from append round trips.
//!
//! Lease reads (`crate::reads`) are sound only while no voter's clock runs faster or slower
//! than the leader's by more than `LeaseConfig::clock_drift_bound_ppm`: a follower counts its
//! leader-stickiness ticks on its own clock, the leader counts its lease on its own. Nothing
//! else checks that assumption, so the leader measures it from traffic it already has. Each
//! append response carries the follower's monotonic clock when it handled the request
//! (`clock_nanos`), and the leader knows when it sent the request (at the latest) and when
//! the answer came back. The follower read its clock at a moment that the leader's clock
//! places inside `[sent, received]`, so two samples `i` before `j` (with `sent_j >
//! received_i`) bound the rate of the follower's clock relative to the leader's from both
//! sides:
//!
//! ```text
//!   (f_j - f_i) / (received_j - sent_i)  <=  rate  <=  (f_j - f_i) / (sent_j - received_i)
//! ```
//!
//! where `rate` is the average over the time between the two readings. The bounds are kept as
//! deviations from 1 in parts per million, rounded outwards so that they hold exactly. The
//! *certain* skew of a pair is how far its whole interval lies from 1 (0 when the interval
//! contains 1). If the true relative rate never leaves `[1 - b, 1 + b]`, no pair can show a
//! certain skew above `b`, whatever the network delays: a certain skew above the bound proves
//! the bound broken. Samples with short round trips that lie far apart give tight bounds
//! (NTP's idea), so a window keeps, per time bucket, the sample with the smallest round trip.
//!
//! Memory is fixed: [`SAMPLES_PER_FOLLOWER_MAX`] samples per member, within a sliding horizon
//! of the leader's time. Older samples are dropped, so a clock that has come back inside the
//! bound is trusted again once the samples that showed it outside have aged out.

use std::collections::BTreeMap;

use synod_core::{Duration, Instant, NodeId};

use crate::types::Membership;

/// Samples kept per follower (one per bucket of the horizon).
pub(crate) const SAMPLES_PER_FOLLOWER_MAX: usize = 8;
/// The horizon samples are kept over, in base election timeouts of the leader's clock.
pub(crate) const HORIZON_ELECTION_TIMEOUTS: u64 = 20;

const PPM: i128 = 1_000_000;

// A rate needs two samples.
const _: () = assert!(SAMPLES_PER_FOLLOWER_MAX >= 2);

/// One answered request: the leader's clock when the request was sent (or earlier) and when
/// the answer arrived, and the follower's clock when it handled the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClockSample {
    pub(crate) sent: Instant,
    pub(crate) received: Instant,
    pub(crate) follower: Instant,
}

impl ClockSample {
    fn round_trip(&self) -> Duration {
        self.received - self.sent
    }
}

/// Bounds on how much faster (positive) or slower (negative) the follower's clock ran than
/// the leader's between two samples, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateBounds {
    pub(crate) deviation_ppm_low: i64,
    pub(crate) deviation_ppm_high: i64,
}

impl RateBounds {
    /// The skew the bounds prove: the distance from 0 of the whole interval (0 when the
    /// interval contains 0).
    pub(crate) fn certain_skew_ppm(&self) -> u64 {
        if self.deviation_ppm_low > 0 {
            self.deviation_ppm_low.unsigned_abs()
        } else if self.deviation_ppm_high < 0 {
            self.deviation_ppm_high.unsigned_abs()
        } else {
            0
        }
    }
}

/// The rate bounds two samples give, or `None` when they give none: their leader intervals
/// overlap (the order of the readings is unknown), or the follower's clock went back between
/// them (it restarted).
pub(crate) fn rate_bounds(earlier: &ClockSample, later: &ClockSample) -> Option<RateBounds> {
    if later.sent <= earlier.received || later.follower < earlier.follower {
        return None;
    }
    let follower_span = i128::from(later.follower.as_nanos() - earlier.follower.as_nanos());
    let leader_span_max =
        i128::from(later.received.as_nanos()) - i128::from(earlier.sent.as_nanos());
    let leader_span_min = i128::from(later.sent.as_nanos() - earlier.received.as_nanos());
    // The shortest follower span over the longest leader span is the slowest rate, rounded
    // down; the longest over the shortest the fastest, rounded up.
    let low = ((follower_span - leader_span_max) * PPM).div_euclid(leader_span_max);
    let high = -((leader_span_min - follower_span) * PPM).div_euclid(leader_span_min);
    Some(RateBounds {
        deviation_ppm_low: clamp_i64(low),
        deviation_ppm_high: clamp_i64(high),
    })
}

fn clamp_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// One follower's samples: at most [`SAMPLES_PER_FOLLOWER_MAX`], one per bucket of the
/// leader's time, sorted by send time, and the largest skew they prove. The skew is
/// recomputed only when the samples change: most answers land in a bucket that already
/// holds a shorter round trip and change nothing, so an answer costs a few comparisons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SampleWindow {
    samples: Vec<ClockSample>,
    skew_ppm: u64,
}

impl SampleWindow {
    /// Adds a sample: it replaces the one of its bucket if its round trip is shorter, and the
    /// oldest bucket goes when the window is full. A sample whose follower reading goes back
    /// against one taken before it shows the follower's clock restarted: the older samples
    /// measured another clock and are forgotten.
    pub(crate) fn insert(&mut self, sample: ClockSample, bucket: Duration) {
        assert!(
            sample.sent <= sample.received,
            "a sample received before it was sent"
        );
        let restarted = self.samples.iter().any(|held| {
            (held.received < sample.sent && held.follower > sample.follower)
                || (sample.received < held.sent && sample.follower > held.follower)
        });
        if restarted {
            self.samples.clear();
        }
        let bucket_nanos = bucket.as_nanos().max(1);
        let bucket_of = |sample: &ClockSample| sample.sent.as_nanos() / bucket_nanos;
        let same_bucket = self
            .samples
            .iter_mut()
            .find(|held| bucket_of(held) == bucket_of(&sample));
        match same_bucket {
            Some(held) if sample.round_trip() < held.round_trip() => *held = sample,
            Some(_) => return,
            None => self.samples.push(sample),
        }
        self.samples.sort_by_key(|held| (held.sent, held.received));
        if self.samples.len() > SAMPLES_PER_FOLLOWER_MAX {
            self.samples.remove(0);
        }
        self.skew_ppm = self.skew_ppm_of_pairs();
    }

    /// Drops the samples received more than `horizon` before `now`.
    pub(crate) fn expire(&mut self, now: Instant, horizon: Duration) {
        let count = self.samples.len();
        self.samples
            .retain(|sample| now.saturating_duration_since(sample.received) <= horizon);
        if self.samples.len() != count {
            self.skew_ppm = self.skew_ppm_of_pairs();
        }
    }

    /// The largest skew any pair of samples proves (0 with fewer than two).
    pub(crate) fn certain_skew_ppm(&self) -> u64 {
        self.skew_ppm
    }

    fn skew_ppm_of_pairs(&self) -> u64 {
        let mut skew_max = 0;
        for (position, earlier) in self.samples.iter().enumerate() {
            for later in &self.samples[position + 1..] {
                if let Some(bounds) = rate_bounds(earlier, later) {
                    skew_max = skew_max.max(bounds.certain_skew_ppm());
                }
            }
        }
        skew_max
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    fn invariants(&self) {
        assert!(self.samples.len() <= SAMPLES_PER_FOLLOWER_MAX);
        assert!(
            self.samples
                .is_sorted_by_key(|sample| (sample.sent, sample.received)),
            "samples out of order"
        );
    }
}

/// The leader's skew figures: a window per member, and the largest skew the voters' windows
/// prove, as of the last refresh.
#[derive(Debug, Clone, Default)]
pub(crate) struct SkewTracker {
    windows: BTreeMap<NodeId, SampleWindow>,
    skew_ppm_max: u64,
}

impl SkewTracker {
    /// Adds `node`'s sample (received now) to its window, after dropping the window's samples
    /// past the `horizon`, and recomputes the largest skew over the voters other than `me`.
    /// The window's buckets split the horizon in [`SAMPLES_PER_FOLLOWER_MAX`].
    pub(crate) fn record(
        &mut self,
        node: NodeId,
        sample: ClockSample,
        horizon: Duration,
        membership: &Membership,
        me: NodeId,
    ) {
        let bucket = horizon.as_nanos() / SAMPLES_PER_FOLLOWER_MAX as u64;
        let window = self.windows.entry(node).or_default();
        window.expire(sample.received, horizon);
        window.insert(sample, Duration::from_nanos(bucket));
        self.skew_ppm_max = self.voters_skew_ppm_max(membership, me);
    }

    /// Drops samples past the horizon and windows of nodes that left the configuration, and
    /// recomputes the largest skew over the voters other than `me`.
    pub(crate) fn refresh(
        &mut self,
        now: Instant,
        horizon: Duration,
        membership: &Membership,
        me: NodeId,
    ) {
        self.windows.retain(|node, window| {
            window.expire(now, horizon);
            membership.contains(*node) && window.len() > 0
        });
        self.skew_ppm_max = self.voters_skew_ppm_max(membership, me);
    }

    fn voters_skew_ppm_max(&self, membership: &Membership, me: NodeId) -> u64 {
        self.windows
            .iter()
            .filter(|(node, _)| **node != me && membership.is_voter(**node))
            .map(|(_, window)| window.certain_skew_ppm())
            .max()
            .unwrap_or(0)
    }

    /// The largest skew measured towards a voter, in parts per million.
    pub(crate) fn skew_ppm_max(&self) -> u64 {
        self.skew_ppm_max
    }

    pub(crate) fn invariants(&self) {
        for window in self.windows.values() {
            window.invariants();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A table row: name, the two samples, the expected bounds and certain skew.
    type BoundsCase = (
        &'static str,
        ClockSample,
        ClockSample,
        Option<(i64, i64)>,
        u64,
    );

    fn sample(sent_ms: u64, received_ms: u64, follower_ms: u64) -> ClockSample {
        ClockSample {
            sent: Instant::from_nanos(sent_ms * MS),
            received: Instant::from_nanos(received_ms * MS),
            follower: Instant::from_nanos(follower_ms * MS),
        }
    }

    #[test]
    fn two_samples_bound_the_rate_from_both_sides() {
        // Checks the rate bounds and the certain skew of sample pairs, one row per case:
        // equal clocks, fast and slow followers, loose bounds from long round trips, and the
        // pairs that give no bound at all.
        let cases: Vec<BoundsCase> = vec![
            (
                "same rate, 1 ms round trips, 1 s apart",
                sample(0, 1, 500),
                sample(1_000, 1_001, 1_500),
                Some((-1_000, 1_002)),
                0,
            ),
            (
                "follower 5% fast",
                sample(0, 1, 500),
                sample(1_000, 1_001, 1_550),
                Some((48_951, 51_052)),
                48_951,
            ),
            (
                "follower 5% slow",
                sample(0, 1, 500),
                sample(1_000, 1_001, 1_450),
                Some((-50_950, -49_049)),
                49_049,
            ),
            (
                "follower 0.5% fast: inside the bounds' error, nothing certain",
                sample(0, 40, 20),
                sample(1_000, 1_040, 1_025),
                Some((-33_654, 46_875)),
                0,
            ),
            (
                "follower 5% fast, 40 ms round trips: looser but still certain",
                sample(0, 40, 20),
                sample(1_000, 1_040, 1_070),
                Some((9_615, 93_750)),
                9_615,
            ),
            (
                "overlapping intervals",
                sample(0, 10, 5),
                sample(10, 20, 15),
                None,
                0,
            ),
            (
                "follower clock went back",
                sample(0, 1, 500),
                sample(1_000, 1_001, 400),
                None,
                0,
            ),
        ];
        for (name, earlier, later, expected, certain) in cases {
            let bounds = rate_bounds(&earlier, &later);
            let got = bounds.map(|b| (b.deviation_ppm_low, b.deviation_ppm_high));
            assert_eq!(got, expected, "case: {name}");
            let got_certain = bounds.map_or(0, |b| b.certain_skew_ppm());
            assert_eq!(got_certain, certain, "case: {name}");
        }
    }

    #[test]
    fn a_window_keeps_the_shortest_round_trip_per_bucket_and_a_bounded_count() {
        // Checks the window's memory: one sample per bucket (the shortest round trip wins),
        // at most SAMPLES_PER_FOLLOWER_MAX with the oldest bucket dropped first, and samples
        // past the horizon expired.
        let bucket = Duration::from_millis(100);
        let mut window = SampleWindow::default();
        window.insert(sample(0, 30, 10), bucket);
        window.insert(sample(20, 22, 21), bucket);
        window.insert(sample(50, 90, 60), bucket);
        assert_eq!(window.samples, vec![sample(20, 22, 21)]);
        for step in 1..=10 {
            window.insert(sample(step * 100, step * 100 + 2, step * 100 + 1), bucket);
        }
        assert_eq!(window.len(), SAMPLES_PER_FOLLOWER_MAX);
        assert_eq!(window.samples[0], sample(300, 302, 301));
        window.expire(
            Instant::from_nanos(1_500 * MS),
            Duration::from_millis(1_000),
        );
        assert_eq!(window.samples[0], sample(500, 502, 501));
        assert_eq!(window.len(), 6);
        window.invariants();
    }

    #[test]
    fn a_follower_clock_that_goes_back_restarts_the_window() {
        // Checks a restarted follower (its clock reads less than before) starts a fresh
        // window instead of mixing two clocks into one rate.
        let bucket = Duration::from_millis(100);
        let mut window = SampleWindow::default();
        window.insert(sample(0, 2, 5_000), bucket);
        window.insert(sample(200, 202, 5_200), bucket);
        window.insert(sample(400, 402, 3), bucket);
        assert_eq!(window.samples, vec![sample(400, 402, 3)]);
    }

    #[test]
    fn the_tracker_reports_the_largest_skew_over_voters_only() {
        // Checks the tracker's figure: the largest certain skew of a voter's window, with
        // learners and departed members left out and old samples aged out by the horizon.
        let horizon = Duration::from_secs(2);
        let voters = Membership::with_voters(&[NodeId(1), NodeId(2), NodeId(3)]);
        let mut tracker = SkewTracker::default();
        tracker.record(NodeId(2), sample(0, 1, 500), horizon, &voters, NodeId(1));
        tracker.record(
            NodeId(2),
            sample(1_000, 1_001, 1_520),
            horizon,
            &voters,
            NodeId(1),
        );
        tracker.record(NodeId(3), sample(0, 1, 500), horizon, &voters, NodeId(1));
        tracker.record(
            NodeId(3),
            sample(1_000, 1_001, 1_550),
            horizon,
            &voters,
            NodeId(1),
        );
        // Node 4 is not a member: its window is dropped at the refresh.
        tracker.record(NodeId(4), sample(0, 1, 500), horizon, &voters, NodeId(1));
        tracker.record(
            NodeId(4),
            sample(1_000, 1_001, 1_900),
            horizon,
            &voters,
            NodeId(1),
        );
        let now = Instant::from_nanos(1_001 * MS);
        tracker.refresh(now, horizon, &voters, NodeId(1));
        assert_eq!(tracker.skew_ppm_max(), 48_951);
        assert_eq!(tracker.windows.len(), 2);
        let later = Instant::from_nanos(3_002 * MS);
        tracker.refresh(later, horizon, &voters, NodeId(1));
        assert_eq!(tracker.skew_ppm_max(), 0);
        assert!(tracker.windows.is_empty());
        tracker.invariants();
    }
}
