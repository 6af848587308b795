//! When to retry a failed request and how long to wait first: pure functions of the attempt
//! count, the time spent and a random number, so they are tested without a clock.

use std::time::Duration;

use crate::error::Retry;

/// The retry settings of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Most attempts, the first included.
    pub attempts_max: u32,
    /// Total time for an operation, its attempts and waits together.
    pub operation_deadline: Duration,
}

/// Whether a request may be sent again after an ambiguous failure (its outcome unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A read, or a write within a session (the server applies its sequence once).
    Harmless,
    /// A write outside any session: sending it again could apply it twice.
    Unsafe,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RetryAfter(Duration),
    GiveUp,
}

/// The wait before retry number `retry` (1 after the first failure): exponential from
/// `backoff_min`, capped at `backoff_max`, with "equal jitter" (half fixed, half drawn from
/// `random`) so that many clients that failed together do not retry together.
pub fn backoff_delay(
    retry: u32,
    backoff_min: Duration,
    backoff_max: Duration,
    random: u64,
) -> Duration {
    assert!(
        backoff_min <= backoff_max,
        "backoff_min must not exceed backoff_max"
    );
    let exponent = retry.saturating_sub(1).min(31);
    let ceiling = backoff_min.saturating_mul(1 << exponent).min(backoff_max);
    let half = ceiling / 2;
    let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = Duration::from_nanos(random % half_nanos.saturating_add(1));
    (ceiling - half + jitter).clamp(backoff_min, backoff_max)
}

/// Decides whether to retry after attempt number `attempts_made` failed with a failure of
/// kind `retry`, `elapsed` after the operation began.
pub fn decide(
    policy: &RetryPolicy,
    attempts_made: u32,
    elapsed: Duration,
    retry: Retry,
    replay: Replay,
    random: u64,
) -> Decision {
    match (retry, replay) {
        (Retry::Never, _) | (Retry::Ambiguous, Replay::Unsafe) => return Decision::GiveUp,
        (Retry::Safe, _) | (Retry::Ambiguous, Replay::Harmless) => {}
    }
    if attempts_made >= policy.attempts_max {
        return Decision::GiveUp;
    }
    let delay = backoff_delay(
        attempts_made,
        policy.backoff_min,
        policy.backoff_max,
        random,
    );
    if elapsed.saturating_add(delay) >= policy.operation_deadline {
        return Decision::GiveUp;
    }
    Decision::RetryAfter(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff_min: 10 * MS,
            backoff_max: 1000 * MS,
            attempts_max: 5,
            operation_deadline: 5000 * MS,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        // Checks each retry's delay range: [ceiling/2, ceiling] and never below backoff_min,
        // the ceiling doubling from backoff_min up to backoff_max.
        let cases = [
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (7, 640),
            (8, 1000),
            (40, 1000),
        ];
        for (retry, ceiling_ms) in cases {
            let ceiling = ceiling_ms * MS;
            let delays: Vec<Duration> = (0..1000u64)
                .map(|draw| draw.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .map(|random| backoff_delay(retry, 10 * MS, 1000 * MS, random))
                .collect();
            let low = *delays.iter().min().unwrap();
            let high = *delays.iter().max().unwrap();
            assert_eq!(
                backoff_delay(retry, 10 * MS, 1000 * MS, 0),
                low,
                "retry {retry}"
            );
            assert_eq!(low, (ceiling / 2).max(10 * MS), "retry {retry}");
            assert!(high <= ceiling, "retry {retry}: {high:?}");
            if ceiling >= 40 * MS {
                assert!(high > low, "retry {retry}: the jitter spreads the delay");
            }
        }
    }

    #[test]
    fn backoff_with_equal_bounds_is_constant() {
        // Checks that backoff_min == backoff_max gives exactly that delay, whatever the jitter.
        for random in [0, 1, 12345, u64::MAX] {
            for retry in [0, 1, 5, 100] {
                assert_eq!(backoff_delay(retry, 50 * MS, 50 * MS, random), 50 * MS);
            }
        }
    }

    #[test]
    fn decide_follows_the_retry_kind_and_replay_safety() {
        // Checks the table of (failure kind, replay safety) to retry or give up.
        let cases = [
            (Retry::Safe, Replay::Unsafe, true),
            (Retry::Safe, Replay::Harmless, true),
            (Retry::Ambiguous, Replay::Harmless, true),
            (Retry::Ambiguous, Replay::Unsafe, false),
            (Retry::Never, Replay::Harmless, false),
            (Retry::Never, Replay::Unsafe, false),
        ];
        for (retry, replay, retries) in cases {
            let decision = decide(&policy(), 1, Duration::ZERO, retry, replay, 7);
            assert_eq!(
                matches!(decision, Decision::RetryAfter(_)),
                retries,
                "{retry:?} {replay:?}"
            );
        }
    }

    #[test]
    fn decide_gives_up_at_the_attempt_limit_and_the_deadline() {
        // Checks both budgets: attempts_max and the operation deadline, including the wait.
        let policy = policy();
        let retry = |attempts, elapsed| {
            decide(&policy, attempts, elapsed, Retry::Safe, Replay::Harmless, 0)
        };
        assert!(matches!(retry(4, Duration::ZERO), Decision::RetryAfter(_)));
        assert_eq!(retry(5, Duration::ZERO), Decision::GiveUp);
        assert_eq!(retry(6, Duration::ZERO), Decision::GiveUp);
        assert!(matches!(retry(1, 4900 * MS), Decision::RetryAfter(_)));
        assert_eq!(retry(1, 4995 * MS), Decision::GiveUp);
        assert_eq!(retry(1, 6000 * MS), Decision::GiveUp);
    }
}
