//! Deliberate protocol bugs, compiled only with the `planted-bugs` feature. The simulator's
//! planted-bug test turns each one on and shows the checks catch it within the CI seed
//! budget; a check that misses a planted bug is itself broken.

use crate::raft::Raft;

/// Which bugs are active. All off by default.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The leader commits what it has written itself, without waiting for a majority.
    pub commit_without_majority: bool,
    /// A node grants a second vote in a term it already voted in.
    pub vote_twice: bool,
    /// The vote is left out of the persisted hard state, so a restart forgets it.
    pub forget_to_persist_vote: bool,
    /// The leader serves lease reads after its lease has lapsed.
    pub lease_after_expiry: bool,
    /// A follower acknowledges appended entries before they are durable.
    pub ack_before_fsync: bool,
}

impl Raft {
    /// Turns on the given planted bugs.
    pub fn plant(&mut self, bugs: PlantedBugs) {
        self.planted = bugs;
    }
}
