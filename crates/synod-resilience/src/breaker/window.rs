//! The breaker's sliding windows: the outcomes of the last N calls, or of the calls in the
//! last span of time, kept as running totals over bounded memory.

use std::collections::VecDeque;

use synod_core::{Duration, Instant};

/// The totals of one window: how many calls completed, how many failed, how many were slow
/// (a slow failure counts in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotals {
    pub calls_count: u64,
    pub failures_count: u64,
    pub slow_count: u64,
}

impl WindowTotals {
    fn add(&mut self, outcome: CallOutcome) {
        self.calls_count += 1;
        self.failures_count += u64::from(outcome.failed);
        self.slow_count += u64::from(outcome.slow);
    }

    fn remove(&mut self, outcome: CallOutcome) {
        assert!(self.calls_count >= 1, "window totals underflow");
        self.calls_count -= 1;
        self.failures_count -= u64::from(outcome.failed);
        self.slow_count -= u64::from(outcome.slow);
    }

    fn add_totals(&mut self, other: WindowTotals) {
        self.calls_count += other.calls_count;
        self.failures_count += other.failures_count;
        self.slow_count += other.slow_count;
    }

    fn remove_totals(&mut self, other: WindowTotals) {
        assert!(
            self.calls_count >= other.calls_count,
            "window totals underflow"
        );
        self.calls_count -= other.calls_count;
        self.failures_count -= other.failures_count;
        self.slow_count -= other.slow_count;
    }

    pub(crate) fn assert_consistent(&self) {
        assert!(self.failures_count <= self.calls_count, "{self:?}");
        assert!(self.slow_count <= self.calls_count, "{self:?}");
    }
}

/// What one completed call tells the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    pub failed: bool,
    pub slow: bool,
}

/// The outcomes of the last `calls_count` calls: a ring of outcomes and their totals.
#[derive(Debug, Clone)]
pub struct CountWindow {
    calls_count_max: usize,
    outcomes: VecDeque<CallOutcome>,
    totals: WindowTotals,
}

impl CountWindow {
    pub fn new(calls_count_max: usize) -> CountWindow {
        assert!(
            calls_count_max >= 1,
            "a count window holds at least one call"
        );
        CountWindow {
            calls_count_max,
            outcomes: VecDeque::with_capacity(calls_count_max),
            totals: WindowTotals::default(),
        }
    }

    pub fn record(&mut self, outcome: CallOutcome) {
        if self.outcomes.len() == self.calls_count_max {
            let evicted = self.outcomes.pop_front().expect("the window is full");
            self.totals.remove(evicted);
        }
        self.outcomes.push_back(outcome);
        self.totals.add(outcome);
    }

    pub fn totals(&self) -> WindowTotals {
        self.totals
    }

    pub fn clear(&mut self) {
        self.outcomes.clear();
        self.totals = WindowTotals::default();
    }

    pub fn invariants(&self) {
        assert!(self.outcomes.len() <= self.calls_count_max);
        let mut recount = WindowTotals::default();
        for outcome in &self.outcomes {
            recount.add(*outcome);
        }
        assert_eq!(recount, self.totals, "count window totals drifted");
        self.totals.assert_consistent();
    }
}

/// One bucket of a time window: the totals of the calls that completed during one bucket
/// width, tagged with the number of that width since the origin of time.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    totals: WindowTotals,
}

/// The outcomes of the calls that completed in the last `span`, in `buckets_count` buckets of
/// `span / buckets_count` each. The current bucket is partly filled, so the window covers
/// between `span - width` and `span` of history; memory is `buckets_count` buckets however
/// many calls arrive.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    bucket_width_nanos: u64,
    /// Indexed by `epoch % buckets.len()`.
    buckets: Vec<Bucket>,
    /// The newest epoch the window has advanced to; buckets older than
    /// `epoch_latest - buckets.len() + 1` have been emptied.
    epoch_latest: u64,
    totals: WindowTotals,
}

impl TimeWindow {
    pub fn new(span: Duration, buckets_count: usize) -> TimeWindow {
        assert!(buckets_count >= 1, "a time window has at least one bucket");
        let bucket_width_nanos = span.as_nanos() / buckets_count as u64;
        assert!(
            bucket_width_nanos >= 1,
            "a bucket spans at least a nanosecond"
        );
        TimeWindow {
            bucket_width_nanos,
            buckets: vec![Bucket::default(); buckets_count],
            epoch_latest: 0,
            totals: WindowTotals::default(),
        }
    }

    pub fn record(&mut self, now: Instant, outcome: CallOutcome) {
        self.advance(now);
        // An outcome reported with an earlier `now` than one already seen (callers that
        // complete out of order) lands in the newest bucket: the window never goes back.
        let index = self.index(self.epoch_latest);
        self.buckets[index].totals.add(outcome);
        self.totals.add(outcome);
    }

    /// The totals of the calls within the window at `now`.
    pub fn totals(&mut self, now: Instant) -> WindowTotals {
        self.advance(now);
        self.totals
    }

    /// The totals at `now` without advancing the window: a sum over the buckets still in it.
    pub fn totals_at(&self, now: Instant) -> WindowTotals {
        let epoch = (now.as_nanos() / self.bucket_width_nanos).max(self.epoch_latest);
        let oldest = epoch.saturating_sub(self.buckets.len() as u64 - 1);
        let mut totals = WindowTotals::default();
        for bucket in &self.buckets {
            if bucket.epoch >= oldest {
                totals.add_totals(bucket.totals);
            }
        }
        totals
    }

    pub fn clear(&mut self) {
        // Epochs stay: the next record lands in the bucket tagged with the latest epoch.
        for bucket in &mut self.buckets {
            bucket.totals = WindowTotals::default();
        }
        self.totals = WindowTotals::default();
    }

    /// Empties the buckets that fell out of the window between the latest epoch and `now`'s.
    /// At most one pass over the buckets, however long the gap.
    fn advance(&mut self, now: Instant) {
        let epoch = now.as_nanos() / self.bucket_width_nanos;
        if epoch <= self.epoch_latest {
            return;
        }
        let buckets_count = self.buckets.len() as u64;
        let steps = (epoch - self.epoch_latest).min(buckets_count);
        for offset in 0..steps {
            let reused_epoch = epoch - offset;
            let index = self.index(reused_epoch);
            let stale = std::mem::take(&mut self.buckets[index].totals);
            self.totals.remove_totals(stale);
            self.buckets[index].epoch = reused_epoch;
        }
        self.epoch_latest = epoch;
    }

    fn index(&self, epoch: u64) -> usize {
        (epoch % self.buckets.len() as u64) as usize
    }

    pub fn invariants(&self) {
        let mut recount = WindowTotals::default();
        let oldest = self
            .epoch_latest
            .saturating_sub(self.buckets.len() as u64 - 1);
        for bucket in &self.buckets {
            if bucket.totals.calls_count > 0 {
                assert!(
                    bucket.epoch >= oldest && bucket.epoch <= self.epoch_latest,
                    "a bucket outside the window holds calls"
                );
            }
            recount.add_totals(bucket.totals);
        }
        assert_eq!(recount, self.totals, "time window totals drifted");
        self.totals.assert_consistent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: CallOutcome = CallOutcome {
        failed: false,
        slow: false,
    };
    const FAILED: CallOutcome = CallOutcome {
        failed: true,
        slow: false,
    };
    const SLOW_FAILED: CallOutcome = CallOutcome {
        failed: true,
        slow: true,
    };

    fn at_millis(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    #[test]
    fn count_window_keeps_the_last_calls() {
        // Checks that a count window of 3 evicts the oldest outcome and keeps exact totals.
        let mut window = CountWindow::new(3);
        let steps = [
            (FAILED, (1, 1, 0)),
            (SLOW_FAILED, (2, 2, 1)),
            (OK, (3, 2, 1)),
            (OK, (3, 1, 1)),
            (OK, (3, 0, 0)),
        ];
        for (outcome, (calls, failures, slow)) in steps {
            window.record(outcome);
            window.invariants();
            let expected = WindowTotals {
                calls_count: calls,
                failures_count: failures,
                slow_count: slow,
            };
            assert_eq!(window.totals(), expected, "after {outcome:?}");
        }
    }

    #[test]
    fn time_window_forgets_calls_older_than_its_span() {
        // Checks a 1 s window in 10 buckets of 100 ms: calls leave the window as their bucket
        // falls out, a long gap empties it, and out-of-order times land in the newest bucket.
        let mut window = TimeWindow::new(Duration::from_secs(1), 10);
        window.record(at_millis(50), FAILED);
        window.record(at_millis(150), OK);
        window.record(at_millis(950), OK);
        assert_eq!(window.totals(at_millis(999)).calls_count, 3);
        assert_eq!(window.totals_at(at_millis(1000)).calls_count, 2);
        // At 1000 ms the bucket [0, 100) is reused: the failure at 50 ms leaves.
        let totals = window.totals(at_millis(1000));
        assert_eq!((totals.calls_count, totals.failures_count), (2, 0));
        assert_eq!(window.totals(at_millis(1100)).calls_count, 1);
        window.record(at_millis(1000), FAILED);
        assert_eq!(window.totals(at_millis(1100)).failures_count, 1);
        window.invariants();
        assert_eq!(window.totals(at_millis(60_000)), WindowTotals::default());
        window.invariants();
    }
}
