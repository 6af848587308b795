//! The phi function: how surprised a failure detector should be that no heartbeat came for a
//! while. synod-detector and synod-raft's leader suspicion share it.
//!
//! With the inter-arrival times modelled as a normal distribution of mean `mean` and standard
//! deviation `std_deviation`, phi is `-log10(1 - F(elapsed))`, where `F` is its cumulative
//! distribution function. A phi of 1 means a later heartbeat would happen one time in ten, a
//! phi of 8 one time in a hundred million.
//!
//! `F` is computed with the logistic approximation Akka uses (Bowling et al., 2009):
//! `F(y) ~ 1 / (1 + exp(-z))` with `z = y * (1.5976 + 0.070566 * y^2)` and
//! `y = (elapsed - mean) / std_deviation`; its largest error on `F` is 1.4e-4. Then
//! `1 - F = 1 / (1 + exp(z))`, so `phi = log10(1 + exp(z)) = softplus(z) / ln(10)`. Written
//! as a softplus, phi never takes the logarithm of zero and never overflows an exponential:
//! it is finite, at least zero, and non-decreasing in `elapsed`.

/// The linear coefficient of the logistic approximation.
const LOGISTIC_LINEAR: f64 = 1.5976;
/// The cubic coefficient of the logistic approximation.
const LOGISTIC_CUBIC: f64 = 0.070566;

/// How many standard deviations from the mean `y` is clamped to. Past it phi is already about
/// 3e7, far above any threshold; the clamp keeps the cube of `y` finite for any input, at the
/// price of phi saturating at [`PHI_SATURATED`] instead of growing further.
pub const DEVIATIONS_LIMIT: f64 = 1_000.0;

/// The largest value [`from_normal`] returns: phi at [`DEVIATIONS_LIMIT`] deviations.
pub const PHI_SATURATED: f64 = DEVIATIONS_LIMIT
    * (LOGISTIC_LINEAR + LOGISTIC_CUBIC * DEVIATIONS_LIMIT * DEVIATIONS_LIMIT)
    / std::f64::consts::LN_10;

/// Phi after `elapsed` of silence, for inter-arrival times with the given `mean` and
/// `std_deviation`. All three are in the same unit (the callers pass nanoseconds).
///
/// The caller guarantees finite inputs, `elapsed >= 0`, `mean >= 0` and
/// `std_deviation > 0`; anything else is a bug in the caller and asserts.
pub fn from_normal(elapsed: f64, mean: f64, std_deviation: f64) -> f64 {
    assert!(
        elapsed.is_finite() && elapsed >= 0.0,
        "phi: elapsed {elapsed} is not a span"
    );
    assert!(
        mean.is_finite() && mean >= 0.0,
        "phi: mean {mean} is not a span"
    );
    assert!(
        std_deviation.is_finite() && std_deviation > 0.0,
        "phi: std deviation {std_deviation} must be positive"
    );
    // The quotient of finite numbers by a positive one is never NaN; it can be infinite for a
    // subnormal deviation, which the clamp folds back to the limit.
    let deviations = ((elapsed - mean) / std_deviation).clamp(-DEVIATIONS_LIMIT, DEVIATIONS_LIMIT);
    let exponent = deviations * (LOGISTIC_LINEAR + LOGISTIC_CUBIC * deviations * deviations);
    let phi = softplus(exponent) / std::f64::consts::LN_10;
    assert!(
        phi.is_finite() && phi >= 0.0,
        "phi {phi} for y {deviations}"
    );
    phi
}

/// `ln(1 + exp(x))`, computed without overflow: for positive `x` it is rewritten as
/// `x + ln(1 + exp(-x))`, so the exponential is always of a non-positive number.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The complementary error function, from the Chebyshev fit in Numerical Recipes
    /// (`erfcc`, fractional error below 1.2e-7 everywhere). It is independent of the logistic
    /// formula under test, so it can judge how far the approximation strays.
    fn erfc_reference(x: f64) -> f64 {
        let magnitude = x.abs();
        let t = 1.0 / (1.0 + 0.5 * magnitude);
        let coefficients = [
            -1.26551223,
            1.00002368,
            0.37409196,
            0.09678418,
            -0.18628806,
            0.27886807,
            -1.13520398,
            1.48851587,
            -0.82215223,
            0.17087277,
        ];
        let mut polynomial = 0.0;
        for coefficient in coefficients.iter().rev() {
            polynomial = polynomial * t + coefficient;
        }
        let value = t * (-magnitude * magnitude + polynomial).exp();
        if x >= 0.0 { value } else { 2.0 - value }
    }

    /// The true normal cumulative distribution at `y` standard deviations.
    fn normal_cdf_reference(y: f64) -> f64 {
        1.0 - 0.5 * erfc_reference(y / std::f64::consts::SQRT_2)
    }

    fn assert_close(actual: f64, expected: f64, tolerance_relative: f64, context: &str) {
        let tolerance = tolerance_relative * expected.abs().max(1e-12);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{context}: got {actual}, expected {expected} (tolerance {tolerance})"
        );
    }

    #[test]
    fn phi_matches_known_values() {
        // Checks phi against values computed independently with mpmath at 50 digits from the
        // same logistic formula, over the whole range from "on time" to "absurdly late".
        // Columns: elapsed, mean, std deviation (milliseconds), expected phi.
        let table = [
            (0.0, 100.0, 50.0, 0.009998761629963096),
            // At the mean the tail is one half, so phi is log10(2).
            (100.0, 100.0, 50.0, std::f64::consts::LOG10_2),
            (150.0, 100.0, 50.0, 0.7995083208395599),
            (200.0, 100.0, 50.0, 1.6428278854871123),
            (250.0, 100.0, 50.0, 2.909475326484954),
            (300.0, 100.0, 50.0, 4.736694582705181),
            (400.0, 100.0, 50.0, 10.782600858295707),
            (461.0, 100.0, 50.0, 16.543748687105094),
            (600.0, 100.0, 50.0, 37.58471305287122),
            (1_000.0, 200.0, 50.0, 136.6290162119162),
            (5_000.0, 1_000.0, 100.0, 1_989.124316810577),
            (100.0, 100.0, 1.0, std::f64::consts::LOG10_2),
            // Past the clamp of 1000 deviations phi saturates.
            (1e6, 100.0, 50.0, 30_647_118.238849156),
        ];
        for (elapsed, mean, std_deviation, expected) in table {
            let context = format!("phi({elapsed}, {mean}, {std_deviation})");
            assert_close(
                from_normal(elapsed, mean, std_deviation),
                expected,
                1e-9,
                &context,
            );
        }
        assert_close(PHI_SATURATED, 30_647_118.238849156, 1e-9, "saturation");
    }

    #[test]
    fn logistic_tracks_the_true_normal_distribution() {
        // Checks that the approximation stays within its published error (1.4e-4 on the
        // cumulative distribution) of the true normal, computed from an independent erfc, and
        // that the erfc helper itself reproduces mpmath values of the normal tail.
        let tails = [
            (0.0, 0.5),
            (1.0, 0.15865525393145705),
            (3.0, 0.0013498980316300946),
        ];
        for (y, tail) in tails {
            assert_close(1.0 - normal_cdf_reference(y), tail, 1e-6, "erfc helper");
        }
        let mut error_max: f64 = 0.0;
        for step in -800..=800 {
            let y = f64::from(step) / 100.0;
            let tail_logistic = 10f64.powf(-from_normal(y + 10.0, 10.0, 1.0));
            let error = ((1.0 - tail_logistic) - normal_cdf_reference(y)).abs();
            error_max = error_max.max(error);
        }
        assert!(
            error_max <= 1.5e-4,
            "largest error on the distribution {error_max}"
        );
        assert!(
            error_max >= 1.0e-4,
            "error {error_max} is suspiciously small: wrong formula?"
        );
    }

    #[test]
    fn phi_is_monotone_finite_and_non_negative() {
        // Checks the numerical safety the detector relies on: across many orders of magnitude
        // of elapsed time and deviations down to one nanosecond, phi never decreases, never
        // goes negative and never becomes NaN or infinite.
        let deviations = [1.0, 1_000.0, 50e6, 1e12];
        for std_deviation in deviations {
            let mut phi_previous = 0.0;
            let mut elapsed = 0.0;
            while elapsed < 1.9e19 {
                let phi = from_normal(elapsed, 100e6, std_deviation);
                assert!(phi.is_finite() && phi >= 0.0, "phi {phi} at {elapsed}");
                assert!(
                    phi >= phi_previous,
                    "phi fell from {phi_previous} to {phi} at {elapsed}"
                );
                phi_previous = phi;
                elapsed = elapsed * 1.01 + 1_000.0;
            }
            assert_eq!(phi_previous, PHI_SATURATED);
        }
        assert_eq!(from_normal(f64::MAX, 0.0, f64::MIN_POSITIVE), PHI_SATURATED);
        assert!(from_normal(0.0, f64::MAX, 1.0) >= 0.0);
    }
}
