//! Swarm testing: every seed draws its own fault mix.
//!
//! Turning every fault on at a fixed rate in every run tests few combinations well: a high
//! loss rate hides the bugs that only a long quiet partition finds, and so on. Instead each
//! seed decides which fault kinds are on and at what rate (Groce et al., "Swarm Testing",
//! 2012; FoundationDB's simulator does the same). Rates come from small tables rather than
//! continuous distributions, so a mix is easy to read in a report and replays exactly.

use std::fmt::Write as _;

use synod_core::{Duration, Prng};

use crate::buggify::BuggifyRates;
use crate::disk::DiskFaultConfig;
use crate::network::LinkFaults;

/// Which partition patterns the nemesis may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionKinds {
    /// A clean split into two sides.
    pub halves: bool,
    /// One node cut off.
    pub isolate: bool,
    /// Messages one way only.
    pub one_way: bool,
    /// Two sides joined only through one node.
    pub bridge: bool,
    /// Nodes' links clogged one at a time, then unclogged in another order.
    pub swizzle_clog: bool,
}

impl PartitionKinds {
    pub fn any(&self) -> bool {
        self.halves || self.isolate || self.one_way || self.bridge || self.swizzle_clog
    }
}

/// The faults of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultMix {
    /// Loss, duplication, reordering and latency spread on every link.
    pub network: LinkFaults,
    pub partitions: PartitionKinds,
    /// Nodes crash (sometimes with power loss, which applies the disk's crash model) and
    /// restart.
    pub crashes: bool,
    pub pauses: bool,
    /// Clocks start offset and drift (within the bounds), and drift changes.
    pub clock_skew: bool,
    /// Wall clocks jump forward and back.
    pub clock_jumps: bool,
    /// Some clocks are put outside the configured offset and drift bounds.
    pub clock_outside_bound: bool,
    /// Faults injected by every node's disk.
    pub disk: DiskFaultConfig,
    pub disk_faults: bool,
    /// `None` when no fault point fires in this run.
    pub buggify: Option<BuggifyRates>,
    /// Mean time between two nemesis actions.
    pub nemesis_interval_mean: Duration,
}

const LOSS_RATES: [f64; 5] = [0.001, 0.005, 0.01, 0.05, 0.2];
const DUPLICATE_RATES: [f64; 4] = [0.001, 0.01, 0.05, 0.2];
const REORDER_RATES: [f64; 4] = [0.01, 0.05, 0.2, 0.5];
const REORDER_DELAYS_MS: [u64; 4] = [1, 10, 50, 500];
const JITTER_FACTORS: [u32; 4] = [2, 5, 20, 100];
const NEMESIS_INTERVALS_MS: [u64; 5] = [50, 200, 500, 1_000, 3_000];
const ARM_RATES: [f64; 3] = [0.1, 0.25, 0.5];
const FIRE_RATES: [f64; 3] = [0.01, 0.05, 0.25];

fn pick<T: Copy>(prng: &mut Prng, table: &[T]) -> T {
    table[prng.index(table.len())]
}

impl FaultMix {
    /// No faults at all: a healthy cluster (the nemesis never acts).
    pub fn none() -> FaultMix {
        FaultMix {
            network: LinkFaults::NONE,
            partitions: PartitionKinds::default(),
            crashes: false,
            pauses: false,
            clock_skew: false,
            clock_jumps: false,
            clock_outside_bound: false,
            disk: DiskFaultConfig::fault_free(),
            disk_faults: false,
            buggify: None,
            nemesis_interval_mean: Duration::from_secs(1),
        }
    }

    /// Draws a mix: each fault kind is on with probability one half, at a rate from its
    /// table.
    pub fn draw(prng: &mut Prng) -> FaultMix {
        let mut mix = FaultMix::none();
        let coin = |prng: &mut Prng| prng.chance(0.5);
        if coin(prng) {
            mix.network.loss_probability = pick(prng, &LOSS_RATES);
        }
        if coin(prng) {
            mix.network.duplicate_probability = pick(prng, &DUPLICATE_RATES);
        }
        if coin(prng) {
            mix.network.reorder_probability = pick(prng, &REORDER_RATES);
            mix.network.reorder_delay_max = Duration::from_millis(pick(prng, &REORDER_DELAYS_MS));
        }
        if coin(prng) {
            mix.network.jitter_factor = pick(prng, &JITTER_FACTORS);
        }
        mix.partitions = PartitionKinds {
            halves: coin(prng),
            isolate: coin(prng),
            one_way: coin(prng),
            bridge: coin(prng),
            swizzle_clog: coin(prng),
        };
        mix.crashes = coin(prng);
        mix.pauses = coin(prng);
        mix.clock_skew = coin(prng);
        mix.clock_jumps = coin(prng);
        // Outside the bound is rarer: most runs should test code within its assumptions.
        mix.clock_outside_bound = prng.chance(0.2);
        mix.disk_faults = coin(prng);
        if mix.disk_faults {
            mix.disk = crate::disk_adapter::draw(prng);
        }
        if coin(prng) {
            mix.buggify = Some(BuggifyRates {
                arm_probability: pick(prng, &ARM_RATES),
                fire_probability: pick(prng, &FIRE_RATES),
            });
        }
        mix.nemesis_interval_mean = Duration::from_millis(pick(prng, &NEMESIS_INTERVALS_MS));
        mix
    }

    /// Whether the nemesis has anything to do in this run.
    pub fn nemesis_active(&self) -> bool {
        self.partitions.any()
            || self.crashes
            || self.pauses
            || self.clock_skew
            || self.clock_jumps
            || self.clock_outside_bound
    }

    /// One line for reports: which faults are on and their rates.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let network = &self.network;
        if network.loss_probability > 0.0 {
            parts.push(format!("loss={}", network.loss_probability));
        }
        if network.duplicate_probability > 0.0 {
            parts.push(format!("dup={}", network.duplicate_probability));
        }
        if network.reorder_probability > 0.0 {
            parts.push(format!(
                "reorder={}/{}",
                network.reorder_probability, network.reorder_delay_max
            ));
        }
        if network.jitter_factor > 1 {
            parts.push(format!("jitter=x{}", network.jitter_factor));
        }
        let kinds = self.partitions;
        let mut partitions = String::new();
        for (on, name) in [
            (kinds.halves, "halves"),
            (kinds.isolate, "isolate"),
            (kinds.one_way, "one-way"),
            (kinds.bridge, "bridge"),
            (kinds.swizzle_clog, "swizzle-clog"),
        ] {
            if on {
                let separator = if partitions.is_empty() { "" } else { "," };
                let _ = write!(partitions, "{separator}{name}");
            }
        }
        if !partitions.is_empty() {
            parts.push(format!("partitions={partitions}"));
        }
        for (on, name) in [
            (self.crashes, "crashes"),
            (self.pauses, "pauses"),
            (self.clock_skew, "clock-skew"),
            (self.clock_jumps, "clock-jumps"),
            (self.clock_outside_bound, "clock-OUTSIDE-bound"),
        ] {
            if on {
                parts.push(name.to_string());
            }
        }
        if self.disk_faults {
            parts.push(format!(
                "disk=[{}]",
                crate::disk_adapter::summary(&self.disk)
            ));
        }
        if let Some(rates) = self.buggify {
            parts.push(format!(
                "buggify={}/{}",
                rates.arm_probability, rates.fire_probability
            ));
        }
        if self.nemesis_active() {
            parts.push(format!("nemesis-every~{}", self.nemesis_interval_mean));
        }
        if parts.is_empty() {
            return "no faults".to_string();
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_draws_differ_between_seeds_and_repeat_for_one_seed() {
        // Checks that the same seed draws the same mix, that over 200 seeds every fault
        // kind is both on and off at least once, and that mixes vary.
        let draw = |seed| FaultMix::draw(&mut Prng::from_seed(seed));
        assert_eq!(draw(11), draw(11));
        let mixes: Vec<FaultMix> = (0..200).map(draw).collect();
        let kinds: [fn(&FaultMix) -> bool; 11] = [
            |m| m.network.loss_probability > 0.0,
            |m| m.network.duplicate_probability > 0.0,
            |m| m.network.reorder_probability > 0.0,
            |m| m.partitions.halves,
            |m| m.partitions.swizzle_clog,
            |m| m.crashes,
            |m| m.pauses,
            |m| m.clock_skew,
            |m| m.clock_outside_bound,
            |m| m.disk_faults,
            |m| m.buggify.is_some(),
        ];
        for (index, kind) in kinds.iter().enumerate() {
            assert!(mixes.iter().any(kind), "kind {index} never on");
            assert!(!mixes.iter().all(kind), "kind {index} always on");
        }
        let distinct = mixes
            .iter()
            .map(FaultMix::summary)
            .collect::<std::collections::BTreeSet<_>>();
        assert!(distinct.len() > 150, "{} distinct mixes", distinct.len());
        assert_eq!(FaultMix::none().summary(), "no faults");
    }
}
