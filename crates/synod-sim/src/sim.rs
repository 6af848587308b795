//! The simulation: a whole cluster of actor systems in one thread on virtual time.
//!
//! [`Simulation`] owns the event queue, the network, every node's clocks and disk, the
//! run's one PRNG and the scenario. Each event is handled in full (a delivery is followed by
//! a run of the receiving node), then the scenario checks its invariants. A node's actors
//! reach the simulated world through [`NodeServices`], which borrows the shared core and
//! knows which node it serves.

use std::collections::VecDeque;
use std::io::Write;

use bytes::Bytes;
use synod_actor::{
    DiskError, DiskOp, DiskReply, DiskRequestId, Inbound, NetSendError, Observation, Port,
    Services, System, SystemStatus,
};
use synod_core::limits::DISK_REQUESTS_COUNT_MAX;
use synod_core::{Duration, FaultPoints, Instant, NodeId, Prng, Validate, WallClock};

use crate::buggify::Buggify;
use crate::clock::NodeClock;
use crate::disk::SimDisk;
use crate::event::{Event, EventQueue, Packet};
use crate::mix::FaultMix;
use crate::network::{ArrivalVerdict, LinkFaults, Network, SendVerdict};
use crate::options::{FaultSelection, RunOptions};
use crate::scenario::{ClockReading, ClusterView, NodeStatus, ObservationRecord, Phase, Scenario};
use crate::trace::{Trace, payload_hash};
use crate::{FailureClass, node_id, node_index};

/// Trace codes of things that are not queue events.
pub(crate) const TRACE_SEND: u8 = 20;
pub(crate) const TRACE_STEP: u8 = 21;
pub(crate) const TRACE_CRASH: u8 = 22;
pub(crate) const TRACE_BOOT: u8 = 23;
pub(crate) const TRACE_PAUSE: u8 = 24;
pub(crate) const TRACE_FAULT: u8 = 25;

/// Why a run failed, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub description: String,
    /// Virtual time of the failure (`None` when it happened outside the event loop).
    pub at: Option<Instant>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed(Failure),
}

/// Counters of what happened to the nodes in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub crashes_count: u64,
    /// Crashes that also lost the disk's unsynced writes.
    pub power_losses_count: u64,
    pub boots_count: u64,
    /// Systems whose root supervisor gave up; each was restarted after a delay.
    pub halts_count: u64,
    pub pauses_count: u64,
    pub actor_panics_count: u64,
    pub disk_operations_count: u64,
    pub partitions_count: u64,
    pub clogs_count: u64,
    pub clock_jumps_count: u64,
    pub clock_drift_changes_count: u64,
    pub clock_syncs_count: u64,
}

/// Observations kept for the scenario, with absolute indices.
#[derive(Debug)]
pub(crate) struct Observations {
    records: VecDeque<ObservationRecord>,
    first_index: u64,
    capacity: usize,
    dropped_count: u64,
}

impl Observations {
    fn new(capacity: usize) -> Observations {
        Observations {
            records: VecDeque::new(),
            first_index: 0,
            capacity,
            dropped_count: 0,
        }
    }

    fn push(&mut self, record: ObservationRecord) {
        if self.records.len() >= self.capacity {
            self.records.pop_front();
            self.first_index += 1;
            self.dropped_count += 1;
        }
        self.records.push_back(record);
    }

    pub(crate) fn end(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    pub(crate) fn since(&self, index: u64) -> impl Iterator<Item = (u64, &ObservationRecord)> {
        let skip = index.saturating_sub(self.first_index);
        let skip = usize::try_from(skip)
            .unwrap_or(usize::MAX)
            .min(self.records.len());
        let first = self.first_index + skip as u64;
        self.records
            .range(skip..)
            .enumerate()
            .map(move |(offset, record)| (first + offset as u64, record))
    }

    pub(crate) fn dropped_count(&self) -> u64 {
        self.dropped_count
    }
}

/// A node's disk and its queue of operations, completed in FIFO order.
#[derive(Debug)]
pub(crate) struct NodeDisk {
    pub(crate) disk: SimDisk,
    pending: VecDeque<(DiskRequestId, DiskOp)>,
    last_completion: Instant,
}

/// Everything the nodes share: time, the PRNG, the queue, network, clocks and disks.
#[derive(Debug)]
pub(crate) struct SimCore {
    pub(crate) seed: u64,
    pub(crate) now: Instant,
    pub(crate) prng: Prng,
    pub(crate) queue: EventQueue,
    pub(crate) network: Network,
    pub(crate) clocks: Vec<NodeClock>,
    /// Clocks the time daemon keeps within the bound (false in the outside-bound fault).
    pub(crate) disciplined: Vec<bool>,
    pub(crate) disks: Vec<NodeDisk>,
    pub(crate) boots: Vec<u64>,
    pub(crate) buggify: Buggify,
    pub(crate) observations: Observations,
    pub(crate) trace: Trace,
    pub(crate) options: RunOptions,
    pub(crate) mix: FaultMix,
    pub(crate) phase: Phase,
    /// The healed core of the liveness phase, as a node bit mask.
    pub(crate) core_mask: u64,
    pub(crate) counters: NodeCounters,
    pub(crate) nemesis: crate::nemesis::NemesisState,
}

impl SimCore {
    pub(crate) fn clock_reading(&self, index: usize) -> ClockReading {
        let clock = &self.clocks[index];
        ClockReading {
            local: clock.local(self.now),
            wall_nanos: clock.wall(self.now).0,
            offset_nanos: clock.offset_nanos(self.now),
            drift_ppm: clock.drift_ppm(),
            within_bound: clock.within_bound(
                self.now,
                self.options.clock_offset_max,
                self.options.clock_drift_ppm_max,
            ),
        }
    }
}

/// Something a paused node will get when it resumes, in arrival order.
#[derive(Debug)]
pub(crate) enum Held {
    Packet(Packet),
    Disk(DiskRequestId, Result<DiskReply, DiskError>),
}

/// One node: its process (the actor system) while it runs, and what waits for it.
pub(crate) struct NodeSlot {
    pub(crate) system: Option<System>,
    /// The id of the pause in force, if the node is paused.
    pub(crate) paused: Option<u64>,
    /// 0 before the first boot.
    pub(crate) boot: u64,
    wakeup_at: Option<Instant>,
    held: VecDeque<Held>,
    panics_seen: u64,
}

impl NodeSlot {
    pub(crate) fn status(&self) -> NodeStatus {
        match (&self.system, self.paused) {
            (None, _) => NodeStatus::Down,
            (Some(_), Some(_)) => NodeStatus::Paused,
            (Some(_), None) => NodeStatus::Up,
        }
    }
}

/// The services one node's actors see: its clocks, the shared network, disk and PRNG.
pub struct NodeServices<'a> {
    core: &'a mut SimCore,
    node: usize,
    local_now: Instant,
    wall: WallClock,
}

impl<'a> NodeServices<'a> {
    fn new(core: &'a mut SimCore, node: usize) -> NodeServices<'a> {
        // Virtual time stands still during a step, so the readings are taken once.
        let clock = &core.clocks[node];
        let (local_now, wall) = (clock.local(core.now), clock.wall(core.now));
        NodeServices {
            core,
            node,
            local_now,
            wall,
        }
    }
}

impl Services for NodeServices<'_> {
    fn now(&self) -> Instant {
        self.local_now
    }

    fn wall_clock(&self) -> WallClock {
        self.wall
    }

    fn random_u64(&mut self) -> u64 {
        self.core.prng.next_u64()
    }

    fn send_to_node(&mut self, to: NodeId, port: Port, payload: Bytes) -> Result<(), NetSendError> {
        let core = &mut *self.core;
        let Some(to_index) = node_index(to).filter(|index| *index < core.clocks.len()) else {
            return Err(NetSendError::UnknownNode { node: to });
        };
        let from = node_id(self.node);
        let verdict = core.network.send(core.now, from, to, &mut core.prng);
        let hash = payload_hash(&payload);
        let detail = hash ^ ((to_index as u64) << 56) ^ (u64::from(port.0) << 40);
        core.trace
            .fold(core.now, TRACE_SEND, self.node as u64, detail);
        if core.trace.is_writing() {
            let what = format_args!(
                "send to {to} {port} len {} hash {hash:016x}: {verdict:?}",
                payload.len()
            );
            core.trace.line(core.now, Some(from), what);
        }
        let SendVerdict::Deliver { at, duplicate_at } = verdict else {
            return match verdict {
                SendVerdict::Full => Err(NetSendError::QueueFull {
                    node: to,
                    capacity: core.options.network.in_flight_per_path_max as usize,
                }),
                _ => Ok(()),
            };
        };
        let packet = Packet {
            from,
            to,
            port,
            payload,
            payload_hash: hash,
        };
        if let Some(duplicate_at) = duplicate_at {
            core.queue.push(duplicate_at, Event::Arrive(packet.clone()));
        }
        core.queue.push(at, Event::Arrive(packet));
        Ok(())
    }

    fn submit_disk(&mut self, id: DiskRequestId, op: DiskOp) {
        let core = &mut *self.core;
        let disk = &mut core.disks[self.node];
        assert!(
            disk.pending.len() < DISK_REQUESTS_COUNT_MAX,
            "disk queue of n{} exceeds {DISK_REQUESTS_COUNT_MAX}",
            self.node + 1
        );
        let latency = disk.disk.latency(&op, &mut core.prng);
        let at = disk.last_completion.max(core.now) + latency;
        disk.last_completion = at;
        disk.pending.push_back((id, op));
        let boot = core.boots[self.node];
        core.queue.push(
            at,
            Event::DiskComplete {
                node: self.node,
                boot,
            },
        );
    }

    fn buggify(&mut self, point: &'static str) -> bool {
        self.core.buggify.fires(point, &mut self.core.prng)
    }

    fn fault_points(&mut self) -> Box<dyn FaultPoints + Send> {
        let prng = self.core.prng.fork();
        self.core.buggify.fault_points(prng)
    }

    fn observe(&mut self, observation: Box<dyn Observation>) {
        let core = &mut *self.core;
        let node = node_id(self.node);
        if core.trace.is_writing() {
            core.trace.line(
                core.now,
                Some(node),
                format_args!("observe {observation:?}"),
            );
        }
        core.observations.push(ObservationRecord {
            at: core.now,
            node,
            boot: core.boots[self.node],
            observation,
        });
    }
}

/// A simulated cluster running one scenario from one seed.
pub struct Simulation {
    pub(crate) core: SimCore,
    pub(crate) nodes: Vec<NodeSlot>,
    pub(crate) scenario: Box<dyn Scenario>,
    events_count: u64,
    verdict: Option<Verdict>,
    /// Set by handlers (an actor panic); turned into the verdict after the event.
    pending_failure: Option<Failure>,
    deadline_passed: bool,
}

impl Simulation {
    /// Builds the cluster; nodes first boot within `boot_stagger_max`. Invalid options are
    /// a programming error here (callers validate what users give them) and panic.
    pub fn new(
        scenario: Box<dyn Scenario>,
        options: &RunOptions,
        seed: u64,
        trace_sink: Option<Box<dyn Write>>,
    ) -> Simulation {
        if let Err(error) = options.validate() {
            panic!("invalid run options: {error}");
        }
        let nodes_count = scenario.nodes_count();
        assert!(
            (1..=synod_core::limits::NODES_COUNT_MAX).contains(&nodes_count),
            "scenario {} has {nodes_count} nodes; 1 to 64 are supported",
            scenario.name()
        );
        let mut prng = Prng::from_seed(seed);
        let mut mix = match &options.faults {
            FaultSelection::Swarm => FaultMix::draw(&mut prng),
            FaultSelection::Fixed(mix) => mix.clone(),
        };
        scenario.adjust_fault_mix(&mut mix);
        let buggify = Buggify::new(mix.buggify, prng.fork());
        let network = Network::new(options.network.clone(), nodes_count, mix.network);
        let disks = (0..nodes_count)
            .map(|_| NodeDisk {
                disk: crate::disk_adapter::new_disk(&mix),
                pending: VecDeque::new(),
                last_completion: Instant::ZERO,
            })
            .collect();
        let core = SimCore {
            seed,
            now: Instant::ZERO,
            prng,
            queue: EventQueue::new(),
            network,
            clocks: Vec::with_capacity(nodes_count),
            disciplined: vec![true; nodes_count],
            disks,
            boots: vec![0; nodes_count],
            buggify,
            observations: Observations::new(options.observations_max),
            trace: Trace::new(seed, trace_sink),
            options: options.clone(),
            mix,
            phase: Phase::Safety,
            core_mask: 0,
            counters: NodeCounters::default(),
            nemesis: crate::nemesis::NemesisState::default(),
        };
        let nodes = (0..nodes_count)
            .map(|_| NodeSlot {
                system: None,
                paused: None,
                boot: 0,
                wakeup_at: None,
                held: VecDeque::new(),
                panics_seen: 0,
            })
            .collect();
        let mut simulation = Simulation {
            core,
            nodes,
            scenario,
            events_count: 0,
            verdict: None,
            pending_failure: None,
            deadline_passed: false,
        };
        simulation.schedule_start();
        simulation
    }

    fn schedule_start(&mut self) {
        self.init_clocks();
        let stagger = self.core.options.boot_stagger_max.as_nanos();
        for node in 0..self.nodes.len() {
            let at = Instant::from_nanos(self.core.prng.range_inclusive(0, stagger));
            self.core.queue.push(at, Event::Restart { node, boot: 0 });
        }
        if self.core.mix.nemesis_active() {
            self.schedule_nemesis();
        }
        let mix = &self.core.mix;
        if mix.clock_skew || mix.clock_jumps || mix.clock_outside_bound {
            let at = Instant::ZERO + self.core.options.clock_sync_interval;
            self.core.queue.push(at, Event::ClockSync);
        }
        let safety_end = Instant::ZERO + self.core.options.safety_duration;
        self.core.queue.push(safety_end, Event::LivenessStart);
    }

    /// The cluster as the scenario sees it.
    pub fn view(&self) -> ClusterView<'_> {
        ClusterView {
            core: &self.core,
            nodes: &self.nodes,
        }
    }

    pub fn now(&self) -> Instant {
        self.core.now
    }

    pub fn seed(&self) -> u64 {
        self.core.seed
    }

    pub fn events_count(&self) -> u64 {
        self.events_count
    }

    pub fn trace_hash(&self) -> u64 {
        self.core.trace.hash()
    }

    pub fn fault_mix(&self) -> &FaultMix {
        &self.core.mix
    }

    pub fn counters(&self) -> NodeCounters {
        self.core.counters
    }

    pub fn network(&self) -> &Network {
        &self.core.network
    }

    pub fn buggify(&self) -> &Buggify {
        &self.core.buggify
    }

    pub fn disk(&self, node: NodeId) -> &SimDisk {
        &self.core.disks[slot_index(node)].disk
    }

    /// How the run ended, once it has.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    pub fn scenario_mut(&mut self) -> &mut dyn Scenario {
        self.scenario.as_mut()
    }

    /// The scenario's end-of-run figures.
    pub fn report(&mut self) -> Vec<(String, String)> {
        let view = ClusterView {
            core: &self.core,
            nodes: &self.nodes,
        };
        self.scenario.report(&view)
    }

    /// Flushes the readable trace; the first write error, if any.
    pub fn finish_trace(&mut self) -> Option<String> {
        self.core.trace.finish()
    }

    /// Processes events until the run ends; returns how it ended.
    pub fn run(&mut self) -> Verdict {
        while self.step() {}
        self.verdict.clone().unwrap_or(Verdict::Passed)
    }

    /// Processes every event up to and including virtual time `until`, unless the run ends
    /// first; then the clock stands at `until`.
    pub fn run_until(&mut self, until: Instant) -> Option<&Verdict> {
        while self.verdict.is_none() && self.core.queue.peek_time().is_some_and(|at| at <= until) {
            self.step();
        }
        if self.verdict.is_none() {
            self.core.now = self.core.now.max(until);
        }
        self.verdict.as_ref()
    }

    /// Processes one event and checks the scenario; false once the run has ended.
    pub fn step(&mut self) -> bool {
        if self.verdict.is_some() {
            return false;
        }
        if self.events_count >= self.core.options.events_max {
            let description = format!(
                "the run reached its limit of {} events at {} without finishing: \
                 a livelock or an event storm",
                self.core.options.events_max, self.core.now
            );
            self.fail(FailureClass::Liveness, description);
            return false;
        }
        let Some((time, event)) = self.core.queue.pop() else {
            self.end_without_events();
            return false;
        };
        assert!(time >= self.core.now, "event at {time:?} before now");
        self.core.now = time;
        self.events_count += 1;
        self.handle(event);
        self.after_event();
        self.verdict.is_none()
    }

    fn end_without_events(&mut self) {
        let description = "the event queue ran dry before the run ended".to_string();
        self.fail(FailureClass::Liveness, description);
    }

    pub(crate) fn fail(&mut self, class: FailureClass, description: String) {
        if self.verdict.is_none() {
            let at = Some(self.core.now);
            self.verdict = Some(Verdict::Failed(Failure {
                class,
                description,
                at,
            }));
        }
    }

    fn after_event(&mut self) {
        if let Some(failure) = self.pending_failure.take() {
            self.verdict = Some(Verdict::Failed(failure));
            return;
        }
        let view = ClusterView {
            core: &self.core,
            nodes: &self.nodes,
        };
        if let Err(description) = self.scenario.check(&view) {
            self.fail(FailureClass::Correctness, description);
            return;
        }
        if matches!(self.core.phase, Phase::Liveness { .. }) && self.scenario.progress(&view) {
            self.verdict = Some(Verdict::Passed);
            return;
        }
        if self.deadline_passed {
            let bound = self.scenario.liveness_bound();
            let description = format!(
                "no progress within the liveness bound of {bound} after the majority core {:?} \
                 was healed",
                self.view().core_nodes()
            );
            self.fail(FailureClass::Liveness, description);
        }
    }

    fn handle(&mut self, event: Event) {
        let kind = event.kind();
        let now = self.core.now;
        if self.core.trace.is_writing() {
            self.trace_event(&event);
        }
        match event {
            Event::Arrive(packet) => self.on_arrive(packet),
            Event::Wakeup { node, boot } => self.on_wakeup(node, boot),
            Event::DiskComplete { node, boot } => self.on_disk_complete(node, boot),
            Event::Restart { node, boot } => {
                self.core.trace.fold(now, kind, node as u64, boot);
                if self.nodes[node].system.is_none() && self.nodes[node].boot == boot {
                    self.boot_node(node);
                }
            }
            Event::PauseEnd { node, pause } => {
                self.core.trace.fold(now, kind, node as u64, pause);
                if self.nodes[node].paused == Some(pause) {
                    self.resume(node_id(node));
                }
            }
            Event::ClockSync => self.on_clock_sync(),
            Event::LivenessStart => self.start_liveness(),
            Event::LivenessDeadline => {
                self.core.trace.fold(now, kind, 0, 0);
                self.deadline_passed = true;
            }
            Event::Nemesis => self.on_nemesis(),
            Event::Heal { epoch } => self.on_heal(epoch),
            Event::Clog { node, program } => self.on_clog(node, program),
            Event::Unclog { node, program } => self.on_unclog(node, program),
        }
    }

    /// The readable line of an event whose handler does not write a more detailed one.
    fn trace_event(&mut self, event: &Event) {
        let now = self.core.now;
        let (node, what) = match event {
            Event::Arrive(_) | Event::DiskComplete { .. } => return,
            Event::Wakeup { node, boot } => (Some(*node), format!("wakeup (boot {boot})")),
            Event::Restart { node, boot } => (Some(*node), format!("restart due (boot {boot})")),
            Event::PauseEnd { node, pause } => (Some(*node), format!("pause {pause} ends")),
            Event::Clog { node, program } => (Some(*node), format!("swizzle {program} step")),
            Event::Unclog { node, program } => (Some(*node), format!("swizzle {program} step")),
            Event::Heal { epoch } => (None, format!("partition {epoch} heal due")),
            Event::Nemesis => (None, "nemesis".to_string()),
            Event::ClockSync => (None, "clock sync".to_string()),
            Event::LivenessStart => (None, "safety phase ends".to_string()),
            Event::LivenessDeadline => (None, "liveness bound reached".to_string()),
        };
        self.core
            .trace
            .line(now, node.map(node_id), format_args!("{what}"));
    }

    fn on_arrive(&mut self, packet: Packet) {
        let core = &mut self.core;
        let to = node_index(packet.to).expect("packet to a cluster node");
        let detail = packet.payload_hash ^ ((node_index(packet.from).unwrap_or(0) as u64) << 56);
        core.trace.fold(core.now, 1, to as u64, detail);
        let verdict = core.network.arrive(core.now, packet.from, packet.to);
        let status = self.nodes[to].status();
        if core.trace.is_writing() {
            let what = format_args!(
                "arrive from {} {} len {} hash {:016x}: {verdict:?}, receiver {status:?}",
                packet.from,
                packet.port,
                packet.payload.len(),
                packet.payload_hash
            );
            core.trace.line(core.now, Some(packet.to), what);
        }
        match verdict {
            ArrivalVerdict::Blocked => {}
            ArrivalVerdict::Clogged { retry_at } => {
                core.queue.push(retry_at, Event::Arrive(packet));
            }
            ArrivalVerdict::Arrive => match status {
                NodeStatus::Down => core.network.finish(packet.from, packet.to, false),
                NodeStatus::Paused => {
                    core.network.count_held(packet.from, packet.to);
                    self.hold(to, Held::Packet(packet));
                }
                NodeStatus::Up => {
                    self.deliver_packet(to, packet);
                    self.step_node(to);
                }
            },
        }
    }

    fn deliver_packet(&mut self, node: usize, packet: Packet) {
        self.core.network.finish(packet.from, packet.to, true);
        let system = self.nodes[node].system.as_mut().expect("node is up");
        system.deliver(Inbound {
            from: packet.from,
            port: packet.port,
            payload: packet.payload,
        });
    }

    fn hold(&mut self, node: usize, held: Held) {
        // Bounded by the network's in-flight bound per path plus the disk queue bound.
        let held_max = self.nodes.len() * self.core.options.network.in_flight_per_path_max as usize
            + DISK_REQUESTS_COUNT_MAX;
        let slot = &mut self.nodes[node];
        assert!(
            slot.held.len() < held_max,
            "held events of n{} exceed {held_max}",
            node + 1
        );
        slot.held.push_back(held);
    }

    fn on_wakeup(&mut self, node: usize, boot: u64) {
        let now = self.core.now;
        self.core.trace.fold(now, 2, node as u64, boot);
        let slot = &mut self.nodes[node];
        if slot.boot != boot {
            return;
        }
        if slot.wakeup_at == Some(now) {
            slot.wakeup_at = None;
        }
        if slot.status() == NodeStatus::Up {
            self.step_node(node);
        }
    }

    fn on_disk_complete(&mut self, node: usize, boot: u64) {
        let core = &mut self.core;
        if self.nodes[node].boot != boot || self.nodes[node].system.is_none() {
            // The operation belonged to a boot that crashed: the crash already discarded it.
            core.trace.fold(core.now, 3, node as u64, u64::MAX);
            return;
        }
        let disk = &mut core.disks[node];
        let (id, op) = disk
            .pending
            .pop_front()
            .expect("a disk completion has its operation");
        let result = disk.disk.execute(&op, &mut core.prng);
        core.counters.disk_operations_count += 1;
        let outcome = match &result {
            Ok(_) => 0,
            Err(_) => 1,
        };
        core.trace
            .fold(core.now, 3, node as u64, (id.0 << 1) | outcome);
        if core.trace.is_writing() {
            let what = format_args!("disk {} #{}: {}", op.kind(), id.0, result_text(&result));
            core.trace.line(core.now, Some(node_id(node)), what);
        }
        if self.nodes[node].paused.is_some() {
            self.hold(node, Held::Disk(id, result));
            return;
        }
        let system = self.nodes[node].system.as_mut().expect("node is up");
        system.complete_disk(id, result);
        self.step_node(node);
    }

    /// Runs a node's actors once, then looks at what the run left behind.
    pub(crate) fn step_node(&mut self, node: usize) {
        let budget = self.core.options.node_step_budget;
        let slot = &mut self.nodes[node];
        let Some(system) = slot.system.as_mut() else {
            return;
        };
        let mut services = NodeServices::new(&mut self.core, node);
        let handled = system.run(&mut services, budget);
        let now = self.core.now;
        self.core
            .trace
            .fold(now, TRACE_STEP, node as u64, handled as u64);
        if self.core.trace.is_writing() {
            let what = format_args!("ran {handled} messages");
            self.core.trace.line(now, Some(node_id(node)), what);
        }
        self.after_node_step(node);
    }

    fn after_node_step(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        let system = slot.system.as_ref().expect("stepped node is up");
        let panics_count = system.stats().panics_count;
        if panics_count > slot.panics_seen {
            slot.panics_seen = panics_count;
            self.core.counters.actor_panics_count += 1;
            if self.scenario.panics_are_failures() && self.pending_failure.is_none() {
                let record = system.panics().last();
                let (actor, message) = record.map_or(("?", "?"), |record| {
                    (record.actor.as_str(), record.message.as_str())
                });
                let description = format!(
                    "actor {actor} on n{} (boot {}) panicked: {message}",
                    node + 1,
                    slot.boot
                );
                self.pending_failure = Some(Failure {
                    class: FailureClass::Crash,
                    description,
                    at: Some(self.core.now),
                });
            }
        }
        if let SystemStatus::Halted { reason } = system.status() {
            let reason = reason.clone();
            self.halt_node(node, &reason);
            return;
        }
        self.schedule_wakeup(node);
    }

    fn schedule_wakeup(&mut self, node: usize) {
        let now = self.core.now;
        let slot = &mut self.nodes[node];
        let system = slot.system.as_ref().expect("node is up");
        let at = if system.is_idle() {
            match system.next_deadline() {
                Some(deadline) => self.core.clocks[node].to_global(now, deadline),
                None => return,
            }
        } else {
            now
        };
        if slot.wakeup_at.is_none_or(|scheduled| at < scheduled) {
            slot.wakeup_at = Some(at);
            let boot = slot.boot;
            self.core.queue.push(at, Event::Wakeup { node, boot });
        }
    }

    /// Forces a fresh wakeup computation (after the node's clock rate changed).
    pub(crate) fn reschedule_wakeup(&mut self, node: usize) {
        self.nodes[node].wakeup_at = None;
        if self.nodes[node].system.is_some() {
            let boot = self.nodes[node].boot;
            self.core
                .queue
                .push(self.core.now, Event::Wakeup { node, boot });
        }
    }

    fn halt_node(&mut self, node: usize, reason: &str) {
        self.core.counters.halts_count += 1;
        if self.core.trace.is_writing() {
            let what = format_args!("halted: {reason}");
            self.core
                .trace
                .line(self.core.now, Some(node_id(node)), what);
        }
        // A halted process exits; the kernel keeps its unsynced writes, so no power loss.
        self.take_down(node, false);
        let at = self.core.now + self.core.options.halt_restart_delay;
        let boot = self.nodes[node].boot;
        self.core.queue.push(at, Event::Restart { node, boot });
    }

    /// Crashes a node: its system and everything volatile is dropped. With `power_loss` the
    /// disk also loses (some of) its unsynced writes. The caller schedules any restart.
    pub fn crash(&mut self, node: NodeId, power_loss: bool) {
        let index = slot_index(node);
        if self.nodes[index].system.is_none() {
            return;
        }
        self.core.counters.crashes_count += 1;
        self.take_down(index, power_loss);
    }

    fn take_down(&mut self, node: usize, power_loss: bool) {
        let now = self.core.now;
        self.core
            .trace
            .fold(now, TRACE_CRASH, node as u64, u64::from(power_loss));
        if self.core.trace.is_writing() {
            let what = format_args!("crash (power loss: {power_loss})");
            self.core.trace.line(now, Some(node_id(node)), what);
        }
        let slot = &mut self.nodes[node];
        slot.system = None;
        slot.paused = None;
        slot.wakeup_at = None;
        slot.panics_seen = 0;
        for held in slot.held.drain(..) {
            if let Held::Packet(packet) = held {
                self.core.network.finish(packet.from, packet.to, false);
            }
        }
        let disk = &mut self.core.disks[node];
        disk.pending.clear();
        disk.last_completion = now;
        if power_loss {
            self.core.counters.power_losses_count += 1;
            disk.disk.crash(&mut self.core.prng);
        }
    }

    /// Starts a node that is down: a fresh system booted by the scenario from its disk.
    pub fn restart(&mut self, node: NodeId) {
        let index = slot_index(node);
        if self.nodes[index].system.is_none() {
            self.boot_node(index);
        }
    }

    fn boot_node(&mut self, node: usize) {
        let id = node_id(node);
        let mut system = System::new(self.scenario.system_config(id));
        self.scenario.boot(id, &mut system);
        let slot = &mut self.nodes[node];
        slot.boot += 1;
        slot.system = Some(system);
        slot.wakeup_at = None;
        slot.panics_seen = 0;
        self.core.boots[node] = slot.boot;
        self.core.counters.boots_count += 1;
        let now = self.core.now;
        self.core
            .trace
            .fold(now, TRACE_BOOT, node as u64, slot.boot);
        if self.core.trace.is_writing() {
            let what = format_args!("boot {}", self.nodes[node].boot);
            self.core.trace.line(now, Some(id), what);
        }
        self.step_node(node);
    }

    /// Pauses an up node for `duration`: it handles nothing until then.
    pub fn pause(&mut self, node: NodeId, duration: Duration) {
        let index = slot_index(node);
        if self.nodes[index].status() != NodeStatus::Up {
            return;
        }
        self.core.nemesis.pauses_started += 1;
        let pause = self.core.nemesis.pauses_started;
        self.nodes[index].paused = Some(pause);
        self.core.counters.pauses_count += 1;
        let now = self.core.now;
        self.core.trace.fold(now, TRACE_PAUSE, index as u64, pause);
        if self.core.trace.is_writing() {
            self.core
                .trace
                .line(now, Some(node), format_args!("pause for {duration}"));
        }
        let node = index;
        self.core
            .queue
            .push(now + duration, Event::PauseEnd { node, pause });
    }

    /// Resumes a paused node: what arrived meanwhile is handed over in arrival order.
    pub fn resume(&mut self, node: NodeId) {
        let index = slot_index(node);
        if self.nodes[index].paused.take().is_none() {
            return;
        }
        let now = self.core.now;
        self.core.trace.fold(now, TRACE_PAUSE, index as u64, 0);
        if self.core.trace.is_writing() {
            self.core
                .trace
                .line(now, Some(node), format_args!("resume"));
        }
        let held: Vec<Held> = self.nodes[index].held.drain(..).collect();
        for item in held {
            match item {
                Held::Packet(packet) => self.deliver_packet(index, packet),
                Held::Disk(id, result) => {
                    let system = self.nodes[index]
                        .system
                        .as_mut()
                        .expect("paused node is up");
                    system.complete_disk(id, result);
                }
            }
        }
        self.nodes[index].wakeup_at = None;
        self.step_node(index);
    }

    /// Replaces the partition (blocked directed links).
    pub fn set_partition(&mut self, partition: crate::network::LinkSet) {
        let now = self.core.now;
        let detail = partition.fingerprint();
        self.core.trace.fold(now, TRACE_FAULT, 0, detail);
        if self.core.trace.is_writing() {
            let what = format_args!("partition {partition:?}");
            self.core.trace.line(now, None, what);
        }
        self.core.network.set_partition(partition);
    }

    /// Steps a node's wall clock by `delta_nanos`.
    pub fn jump_clock(&mut self, node: NodeId, delta_nanos: i64) {
        let (index, now) = (slot_index(node), self.core.now);
        self.core.clocks[index].jump_wall(now, delta_nanos);
        self.core.counters.clock_jumps_count += 1;
        self.core
            .trace
            .fold(now, TRACE_FAULT, index as u64, delta_nanos as u64);
        if self.core.trace.is_writing() {
            let what = format_args!("wall clock jumps {delta_nanos}ns");
            self.core.trace.line(now, Some(node), what);
        }
    }

    /// Changes a node's clock rate.
    pub fn set_drift(&mut self, node: NodeId, drift_ppm: i64) {
        let (index, now) = (slot_index(node), self.core.now);
        self.core.clocks[index].set_drift(now, drift_ppm);
        self.core.counters.clock_drift_changes_count += 1;
        self.core
            .trace
            .fold(now, TRACE_FAULT, index as u64, drift_ppm as u64);
        if self.core.trace.is_writing() {
            let what = format_args!("clock drift now {drift_ppm}ppm");
            self.core.trace.line(now, Some(node), what);
        }
        self.reschedule_wakeup(index);
    }

    /// Sets network faults on every link outside the healed core.
    pub fn set_link_faults(&mut self, faults: LinkFaults) {
        self.core.mix.network = faults;
        self.core.network.set_faults(faults);
    }
}

fn slot_index(node: NodeId) -> usize {
    node_index(node).expect("node id within the cluster")
}

fn result_text(result: &Result<DiskReply, DiskError>) -> String {
    match result {
        Ok(DiskReply::Done) => "done".to_string(),
        Ok(DiskReply::Data(data)) => format!("{} bytes", data.len()),
        Ok(DiskReply::Len(len)) => format!("len {len}"),
        Ok(DiskReply::Names(names)) => format!("{} names", names.len()),
        Err(error) => format!("error: {error}"),
    }
}
