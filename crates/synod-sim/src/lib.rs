//! synod-sim: the deterministic simulation executor.
//!
//! A whole synod cluster runs in one thread on virtual time from one seed. Each node is a
//! [`synod_actor::System`] booted by a [`Scenario`]; the simulator drives every system
//! through [`synod_actor::Services`] backed by a simulated network (latency, loss,
//! duplication, reordering, bounded in-flight messages, partitions of every shape and
//! swizzle-clog), simulated disks ([`disk`]: page cache versus media, torn and lost writes,
//! fsync failures, bit flips), simulated clocks (offset, drift, jumps, sometimes outside
//! their bound) and a nemesis that crashes, restarts and pauses nodes. One
//! [`synod_core::Prng`] seeded from the run's seed makes every decision, so a seed replays
//! bit for bit: [`RunOutcome::trace_hash`] proves it.
//!
//! A run has two phases. In the safety phase faults are on (which ones, and how often, is
//! drawn per seed: swarm testing) and the scenario's invariants are checked after every
//! event. Then a majority core is healed and the scenario must show progress within its
//! liveness bound. Failures fall into classes with their own exit codes
//! ([`FailureClass`]), and every failure names the one command that replays it.
//!
//! The driver loop, for one run:
//!
//! ```text
//! boot every node (scenario.boot) at a random time within boot_stagger_max
//! while the run has not ended:
//!     (time, event) = queue.pop()            // ordered by (virtual time, sequence)
//!     handle(event)                          // deliver, wake, complete disk IO, fault...
//!         node.system.run(services, budget)  //   the receiving node runs its actors
//!         schedule a wakeup at the node's next timer deadline (node-local -> global time)
//!     scenario.check(view)?                  // correctness, after EVERY event
//!     if liveness phase and scenario.progress(view): passed
//! ```
//!
//! `docs/simulation.md` describes the event model, the fault model and replay.

pub mod buggify;
pub mod clock;
pub mod disk;
mod disk_adapter;
pub mod event;
pub mod mix;
mod nemesis;
pub mod network;
pub mod options;
mod panics;
pub mod presets;
pub mod run;
pub mod scenario;
pub mod scenarios;
pub mod sim;
pub mod storage;
pub mod sweep;
pub mod trace;

use synod_core::NodeId;

pub use buggify::{Buggify, BuggifyRates, PointCount, SimFaultPoints};
pub use clock::NodeClock;
pub use disk::{DiskFaultConfig, DiskStats, SimDisk};
pub use mix::{FaultMix, PartitionKinds};
pub use network::{LinkFaults, LinkSet, NetworkConfig, PathStats};
pub use options::{FaultSelection, RunOptions};
pub use presets::{FAULT_PRESETS, UnknownPreset, fault_preset};
pub use run::{
    BenchOutcome, RunOutcome, ScenarioFactory, bench, run_seed, run_seed_traced, trace_file,
};
pub use scenario::{ClockReading, ClusterView, NodeStatus, ObservationRecord, Phase, Scenario};
pub use sim::{Failure, NodeCounters, NodeServices, Simulation, Verdict};
pub use storage::SimStorage;
pub use sweep::{SharedScenarioFactory, SweepOutcome, sweep};

/// What kind of failure a run found. Each class has its own process exit code, so scripts
/// and CI can tell them apart (0 is a pass; 2 is left for usage errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureClass {
    /// The scenario's check found a broken invariant. Exit code 1.
    Correctness,
    /// A panic outside the actors (simulator, scenario, a failed assertion), or in an
    /// actor when the scenario counts those. Exit code 3.
    Crash,
    /// No progress within the liveness bound after healing (or the run never ended).
    /// Exit code 4.
    Liveness,
    /// Two runs of the same seed differed. Exit code 5.
    Nondeterminism,
}

impl FailureClass {
    pub fn exit_code(self) -> i32 {
        match self {
            FailureClass::Correctness => 1,
            FailureClass::Crash => 3,
            FailureClass::Liveness => 4,
            FailureClass::Nondeterminism => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Correctness => "correctness",
            FailureClass::Crash => "crash",
            FailureClass::Liveness => "liveness",
            FailureClass::Nondeterminism => "nondeterminism",
        }
    }
}

/// The id of the node at `index` in the simulator's tables: ids start at 1, so that 0 is
/// never a real node.
pub fn node_id(index: usize) -> NodeId {
    NodeId(index as u64 + 1)
}

/// The table index of `node`, or `None` for id 0 or an id beyond the node limit.
pub fn node_index(node: NodeId) -> Option<usize> {
    let index = usize::try_from(node.0.checked_sub(1)?).ok()?;
    (index < synod_core::limits::NODES_COUNT_MAX).then_some(index)
}
