//! Messages between Raft peers. Every message carries the sender's term: the generation
//! clock that fences a deposed leader. The byte encoding is in [`crate::codec`].

use bytes::Bytes;
use synod_core::{LogIndex, NodeId, Term};

use crate::types::{Entry, SnapshotMeta};

/// A message from one peer to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

/// The kinds of peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// A candidate asks for a vote. With `pre_vote`, `term` is the term it would campaign
    /// in; nobody changes state on a pre-vote. `transfer` marks an election started by
    /// TimeoutNow, which overrides leader stickiness.
    VoteRequest {
        pre_vote: bool,
        transfer: bool,
        last_index: LogIndex,
        last_term: Term,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// Log replication; also the heartbeat (no entries). `sequence` numbers requests per
    /// leader term so responses can confirm leadership for ReadIndex rounds.
    AppendRequest {
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
        sequence: u64,
    },
    /// On success `index` is the last index the follower now durably matches. On refusal,
    /// `index` and `hint_term` are the conflict hint for fast back-off: the follower's log
    /// holds nothing it could match before `index`, and `hint_term` (when present) is the
    /// term of its entry at the refused position. `clock_nanos` is the follower's monotonic
    /// clock when it handled the request: the leader compares the rate of that clock with
    /// its own to check the lease's drift bound (`crate::skew`).
    AppendResponse {
        success: bool,
        index: LogIndex,
        hint_term: Option<Term>,
        sequence: u64,
        clock_nanos: u64,
    },
    /// One chunk of a snapshot. `offset` is the byte position of `data` in the snapshot.
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        size: u64,
        data: Bytes,
        sequence: u64,
    },
    /// `next_offset` is the byte the follower wants next; `done` once it has persisted
    /// the whole snapshot, at which point it matches `meta.last_index`.
    InstallSnapshotResponse {
        next_offset: u64,
        done: bool,
        last_index: LogIndex,
        sequence: u64,
    },
    /// A follower asks the leader to confirm a read index for its read `id`.
    ReadIndexRequest {
        id: u64,
    },
    /// The leader's answer: reads at `index` (or later) are linearizable. `index` is
    /// absent when the leader could not confirm (it lost leadership meanwhile).
    ReadIndexResponse {
        id: u64,
        index: Option<LogIndex>,
    },
    /// Leader transfer: the receiver campaigns at once.
    TimeoutNow,
}

impl MessageBody {
    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::VoteRequest { pre_vote: true, .. } => "pre_vote_request",
            MessageBody::VoteRequest { .. } => "vote_request",
            MessageBody::VoteResponse { pre_vote: true, .. } => "pre_vote_response",
            MessageBody::VoteResponse { .. } => "vote_response",
            MessageBody::AppendRequest { .. } => "append_request",
            MessageBody::AppendResponse { .. } => "append_response",
            MessageBody::InstallSnapshot { .. } => "install_snapshot",
            MessageBody::InstallSnapshotResponse { .. } => "install_snapshot_response",
            MessageBody::ReadIndexRequest { .. } => "read_index_request",
            MessageBody::ReadIndexResponse { .. } => "read_index_response",
            MessageBody::TimeoutNow => "timeout_now",
        }
    }
}
