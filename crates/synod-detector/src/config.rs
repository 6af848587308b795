//! The detector's configuration, its limits and its validation.

use synod_core::config::check_range;
use synod_core::{ConfigError, Duration, Validate};

/// The largest window of inter-arrival samples a peer may keep (80 KB of one peer's memory).
pub use synod_core::arrival_window::WINDOW_SIZE_MAX;
/// The smallest window: the bootstrap seeds two samples (mean - deviation, mean + deviation),
/// and a smaller window would evict one of them before the first real interval arrives.
pub const WINDOW_SIZE_MIN: usize = 2;
/// Below this threshold every peer would be suspected: phi at zero silence is under
/// log10(2) (about 0.3), and a threshold of 1 already means "one chance in ten".
pub const THRESHOLD_PHI_MIN: f64 = 1.0;
/// Above this threshold a peer would practically never be suspected (odds of 1e-100).
pub const THRESHOLD_PHI_MAX: f64 = 100.0;
/// The shortest duration a duration field may hold where zero would break the model (a zero
/// deviation divides by zero, a zero estimate seeds a window of zeros).
pub const CONFIG_DURATION_MIN: Duration = Duration::from_micros(1);
/// The longest duration any field may hold. Longer values are almost certainly a unit mistake
/// (seconds written as milliseconds), and the bound keeps every seeded sample far below
/// [`crate::SAMPLE_NANOS_MAX`].
pub const CONFIG_DURATION_MAX: Duration = Duration::from_secs(3_600);

/// How the phi-accrual detector judges silence. See `docs/detector.md` for the reasons behind
/// each default.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// How often peers send heartbeats, and how often the driver should send
    /// [`crate::Input::Tick`]. The detector itself never reads it: the arrival statistics
    /// learn the real interval. It lives here so one config section sets up both ends.
    pub heartbeat_interval: Duration,
    /// How many inter-arrival samples each peer's window keeps (the oldest is evicted).
    pub window_size: usize,
    /// A peer is suspected once its phi reaches this value.
    pub threshold_phi: f64,
    /// The floor on the standard deviation of the window. Steady heartbeats have a near-zero
    /// deviation, which would make phi jump to a huge value a few milliseconds after the mean.
    pub std_deviation_min: Duration,
    /// Added to the mean: silence the detector tolerates before phi starts to rise quickly.
    pub acceptable_pause: Duration,
    /// Seeds a peer's window at its first heartbeat (and after a restart) with a mean of this
    /// estimate and a standard deviation of a quarter of it, as Akka does.
    pub first_heartbeat_estimate: Duration,
}

impl Default for DetectorConfig {
    fn default() -> DetectorConfig {
        DetectorConfig {
            heartbeat_interval: Duration::from_millis(100),
            window_size: 200,
            threshold_phi: 8.0,
            std_deviation_min: Duration::from_millis(50),
            acceptable_pause: Duration::from_millis(100),
            first_heartbeat_estimate: Duration::from_millis(100),
        }
    }
}

impl Validate for DetectorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let (duration_min, duration_max) = (CONFIG_DURATION_MIN, CONFIG_DURATION_MAX);
        check_range(
            "heartbeat_interval",
            self.heartbeat_interval,
            duration_min,
            duration_max,
        )?;
        check_range(
            "window_size",
            self.window_size,
            WINDOW_SIZE_MIN,
            WINDOW_SIZE_MAX,
        )?;
        // A NaN passes every comparison in check_range, so it is refused by name first.
        if self.threshold_phi.is_nan() {
            return Err(ConfigError::new(
                "threshold_phi",
                format!(
                    "(NaN) must be a number between {THRESHOLD_PHI_MIN} and {THRESHOLD_PHI_MAX}"
                ),
            ));
        }
        check_range(
            "threshold_phi",
            self.threshold_phi,
            THRESHOLD_PHI_MIN,
            THRESHOLD_PHI_MAX,
        )?;
        check_range(
            "std_deviation_min",
            self.std_deviation_min,
            duration_min,
            duration_max,
        )?;
        check_range(
            "acceptable_pause",
            self.acceptable_pause,
            Duration::ZERO,
            duration_max,
        )?;
        check_range(
            "first_heartbeat_estimate",
            self.first_heartbeat_estimate,
            duration_min,
            duration_max,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        // Checks that the defaults pass their own validation.
        assert_eq!(DetectorConfig::default().validate(), Ok(()));
    }

    #[test]
    fn invalid_fields_are_named_in_the_error() {
        // Checks that each out-of-range field is refused with its dotted name and the range.
        let config = DetectorConfig {
            threshold_phi: 0.0,
            ..DetectorConfig::default()
        };
        assert_eq!(
            config
                .validate()
                .unwrap_err()
                .within("detector")
                .to_string(),
            "config: detector.threshold_phi (0) must be between 1 and 100"
        );
        let config = DetectorConfig {
            threshold_phi: f64::NAN,
            ..DetectorConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "threshold_phi");
        let config = DetectorConfig {
            window_size: 1,
            ..DetectorConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "config: window_size (1) must be between 2 and 10000"
        );
        let config = DetectorConfig {
            window_size: 10_001,
            ..DetectorConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "window_size");
        let config = DetectorConfig {
            std_deviation_min: Duration::ZERO,
            ..DetectorConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "std_deviation_min");
        let config = DetectorConfig {
            heartbeat_interval: Duration::ZERO,
            ..DetectorConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "heartbeat_interval");
        let config = DetectorConfig {
            first_heartbeat_estimate: Duration::from_secs(3_601),
            ..DetectorConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().field,
            "first_heartbeat_estimate"
        );
        let config = DetectorConfig {
            acceptable_pause: Duration::from_secs(7_200),
            ..DetectorConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "acceptable_pause");
        let config = DetectorConfig {
            acceptable_pause: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(config.validate(), Ok(()));
    }
}
