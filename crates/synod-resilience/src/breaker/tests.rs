//! Unit tests of every breaker transition: each builds a breaker in a known state, feeds
//! exact calls and asserts the new state, the log and the counters.

use synod_core::{Duration, Instant};

use super::*;

const FAST: Duration = Duration::from_millis(5);
const SLOW: Duration = Duration::from_millis(500);
const OPEN_DURATION: Duration = Duration::from_secs(10);
const HALF_OPEN_DURATION_MAX: Duration = Duration::from_secs(3);

fn at_millis(millis: u64) -> Instant {
    Instant::from_nanos(millis * 1_000_000)
}

/// A count window of 10, opening at 50% failures or 50% slow calls (over 100 ms) once 4 calls
/// are in; open for 10 s; 2 trials within 3 s.
fn config() -> BreakerConfig {
    BreakerConfig {
        window: SlidingWindow::Count { calls_count: 10 },
        failure_rate_percent: 50,
        slow_call_rate_percent: 50,
        slow_call_duration: Duration::from_millis(100),
        calls_min: 4,
        open_duration: OPEN_DURATION,
        half_open_trials_max: 2,
        half_open_duration_max: HALF_OPEN_DURATION_MAX,
    }
}

#[derive(Debug, Clone, Copy)]
enum Call {
    Ok,
    Fail,
    SlowOk,
}

/// Makes one call at `now` and reports its outcome; panics if the breaker rejects it.
fn call(breaker: &mut CircuitBreaker, now: Instant, kind: Call) {
    let permit = breaker
        .try_acquire(now)
        .expect("the breaker permits the call");
    match kind {
        Call::Ok => breaker.on_success(now, permit, FAST),
        Call::Fail => breaker.on_failure(now, permit, FAST),
        Call::SlowOk => breaker.on_success(now, permit, SLOW),
    }
    breaker.invariants_exhaustive();
}

fn calls(breaker: &mut CircuitBreaker, now: Instant, kinds: &[Call]) {
    for kind in kinds {
        call(breaker, now, *kind);
    }
}

fn last_transition(breaker: &CircuitBreaker) -> Transition {
    *breaker.transitions().last().expect("a transition happened")
}

/// A breaker that opened at `at_millis(0)` after four failures.
fn opened() -> CircuitBreaker {
    let mut breaker = CircuitBreaker::new(config());
    calls(&mut breaker, at_millis(0), &[Call::Fail; 4]);
    assert_eq!(breaker.state(at_millis(0)), BreakerState::Open);
    breaker
}

/// A breaker that went half-open at `at_millis(10_000)`, no trial issued yet.
fn half_opened() -> CircuitBreaker {
    let mut breaker = opened();
    let now = at_millis(10_000);
    breaker.force_half_open(at_millis(10_000));
    assert_eq!(breaker.state(now), BreakerState::HalfOpen);
    assert_eq!(
        last_transition(&breaker).reason,
        TransitionReason::OpenDurationElapsed
    );
    breaker
}

#[test]
fn closed_opens_on_failure_rate() {
    // Checks the failure-rate table over a window of 10 with calls_min 4: the breaker opens
    // exactly when failures reach 50% of the calls in the window.
    let cases: [(&[Call], bool); 5] = [
        (&[Call::Ok, Call::Ok, Call::Fail, Call::Fail], true),
        (&[Call::Ok, Call::Ok, Call::Ok, Call::Fail], false),
        (
            &[Call::Ok, Call::Ok, Call::Ok, Call::Fail, Call::Fail],
            false,
        ),
        (
            &[
                Call::Ok,
                Call::Ok,
                Call::Ok,
                Call::Fail,
                Call::Fail,
                Call::Fail,
            ],
            true,
        ),
        (&[Call::Fail, Call::Fail, Call::Fail, Call::Fail], true),
    ];
    for (sequence, opens) in cases {
        let mut breaker = CircuitBreaker::new(config());
        calls(&mut breaker, at_millis(1), sequence);
        let expected = if opens {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        assert_eq!(breaker.state(at_millis(1)), expected, "{sequence:?}");
        if opens {
            let transition = last_transition(&breaker);
            assert_eq!(
                (transition.from, transition.to),
                (BreakerState::Closed, BreakerState::Open)
            );
            assert!(matches!(
                transition.reason,
                TransitionReason::FailureRate { .. }
            ));
            assert_eq!(breaker.stats().transitions_to_open, 1);
            assert_eq!(breaker.opened_at(), Some(at_millis(1)));
        }
    }
}

#[test]
fn closed_opens_on_slow_call_rate() {
    // Checks that successful but slow calls open the breaker once they reach 50% of the
    // window, with the slow-call reason, and that slow failures count as slow.
    let mut breaker = CircuitBreaker::new(config());
    calls(
        &mut breaker,
        at_millis(1),
        &[Call::Ok, Call::SlowOk, Call::Ok],
    );
    assert_eq!(breaker.state(at_millis(1)), BreakerState::Closed);
    call(&mut breaker, at_millis(1), Call::SlowOk);
    assert_eq!(breaker.state(at_millis(1)), BreakerState::Open);
    assert_eq!(
        last_transition(&breaker).reason,
        TransitionReason::SlowCallRate {
            slow_count: 2,
            calls_count: 4
        }
    );
    assert_eq!(breaker.stats().calls_slow, 2);
    assert_eq!(breaker.stats().calls_succeeded, 4);
}

#[test]
fn no_trip_below_calls_min() {
    // Checks the minimum-calls rule: three failures out of three calls do not open a breaker
    // with calls_min 4, the fourth call (a success) does at 75%.
    let mut breaker = CircuitBreaker::new(config());
    calls(&mut breaker, at_millis(1), &[Call::Fail; 3]);
    assert_eq!(breaker.state(at_millis(1)), BreakerState::Closed);
    assert_eq!(breaker.window_totals(at_millis(1)).failures_count, 3);
    call(&mut breaker, at_millis(1), Call::Ok);
    assert_eq!(breaker.state(at_millis(1)), BreakerState::Open);
    assert_eq!(
        last_transition(&breaker).reason,
        TransitionReason::FailureRate {
            failures_count: 3,
            calls_count: 4
        }
    );
}

#[test]
fn open_rejects_until_the_open_duration_passes_then_half_opens() {
    // Checks that an open breaker rejects with the time left, and becomes half-open exactly
    // when open_duration has passed (seen by state() first, recorded at the next call).
    let mut breaker = opened();
    let rejected = breaker.try_acquire(at_millis(4_000)).unwrap_err();
    assert_eq!(
        rejected,
        Rejected {
            state: BreakerState::Open,
            retry_after: Duration::from_millis(6_000)
        }
    );
    assert_eq!(breaker.stats().calls_rejected, 1);
    assert_eq!(breaker.state(at_millis(9_999)), BreakerState::Open);
    assert_eq!(breaker.state(at_millis(10_000)), BreakerState::HalfOpen);
    let permit = breaker.try_acquire(at_millis(10_000)).unwrap();
    assert!(permit.is_trial());
    let transition = last_transition(&breaker);
    assert_eq!(transition.at, at_millis(10_000));
    assert_eq!(
        (transition.from, transition.to, transition.reason),
        (
            BreakerState::Open,
            BreakerState::HalfOpen,
            TransitionReason::OpenDurationElapsed
        )
    );
    breaker.release(at_millis(10_000), permit);
}

#[test]
fn half_open_closes_when_every_trial_succeeds() {
    // Checks that two good trials close the breaker with an empty window, and that the first
    // good trial alone does not.
    let mut breaker = half_opened();
    call(&mut breaker, at_millis(10_000), Call::Ok);
    assert_eq!(breaker.state(at_millis(10_000)), BreakerState::HalfOpen);
    call(&mut breaker, at_millis(10_100), Call::Ok);
    assert_eq!(breaker.state(at_millis(10_100)), BreakerState::Closed);
    assert_eq!(
        last_transition(&breaker).reason,
        TransitionReason::TrialsSucceeded { trials_count: 2 }
    );
    assert_eq!(
        breaker.window_totals(at_millis(10_100)),
        WindowTotals::default()
    );
    assert_eq!(breaker.stats().transitions_to_closed, 1);
}

#[test]
fn half_open_reopens_on_bad_trials() {
    // Checks the trial table with 2 trials and 50% thresholds: one failed or slow trial
    // reaches 50% of the trials and reopens at once; good trials close.
    let cases: [(&[Call], BreakerState); 4] = [
        (&[Call::Fail], BreakerState::Open),
        (&[Call::Ok, Call::Fail], BreakerState::Open),
        (&[Call::SlowOk], BreakerState::Open),
        (&[Call::Ok, Call::Ok], BreakerState::Closed),
    ];
    for (sequence, expected) in cases {
        let mut breaker = half_opened();
        calls(&mut breaker, at_millis(10_500), sequence);
        assert_eq!(breaker.state(at_millis(10_500)), expected, "{sequence:?}");
        if expected == BreakerState::Open {
            let transition = last_transition(&breaker);
            assert!(
                matches!(transition.reason, TransitionReason::TrialsFailed { .. }),
                "{transition:?}"
            );
            assert_eq!(breaker.opened_at(), Some(at_millis(10_500)));
            let rejected = breaker.try_acquire(at_millis(10_500)).unwrap_err();
            assert_eq!(rejected.retry_after, OPEN_DURATION);
        }
    }
}

#[test]
fn half_open_waits_for_enough_bad_trials_under_a_higher_threshold() {
    // Checks that with 4 trials and a 50% failure threshold one failed trial does not reopen
    // (25%), a second one does (50%), before the remaining trials report.
    let mut breaker = CircuitBreaker::new(BreakerConfig {
        half_open_trials_max: 4,
        ..config()
    });
    calls(&mut breaker, at_millis(0), &[Call::Fail; 4]);
    let now = at_millis(10_000);
    call(&mut breaker, now, Call::Fail);
    assert_eq!(breaker.state(now), BreakerState::HalfOpen);
    call(&mut breaker, now, Call::Ok);
    assert_eq!(breaker.state(now), BreakerState::HalfOpen);
    call(&mut breaker, now, Call::Fail);
    assert_eq!(breaker.state(now), BreakerState::Open);
    assert_eq!(
        last_transition(&breaker).reason,
        TransitionReason::TrialsFailed {
            failed_count: 2,
            slow_count: 0,
            trials_count: 4
        }
    );
}

#[test]
fn half_open_reopens_when_its_time_bound_passes_with_trials_outstanding() {
    // Checks that trials still out when half_open_duration_max passes send the breaker back
    // to open (it never stays half-open), and that their late outcomes are stale.
    let mut breaker = half_opened();
    let first = breaker.try_acquire(at_millis(10_000)).unwrap();
    let second = breaker.try_acquire(at_millis(10_000)).unwrap();
    assert_eq!(breaker.state(at_millis(12_999)), BreakerState::HalfOpen);
    assert_eq!(breaker.state(at_millis(13_000)), BreakerState::Open);
    breaker.on_success(at_millis(13_000), first, FAST);
    let transition = last_transition(&breaker);
    assert_eq!(transition.at, at_millis(13_000));
    assert_eq!(
        transition.reason,
        TransitionReason::HalfOpenExpired {
            trials_issued: 2,
            trials_completed: 0
        }
    );
    assert_eq!(breaker.stats().outcomes_stale, 1);
    breaker.on_success(at_millis(13_001), second, FAST);
    assert_eq!(breaker.stats().outcomes_stale, 2);
    assert_eq!(breaker.state(at_millis(13_001)), BreakerState::Open);
    assert_eq!(breaker.opened_at(), Some(at_millis(13_000)));
    breaker.invariants_exhaustive();
}

#[test]
fn half_open_rejects_calls_beyond_the_trial_limit() {
    // Checks that a half-open breaker permits exactly half_open_trials_max trials, rejects the
    // next with the time left in its bound, and permits again when a trial is released.
    let mut breaker = half_opened();
    let now = at_millis(10_000);
    let first = breaker.try_acquire(now).unwrap();
    let second = breaker.try_acquire(now).unwrap();
    let rejected = breaker.try_acquire(at_millis(11_000)).unwrap_err();
    assert_eq!(
        rejected,
        Rejected {
            state: BreakerState::HalfOpen,
            retry_after: Duration::from_millis(2_000)
        }
    );
    breaker.release(at_millis(11_000), first);
    let third = breaker.try_acquire(at_millis(11_000)).unwrap();
    assert!(third.is_trial());
    breaker.on_success(at_millis(11_000), second, FAST);
    breaker.on_success(at_millis(11_000), third, FAST);
    assert_eq!(breaker.state(at_millis(11_000)), BreakerState::Closed);
    let stats = breaker.stats();
    assert_eq!(
        (
            stats.calls_rejected,
            stats.calls_released,
            stats.calls_permitted
        ),
        (1, 1, 4 + 3)
    );
}

#[test]
fn outcomes_of_an_earlier_state_are_not_judged() {
    // Checks that a call permitted while closed and reported after the breaker opened and
    // half-opened is stale: it neither counts as a trial nor closes the breaker.
    let mut breaker = CircuitBreaker::new(config());
    let straggler = breaker.try_acquire(at_millis(0)).unwrap();
    calls(&mut breaker, at_millis(0), &[Call::Fail; 4]);
    breaker.force_half_open(at_millis(1));
    assert_eq!(last_transition(&breaker).reason, TransitionReason::Forced);
    breaker.on_success(at_millis(2), straggler, FAST);
    assert_eq!(breaker.stats().outcomes_stale, 1);
    assert_eq!(breaker.state(at_millis(2)), BreakerState::HalfOpen);
    calls(&mut breaker, at_millis(2), &[Call::Ok, Call::Ok]);
    assert_eq!(breaker.state(at_millis(2)), BreakerState::Closed);
}

#[test]
fn count_window_evicts_the_oldest_calls() {
    // Checks that a count window judges only the last 10 calls: three early failures followed
    // by ten successes leave a clean window, so four later failures (4 of 10) do not trip and
    // a fifth (5 of 10) does.
    let mut breaker = CircuitBreaker::new(config());
    calls(&mut breaker, at_millis(1), &[Call::Ok; 4]);
    calls(&mut breaker, at_millis(1), &[Call::Fail; 3]);
    calls(&mut breaker, at_millis(1), &[Call::Ok; 10]);
    assert_eq!(breaker.window_totals(at_millis(1)).failures_count, 0);
    calls(&mut breaker, at_millis(1), &[Call::Fail; 4]);
    assert_eq!(breaker.state(at_millis(1)), BreakerState::Closed);
    call(&mut breaker, at_millis(1), Call::Fail);
    assert_eq!(breaker.state(at_millis(1)), BreakerState::Open);
    assert_eq!(
        last_transition(&breaker).reason,
        TransitionReason::FailureRate {
            failures_count: 5,
            calls_count: 10
        }
    );
}

#[test]
fn time_window_evicts_calls_older_than_its_span() {
    // Checks a 10 s window in 10 buckets: failures older than the span leave it, so the same
    // failures spread over time do not trip, while close together they do.
    let time_config = BreakerConfig {
        window: SlidingWindow::Time {
            span: Duration::from_secs(10),
            buckets_count: 10,
        },
        ..config()
    };
    let mut spread = CircuitBreaker::new(time_config);
    calls(
        &mut spread,
        at_millis(0),
        &[Call::Fail, Call::Fail, Call::Ok],
    );
    calls(&mut spread, at_millis(10_000), &[Call::Ok, Call::Ok]);
    assert_eq!(spread.window_totals(at_millis(10_000)).calls_count, 2);
    calls(&mut spread, at_millis(10_500), &[Call::Fail, Call::Ok]);
    assert_eq!(spread.state(at_millis(10_500)), BreakerState::Closed);
    assert_eq!(spread.window_totals(at_millis(10_500)).failures_count, 1);

    let mut close = CircuitBreaker::new(time_config);
    calls(
        &mut close,
        at_millis(0),
        &[Call::Fail, Call::Fail, Call::Ok],
    );
    calls(&mut close, at_millis(9_999), &[Call::Ok]);
    assert_eq!(close.state(at_millis(9_999)), BreakerState::Open);
}

#[test]
fn validation_names_the_field() {
    // Checks that each bad setting is refused with its field's name and the accepted range.
    type Change = fn(&mut BreakerConfig);
    let cases: [(Change, &str); 8] = [
        (
            |config| config.failure_rate_percent = 150,
            "breaker.failure_rate_percent must be in 1..=100, got 150",
        ),
        (
            |config| config.slow_call_rate_percent = 0,
            "breaker.slow_call_rate_percent must be in 1..=100, got 0",
        ),
        (
            |config| config.window = SlidingWindow::Count { calls_count: 0 },
            "breaker.window.calls_count must be in 1..=10000, got 0",
        ),
        (
            |config| {
                config.window = SlidingWindow::Time {
                    span: Duration::ZERO,
                    buckets_count: 10,
                }
            },
            "breaker.window.span must be in 10.000ms..=86400.000s, got 0ns",
        ),
        (
            |config| config.half_open_trials_max = 0,
            "breaker.half_open_trials_max must be in 1..=1000, got 0",
        ),
        (
            |config| config.calls_min = 11,
            "breaker.calls_min must be in 1..=10, got 11",
        ),
        (
            |config| config.open_duration = Duration::ZERO,
            "breaker.open_duration must be in 1ns..=86400.000s, got 0ns",
        ),
        (
            |config| config.half_open_duration_max = Duration::ZERO,
            "breaker.half_open_duration_max must be in 1ns..=86400.000s, got 0ns",
        ),
    ];
    assert_eq!(config().validate(), Ok(()));
    assert_eq!(BreakerConfig::default().validate(), Ok(()));
    for (change, message) in cases {
        let mut changed = config();
        change(&mut changed);
        let error = changed.validate().unwrap_err().within("breaker");
        assert_eq!(error.to_string(), format!("config: {message}"));
    }
}

#[test]
fn the_transition_log_is_bounded() {
    // Checks that the log keeps the latest TRANSITIONS_LOG_MAX transitions while the counters
    // keep counting every one.
    let mut breaker = CircuitBreaker::new(config());
    let mut now = at_millis(0);
    for _ in 0..TRANSITIONS_LOG_MAX {
        calls(&mut breaker, now, &[Call::Fail; 4]);
        breaker.force_half_open(now);
        calls(&mut breaker, now, &[Call::Ok; 2]);
        now += Duration::from_millis(1);
    }
    let stats = breaker.stats();
    assert_eq!(stats.transitions_to_open, TRANSITIONS_LOG_MAX as u64);
    assert_eq!(stats.transitions_to_closed, TRANSITIONS_LOG_MAX as u64);
    assert_eq!(breaker.transitions().count(), TRANSITIONS_LOG_MAX);
    assert_eq!(last_transition(&breaker).to, BreakerState::Closed);
}

/// One seeded run of random calls, outcomes, releases, lost permits, forcing and time steps.
/// Returns the breaker's log and counters, for the determinism check.
fn sweep_one_seed(seed: u64) -> (Vec<Transition>, BreakerStats) {
    let mut prng = synod_core::Prng::from_seed(seed);
    let window = if seed.is_multiple_of(2) {
        SlidingWindow::Count { calls_count: 8 }
    } else {
        SlidingWindow::Time {
            span: Duration::from_secs(4),
            buckets_count: 8,
        }
    };
    let config = BreakerConfig {
        window,
        half_open_trials_max: 3,
        ..config()
    };
    let mut breaker = CircuitBreaker::new(config);
    let mut now = Instant::ZERO;
    let mut permits: Vec<Permit> = Vec::new();
    const PERMITS_HELD_MAX: usize = 16;
    for _ in 0..2_000 {
        match prng.below(100) {
            0..=34 => match breaker.try_acquire(now) {
                Ok(permit) if permits.len() < PERMITS_HELD_MAX => permits.push(permit),
                Ok(permit) => breaker.release(now, permit),
                Err(rejected) => {
                    let bound = OPEN_DURATION.max(HALF_OPEN_DURATION_MAX);
                    assert!(rejected.retry_after <= bound, "{rejected:?}");
                    assert_ne!(rejected.state, BreakerState::Closed);
                }
            },
            35..=69 if !permits.is_empty() => {
                let permit = permits.swap_remove(prng.index(permits.len()));
                let duration = if prng.chance(0.2) { SLOW } else { FAST };
                if prng.chance(0.4) {
                    breaker.on_failure(now, permit, duration);
                } else {
                    breaker.on_success(now, permit, duration);
                }
            }
            70..=77 if !permits.is_empty() => {
                let permit = permits.swap_remove(prng.index(permits.len()));
                breaker.release(now, permit);
            }
            // A caller that loses its permit: only the half-open time bound recovers it.
            78..=79 if !permits.is_empty() => {
                let _lost = permits.swap_remove(prng.index(permits.len()));
            }
            80..=81 => breaker.force_half_open(now),
            _ => now += Duration::from_millis(prng.below(1_500)),
        }
        breaker.invariants_exhaustive();
        let last = breaker.transitions().last().copied();
        if breaker.state(now) == BreakerState::HalfOpen
            && let Some(transition) = last.filter(|last| last.to == BreakerState::HalfOpen)
        {
            assert!(
                now - transition.at < HALF_OPEN_DURATION_MAX,
                "half-open since {:?} at {now:?}",
                transition.at
            );
        }
    }
    (breaker.transitions().copied().collect(), breaker.stats())
}

#[test]
fn random_runs_keep_the_invariants_and_never_stay_half_open() {
    // Checks, over seeded random runs with both window kinds, lost permits and forced
    // half-opens, that the invariants (with a recount of the window) hold after every call,
    // that rejections carry a bounded retry_after, that no breaker is half-open longer than
    // half_open_duration_max, and that a seed replays to the same log and counters. Replay
    // one seed with SYNOD_SEED.
    let seeds: Vec<u64> = match std::env::var("SYNOD_SEED") {
        Ok(seed) => vec![seed.parse().expect("SYNOD_SEED must be a u64")],
        Err(_) => (0..40).collect(),
    };
    for seed in seeds {
        let run = std::panic::catch_unwind(|| {
            let first = sweep_one_seed(seed);
            assert!(first.1.transitions_to_open > 0, "seed {seed} never opened");
            assert_eq!(
                first,
                sweep_one_seed(seed),
                "the same seed gave another run"
            );
        });
        if let Err(panic) = run {
            eprintln!(
                "seed {seed} failed; replay with: SYNOD_SEED={seed} cargo test -p \
                 synod-resilience random_runs_keep_the_invariants_and_never_stay_half_open"
            );
            std::panic::resume_unwind(panic);
        }
    }
}
