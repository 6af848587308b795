//! What the clients saw over time: each completed operation with its latency, fixed-width
//! buckets of them (answers, failures, unknown outcomes and the p99 latency), and the time
//! until writes succeeded again after a moment. The HTML report draws the buckets; the
//! per-fault figures come from the windows and recovery times.

use std::collections::BTreeMap;

use super::workload::Event;

/// The width of one bucket of the throughput and latency charts.
pub const BUCKET_NANOS: u64 = 250_000_000;
/// The most buckets drawn (3600 s at 250 ms); a longer run gets wider buckets.
pub const BUCKETS_MAX: u64 = 14_400;

/// One operation from its invoke to its completion, in nanoseconds since the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub invoke: u64,
    pub complete: u64,
    pub function: &'static str,
    /// `ok`, `fail` or `info`.
    pub kind: &'static str,
}

impl Completed {
    pub fn latency(&self) -> u64 {
        self.complete.saturating_sub(self.invoke)
    }

    /// The cluster answered: an ok, or a compare-and-set whose compare it refused.
    pub fn answered(&self) -> bool {
        self.kind == "ok" || (self.kind == "fail" && self.function == "cas")
    }

    fn is_write_ok(&self) -> bool {
        self.kind == "ok" && self.function != "read"
    }
}

/// One bucket of completions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Answered (see [`Completed::answered`]).
    pub answered: u64,
    /// Certainly failed reads and writes (no answer in time, no leader).
    pub failed: u64,
    /// Unknown outcomes (timeouts after sending).
    pub unknown: u64,
    /// The p99 latency of every completion in the bucket, 0 when it has none.
    pub latency_p99_nanos: u64,
}

/// Pairs every completion with its process's invoke; `events` are in time order.
pub fn completed(events: &[Event]) -> Vec<Completed> {
    let mut invokes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut completed = Vec::new();
    for event in events {
        if event.kind == "invoke" {
            invokes.insert(event.process, event.time);
        } else if let Some(invoke) = invokes.remove(&event.process) {
            completed.push(Completed {
                invoke,
                complete: event.time,
                function: event.function,
                kind: event.kind,
            });
        }
    }
    completed
}

/// The value at `per_mille` of `sorted` by nearest rank (0 for none).
pub fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * per_mille).div_ceil(1_000).max(1);
    sorted[(rank - 1) as usize]
}

/// The bucket width for a workload of `end` nanoseconds: [`BUCKET_NANOS`], widened so that
/// there are at most [`BUCKETS_MAX`] buckets.
pub fn bucket_width(end: u64) -> u64 {
    BUCKET_NANOS.max(end.div_ceil(BUCKETS_MAX))
}

/// Buckets `[i * width, (i + 1) * width)` covering `[0, end)`, by completion time; later
/// completions (the final reads) are left out.
pub fn buckets(completed: &[Completed], width: u64, end: u64) -> Vec<Bucket> {
    assert!(width > 0, "a bucket has a width");
    let count = end.div_ceil(width).max(1);
    assert!(count <= BUCKETS_MAX, "{count} buckets of {width} ns");
    let mut buckets = vec![Bucket::default(); count as usize];
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); count as usize];
    for operation in completed
        .iter()
        .filter(|operation| operation.complete < end)
    {
        let index = (operation.complete / width) as usize;
        let bucket = &mut buckets[index];
        match operation.kind {
            "info" => bucket.unknown += 1,
            _ if operation.answered() => bucket.answered += 1,
            _ => bucket.failed += 1,
        }
        latencies[index].push(operation.latency());
    }
    for (bucket, mut latencies) in buckets.iter_mut().zip(latencies) {
        latencies.sort_unstable();
        bucket.latency_p99_nanos = percentile(&latencies, 990);
    }
    buckets
}

/// The p99 latency of the operations completed in `[start, end)`, and their count.
pub fn window_p99(completed: &[Completed], start: u64, end: u64) -> (u64, usize) {
    let mut latencies: Vec<u64> = completed
        .iter()
        .filter(|operation| operation.complete >= start && operation.complete < end)
        .map(Completed::latency)
        .collect();
    latencies.sort_unstable();
    (percentile(&latencies, 990), latencies.len())
}

/// How long after `time` a write (or cas) invoked at or after `time` first succeeded:
/// its completion minus `time`; `None` when none did.
pub fn write_recovery(completed: &[Completed], time: u64) -> Option<u64> {
    completed
        .iter()
        .filter(|operation| operation.is_write_ok() && operation.invoke >= time)
        .map(|operation| operation.complete - time)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn event(process: u64, kind: &'static str, function: &'static str, time: u64) -> Event {
        Event {
            process,
            kind,
            function,
            key: 0,
            value: Json::Null,
            time,
        }
    }

    fn operation(
        invoke: u64,
        complete: u64,
        function: &'static str,
        kind: &'static str,
    ) -> Completed {
        Completed {
            invoke,
            complete,
            function,
            kind,
        }
    }

    #[test]
    fn completions_pair_with_their_process_invoke() {
        // Checks that interleaved processes pair correctly and a dangling invoke is dropped.
        let events = [
            event(1, "invoke", "write", 10),
            event(2, "invoke", "read", 12),
            event(2, "ok", "read", 20),
            event(1, "info", "write", 30),
            event(3, "invoke", "cas", 40),
        ];
        assert_eq!(
            completed(&events),
            vec![
                operation(12, 20, "read", "ok"),
                operation(10, 30, "write", "info"),
            ]
        );
    }

    #[test]
    fn buckets_count_by_completion_time_with_a_p99() {
        // Checks bucket edges (half-open), the three counts (a refused cas is an answer),
        // the nearest-rank p99, an empty bucket, and that completions at or after the end
        // are left out.
        let completed = [
            operation(0, 100, "read", "ok"),
            operation(50, 249, "write", "fail"),
            operation(60, 250, "cas", "fail"),
            operation(100, 400, "write", "info"),
            operation(0, 999, "read", "ok"),
            operation(0, 1_000, "read", "ok"),
        ];
        let buckets = buckets(&completed, 250, 1_000);
        let expected = [
            Bucket {
                answered: 1,
                failed: 1,
                unknown: 0,
                latency_p99_nanos: 199,
            },
            Bucket {
                answered: 1,
                failed: 0,
                unknown: 1,
                latency_p99_nanos: 300,
            },
            Bucket::default(),
            Bucket {
                answered: 1,
                failed: 0,
                unknown: 0,
                latency_p99_nanos: 999,
            },
        ];
        assert_eq!(buckets, expected);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        // Checks the nearest-rank p99 and p50 on small and exact sizes.
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 990), 99);
        assert_eq!(percentile(&hundred, 500), 50);
        assert_eq!(percentile(&[7], 990), 7);
        assert_eq!(percentile(&[], 990), 0);
        let two_hundred: Vec<u64> = (1..=200).collect();
        assert_eq!(percentile(&two_hundred, 990), 198);
    }

    #[test]
    fn bucket_width_grows_for_long_runs() {
        // Checks 250 ms buckets up to an hour and wider ones beyond, never more than the max.
        assert_eq!(bucket_width(60_000_000_000), BUCKET_NANOS);
        assert_eq!(bucket_width(3_600_000_000_000), BUCKET_NANOS);
        let width = bucket_width(7_200_000_000_000);
        assert_eq!(width, 500_000_000);
        assert!(7_200_000_000_000u64.div_ceil(width) <= BUCKETS_MAX);
    }

    #[test]
    fn write_recovery_is_the_first_write_invoked_after_the_moment() {
        // Checks that reads, failed writes and writes invoked before the moment do not
        // count, and that cas counts as a write.
        let completed = [
            operation(90, 150, "write", "ok"),
            operation(100, 120, "read", "ok"),
            operation(110, 130, "write", "fail"),
            operation(120, 400, "cas", "ok"),
            operation(105, 300, "write", "ok"),
        ];
        assert_eq!(write_recovery(&completed, 100), Some(200));
        assert_eq!(write_recovery(&completed, 500), None);
    }
}
