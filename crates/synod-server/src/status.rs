//! What a node says about itself: the figures behind INFO, SYNOD.STATUS, DBSIZE, `/status`
//! and the dashboard, taken from the replica in one step of the node loop.

use serde::Serialize;

/// How a connection's reads are made consistent (`SYNOD.READ-LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadLevel {
    /// ReadIndex at the leader: the node forwards the read to the leader.
    Linearizable,
    /// The leader's lease (ReadIndex when no drift bound is configured or the lease lapsed).
    Lease,
    /// ReadIndex confirmed by the leader, served from this node's own state once it has
    /// applied that index: linearizable, without moving the data through the leader.
    Follower,
    /// This node's applied state at once, labelled with its staleness.
    Stale,
}

impl ReadLevel {
    pub const ALL: [ReadLevel; 4] = [
        ReadLevel::Linearizable,
        ReadLevel::Lease,
        ReadLevel::Follower,
        ReadLevel::Stale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReadLevel::Linearizable => "linearizable",
            ReadLevel::Lease => "lease",
            ReadLevel::Follower => "follower",
            ReadLevel::Stale => "stale",
        }
    }

    /// Parses a level name, ignoring ASCII case.
    pub fn parse(name: &[u8]) -> Option<ReadLevel> {
        ReadLevel::ALL
            .into_iter()
            .find(|level| level.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// One follower as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowerStatus {
    pub node: u64,
    /// Whether it votes (false: a learner).
    pub voter: bool,
    /// Entries the leader has that the follower has not acknowledged durable.
    pub lag_entries: u64,
    /// Bytes of those entries, as far as the leader still holds them in its log.
    pub lag_bytes: u64,
    /// How far behind in time: the age of the oldest entry it lacks, in milliseconds (0 when
    /// it has everything).
    pub lag_ms: u64,
    /// Heard from within the last election timeout.
    pub active: bool,
}

/// A node's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub node: u64,
    pub cluster_id: u64,
    /// `"leader"`, `"follower"`, `"candidate"`, `"learner"`, or `"starting"` before the log
    /// has been recovered (and while the storage is read-only: Raft is stopped then).
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// The first index still in the log (earlier ones are in the snapshot).
    pub first_log_index: u64,
    pub snapshot_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Followers, when this node leads.
    pub followers: Vec<FollowerStatus>,
    /// Milliseconds since this node last heard from a leader (0 on the leader itself,
    /// `None`: never).
    pub leader_contact_ms: Option<u64>,
    /// The largest clock-rate skew this node, as leader, has proven towards a voter within
    /// its measuring horizon, in parts per million (the lower bound of the measurement).
    pub clock_skew_ppm_max: u64,
    /// Whether lease reads are suspended because that skew exceeds the lease's drift bound
    /// (lease reads then take the ReadIndex path).
    pub lease_suspended_by_skew: bool,
    /// Why this node cannot serve requests that need a quorum or its disk, when it cannot:
    /// it lost contact with a majority (no leader heard from for a while, or a leader that
    /// hears from too few voters), or its disk is full or failing (it is read-only). Stale
    /// reads are served either way. `None`: healthy.
    pub degraded: Option<String>,
    /// Keys holding a value in the applied state (DBSIZE).
    pub keys: u64,
    /// The state machine's revision.
    pub revision: u64,
    pub sessions: u64,
    pub uptime_ms: u64,
    /// RESP connections open on this node.
    pub connected_clients: u64,
    /// Where this node serves RESP, HTTP, and listens for peers.
    pub resp_address: String,
    pub http_address: String,
    pub peer_address: String,
    /// Every member's endpoints as configured: node id -> (RESP address, HTTP address).
    pub members: Vec<MemberEndpoints>,
}

/// Where one member of the cluster serves clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberEndpoints {
    pub node: u64,
    pub resp_address: String,
    pub http_address: String,
}
