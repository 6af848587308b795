//! Linearizable reads without writing the log: ReadIndex (a heartbeat round confirms the
//! leader is still the leader), the leader lease, and follower reads forwarded to the leader.
//!
//! The lease rests on an assumption about clocks: no voter's clock runs faster or slower than
//! the leader's by more than `LeaseConfig::clock_drift_bound_ppm`. The leader checks it from
//! the clock readings followers put in their append answers (`crate::skew`). When the
//! samples of any voter *prove* a skew above the bound (the lower bound of the measured
//! skew, after the network's uncertainty, exceeds it), the lease is suspended: lease reads
//! take the ReadIndex path and are counted in `RaftStats::lease_refused_skew`. The lease
//! resumes once the samples that showed the skew have aged out of the horizon and none
//! newer shows it. Suspension only ever turns lease reads into ReadIndex reads; it never
//! fails a read or stops the node.

use std::collections::{BTreeMap, VecDeque};

use synod_core::{Duration, Instant, LogIndex, NodeId, Outbox};

use crate::io::{Output, ReadError, ReadLevel, Role};
use crate::message::MessageBody;
use crate::progress::Progress;
use crate::quorum::joint_majority_value;
use crate::raft::Raft;
use crate::skew::{ClockSample, HORIZON_ELECTION_TIMEOUTS};
use crate::types::Membership;

/// Heartbeat rounds remembered for the lease (older acknowledgements give no lease).
const LEASE_ROUNDS_MAX: usize = 64;
/// Ticks a follower waits for the leader's answer to a forwarded read before failing it.
const FORWARDED_READ_TICKS_MAX: u64 = 64;

/// Who asked for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requester {
    Local(u64),
    /// A follower's read, answered with a ReadIndexResponse carrying its id.
    Remote(NodeId, u64),
}

#[derive(Debug)]
struct PendingRead {
    requester: Requester,
    index: LogIndex,
    /// Confirmed once a quorum has answered a request with at least this sequence.
    sequence: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// (first sequence of a heartbeat round, when it was sent).
    rounds: VecDeque<(u64, Instant)>,
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    before_commit: VecDeque<Requester>,
    /// A follower's reads forwarded to the leader: id and ticks waited.
    forwarded: BTreeMap<u64, u64>,
    round_wanted: bool,
    committed_in_term: bool,
    completed: Vec<(Requester, Result<LogIndex, ReadError>)>,
}

impl Reads {
    pub(crate) fn round_wanted(&self) -> bool {
        self.round_wanted
    }

    pub(crate) fn round_started(&mut self, first_sequence: u64, now: Instant) {
        self.round_wanted = false;
        if self.rounds.len() == LEASE_ROUNDS_MAX {
            self.rounds.pop_front();
        }
        self.rounds.push_back((first_sequence, now));
    }

    fn count(&self) -> usize {
        self.pending.len() + self.before_commit.len() + self.forwarded.len()
    }

    /// A time no later than when the request with `sequence` was sent: the start of the
    /// newest remembered round whose first sequence is at or below it (sequences grow with
    /// time, so the request left no earlier than that round began). `None` when it predates
    /// every remembered round.
    fn round_sent_at(&self, sequence: u64) -> Option<Instant> {
        let position = self
            .rounds
            .iter()
            .rposition(|(first, _)| *first <= sequence)?;
        Some(self.rounds[position].1)
    }

    pub(crate) fn new_term(&mut self) {
        self.rounds.clear();
        self.committed_in_term = false;
    }

    /// Fails forwarded reads that waited too long for the leader.
    pub(crate) fn tick(&mut self, _out: &mut Outbox<Output>) {
        let mut expired = Vec::new();
        for (id, ticks) in self.forwarded.iter_mut() {
            *ticks += 1;
            if *ticks > FORWARDED_READ_TICKS_MAX {
                expired.push(*id);
            }
        }
        for id in expired {
            self.forwarded.remove(&id);
            self.completed
                .push((Requester::Local(id), Err(ReadError::LeadershipLost)));
        }
    }

    /// A follower's forwarded reads cannot be answered by a different leader.
    pub(crate) fn leader_changed(&mut self, _out: &mut Outbox<Output>) {
        for (id, _) in std::mem::take(&mut self.forwarded) {
            self.completed
                .push((Requester::Local(id), Err(ReadError::LeadershipLost)));
        }
    }

    pub(crate) fn leadership_lost(&mut self, _out: &mut Outbox<Output>) {
        let pending = self.pending.drain(..).map(|read| read.requester);
        let waiting: Vec<Requester> = pending.chain(self.before_commit.drain(..)).collect();
        for requester in waiting {
            self.completed
                .push((requester, Err(ReadError::LeadershipLost)));
        }
        self.rounds.clear();
        self.round_wanted = false;
        self.committed_in_term = false;
    }

    /// The leader committed an entry of its own term: reads that waited for it get an index.
    pub(crate) fn commit_in_term(&mut self, commit: LogIndex, _out: &mut Outbox<Output>) {
        self.committed_in_term = true;
        while let Some(requester) = self.before_commit.pop_front() {
            self.pending.push_back(PendingRead {
                requester,
                index: commit,
                sequence: u64::MAX,
            });
            self.round_wanted = true;
        }
    }

    /// Completes every pending read a quorum has confirmed.
    pub(crate) fn confirm(
        &mut self,
        membership: &Membership,
        me: NodeId,
        progress: &BTreeMap<NodeId, Progress>,
        _out: &mut Outbox<Output>,
    ) {
        let acked = |node: NodeId| {
            if node == me {
                u64::MAX
            } else {
                progress.get(&node).map_or(0, |p| p.acked_sequence)
            }
        };
        let confirmed = joint_majority_value(membership, &acked, u64::MAX);
        while let Some(read) = self.pending.front() {
            if read.sequence > confirmed {
                break;
            }
            let read = self.pending.pop_front().expect("non-empty");
            self.completed.push((read.requester, Ok(read.index)));
        }
    }

    /// When the lease granted by the quorum's latest acknowledgements started, if any.
    fn lease_start(
        &self,
        membership: &Membership,
        me: NodeId,
        now: Instant,
        progress: &BTreeMap<NodeId, Progress>,
    ) -> Option<Instant> {
        let sent_at = |node: NodeId| -> Option<Instant> {
            if node == me {
                return Some(now);
            }
            let acked = progress.get(&node)?.acked_sequence;
            let position = self.rounds.iter().rposition(|(first, _)| *first <= acked)?;
            Some(self.rounds[position].1)
        };
        joint_majority_value(membership, &sent_at, Some(Instant::from_nanos(u64::MAX)))
    }
}

impl Raft {
    pub(crate) fn on_read(&mut self, id: u64, level: ReadLevel, out: &mut Outbox<Output>) {
        if self.role == Role::Leader {
            if level == ReadLevel::Lease && self.lease_valid() {
                self.stats.reads_lease += 1;
                out.push(Output::ReadReady {
                    id,
                    index: self.log.commit,
                });
                return;
            }
            if level == ReadLevel::Lease && self.lease_suspended_by_skew() {
                self.stats.lease_refused_skew += 1;
            }
            self.register_read(Requester::Local(id));
            return;
        }
        let Some(leader) = self.leader else {
            out.push(Output::ReadFailed {
                id,
                error: ReadError::NoLeader,
            });
            return;
        };
        if self.reads.count() >= self.config.reads_pending_max {
            let limit = self.config.reads_pending_max;
            out.push(Output::ReadFailed {
                id,
                error: ReadError::Busy { limit },
            });
            return;
        }
        self.reads.forwarded.insert(id, 0);
        self.send(leader, MessageBody::ReadIndexRequest { id }, out);
    }

    /// Whether this leader may serve a read from its state without a round: it leads, has
    /// committed in its term, is not handing leadership over, no voter's clock is measured
    /// outside the drift bound, and a quorum acknowledged a round within the lease.
    pub(crate) fn lease_valid(&self) -> bool {
        let Some(duration) = self.config.lease_duration() else {
            return false;
        };
        if self.role != Role::Leader || !self.reads.committed_in_term {
            return false;
        }
        if self.transfer_started_in_term || self.lease_suspended_by_skew() {
            return false;
        }
        #[cfg(feature = "planted-bugs")]
        if self.planted.lease_after_expiry {
            return true;
        }
        let start = self
            .reads
            .lease_start(&self.membership, self.id, self.now, &self.progress);
        start.is_some_and(|start| start.saturating_add(duration) > self.now)
    }

    /// Whether lease reads are suspended because some voter's clock rate is proven to differ
    /// from this node's by more than the lease's drift bound (false when leases are off).
    pub fn lease_suspended_by_skew(&self) -> bool {
        self.config
            .lease
            .is_some_and(|lease| self.skew.skew_ppm_max() > lease.clock_drift_bound_ppm)
    }

    /// The largest clock-rate skew proven towards any voter within the horizon, in parts per
    /// million: the lower bound of the measurement, so the true skew is at least this.
    pub fn clock_skew_ppm_max(&self) -> u64 {
        self.skew.skew_ppm_max()
    }

    /// How long clock samples are kept: [`HORIZON_ELECTION_TIMEOUTS`] base election timeouts.
    fn skew_horizon(&self) -> Duration {
        let timeout = self
            .config
            .tick_interval
            .saturating_mul(self.config.election_ticks);
        timeout.saturating_mul(HORIZON_ELECTION_TIMEOUTS)
    }

    /// Notes a follower's clock reading from its answer to request `sequence`. Answers to
    /// requests sent before the remembered rounds, or to sequences never sent (a confused
    /// peer), give no sample.
    pub(crate) fn record_clock_sample(&mut self, from: NodeId, sequence: u64, clock: Instant) {
        if sequence > self.append_sequence {
            return;
        }
        let Some(sent) = self.reads.round_sent_at(sequence) else {
            return;
        };
        let sample = ClockSample {
            sent,
            received: self.now,
            follower: clock,
        };
        let horizon = self.skew_horizon();
        self.skew
            .record(from, sample, horizon, &self.membership, self.id);
    }

    /// Ages out old clock samples and recomputes the skew towards the voters.
    pub(crate) fn refresh_skew(&mut self) {
        let horizon = self.skew_horizon();
        self.skew
            .refresh(self.now, horizon, &self.membership, self.id);
    }

    fn register_read(&mut self, requester: Requester) {
        if self.reads.count() >= self.config.reads_pending_max {
            let limit = self.config.reads_pending_max;
            self.reads
                .completed
                .push((requester, Err(ReadError::Busy { limit })));
            return;
        }
        self.stats.reads_read_index += 1;
        if !self.reads.committed_in_term {
            self.reads.before_commit.push_back(requester);
            return;
        }
        self.reads.pending.push_back(PendingRead {
            requester,
            index: self.log.commit,
            sequence: self.append_sequence + 1,
        });
        self.reads.round_wanted = true;
    }

    pub(crate) fn on_read_index_request(
        &mut self,
        from: NodeId,
        id: u64,
        out: &mut Outbox<Output>,
    ) {
        if self.role != Role::Leader {
            self.send(
                from,
                MessageBody::ReadIndexResponse { id, index: None },
                out,
            );
            return;
        }
        self.register_read(Requester::Remote(from, id));
    }

    pub(crate) fn on_read_index_response(
        &mut self,
        from: NodeId,
        id: u64,
        index: Option<LogIndex>,
        _out: &mut Outbox<Output>,
    ) {
        if self.leader != Some(from) || self.reads.forwarded.remove(&id).is_none() {
            self.stats.messages_unexpected += 1;
            return;
        }
        let result = index.ok_or(ReadError::LeadershipLost);
        self.reads.completed.push((Requester::Local(id), result));
    }

    /// Turns completed reads into outputs and answers to followers. Reads pending with an
    /// unset round sequence get the next one (they joined after `commit_in_term`).
    pub(crate) fn drain_reads(&mut self, out: &mut Outbox<Output>) {
        let next = self.append_sequence + 1;
        for read in self.reads.pending.iter_mut() {
            if read.sequence == u64::MAX {
                read.sequence = next;
            }
        }
        if self.role == Role::Leader {
            let reads = &mut self.reads;
            reads.confirm(&self.membership, self.id, &self.progress, out);
        }
        for (requester, result) in std::mem::take(&mut self.reads.completed) {
            match requester {
                Requester::Local(id) => out.push(match result {
                    Ok(index) => Output::ReadReady { id, index },
                    Err(error) => Output::ReadFailed { id, error },
                }),
                Requester::Remote(node, id) => {
                    let index = result.ok();
                    self.send(node, MessageBody::ReadIndexResponse { id, index }, out);
                }
            }
        }
    }
}
