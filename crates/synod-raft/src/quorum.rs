//! Majority arithmetic for plain and joint configurations: the commit index a set of match
//! indexes supports, and the outcome of a vote. Pure functions, table-tested.

use synod_core::{LogIndex, NodeId};

use crate::types::Membership;

/// The outcome of a vote so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteOutcome {
    Won,
    Lost,
    Pending,
}

/// The largest value that a majority of `voters` has reached; `unconstrained` for an empty
/// set (the empty half of a configuration that is not joint constrains nothing).
pub fn majority_value<T: Ord + Copy>(
    voters: &[NodeId],
    value_of: &impl Fn(NodeId) -> T,
    unconstrained: T,
) -> T {
    if voters.is_empty() {
        return unconstrained;
    }
    let mut values: Vec<T> = voters.iter().map(|voter| value_of(*voter)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[voters.len() / 2]
}

/// The largest index that a majority of `voters` has reached.
pub fn majority_index(voters: &[NodeId], match_of: &impl Fn(NodeId) -> LogIndex) -> LogIndex {
    majority_value(voters, match_of, LogIndex(u64::MAX))
}

/// The largest index a majority of every voter set of `membership` has reached.
pub fn committed_index(
    membership: &Membership,
    match_of: &impl Fn(NodeId) -> LogIndex,
) -> LogIndex {
    majority_index(&membership.voters, match_of)
        .min(majority_index(&membership.voters_outgoing, match_of))
}

/// The largest value a majority of every voter set of `membership` has reached.
pub fn joint_majority_value<T: Ord + Copy>(
    membership: &Membership,
    value_of: &impl Fn(NodeId) -> T,
    unconstrained: T,
) -> T {
    majority_value(&membership.voters, value_of, unconstrained).min(majority_value(
        &membership.voters_outgoing,
        value_of,
        unconstrained,
    ))
}

/// The outcome of a vote in one voter set, given who granted and who refused.
pub fn vote_outcome(voters: &[NodeId], vote_of: &impl Fn(NodeId) -> Option<bool>) -> VoteOutcome {
    if voters.is_empty() {
        return VoteOutcome::Won;
    }
    let majority = voters.len() / 2 + 1;
    let granted = voters
        .iter()
        .filter(|voter| vote_of(**voter) == Some(true))
        .count();
    let refused = voters
        .iter()
        .filter(|voter| vote_of(**voter) == Some(false))
        .count();
    if granted >= majority {
        VoteOutcome::Won
    } else if refused > voters.len() - majority {
        VoteOutcome::Lost
    } else {
        VoteOutcome::Pending
    }
}

/// The outcome of a vote in a (possibly joint) configuration: both halves must be won.
pub fn joint_vote_outcome(
    membership: &Membership,
    vote_of: &impl Fn(NodeId) -> Option<bool>,
) -> VoteOutcome {
    let incoming = vote_outcome(&membership.voters, vote_of);
    let outgoing = vote_outcome(&membership.voters_outgoing, vote_of);
    match (incoming, outgoing) {
        (VoteOutcome::Won, VoteOutcome::Won) => VoteOutcome::Won,
        (VoteOutcome::Lost, _) | (_, VoteOutcome::Lost) => VoteOutcome::Lost,
        _ => VoteOutcome::Pending,
    }
}

/// Whether the nodes for which `active` holds form a quorum of `membership`.
pub fn is_quorum(membership: &Membership, active: &impl Fn(NodeId) -> bool) -> bool {
    joint_vote_outcome(membership, &|node| Some(active(node))) == VoteOutcome::Won
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[u64]) -> Vec<NodeId> {
        ids.iter().map(|id| NodeId(*id)).collect()
    }

    #[test]
    fn majority_index_table() {
        // Checks the commit index a majority supports for sets of size 1 to 5.
        let cases: &[(&[u64], &[u64], u64)] = &[
            (&[1], &[7], 7),
            (&[1, 2], &[7, 3], 3),
            (&[1, 2, 3], &[7, 3, 5], 5),
            (&[1, 2, 3], &[0, 0, 9], 0),
            (&[1, 2, 3, 4], &[4, 4, 2, 9], 4),
            (&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 5], 3),
        ];
        for (voters, matches, expected) in cases {
            let voters = nodes(voters);
            let match_of = |node: NodeId| LogIndex(matches[(node.0 - 1) as usize]);
            assert_eq!(
                majority_index(&voters, &match_of),
                LogIndex(*expected),
                "{voters:?}"
            );
        }
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        // Checks a joint configuration commits only what a majority of each half has.
        let membership = Membership {
            voters: nodes(&[3, 4, 5]),
            voters_outgoing: nodes(&[1, 2, 3]),
            learners: vec![],
        };
        let matches = [9, 9, 9, 1, 1];
        let match_of = |node: NodeId| LogIndex(matches[(node.0 - 1) as usize]);
        assert_eq!(committed_index(&membership, &match_of), LogIndex(1));
    }

    #[test]
    fn vote_outcome_table() {
        // Checks won, lost and pending for grants and refusals in a 3- and 4-voter set.
        type Case<'a> = (&'a [u64], &'a [Option<bool>], VoteOutcome);
        let cases: &[Case] = &[
            (
                &[1, 2, 3],
                &[Some(true), Some(true), None],
                VoteOutcome::Won,
            ),
            (
                &[1, 2, 3],
                &[Some(true), Some(false), None],
                VoteOutcome::Pending,
            ),
            (
                &[1, 2, 3],
                &[Some(true), Some(false), Some(false)],
                VoteOutcome::Lost,
            ),
            (
                &[1, 2, 3, 4],
                &[Some(true), Some(true), None, None],
                VoteOutcome::Pending,
            ),
            (
                &[1, 2, 3, 4],
                &[Some(true), Some(false), Some(false), None],
                VoteOutcome::Lost,
            ),
            (&[1], &[Some(true)], VoteOutcome::Won),
        ];
        for (voters, votes, expected) in cases {
            let voters = nodes(voters);
            let vote_of = |node: NodeId| votes[(node.0 - 1) as usize];
            assert_eq!(vote_outcome(&voters, &vote_of), *expected, "{votes:?}");
        }
    }

    #[test]
    fn joint_vote_is_lost_if_either_half_is_lost() {
        // Checks a joint election needs both halves and fails as soon as one half fails.
        let membership = Membership {
            voters: nodes(&[1, 2, 3]),
            voters_outgoing: nodes(&[3, 4, 5]),
            learners: vec![],
        };
        let votes = [
            Some(true),
            Some(true),
            Some(false),
            Some(false),
            Some(false),
        ];
        let vote_of = |node: NodeId| votes[(node.0 - 1) as usize];
        assert_eq!(joint_vote_outcome(&membership, &vote_of), VoteOutcome::Lost);
        let votes = [Some(true), Some(true), Some(true), Some(true), None];
        let vote_of = |node: NodeId| votes[(node.0 - 1) as usize];
        assert_eq!(joint_vote_outcome(&membership, &vote_of), VoteOutcome::Won);
    }
}
