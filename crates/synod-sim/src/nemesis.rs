//! The nemesis: the process that injects faults during the safety phase, the simulated
//! time daemon, and the healing that starts the liveness phase.
//!
//! At random intervals (exponential, with the mix's mean) the nemesis picks one fault kind
//! the mix has on and applies it to random nodes: a partition of one of the patterns, a
//! swizzle-clog program, a crash (with or without power loss) followed by a restart, a
//! pause, a wall-clock jump or a change of clock rate. Every fault it starts carries its own
//! end (a heal, a restart, a pause end), so faults overlap but never pile up without bound.

use synod_core::{Duration, Instant, NodeId};

use crate::clock::{DRIFT_PPM_LIMIT, NodeClock};
use crate::event::Event;
use crate::network::{LinkSet, exponential_nanos};
use crate::scenario::{NodeStatus, Phase};
use crate::sim::{Simulation, TRACE_FAULT};
use crate::{node_id, node_index};

/// The most nemesis actions in one run: far more than any safety phase needs, so reaching
/// it means the interval went to zero.
pub const NEMESIS_ACTIONS_MAX: u64 = 1_000_000;
/// The largest monotonic-clock origin a node may start with (an hour of uptime).
const CLOCK_ORIGIN_MAX_NANOS: u64 = 3_600 * 1_000_000_000;

/// What the nemesis remembers between actions.
#[derive(Clone, Debug, Default)]
pub(crate) struct NemesisState {
    pub(crate) actions_count: u64,
    /// Identifies the partition in force, so a stale heal does not end a newer one.
    pub(crate) partition_epoch: u64,
    pub(crate) pauses_started: u64,
    pub(crate) swizzle_program: u64,
    /// Nodes of the running swizzle-clog program still clogged or waiting to be.
    pub(crate) swizzle_remaining: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    Halves,
    Isolate,
    OneWay,
    Bridge,
    SwizzleClog,
    Crash,
    Pause,
    ClockJump,
    ClockDrift,
}

/// A uniform signed value in `[-magnitude, magnitude]`.
fn signed_uniform(prng: &mut synod_core::Prng, magnitude: u64) -> i64 {
    let magnitude = magnitude.min(i64::MAX as u64 / 2);
    prng.range_inclusive(0, 2 * magnitude) as i64 - magnitude as i64
}

impl Simulation {
    fn offset_max_nanos(&self) -> u64 {
        self.core.options.clock_offset_max.as_nanos()
    }

    /// The drift bound used for clocks put outside the configured bound.
    fn drift_outside_max(&self) -> i64 {
        (self.core.options.clock_drift_ppm_max * 10).clamp(1_000, DRIFT_PPM_LIMIT)
    }

    /// Sets every node's clock: a random uptime, and offset and drift per the mix.
    pub(crate) fn init_clocks(&mut self) {
        let nodes_count = self.nodes.len();
        let half_offset = self.offset_max_nanos() / 2;
        let drift_max = self.core.options.clock_drift_ppm_max;
        for _ in 0..nodes_count {
            let prng = &mut self.core.prng;
            let origin = Instant::from_nanos(prng.below(CLOCK_ORIGIN_MAX_NANOS));
            let (offset, drift) = if self.core.mix.clock_skew {
                let offset = signed_uniform(prng, half_offset);
                (offset, signed_uniform(prng, drift_max.unsigned_abs()))
            } else {
                (0, 0)
            };
            self.core.clocks.push(NodeClock::new(origin, offset, drift));
        }
        if self.core.mix.clock_outside_bound {
            self.put_clocks_outside_bound();
        }
    }

    /// The outside-the-bound fault: some nodes' clocks leave the bound and the time daemon
    /// stops disciplining them until the liveness phase.
    fn put_clocks_outside_bound(&mut self) {
        let nodes_count = self.nodes.len();
        let mut order: Vec<usize> = (0..nodes_count).collect();
        self.core.prng.shuffle(&mut order);
        let count = 1 + self.core.prng.index((nodes_count / 2).max(1));
        let offset_max = self.offset_max_nanos();
        let (drift_max, drift_outside) = (
            self.core.options.clock_drift_ppm_max,
            self.drift_outside_max(),
        );
        for index in order.into_iter().take(count) {
            let prng = &mut self.core.prng;
            let sign = if prng.chance(0.5) { 1 } else { -1 };
            let offset = offset_max + 1 + prng.below(3 * offset_max);
            let offset = sign * i64::try_from(offset).unwrap_or(i64::MAX / 2);
            let drift_span = u64::try_from(drift_outside - drift_max).unwrap_or(1).max(1);
            let drift = sign * (drift_max + 1 + prng.below(drift_span) as i64);
            let clock = &mut self.core.clocks[index];
            clock.set_offset(Instant::ZERO, offset);
            clock.set_drift(
                Instant::ZERO,
                drift.clamp(-DRIFT_PPM_LIMIT, DRIFT_PPM_LIMIT),
            );
            self.core.disciplined[index] = false;
        }
    }

    pub(crate) fn schedule_nemesis(&mut self) {
        let mean = self.core.mix.nemesis_interval_mean.as_nanos();
        let cap = mean.saturating_mul(20);
        let delay = 1 + exponential_nanos(&mut self.core.prng, mean, cap);
        let at = self.core.now + Duration::from_nanos(delay);
        self.core.queue.push(at, Event::Nemesis);
    }

    fn enabled_kinds(&self) -> Vec<FaultKind> {
        let mix = &self.core.mix;
        let nodes_count = self.nodes.len();
        let kinds = mix.partitions;
        [
            (kinds.halves && nodes_count >= 2, FaultKind::Halves),
            (kinds.isolate && nodes_count >= 2, FaultKind::Isolate),
            (kinds.one_way && nodes_count >= 2, FaultKind::OneWay),
            (kinds.bridge && nodes_count >= 3, FaultKind::Bridge),
            (
                kinds.swizzle_clog && nodes_count >= 2,
                FaultKind::SwizzleClog,
            ),
            (mix.crashes, FaultKind::Crash),
            (mix.pauses, FaultKind::Pause),
            (mix.clock_jumps, FaultKind::ClockJump),
            (
                mix.clock_skew || mix.clock_outside_bound,
                FaultKind::ClockDrift,
            ),
        ]
        .into_iter()
        .filter_map(|(on, kind)| on.then_some(kind))
        .collect()
    }

    pub(crate) fn on_nemesis(&mut self) {
        let now = self.core.now;
        self.core
            .trace
            .fold(now, 4, 0, self.core.nemesis.actions_count);
        if self.core.phase != Phase::Safety {
            return;
        }
        self.core.nemesis.actions_count += 1;
        assert!(
            self.core.nemesis.actions_count <= NEMESIS_ACTIONS_MAX,
            "more than {NEMESIS_ACTIONS_MAX} nemesis actions in one run"
        );
        let kinds = self.enabled_kinds();
        if !kinds.is_empty() {
            let kind = kinds[self.core.prng.index(kinds.len())];
            self.act(kind);
        }
        self.schedule_nemesis();
    }

    fn act(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::Halves | FaultKind::Isolate | FaultKind::OneWay | FaultKind::Bridge => {
                self.start_partition(kind)
            }
            FaultKind::SwizzleClog => self.start_swizzle(),
            FaultKind::Crash => self.crash_random_node(),
            FaultKind::Pause => self.pause_random_node(),
            FaultKind::ClockJump => self.jump_random_clock(),
            FaultKind::ClockDrift => self.drift_random_clock(),
        }
    }

    fn shuffled_nodes(&mut self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = (0..self.nodes.len()).map(node_id).collect();
        self.core.prng.shuffle(&mut nodes);
        nodes
    }

    fn start_partition(&mut self, kind: FaultKind) {
        let nodes_count = self.nodes.len();
        let nodes = self.shuffled_nodes();
        let prng = &mut self.core.prng;
        let partition = match kind {
            FaultKind::Halves => {
                let side = 1 + prng.index(nodes_count / 2);
                LinkSet::split(nodes_count, &nodes[..side])
            }
            FaultKind::Isolate => LinkSet::isolate(nodes_count, nodes[0]),
            FaultKind::OneWay => {
                let senders = 1 + prng.index(nodes_count - 1);
                LinkSet::one_way(&nodes[..senders], &nodes[senders..])
            }
            _ => {
                let side = 1 + prng.index(nodes_count - 2);
                LinkSet::bridge(&nodes[1..1 + side], &nodes[1 + side..], nodes[0])
            }
        };
        let maximum = self.core.options.partition_duration_max.as_nanos();
        let duration = self.core.prng.range_inclusive(maximum / 20, maximum);
        self.core.nemesis.partition_epoch += 1;
        self.core.counters.partitions_count += 1;
        self.set_partition(partition);
        let epoch = self.core.nemesis.partition_epoch;
        let at = self.core.now + Duration::from_nanos(duration);
        self.core.queue.push(at, Event::Heal { epoch });
    }

    pub(crate) fn on_heal(&mut self, epoch: u64) {
        let now = self.core.now;
        self.core.trace.fold(now, 7, 0, epoch);
        if epoch == self.core.nemesis.partition_epoch {
            self.set_partition(LinkSet::none());
        }
    }

    /// FoundationDB's swizzle-clog: clog a random subset of nodes one at a time, then
    /// unclog them one at a time in another random order.
    fn start_swizzle(&mut self) {
        if self.core.nemesis.swizzle_remaining > 0 {
            return;
        }
        let mut nodes = self.shuffled_nodes();
        let count = 1 + self.core.prng.index(nodes.len());
        nodes.truncate(count);
        let step_nanos = self.core.prng.range_inclusive(10_000_000, 500_000_000);
        self.core.nemesis.swizzle_program += 1;
        self.core.nemesis.swizzle_remaining = count;
        let program = self.core.nemesis.swizzle_program;
        let mut at = self.core.now;
        for node in &nodes {
            at += Duration::from_nanos(step_nanos);
            let node = node_index(*node).expect("cluster node");
            self.core.queue.push(at, Event::Clog { node, program });
        }
        self.core.prng.shuffle(&mut nodes);
        for node in &nodes {
            at += Duration::from_nanos(step_nanos);
            let node = node_index(*node).expect("cluster node");
            self.core.queue.push(at, Event::Unclog { node, program });
        }
    }

    pub(crate) fn on_clog(&mut self, node: usize, program: u64) {
        let now = self.core.now;
        self.core.trace.fold(now, 8, node as u64, program);
        // Clogs are a safety-phase fault; the liveness phase has cleared them for good.
        if self.core.phase != Phase::Safety || program != self.core.nemesis.swizzle_program {
            return;
        }
        self.core.network.clog(node_id(node));
        self.core.counters.clogs_count += 1;
        if self.core.trace.is_writing() {
            self.core
                .trace
                .line(now, Some(node_id(node)), format_args!("clog"));
        }
    }

    pub(crate) fn on_unclog(&mut self, node: usize, program: u64) {
        let now = self.core.now;
        self.core.trace.fold(now, 9, node as u64, program);
        if program != self.core.nemesis.swizzle_program {
            return;
        }
        self.core.network.unclog(node_id(node));
        self.core.nemesis.swizzle_remaining = self.core.nemesis.swizzle_remaining.saturating_sub(1);
        if self.core.trace.is_writing() {
            self.core
                .trace
                .line(now, Some(node_id(node)), format_args!("unclog"));
        }
    }

    fn crash_random_node(&mut self) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|index| self.nodes[*index].status() != NodeStatus::Down)
            .collect();
        // One node always keeps running, so the cluster is never entirely silent.
        if running.len() <= 1 {
            return;
        }
        let index = running[self.core.prng.index(running.len())];
        let power_loss = self.core.prng.chance(0.5);
        self.crash(node_id(index), power_loss);
        let options = &self.core.options;
        let (low, high) = (
            options.restart_delay_min.as_nanos(),
            options.restart_delay_max.as_nanos(),
        );
        let delay = self.core.prng.range_inclusive(low, high);
        let boot = self.nodes[index].boot;
        let at = self.core.now + Duration::from_nanos(delay);
        self.core
            .queue
            .push(at, Event::Restart { node: index, boot });
    }

    fn pause_random_node(&mut self) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|index| self.nodes[*index].status() == NodeStatus::Up)
            .collect();
        if up.is_empty() {
            return;
        }
        let index = up[self.core.prng.index(up.len())];
        let maximum = self.core.options.pause_duration_max.as_nanos();
        let duration = self
            .core
            .prng
            .range_inclusive(1_000_000.min(maximum), maximum);
        self.pause(node_id(index), Duration::from_nanos(duration));
    }

    fn jump_random_clock(&mut self) {
        let index = self.core.prng.index(self.nodes.len());
        let now = self.core.now;
        let offset_max = self.offset_max_nanos();
        let delta = if self.core.disciplined[index] {
            // Within the bound a jump lands within half of it, leaving room for drift.
            let target = signed_uniform(&mut self.core.prng, offset_max / 2);
            target - self.core.clocks[index].offset_nanos(now)
        } else {
            signed_uniform(&mut self.core.prng, offset_max.saturating_mul(4))
        };
        self.jump_clock(node_id(index), delta);
    }

    fn drift_random_clock(&mut self) {
        let index = self.core.prng.index(self.nodes.len());
        let drift_max = if self.core.disciplined[index] {
            self.core.options.clock_drift_ppm_max
        } else {
            self.drift_outside_max()
        };
        let drift = signed_uniform(&mut self.core.prng, drift_max.unsigned_abs());
        self.set_drift(node_id(index), drift);
    }

    /// The time daemon: every disciplined clock whose offset passed half the bound is
    /// stepped back to within a quarter of it (an NTP step, which is a wall-clock jump).
    pub(crate) fn on_clock_sync(&mut self) {
        let now = self.core.now;
        self.core.trace.fold(now, 10, 0, 0);
        let offset_max = self.offset_max_nanos();
        for index in 0..self.nodes.len() {
            let offset = self.core.clocks[index].offset_nanos(now);
            if !self.core.disciplined[index] || offset.unsigned_abs() <= offset_max / 2 {
                continue;
            }
            let target = signed_uniform(&mut self.core.prng, offset_max / 4);
            self.core.clocks[index].set_offset(now, target);
            self.core.counters.clock_syncs_count += 1;
            self.core
                .trace
                .fold(now, TRACE_FAULT, index as u64, target as u64);
        }
        let at = now + self.core.options.clock_sync_interval;
        self.core.queue.push(at, Event::ClockSync);
    }

    /// Ends the safety phase: heals a random majority core, grown until it holds a majority
    /// of each of the scenario's quorums, and starts the liveness clock.
    pub(crate) fn start_liveness(&mut self) {
        let now = self.core.now;
        let nodes_count = self.nodes.len();
        let mut shuffled: Vec<usize> = (0..nodes_count).collect();
        self.core.prng.shuffle(&mut shuffled);
        let rest = shuffled.split_off(nodes_count / 2 + 1);
        let mut order = shuffled;
        let quorums = self.scenario.liveness_quorums();
        for quorum in quorums {
            let held = |order: &[usize]| {
                let members = order.iter().map(|&index| node_id(index));
                members.filter(|node| quorum.contains(node)).count()
            };
            for &index in &rest {
                if held(&order) > quorum.len() / 2 {
                    break;
                }
                if quorum.contains(&node_id(index)) && !order.contains(&index) {
                    order.push(index);
                }
            }
        }
        order.sort_unstable();
        let core_mask = order
            .iter()
            .fold(0u64, |mask, index| mask | (1u64 << index));
        self.core.trace.fold(now, 11, 0, core_mask);
        if self.core.trace.is_writing() {
            let core: Vec<NodeId> = order.iter().map(|index| node_id(*index)).collect();
            let what = format_args!("liveness phase: healing the majority core {core:?}");
            self.core.trace.line(now, None, what);
        }
        self.core.phase = Phase::Liveness { healed_at: now };
        self.core.core_mask = core_mask;
        self.core.buggify.set_enabled(false);
        self.core.network.heal_core(core_mask);
        for index in order {
            self.heal_node(index);
        }
        let at = now + self.scenario.liveness_bound();
        self.core.queue.push(at, Event::LivenessDeadline);
    }

    /// Brings one core node back to health: clock within bound, disk faults off, running.
    fn heal_node(&mut self, index: usize) {
        let now = self.core.now;
        self.core.disciplined[index] = true;
        let drift_max = self.core.options.clock_drift_ppm_max;
        let drift = self.core.clocks[index].drift_ppm();
        if drift.abs() > drift_max {
            self.set_drift(node_id(index), drift.clamp(-drift_max, drift_max));
        }
        let offset_max = self.offset_max_nanos();
        if self.core.clocks[index].offset_nanos(now).unsigned_abs() > offset_max / 2 {
            let target = signed_uniform(&mut self.core.prng, offset_max / 4);
            self.core.clocks[index].set_offset(now, target);
        }
        crate::disk_adapter::calm(&mut self.core.disks[index].disk);
        match self.nodes[index].status() {
            NodeStatus::Down => self.restart(node_id(index)),
            NodeStatus::Paused => self.resume(node_id(index)),
            NodeStatus::Up => {}
        }
    }
}
