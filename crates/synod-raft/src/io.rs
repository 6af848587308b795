//! The engine's inputs and outputs: everything that can happen to a Raft node and
//! everything it asks its driver to do.

use bytes::Bytes;
use synod_core::{LogIndex, NodeId, Term};
use thiserror::Error;

use crate::message::Message;
use crate::types::{Entry, FencingToken, HardState, Snapshot};

/// Everything that can happen to a Raft node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One tick of the logical clock; the driver sends one per `tick_interval`.
    Tick,
    /// A message from a peer (already decoded).
    Message(Message),
    /// A client command for the log. `time_ns` is the proposer's wall clock: it becomes the
    /// entry's log time.
    Propose {
        id: u64,
        payload: Bytes,
        time_ns: u64,
    },
    /// A read at `level`; answered by `ReadReady` with the index the state machine must have
    /// applied before the read is served, or by `ReadFailed`.
    Read { id: u64, level: ReadLevel },
    /// A membership change; answered by `Proposed` (the change's entry) or `Rejected`.
    ChangeMembership {
        id: u64,
        change: MembershipChange,
        time_ns: u64,
    },
    /// Hand leadership to `to`. Proposals are refused while the transfer runs.
    TransferLeadership { to: NodeId },
    /// The driver made the `Persist` with this id (and every earlier one) durable.
    Persisted { id: u64 },
    /// The driver wrote a snapshot of the state machine at `snapshot.meta.last_index`
    /// (which it had applied); the engine compacts its log up to there.
    SnapshotTaken { snapshot: Snapshot },
}

/// How a read is made linearizable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLevel {
    /// ReadIndex: the leader confirms its leadership with a heartbeat round. A follower
    /// asks the leader for the index (a follower read).
    Linearizable,
    /// The leader's lease; falls back to ReadIndex when the lease is off or has lapsed.
    Lease,
}

/// A change of the voter and learner sets. Each is entered through a joint configuration
/// and left automatically once the joint configuration commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearner(NodeId),
    /// Promote a learner; refused until it has caught up.
    Promote(NodeId),
    /// Remove a voter or learner (the leader itself included).
    Remove(NodeId),
    /// Replace the voter set in one joint step.
    SetVoters(Vec<NodeId>),
}

/// Everything the engine asks its driver to do, in the order it must be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Make durable, in this order: the hard state, the snapshot (which replaces the whole
    /// log up to it), the truncation of the log from `truncate_from`, then `entries`.
    /// Persists complete in id order; report each with `Input::Persisted`.
    Persist(Persist),
    Send(Message),
    /// Apply these committed, durable entries to the state machine, in order.
    Apply(Vec<Entry>),
    /// Replace the state machine's state with this snapshot (installed from the leader).
    ApplySnapshot(Snapshot),
    /// A proposal entered the log at the leader with this fencing token. Its outcome is
    /// known when the entry at `token.index` is applied: if that entry's term differs,
    /// the proposal was overwritten and never committed.
    Proposed {
        id: u64,
        token: FencingToken,
    },
    Rejected {
        id: u64,
        error: ProposeError,
    },
    /// The read may be served once the state machine has applied `index`.
    ReadReady {
        id: u64,
        index: LogIndex,
    },
    ReadFailed {
        id: u64,
        error: ReadError,
    },
    /// The log since the last snapshot has outgrown `snapshot_log_bytes`: the driver should
    /// snapshot the state machine at its applied index and report `SnapshotTaken`.
    SnapshotWanted {
        applied: LogIndex,
    },
    /// Entries below `first_index` left the engine's log; the driver may drop them from
    /// its storage.
    Compacted {
        first_index: LogIndex,
    },
    /// The node's role, term or known leader changed.
    RoleChanged {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
}

/// One unit of durable work; see [`Output::Persist`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    pub id: u64,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub truncate_from: Option<LogIndex>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    /// Not a member of the current configuration (a learner, or removed): it follows the
    /// log but never campaigns.
    Learner,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
            Role::Learner => "learner",
        }
    }
}

/// Why a proposal or membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    #[error("not the leader; the leader is {}", describe_leader(*leader_hint))]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("busy: {uncommitted_bytes} bytes await commit (limit {limit}); retry later")]
    Busy {
        uncommitted_bytes: usize,
        limit: usize,
    },
    #[error("proposal of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("leadership is being transferred to {to}; retry at the new leader")]
    Transferring { to: NodeId },
    #[error("another membership change is in progress; retry when it has committed")]
    ChangeInProgress,
    #[error("membership change refused: {reason}")]
    InvalidChange { reason: String },
}

/// Why a read could not be given an index.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error("not the leader and no leader is known; retry later")]
    NoLeader,
    #[error("leadership was lost before the read was confirmed; retry")]
    LeadershipLost,
    #[error("too many pending reads (limit {limit}); retry later")]
    Busy { limit: usize },
}

fn describe_leader(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "unknown".to_string(), |node| node.to_string())
}
