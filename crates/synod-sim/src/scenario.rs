//! The boundary between the simulator and the system under test.
//!
//! A [`Scenario`] boots each node's root actors into a fresh [`System`], checks invariants
//! after every event through a read-only [`ClusterView`], judges liveness once a majority
//! core has been healed, and reports figures at the end of a run.

use std::any::Any;

use synod_actor::{Observation, System, SystemConfig};
use synod_core::{Duration, Instant, NodeId};

use crate::disk::DiskStats;
use crate::mix::FaultMix;
use crate::network::{LinkSet, PathStats};
use crate::node_id;
use crate::sim::{NodeSlot, SimCore};

/// The protocol under test, as the simulator sees it.
pub trait Scenario {
    /// The name the replay command uses: `synod sim --scenario NAME --seed N`.
    fn name(&self) -> &str;
    fn nodes_count(&self) -> usize;
    /// The actor-system settings of `node`; called before every boot.
    fn system_config(&self, node: NodeId) -> SystemConfig {
        SystemConfig::new(node)
    }
    /// Narrows the fault mix drawn for a run to the faults this protocol claims to survive
    /// (e.g. a single-disk protocol cannot survive latent bit flips). Called once per run,
    /// before anything happens; the report shows the adjusted mix.
    fn adjust_fault_mix(&self, _mix: &mut FaultMix) {}
    /// Spawns the root actors of `node` into a fresh system, at first boot and after every
    /// restart. Everything the node knows after a restart must come from its disk.
    fn boot(&mut self, node: NodeId, system: &mut System);
    /// Checked after EVERY event; `Err(description)` is a correctness failure.
    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String>;
    /// Liveness phase: true once the healed majority core has made the required progress.
    fn progress(&mut self, view: &ClusterView<'_>) -> bool;
    /// How long after healing progress must appear.
    fn liveness_bound(&self) -> Duration;
    /// Figures for the end-of-run report, as (name, value).
    fn report(&mut self, view: &ClusterView<'_>) -> Vec<(String, String)>;
    /// Whether panics caught in actors count as crash failures.
    fn panics_are_failures(&self) -> bool {
        true
    }
    /// Node sets the healed core must hold a majority of, each, for the protocol to make
    /// progress (a replicated log's voter sets that may be in force after membership
    /// changes); called when the liveness phase starts. Empty: any majority of all nodes.
    fn liveness_quorums(&self) -> Vec<Vec<NodeId>> {
        Vec::new()
    }
}

/// Whether a node's process is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Up,
    /// Crashed or halted, waiting for its restart.
    Down,
    /// Stopped in its tracks (a GC pause, SIGSTOP): it handles nothing; its events wait.
    Paused,
}

/// The phase of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Faults on; only safety is judged.
    Safety,
    /// A majority core was healed at `healed_at`; progress must follow within the bound.
    Liveness { healed_at: Instant },
}

/// Something a node's actor reported through `Context::observe`, with where and when.
#[derive(Debug)]
pub struct ObservationRecord {
    /// Virtual (true) time of the report.
    pub at: Instant,
    pub node: NodeId,
    /// The node's boot generation at the report (1 for the first boot).
    pub boot: u64,
    pub observation: Box<dyn Observation>,
}

impl ObservationRecord {
    /// The observation as a `T`, if it is one.
    pub fn downcast<T: Any>(&self) -> Option<&T> {
        // Through the box's contents: `Box<dyn Observation>` is itself an `Observation`
        // (the blanket impl), so calling `as_any` on the box would yield the box.
        (*self.observation).as_any().downcast_ref::<T>()
    }
}

/// A node's clocks as the simulator knows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// The node's monotonic clock (what `ctx.now()` returns there).
    pub local: Instant,
    /// The node's wall clock, Unix nanoseconds.
    pub wall_nanos: i64,
    /// Wall clock minus true time.
    pub offset_nanos: i64,
    pub drift_ppm: i64,
    /// Offset and drift are within the run's configured bounds.
    pub within_bound: bool,
}

/// A read-only view of the whole cluster, handed to the scenario after every event.
pub struct ClusterView<'a> {
    pub(crate) core: &'a SimCore,
    pub(crate) nodes: &'a [NodeSlot],
}

impl<'a> ClusterView<'a> {
    /// Virtual (true) time.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// The run's seed (for figures and for deliberately seed-dependent test checks).
    pub fn seed(&self) -> u64 {
        self.core.seed
    }

    pub fn nodes_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node id of the cluster, ascending; ids start at 1.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + use<> {
        (0..self.nodes.len()).map(node_id)
    }

    fn slot(&self, node: NodeId) -> &'a NodeSlot {
        let index = crate::node_index(node).expect("node id within the cluster");
        &self.nodes[index]
    }

    pub fn status(&self, node: NodeId) -> NodeStatus {
        self.slot(node).status()
    }

    /// The node's boot generation: 1 at first boot, +1 at every restart.
    pub fn boot_generation(&self, node: NodeId) -> u64 {
        self.slot(node).boot
    }

    /// The node's actor system while its process exists (up or paused).
    pub fn system(&self, node: NodeId) -> Option<&'a System> {
        self.slot(node).system.as_ref()
    }

    pub fn clock(&self, node: NodeId) -> ClockReading {
        self.core
            .clock_reading(crate::node_index(node).expect("node id"))
    }

    /// Whether every node's clock is within the configured bounds right now.
    pub fn clocks_within_bound(&self) -> bool {
        (0..self.nodes.len()).all(|index| self.core.clock_reading(index).within_bound)
    }

    /// Whether this run's fault mix drives some clocks outside the configured bounds, so a
    /// scenario whose safety rests on the bound can tell its assumption was broken.
    pub fn clock_faults_outside_bound(&self) -> bool {
        self.core.mix.clock_outside_bound
    }

    pub fn clock_offset_max(&self) -> Duration {
        self.core.options.clock_offset_max
    }

    pub fn clock_drift_ppm_max(&self) -> i64 {
        self.core.options.clock_drift_ppm_max
    }

    /// The directed links the current partition blocks (clogs not included).
    pub fn partition(&self) -> &'a LinkSet {
        self.core.network.partition()
    }

    /// Whether a message from `from` to `to` would be dropped or delayed now (partition or
    /// clog).
    pub fn link_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.core.network.is_link_blocked(from, to)
    }

    pub fn phase(&self) -> Phase {
        self.core.phase
    }

    /// The healed majority core during the liveness phase, ascending.
    pub fn core_nodes(&self) -> Vec<NodeId> {
        let mask = self.core.core_mask;
        (0..self.nodes.len())
            .filter(|index| mask & (1u64 << index) != 0)
            .map(node_id)
            .collect()
    }

    pub fn in_core(&self, node: NodeId) -> bool {
        crate::node_index(node).is_some_and(|index| self.core.core_mask & (1u64 << index) != 0)
    }

    /// The index one past the latest observation: pass it to the next
    /// [`observations_since`](Self::observations_since) to read only new ones.
    pub fn observations_end(&self) -> u64 {
        self.core.observations.end()
    }

    /// Observations with an index at or after `index`, in the order they were made, with
    /// their indices. Observations older than the retention bound are gone (counted in
    /// [`observations_dropped`](Self::observations_dropped)).
    pub fn observations_since(
        &self,
        index: u64,
    ) -> impl Iterator<Item = (u64, &'a ObservationRecord)> + use<'a> {
        self.core.observations.since(index)
    }

    pub fn observations_dropped(&self) -> u64 {
        self.core.observations.dropped_count()
    }

    pub fn network_totals(&self) -> PathStats {
        self.core.network.totals()
    }

    pub fn path_stats(&self, from: NodeId, to: NodeId) -> PathStats {
        self.core.network.path_stats(from, to)
    }

    /// What `node`'s disk did and what it injected so far (it survives crashes).
    pub fn disk_stats(&self, node: NodeId) -> DiskStats {
        let index = crate::node_index(node).expect("node id within the cluster");
        self.core.disks[index].disk.stats()
    }

    pub fn fault_mix(&self) -> &'a FaultMix {
        &self.core.mix
    }
}
