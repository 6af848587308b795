//! Membership changes by joint consensus: learners join without a vote, voter-set changes
//! pass through a joint configuration that the leader leaves automatically once it commits,
//! and a leader that removed itself hands over and steps down.

use synod_core::{NodeId, Outbox};

use crate::io::{MembershipChange, Output, ProposeError, Role};
use crate::message::MessageBody;
use crate::raft::Raft;
use crate::types::{EntryPayload, FencingToken, Membership};

impl Raft {
    pub(crate) fn on_change_membership(
        &mut self,
        id: u64,
        change: MembershipChange,
        time_ns: u64,
        out: &mut Outbox<Output>,
    ) {
        let next = match self.next_membership(&change) {
            Ok(next) => next,
            Err(error) => {
                out.push(Output::Rejected { id, error });
                return;
            }
        };
        let index = self.log.last_index().next();
        let entry = self.entry_of(index, EntryPayload::Membership(next), time_ns);
        self.append_own(entry);
        self.membership_changed(out);
        let token = FencingToken {
            term: self.term,
            index,
        };
        out.push(Output::Proposed { id, token });
    }

    /// The configuration `change` leads to, or why it cannot be made now.
    fn next_membership(&self, change: &MembershipChange) -> Result<Membership, ProposeError> {
        self.admit_proposal(0)?;
        if self.membership_index > self.log.commit || self.membership.is_joint() {
            return Err(ProposeError::ChangeInProgress);
        }
        let invalid = |reason: String| ProposeError::InvalidChange { reason };
        let current = &self.membership;
        let mut next = current.clone();
        match change {
            MembershipChange::AddLearner(node) => {
                if current.contains(*node) {
                    return Err(invalid(format!("{node} is already a member")));
                }
                next.learners.push(*node);
                next.learners.sort();
            }
            MembershipChange::Promote(node) => {
                if !current.is_learner(*node) {
                    return Err(invalid(format!(
                        "{node} is not a learner; add it as one first"
                    )));
                }
                self.check_caught_up(*node)?;
                next.learners.retain(|learner| learner != node);
                next.voters_outgoing = current.voters.clone();
                next.voters.push(*node);
                next.voters.sort();
            }
            MembershipChange::Remove(node) => {
                if current.is_learner(*node) {
                    next.learners.retain(|learner| learner != node);
                } else if current.is_voter(*node) {
                    if current.voters.len() == 1 {
                        return Err(invalid("the last voter cannot be removed".into()));
                    }
                    next.voters_outgoing = current.voters.clone();
                    next.voters.retain(|voter| voter != node);
                } else {
                    return Err(invalid(format!("{node} is not a member")));
                }
            }
            MembershipChange::SetVoters(voters) => {
                let target = Membership::with_voters(voters);
                if target.voters.is_empty() || target.voters == current.voters {
                    return Err(invalid("the voter set would be empty or unchanged".into()));
                }
                for node in &target.voters {
                    if !current.is_voter(*node) {
                        if !current.is_learner(*node) {
                            return Err(invalid(format!(
                                "{node} must join as a learner and catch up first"
                            )));
                        }
                        self.check_caught_up(*node)?;
                    }
                }
                next.voters_outgoing = current.voters.clone();
                next.voters = target.voters;
                next.learners
                    .retain(|learner| !next.voters.contains(learner));
            }
        }
        next.check().map_err(invalid)?;
        Ok(next)
    }

    fn check_caught_up(&self, node: NodeId) -> Result<(), ProposeError> {
        let matched = self.progress.get(&node).map_or(0, |p| p.match_index.0);
        let behind = self.log.commit.0.saturating_sub(matched);
        if behind > self.config.learner_lag_max {
            return Err(ProposeError::InvalidChange {
                reason: format!(
                    "learner {node} is {behind} entries behind the commit (at most {} allowed); \
                     retry when it has caught up",
                    self.config.learner_lag_max
                ),
            });
        }
        Ok(())
    }

    /// After the commit index advanced at the leader: leave a committed joint configuration,
    /// and step down if a committed configuration no longer has this leader as a voter.
    pub(crate) fn membership_committed(&mut self, out: &mut Outbox<Output>) {
        if self.role != Role::Leader || self.membership_index > self.log.commit {
            return;
        }
        if self.membership.is_joint() {
            let mut leave = self.membership.clone();
            leave.voters_outgoing.clear();
            let index = self.log.last_index().next();
            let entry = self.entry_of(index, EntryPayload::Membership(leave), 0);
            self.append_own(entry);
            self.membership_changed(out);
            return;
        }
        if !self.membership.is_voter(self.id) {
            if let Some(successor) = self.best_transfer_target() {
                self.send(successor, MessageBody::TimeoutNow, out);
            }
            let term = self.term;
            self.become_follower(term, None, out);
        }
    }
}
