//! The settings of one node's runtime, with their limits and validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use synod_actor::{Port, SystemConfig};
use synod_core::config::{check_less, check_range};
use synod_core::limits::{MAILBOX_CAPACITY_MAX, NODES_COUNT_MAX, PEER_QUEUE_CAPACITY_DEFAULT};
use synod_core::{ConfigError, Duration, NodeId, Validate};
use synod_resilience::{BreakerConfig, SlidingWindow};

/// Default bound on network arrivals waiting for the node loop.
pub const INBOUND_CAPACITY_DEFAULT: usize = 4_096;
/// Default bound on closures waiting to be run inside the node loop.
pub const INJECTION_CAPACITY_DEFAULT: usize = 1_024;
/// Default number of messages the system handles before the loop looks at its inputs again.
pub const RUN_BUDGET_DEFAULT: usize = 1_024;
/// Default number of observations kept for the report (older ones are counted and dropped).
pub const OBSERVATIONS_CAPACITY_DEFAULT: usize = 4_096;
/// Default number of network errors kept for the report.
pub const NETWORK_ERRORS_CAPACITY_DEFAULT: usize = 256;
/// Default number of open file handles the disk thread keeps.
pub const OPEN_FILES_MAX_DEFAULT: usize = 64;
/// Default bound on incoming connections: two per possible peer leaves room for a restarted
/// peer's new connection while its old one is still being torn down.
pub const CONNECTIONS_MAX_DEFAULT: usize = 2 * NODES_COUNT_MAX;
/// The most open file handles the disk thread may be configured to keep.
pub const OPEN_FILES_MAX: usize = 4_096;
/// The most incoming connections a node may be configured to accept.
pub const CONNECTIONS_MAX: usize = 4_096;

/// The peers' circuit breaker by default: it opens when the last two or more of up to four
/// calls all failed (a peer silent for two answer timeouts, or whose connections keep
/// failing), stays open 2 s, then lets one frame through as its trial, which has 3 s to be
/// answered.
pub fn peer_breaker_default() -> BreakerConfig {
    BreakerConfig {
        window: SlidingWindow::Count { calls_count: 4 },
        failure_rate_percent: 100,
        slow_call_rate_percent: 100,
        slow_call_duration: Duration::from_millis(500),
        calls_min: 2,
        open_duration: Duration::from_secs(2),
        half_open_trials_max: 1,
        half_open_duration_max: Duration::from_secs(3),
    }
}

/// The most ports that may take the peers' priority queues.
pub const PRIORITY_PORTS_MAX: usize = 16;

/// Everything one node's runtime needs. Build it with [`NodeRuntimeConfig::new`] and change
/// the fields that differ from the defaults.
#[derive(Clone, Debug)]
pub struct NodeRuntimeConfig {
    /// This node's actor system; `system.node` is this node's id.
    pub system: SystemConfig,
    /// Where to accept connections from peers (port 0 picks a free port). `None`: this node
    /// accepts no connections (a benchmark, a node that only sends).
    pub listen_address: Option<SocketAddr>,
    /// The other nodes and where they listen. An entry for this node itself is ignored, so
    /// every node of a cluster may be given the same map.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The node's data directory (created if absent, locked while the node runs). `None`:
    /// every disk operation fails with an IO error that says so.
    pub data_dir: Option<PathBuf>,
    /// Seed of the node's PRNG; `None` draws one from the operating system.
    pub seed: Option<u64>,
    pub inbound_capacity: usize,
    pub peer_queue_capacity: usize,
    /// Ports whose frames take each peer's priority queue (at most
    /// [`PRIORITY_PORTS_MAX`]): written before any other frame waiting for that peer, each
    /// queue holding `peer_queue_capacity`.
    pub priority_ports: Vec<Port>,
    /// Bound on messages an actor sends to its own node (delivered without TCP).
    pub local_queue_capacity: usize,
    pub injection_capacity: usize,
    pub run_budget: usize,
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub connect_timeout: Duration,
    /// How long bytes written to a peer may stay unacknowledged before the connection is
    /// given up and dialled again (TCP_USER_TIMEOUT on outgoing connections; keepalive
    /// probes bounded by it on incoming ones). Without it a connection that a partition cut
    /// retransmits with exponential backoff and, after the partition heals, may stay silent
    /// for seconds; with it the node redials and is heard again within about this long.
    pub stall_timeout: Duration,
    /// The circuit breaker of each peer, fed by whether the peer answers (see
    /// `peer_breaker.rs`): while it is open, sends to the peer are refused at once with
    /// `PeerUnavailable` instead of queued. `None`: no breakers.
    pub peer_breaker: Option<BreakerConfig>,
    /// How long a peer may take to send anything after a frame went to it before the call
    /// counts as failed.
    pub peer_answer_timeout: Duration,
    /// How long an incoming connection may take to send its hello.
    pub hello_timeout: Duration,
    /// How long shutdown waits for queued frames and disk operations to drain.
    pub shutdown_flush_timeout: Duration,
    pub observations_capacity: usize,
    pub network_errors_capacity: usize,
    pub open_files_max: usize,
    pub connections_max: usize,
    /// Print network errors and lifecycle lines to standard error.
    pub log_to_stderr: bool,
    /// Also print every observation (debug level).
    pub log_observations: bool,
    /// Allow clock faults to be injected at run time ([`crate::NodeHandle::set_clock_faults`]):
    /// for fault testing only, never in production.
    pub clock_faults: bool,
    /// Allow a slow disk to be injected at run time ([`crate::NodeHandle::set_disk_faults`]):
    /// for fault testing only, never in production.
    pub disk_faults: bool,
}

impl NodeRuntimeConfig {
    /// A node with default limits, no peers, no listener and no data directory.
    pub fn new(node: NodeId) -> NodeRuntimeConfig {
        NodeRuntimeConfig {
            system: SystemConfig::new(node),
            listen_address: None,
            peers: BTreeMap::new(),
            data_dir: None,
            seed: None,
            inbound_capacity: INBOUND_CAPACITY_DEFAULT,
            peer_queue_capacity: PEER_QUEUE_CAPACITY_DEFAULT,
            priority_ports: Vec::new(),
            local_queue_capacity: PEER_QUEUE_CAPACITY_DEFAULT,
            injection_capacity: INJECTION_CAPACITY_DEFAULT,
            run_budget: RUN_BUDGET_DEFAULT,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(1),
            peer_breaker: Some(peer_breaker_default()),
            peer_answer_timeout: Duration::from_secs(1),
            hello_timeout: Duration::from_secs(5),
            shutdown_flush_timeout: Duration::from_secs(2),
            observations_capacity: OBSERVATIONS_CAPACITY_DEFAULT,
            network_errors_capacity: NETWORK_ERRORS_CAPACITY_DEFAULT,
            open_files_max: OPEN_FILES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            log_to_stderr: true,
            log_observations: false,
            clock_faults: false,
            disk_faults: false,
        }
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.system.node
    }

    fn validate_capacities(&self) -> Result<(), ConfigError> {
        let queue_max = MAILBOX_CAPACITY_MAX;
        check_range("inbound_capacity", self.inbound_capacity, 1, queue_max)?;
        check_range(
            "peer_queue_capacity",
            self.peer_queue_capacity,
            1,
            queue_max,
        )?;
        check_range(
            "local_queue_capacity",
            self.local_queue_capacity,
            1,
            queue_max,
        )?;
        check_range("injection_capacity", self.injection_capacity, 1, queue_max)?;
        check_range(
            "priority_ports",
            self.priority_ports.len(),
            0,
            PRIORITY_PORTS_MAX,
        )?;
        check_range("run_budget", self.run_budget, 1, queue_max)?;
        check_range(
            "observations_capacity",
            self.observations_capacity,
            1,
            queue_max,
        )?;
        check_range(
            "network_errors_capacity",
            self.network_errors_capacity,
            1,
            65_536,
        )?;
        check_range("open_files_max", self.open_files_max, 1, OPEN_FILES_MAX)?;
        check_range("connections_max", self.connections_max, 1, CONNECTIONS_MAX)
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        let millis = |span: Duration| span.as_millis();
        let day_ms = 24 * 60 * 60 * 1_000;
        check_range(
            "reconnect_backoff_min_ms",
            millis(self.reconnect_backoff_min),
            1,
            day_ms,
        )?;
        check_range(
            "reconnect_backoff_max_ms",
            millis(self.reconnect_backoff_max),
            1,
            day_ms,
        )?;
        if self.reconnect_backoff_max < self.reconnect_backoff_min {
            check_less(
                "reconnect_backoff_min_ms",
                millis(self.reconnect_backoff_min),
                "reconnect_backoff_max_ms",
                millis(self.reconnect_backoff_max),
            )?;
        }
        check_range(
            "connect_timeout_ms",
            millis(self.connect_timeout),
            1,
            day_ms,
        )?;
        check_range("stall_timeout_ms", millis(self.stall_timeout), 10, day_ms)?;
        check_range(
            "peer_answer_timeout_ms",
            millis(self.peer_answer_timeout),
            1,
            day_ms,
        )?;
        if let Some(breaker) = &self.peer_breaker {
            breaker
                .validate()
                .map_err(|error| error.within("peer_breaker"))?;
            if breaker.half_open_duration_max <= self.peer_answer_timeout {
                check_less(
                    "peer_answer_timeout_ms",
                    millis(self.peer_answer_timeout),
                    "peer_breaker.half_open_duration_max_ms",
                    millis(breaker.half_open_duration_max),
                )?;
            }
        }
        check_range("hello_timeout_ms", millis(self.hello_timeout), 1, day_ms)?;
        check_range(
            "shutdown_flush_timeout_ms",
            millis(self.shutdown_flush_timeout),
            1,
            day_ms,
        )
    }
}

impl Validate for NodeRuntimeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.system
            .validate()
            .map_err(|error| error.within("system"))?;
        let peers_count = self.peers.keys().filter(|id| **id != self.node()).count();
        check_range("peers", peers_count, 0, NODES_COUNT_MAX - 1)?;
        self.validate_capacities()?;
        self.validate_timeouts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_the_field() {
        // Checks that defaults validate and that bad settings are refused with the field
        // named the way a user would write it.
        let config = NodeRuntimeConfig::new(NodeId(1));
        assert_eq!(config.validate(), Ok(()));
        let mut zero_queue = config.clone();
        zero_queue.peer_queue_capacity = 0;
        let error = zero_queue.validate().unwrap_err();
        assert_eq!(error.field, "peer_queue_capacity");
        let mut backwards = config.clone();
        backwards.reconnect_backoff_min = Duration::from_secs(3);
        let error = backwards.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "config: reconnect_backoff_max_ms (500) must exceed reconnect_backoff_min_ms (3000)"
        );
        let mut no_stall_bound = config;
        no_stall_bound.stall_timeout = Duration::from_millis(5);
        let error = no_stall_bound.validate().unwrap_err();
        assert_eq!(error.field, "stall_timeout_ms");
    }
}
