//! A bounded ring buffer of inter-arrival samples with exact running sums: the statistics
//! under a phi-accrual estimate ([`crate::phi`]). synod-detector's per-peer windows and
//! synod-raft's leader suspicion both keep one.
//!
//! The sums are integers (nanoseconds and nanoseconds squared, in `u128`), not floats, so
//! adding a sample and evicting one are exact: the sums never drift, and the variance
//! numerator `count * sum_squares - sum^2` is never negative (Cauchy-Schwarz holds exactly in
//! integers). Each push is O(1).

/// The largest window of inter-arrival samples. At 10 heartbeats a second it is about 17
/// minutes of history, far more than an estimator needs to adapt, and it bounds the memory of
/// one window at 80 KB.
pub const WINDOW_SIZE_MAX: usize = 10_000;

/// The largest inter-arrival sample recorded, in nanoseconds (about 11.6 days). A longer gap
/// is recorded as this value; the bound keeps every sum exactly representable in `u128`.
pub const SAMPLE_NANOS_MAX: u64 = 1_000_000_000_000_000;

/// The bootstrap puts this many samples into an empty window.
pub const SEED_SAMPLES_COUNT: usize = 2;

// The largest variance numerator is (count * sample_max)^2; it must fit in u128.
const SUM_MAX: u128 = WINDOW_SIZE_MAX as u128 * SAMPLE_NANOS_MAX as u128;
const _: () = assert!(SUM_MAX <= u128::MAX / SUM_MAX);

/// The most recent inter-arrival samples of one peer, oldest evicted first.
#[derive(Debug, Clone)]
pub struct ArrivalWindow {
    /// Samples in nanoseconds. Grows to `size_max`, then is overwritten in place.
    samples: Vec<u64>,
    size_max: usize,
    /// Where the next sample goes: equal to the length while filling, then the oldest.
    next_index: usize,
    sum: u128,
    sum_squares: u128,
}

impl ArrivalWindow {
    pub fn new(size_max: usize) -> ArrivalWindow {
        assert!(
            (1..=WINDOW_SIZE_MAX).contains(&size_max),
            "window size {size_max}"
        );
        ArrivalWindow {
            samples: Vec::with_capacity(size_max),
            size_max,
            next_index: 0,
            sum: 0,
            sum_squares: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn size_max(&self) -> usize {
        self.size_max
    }

    /// Forgets every sample.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.next_index = 0;
        self.sum = 0;
        self.sum_squares = 0;
    }

    /// Empties the window and seeds it so that its mean is `estimate_nanos` and its standard
    /// deviation a quarter of it, as Akka bootstraps a new peer.
    pub fn seed(&mut self, estimate_nanos: u64) {
        let deviation_nanos = estimate_nanos / 4;
        self.clear();
        self.push(estimate_nanos - deviation_nanos);
        self.push(estimate_nanos + deviation_nanos);
    }

    /// Records a sample, evicting the oldest one when the window is full.
    pub fn push(&mut self, sample_nanos: u64) {
        assert!(
            sample_nanos <= SAMPLE_NANOS_MAX,
            "sample {sample_nanos} above the maximum"
        );
        if self.samples.len() < self.size_max {
            assert_eq!(self.next_index, self.samples.len());
            self.samples.push(sample_nanos);
        } else {
            let evicted = self.samples[self.next_index];
            self.samples[self.next_index] = sample_nanos;
            self.sum -= u128::from(evicted);
            self.sum_squares -= u128::from(evicted) * u128::from(evicted);
        }
        self.sum += u128::from(sample_nanos);
        self.sum_squares += u128::from(sample_nanos) * u128::from(sample_nanos);
        self.next_index = (self.next_index + 1) % self.size_max;
    }

    /// The mean of the samples in nanoseconds, or zero for an empty window.
    pub fn mean_nanos(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.sum as f64 / self.samples.len() as f64
    }

    /// The population standard deviation in nanoseconds, or zero for an empty window.
    pub fn std_deviation_nanos(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let count = self.samples.len() as f64;
        (self.variance_numerator() as f64).sqrt() / count
    }

    /// `count * sum_squares - sum^2`, which is `count^2` times the population variance.
    fn variance_numerator(&self) -> u128 {
        let count = self.samples.len() as u128;
        let product = count * self.sum_squares;
        let square = self.sum * self.sum;
        product
            .checked_sub(square)
            .expect("window sums are inconsistent: negative variance")
    }

    /// The relations that must hold after every operation; O(1).
    pub fn invariants(&self) {
        let count = self.samples.len();
        assert!(
            count <= self.size_max,
            "window holds {count} > {}",
            self.size_max
        );
        assert!(self.next_index < self.size_max);
        if count < self.size_max {
            assert_eq!(
                self.next_index, count,
                "a filling window appends at its end"
            );
        }
        assert!(self.sum <= count as u128 * u128::from(SAMPLE_NANOS_MAX));
        assert!(self.sum_squares <= self.sum * u128::from(SAMPLE_NANOS_MAX));
        // Panics if the sums ever imply a negative variance.
        let _ = self.variance_numerator();
        if count == 0 {
            assert_eq!((self.sum, self.sum_squares), (0, 0));
        }
    }

    /// Recounts the sums from the samples; O(window size).
    pub fn invariants_exhaustive(&self) {
        self.invariants();
        let sum: u128 = self.samples.iter().map(|sample| u128::from(*sample)).sum();
        let sum_squares: u128 = self
            .samples
            .iter()
            .map(|sample| u128::from(*sample) * u128::from(*sample))
            .sum();
        assert_eq!(self.sum, sum, "running sum drifted from the samples");
        assert_eq!(
            self.sum_squares, sum_squares,
            "running sum of squares drifted"
        );
        assert!(
            self.samples
                .iter()
                .all(|sample| *sample <= SAMPLE_NANOS_MAX)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_evicts_oldest_and_keeps_exact_statistics() {
        // Checks the ring buffer: it stops growing at its size, evicts the oldest sample, and
        // its mean and deviation match those of the samples it still holds.
        let mut window = ArrivalWindow::new(3);
        for sample in [10, 20, 30, 40, 50] {
            window.push(sample);
            window.invariants_exhaustive();
        }
        assert_eq!(window.len(), 3);
        assert_eq!(window.mean_nanos(), 40.0);
        // Samples 30, 40, 50: population variance (100 + 0 + 100) / 3.
        let expected = (200.0f64 / 3.0).sqrt();
        assert!((window.std_deviation_nanos() - expected).abs() < 1e-12);
    }

    #[test]
    fn seed_gives_the_estimate_as_mean_and_a_quarter_as_deviation() {
        // Checks the Akka-style bootstrap of a fresh or restarted peer.
        let mut window = ArrivalWindow::new(200);
        window.push(7);
        window.seed(100_000_000);
        assert_eq!(window.len(), SEED_SAMPLES_COUNT);
        assert_eq!(window.mean_nanos(), 100_000_000.0);
        assert_eq!(window.std_deviation_nanos(), 25_000_000.0);
        window.invariants_exhaustive();
    }

    #[test]
    fn constant_and_extreme_samples_never_give_negative_variance() {
        // Checks that identical samples give exactly zero deviation and that the largest
        // samples in a full window of the largest size neither overflow nor go negative.
        let mut window = ArrivalWindow::new(WINDOW_SIZE_MAX);
        for _ in 0..WINDOW_SIZE_MAX + 5 {
            window.push(SAMPLE_NANOS_MAX);
        }
        window.invariants_exhaustive();
        assert_eq!(window.std_deviation_nanos(), 0.0);
        assert_eq!(window.mean_nanos(), SAMPLE_NANOS_MAX as f64);
        window.push(0);
        window.invariants_exhaustive();
        assert!(window.std_deviation_nanos() > 0.0);
    }
}
