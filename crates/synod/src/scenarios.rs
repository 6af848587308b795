//! The scenarios `synod sim` knows by name.

use anyhow::{Result, bail};
use synod_sim::Scenario;
use synod_sim::scenarios::heartbeat::{HEARTBEAT_SCENARIO, HeartbeatScenario};
use synod_sim::scenarios::pingpong::PingPong;
use synod_sim::scenarios::raft::{HistorySink, RAFT_SCENARIO, RaftScenario};
use synod_sim::scenarios::wal::{WAL_SCENARIO, WalScenario};

/// The name of synod-sim's ping-pong scenario.
const PINGPONG_SCENARIO: &str = "pingpong";

/// Every scenario name, the default first.
pub const SCENARIO_NAMES: [&str; 4] = [
    HEARTBEAT_SCENARIO,
    PINGPONG_SCENARIO,
    RAFT_SCENARIO,
    WAL_SCENARIO,
];

/// A factory that builds a fresh scenario of `name` with `nodes_count` nodes per run.
pub fn factory(
    name: &str,
    nodes_count: usize,
) -> Result<Box<dyn Fn() -> Box<dyn Scenario> + Sync>> {
    if !(1..=synod_core::limits::NODES_COUNT_MAX).contains(&nodes_count) {
        bail!(
            "--nodes ({nodes_count}) must be between 1 and {}",
            synod_core::limits::NODES_COUNT_MAX
        );
    }
    match name {
        HEARTBEAT_SCENARIO => Ok(Box::new(move || {
            Box::new(HeartbeatScenario::new(nodes_count)) as Box<dyn Scenario>
        })),
        PINGPONG_SCENARIO => Ok(Box::new(move || {
            Box::new(PingPong::new(nodes_count)) as Box<dyn Scenario>
        })),
        WAL_SCENARIO => Ok(Box::new(move || {
            Box::new(WalScenario::new(nodes_count)) as Box<dyn Scenario>
        })),
        RAFT_SCENARIO => Ok(Box::new(move || {
            Box::new(RaftScenario::new(nodes_count)) as Box<dyn Scenario>
        })),
        other => bail!(
            "unknown scenario {other:?}: choose one of {}",
            SCENARIO_NAMES.join(", ")
        ),
    }
}

/// A raft-scenario factory whose runs leave their client history in `sink`.
pub fn raft_with_history(
    nodes_count: usize,
    sink: HistorySink,
) -> Result<Box<dyn Fn() -> Box<dyn Scenario> + Sync>> {
    // Validates the node count the same way as every other scenario.
    let _ = factory(RAFT_SCENARIO, nodes_count)?;
    Ok(Box::new(move || {
        let scenario = RaftScenario::new(nodes_count).with_history_sink(sink.clone());
        Box::new(scenario) as Box<dyn Scenario>
    }))
}

/// The fault presets `--faults` accepts besides `swarm`: fixed mixes that isolate one kind of
/// fault, for measuring how the system under test reacts to it.
pub const FAULT_PRESETS: [&str; 7] = [
    "none",
    "crash",
    "pause",
    "loss",
    "partition",
    "clock",
    "disk",
];

/// The fixed fault mix of a preset.
pub fn fault_preset(name: &str) -> Result<synod_sim::FaultMix> {
    use synod_core::Duration;
    use synod_sim::{DiskFaultConfig, FaultMix, PartitionKinds};
    let mut mix = FaultMix::none();
    match name {
        "none" => {}
        "crash" => mix.crashes = true,
        "pause" => mix.pauses = true,
        "loss" => mix.network.loss_probability = 0.05,
        "partition" => {
            mix.partitions = PartitionKinds {
                halves: true,
                isolate: true,
                one_way: true,
                bridge: true,
                swizzle_clog: true,
            }
        }
        "clock" => {
            mix.clock_skew = true;
            mix.clock_jumps = true;
        }
        "disk" => {
            mix.crashes = true;
            mix.disk_faults = true;
            mix.disk = DiskFaultConfig {
                write_failure_probability: 0.01,
                sync_failure_probability: 0.01,
                read_failure_probability: 0.01,
                bit_flip_probability: 0.001,
                torn_write_probability: 0.5,
                unsynced_write_kept_probability: 0.5,
                ..DiskFaultConfig::fault_free()
            };
        }
        "all" => return all_faults(),
        other => bail!(
            "unknown fault preset {other:?}: choose swarm or one of {}",
            FAULT_PRESETS.join(", ")
        ),
    }
    mix.nemesis_interval_mean = Duration::from_millis(500);
    Ok(mix)
}

/// Every fault kind on at once, at moderate rates: the simulator's busiest realistic load.
fn all_faults() -> Result<synod_sim::FaultMix> {
    use synod_core::Duration;
    use synod_sim::BuggifyRates;
    let mut mix = fault_preset("partition")?;
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
    mix.disk = fault_preset("disk")?.disk;
    mix.buggify = Some(BuggifyRates {
        arm_probability: 0.25,
        fire_probability: 0.01,
    });
    Ok(mix)
}
