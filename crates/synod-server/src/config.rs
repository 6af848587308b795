//! The configuration of one node of a deployment (`synod server --config node.toml`).
//!
//! Every setting comes from the TOML file, and any of them can be overridden by an
//! environment variable named `SYNOD_` followed by its dotted path in upper case with `__`
//! between sections: `SYNOD_NODE_ID=2`, `SYNOD_LISTEN_RESP=0.0.0.0:6379`,
//! `SYNOD_RAFT__ELECTION_TIMEOUT_MS=300`. Unknown fields are refused, and the whole
//! configuration is validated at start with errors that name the field.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use synod_core::config::check_range;
use synod_core::{ConfigError, Validate};

/// Where one member of the cluster listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: u64,
    /// Raft and failure-detector traffic between nodes.
    pub peer: SocketAddr,
    /// The Redis protocol.
    pub resp: SocketAddr,
    /// The HTTP admin API and dashboard.
    pub http: SocketAddr,
    /// Whether the node votes from the start. A member with `voter = false` is known to the
    /// others (they can reach it) but joins only when an operator adds it as a learner and
    /// promotes it (`POST /members`).
    #[serde(default = "default_true")]
    pub voter: bool,
}

/// How a follower suspects its leader (`raft.leader_suspicion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderSuspicionName {
    /// A random election timeout in [t, 2t).
    Timeout,
    /// Phi-accrual over the leader's message arrivals, between t and 2t.
    Phi,
}

/// Raft timing and lease settings.
// Not `Eq`: `phi_threshold` is a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// The granularity of Raft's timers.
    pub tick_ms: u64,
    /// The base election timeout (a follower waits a random time in [t, 2t)).
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// The bound on clock drift between nodes, in parts per million, under which lease
    /// reads stay linearizable. 0 switches lease reads off (they use ReadIndex).
    pub lease_drift_bound_ppm: u64,
    /// Take a snapshot and compact the log once it has grown this many bytes.
    pub snapshot_log_bytes: u64,
    /// `"phi"` (the default: phi-accrual suspicion of the leader, never before the election
    /// timeout, always by twice it) or `"timeout"` (the randomized election timeout, in
    /// [t, 2t)). Phi campaigns within a few ticks of the timeout when the leader's messages
    /// stop dead, where the randomized timer waits up to twice it; it pays with an earlier
    /// campaign when a live leader's messages are late by more than the timeout (a paused
    /// leader, or a machine so busy that heartbeats wait for a CPU), and learns to wait
    /// longer when they arrive irregularly.
    pub leader_suspicion: LeaderSuspicionName,
    /// With `leader_suspicion = "phi"`: a follower campaigns once phi for its leader reaches
    /// this.
    pub phi_threshold: f64,
}

impl Default for RaftSection {
    fn default() -> RaftSection {
        RaftSection {
            tick_ms: 10,
            election_timeout_ms: 300,
            heartbeat_interval_ms: 50,
            lease_drift_bound_ppm: 1_000,
            snapshot_log_bytes: 64 << 20,
            leader_suspicion: LeaderSuspicionName::Phi,
            phi_threshold: 8.0,
        }
    }
}

/// Client-facing limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Open RESP connections; more are refused with an error.
    pub max_connections: usize,
    /// Close a RESP connection idle this long (0: never).
    pub idle_timeout_secs: u64,
    /// The largest bulk string a client may send.
    pub bulk_max_bytes: usize,
    /// Arguments in one command.
    pub args_max: usize,
    /// How long a request may wait for the cluster, retries included.
    pub request_timeout_ms: u64,
    /// Commands of one connection in flight at once (pipelining).
    pub pipeline_max: usize,
}

impl Default for LimitsSection {
    fn default() -> LimitsSection {
        LimitsSection {
            max_connections: 10_000,
            idle_timeout_secs: 0,
            bulk_max_bytes: 8 << 20,
            args_max: 1 << 16,
            request_timeout_ms: 5_000,
            pipeline_max: 4_096,
        }
    }
}

/// How important a kind of client request is when the node is overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorityName {
    /// Refused first.
    Low,
    High,
    /// Refused last: status and admin commands.
    Critical,
}

impl PriorityName {
    pub fn priority(self) -> synod_resilience::Priority {
        match self {
            PriorityName::Low => synod_resilience::Priority::Low,
            PriorityName::High => synod_resilience::Priority::High,
            PriorityName::Critical => synod_resilience::Priority::Critical,
        }
    }
}

/// A group of client connections with a quota: connections whose client name (CLIENT
/// SETNAME or HELLO SETNAME) starts with `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// The most of the admission slots (running and waiting) the group may hold, in percent.
    pub max_share_percent: u32,
}

/// The most connection groups a config may name.
pub const GROUPS_MAX: usize = 64;

/// Overload protection of client requests: admission with an adaptive limit, load
/// shedding by priority, quotas per connection group, and fast failure while degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceSection {
    /// Refuse client requests at once with -BUSY when the admission slots are full (false:
    /// admit everything; requests then wait in the gateway until answered or timed out).
    pub shedding: bool,
    /// Client requests that may wait for a running slot; beyond it they are refused.
    pub queue_capacity: u32,
    /// Slots only high and critical requests may take.
    pub reserved_for_high: u32,
    /// Slots only critical requests may take.
    pub reserved_for_critical: u32,
    /// The adaptive limit on client requests running at once (admitted, not yet answered).
    pub limit_initial: u32,
    pub limit_min: u32,
    pub limit_max: u32,
    /// How far the recent latency may exceed the long-term one before the limit shrinks,
    /// in percent of the long-term latency.
    pub rtt_tolerance_percent: u32,
    /// The limit moves once per window of at least this many answers ...
    pub window_samples_min: u32,
    /// ... lasting at least this long.
    pub window_ms: u64,
    pub priority_write: PriorityName,
    pub priority_linearizable: PriorityName,
    pub priority_lease: PriorityName,
    pub priority_follower: PriorityName,
    pub priority_stale: PriorityName,
    /// INFO, SYNOD.STATUS, DBSIZE, ROLE.
    pub priority_status: PriorityName,
    /// The share of the slots connections in no configured group may hold together, in
    /// percent.
    pub default_max_share_percent: u32,
    pub groups: Vec<GroupConfig>,
    /// Requests this node's gateway keeps in flight to the replicas (its own and the
    /// leader's); more wait in the gateway. It keeps client requests from filling the
    /// replica's mailbox, which Raft messages share, nor its storage's queue of pending
    /// persists. 0: half the smaller of the two, shared by the members.
    pub replica_requests_max: usize,
    /// A node that has not heard from a leader (or, leading, from a majority) for this long
    /// is degraded: requests that need a quorum fail at once. 0: twice the election timeout.
    pub degraded_after_ms: u64,
    /// A circuit breaker per peer in the transport: a peer that sends nothing for two
    /// answer timeouts in a row (or whose connections keep failing) has its breaker opened,
    /// and frames to it are refused at once instead of queued, until a trial frame after
    /// `peer_breaker_open_ms` is answered.
    pub peer_breaker: bool,
    /// How long a peer may take to send anything after a frame went to it (every node
    /// hears from every other at least once per failure-detector heartbeat). 0: eight
    /// election timeouts, at least 2 s, so that only a peer Raft has long given up on,
    /// never one slowed by a busy machine, opens its breaker.
    pub peer_answer_timeout_ms: u64,
    /// How long an open peer breaker refuses frames before it lets a trial through.
    pub peer_breaker_open_ms: u64,
}

impl Default for ResilienceSection {
    fn default() -> ResilienceSection {
        ResilienceSection {
            shedding: true,
            queue_capacity: 16,
            reserved_for_high: 8,
            reserved_for_critical: 4,
            limit_initial: 64,
            limit_min: 32,
            limit_max: 1_024,
            rtt_tolerance_percent: 200,
            window_samples_min: 100,
            window_ms: 100,
            priority_write: PriorityName::High,
            priority_linearizable: PriorityName::High,
            priority_lease: PriorityName::High,
            priority_follower: PriorityName::Low,
            priority_stale: PriorityName::Low,
            priority_status: PriorityName::Critical,
            default_max_share_percent: 100,
            groups: Vec::new(),
            replica_requests_max: 0,
            degraded_after_ms: 0,
            peer_breaker: true,
            peer_answer_timeout_ms: 0,
            peer_breaker_open_ms: 2_000,
        }
    }
}

impl ResilienceSection {
    /// The adaptive limit this section describes.
    pub fn limit_config(&self) -> synod_resilience::LimitConfig {
        synod_resilience::LimitConfig {
            limit_initial: self.limit_initial,
            limit_min: self.limit_min,
            limit_max: self.limit_max,
            rtt_tolerance_percent: self.rtt_tolerance_percent,
            window_samples_min: self.window_samples_min,
            window_duration_min: synod_core::Duration::from_millis(self.window_ms),
            // Grow by a sixteenth of the smallest limit per window: from the initial limit
            // to the largest in a few seconds of steady load.
            queue_size: (self.limit_min / 4).max(1),
            ..synod_resilience::LimitConfig::default()
        }
    }

    /// The bulkhead this section describes, at its largest running limit.
    pub fn bulkhead_config(&self) -> synod_resilience::BulkheadConfig {
        synod_resilience::BulkheadConfig {
            running_max: self.limit_max,
            queue_capacity: self.queue_capacity,
            reserved_for_high: self.reserved_for_high,
            reserved_for_critical: self.reserved_for_critical,
        }
    }
}

/// Fault injection, for testing synod itself. Everything is off by default, and a node
/// refuses fault requests unless its config turns them on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// Allow `POST /faults/clock` to drift this node's clocks and offset its wall clock.
    pub clock: bool,
    /// Allow `POST /faults/disk` to slow this node's disk syncs.
    pub disk: bool,
}

/// One node's settings.
// Not `Eq`: `RaftSection::phi_threshold` is a float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's id; it must be one of `members` (or join later as a learner).
    pub node_id: u64,
    /// Peer messages carry it; a node refuses messages from another cluster.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: u64,
    pub data_dir: PathBuf,
    /// Where this node listens; default: its entry in `members`.
    #[serde(default)]
    pub listen_peer: Option<SocketAddr>,
    #[serde(default)]
    pub listen_resp: Option<SocketAddr>,
    #[serde(default)]
    pub listen_http: Option<SocketAddr>,
    /// The cluster's members at bootstrap (the initial voters) and where they listen.
    pub members: Vec<MemberConfig>,
    /// Clients must AUTH with this password (none: no authentication).
    #[serde(default)]
    pub password: Option<String>,
    /// Print lifecycle lines, network errors and every change of this node's role, term,
    /// leader or degradation (stamped with the Unix time in ms) to standard error.
    #[serde(default = "default_true")]
    pub log: bool,
    /// Threads of the tokio runtime beside the node loop's; 0 runs everything on one thread
    /// (fewest cross-thread wake-ups, best when several nodes share a few cores).
    #[serde(default = "default_worker_threads")]
    pub worker_threads: usize,
    #[serde(default)]
    pub raft: RaftSection,
    #[serde(default)]
    pub faults: FaultsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub resilience: ResilienceSection,
}

fn default_cluster_id() -> u64 {
    1
}

fn default_true() -> bool {
    true
}

fn default_worker_threads() -> usize {
    2
}

/// The top-level fields an environment variable may set.
const FIELDS: [&str; 14] = [
    "node_id",
    "cluster_id",
    "data_dir",
    "listen_peer",
    "listen_resp",
    "listen_http",
    "members",
    "password",
    "log",
    "worker_threads",
    "raft",
    "limits",
    "faults",
    "resilience",
];

impl ServerConfig {
    /// Parses `text` (TOML), applies the `SYNOD_*` overrides in `env`, and validates.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ServerConfig, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| ConfigError::new("(file)", error.to_string()))?;
        for (name, value) in env {
            apply_override(&mut table, &name, &value)?;
        }
        let config: ServerConfig = table.try_into().map_err(|error: toml::de::Error| {
            ConfigError::new("(file)", error.message().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// This node's entry in `members`.
    pub fn own_member(&self) -> Option<&MemberConfig> {
        self.members.iter().find(|member| member.id == self.node_id)
    }

    pub fn peer_address(&self) -> SocketAddr {
        self.listen_peer
            .or_else(|| self.own_member().map(|member| member.peer))
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into())
    }

    pub fn resp_address(&self) -> SocketAddr {
        self.listen_resp
            .or_else(|| self.own_member().map(|member| member.resp))
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into())
    }

    pub fn http_address(&self) -> SocketAddr {
        self.listen_http
            .or_else(|| self.own_member().map(|member| member.http))
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into())
    }
}

/// Sets the field an environment variable names, if it names one. The value is read as a
/// TOML value (a number, a boolean, an array or table) and otherwise taken as a string.
fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let Some(path) = name.strip_prefix("SYNOD_") else {
        return Ok(());
    };
    let path: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if !FIELDS.contains(&path[0].as_str()) {
        return Ok(());
    }
    let parsed = format!("value = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let field = path.join(".");
    let mut current = table;
    for section in &path[..path.len() - 1] {
        let entry = current
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(table) => table,
            _ => {
                let problem = format!("is set by {name} but {section} is not a section");
                return Err(ConfigError::new(field, problem));
            }
        };
    }
    let last = path[path.len() - 1].clone();
    current.insert(last, parsed);
    Ok(())
}

impl Validate for ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("node_id", self.node_id, 1, u64::MAX)?;
        check_range(
            "members",
            self.members.len(),
            1,
            synod_core::limits::NODES_COUNT_MAX,
        )?;
        let mut ids = BTreeSet::new();
        for member in &self.members {
            check_range("members.id", member.id, 1, u64::MAX)?;
            if !ids.insert(member.id) {
                let problem = format!("lists node {} twice", member.id);
                return Err(ConfigError::new("members", problem));
            }
        }
        if self.own_member().is_none() && self.listen_peer.is_none() {
            let problem = format!(
                "has no entry for node_id {}: add it, or set listen_peer, listen_resp and \
                 listen_http for a node that will join as a learner",
                self.node_id
            );
            return Err(ConfigError::new("members", problem));
        }
        if !self.members.iter().any(|member| member.voter) {
            return Err(ConfigError::new(
                "members",
                "has no voter: at least one member must have voter = true",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "is empty: name a directory"));
        }
        if let Some(password) = &self.password
            && password.is_empty()
        {
            return Err(ConfigError::new(
                "password",
                "is empty: remove it or set one",
            ));
        }
        check_range("worker_threads", self.worker_threads, 0, 256)?;
        self.raft.validate().map_err(|error| error.within("raft"))?;
        self.limits
            .validate()
            .map_err(|error| error.within("limits"))?;
        self.resilience
            .validate()
            .map_err(|error| error.within("resilience"))?;
        // Every node's gateway may have this many client requests in flight to the leader's
        // replica, whose mailbox Raft messages share: together they must leave it half free.
        check_range(
            "resilience.replica_requests_max",
            self.resilience.replica_requests_max,
            0,
            self.replica_requests_per_node_max(),
        )?;
        let election_timeout_ms = self.raft.election_timeout_ms;
        if self.resilience.degraded_after_ms != 0 {
            check_range(
                "resilience.degraded_after_ms",
                self.resilience.degraded_after_ms,
                election_timeout_ms,
                3_600_000,
            )?;
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The most client requests one node's gateway may keep in flight to the replicas:
    /// with every member at it, half the replica's mailbox stays free for Raft.
    fn replica_requests_per_node_max(&self) -> usize {
        // Each client write in flight at the leader is at most one Persist waiting in its
        // storage, which fails past PERSISTS_PENDING_MAX (Raft bounds uncommitted bytes,
        // not Persists): keep client requests to half of that too.
        let mailbox_share = synod_node::supervisor::REPLICA_MAILBOX_CAPACITY / 2;
        let persists_share = synod_node::raft_storage::PERSISTS_PENDING_MAX / 2;
        mailbox_share.min(persists_share) / self.members.len().max(1)
    }

    /// `resilience.replica_requests_max`, with 0 worked out.
    pub fn replica_requests_max(&self) -> usize {
        match self.resilience.replica_requests_max {
            0 => self.replica_requests_per_node_max(),
            set => set,
        }
    }

    /// How long without a leader's contact makes this node degraded.
    /// The transport's per-peer breaker (`None`: switched off) and the answer timeout that
    /// feeds it.
    pub fn peer_breaker_config(
        &self,
    ) -> (
        Option<synod_resilience::BreakerConfig>,
        synod_core::Duration,
    ) {
        let answer_ms = match self.resilience.peer_answer_timeout_ms {
            0 => (8 * self.raft.election_timeout_ms).max(2_000),
            configured => configured,
        };
        let answer_timeout = synod_core::Duration::from_millis(answer_ms);
        let breaker = self
            .resilience
            .peer_breaker
            .then(|| synod_resilience::BreakerConfig {
                // An answer later than the timeout already failed the call.
                slow_call_duration: answer_timeout,
                open_duration: synod_core::Duration::from_millis(
                    self.resilience.peer_breaker_open_ms,
                ),
                // A trial has three answer timeouts to be judged.
                half_open_duration_max: answer_timeout.saturating_mul(3),
                ..synod_runtime::peer_breaker_default()
            });
        (breaker, answer_timeout)
    }

    pub fn degraded_after_ms(&self) -> u64 {
        match self.resilience.degraded_after_ms {
            0 => 2 * self.raft.election_timeout_ms,
            set => set,
        }
    }
}

impl Validate for ResilienceSection {
    fn validate(&self) -> Result<(), ConfigError> {
        use synod_resilience::bulkhead::{QUEUE_CAPACITY_MAX, RUNNING_MAX};
        check_range("limit_min", self.limit_min, 1, RUNNING_MAX)?;
        check_range("limit_max", self.limit_max, self.limit_min, RUNNING_MAX)?;
        check_range(
            "limit_initial",
            self.limit_initial,
            self.limit_min,
            self.limit_max,
        )?;
        check_range("queue_capacity", self.queue_capacity, 0, QUEUE_CAPACITY_MAX)?;
        check_range(
            "rtt_tolerance_percent",
            self.rtt_tolerance_percent,
            100,
            1_000,
        )?;
        check_range("window_samples_min", self.window_samples_min, 1, 100_000)?;
        check_range("window_ms", self.window_ms, 1, 60_000)?;
        // At the smallest limit a low-priority request must still find a slot.
        let smallest = self.limit_min + self.queue_capacity;
        check_range(
            "reserved_for_critical",
            self.reserved_for_critical,
            0,
            smallest - 1,
        )?;
        let room = smallest - 1 - self.reserved_for_critical;
        if self.reserved_for_high > room {
            let problem = format!(
                "({}) with reserved_for_critical ({}) must leave low priority a slot at the \
                 smallest limit: at most {room} (limit_min + queue_capacity - 1 - \
                 reserved_for_critical)",
                self.reserved_for_high, self.reserved_for_critical
            );
            return Err(ConfigError::new("reserved_for_high", problem));
        }
        check_range(
            "default_max_share_percent",
            self.default_max_share_percent,
            1,
            100,
        )?;
        check_range("groups", self.groups.len(), 0, GROUPS_MAX)?;
        if self.peer_answer_timeout_ms != 0 {
            check_range(
                "peer_answer_timeout_ms",
                self.peer_answer_timeout_ms,
                10,
                60_000,
            )?;
        }
        check_range(
            "peer_breaker_open_ms",
            self.peer_breaker_open_ms,
            1,
            3_600_000,
        )?;
        let mut names = BTreeSet::new();
        for group in &self.groups {
            if group.name.is_empty() || group.name.len() > 64 {
                let problem = format!("({:?}) must be 1 to 64 bytes long", group.name);
                return Err(ConfigError::new("groups.name", problem));
            }
            if group.name == crate::admission::DEFAULT_GROUP || !names.insert(&group.name) {
                let problem = format!("({:?}) is taken: name each group once", group.name);
                return Err(ConfigError::new("groups.name", problem));
            }
            check_range("groups.max_share_percent", group.max_share_percent, 1, 100)?;
        }
        self.limit_config()
            .validate()
            .map_err(|error| error.within("limit"))?;
        self.bulkhead_config()
            .validate()
            .map_err(|error| error.within("bulkhead"))
    }
}

impl Validate for RaftSection {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("tick_ms", self.tick_ms, 1, 1_000)?;
        check_range(
            "election_timeout_ms",
            self.election_timeout_ms,
            3 * self.tick_ms,
            60_000,
        )?;
        check_range(
            "heartbeat_interval_ms",
            self.heartbeat_interval_ms,
            self.tick_ms,
            self.election_timeout_ms / 2,
        )?;
        check_range(
            "lease_drift_bound_ppm",
            self.lease_drift_bound_ppm,
            0,
            100_000,
        )?;
        check_range(
            "snapshot_log_bytes",
            self.snapshot_log_bytes,
            1 << 16,
            1 << 40,
        )?;
        let (threshold_min, threshold_max) = (
            synod_raft::config::PHI_THRESHOLD_MIN,
            synod_raft::config::PHI_THRESHOLD_MAX,
        );
        if self.phi_threshold.is_nan() {
            return Err(ConfigError::new(
                "phi_threshold",
                format!("(NaN) must be a number between {threshold_min} and {threshold_max}"),
            ));
        }
        check_range(
            "phi_threshold",
            self.phi_threshold,
            threshold_min,
            threshold_max,
        )
    }
}

impl Validate for LimitsSection {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("max_connections", self.max_connections, 1, 1_000_000)?;
        check_range("idle_timeout_secs", self.idle_timeout_secs, 0, 31_536_000)?;
        check_range("bulk_max_bytes", self.bulk_max_bytes, 1, 512 << 20)?;
        check_range("args_max", self.args_max, 1, 1 << 24)?;
        check_range("request_timeout_ms", self.request_timeout_ms, 10, 3_600_000)?;
        check_range("pipeline_max", self.pipeline_max, 1, 1 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
node_id = 2
data_dir = "data/2"
[[members]]
id = 1
peer = "127.0.0.1:7001"
resp = "127.0.0.1:6001"
http = "127.0.0.1:8001"
[[members]]
id = 2
peer = "127.0.0.1:7002"
resp = "127.0.0.1:6002"
http = "127.0.0.1:8002"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn a_minimal_file_takes_defaults_and_its_own_member_addresses() {
        // Checks defaults fill the sections and listen addresses come from the member entry.
        let config = ServerConfig::parse(MINIMAL, env(&[])).unwrap();
        assert_eq!(config.raft, RaftSection::default());
        assert_eq!(config.resp_address().to_string(), "127.0.0.1:6002");
        assert_eq!(config.peer_address().to_string(), "127.0.0.1:7002");
        assert_eq!(config.cluster_id, 1);
    }

    #[test]
    fn environment_variables_override_fields_and_sections() {
        // Checks SYNOD_* variables set top-level and nested fields, and others are ignored.
        let vars = env(&[
            ("SYNOD_NODE_ID", "1"),
            ("SYNOD_RAFT__ELECTION_TIMEOUT_MS", "500"),
            ("SYNOD_LISTEN_RESP", "127.0.0.1:7777"),
            ("SYNOD_PASSWORD", "secret"),
            ("SYNOD_RAFT_SEEDS", "1..5"),
            ("HOME", "/root"),
        ]);
        let config = ServerConfig::parse(MINIMAL, vars).unwrap();
        assert_eq!(config.node_id, 1);
        assert_eq!(config.raft.election_timeout_ms, 500);
        assert_eq!(config.resp_address().to_string(), "127.0.0.1:7777");
        assert_eq!(config.password.as_deref(), Some("secret"));
    }

    #[test]
    fn resilience_settings_are_validated_naming_the_field() {
        // Checks the [resilience] section: defaults pass; a zero limit, reserves that leave
        // low priority no slot at the smallest limit, a share above 100, a group named
        // twice and a replica cap over the mailbox's share are refused by name.
        let config = ServerConfig::parse(MINIMAL, env(&[])).unwrap();
        assert!(config.resilience.shedding);
        // Half the storage's pending persists (4,096), shared by the two members.
        assert_eq!(config.replica_requests_max(), 1_024);
        assert_eq!(config.degraded_after_ms(), 600);
        let group = "[[resilience.groups]]\nname = \"batch\"\nmax_share_percent = 30\n";
        let twice = format!("{MINIMAL}{group}{group}");
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 8] = [
            (
                MINIMAL,
                &[("SYNOD_RESILIENCE__LIMIT_MIN", "0")],
                "resilience.limit_min (0)",
            ),
            (
                MINIMAL,
                &[
                    ("SYNOD_RESILIENCE__LIMIT_MIN", "4"),
                    ("SYNOD_RESILIENCE__LIMIT_INITIAL", "4"),
                    ("SYNOD_RESILIENCE__QUEUE_CAPACITY", "0"),
                    ("SYNOD_RESILIENCE__RESERVED_FOR_CRITICAL", "1"),
                ],
                "resilience.reserved_for_high (8) with reserved_for_critical (1) must leave",
            ),
            (
                MINIMAL,
                &[("SYNOD_RESILIENCE__DEFAULT_MAX_SHARE_PERCENT", "150")],
                "resilience.default_max_share_percent (150)",
            ),
            (&twice, &[], "resilience.groups.name (\"batch\") is taken"),
            (
                MINIMAL,
                &[("SYNOD_RESILIENCE__REPLICA_REQUESTS_MAX", "20000")],
                "resilience.replica_requests_max (20000) must be between 0 and 1024",
            ),
            (
                MINIMAL,
                &[("SYNOD_RESILIENCE__DEGRADED_AFTER_MS", "100")],
                "resilience.degraded_after_ms (100) must be between 300",
            ),
            (
                MINIMAL,
                &[("SYNOD_RESILIENCE__PEER_ANSWER_TIMEOUT_MS", "5")],
                "resilience.peer_answer_timeout_ms (5) must be between 10 and 60000",
            ),
            (
                MINIMAL,
                &[("SYNOD_RESILIENCE__PEER_BREAKER_OPEN_MS", "0")],
                "resilience.peer_breaker_open_ms (0) must be between 1",
            ),
        ];
        for (text, vars, expected) in cases {
            let error = ServerConfig::parse(text, env(vars))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{vars:?}: {error}");
        }
    }

    #[test]
    fn a_member_may_be_known_without_voting_from_the_start() {
        // Checks voter = false parses (default true) and a cluster with no voter is refused.
        let text = format!("{MINIMAL}voter = false\n");
        let config = ServerConfig::parse(&text, env(&[])).unwrap();
        assert!(config.members[0].voter);
        assert!(!config.members[1].voter);
        let none = MINIMAL.replace(
            "http = \"127.0.0.1:8001\"",
            "http = \"127.0.0.1:8001\"\nvoter = false",
        );
        let none = format!("{none}voter = false\n");
        let error = ServerConfig::parse(&none, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no voter"), "{error}");
    }

    #[test]
    fn invalid_settings_are_refused_naming_the_field() {
        // Checks each kind of bad setting fails with the dotted field name in the message.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case<'_>; 6] = [
            (MINIMAL, &[("SYNOD_RAFT__TICK_MS", "0")], "raft.tick_ms"),
            (MINIMAL, &[("SYNOD_NODE_ID", "9")], "members"),
            (
                MINIMAL,
                &[("SYNOD_LIMITS__MAX_CONNECTIONS", "0")],
                "limits.max_connections",
            ),
            (MINIMAL, &[("SYNOD_RAFT__BOGUS", "1")], "bogus"),
            (
                MINIMAL,
                &[("SYNOD_LISTEN_RESP", "not an address")],
                "address",
            ),
            (
                "node_id = 1\ndata_dir = \"d\"\nmembers = []",
                &[],
                "members",
            ),
        ];
        for (text, vars, expected) in cases {
            let error = ServerConfig::parse(text, env(vars))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{vars:?}: {error}");
        }
    }
}
