//! How the simulator uses the disk model ([`crate::disk`]): one [`SimDisk`] per node, fault
//! configurations drawn for the swarm, and faults turned off for the healed core.

use synod_core::Prng;

use crate::disk::{DiskFaultConfig, SimDisk};
use crate::mix::FaultMix;

const WRITE_FAILURE_RATES: [f64; 3] = [0.0001, 0.001, 0.01];
const SYNC_FAILURE_RATES: [f64; 3] = [0.0001, 0.001, 0.01];
const READ_FAILURE_RATES: [f64; 3] = [0.0001, 0.001, 0.01];
const BIT_FLIP_RATES: [f64; 3] = [0.0001, 0.001, 0.01];
const TORN_WRITE_RATES: [f64; 3] = [0.1, 0.5, 1.0];
const UNSYNCED_KEPT_RATES: [f64; 4] = [0.1, 0.5, 0.9, 1.0];
const LATENCY_SPIKE_RATES: [f64; 3] = [0.001, 0.01, 0.05];

/// Zero half the time, otherwise a rate from `table`.
fn maybe(prng: &mut Prng, table: &[f64]) -> f64 {
    if prng.chance(0.5) {
        table[prng.index(table.len())]
    } else {
        0.0
    }
}

/// A disk fault configuration for one run: each fault on or off, at a rate from its table.
pub fn draw(prng: &mut Prng) -> DiskFaultConfig {
    DiskFaultConfig {
        write_failure_probability: maybe(prng, &WRITE_FAILURE_RATES),
        sync_failure_probability: maybe(prng, &SYNC_FAILURE_RATES),
        read_failure_probability: maybe(prng, &READ_FAILURE_RATES),
        bit_flip_probability: maybe(prng, &BIT_FLIP_RATES),
        torn_write_probability: maybe(prng, &TORN_WRITE_RATES),
        unsynced_write_kept_probability: maybe(prng, &UNSYNCED_KEPT_RATES),
        latency_spike_probability: maybe(prng, &LATENCY_SPIKE_RATES),
        ..DiskFaultConfig::fault_free()
    }
}

/// The injected faults that are on, for the fault-mix summary.
pub fn summary(config: &DiskFaultConfig) -> String {
    let named = [
        ("write-fail", config.write_failure_probability),
        ("sync-fail", config.sync_failure_probability),
        ("read-fail", config.read_failure_probability),
        ("bit-flip", config.bit_flip_probability),
        ("torn", config.torn_write_probability),
        ("unsynced-kept", config.unsynced_write_kept_probability),
        ("spike", config.latency_spike_probability),
    ];
    let parts: Vec<String> = named
        .iter()
        .filter(|(_, rate)| *rate > 0.0)
        .map(|(name, rate)| format!("{name}={rate}"))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

/// A node's disk for a run with this mix.
pub fn new_disk(mix: &FaultMix) -> SimDisk {
    if mix.disk_faults {
        SimDisk::new(mix.disk.clone())
    } else {
        SimDisk::new(DiskFaultConfig::fault_free())
    }
}

/// Turns off the faults an operation can see (failures, corruption, spikes); what a crash
/// keeps stays as it was, since the healed core is not crashed by the nemesis any more.
pub fn calm(disk: &mut SimDisk) {
    let calm = DiskFaultConfig {
        write_failure_probability: 0.0,
        sync_failure_probability: 0.0,
        read_failure_probability: 0.0,
        bit_flip_probability: 0.0,
        latency_spike_probability: 0.0,
        ..disk.config().clone()
    };
    disk.set_faults(calm);
}
