//! The settings of a simulation run that do not come from the seed.

use synod_core::config::check_range;
use synod_core::{ConfigError, Duration, Validate};

use crate::clock::DRIFT_PPM_LIMIT;
use crate::mix::FaultMix;
use crate::network::NetworkConfig;

/// Where a run's fault mix comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultSelection {
    /// Each seed draws its own mix (swarm testing).
    Swarm,
    /// Every seed uses this mix (tests, and `--faults none` for a healthy baseline).
    Fixed(FaultMix),
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long the safety phase (faults on) lasts in virtual time.
    pub safety_duration: Duration,
    /// The most events one run may process; reaching it is reported as a liveness failure
    /// (the cluster spins without virtual time getting anywhere).
    pub events_max: u64,
    pub network: NetworkConfig,
    /// How far a wall clock may be from true time while "within the bound".
    pub clock_offset_max: Duration,
    /// How fast a clock may drift while "within the bound".
    pub clock_drift_ppm_max: i64,
    /// How often the simulated time daemon steps the disciplined clocks back towards true
    /// time.
    pub clock_sync_interval: Duration,
    pub faults: FaultSelection,
    /// How long a crashed node stays down before the nemesis restarts it.
    pub restart_delay_min: Duration,
    pub restart_delay_max: Duration,
    /// How long a halted node (root supervisor gave up) stays down, like a service
    /// manager's restart delay.
    pub halt_restart_delay: Duration,
    pub pause_duration_max: Duration,
    pub partition_duration_max: Duration,
    /// Observations kept for the scenario; older ones are dropped and counted.
    pub observations_max: usize,
    /// Messages one node handles per step before other events get their turn.
    pub node_step_budget: usize,
    /// Nodes first boot at random times in `[0, boot_stagger_max]`.
    pub boot_stagger_max: Duration,
    /// Extra flags the replay command must carry (set by the binary when it ran with
    /// non-default options), e.g. `--safety-secs 60`.
    pub replay_flags: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            safety_duration: Duration::from_secs(20),
            events_max: 20_000_000,
            network: NetworkConfig::default(),
            clock_offset_max: Duration::from_millis(100),
            clock_drift_ppm_max: 200,
            clock_sync_interval: Duration::from_secs(1),
            faults: FaultSelection::Swarm,
            restart_delay_min: Duration::from_millis(10),
            restart_delay_max: Duration::from_secs(3),
            halt_restart_delay: Duration::from_secs(1),
            pause_duration_max: Duration::from_secs(2),
            partition_duration_max: Duration::from_secs(5),
            observations_max: 1 << 16,
            node_step_budget: 1_024,
            boot_stagger_max: Duration::from_millis(10),
            replay_flags: String::new(),
        }
    }
}

impl RunOptions {
    /// Options with a fixed fault mix.
    pub fn with_faults(mix: FaultMix) -> RunOptions {
        RunOptions {
            faults: FaultSelection::Fixed(mix),
            ..RunOptions::default()
        }
    }
}

impl Validate for RunOptions {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.safety_duration.is_zero() {
            return Err(ConfigError::new("safety_duration", "(0) must be positive"));
        }
        check_range("events_max", self.events_max, 1, u64::MAX)?;
        self.network
            .validate()
            .map_err(|error| error.within("network"))?;
        check_range(
            "clock_drift_ppm_max",
            self.clock_drift_ppm_max,
            0,
            DRIFT_PPM_LIMIT / 10,
        )?;
        if self.clock_offset_max < Duration::from_micros(1) {
            return Err(ConfigError::new("clock_offset_max", "must be at least 1us"));
        }
        // Between two syncs a disciplined clock may drift this far; it must stay within
        // the bound, which the sync leaves at most half used.
        let drift_per_sync = self
            .clock_sync_interval
            .as_nanos()
            .saturating_mul(self.clock_drift_ppm_max.unsigned_abs())
            / 1_000_000;
        if self.clock_sync_interval.is_zero()
            || drift_per_sync > self.clock_offset_max.as_nanos() / 4
        {
            return Err(ConfigError::new(
                "clock_sync_interval",
                format!(
                    "({}) must be positive and short enough that clock_drift_ppm_max ({}) \
                     drifts at most a quarter of clock_offset_max ({}) between syncs",
                    self.clock_sync_interval, self.clock_drift_ppm_max, self.clock_offset_max
                ),
            ));
        }
        if self.restart_delay_max < self.restart_delay_min {
            return Err(ConfigError::new(
                "restart_delay_max",
                format!(
                    "({}) must be at least restart_delay_min ({})",
                    self.restart_delay_max, self.restart_delay_min
                ),
            ));
        }
        check_range("observations_max", self.observations_max, 1, 1 << 24)?;
        check_range("node_step_budget", self.node_step_budget, 1, 1 << 20)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_field() {
        // Checks that the default options validate and that inconsistent ones are refused
        // with the field named.
        assert_eq!(RunOptions::default().validate(), Ok(()));
        type Change = fn(&mut RunOptions);
        let table: [(Change, &str); 4] = [
            (|o| o.safety_duration = Duration::ZERO, "safety_duration"),
            (|o| o.clock_drift_ppm_max = 100_000, "clock_drift_ppm_max"),
            (
                |o| o.clock_sync_interval = Duration::from_secs(1_000),
                "clock_sync_interval",
            ),
            (
                |o| o.restart_delay_min = Duration::from_secs(60),
                "restart_delay_max",
            ),
        ];
        for (change, field) in table {
            let mut options = RunOptions::default();
            change(&mut options);
            assert_eq!(options.validate().unwrap_err().field, field);
        }
    }
}
