//! The values the Raft engine stores and exchanges: log entries, membership configurations,
//! hard state and snapshot metadata.

use bytes::Bytes;
use synod_core::{LogIndex, NodeId, Term};

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPayload {
    /// The entry a new leader appends to commit everything before it in its own term.
    Noop,
    /// An opaque state-machine command.
    Command(Bytes),
    /// A membership configuration; it takes effect as soon as it is in the log.
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    /// The proposer's wall-clock time in nanoseconds: the state machine's notion of time
    /// ("log time"), identical on every replica, used for deterministic session expiry.
    pub time_ns: u64,
    pub payload: EntryPayload,
}

impl Entry {
    /// The approximate in-memory and on-wire size, used for flow control and batching.
    pub fn size(&self) -> usize {
        const HEADER_SIZE: usize = 8 + 8 + 8 + 1;
        let payload_size = match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(bytes) => bytes.len(),
            EntryPayload::Membership(membership) => membership.size(),
        };
        HEADER_SIZE + payload_size
    }
}

/// A membership configuration. When `voters_outgoing` is non-empty the cluster is in a
/// joint configuration: every decision needs a majority of both voter sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Sorted, no duplicates.
    pub voters: Vec<NodeId>,
    /// The previous voter set while a joint configuration is in force; empty otherwise.
    pub voters_outgoing: Vec<NodeId>,
    /// Members that receive the log but do not vote. Sorted, disjoint from `voters`.
    pub learners: Vec<NodeId>,
}

impl Membership {
    /// A plain (not joint) configuration of the given voters.
    pub fn with_voters(voters: &[NodeId]) -> Membership {
        let mut voters = voters.to_vec();
        voters.sort();
        voters.dedup();
        Membership {
            voters,
            voters_outgoing: Vec::new(),
            learners: Vec::new(),
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `node` votes in this configuration (in either half of a joint one).
    pub fn is_voter(&self, node: NodeId) -> bool {
        self.voters.binary_search(&node).is_ok()
            || self.voters_outgoing.binary_search(&node).is_ok()
    }

    pub fn is_learner(&self, node: NodeId) -> bool {
        self.learners.binary_search(&node).is_ok()
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.is_voter(node) || self.is_learner(node)
    }

    /// Every member (voters of both halves and learners), sorted, without duplicates.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    pub fn size(&self) -> usize {
        8 * (3 + self.voters.len() + self.voters_outgoing.len() + self.learners.len())
    }

    /// Checks the structural rules every configuration obeys; used on decode and in
    /// invariants. Returns what is wrong in words.
    pub fn check(&self) -> Result<(), String> {
        fn sorted_unique(list: &[NodeId]) -> bool {
            list.windows(2).all(|pair| pair[0] < pair[1])
        }
        if self.voters.is_empty() {
            return Err("a configuration needs at least one voter".into());
        }
        if !sorted_unique(&self.voters)
            || !sorted_unique(&self.voters_outgoing)
            || !sorted_unique(&self.learners)
        {
            return Err("member lists must be sorted and free of duplicates".into());
        }
        if let Some(both) = self.learners.iter().find(|node| self.is_voter(**node)) {
            return Err(format!("{both} is both a voter and a learner"));
        }
        Ok(())
    }
}

/// The state a node must persist before it acts on it: the current term and the vote cast
/// in it. Persisted atomically by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
}

/// What a snapshot covers: everything up to and including `last_index`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    pub last_index: LogIndex,
    pub last_term: Term,
    /// The membership in force at `last_index`.
    pub membership: Membership,
}

/// A snapshot: its metadata and the state machine's serialized state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// Everything a node recovered from its disk at start, handed to [`crate::Raft::new`].
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// The log entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

/// The fencing token of a write: the (term, index) of its log entry. A later write always
/// carries a larger token, so a storage service can refuse writes from a deposed leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FencingToken {
    pub term: Term,
    pub index: LogIndex,
}
