//! A whole Raft cluster in one test: engines wired to an in-memory network and a disk model
//! that loses unsynced writes on a crash. Used by the scenario tests of the known hard cases
//! and by a randomized sweep; every history is checked for election safety, log matching,
//! leader completeness and state machine safety after every action.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use synod_core::{Duration, Instant, LogIndex, NodeId, Outbox, Prng, Protocol, Term};

use crate::io::{Input, MembershipChange, Output, Persist, ReadLevel, Role};
use crate::message::Message;
use crate::types::{Entry, EntryPayload, HardState, Membership, Recovered, Snapshot, SnapshotMeta};
use crate::{Raft, RaftConfig};

/// What a node's disk holds durably.
#[derive(Debug, Clone, Default)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    /// Carries out one Persist, or with `parts` only its first parts (a crash mid-write).
    fn write(&mut self, persist: &Persist, entries_kept: usize) {
        if let Some(state) = persist.hard_state {
            self.hard_state = state;
        }
        if let Some(snapshot) = &persist.snapshot {
            let last = snapshot.meta.last_index;
            if persist.truncate_from == Some(last.next()) {
                self.entries.clear();
            } else {
                self.entries.retain(|entry| entry.index > last);
            }
            self.snapshot = Some(snapshot.clone());
        }
        if let Some(from) = persist.truncate_from {
            self.entries.retain(|entry| entry.index < from);
        }
        for entry in persist.entries.iter().take(entries_kept) {
            self.entries.retain(|existing| existing.index < entry.index);
            self.entries.push(entry.clone());
        }
    }
}

pub(crate) struct Node {
    pub(crate) raft: Raft,
    disk: Disk,
    unsynced: VecDeque<Persist>,
    alive: bool,
    /// The applied entries by index (commands only matter for the checks).
    applied: BTreeMap<LogIndex, Entry>,
    applied_upto: LogIndex,
    reads_ready: Vec<(u64, LogIndex)>,
    /// This node's tick period: the nominal one skewed by up to half the drift bound, so
    /// that any two nodes' clocks run apart by at most the bound.
    tick_period_ns: u64,
    ticks_done: u64,
    /// A process pause (a long GC, a stopped VM): no ticks and no messages until then.
    paused_until: Instant,
}

/// The weights of the random actions for one seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultMix {
    advance: u64,
    deliver: u64,
    sync: u64,
    propose: u64,
    read: u64,
    crash: u64,
    cut: u64,
    isolate: u64,
    pause: u64,
    heal: u64,
    transfer: u64,
    membership: u64,
    drop_per_mille: u64,
    duplicate_per_mille: u64,
    reorder_window: usize,
}

impl FaultMix {
    fn draw(prng: &mut Prng) -> FaultMix {
        let mut choose = |options: &[u64]| options[prng.index(options.len())];
        FaultMix {
            advance: 250,
            deliver: 300,
            sync: 150,
            propose: choose(&[50, 100, 200]),
            read: choose(&[20, 50, 100]),
            crash: choose(&[0, 5, 10, 40]),
            cut: choose(&[0, 5, 10]),
            isolate: choose(&[0, 5, 10]),
            pause: choose(&[0, 3, 10]),
            heal: choose(&[2, 10, 30]),
            transfer: choose(&[0, 5, 10]),
            membership: choose(&[0, 3, 10]),
            drop_per_mille: choose(&[0, 30, 200]),
            duplicate_per_mille: choose(&[0, 20, 50]),
            reorder_window: choose(&[1, 4, 16]) as usize,
        }
    }

    fn total(&self) -> u64 {
        self.advance
            + self.deliver
            + self.sync
            + self.propose
            + self.read
            + self.crash
            + self.cut
            + self.isolate
            + self.pause
            + self.heal
            + self.transfer
            + self.membership
    }
}

pub(crate) struct Cluster {
    mix: FaultMix,
    pub(crate) nodes: BTreeMap<NodeId, Node>,
    config: RaftConfig,
    bootstrap: Membership,
    pub(crate) network: VecDeque<Message>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    pub(crate) prng: Prng,
    now: Instant,
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry ever known committed, by index.
    committed: BTreeMap<LogIndex, Entry>,
    /// The entry every node applied at each index.
    applied: BTreeMap<LogIndex, Entry>,
    next_id: u64,
    pub(crate) proposals_committed: u64,
    /// Reads in flight: (node, read id) -> the highest committed index when it started. A
    /// linearizable read must be served at an index at least that high.
    reads_started: BTreeMap<(NodeId, u64), LogIndex>,
    pub(crate) reads_checked: u64,
    planted: crate::planted::PlantedBugs,
}

impl Cluster {
    pub(crate) fn new(size: u64, config: RaftConfig, seed: u64) -> Cluster {
        Cluster::with_voters(size, size, config, seed)
    }

    /// A cluster of `size` nodes of which the first `voters` vote from the start; the others
    /// boot knowing only that configuration, with empty logs, as fresh nodes do.
    pub(crate) fn with_voters(size: u64, voters: u64, config: RaftConfig, seed: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let voter_ids: Vec<NodeId> = (1..=voters).map(NodeId).collect();
        let bootstrap = Membership::with_voters(&voter_ids);
        let mut prng = Prng::from_seed(seed);
        let mut nodes = BTreeMap::new();
        let drift_ppm = config.lease.map_or(0, |lease| lease.clock_drift_bound_ppm);
        for id in &ids {
            let nominal = config.tick_interval.as_nanos();
            let skew_ppm = prng.below(drift_ppm + 1) as i64 - (drift_ppm / 2) as i64;
            let tick_period_ns = (nominal as i64 + nominal as i64 * skew_ppm / 1_000_000) as u64;
            let raft = Raft::new(
                *id,
                config.clone(),
                prng.fork(),
                bootstrap.clone(),
                Recovered::default(),
            );
            nodes.insert(
                *id,
                Node {
                    raft,
                    disk: Disk::default(),
                    unsynced: VecDeque::new(),
                    alive: true,
                    applied: BTreeMap::new(),
                    applied_upto: LogIndex(0),
                    reads_ready: Vec::new(),
                    tick_period_ns,
                    ticks_done: 0,
                    paused_until: Instant::from_nanos(0),
                },
            );
        }
        let mix = FaultMix::draw(&mut prng);
        Cluster {
            mix,
            nodes,
            config,
            bootstrap,
            network: VecDeque::new(),
            cut: BTreeSet::new(),
            prng,
            now: Instant::from_nanos(0),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            next_id: 1,
            proposals_committed: 0,
            reads_started: BTreeMap::new(),
            reads_checked: 0,
            planted: crate::planted::PlantedBugs::default(),
        }
    }

    /// Plants deliberate bugs in every node, now and after every restart.
    pub(crate) fn plant(&mut self, bugs: crate::planted::PlantedBugs) {
        self.planted = bugs;
        for node in self.nodes.values_mut() {
            node.raft.plant(bugs);
        }
    }

    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Feeds one input to a live node and carries out its outputs.
    pub(crate) fn step(&mut self, id: NodeId, input: Input) {
        let node = self.nodes.get_mut(&id).expect("node");
        if !node.alive {
            return;
        }
        let mut out = Outbox::new(1 << 16);
        node.raft.step(self.now, input, &mut out);
        let outputs: Vec<Output> = out.drain().collect();
        for output in outputs {
            self.perform(id, output);
        }
        self.check(id);
    }

    fn perform(&mut self, id: NodeId, output: Output) {
        match output {
            Output::Persist(persist) => {
                self.nodes.get_mut(&id).unwrap().unsynced.push_back(persist)
            }
            // The network holds a bounded number of messages; beyond it they are lost.
            Output::Send(message) if self.network.len() < 100_000 => {
                self.network.push_back(message);
            }
            Output::Apply(entries) => {
                for entry in entries {
                    self.record_apply(id, entry);
                }
            }
            Output::ApplySnapshot(snapshot) => {
                let node = self.nodes.get_mut(&id).unwrap();
                node.applied_upto = snapshot.meta.last_index;
            }
            Output::ReadReady { id: read, index } => {
                if let Some(floor) = self.reads_started.remove(&(id, read)) {
                    self.reads_checked += 1;
                    assert!(
                        index >= floor,
                        "{id} read {read} at {index:?}, committed {floor:?}"
                    );
                }
                self.nodes
                    .get_mut(&id)
                    .unwrap()
                    .reads_ready
                    .push((read, index));
            }
            Output::SnapshotWanted { applied } => {
                let node = &self.nodes[&id];
                let applied = applied.min(node.applied_upto);
                let Some(term) = node.raft.term_at(applied) else {
                    return;
                };
                let meta = SnapshotMeta {
                    last_index: applied,
                    last_term: term,
                    membership: node.raft.membership().clone(),
                };
                let data = Bytes::from(applied.0.to_le_bytes().to_vec());
                let snapshot = Snapshot { meta, data };
                let node = self.nodes.get_mut(&id).unwrap();
                node.disk.snapshot = Some(snapshot.clone());
                node.disk.entries.retain(|entry| entry.index > applied);
                self.step(id, Input::SnapshotTaken { snapshot });
            }
            Output::RoleChanged {
                role: Role::Leader,
                term,
                ..
            } => {
                if let Some(other) = self.leaders.insert(term, id) {
                    assert_eq!(other, id, "two leaders in {term:?}");
                }
                let raft = &self.nodes[&id].raft;
                for (index, entry) in &self.committed {
                    if *index >= raft.first_index() {
                        assert_eq!(
                            raft.entry(*index),
                            Some(entry),
                            "leader {id} lacks {index:?}"
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn record_apply(&mut self, id: NodeId, entry: Entry) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(
            entry.index > node.applied_upto,
            "{id} applied {:?} twice",
            entry.index
        );
        node.applied_upto = entry.index;
        if let Some(previous) = self.applied.get(&entry.index) {
            assert_eq!(
                previous, &entry,
                "{id} applied a different entry at {:?}",
                entry.index
            );
        } else {
            if matches!(entry.payload, EntryPayload::Command(_)) {
                self.proposals_committed += 1;
            }
            self.applied.insert(entry.index, entry.clone());
        }
        node.applied.insert(entry.index, entry);
    }

    /// Safety checks after a step of `id`.
    fn check(&mut self, id: NodeId) {
        let raft = &self.nodes[&id].raft;
        if raft.role() == Role::Leader {
            let commit = raft.commit_index();
            let mut index = self
                .committed
                .keys()
                .next_back()
                .copied()
                .unwrap_or(LogIndex(0));
            index = index.max(raft.first_index().prev().unwrap_or(LogIndex(0)));
            while index < commit {
                index = index.next();
                let Some(entry) = raft.entry(index) else {
                    continue;
                };
                if let Some(known) = self.committed.get(&index) {
                    assert_eq!(known, entry, "committed entry {index:?} changed");
                }
                self.committed.insert(index, entry.clone());
            }
        }
        if raft.first_index() > raft.commit_index() {
            return;
        }
        for (index, entry) in self
            .committed
            .range(raft.first_index()..=raft.commit_index())
        {
            if let Some(mine) = raft.entry(*index) {
                assert_eq!(mine, entry, "{id} disagrees with committed {index:?}");
            }
        }
    }

    /// Makes the oldest unsynced Persist of `id` durable and reports it.
    pub(crate) fn sync(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(persist) = node.unsynced.pop_front() else {
            return;
        };
        node.disk.write(&persist, usize::MAX);
        self.step(id, Input::Persisted { id: persist.id });
    }

    pub(crate) fn sync_all(&mut self, id: NodeId) {
        while !self.nodes[&id].unsynced.is_empty() {
            self.sync(id);
        }
    }

    /// Crashes `id`: unsynced writes are lost, except a random prefix of the oldest one
    /// (a torn write), and the node restarts from its disk.
    pub(crate) fn crash_and_restart(&mut self, id: NodeId) {
        let torn = self.prng.below(3);
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(first) = node.unsynced.front()
            && torn == 1
        {
            let kept = self.prng.index(first.entries.len() + 1);
            node.disk.write(first, kept);
        }
        node.unsynced.clear();
        let recovered = Recovered {
            hard_state: node.disk.hard_state,
            snapshot: node.disk.snapshot.clone(),
            entries: node.disk.entries.clone(),
        };
        let applied_upto = node
            .disk
            .snapshot
            .as_ref()
            .map_or(LogIndex(0), |s| s.meta.last_index);
        node.raft = Raft::new(
            id,
            self.config.clone(),
            self.prng.fork(),
            self.bootstrap.clone(),
            recovered,
        );
        node.raft.plant(self.planted);
        node.applied_upto = applied_upto;
        node.applied.retain(|index, _| *index <= applied_upto);
        node.reads_ready.clear();
        self.reads_started.retain(|(node, _), _| *node != id);
    }

    pub(crate) fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub(crate) fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    /// Delivers the message at `position` of the network queue (dropping it if its link is
    /// cut or its receiver is down).
    pub(crate) fn deliver_at(&mut self, position: usize) {
        let Some(message) = self.network.remove(position) else {
            return;
        };
        if self.cut.contains(&(message.from, message.to)) || !self.nodes[&message.to].alive {
            return;
        }
        if self.nodes[&message.to].paused_until > self.now {
            self.network.push_back(message);
            return;
        }
        let to = message.to;
        self.step(to, Input::Message(message));
    }

    pub(crate) fn deliver_all(&mut self) {
        let mut budget = 100_000;
        while !self.network.is_empty() && budget > 0 {
            budget -= 1;
            self.deliver_at(0);
        }
    }

    /// Ticks `id` once, moving time forward to when its clock says the tick is due.
    pub(crate) fn tick(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.ticks_done += 1;
        let due = Instant::from_nanos(node.ticks_done * node.tick_period_ns);
        self.now = self.now.max(due);
        self.step(id, Input::Tick);
    }

    /// Moves time forward and ticks every node whose clock has reached its next tick.
    pub(crate) fn advance_clocks(&mut self, span: Duration) {
        self.now += span;
        for id in self.ids() {
            let node = &self.nodes[&id];
            if node.paused_until > self.now {
                continue;
            }
            if (node.ticks_done + 1) * node.tick_period_ns <= self.now.as_nanos() {
                self.tick(id);
            }
        }
    }

    /// Ticks every node once, syncs every disk, and delivers everything in flight.
    pub(crate) fn round(&mut self) {
        for _ in 0..4 {
            self.advance_clocks(Duration::from_nanos(
                self.config.tick_interval.as_nanos() / 4,
            ));
        }
        for _ in 0..4 {
            for id in self.ids() {
                self.sync_all(id);
            }
            self.deliver_all();
        }
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.alive && node.raft.role() == Role::Leader)
            .map(|(id, _)| *id)
            .collect();
        let newest = leaders.iter().max_by_key(|id| self.nodes[id].raft.term())?;
        Some(*newest)
    }

    pub(crate) fn propose(&mut self, id: NodeId, payload: &[u8]) {
        let proposal = self.next_id;
        self.next_id += 1;
        let time_ns = self.now.as_nanos();
        self.step(
            id,
            Input::Propose {
                id: proposal,
                payload: Bytes::copy_from_slice(payload),
                time_ns,
            },
        );
    }

    pub(crate) fn change(&mut self, id: NodeId, change: MembershipChange) {
        let proposal = self.next_id;
        self.next_id += 1;
        self.step(
            id,
            Input::ChangeMembership {
                id: proposal,
                change,
                time_ns: 0,
            },
        );
    }

    pub(crate) fn read(&mut self, id: NodeId, level: ReadLevel) -> u64 {
        let read = self.next_id;
        self.next_id += 1;
        let floor = self
            .committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or(LogIndex(0));
        self.reads_started.insert((id, read), floor);
        self.step(id, Input::Read { id: read, level });
        read
    }

    pub(crate) fn read_ready(&self, id: NodeId, read: u64) -> Option<LogIndex> {
        self.nodes[&id]
            .reads_ready
            .iter()
            .find(|(r, _)| *r == read)
            .map(|(_, index)| *index)
    }

    /// Runs rounds until a leader exists, for at most `rounds_max` rounds.
    pub(crate) fn elect(&mut self, rounds_max: u64) -> NodeId {
        for _ in 0..rounds_max {
            self.round();
            if let Some(leader) = self.leader()
                && self.nodes[&leader].raft.commit_index() >= self.nodes[&leader].raft.last_index()
            {
                return leader;
            }
        }
        panic!("no leader after {rounds_max} rounds");
    }

    pub(crate) fn set_alive(&mut self, id: NodeId, alive: bool) {
        self.nodes.get_mut(&id).unwrap().alive = alive;
    }

    pub(crate) fn applied_upto(&self, id: NodeId) -> LogIndex {
        self.nodes[&id].applied_upto
    }

    /// Log matching across all pairs: equal terms at an index mean equal prefixes.
    pub(crate) fn check_log_matching(&self) {
        let ids = self.ids();
        for a in &ids {
            for b in &ids {
                if a >= b {
                    continue;
                }
                let (ra, rb) = (&self.nodes[a].raft, &self.nodes[b].raft);
                let from = ra.first_index().max(rb.first_index());
                let to = ra.last_index().min(rb.last_index());
                let mut matched = false;
                let mut index = to;
                while index >= from && index.0 > 0 {
                    let (ea, eb) = (ra.entry(index), rb.entry(index));
                    if matched {
                        assert_eq!(ea, eb, "log matching broken at {index:?} between {a} {b}");
                    } else if ea.map(|e| e.term) == eb.map(|e| e.term) {
                        assert_eq!(ea, eb, "same term, different entry at {index:?}");
                        matched = true;
                    }
                    index = LogIndex(index.0 - 1);
                }
            }
        }
    }

    /// One random action, drawn with this seed's fault mix (swarm testing: each seed turns
    /// some faults up, others down or off, so rare combinations get a chance).
    pub(crate) fn random_action(&mut self) {
        let ids = self.ids();
        let id = ids[self.prng.index(ids.len())];
        let mix = self.mix;
        let mut roll = self.prng.below(mix.total());
        let mut pick = |weight: u64| {
            let hit = roll < weight;
            roll = roll.saturating_sub(weight);
            hit
        };
        if pick(mix.advance) {
            let quarter = Duration::from_nanos(self.config.tick_interval.as_nanos() / 4);
            self.advance_clocks(quarter);
        } else if pick(mix.deliver) {
            self.deliver_random(mix);
        } else if pick(mix.sync) {
            self.sync(id);
        } else if pick(mix.propose) {
            self.propose(id, &self.next_id.to_le_bytes());
        } else if pick(mix.read) {
            // Half the reads go to a node that believes it leads: the interesting case when
            // two believe it at once.
            let leaders: Vec<NodeId> = ids
                .iter()
                .copied()
                .filter(|node| self.nodes[node].raft.role() == Role::Leader)
                .collect();
            let target = if !leaders.is_empty() && self.prng.chance(0.5) {
                leaders[self.prng.index(leaders.len())]
            } else {
                id
            };
            let lease = self.prng.chance(0.5);
            self.read(
                target,
                if lease {
                    ReadLevel::Lease
                } else {
                    ReadLevel::Linearizable
                },
            );
        } else if pick(mix.crash) {
            // Half the crashes hit a node that has just voted: forgetting a vote is the
            // classic durability bug.
            let voters: Vec<NodeId> = ids
                .iter()
                .copied()
                .filter(|node| {
                    let raft = &self.nodes[node].raft;
                    raft.vote().is_some_and(|vote| vote != *node) && raft.leader().is_none()
                })
                .collect();
            let victim = if !voters.is_empty() && self.prng.chance(0.5) {
                voters[self.prng.index(voters.len())]
            } else {
                id
            };
            self.crash_and_restart(victim);
        } else if pick(mix.cut) {
            let to = ids[self.prng.index(ids.len())];
            if to != id {
                self.cut_link(id, to);
            }
        } else if pick(mix.pause) {
            let ticks = 5 + self.prng.below(40);
            let until = self.now + self.config.tick_interval.saturating_mul(ticks);
            self.nodes.get_mut(&id).unwrap().paused_until = until;
        } else if pick(mix.isolate) {
            self.isolate(id);
        } else if pick(mix.heal) {
            self.heal();
        } else if pick(mix.transfer) {
            let to = ids[self.prng.index(ids.len())];
            self.step(id, Input::TransferLeadership { to });
        } else {
            self.random_membership_change(id);
        }
    }

    fn deliver_random(&mut self, mix: FaultMix) {
        if self.network.is_empty() {
            return;
        }
        let position = self.prng.index(self.network.len().min(mix.reorder_window));
        if self.prng.below(1000) < mix.duplicate_per_mille {
            let copy = self.network[position].clone();
            self.network.push_back(copy);
        }
        if self.prng.below(1000) < mix.drop_per_mille {
            self.network.remove(position);
        } else {
            self.deliver_at(position);
        }
    }

    fn random_membership_change(&mut self, id: NodeId) {
        let ids = self.ids();
        let target = ids[self.prng.index(ids.len())];
        let membership = self.nodes[&id].raft.membership().clone();
        let change = if membership.is_voter(target) {
            if membership.voters.len() <= 2 {
                return;
            }
            MembershipChange::Remove(target)
        } else if membership.is_learner(target) {
            MembershipChange::Promote(target)
        } else {
            MembershipChange::AddLearner(target)
        };
        self.change(id, change);
    }

    /// Heals every fault and runs until a leader commits a final proposal and every live
    /// node has applied it. Panics (a liveness failure) if that does not happen in time.
    pub(crate) fn converge(&mut self, rounds_max: u64) {
        self.heal();
        for id in self.ids() {
            self.set_alive(id, true);
            self.nodes.get_mut(&id).unwrap().paused_until = Instant::from_nanos(0);
        }
        let mut proposed: Option<(NodeId, LogIndex)> = None;
        for _ in 0..rounds_max {
            self.round();
            let Some(leader) = self.leader() else {
                continue;
            };
            let raft = &self.nodes[&leader].raft;
            let lost = proposed.is_some_and(|(_, index)| raft.term_at(index).is_none());
            if lost || proposed.is_none_or(|(by, _)| by != leader) {
                let index = raft.last_index().next();
                self.propose(leader, b"final");
                proposed = Some((leader, index));
                continue;
            }
            let (_, index) = proposed.unwrap();
            let members = self.nodes[&leader].raft.membership().members();
            if members
                .iter()
                .all(|member| self.applied_upto(*member) >= index)
            {
                return;
            }
        }
        let mut state = String::new();
        for (id, node) in &self.nodes {
            let raft = &node.raft;
            state.push_str(&format!(
                "\n{id}: {:?} {:?} leader {:?} vote {:?} commit {:?} persisted {:?} last {:?} \
                 applied {:?} {:?} silence {}",
                raft.role(),
                raft.term(),
                raft.leader(),
                raft.vote(),
                raft.commit_index(),
                raft.persisted_index(),
                raft.last_index(),
                node.applied_upto,
                raft.membership(),
                raft.leader_silence_ticks,
            ));
        }
        panic!("liveness: no convergence within {rounds_max} rounds after healing{state}");
    }
}
