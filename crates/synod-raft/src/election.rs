//! Elections: pre-vote, vote, becoming leader, check-quorum and leader transfer.

use synod_core::{LogIndex, NodeId, Outbox, Term};

use crate::io::{Output, Role};
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::quorum::{VoteOutcome, is_quorum, joint_vote_outcome};
use crate::raft::Raft;
use crate::types::EntryPayload;

impl Raft {
    /// Starts an election: a pre-vote round first unless this is a leader transfer.
    pub(crate) fn campaign(&mut self, transfer: bool, out: &mut Outbox<Output>) {
        if !self.may_campaign() {
            return;
        }
        self.stats.elections_started += 1;
        self.votes.clear();
        self.reset_election_timer();
        if self.config.pre_vote && !transfer {
            self.set_role(Role::PreCandidate, None, out);
            self.send_vote_requests(true, false, out);
            self.record_vote(self.id, true, out);
            return;
        }
        self.start_vote(transfer, out);
    }

    /// Whether this node may stand for election: it votes in its latest configuration, or
    /// that configuration drops it but is not known to be committed and this node voted in
    /// the one before. Then it may be the only node able to finish the change: a leader
    /// that removed itself, restarted before the change committed, holds the entries the
    /// remaining voters lack, and they cannot win without its vote, which it refuses to
    /// a log less complete than its own. Votes are counted in the candidate's latest
    /// configuration, which leaves it out; elected, it leads until the change commits and
    /// then hands over, as any leader that removed itself.
    pub(crate) fn may_campaign(&self) -> bool {
        if self.membership.is_voter(self.id) {
            return true;
        }
        if self.membership_index <= self.log.commit {
            return false;
        }
        let before = LogIndex(self.membership_index.0.saturating_sub(1));
        let previous = match self.log.membership_at_or_before(before) {
            Some((_, membership)) => membership,
            None => &self.membership_base,
        };
        previous.is_voter(self.id)
    }

    /// Raises the term and asks for votes. The candidate's own vote counts once its term and
    /// vote are durable.
    fn start_vote(&mut self, transfer: bool, out: &mut Outbox<Output>) {
        self.votes.clear();
        self.term = self.term.next();
        self.vote = Some(self.id);
        self.transfer_started_in_term = false;
        self.persist_hard_state();
        self.set_role(Role::Candidate, None, out);
        self.send_vote_requests(false, transfer, out);
        self.hold_self_vote();
    }

    fn send_vote_requests(&mut self, pre_vote: bool, transfer: bool, out: &mut Outbox<Output>) {
        for voter in self.voters() {
            if voter != self.id {
                out.push(Output::Send(self.vote_request(voter, pre_vote, transfer)));
            }
        }
    }

    /// This node's request for `to`'s vote (or pre-vote, for the next term).
    fn vote_request(&self, to: NodeId, pre_vote: bool, transfer: bool) -> Message {
        let term = if pre_vote {
            self.term.next()
        } else {
            self.term
        };
        Message {
            from: self.id,
            to,
            term,
            body: MessageBody::VoteRequest {
                pre_vote,
                transfer,
                last_index: self.log.last_index(),
                last_term: self.log.last_term(),
            },
        }
    }

    pub(crate) fn on_vote_request(&mut self, message: Message, out: &mut Outbox<Output>) {
        let MessageBody::VoteRequest {
            pre_vote,
            last_index,
            last_term,
            ..
        } = message.body
        else {
            return;
        };
        let candidate = message.from;
        let may_vote = self.vote == Some(candidate)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && message.term > self.term);
        #[cfg(feature = "planted-bugs")]
        let may_vote = may_vote || (self.planted.vote_twice && !pre_vote);
        let granted = may_vote && self.log.is_up_to_date(last_index, last_term);
        let rival = pre_vote && self.role == Role::PreCandidate && message.term == self.term.next();
        let outranked_rival = rival && self.outranks(candidate, last_index, last_term);
        let granted = granted && !outranked_rival;
        let body = MessageBody::VoteResponse { pre_vote, granted };
        if rival && granted {
            // This pre-candidate yields to a rival that outranks it: if both went on, both
            // could win their pre-votes, raise the term together and split the real vote,
            // which costs a whole new election timeout. Followers of one leader time out
            // together when their ticks run in step (nodes started together).
            let term = self.term;
            self.become_follower(term, None, out);
        }
        if pre_vote {
            // The answer to a granted pre-vote carries the term it was asked for, so the
            // pre-candidate can tell it apart from a stale one.
            let term = if granted { message.term } else { self.term };
            out.push(Output::Send(Message {
                from: self.id,
                to: candidate,
                term,
                body,
            }));
            if outranked_rival && !self.votes.contains_key(&candidate) {
                // The rival has not answered this node's own request: it arrived while the
                // rival still heard from the leader (its silence began a little later) and
                // was ignored. A pre-candidate now, the rival yields to the same request by
                // the tie-break, so ask again rather than wait out a whole new timeout.
                out.push(Output::Send(self.vote_request(candidate, true, false)));
            }
            return;
        }
        if granted {
            self.vote = Some(candidate);
            self.persist_hard_state();
            self.reset_election_timer();
        }
        let response = self.message(candidate, body);
        self.send_when_durable(response, out);
    }

    /// Whether this node outranks a rival pre-candidate for the same term: its log is more
    /// up to date, or as up to date and its id is lower. Of two concurrent pre-candidates
    /// exactly one outranks the other, so exactly one of them goes on.
    fn outranks(&self, rival: NodeId, last_index: LogIndex, last_term: Term) -> bool {
        let own = (self.log.last_term(), self.log.last_index());
        let theirs = (last_term, last_index);
        own > theirs || (own == theirs && self.id < rival)
    }

    pub(crate) fn on_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
        out: &mut Outbox<Output>,
    ) {
        let expected = match self.role {
            Role::PreCandidate => pre_vote && (term == self.term.next() || !granted),
            Role::Candidate => !pre_vote && term == self.term,
            _ => false,
        };
        if !expected {
            return;
        }
        self.record_vote(from, granted, out);
    }

    /// Counts one vote and acts on the outcome.
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool, out: &mut Outbox<Output>) {
        self.votes.entry(from).or_insert(granted);
        let votes = &self.votes;
        let outcome = joint_vote_outcome(&self.membership, &|node| votes.get(&node).copied());
        match (outcome, self.role) {
            (VoteOutcome::Won, Role::PreCandidate) => self.start_vote(false, out),
            (VoteOutcome::Won, Role::Candidate) => self.become_leader(out),
            (VoteOutcome::Lost, Role::PreCandidate | Role::Candidate) => {
                let term = self.term;
                self.become_follower(term, None, out);
            }
            _ => {}
        }
    }

    fn become_leader(&mut self, out: &mut Outbox<Output>) {
        self.stats.leaderships_won += 1;
        self.set_role(Role::Leader, Some(self.id), out);
        self.reads.new_term();
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.transfer = None;
        let next = self.log.last_index().next();
        self.progress.clear();
        for member in self.membership.members() {
            if member != self.id {
                let mut progress = Progress::new(next);
                progress.recent_active = true;
                self.progress.insert(member, progress);
            }
        }
        self.uncommitted_bytes = 0;
        let mut index = self.log.commit.next();
        while let Some(entry) = self.log.entry(index) {
            self.uncommitted_bytes += entry.size();
            index = index.next();
        }
        // A leader commits entries of earlier terms only through an entry of its own.
        let noop = self.entry_of(next, EntryPayload::Noop, 0);
        self.append_own(noop);
        self.broadcast_heartbeat(out);
    }

    /// Leaves leadership: pending reads fail, the transfer ends, progress is forgotten.
    pub(crate) fn step_down_leader(&mut self, out: &mut Outbox<Output>) {
        self.progress.clear();
        self.transfer = None;
        self.uncommitted_bytes = 0;
        self.reads.leadership_lost(out);
    }

    pub(crate) fn tick_leader(&mut self, out: &mut Outbox<Output>) {
        self.heartbeat_elapsed += 1;
        if let Some((to, elapsed)) = self.transfer.as_mut() {
            *elapsed += 1;
            if *elapsed >= self.config.election_ticks {
                let _ = to;
                self.transfer = None;
            }
        }
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                self.stats.check_quorum_step_downs += 1;
                let term = self.term;
                self.become_follower(term, None, out);
                return;
            }
            for progress in self.progress.values_mut() {
                progress.recent_active = false;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat(out);
        }
    }

    /// Whether a quorum (this leader included) has been heard from in this round.
    fn quorum_active(&self) -> bool {
        let progress = &self.progress;
        let me = self.id;
        is_quorum(&self.membership, &|node| {
            node == me || progress.get(&node).is_some_and(|p| p.recent_active)
        })
    }

    pub(crate) fn on_transfer_leadership(&mut self, to: NodeId, out: &mut Outbox<Output>) {
        if self.role != Role::Leader || to == self.id || !self.membership.is_voter(to) {
            return;
        }
        self.transfer = Some((to, 0));
        self.transfer_started_in_term = true;
        self.election_elapsed = 0;
        self.maybe_send_timeout_now(out);
    }

    /// Sends TimeoutNow to the transfer target once its log is complete.
    pub(crate) fn maybe_send_timeout_now(&mut self, out: &mut Outbox<Output>) {
        let Some((to, _)) = self.transfer else { return };
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|progress| progress.match_index == self.log.last_index());
        if caught_up {
            self.send(to, MessageBody::TimeoutNow, out);
        }
    }

    pub(crate) fn on_timeout_now(&mut self, from: NodeId, out: &mut Outbox<Output>) {
        if self.leader != Some(from) || !self.membership.is_voter(self.id) {
            self.stats.messages_unexpected += 1;
            return;
        }
        self.campaign(true, out);
    }

    /// The most up-to-date other voter, for handing over leadership when this leader leaves.
    pub(crate) fn best_transfer_target(&self) -> Option<NodeId> {
        let mut best: Option<(LogIndex, NodeId)> = None;
        for (node, progress) in &self.progress {
            if self.membership.is_voter(*node)
                && best.is_none_or(|(index, _)| progress.match_index > index)
            {
                best = Some((progress.match_index, *node));
            }
        }
        best.map(|(_, node)| node)
    }
}
