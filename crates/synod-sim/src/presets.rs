//! The fixed fault mixes `synod sim --faults` names. Each of the first ones isolates one kind
//! of fault, for measuring how the system under test reacts to it; `all` turns every kind on
//! at moderate rates, the busiest realistic load. Tests and benchmarks use the same presets,
//! so a failing test seed replays exactly with `synod sim --faults <name>`.

use synod_core::Duration;
use thiserror::Error;

use crate::buggify::BuggifyRates;
use crate::disk::DiskFaultConfig;
use crate::mix::{FaultMix, PartitionKinds};

/// Every preset name, in the order help texts list them.
pub const FAULT_PRESETS: [&str; 8] = [
    "none",
    "crash",
    "pause",
    "loss",
    "partition",
    "clock",
    "disk",
    "all",
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown fault preset {name:?}: choose swarm or one of {}", FAULT_PRESETS.join(", "))]
pub struct UnknownPreset {
    pub name: String,
}

/// The fixed fault mix of a preset.
pub fn fault_preset(name: &str) -> Result<FaultMix, UnknownPreset> {
    let mut mix = FaultMix::none();
    match name {
        "none" => return Ok(mix),
        "crash" => mix.crashes = true,
        "pause" => mix.pauses = true,
        "loss" => mix.network.loss_probability = 0.05,
        "partition" => mix.partitions = every_partition_kind(),
        "clock" => {
            mix.clock_skew = true;
            mix.clock_jumps = true;
        }
        "disk" => {
            mix.crashes = true;
            mix.disk_faults = true;
            mix.disk = disk_faults();
        }
        "all" => mix = all_faults(),
        other => {
            return Err(UnknownPreset {
                name: other.to_string(),
            });
        }
    }
    mix.nemesis_interval_mean = Duration::from_millis(500);
    Ok(mix)
}

fn every_partition_kind() -> PartitionKinds {
    PartitionKinds {
        halves: true,
        isolate: true,
        one_way: true,
        bridge: true,
        swizzle_clog: true,
    }
}

fn disk_faults() -> DiskFaultConfig {
    DiskFaultConfig {
        write_failure_probability: 0.01,
        sync_failure_probability: 0.01,
        read_failure_probability: 0.01,
        bit_flip_probability: 0.001,
        torn_write_probability: 0.5,
        unsynced_write_kept_probability: 0.5,
        ..DiskFaultConfig::fault_free()
    }
}

/// Every fault kind on at once, at moderate rates.
fn all_faults() -> FaultMix {
    let mut mix = FaultMix::none();
    mix.partitions = every_partition_kind();
    mix.network.loss_probability = 0.01;
    mix.network.duplicate_probability = 0.01;
    mix.network.reorder_probability = 0.05;
    mix.network.reorder_delay_max = Duration::from_millis(10);
    mix.network.jitter_factor = 5;
    mix.crashes = true;
    mix.pauses = true;
    mix.clock_skew = true;
    mix.clock_jumps = true;
    mix.disk_faults = true;
    mix.disk = disk_faults();
    mix.buggify = Some(BuggifyRates {
        arm_probability: 0.25,
        fire_probability: 0.01,
    });
    mix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_exists_and_an_unknown_one_is_named_in_the_error() {
        // Checks each listed preset resolves, `all` turns every kind on, and a typo is refused
        // with the list of valid names.
        for name in FAULT_PRESETS {
            fault_preset(name).unwrap();
        }
        let all = fault_preset("all").unwrap();
        assert!(all.crashes && all.pauses && all.disk_faults && all.clock_skew);
        assert!(all.partitions.bridge && all.buggify.is_some());
        let error = fault_preset("disks").unwrap_err().to_string();
        assert!(error.starts_with("unknown fault preset \"disks\": choose swarm or one of none"));
    }
}
