//! The Raft node: state, the `step` dispatcher, terms, durability ordering and applying.
//! Elections, replication, reads, snapshots and membership live in their own files as
//! further `impl Raft` blocks; `step` is the one place that matches on the input.

use std::collections::{BTreeMap, VecDeque};

use synod_core::{Instant, LogIndex, NodeId, Outbox, Prng, Protocol, Term};

use crate::config::RaftConfig;
use crate::io::{Input, Output, Persist, Role};
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::reads::Reads;
use crate::replication::AppendAnswer;
use crate::skew::SkewTracker;
use crate::suspicion::{ElectionDue, LeaderWatch};
use crate::types::{Entry, EntryPayload, HardState, Membership, Recovered, Snapshot};

/// Apply outputs emitted per step at most; the rest follow on the next input.
const APPLY_BATCHES_PER_STEP_MAX: usize = 8;

/// Counters of everything the engine refused or dropped, for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RaftStats {
    pub messages_stale_term: u64,
    pub messages_unexpected: u64,
    pub votes_ignored_in_lease: u64,
    pub elections_started: u64,
    pub leaderships_won: u64,
    pub check_quorum_step_downs: u64,
    pub append_conflicts: u64,
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub snapshot_chunks_refused: u64,
    pub reads_lease: u64,
    pub reads_read_index: u64,
    /// Lease reads sent the ReadIndex way because a voter's clock rate was measured outside
    /// the lease's drift bound (see `lease_suspended_by_skew`).
    pub lease_refused_skew: u64,
    /// Campaigns a follower started because phi for its leader reached the threshold
    /// (phi-accrual suspicion; each is also in `elections_started`).
    pub elections_suspected: u64,
    /// Campaigns a phi-accrual follower started at the ceiling, before phi reached the
    /// threshold.
    pub elections_ceiling: u64,
}

/// The leader's view of one follower, for status pages and lag figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerView {
    pub node: NodeId,
    /// The highest index known durable on the follower and matching the leader's log.
    pub match_index: LogIndex,
    /// Heard from since the last check-quorum round.
    pub active: bool,
}

/// A durable-work marker: once the Persist `id` is durable, the log up to (`index`, `term`)
/// is durable.
#[derive(Debug, Clone, Copy)]
struct PersistMark {
    id: u64,
    index: LogIndex,
    term: Term,
}

/// Effects that must wait until a Persist is durable.
#[derive(Debug)]
pub(crate) enum Held {
    Send(Message),
    /// The candidate's vote for itself counts once its term and vote are durable.
    SelfVote(Term),
}

/// The parts of the next Persist, gathered during a step.
#[derive(Debug, Default)]
struct PendingPersist {
    hard_state: bool,
    snapshot: Option<Snapshot>,
    truncate_from: Option<LogIndex>,
    entries: Vec<Entry>,
}

impl PendingPersist {
    fn is_empty(&self) -> bool {
        !self.hard_state
            && self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
    }
}

/// One Raft node. See the crate documentation for the driver loop.
#[derive(Debug)]
pub struct Raft {
    pub(crate) id: NodeId,
    pub(crate) config: RaftConfig,
    pub(crate) prng: Prng,
    pub(crate) now: Instant,

    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) log: RaftLog,
    /// The configuration in force: the newest one in the log, committed or not.
    pub(crate) membership: Membership,
    /// The index of the entry that carried `membership` (the base if it came from the
    /// snapshot or the bootstrap).
    pub(crate) membership_index: LogIndex,
    /// The configuration at the compaction point, for when a truncation removes newer ones.
    pub(crate) membership_base: Membership,
    /// The newest snapshot, sent to followers that fell behind the log.
    pub(crate) snapshot: Option<Snapshot>,

    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) election_elapsed: u64,
    pub(crate) election_timeout: u64,
    pub(crate) heartbeat_elapsed: u64,
    /// Ticks since a leader was last heard from (or since boot); while it is below the
    /// election timeout, vote requests are ignored (leader stickiness, and what makes the
    /// lease sound).
    pub(crate) leader_silence_ticks: u64,
    pub(crate) leader_contact_at: Option<Instant>,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) append_sequence: u64,
    /// Leader transfer in progress: the target and the ticks it has taken.
    pub(crate) transfer: Option<(NodeId, u64)>,
    /// A transfer was started in this term: lease reads stay off for the rest of it.
    pub(crate) transfer_started_in_term: bool,
    pub(crate) uncommitted_bytes: usize,
    pub(crate) reads: Reads,
    /// Clock samples from append answers, and the clock-rate skew they prove.
    pub(crate) skew: SkewTracker,
    /// The leader's arrivals under phi-accrual suspicion; `None` under the randomized
    /// timeout.
    pub(crate) suspicion: Option<LeaderWatch>,
    pub(crate) incoming_snapshot: Option<crate::snapshot::IncomingSnapshot>,
    /// A snapshot installed from the leader, waiting for its Persist to become durable.
    pub(crate) snapshot_installing: Option<(u64, Snapshot)>,
    pub(crate) snapshot_requested: bool,

    persist_next_id: u64,
    persisted_id: u64,
    pending: PendingPersist,
    persist_marks: VecDeque<PersistMark>,
    held: VecDeque<(u64, Held)>,
    hard_state_emitted: HardState,
    pub(crate) stats: RaftStats,
    #[cfg(feature = "planted-bugs")]
    pub(crate) planted: crate::planted::PlantedBugs,
}

impl Raft {
    /// A node `id` starting from what it recovered from disk. `bootstrap` is the initial
    /// configuration, used when neither the snapshot nor the log holds one.
    pub fn new(
        id: NodeId,
        config: RaftConfig,
        prng: Prng,
        bootstrap: Membership,
        recovered: Recovered,
    ) -> Raft {
        let (base_index, base_term, membership_base) = match &recovered.snapshot {
            Some(snapshot) => (
                snapshot.meta.last_index,
                snapshot.meta.last_term,
                snapshot.meta.membership.clone(),
            ),
            None => (LogIndex(0), Term(0), bootstrap),
        };
        let log = RaftLog::new(base_index, base_term, recovered.entries);
        let heartbeat_interval = config.tick_interval.saturating_mul(config.heartbeat_ticks);
        let suspicion = LeaderWatch::for_config(&config.leader_suspicion, heartbeat_interval);
        let mut raft = Raft {
            id,
            config,
            prng,
            now: Instant::from_nanos(0),
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            log,
            membership: membership_base.clone(),
            membership_index: base_index,
            membership_base,
            snapshot: recovered.snapshot,
            role: Role::Follower,
            leader: None,
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            leader_silence_ticks: 0,
            leader_contact_at: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            append_sequence: 0,
            transfer: None,
            transfer_started_in_term: false,
            uncommitted_bytes: 0,
            reads: Reads::default(),
            skew: SkewTracker::default(),
            suspicion,
            incoming_snapshot: None,
            snapshot_installing: None,
            snapshot_requested: false,
            persist_next_id: 1,
            persisted_id: 0,
            pending: PendingPersist::default(),
            persist_marks: VecDeque::new(),
            held: VecDeque::new(),
            hard_state_emitted: recovered.hard_state,
            stats: RaftStats::default(),
            #[cfg(feature = "planted-bugs")]
            planted: crate::planted::PlantedBugs::default(),
        };
        raft.refresh_membership();
        raft.role = raft.follower_role();
        raft.reset_election_timer();
        raft
    }

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit
    }
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied
    }
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted
    }
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    /// The term of the entry at `index`, if the log still holds it (or it is the base).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// The newest snapshot this node holds (taken or installed).
    pub fn snapshot_meta(&self) -> Option<&crate::types::SnapshotMeta> {
        self.snapshot.as_ref().map(|snapshot| &snapshot.meta)
    }
    pub fn stats(&self) -> &RaftStats {
        &self.stats
    }
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }
    /// What this node, as leader, knows of each other member's log (empty on a follower).
    pub fn followers(&self) -> Vec<FollowerView> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        self.progress
            .iter()
            .filter(|(node, _)| **node != self.id)
            .map(|(node, progress)| FollowerView {
                node: *node,
                match_index: progress.match_index,
                active: progress.recent_active,
            })
            .collect()
    }
    /// When this node last heard from a leader (for the staleness of stale reads).
    pub fn leader_contact_at(&self) -> Option<Instant> {
        self.leader_contact_at
    }
    /// The durable hard state as of the last Persist emitted.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
        }
    }

    // ----- the dispatcher -----

    fn dispatch(&mut self, input: Input, out: &mut Outbox<Output>) {
        match input {
            Input::Tick => self.on_tick(out),
            Input::Message(message) => self.on_message(message, out),
            Input::Propose {
                id,
                payload,
                time_ns,
            } => self.on_propose(id, payload, time_ns, out),
            Input::Read { id, level } => self.on_read(id, level, out),
            Input::ChangeMembership {
                id,
                change,
                time_ns,
            } => self.on_change_membership(id, change, time_ns, out),
            Input::TransferLeadership { to } => self.on_transfer_leadership(to, out),
            Input::Persisted { id } => self.on_persisted(id, out),
            Input::SnapshotTaken { snapshot } => self.on_snapshot_taken(snapshot, out),
        }
    }

    fn on_tick(&mut self, out: &mut Outbox<Output>) {
        self.election_elapsed += 1;
        self.leader_silence_ticks = self.leader_silence_ticks.saturating_add(1);
        self.reads.tick(out);
        self.refresh_skew();
        match self.role {
            Role::Leader => self.tick_leader(out),
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if self.election_due() != ElectionDue::No {
                    self.campaign(false, out);
                }
            }
            // A learner campaigns only to finish a change that dropped it (`may_campaign`).
            Role::Learner => {
                if self.may_campaign() && self.election_due() != ElectionDue::No {
                    self.campaign(false, out);
                }
            }
        }
    }

    fn on_message(&mut self, message: Message, out: &mut Outbox<Output>) {
        if message.to != self.id || message.from == self.id {
            self.stats.messages_unexpected += 1;
            return;
        }
        if !self.accept_term(&message, out) {
            return;
        }
        let from = message.from;
        match message.body {
            MessageBody::VoteRequest { .. } => self.on_vote_request(message, out),
            MessageBody::VoteResponse { pre_vote, granted } => {
                self.on_vote_response(from, message.term, pre_vote, granted, out)
            }
            MessageBody::AppendRequest { .. } => self.on_append_request(message, out),
            MessageBody::AppendResponse {
                success,
                index,
                hint_term,
                sequence,
                clock_nanos,
            } => {
                let answer = AppendAnswer {
                    success,
                    index,
                    hint_term,
                    sequence,
                    clock: Instant::from_nanos(clock_nanos),
                };
                self.on_append_response(from, answer, out)
            }
            MessageBody::InstallSnapshot { .. } => self.on_install_snapshot(message, out),
            MessageBody::InstallSnapshotResponse {
                next_offset,
                done,
                last_index,
                sequence,
            } => self.on_install_snapshot_response(
                from,
                next_offset,
                done,
                last_index,
                sequence,
                out,
            ),
            MessageBody::ReadIndexRequest { id } => self.on_read_index_request(from, id, out),
            MessageBody::ReadIndexResponse { id, index } => {
                self.on_read_index_response(from, id, index, out)
            }
            MessageBody::TimeoutNow => self.on_timeout_now(from, out),
        }
    }

    /// Applies the term rules to an incoming message. Returns whether the message should be
    /// handled further.
    fn accept_term(&mut self, message: &Message, out: &mut Outbox<Output>) -> bool {
        if message.term > self.term {
            match &message.body {
                MessageBody::VoteRequest {
                    pre_vote, transfer, ..
                } => {
                    if self.config.check_quorum && !transfer && self.in_leader_lease() {
                        self.stats.votes_ignored_in_lease += 1;
                        return false;
                    }
                    if *pre_vote {
                        // A pre-vote never changes anyone's term.
                        return true;
                    }
                    self.become_follower(message.term, None, out);
                }
                MessageBody::VoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::AppendRequest { .. } | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(message.term, Some(message.from), out);
                }
                _ => self.become_follower(message.term, None, out),
            }
            return true;
        }
        if message.term < self.term {
            self.stats.messages_stale_term += 1;
            self.answer_stale(message, out);
            return false;
        }
        true
    }

    /// Tells a peer from an older term about the current one, so that a deposed leader or a
    /// stale pre-candidate learns it and steps down instead of retrying forever.
    fn answer_stale(&mut self, message: &Message, out: &mut Outbox<Output>) {
        let body = match &message.body {
            MessageBody::AppendRequest { sequence, .. } => MessageBody::AppendResponse {
                success: false,
                index: self.log.last_index().next(),
                hint_term: None,
                sequence: *sequence,
                clock_nanos: self.now.as_nanos(),
            },
            MessageBody::VoteRequest { pre_vote: true, .. } => MessageBody::VoteResponse {
                pre_vote: true,
                granted: false,
            },
            _ => return,
        };
        self.send(message.from, body, out);
    }

    /// Whether this node has heard from a leader within the base election timeout.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.role == Role::Leader || self.leader_silence_ticks < self.config.election_ticks
    }

    // ----- roles and terms -----

    pub(crate) fn follower_role(&self) -> Role {
        if self.membership.is_voter(self.id) {
            Role::Follower
        } else {
            Role::Learner
        }
    }

    pub(crate) fn become_follower(
        &mut self,
        term: Term,
        leader: Option<NodeId>,
        out: &mut Outbox<Output>,
    ) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.pending.hard_state = true;
            self.transfer_started_in_term = false;
        }
        self.set_role(self.follower_role(), leader, out);
        if was_leader {
            self.step_down_leader(out);
        }
        self.reset_election_timer();
    }

    pub(crate) fn set_role(
        &mut self,
        role: Role,
        leader: Option<NodeId>,
        out: &mut Outbox<Output>,
    ) {
        let changed = role != self.role || leader != self.leader;
        if leader != self.leader {
            self.reads.leader_changed(out);
        }
        self.role = role;
        self.leader = leader;
        if changed {
            out.push(Output::RoleChanged {
                role,
                term: self.term,
                leader,
            });
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = self.config.election_ticks;
        self.election_timeout = base + self.prng.below(base);
        self.draw_suspicion_delay();
    }

    /// Notes contact with the current leader.
    pub(crate) fn heard_from_leader(&mut self, leader: NodeId, out: &mut Outbox<Output>) {
        if self.role != self.follower_role() || self.leader != Some(leader) {
            self.set_role(self.follower_role(), Some(leader), out);
        }
        self.election_elapsed = 0;
        self.leader_silence_ticks = 0;
        self.leader_contact_at = Some(self.now);
        self.watch_leader(leader);
    }

    // ----- durability -----

    /// Adds log entries to the next Persist, noting the durability mark they create.
    pub(crate) fn persist_entries(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        self.pending.entries.extend(entries);
    }

    pub(crate) fn persist_truncation(&mut self, from: LogIndex) {
        self.pending.entries.retain(|entry| entry.index < from);
        let earlier = self
            .pending
            .truncate_from
            .map_or(from, |earlier| earlier.min(from));
        self.pending.truncate_from = Some(earlier);
    }

    pub(crate) fn persist_snapshot(&mut self, snapshot: Snapshot, replace_log: bool) {
        self.pending.entries.clear();
        self.pending.truncate_from = replace_log.then(|| snapshot.meta.last_index.next());
        self.pending.snapshot = Some(snapshot);
    }

    pub(crate) fn persist_hard_state(&mut self) {
        self.pending.hard_state = true;
    }

    /// The id of the Persist that will cover everything written so far.
    pub(crate) fn durable_mark(&self) -> u64 {
        if self.pending.is_empty() && self.hard_state() == self.hard_state_emitted {
            self.persist_next_id - 1
        } else {
            self.persist_next_id
        }
    }

    /// Sends a message once everything written so far is durable.
    pub(crate) fn send_when_durable(&mut self, message: Message, out: &mut Outbox<Output>) {
        #[cfg(feature = "planted-bugs")]
        if self.planted.ack_before_fsync
            && matches!(
                message.body,
                MessageBody::AppendResponse { success: true, .. }
            )
        {
            out.push(Output::Send(message));
            return;
        }
        let mark = self.durable_mark();
        if mark <= self.persisted_id {
            out.push(Output::Send(message));
        } else {
            self.held.push_back((mark, Held::Send(message)));
        }
    }

    pub(crate) fn hold_self_vote(&mut self) {
        let mark = self.durable_mark();
        self.held.push_back((mark, Held::SelfVote(self.term)));
    }

    /// Emits the gathered Persist, if there is anything to make durable.
    fn flush(&mut self, out: &mut Outbox<Output>) {
        #[cfg(feature = "planted-bugs")]
        if self.planted.forget_to_persist_vote && self.pending.hard_state {
            self.hard_state_emitted.vote = None;
        }
        let hard_state_changed = self.hard_state() != self.hard_state_emitted;
        if self.pending.is_empty() && !hard_state_changed {
            self.release_held(out);
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let id = self.persist_next_id;
        self.persist_next_id += 1;
        let hard_state = hard_state_changed.then(|| self.hard_state());
        #[cfg(feature = "planted-bugs")]
        let hard_state = match hard_state {
            Some(mut state) if self.planted.forget_to_persist_vote => {
                state.vote = None;
                Some(state)
            }
            other => other,
        };
        if hard_state_changed {
            self.hard_state_emitted = self.hard_state();
        }
        let last = pending
            .entries
            .last()
            .map(|entry| (entry.index, entry.term))
            .or_else(|| {
                let snapshot = pending.snapshot.as_ref()?;
                Some((snapshot.meta.last_index, snapshot.meta.last_term))
            });
        if let Some((index, term)) = last {
            self.persist_marks
                .push_back(PersistMark { id, index, term });
        }
        out.push(Output::Persist(Persist {
            id,
            hard_state,
            snapshot: pending.snapshot,
            truncate_from: pending.truncate_from,
            entries: pending.entries,
        }));
        self.release_held(out);
    }

    fn on_persisted(&mut self, id: u64, out: &mut Outbox<Output>) {
        assert!(
            id > self.persisted_id && id < self.persist_next_id,
            "Persisted({id}) out of order: persisted {} of {}",
            self.persisted_id,
            self.persist_next_id - 1
        );
        self.persisted_id = id;
        while let Some(mark) = self.persist_marks.front().copied() {
            if mark.id > id {
                break;
            }
            self.persist_marks.pop_front();
            if self.log.term_at(mark.index) == Some(mark.term) {
                self.log.persisted = self
                    .log
                    .persisted
                    .max(mark.index)
                    .min(self.log.last_index());
            }
        }
        if let Some((install_id, _)) = &self.snapshot_installing
            && *install_id <= id
        {
            let (_, snapshot) = self.snapshot_installing.take().expect("checked");
            self.finish_snapshot_install(snapshot, out);
        }
        if self.role == Role::Leader {
            self.maybe_commit(out);
        }
        self.release_held(out);
    }

    fn release_held(&mut self, out: &mut Outbox<Output>) {
        while let Some((mark, _)) = self.held.front() {
            if *mark > self.persisted_id {
                break;
            }
            let (_, held) = self.held.pop_front().expect("non-empty");
            match held {
                Held::Send(message) => out.push(Output::Send(message)),
                Held::SelfVote(term) => {
                    if term == self.term && self.role == Role::Candidate {
                        self.record_vote(self.id, true, out);
                    }
                }
            }
        }
    }

    // ----- applying -----

    /// Hands committed, durable entries to the state machine.
    pub(crate) fn emit_applies(&mut self, out: &mut Outbox<Output>) {
        if self.snapshot_installing.is_some() {
            return;
        }
        let upto = self.log.commit.min(self.log.persisted);
        for _ in 0..APPLY_BATCHES_PER_STEP_MAX {
            if self.log.applied >= upto {
                break;
            }
            let from = self.log.applied.next();
            let batch = self
                .log
                .slice(from, upto, self.config.apply_entries_max, usize::MAX);
            let last = batch
                .last()
                .expect("entries between applied and commit")
                .index;
            self.log.applied = last;
            out.push(Output::Apply(batch));
        }
        self.maybe_request_snapshot(out);
    }

    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody, out: &mut Outbox<Output>) {
        out.push(Output::Send(self.message(to, body)));
    }

    pub(crate) fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.id,
            to,
            term: self.term,
            body,
        }
    }

    // ----- membership bookkeeping -----

    /// Recomputes the configuration in force from the log (after an append, a truncation or
    /// a snapshot).
    pub(crate) fn refresh_membership(&mut self) {
        match self.log.membership_at_or_before(self.log.last_index()) {
            Some((index, membership)) => {
                self.membership = membership.clone();
                self.membership_index = index;
            }
            None => {
                self.membership = self.membership_base.clone();
                self.membership_index = self.log.base_index();
            }
        }
    }

    /// After the configuration changed: adjust the role, and at a leader the progress set.
    pub(crate) fn membership_changed(&mut self, out: &mut Outbox<Output>) {
        if self.role == Role::Leader {
            let next = self.log.last_index().next();
            let members = self.membership.members();
            self.progress.retain(|node, _| members.contains(node));
            for member in members.into_iter().filter(|member| *member != self.id) {
                self.progress
                    .entry(member)
                    .or_insert_with(|| Progress::new(next));
            }
            return;
        }
        let role = match self.role {
            Role::Learner | Role::Follower => self.follower_role(),
            other if self.membership.is_voter(self.id) => other,
            _ => Role::Learner,
        };
        if role != self.role {
            let leader = self.leader;
            self.set_role(role, leader, out);
        }
    }

    pub(crate) fn voters(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = self
            .membership
            .voters
            .iter()
            .chain(&self.membership.voters_outgoing)
            .copied()
            .collect();
        voters.sort();
        voters.dedup();
        voters
    }

    pub(crate) fn entry_of(&self, index: LogIndex, payload: EntryPayload, time_ns: u64) -> Entry {
        Entry {
            term: self.term,
            index,
            time_ns,
            payload,
        }
    }
}

impl Protocol for Raft {
    type Input = Input;
    type Output = Output;

    fn step(&mut self, now: Instant, input: Input, out: &mut Outbox<Output>) {
        self.now = self.now.max(now);
        self.dispatch(input, out);
        self.drain_reads(out);
        if self.role == Role::Leader {
            self.finish_leader_step(out);
        }
        self.emit_applies(out);
        self.flush(out);
        self.invariants();
    }

    fn invariants(&self) {
        self.log.invariants();
        assert!(self.log.persisted <= self.log.last_index());
        if let Some(vote) = self.vote {
            let _ = vote;
            assert!(self.term > Term(0), "a vote without a term");
        }
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.id), "a leader must know itself");
                assert!(
                    !self.progress.contains_key(&self.id),
                    "leader tracks itself"
                );
                for progress in self.progress.values() {
                    progress.invariants(self.config.pipeline_max);
                }
            }
            Role::Candidate => assert_eq!(self.vote, Some(self.id), "candidate votes for itself"),
            _ => assert!(
                self.leader != Some(self.id),
                "a non-leader names itself leader"
            ),
        }
        assert!(self.held.len() <= 1 << 20, "held effects over their bound");
        self.skew.invariants();
        if let Some(watch) = &self.suspicion {
            watch.invariants();
        }
        assert!(
            self.persisted_id < self.persist_next_id,
            "persisted beyond the Persists emitted"
        );
        let _ = &self.stats;
    }
}
