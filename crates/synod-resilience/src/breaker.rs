//! The circuit breaker: closed, open and half-open, judged over a sliding window of call
//! outcomes.
//!
//! Closed, every call is permitted and its outcome goes into the window. Once the window holds
//! at least `calls_min` calls and the share of failures reaches `failure_rate_percent` (or the
//! share of calls slower than `slow_call_duration` reaches `slow_call_rate_percent`), the
//! breaker opens: every call is rejected at once with the time left until `open_duration` has
//! passed. After that the first look at the breaker makes it half-open: at most
//! `half_open_trials_max` trial calls are permitted. As soon as enough trials have failed (or
//! been slow) that the trials' rate must reach a threshold, whatever the remaining trials do,
//! it opens again; when every trial has come back good, it closes with an empty window. If the
//! trials have not decided within `half_open_duration_max` (a caller lost a permit, or calls
//! hang), it opens again: the breaker never stays half-open.
//!
//! Every permit carries the generation of the state it was issued in (each transition starts a
//! new one), so an outcome that arrives after the breaker has moved on is counted as stale and
//! judged by nobody: a slow call permitted while closed cannot close a half-open breaker.
//!
//! ```
//! use synod_core::{Duration, Instant};
//! use synod_resilience::{BreakerConfig, BreakerState, CircuitBreaker, SlidingWindow};
//!
//! let config = BreakerConfig {
//!     window: SlidingWindow::Count { calls_count: 4 },
//!     calls_min: 4,
//!     ..BreakerConfig::default()
//! };
//! let mut breaker = CircuitBreaker::new(config);
//! let mut now = Instant::ZERO;
//! for _ in 0..4 {
//!     let permit = breaker.try_acquire(now).expect("closed");
//!     breaker.on_failure(now, permit, Duration::from_millis(3));
//!     now += Duration::from_millis(10);
//! }
//! assert_eq!(breaker.state(now), BreakerState::Open);
//! let rejected = breaker.try_acquire(now).unwrap_err();
//! assert!(rejected.retry_after > Duration::ZERO);
//! ```

mod window;

use std::collections::VecDeque;
use std::fmt;

use synod_core::{ConfigError, Duration, Instant, Validate};

pub use window::WindowTotals;
use window::{CallOutcome, CountWindow, TimeWindow};

/// The largest count window: one byte per call, so at most 10 KB per breaker.
pub const WINDOW_CALLS_COUNT_MAX: u32 = 10_000;
/// The most buckets of a time window.
pub const WINDOW_BUCKETS_COUNT_MAX: u32 = 1_000;
/// The narrowest bucket of a time window. Narrower buckets buy no precision worth having for
/// call outcomes and would make a long window cost many buckets.
pub const WINDOW_BUCKET_WIDTH_MIN: Duration = Duration::from_millis(1);
/// The most trial calls of a half-open breaker.
pub const HALF_OPEN_TRIALS_MAX: u32 = 1_000;
/// The longest duration any breaker field may hold; longer is almost certainly a unit mistake.
pub const BREAKER_DURATION_MAX: Duration = Duration::from_secs(24 * 3_600);
/// How many transitions the breaker's log keeps (the oldest is dropped; the counters in
/// [`BreakerStats`] keep counting).
pub const TRANSITIONS_LOG_MAX: usize = 32;

/// Which calls the breaker judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `calls_count` calls that completed.
    Count { calls_count: u32 },
    /// The calls that completed in the last `span`, kept in `buckets_count` buckets; the
    /// newest bucket is partly filled, so the window reaches back between `span` less one
    /// bucket and `span`.
    Time { span: Duration, buckets_count: u32 },
}

/// How a [`CircuitBreaker`] judges calls. [`BreakerConfig::validate`] names a wrong field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub window: SlidingWindow,
    /// The breaker opens when at least this share of the window's calls failed.
    pub failure_rate_percent: u32,
    /// The breaker opens when at least this share of the window's calls were slow.
    pub slow_call_rate_percent: u32,
    /// A call that takes longer than this is slow (whether it failed or not).
    pub slow_call_duration: Duration,
    /// The breaker does not judge a window holding fewer calls than this: three failures of
    /// three calls say little.
    pub calls_min: u32,
    /// How long an open breaker rejects every call before it lets trials through.
    pub open_duration: Duration,
    /// How many trial calls a half-open breaker permits.
    pub half_open_trials_max: u32,
    /// How long the trials may take to decide; then the breaker opens again.
    pub half_open_duration_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            window: SlidingWindow::Count { calls_count: 20 },
            failure_rate_percent: 50,
            // Only a window of nothing but slow calls opens the breaker by default: slowness
            // alone is a weaker sign of a dead node than failures.
            slow_call_rate_percent: 100,
            slow_call_duration: Duration::from_secs(1),
            calls_min: 5,
            open_duration: Duration::from_secs(5),
            half_open_trials_max: 3,
            half_open_duration_max: Duration::from_secs(10),
        }
    }
}

impl BreakerConfig {
    /// Checks every field; the error names the field (without a section: callers add theirs
    /// with [`ConfigError::within`], e.g. `breaker`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_window()?;
        check_within("failure_rate_percent", self.failure_rate_percent, 1, 100)?;
        check_within(
            "slow_call_rate_percent",
            self.slow_call_rate_percent,
            1,
            100,
        )?;
        let (duration_min, duration_max) = (Duration::from_nanos(1), BREAKER_DURATION_MAX);
        check_within(
            "slow_call_duration",
            self.slow_call_duration,
            duration_min,
            duration_max,
        )?;
        let calls_max = match self.window {
            // A count window never holds more calls than its size: calls_min above it would
            // keep the breaker from ever opening.
            SlidingWindow::Count { calls_count } => calls_count,
            SlidingWindow::Time { .. } => u32::MAX,
        };
        check_within("calls_min", self.calls_min, 1, calls_max)?;
        check_within(
            "open_duration",
            self.open_duration,
            duration_min,
            duration_max,
        )?;
        check_within(
            "half_open_trials_max",
            self.half_open_trials_max,
            1,
            HALF_OPEN_TRIALS_MAX,
        )?;
        check_within(
            "half_open_duration_max",
            self.half_open_duration_max,
            duration_min,
            duration_max,
        )
    }

    fn validate_window(&self) -> Result<(), ConfigError> {
        match self.window {
            SlidingWindow::Count { calls_count } => {
                check_within("window.calls_count", calls_count, 1, WINDOW_CALLS_COUNT_MAX)
            }
            SlidingWindow::Time {
                span,
                buckets_count,
            } => {
                check_within(
                    "window.buckets_count",
                    buckets_count,
                    1,
                    WINDOW_BUCKETS_COUNT_MAX,
                )?;
                let span_min = WINDOW_BUCKET_WIDTH_MIN.saturating_mul(u64::from(buckets_count));
                check_within("window.span", span, span_min, BREAKER_DURATION_MAX)
            }
        }
    }
}

impl Validate for BreakerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        BreakerConfig::validate(self)
    }
}

/// Checks `low <= value <= high` with the message `must be in low..=high, got value`.
pub(crate) fn check_within<T: PartialOrd + fmt::Display>(
    field: &str,
    value: T,
    low: T,
    high: T,
) -> Result<(), ConfigError> {
    if value < low || value > high {
        return Err(ConfigError::new(
            field,
            format!("must be in {low}..={high}, got {value}"),
        ));
    }
    Ok(())
}

/// The state of a breaker as callers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The name used in logs and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Leave to make one call. Give it back with [`CircuitBreaker::on_success`],
/// [`CircuitBreaker::on_failure`] or [`CircuitBreaker::release`]. A permit that is never
/// given back costs a half-open breaker one trial, until `half_open_duration_max` reopens it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "give the permit back with on_success, on_failure or release"]
pub struct Permit {
    generation: u64,
    trial: bool,
    acquired_at: Instant,
}

impl Permit {
    /// Whether this is one of a half-open breaker's trial calls.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// When the permit was issued (a caller may measure the call's duration from it).
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }
}

/// A call the breaker refused, and how long until asking again may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// `Open`, or `HalfOpen` when every trial is already out.
    pub state: BreakerState,
    /// Until the open duration ends (open), or the trials' time bound ends (half-open).
    pub retry_after: Duration,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker {}: call rejected, retry after {}",
            self.state, self.retry_after
        )
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    /// Closed to open: the window's failure rate reached the threshold.
    FailureRate {
        failures_count: u64,
        calls_count: u64,
    },
    /// Closed to open: the window's slow-call rate reached the threshold.
    SlowCallRate { slow_count: u64, calls_count: u64 },
    /// Open to half-open: `open_duration` has passed.
    OpenDurationElapsed,
    /// Open to half-open early, at the caller's request ([`CircuitBreaker::force_half_open`]).
    Forced,
    /// Half-open to closed: every trial came back good.
    TrialsSucceeded { trials_count: u32 },
    /// Half-open to open: enough trials failed or were slow to reach a threshold.
    TrialsFailed {
        failed_count: u32,
        slow_count: u32,
        trials_count: u32,
    },
    /// Half-open to open: the trials did not decide within `half_open_duration_max`.
    HalfOpenExpired {
        trials_issued: u32,
        trials_completed: u32,
    },
}

/// One state change, for the breaker's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: TransitionReason,
}

/// Counters a caller can export as metrics. They only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerStats {
    pub calls_permitted: u64,
    pub calls_rejected: u64,
    /// Outcomes reported, by kind (a slow call is also a success or a failure).
    pub calls_succeeded: u64,
    pub calls_failed: u64,
    pub calls_slow: u64,
    /// Permits given back without an outcome.
    pub calls_released: u64,
    /// Outcomes of permits issued before the latest transition: counted, never judged.
    pub outcomes_stale: u64,
    pub transitions_to_open: u64,
    pub transitions_to_half_open: u64,
    pub transitions_to_closed: u64,
}

#[derive(Debug, Clone)]
enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    fn new(config: SlidingWindow) -> Window {
        match config {
            SlidingWindow::Count { calls_count } => {
                Window::Count(CountWindow::new(calls_count as usize))
            }
            SlidingWindow::Time {
                span,
                buckets_count,
            } => Window::Time(TimeWindow::new(span, buckets_count as usize)),
        }
    }

    fn record(&mut self, now: Instant, outcome: CallOutcome) {
        match self {
            Window::Count(window) => window.record(outcome),
            Window::Time(window) => window.record(now, outcome),
        }
    }

    fn totals(&mut self, now: Instant) -> WindowTotals {
        match self {
            Window::Count(window) => window.totals(),
            Window::Time(window) => window.totals(now),
        }
    }

    fn totals_at(&self, now: Instant) -> WindowTotals {
        match self {
            Window::Count(window) => window.totals(),
            Window::Time(window) => window.totals_at(now),
        }
    }

    fn clear(&mut self) {
        match self {
            Window::Count(window) => window.clear(),
            Window::Time(window) => window.clear(),
        }
    }

    fn invariants_exhaustive(&self) {
        match self {
            Window::Count(window) => window.invariants(),
            Window::Time(window) => window.invariants(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Trials {
    deadline: Instant,
    issued: u32,
    completed: u32,
    failed: u32,
    slow: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen(Trials),
}

/// A circuit breaker for calls to one dependency (a node, a disk, a service). Sans-IO: every
/// method takes `now`, nothing reads a clock, and the same inputs give the same states.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    window: Window,
    phase: Phase,
    /// Starts at 0 and grows at every transition; permits carry the one they were issued in.
    generation: u64,
    opened_at_last: Option<Instant>,
    stats: BreakerStats,
    transitions: VecDeque<Transition>,
}

impl CircuitBreaker {
    /// A closed breaker. Panics on a config that [`BreakerConfig::validate`] refuses: check
    /// configs where they are read.
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        if let Err(error) = config.validate() {
            panic!("CircuitBreaker::new: {}", error.within("breaker"));
        }
        CircuitBreaker {
            config,
            window: Window::new(config.window),
            phase: Phase::Closed,
            generation: 0,
            opened_at_last: None,
            stats: BreakerStats::default(),
            transitions: VecDeque::with_capacity(TRANSITIONS_LOG_MAX),
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state at `now`, counting transitions that time alone makes (open to half-open,
    /// half-open to open) although they are recorded only at the next mutating call.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if now >= until => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen(trials) if now >= trials.deadline => BreakerState::Open,
            Phase::HalfOpen(_) => BreakerState::HalfOpen,
        }
    }

    /// When the breaker last opened, if ever.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at_last
    }

    /// The window's totals at `now` (empty unless closed: the window restarts at closing).
    pub fn window_totals(&self, now: Instant) -> WindowTotals {
        self.window.totals_at(now)
    }

    pub fn stats(&self) -> BreakerStats {
        self.stats
    }

    /// The latest transitions, oldest first (at most [`TRANSITIONS_LOG_MAX`]).
    pub fn transitions(&self) -> impl Iterator<Item = &Transition> {
        self.transitions.iter()
    }

    /// Asks to make one call at `now`.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
        self.advance(now);
        let generation = self.generation;
        let result = match &mut self.phase {
            Phase::Closed => Ok(false),
            Phase::Open { until } => Err(Rejected {
                state: BreakerState::Open,
                retry_after: *until - now,
            }),
            Phase::HalfOpen(trials) if trials.issued < self.config.half_open_trials_max => {
                trials.issued += 1;
                Ok(true)
            }
            Phase::HalfOpen(trials) => Err(Rejected {
                state: BreakerState::HalfOpen,
                retry_after: trials.deadline - now,
            }),
        };
        let result = match result {
            Ok(trial) => {
                self.stats.calls_permitted += 1;
                Ok(Permit {
                    generation,
                    trial,
                    acquired_at: now,
                })
            }
            Err(rejected) => {
                self.stats.calls_rejected += 1;
                Err(rejected)
            }
        };
        self.invariants();
        result
    }

    /// The permitted call succeeded after `duration`.
    pub fn on_success(&mut self, now: Instant, permit: Permit, duration: Duration) {
        self.stats.calls_succeeded += 1;
        self.on_outcome(now, permit, duration, false);
    }

    /// The permitted call failed after `duration` (an error that says the dependency is
    /// unwell: a refused connection, a timeout; not a refusal of a bad request).
    pub fn on_failure(&mut self, now: Instant, permit: Permit, duration: Duration) {
        self.stats.calls_failed += 1;
        self.on_outcome(now, permit, duration, true);
    }

    /// Gives a permit back without an outcome (the call was cancelled, or its result says
    /// nothing about the dependency's health). A half-open breaker gets its trial back.
    pub fn release(&mut self, now: Instant, permit: Permit) {
        self.advance(now);
        self.stats.calls_released += 1;
        if permit.generation == self.generation
            && let Phase::HalfOpen(trials) = &mut self.phase
        {
            assert!(permit.trial, "a half-open breaker issues only trials");
            trials.issued -= 1;
        }
        self.invariants();
    }

    /// Makes an open breaker half-open now, before `open_duration` has passed: for a caller
    /// whose every choice is open, that must try one anyway. No effect in other states.
    pub fn force_half_open(&mut self, now: Instant) {
        self.advance(now);
        if let Phase::Open { .. } = self.phase {
            self.enter_half_open(now, TransitionReason::Forced);
        }
        self.invariants();
    }

    fn on_outcome(&mut self, now: Instant, permit: Permit, duration: Duration, failed: bool) {
        self.advance(now);
        let slow = duration > self.config.slow_call_duration;
        self.stats.calls_slow += u64::from(slow);
        if permit.generation != self.generation {
            self.stats.outcomes_stale += 1;
            self.invariants();
            return;
        }
        let outcome = CallOutcome { failed, slow };
        match self.phase {
            Phase::Closed => {
                assert!(!permit.trial, "a closed breaker issues no trials");
                self.window.record(now, outcome);
                self.judge_window(now);
            }
            Phase::HalfOpen(_) => {
                assert!(permit.trial, "a half-open breaker issues only trials");
                self.judge_trial(now, outcome);
            }
            Phase::Open { .. } => unreachable!("an open breaker issues no permits"),
        }
        self.invariants();
    }

    /// Opens the breaker when the closed window's failure or slow-call rate reached its
    /// threshold over at least `calls_min` calls.
    fn judge_window(&mut self, now: Instant) {
        let totals = self.window.totals(now);
        if totals.calls_count < u64::from(self.config.calls_min) {
            return;
        }
        let calls_count = totals.calls_count;
        if reaches(
            totals.failures_count,
            calls_count,
            self.config.failure_rate_percent,
        ) {
            let reason = TransitionReason::FailureRate {
                failures_count: totals.failures_count,
                calls_count,
            };
            self.open(now, reason);
        } else if reaches(
            totals.slow_count,
            calls_count,
            self.config.slow_call_rate_percent,
        ) {
            let reason = TransitionReason::SlowCallRate {
                slow_count: totals.slow_count,
                calls_count,
            };
            self.open(now, reason);
        }
    }

    /// Counts one trial, then reopens once the bad trials reach a threshold over all
    /// `half_open_trials_max` trials (the rate can only grow from there), or closes once every
    /// trial has completed without that.
    fn judge_trial(&mut self, now: Instant, outcome: CallOutcome) {
        let Phase::HalfOpen(trials) = &mut self.phase else {
            unreachable!("judge_trial runs half-open");
        };
        trials.completed += 1;
        trials.failed += u32::from(outcome.failed);
        trials.slow += u32::from(outcome.slow);
        let trials = *trials;
        let trials_count = self.config.half_open_trials_max;
        let failed_enough = reaches(
            u64::from(trials.failed),
            u64::from(trials_count),
            self.config.failure_rate_percent,
        );
        let slow_enough = reaches(
            u64::from(trials.slow),
            u64::from(trials_count),
            self.config.slow_call_rate_percent,
        );
        if failed_enough || slow_enough {
            let reason = TransitionReason::TrialsFailed {
                failed_count: trials.failed,
                slow_count: trials.slow,
                trials_count,
            };
            self.open(now, reason);
        } else if trials.completed == trials_count {
            self.close(now, TransitionReason::TrialsSucceeded { trials_count });
        }
    }

    /// Makes the transitions that time alone causes. One at most: each sets a deadline after
    /// `now`.
    fn advance(&mut self, now: Instant) {
        match self.phase {
            Phase::Open { until } if now >= until => {
                self.enter_half_open(now, TransitionReason::OpenDurationElapsed);
            }
            Phase::HalfOpen(trials) if now >= trials.deadline => {
                let reason = TransitionReason::HalfOpenExpired {
                    trials_issued: trials.issued,
                    trials_completed: trials.completed,
                };
                self.open(now, reason);
            }
            Phase::Closed | Phase::Open { .. } | Phase::HalfOpen(_) => {}
        }
    }

    fn open(&mut self, now: Instant, reason: TransitionReason) {
        let until = now + self.config.open_duration;
        self.transition(now, Phase::Open { until }, reason);
        self.opened_at_last = Some(now);
        self.stats.transitions_to_open += 1;
    }

    fn enter_half_open(&mut self, now: Instant, reason: TransitionReason) {
        let trials = Trials {
            deadline: now + self.config.half_open_duration_max,
            issued: 0,
            completed: 0,
            failed: 0,
            slow: 0,
        };
        self.transition(now, Phase::HalfOpen(trials), reason);
        self.stats.transitions_to_half_open += 1;
    }

    fn close(&mut self, now: Instant, reason: TransitionReason) {
        self.transition(now, Phase::Closed, reason);
        self.stats.transitions_to_closed += 1;
    }

    fn transition(&mut self, now: Instant, phase: Phase, reason: TransitionReason) {
        let from = self.state_recorded();
        self.phase = phase;
        self.generation += 1;
        // A window judges one closed period: what happened before the breaker opened says
        // nothing about the dependency after the trials.
        self.window.clear();
        if self.transitions.len() == TRANSITIONS_LOG_MAX {
            self.transitions.pop_front();
        }
        self.transitions.push_back(Transition {
            at: now,
            from,
            to: self.state_recorded(),
            reason,
        });
    }

    /// The state as recorded, without the transitions time would make.
    fn state_recorded(&self) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen(_) => BreakerState::HalfOpen,
        }
    }

    /// Checks the breaker's state; cheap enough to run after every call.
    pub fn invariants(&self) {
        assert!(self.transitions.len() <= TRANSITIONS_LOG_MAX);
        match self.phase {
            Phase::Closed => {}
            Phase::Open { until } => {
                assert!(
                    self.opened_at_last.is_some(),
                    "open without an opening time"
                );
                let opened_at = self.opened_at_last.expect("checked");
                assert_eq!(until, opened_at + self.config.open_duration);
            }
            Phase::HalfOpen(trials) => {
                assert!(trials.issued <= self.config.half_open_trials_max);
                assert!(trials.completed <= trials.issued, "a trial completed twice");
                assert!(trials.failed <= trials.completed && trials.slow <= trials.completed);
            }
        }
        let stats = &self.stats;
        let transitions_count = stats.transitions_to_open
            + stats.transitions_to_half_open
            + stats.transitions_to_closed;
        assert_eq!(
            transitions_count, self.generation,
            "one generation per transition"
        );
    }

    /// [`CircuitBreaker::invariants`] plus a recount of the window: O(window), for tests.
    pub fn invariants_exhaustive(&self) {
        self.invariants();
        self.window.invariants_exhaustive();
    }
}

/// Whether `count` of `total` reaches `percent` percent, in integers.
fn reaches(count: u64, total: u64, percent: u32) -> bool {
    total > 0 && count.saturating_mul(100) >= total.saturating_mul(u64::from(percent))
}

#[cfg(test)]
mod tests;
