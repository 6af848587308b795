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

/// The fixed fault mix of a `--faults` preset (`synod_sim::FAULT_PRESETS`; they live in the
/// simulator, so its tests use the same mixes).
pub fn fault_preset(name: &str) -> Result<synod_sim::FaultMix> {
    Ok(synod_sim::fault_preset(name)?)
}
