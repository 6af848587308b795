//! The heartbeat cluster: every node runs synod-node's failure-detection tree (durable
//! incarnation, phi-accrual heartbeats, membership view) under the simulator's faults.
//!
//! Safety, checked after every event:
//! - a node never boots with an incarnation it (or an earlier boot of it) already used: the
//!   incarnation is written and synced before use, so crashes, torn writes and failed fsyncs
//!   must never make it go backwards;
//! - a node never suspects itself.
//!
//! Liveness, after the majority core is healed: every core node is running, has heard from
//! every other core node within the last second, and suspects none of them.
//!
//! Figures: detection time (from a peer's crash, pause or the partition of the link to the
//! observer, until the observer suspects it) and false suspicions (of a peer that was up,
//! unpaused and reachable for the whole grace period before).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use synod_actor::{ActorId, System};
use synod_core::{Duration, Instant, NodeId};
use synod_detector::DetectorConfig;
use synod_node::{FailureDetectorActor, FailureDetectorConfig, MembershipEvent, NodeBooted};

use crate::scenario::{ClusterView, NodeStatus, Phase, Scenario};

/// The name `synod sim --scenario` knows this scenario by.
pub const HEARTBEAT_SCENARIO: &str = "heartbeat";

/// How long after a peer's outage ends (or a link heals) a suspicion still counts as
/// justified: heartbeats in flight and the detector's own reaction take this long to settle.
pub const SUSPICION_GRACE: Duration = Duration::from_secs(1);
/// Outages shorter than this may rightly go undetected (phi tolerates short pauses); longer
/// ones that no observer suspected count as missed detections.
pub const OUTAGE_DETECTABLE_MIN: Duration = Duration::from_secs(2);
/// Liveness: a core node must have heard from every core peer within this span.
pub const HEARD_WITHIN: Duration = Duration::from_secs(1);
/// The most detection-time samples kept per cause (beyond it they are only counted).
pub const SAMPLES_COUNT_MAX: usize = 100_000;

/// Why an observer lost contact with a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Crash,
    Pause,
    Partition,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::Crash => "crash",
            Cause::Pause => "pause",
            Cause::Partition => "partition",
        }
    }
}

/// A loss of contact that the observer should detect.
#[derive(Clone, Copy, Debug)]
struct Outage {
    cause: Cause,
    since: Instant,
}

/// What the scenario tracks about one node between events.
#[derive(Clone, Debug)]
struct NodeTrack {
    status: NodeStatus,
    /// When the node last became available (up and unpaused).
    available_since: Instant,
    /// When the node last resumed from a pause (observer stalls look like silence).
    resumed_at: Option<Instant>,
    incarnation_max: u64,
    /// The detector actor of the current boot, cached to avoid searching the tree.
    detector: Option<(u64, ActorId)>,
}

/// Detection-time samples and suspicion counters.
#[derive(Clone, Debug, Default)]
pub struct DetectionFigures {
    pub detection_samples: BTreeMap<Cause, Vec<Duration>>,
    pub detections_count: BTreeMap<Cause, u64>,
    pub missed_count: BTreeMap<Cause, u64>,
    pub suspicions_count: u64,
    pub false_suspicions_count: u64,
    /// Suspicions raised by an observer that had itself just resumed from a pause.
    pub observer_stall_suspicions_count: u64,
    /// Observer-peer pairs times the time both were available, for the false-suspicion rate.
    pub pair_available_nanos: u128,
}

impl DetectionFigures {
    /// Adds another run's figures to these.
    pub fn merge(&mut self, other: &DetectionFigures) {
        for (cause, samples) in &other.detection_samples {
            let mine = self.detection_samples.entry(*cause).or_default();
            let room = SAMPLES_COUNT_MAX.saturating_sub(mine.len());
            mine.extend(samples.iter().take(room));
        }
        for (cause, count) in &other.detections_count {
            *self.detections_count.entry(*cause).or_default() += count;
        }
        for (cause, count) in &other.missed_count {
            *self.missed_count.entry(*cause).or_default() += count;
        }
        self.suspicions_count += other.suspicions_count;
        self.false_suspicions_count += other.false_suspicions_count;
        self.observer_stall_suspicions_count += other.observer_stall_suspicions_count;
        self.pair_available_nanos += other.pair_available_nanos;
    }
}

/// The heartbeat cluster scenario.
pub struct HeartbeatScenario {
    config: FailureDetectorConfig,
    nodes: Vec<NodeTrack>,
    /// `blocked[from][to]`: since when the link has been blocked, and when it last healed.
    links: Vec<Vec<(Option<Instant>, Instant)>>,
    /// Open outages: (observer, peer) -> outage the observer has not yet detected.
    pending: BTreeMap<(NodeId, NodeId), Outage>,
    /// (observer, peer) pairs the observer currently suspects, from its events. An outage
    /// of a peer already suspected needs no new detection.
    suspecting: BTreeSet<(NodeId, NodeId)>,
    observations_next: u64,
    last_event_at: Instant,
    figures: DetectionFigures,
    /// Where `report` adds this run's figures, for measurements over many seeds.
    sink: Option<Arc<Mutex<DetectionFigures>>>,
}

impl HeartbeatScenario {
    pub fn new(nodes_count: usize) -> HeartbeatScenario {
        let members: Vec<NodeId> = (1..=nodes_count as u64).map(NodeId).collect();
        let config = FailureDetectorConfig {
            members,
            detector: DetectorConfig::default(),
        };
        let track = NodeTrack {
            status: NodeStatus::Down,
            available_since: Instant::ZERO,
            resumed_at: None,
            incarnation_max: 0,
            detector: None,
        };
        HeartbeatScenario {
            config,
            nodes: vec![track; nodes_count],
            links: vec![vec![(None, Instant::ZERO); nodes_count]; nodes_count],
            pending: BTreeMap::new(),
            suspecting: BTreeSet::new(),
            observations_next: 0,
            last_event_at: Instant::ZERO,
            figures: DetectionFigures::default(),
            sink: None,
        }
    }

    /// A scenario that also adds its figures to `sink` when the run reports.
    pub fn with_sink(nodes_count: usize, sink: Arc<Mutex<DetectionFigures>>) -> Self {
        HeartbeatScenario {
            sink: Some(sink),
            ..HeartbeatScenario::new(nodes_count)
        }
    }

    pub fn figures(&self) -> &DetectionFigures {
        &self.figures
    }

    fn index(node: NodeId) -> usize {
        usize::try_from(node.0 - 1).expect("node ids start at 1")
    }

    fn available(&self, node: NodeId) -> bool {
        self.nodes[Self::index(node)].status == NodeStatus::Up
    }

    /// Folds node status and link changes since the last event into the outage book.
    fn track_topology(&mut self, view: &ClusterView<'_>) {
        let now = view.now();
        self.account_pair_time(now);
        for node in view.node_ids() {
            let status = view.status(node);
            let previous = self.nodes[Self::index(node)].status;
            if status != previous {
                self.on_status_change(node, previous, status, now);
            }
        }
        for from in view.node_ids() {
            for to in view.node_ids().filter(|to| *to != from) {
                let blocked = view.link_blocked(from, to);
                let (since, _) = self.links[Self::index(from)][Self::index(to)];
                if blocked != since.is_some() {
                    self.on_link_change(from, to, blocked, now);
                }
            }
        }
    }

    fn account_pair_time(&mut self, now: Instant) {
        let span = now.saturating_duration_since(self.last_event_at).as_nanos();
        self.last_event_at = now;
        let available = self
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Up)
            .count() as u128;
        self.figures.pair_available_nanos +=
            u128::from(span) * available * available.saturating_sub(1);
    }

    fn on_status_change(&mut self, node: NodeId, from: NodeStatus, to: NodeStatus, now: Instant) {
        let track = &mut self.nodes[Self::index(node)];
        track.status = to;
        if to == NodeStatus::Up {
            track.available_since = now;
            if from == NodeStatus::Paused {
                track.resumed_at = Some(now);
            }
            self.close_outages(|_, peer| peer == node, now);
            return;
        }
        // The node is unavailable: every running observer should notice; the node itself,
        // as an observer, stops observing.
        let cause = if to == NodeStatus::Down {
            Cause::Crash
        } else {
            Cause::Pause
        };
        self.pending.retain(|(observer, _), _| *observer != node);
        if to == NodeStatus::Down {
            // A crashed observer's detector state is gone with it.
            self.suspecting.retain(|(observer, _)| *observer != node);
        }
        for observer in (1..=self.nodes.len() as u64).map(NodeId) {
            let fresh = !self.suspecting.contains(&(observer, node));
            if observer != node && self.available(observer) && fresh {
                self.pending
                    .entry((observer, node))
                    .or_insert(Outage { cause, since: now });
            }
        }
    }

    fn on_link_change(&mut self, from: NodeId, to: NodeId, blocked: bool, now: Instant) {
        let link = &mut self.links[Self::index(from)][Self::index(to)];
        if blocked {
            link.0 = Some(now);
            // `to` can no longer hear `from`.
            let fresh = !self.suspecting.contains(&(to, from));
            if self.available(from) && self.available(to) && fresh {
                let outage = Outage {
                    cause: Cause::Partition,
                    since: now,
                };
                self.pending.entry((to, from)).or_insert(outage);
            }
        } else {
            link.0 = None;
            link.1 = now;
            self.close_outages(|observer, peer| observer == to && peer == from, now);
        }
    }

    /// Ends outages matching `which`; long ones nobody detected count as missed.
    fn close_outages(&mut self, which: impl Fn(NodeId, NodeId) -> bool, now: Instant) {
        let ended: Vec<(NodeId, NodeId)> = self
            .pending
            .keys()
            .copied()
            .filter(|(o, p)| which(*o, *p))
            .collect();
        for key in ended {
            let outage = self.pending.remove(&key).expect("listed above");
            let still_blocked = self.links[Self::index(key.1)][Self::index(key.0)]
                .0
                .is_some();
            if now - outage.since >= OUTAGE_DETECTABLE_MIN && !still_blocked {
                *self.figures.missed_count.entry(outage.cause).or_default() += 1;
            }
        }
    }

    /// Reads new observations, checking the safety properties.
    fn read_observations(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        let mut next = self.observations_next;
        for (index, record) in view.observations_since(self.observations_next) {
            next = index + 1;
            if let Some(booted) = record.downcast::<NodeBooted>() {
                self.on_booted(record.node, record.boot, booted.incarnation)?;
            } else if let Some(event) = record.downcast::<MembershipEvent>() {
                self.on_membership_event(record.node, *event, record.at)?;
            }
        }
        self.observations_next = next;
        Ok(())
    }

    fn on_booted(&mut self, node: NodeId, boot: u64, incarnation: u64) -> Result<(), String> {
        // A (re)started detector begins with no suspicions.
        self.suspecting.retain(|(observer, _)| *observer != node);
        let track = &mut self.nodes[Self::index(node)];
        if incarnation <= track.incarnation_max {
            return Err(format!(
                "{node} (boot {boot}) started incarnation {incarnation}, but incarnation {} was \
                 already in use: the incarnation went backwards, so it was used before it was \
                 durable",
                track.incarnation_max
            ));
        }
        track.incarnation_max = incarnation;
        Ok(())
    }

    fn on_membership_event(
        &mut self,
        observer: NodeId,
        event: MembershipEvent,
        at: Instant,
    ) -> Result<(), String> {
        let peer = match event {
            MembershipEvent::Suspected { peer, .. } => peer,
            MembershipEvent::Recovered { peer, .. } | MembershipEvent::Restarted { peer, .. } => {
                self.suspecting.remove(&(observer, peer));
                return Ok(());
            }
        };
        if peer == observer {
            return Err(format!("{observer} suspected itself"));
        }
        self.suspecting.insert((observer, peer));
        self.figures.suspicions_count += 1;
        if let Some(outage) = self.pending.remove(&(observer, peer)) {
            let samples = self
                .figures
                .detection_samples
                .entry(outage.cause)
                .or_default();
            if samples.len() < SAMPLES_COUNT_MAX {
                samples.push(at - outage.since);
            }
            *self
                .figures
                .detections_count
                .entry(outage.cause)
                .or_default() += 1;
            return Ok(());
        }
        self.classify_unexplained(observer, peer, at);
        Ok(())
    }

    /// A suspicion with no open outage: justified by a recent one, an observer stall, or
    /// false.
    fn classify_unexplained(&mut self, observer: NodeId, peer: NodeId, at: Instant) {
        let recent = |since: Instant| at.saturating_duration_since(since) < SUSPICION_GRACE;
        let peer_track = &self.nodes[Self::index(peer)];
        let link = self.links[Self::index(peer)][Self::index(observer)];
        if peer_track.status != NodeStatus::Up
            || recent(peer_track.available_since)
            || link.0.is_some()
            || recent(link.1)
        {
            return;
        }
        let observer_track = &self.nodes[Self::index(observer)];
        if observer_track.resumed_at.is_some_and(recent) {
            self.figures.observer_stall_suspicions_count += 1;
        } else {
            self.figures.false_suspicions_count += 1;
        }
    }

    /// The detector actor of `node`'s current boot, if it is running.
    fn detector<'v>(
        &mut self,
        view: &ClusterView<'v>,
        node: NodeId,
    ) -> Option<&'v FailureDetectorActor> {
        let system: &'v System = view.system(node)?;
        let boot = view.boot_generation(node);
        let track = &mut self.nodes[Self::index(node)];
        if let Some((cached_boot, id)) = track.detector
            && cached_boot == boot
            && let Some(actor) = system.actor::<FailureDetectorActor>(id)
        {
            return Some(actor);
        }
        let id = system.find("detector")?;
        track.detector = Some((boot, id));
        system.actor::<FailureDetectorActor>(id)
    }

    fn core_node_settled(&mut self, view: &ClusterView<'_>, node: NodeId, core: &[NodeId]) -> bool {
        if view.status(node) != NodeStatus::Up {
            return false;
        }
        let now = view.clock(node).local;
        let Some(actor) = self.detector(view, node) else {
            return false;
        };
        if actor.incarnation().is_none() {
            return false;
        }
        core.iter().filter(|peer| **peer != node).all(|peer| {
            actor.detector().peer_status(*peer).is_some_and(|status| {
                !status.suspected
                    && status
                        .last_heartbeat
                        .is_some_and(|at| now - at <= HEARD_WITHIN)
            })
        })
    }
}

impl Scenario for HeartbeatScenario {
    fn name(&self) -> &str {
        HEARTBEAT_SCENARIO
    }

    fn nodes_count(&self) -> usize {
        self.nodes.len()
    }

    fn boot(&mut self, node: NodeId, system: &mut System) {
        if let Err(error) = synod_node::boot_node(system, self.config.clone()) {
            panic!("cannot boot {node}: {error}");
        }
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        self.track_topology(view);
        self.read_observations(view)
    }

    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        if !matches!(view.phase(), Phase::Liveness { .. }) {
            return false;
        }
        let core = view.core_nodes();
        core.iter()
            .all(|node| self.core_node_settled(view, *node, &core))
    }

    fn liveness_bound(&self) -> Duration {
        Duration::from_secs(15)
    }

    fn report(&mut self, _view: &ClusterView<'_>) -> Vec<(String, String)> {
        if let Some(sink) = &self.sink {
            let mut total = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            total.merge(&self.figures);
        }
        figures_report(&self.figures)
    }
}

/// The figures as (name, value) lines.
pub fn figures_report(figures: &DetectionFigures) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for (cause, samples) in &figures.detection_samples {
        let mut sorted = samples.clone();
        sorted.sort();
        let label = cause.label();
        lines.push((format!("detection_{label}_count"), sorted.len().to_string()));
        lines.push((
            format!("detection_{label}_p50"),
            percentile(&sorted, 50).to_string(),
        ));
        lines.push((
            format!("detection_{label}_p99"),
            percentile(&sorted, 99).to_string(),
        ));
        lines.push((
            format!("detection_{label}_max"),
            percentile(&sorted, 100).to_string(),
        ));
    }
    for (cause, missed) in &figures.missed_count {
        lines.push((
            format!("detection_{}_missed", cause.label()),
            missed.to_string(),
        ));
    }
    lines.push((
        "suspicions".to_string(),
        figures.suspicions_count.to_string(),
    ));
    lines.push((
        "false_suspicions".to_string(),
        figures.false_suspicions_count.to_string(),
    ));
    lines.push((
        "observer_stall_suspicions".to_string(),
        figures.observer_stall_suspicions_count.to_string(),
    ));
    lines.push((
        "false_suspicions_per_pair_hour".to_string(),
        format!("{:.3}", false_suspicion_rate_per_pair_hour(figures)),
    ));
    lines
}

/// False suspicions per observer-peer pair per hour of both being available.
pub fn false_suspicion_rate_per_pair_hour(figures: &DetectionFigures) -> f64 {
    let hours = figures.pair_available_nanos as f64 / 3.6e12;
    if hours <= 0.0 {
        return 0.0;
    }
    figures.false_suspicions_count as f64 / hours
}

/// The `percent`-th percentile of sorted samples (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (percent * sorted.len())
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        // Checks the percentile rule on a small table, including the empty case.
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        let table = [(50, 5), (99, 10), (100, 10), (1, 1)];
        for (percent, millis) in table {
            assert_eq!(percentile(&samples, percent), Duration::from_millis(millis));
        }
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn an_incarnation_that_goes_backwards_is_a_correctness_failure() {
        // Checks the durability invariant on its own: 1 then 2 is fine, 2 again is not.
        let mut scenario = HeartbeatScenario::new(3);
        assert!(scenario.on_booted(NodeId(2), 1, 1).is_ok());
        assert!(scenario.on_booted(NodeId(2), 2, 2).is_ok());
        let error = scenario.on_booted(NodeId(2), 3, 2).unwrap_err();
        assert!(error.contains("incarnation went backwards"), "{error}");
    }

    #[test]
    fn suspicion_is_matched_to_the_outage_it_detects() {
        // Checks the bookkeeping: n2 crashes at 1s, n1 suspects it at 1.6s, giving a 600ms
        // crash detection; a later suspicion of healthy n3 is a false suspicion.
        let mut scenario = HeartbeatScenario::new(3);
        for node in 1..=3 {
            scenario.on_status_change(
                NodeId(node),
                NodeStatus::Down,
                NodeStatus::Up,
                Instant::ZERO,
            );
        }
        let at = |millis: u64| Instant::from_nanos(millis * 1_000_000);
        scenario.on_status_change(NodeId(2), NodeStatus::Up, NodeStatus::Down, at(1_000));
        let suspect = |peer| MembershipEvent::Suspected {
            peer,
            phi: 9.0,
            silence: Duration::ZERO,
        };
        scenario
            .on_membership_event(NodeId(1), suspect(NodeId(2)), at(1_600))
            .unwrap();
        scenario
            .on_membership_event(NodeId(1), suspect(NodeId(3)), at(5_000))
            .unwrap();
        let figures = scenario.figures();
        assert_eq!(
            figures.detection_samples[&Cause::Crash],
            vec![Duration::from_millis(600)]
        );
        assert_eq!(figures.false_suspicions_count, 1);
        assert_eq!(figures.suspicions_count, 2);
        // n3 still owes a detection of n2 when n2 comes back after 3s: a missed detection.
        scenario.on_status_change(NodeId(2), NodeStatus::Down, NodeStatus::Up, at(4_000));
        assert_eq!(scenario.figures().missed_count[&Cause::Crash], 1);
        let self_suspicion = scenario.on_membership_event(NodeId(1), suspect(NodeId(1)), at(6_000));
        assert!(self_suspicion.is_err());
    }
}
