//! Helpers shared by the simulator's integration tests.

#![allow(dead_code)]

use synod_core::{Duration, Instant};
use synod_sim::scenarios::pingpong::PingPong;
use synod_sim::{FaultMix, RunOptions, Scenario, Simulation};

/// A ping-pong scenario factory for `nodes_count` nodes.
pub fn pingpong(nodes_count: usize) -> impl Fn() -> Box<dyn Scenario> + Sync {
    move || Box::new(PingPong::new(nodes_count)) as Box<dyn Scenario>
}

/// Options with a fixed fault mix and a safety phase of `seconds`.
pub fn options(mix: FaultMix, seconds: u64) -> RunOptions {
    RunOptions {
        safety_duration: Duration::from_secs(seconds),
        ..RunOptions::with_faults(mix)
    }
}

/// A healthy ping-pong cluster of `nodes_count` nodes, not yet started.
pub fn healthy(nodes_count: usize, seed: u64) -> Simulation {
    let options = options(FaultMix::none(), 60);
    Simulation::new(Box::new(PingPong::new(nodes_count)), &options, seed, None)
}

pub fn at_millis(millis: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(millis)
}

/// SplitMix64, for deterministic properties of seeds computed outside the simulator.
pub fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
