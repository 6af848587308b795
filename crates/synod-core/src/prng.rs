//! The seeded pseudo-random generator used by every protocol and by the simulator.
//!
//! PCG-64 (MCG variant) from `rand_pcg`: its output is fixed by the algorithm, so a seed
//! replays the same run on every platform and every version of synod. `StdRng` is not used
//! because its algorithm may change between releases.

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A deterministic PRNG. Cloning it forks an identical stream; use [`Prng::fork`] to derive an
/// independent one.
#[derive(Clone, Debug)]
pub struct Prng {
    inner: Pcg64Mcg,
}

impl Prng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: u64) -> Prng {
        Prng {
            inner: Pcg64Mcg::seed_from_u64(seed),
        }
    }

    /// A new generator seeded from this one's next output; both streams stay deterministic.
    pub fn fork(&mut self) -> Prng {
        Prng::from_seed(self.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniform value in `0..bound`. `bound` must be positive.
    ///
    /// Uses Lemire's multiply-shift with rejection, so the result has no modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "Prng::below needs a positive bound");
        loop {
            let value = self.next_u64();
            let product = u128::from(value) * u128::from(bound);
            let low = product as u64;
            if low >= bound.wrapping_neg() % bound {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform value in `low..=high`.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(
            low <= high,
            "Prng::range_inclusive: low {low} > high {high}"
        );
        match (high - low).checked_add(1) {
            Some(width) => low + self.below(width),
            None => self.next_u64(),
        }
    }

    /// A uniform float in `[0, 1)` with 53 bits of precision.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `probability` (clamped to `[0, 1]`).
    pub fn chance(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        if probability >= 1.0 {
            return true;
        }
        self.unit_f64() < probability
    }

    /// An exponentially distributed value with the given mean, capped at `cap`.
    pub fn exponential(&mut self, mean: f64, cap: f64) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let sample = -mean * (1.0 - self.unit_f64()).ln();
        sample.min(cap)
    }

    /// Picks an index into a slice of `len` elements.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for upper in (1..items.len()).rev() {
            let pick = self.index(upper + 1);
            items.swap(upper, pick);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first output for seed 0. If this changes, every recorded seed replays differently.
    const PINNED_FIRST_OUTPUT_OF_SEED_0: u64 = 6_198_063_878_555_692_194;

    #[test]
    fn same_seed_gives_same_stream_and_known_first_value() {
        // Checks that the stream is fixed by the seed (replay depends on it) and pins the
        // first output so an accidental algorithm change is caught.
        let mut first = Prng::from_seed(42);
        let mut second = Prng::from_seed(42);
        let values: Vec<u64> = (0..8).map(|_| first.next_u64()).collect();
        let again: Vec<u64> = (0..8).map(|_| second.next_u64()).collect();
        assert_eq!(values, again);
        assert_ne!(Prng::from_seed(43).next_u64(), values[0]);
        assert_eq!(Prng::from_seed(0).next_u64(), PINNED_FIRST_OUTPUT_OF_SEED_0);
    }

    #[test]
    fn below_stays_in_range_and_hits_every_value() {
        // Checks the bounded draw never leaves its range and covers it.
        let mut prng = Prng::from_seed(7);
        let mut seen = [false; 6];
        for _ in 0..1_000 {
            let value = prng.below(6);
            assert!(value < 6);
            seen[value as usize] = true;
        }
        assert!(seen.iter().all(|hit| *hit));
        assert_eq!(prng.range_inclusive(9, 9), 9);
    }

    #[test]
    fn chance_respects_extremes_and_rough_rate() {
        // Checks chance(0) never fires, chance(1) always fires, and 0.25 fires near 25%.
        let mut prng = Prng::from_seed(1);
        assert!(!(0..100).any(|_| prng.chance(0.0)));
        assert!((0..100).all(|_| prng.chance(1.0)));
        let hits = (0..10_000).filter(|_| prng.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "hits {hits}");
    }
}
