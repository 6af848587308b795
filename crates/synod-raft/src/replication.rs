//! Log replication: proposals, append requests with batching and pipelining, the follower's
//! append rule, fast conflict back-off, and the commit rule.

use bytes::Bytes;
use synod_core::{Instant, LogIndex, NodeId, Outbox, Term};

use crate::io::{Output, ProposeError, Role};
use crate::message::{Message, MessageBody};
use crate::progress::ReplicationState;
use crate::quorum::committed_index;
use crate::raft::Raft;
use crate::types::{Entry, EntryPayload, FencingToken};

/// Heartbeat rounds without an answer before the leader assumes a request was lost.
const STALLED_ROUNDS_MAX: u32 = 3;

/// A follower's answer to an append request (the fields of `MessageBody::AppendResponse`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendAnswer {
    pub(crate) success: bool,
    pub(crate) index: LogIndex,
    pub(crate) hint_term: Option<Term>,
    pub(crate) sequence: u64,
    /// The follower's clock when it handled the request.
    pub(crate) clock: Instant,
}

impl Raft {
    pub(crate) fn on_propose(
        &mut self,
        id: u64,
        payload: Bytes,
        time_ns: u64,
        out: &mut Outbox<Output>,
    ) {
        let size = payload.len();
        match self.admit_proposal(size) {
            Err(error) => out.push(Output::Rejected { id, error }),
            Ok(()) => {
                let index = self.log.last_index().next();
                let entry = self.entry_of(index, EntryPayload::Command(payload), time_ns);
                self.append_own(entry);
                let token = FencingToken {
                    term: self.term,
                    index,
                };
                out.push(Output::Proposed { id, token });
            }
        }
    }

    /// Checks a proposal of `size` bytes may enter the log now.
    pub(crate) fn admit_proposal(&self, size: usize) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::Transferring { to });
        }
        if size > self.config.proposal_size_max {
            return Err(ProposeError::TooLarge {
                size,
                limit: self.config.proposal_size_max,
            });
        }
        if self.uncommitted_bytes + size > self.config.uncommitted_bytes_max {
            return Err(ProposeError::Busy {
                uncommitted_bytes: self.uncommitted_bytes,
                limit: self.config.uncommitted_bytes_max,
            });
        }
        Ok(())
    }

    /// Appends an entry of this leader's term to its own log and to the next Persist.
    pub(crate) fn append_own(&mut self, entry: Entry) {
        assert_eq!(
            self.role,
            Role::Leader,
            "only a leader appends its own entries"
        );
        assert_eq!(
            entry.term, self.term,
            "a leader appends entries of its own term"
        );
        self.uncommitted_bytes += entry.size();
        let is_membership = matches!(entry.payload, EntryPayload::Membership(_));
        self.log.push(entry.clone());
        self.persist_entries(vec![entry]);
        if is_membership {
            self.refresh_membership();
        }
    }

    /// At the end of a leader's step: send what the pipelines allow, start a read round if
    /// reads wait for one.
    pub(crate) fn finish_leader_step(&mut self, out: &mut Outbox<Output>) {
        if self.reads.round_wanted() {
            self.broadcast_heartbeat(out);
        } else {
            self.broadcast_append(out);
        }
    }

    /// Sends new entries to every follower whose pipeline has room.
    pub(crate) fn broadcast_append(&mut self, out: &mut Outbox<Output>) {
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in followers {
            self.send_appends(to, false, out);
        }
    }

    /// Sends a heartbeat (or entries, where there are some to send) to every follower, and
    /// starts a ReadIndex and lease round.
    pub(crate) fn broadcast_heartbeat(&mut self, out: &mut Outbox<Output>) {
        self.reads.round_started(self.append_sequence + 1, self.now);
        for progress in self.progress.values_mut() {
            if !progress.is_outstanding() {
                continue;
            }
            progress.stalled_rounds += 1;
            if progress.stalled_rounds >= STALLED_ROUNDS_MAX {
                // Something in flight was lost: resend from what the follower matches.
                match progress.state {
                    ReplicationState::Snapshot { .. } => progress.waiting = false,
                    _ => progress.become_probe(progress.match_index.next()),
                }
            }
        }
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in followers {
            self.send_appends(to, true, out);
        }
    }

    /// Fills `to`'s pipeline; with `heartbeat`, sends at least one message even when there is
    /// nothing new.
    fn send_appends(&mut self, to: NodeId, heartbeat: bool, out: &mut Outbox<Output>) {
        let mut sent = false;
        loop {
            // A membership change in this step may have removed the follower.
            let Some(progress) = self.progress.get(&to) else {
                return;
            };
            if let ReplicationState::Snapshot { .. } = progress.state {
                if !progress.waiting {
                    self.send_snapshot_chunk(to, out);
                }
                return;
            }
            // A follower whose match is still unknown is probed even when nothing new is
            // left to send: a fresh learner added to an idle cluster would otherwise only get
            // heartbeats, which never show it lacks the log.
            let probing = progress.state == ReplicationState::Probe
                && progress.match_index.next() < progress.next_index;
            let has_new = progress.next_index <= self.log.last_index() || probing;
            let may_send =
                progress.can_send(self.config.pipeline_max, self.config.inflight_bytes_max);
            if !(has_new && may_send) {
                break;
            }
            if !self.send_append(to, out) {
                return;
            }
            sent = true;
        }
        if heartbeat && !sent {
            self.send_heartbeat(to, out);
        }
    }

    /// Sends one append request from `to`'s next index. Returns false when the follower
    /// needs the snapshot instead.
    fn send_append(&mut self, to: NodeId, out: &mut Outbox<Output>) -> bool {
        let next = self.progress[&to].next_index;
        let prev_index = LogIndex(next.0 - 1);
        let Some(prev_term) = self.log.term_at(prev_index) else {
            self.start_snapshot_transfer(to, out);
            return false;
        };
        let entries = self.log.slice(
            next,
            self.log.last_index(),
            self.config.append_entries_max,
            self.config.append_bytes_max,
        );
        let last = entries.last().map_or(prev_index, |entry| entry.index);
        let bytes = entries.iter().map(Entry::size).sum();
        let commit = self.log.commit;
        let sequence = self.next_sequence();
        self.progress
            .get_mut(&to)
            .expect("follower")
            .sent(last, bytes);
        let body = MessageBody::AppendRequest {
            prev_index,
            prev_term,
            entries,
            commit,
            sequence,
        };
        self.send(to, body, out);
        true
    }

    /// A heartbeat: no entries, anchored at what the follower is known to match, carrying
    /// a commit index no higher than that.
    fn send_heartbeat(&mut self, to: NodeId, out: &mut Outbox<Output>) {
        let progress = &self.progress[&to];
        let anchor = progress.match_index.max(self.log.base_index());
        let Some(prev_term) = self.log.term_at(anchor) else {
            return;
        };
        let commit = self.log.commit.min(anchor);
        let sequence = self.next_sequence();
        let body = MessageBody::AppendRequest {
            prev_index: anchor,
            prev_term,
            entries: Vec::new(),
            commit,
            sequence,
        };
        self.send(to, body, out);
    }

    pub(crate) fn next_sequence(&mut self) -> u64 {
        self.append_sequence += 1;
        self.append_sequence
    }

    /// A leader's request arrived: notes the contact, unless this node leads the same term
    /// itself (two leaders in one term cannot happen; a peer claiming it is counted and
    /// ignored). Returns whether to handle the request.
    pub(crate) fn follow_leader(&mut self, leader: NodeId, out: &mut Outbox<Output>) -> bool {
        if self.role == Role::Leader {
            self.stats.messages_unexpected += 1;
            return false;
        }
        self.heard_from_leader(leader, out);
        true
    }

    /// A follower answered request `sequence`: it is active and has seen this leader up to
    /// there. Returns false when this node no longer leads or does not replicate to `from`.
    pub(crate) fn note_answer(&mut self, from: NodeId, sequence: u64) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            self.stats.messages_unexpected += 1;
            return false;
        };
        progress.recent_active = true;
        progress.acked_sequence = progress.acked_sequence.max(sequence);
        true
    }

    pub(crate) fn on_append_request(&mut self, message: Message, out: &mut Outbox<Output>) {
        let MessageBody::AppendRequest {
            prev_index,
            prev_term,
            entries,
            commit,
            sequence,
        } = message.body
        else {
            return;
        };
        let leader = message.from;
        if !self.follow_leader(leader, out) {
            return;
        }
        let (prev_index, prev_term, entries) =
            self.trim_committed_prefix(prev_index, prev_term, entries);
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        let body = match self.log.try_append(prev_index, prev_term, entries) {
            Ok((truncated_from, fresh)) => {
                if let Some(from) = truncated_from {
                    self.stats.append_conflicts += 1;
                    self.persist_truncation(from);
                }
                let has_membership = fresh
                    .iter()
                    .any(|entry| matches!(entry.payload, EntryPayload::Membership(_)));
                self.persist_entries(fresh);
                if truncated_from.is_some() || has_membership {
                    self.refresh_membership();
                    self.membership_changed(out);
                }
                self.log.commit = self.log.commit.max(commit.min(last_new));
                MessageBody::AppendResponse {
                    success: true,
                    index: last_new,
                    hint_term: None,
                    sequence,
                    clock_nanos: self.now.as_nanos(),
                }
            }
            Err(conflict) => MessageBody::AppendResponse {
                success: false,
                index: conflict.hint_index,
                hint_term: conflict.hint_term,
                sequence,
                clock_nanos: self.now.as_nanos(),
            },
        };
        let response = self.message(leader, body);
        self.send_when_durable(response, out);
    }

    /// Drops the entries of an append request that this node already has committed (they
    /// cannot conflict), moving the anchor up to the commit index or the compaction point.
    fn trim_committed_prefix(
        &self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
    ) -> (LogIndex, Term, Vec<Entry>) {
        let floor = self
            .log
            .commit
            .max(self.log.base_index())
            .min(self.log.last_index());
        if prev_index >= floor {
            return (prev_index, prev_term, entries);
        }
        let kept: Vec<Entry> = entries
            .into_iter()
            .filter(|entry| entry.index > floor)
            .collect();
        let floor_term = self.log.term_at(floor).expect("floor is within the log");
        (floor, floor_term, kept)
    }

    pub(crate) fn on_append_response(
        &mut self,
        from: NodeId,
        answer: AppendAnswer,
        out: &mut Outbox<Output>,
    ) {
        let AppendAnswer {
            success,
            index,
            hint_term,
            sequence,
            clock,
        } = answer;
        if !self.note_answer(from, sequence) {
            return;
        }
        self.record_clock_sample(from, sequence, clock);
        let last_index_now = self.log.last_index();
        let progress = self.progress.get_mut(&from).expect("noted above");
        if success {
            let index = index.min(last_index_now);
            if progress.acknowledged(index) {
                if progress.state == ReplicationState::Probe {
                    progress.become_replicate();
                }
                self.maybe_commit(out);
                self.maybe_send_timeout_now(out);
            }
        } else {
            let next = self.back_off_target(index, hint_term);
            let progress = self.progress.get_mut(&from).expect("checked above");
            if index > progress.match_index {
                progress.become_probe(next);
            }
        }
        self.reads
            .confirm(&self.membership, self.id, &self.progress, out);
        self.send_appends(from, false, out);
    }

    /// Where to resume after a refusal: past the leader's last entry of the follower's
    /// conflicting term if the leader has that term, else the follower's hint.
    fn back_off_target(&self, hint_index: LogIndex, hint_term: Option<Term>) -> LogIndex {
        let next = match hint_term.and_then(|term| self.log.last_index_of_term(term)) {
            Some(last_of_term) => last_of_term.next(),
            None => hint_index,
        };
        next.min(self.log.last_index().next()).max(LogIndex(1))
    }

    /// Advances the commit index to what a quorum durably holds, if it is of this term.
    pub(crate) fn maybe_commit(&mut self, out: &mut Outbox<Output>) {
        if self.role != Role::Leader {
            return;
        }
        let own = self.log.persisted;
        let progress = &self.progress;
        let me = self.id;
        let match_of = |node: NodeId| {
            if node == me {
                own
            } else {
                progress.get(&node).map_or(LogIndex(0), |p| p.match_index)
            }
        };
        let quorum = committed_index(&self.membership, &match_of);
        #[cfg(feature = "planted-bugs")]
        let quorum = if self.planted.commit_without_majority {
            own
        } else {
            quorum
        };
        if quorum <= self.log.commit || self.log.term_at(quorum) != Some(self.term) {
            return;
        }
        let mut index = self.log.commit.next();
        while index <= quorum {
            let size = self.log.entry(index).map_or(0, Entry::size);
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(size);
            index = index.next();
        }
        self.log.commit = quorum;
        self.reads.commit_in_term(self.log.commit, out);
        self.reads
            .confirm(&self.membership, self.id, &self.progress, out);
        self.membership_committed(out);
    }
}
