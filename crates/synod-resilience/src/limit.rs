//! An adaptive concurrency limit in the spirit of Netflix concurrency-limits' Gradient2.
//!
//! The limit is the number of calls allowed in flight at once. Completed calls are gathered
//! into a sample window (at least `window_samples_min` calls and `window_duration_min` long);
//! when a window closes, its average latency is the short-term round-trip time (RTT). An
//! exponential average of those, over about `long_window_samples` windows, is the long-term
//! RTT: the latency the dependency gives when it is not queueing. Then
//!
//! ```text
//! gradient  = clamp(rtt_tolerance * rtt_long / rtt_short, 0.5, 1.0)
//! estimate  = limit * gradient + queue_size
//! limit     = clamp(limit * (1 - smoothing) + estimate * smoothing, limit_min, limit_max)
//! ```
//!
//! While latency stays within the tolerance the gradient is 1 and the limit grows by
//! `queue_size * smoothing` per window; when latency rises past it the gradient falls below 1
//! and the limit shrinks (by at most half per window, so one outlier cannot collapse it).
//! A window with a dropped call (a timeout, a refusal for overload) multiplies the limit by
//! `drop_backoff_percent` instead, as Vegas and AIMD do. Two details come from Gradient2: the
//! limit does not grow while the caller uses less than half of it (an idle caller learns
//! nothing about capacity), and when the long RTT is more than twice the short one (latency
//! recovered after a long overload) the long RTT decays faster, by 5% a window.
//!
//! The arithmetic is `f64`: IEEE operations are exactly reproducible, so the same inputs give
//! the same limits on every machine.

use synod_core::{ConfigError, Duration, Instant, Validate};

use crate::breaker::check_within;

/// The largest limit a config may set.
pub const LIMIT_MAX: u32 = 100_000;
/// The most samples a window may ask for before it closes.
pub const WINDOW_SAMPLES_MAX: u32 = 100_000;
/// The longest average the long-term RTT may take.
pub const LONG_WINDOW_SAMPLES_MAX: u32 = 100_000;
/// The longest a window may be asked to last.
pub const WINDOW_DURATION_MAX: Duration = Duration::from_secs(3_600);
/// The smallest gradient: one window can at most halve the limit.
const GRADIENT_MIN: f64 = 0.5;
/// When the long RTT exceeds the short one by this factor, it decays by `LONG_RTT_DECAY`.
const LONG_RTT_RECOVERY_RATIO: f64 = 2.0;
const LONG_RTT_DECAY: f64 = 0.95;

/// How a [`ConcurrencyLimit`] adapts. [`LimitConfig::validate`] names a wrong field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    pub limit_initial: u32,
    pub limit_min: u32,
    pub limit_max: u32,
    /// How much of each new estimate the limit takes, in percent (Gradient2: 20).
    pub smoothing_percent: u32,
    /// How far the short RTT may exceed the long one before the limit shrinks, in percent of
    /// the long RTT (150: half again as slow).
    pub rtt_tolerance_percent: u32,
    /// The long-term RTT is an exponential average over about this many windows.
    pub long_window_samples: u32,
    /// Headroom added to the estimate at each window: the limit's growth step.
    pub queue_size: u32,
    /// A window with a dropped call multiplies the limit by this, in percent.
    pub drop_backoff_percent: u32,
    /// A window closes once it holds this many completed calls ...
    pub window_samples_min: u32,
    /// ... and has lasted this long.
    pub window_duration_min: Duration,
}

impl Default for LimitConfig {
    fn default() -> LimitConfig {
        LimitConfig {
            limit_initial: 20,
            limit_min: 4,
            limit_max: 1_000,
            smoothing_percent: 20,
            rtt_tolerance_percent: 150,
            long_window_samples: 600,
            queue_size: 4,
            drop_backoff_percent: 90,
            window_samples_min: 10,
            window_duration_min: Duration::from_millis(100),
        }
    }
}

impl LimitConfig {
    /// Checks every field; the error names the field (callers add their section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_within("limit_min", self.limit_min, 1, LIMIT_MAX)?;
        check_within("limit_max", self.limit_max, self.limit_min, LIMIT_MAX)?;
        check_within(
            "limit_initial",
            self.limit_initial,
            self.limit_min,
            self.limit_max,
        )?;
        check_within("smoothing_percent", self.smoothing_percent, 1, 100)?;
        check_within(
            "rtt_tolerance_percent",
            self.rtt_tolerance_percent,
            100,
            1_000,
        )?;
        check_within(
            "long_window_samples",
            self.long_window_samples,
            1,
            LONG_WINDOW_SAMPLES_MAX,
        )?;
        check_within("queue_size", self.queue_size, 0, self.limit_max)?;
        check_within("drop_backoff_percent", self.drop_backoff_percent, 1, 99)?;
        check_within(
            "window_samples_min",
            self.window_samples_min,
            1,
            WINDOW_SAMPLES_MAX,
        )?;
        check_within(
            "window_duration_min",
            self.window_duration_min,
            Duration::ZERO,
            WINDOW_DURATION_MAX,
        )
    }
}

impl Validate for LimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        LimitConfig::validate(self)
    }
}

/// Leave to have one call in flight. Give it back with [`ConcurrencyLimit::release`] or
/// [`ConcurrencyLimit::release_ignored`]; a token never given back holds its slot forever.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "give the token back with release or release_ignored"]
pub struct Token {
    /// Calls in flight when it was issued, itself included.
    inflight: u32,
    acquired_at: Instant,
}

impl Token {
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }
}

/// Counters a caller can export as metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitStats {
    pub acquired: u64,
    pub rejected: u64,
    pub released: u64,
    pub dropped: u64,
    pub ignored: u64,
    /// Windows closed, each one an update of the limit.
    pub updates: u64,
}

/// The calls completed since the last update.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SampleWindow {
    started_at: Option<Instant>,
    samples_count: u32,
    rtt_sum_nanos: f64,
    inflight_max: u32,
    dropped: bool,
}

impl SampleWindow {
    const EMPTY: SampleWindow = SampleWindow {
        started_at: None,
        samples_count: 0,
        rtt_sum_nanos: 0.0,
        inflight_max: 0,
        dropped: false,
    };
}

/// The adaptive limit. Sans-IO: the caller reports each call's latency.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    config: LimitConfig,
    /// The estimate, always within `[limit_min, limit_max]`.
    limit: f64,
    inflight: u32,
    rtt_long_nanos: Option<f64>,
    rtt_short_nanos: Option<f64>,
    window: SampleWindow,
    stats: LimitStats,
}

impl ConcurrencyLimit {
    /// Panics on a config that [`LimitConfig::validate`] refuses.
    pub fn new(config: LimitConfig) -> ConcurrencyLimit {
        if let Err(error) = config.validate() {
            panic!("ConcurrencyLimit::new: {}", error.within("limit"));
        }
        ConcurrencyLimit {
            config,
            limit: f64::from(config.limit_initial),
            inflight: 0,
            rtt_long_nanos: None,
            rtt_short_nanos: None,
            window: SampleWindow::EMPTY,
            stats: LimitStats::default(),
        }
    }

    /// The current limit on calls in flight.
    pub fn limit(&self) -> u32 {
        // The estimate stays within [limit_min, limit_max], so the cast cannot saturate.
        self.limit.floor() as u32
    }

    pub fn inflight(&self) -> u32 {
        self.inflight
    }

    /// The long-term RTT, once a window has closed.
    pub fn rtt_long(&self) -> Option<Duration> {
        self.rtt_long_nanos.map(nanos_to_duration)
    }

    /// The short-term RTT of the latest window.
    pub fn rtt_short(&self) -> Option<Duration> {
        self.rtt_short_nanos.map(nanos_to_duration)
    }

    pub fn stats(&self) -> LimitStats {
        self.stats
    }

    /// Asks to start one call at `now`; `None` when the calls in flight are at the limit.
    pub fn acquire(&mut self, now: Instant) -> Option<Token> {
        if self.inflight >= self.limit() {
            self.stats.rejected += 1;
            return None;
        }
        self.inflight += 1;
        self.stats.acquired += 1;
        self.invariants();
        Some(Token {
            inflight: self.inflight,
            acquired_at: now,
        })
    }

    /// The call finished at `now` after `latency`; `dropped` when it failed in a way that
    /// signals overload (a timeout, a refusal).
    pub fn release(&mut self, now: Instant, token: Token, latency: Duration, dropped: bool) {
        self.release_slot();
        self.stats.released += 1;
        self.stats.dropped += u64::from(dropped);
        let window = &mut self.window;
        window.started_at.get_or_insert(token.acquired_at.min(now));
        window.samples_count += 1;
        window.rtt_sum_nanos += latency.as_nanos() as f64;
        window.inflight_max = window.inflight_max.max(token.inflight);
        window.dropped |= dropped;
        let started_at = window.started_at.expect("set above");
        let samples_enough = window.samples_count >= self.config.window_samples_min;
        if samples_enough && now - started_at >= self.config.window_duration_min {
            let closed = std::mem::replace(&mut self.window, SampleWindow::EMPTY);
            self.update(closed);
        }
        self.invariants();
    }

    /// The call ended without a latency worth learning from (cancelled by its caller).
    pub fn release_ignored(&mut self, _token: Token) {
        self.release_slot();
        self.stats.ignored += 1;
        self.invariants();
    }

    fn release_slot(&mut self) {
        assert!(self.inflight > 0, "a token released with nothing in flight");
        self.inflight -= 1;
    }

    /// Moves the limit after a window: back off on a drop, else follow the RTT gradient.
    fn update(&mut self, window: SampleWindow) {
        assert!(window.samples_count > 0, "an empty window never closes");
        self.stats.updates += 1;
        let (limit_min, limit_max) = (
            f64::from(self.config.limit_min),
            f64::from(self.config.limit_max),
        );
        // Latencies of zero would divide by zero below; a nanosecond is "instant" enough.
        let rtt_short = (window.rtt_sum_nanos / f64::from(window.samples_count)).max(1.0);
        self.rtt_short_nanos = Some(rtt_short);
        let rtt_long = self.update_rtt_long(rtt_short);
        if window.dropped {
            let backoff = f64::from(self.config.drop_backoff_percent) / 100.0;
            self.limit = (self.limit * backoff).clamp(limit_min, limit_max);
            return;
        }
        if f64::from(window.inflight_max) * 2.0 < self.limit {
            // The caller used less than half the limit: latency says nothing about capacity.
            return;
        }
        let tolerance = f64::from(self.config.rtt_tolerance_percent) / 100.0;
        let gradient = (tolerance * rtt_long / rtt_short).clamp(GRADIENT_MIN, 1.0);
        let estimate = self.limit * gradient + f64::from(self.config.queue_size);
        let smoothing = f64::from(self.config.smoothing_percent) / 100.0;
        let limit = self.limit * (1.0 - smoothing) + estimate * smoothing;
        self.limit = limit.clamp(limit_min, limit_max);
    }

    fn update_rtt_long(&mut self, rtt_short: f64) -> f64 {
        let alpha = 2.0 / (f64::from(self.config.long_window_samples) + 1.0);
        let mut rtt_long = match self.rtt_long_nanos {
            None => rtt_short,
            Some(rtt_long) => rtt_long + alpha * (rtt_short - rtt_long),
        };
        if rtt_long / rtt_short > LONG_RTT_RECOVERY_RATIO {
            rtt_long *= LONG_RTT_DECAY;
        }
        self.rtt_long_nanos = Some(rtt_long);
        rtt_long
    }

    /// Checks the limit's state; cheap enough to run after every call.
    pub fn invariants(&self) {
        let (limit_min, limit_max) = (self.config.limit_min, self.config.limit_max);
        assert!(
            self.limit >= f64::from(limit_min) && self.limit <= f64::from(limit_max),
            "limit {} outside [{limit_min}, {limit_max}]",
            self.limit
        );
        let outstanding = self.stats.acquired - self.stats.released - self.stats.ignored;
        assert_eq!(outstanding, u64::from(self.inflight), "tokens lost count");
    }
}

fn nanos_to_duration(nanos: f64) -> Duration {
    Duration::from_nanos(nanos.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Windows of one call, no minimum duration: every release updates the limit.
    fn config() -> LimitConfig {
        LimitConfig {
            limit_initial: 20,
            limit_min: 5,
            limit_max: 50,
            window_samples_min: 1,
            window_duration_min: Duration::ZERO,
            ..LimitConfig::default()
        }
    }

    /// One round of a saturating caller: takes every slot the limit gives, then releases
    /// them all with `latency_ms` at 1 ms later. Returns how many calls ran.
    fn saturate(limit: &mut ConcurrencyLimit, now: &mut Instant, latency_ms: u64) -> u32 {
        let mut tokens = Vec::new();
        while let Some(token) = limit.acquire(*now) {
            tokens.push(token);
            assert!(
                tokens.len() <= LIMIT_MAX as usize,
                "the limit bounds the loop"
            );
        }
        *now += Duration::from_millis(1);
        let count = tokens.len() as u32;
        for token in tokens {
            limit.release(*now, token, Duration::from_nanos(latency_ms * MS), false);
        }
        count
    }

    #[test]
    fn limit_follows_latency_within_its_bounds() {
        // Checks the table of latency patterns under a saturating caller: flat latency grows
        // the limit to limit_max; latency that rises threefold shrinks it to less than half
        // within five rounds; a hundredfold spike drives it to limit_min; a spike that lasts
        // becomes the new normal (the long RTT catches up) and the limit grows back. It never
        // leaves [limit_min, limit_max].
        let flat: Vec<u64> = vec![10; 200];
        let mut rising = vec![10; 100];
        rising.extend([30; 5]);
        let mut spike = vec![10; 100];
        spike.extend([1_000; 20]);
        let mut new_normal = vec![10; 100];
        new_normal.extend([1_000; 100]);
        type Expectation = fn(u32) -> bool;
        let cases: [(&str, Vec<u64>, Expectation); 4] = [
            ("flat", flat, |limit| limit == 50),
            ("rising", rising, |limit| limit < 25),
            ("spike", spike, |limit| limit == 5),
            ("new normal", new_normal, |limit| limit == 50),
        ];
        for (name, latencies, expected) in cases {
            // A growth step of 1 puts the fixed point under a halving gradient (limit * 0.9 +
            // 0.2, so 2) below limit_min, for the spike to reach the floor.
            let mut limit = ConcurrencyLimit::new(LimitConfig {
                queue_size: 1,
                ..config()
            });
            let mut now = Instant::ZERO;
            for latency_ms in latencies {
                saturate(&mut limit, &mut now, latency_ms);
                let current = limit.limit();
                assert!((5..=50).contains(&current), "{name}: {current}");
            }
            let current = limit.limit();
            assert!(expected(current), "{name}: ended at {current}");
        }
    }

    #[test]
    fn flat_latency_grows_one_step_per_window() {
        // Checks the exact growth step: with the gradient at 1 a window adds queue_size *
        // smoothing (4 * 0.2) to the limit.
        let mut limit = ConcurrencyLimit::new(LimitConfig {
            window_samples_min: 20,
            ..config()
        });
        let mut now = Instant::ZERO;
        assert_eq!(saturate(&mut limit, &mut now, 10), 20);
        assert_eq!(limit.stats().updates, 1);
        assert!((limit.limit - 20.8).abs() < 1e-9, "{}", limit.limit);
        assert_eq!(limit.rtt_short(), Some(Duration::from_millis(10)));
        assert_eq!(limit.rtt_long(), Some(Duration::from_millis(10)));
    }

    #[test]
    fn drops_back_off_and_idle_callers_do_not_grow_the_limit() {
        // Checks that a window with a dropped call multiplies the limit by 90%, and that
        // windows in which less than half the limit was used leave it unchanged.
        let mut limit = ConcurrencyLimit::new(config());
        let now = Instant::ZERO;
        let token = limit.acquire(now).unwrap();
        limit.release(now, token, Duration::from_millis(10), true);
        assert_eq!(limit.limit(), 18);
        for _ in 0..100 {
            let token = limit.acquire(now).unwrap();
            limit.release(now, token, Duration::from_millis(10), false);
        }
        assert_eq!(limit.limit(), 18);
        assert_eq!(limit.stats().dropped, 1);
    }

    #[test]
    fn acquire_refuses_at_the_limit_and_release_frees_a_slot() {
        // Checks that exactly `limit` tokens are granted, the next is refused and counted, and
        // an ignored release frees a slot without moving the limit.
        let mut limit = ConcurrencyLimit::new(LimitConfig {
            limit_initial: 5,
            ..config()
        });
        let now = Instant::ZERO;
        let mut tokens: Vec<Token> = (0..5).map(|_| limit.acquire(now).unwrap()).collect();
        assert!(limit.acquire(now).is_none());
        assert_eq!(limit.stats().rejected, 1);
        limit.release_ignored(tokens.pop().unwrap());
        assert_eq!(limit.inflight(), 4);
        assert!(limit.acquire(now).is_some_and(|token| {
            limit.release_ignored(token);
            true
        }));
        assert_eq!(limit.limit(), 5);
        for token in tokens {
            limit.release_ignored(token);
        }
        assert_eq!(limit.inflight(), 0);
    }

    #[test]
    fn windows_wait_for_samples_and_duration() {
        // Checks that a window closes only with window_samples_min samples and
        // window_duration_min elapsed since its first call.
        let mut limit = ConcurrencyLimit::new(LimitConfig {
            window_samples_min: 3,
            window_duration_min: Duration::from_millis(100),
            ..config()
        });
        let at = |millis: u64| Instant::from_nanos(millis * MS);
        for millis in [0, 10, 20, 50] {
            let token = limit.acquire(at(millis)).unwrap();
            limit.release(at(millis), token, Duration::from_millis(5), false);
        }
        assert_eq!(limit.stats().updates, 0);
        let token = limit.acquire(at(100)).unwrap();
        limit.release(at(100), token, Duration::from_millis(5), false);
        assert_eq!(limit.stats().updates, 1);
    }

    #[test]
    fn validation_names_the_field() {
        // Checks that inconsistent bounds and out-of-range percentages are refused by name.
        type Change = fn(&mut LimitConfig);
        let cases: [(Change, &str); 4] = [
            (
                |config| config.limit_min = 0,
                "limit_min must be in 1..=100000, got 0",
            ),
            (
                |config| config.limit_initial = 60,
                "limit_initial must be in 5..=50, got 60",
            ),
            (
                |config| config.rtt_tolerance_percent = 90,
                "rtt_tolerance_percent must be in 100..=1000, got 90",
            ),
            (
                |config| config.drop_backoff_percent = 100,
                "drop_backoff_percent must be in 1..=99, got 100",
            ),
        ];
        assert_eq!(LimitConfig::default().validate(), Ok(()));
        for (change, message) in cases {
            let mut changed = config();
            change(&mut changed);
            let error = changed.validate().unwrap_err();
            assert_eq!(error.to_string(), format!("config: {message}"));
        }
    }
}
