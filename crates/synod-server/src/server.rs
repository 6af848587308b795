//! One node of a deployment, assembled: the node's actors (failure detector, membership
//! view, replica) on the tokio runtime with real TCP and files, the gateway, the RESP
//! listener and the HTTP admin API. `synod server` and `synod up` both run [`run_server`].
//!
//! Shutdown (SIGTERM, Ctrl-C, or the future passed in): the RESP listener stops accepting,
//! connections answer what they have started and close (bounded by the request timeout),
//! then the node's actors stop, queued frames and disk operations drain, and the process
//! exits 0. Nothing acknowledged is at risk at any point: a write is acknowledged only after
//! its entry is durable on a majority.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use synod_actor::System;
use synod_core::{NodeId, Validate};
use synod_detector::DetectorConfig;
use synod_kv::KvConfig;
use synod_node::client::{AdminRequest, Outcome, RequestBody};
use synod_node::detector_actor::FailureDetectorConfig;
use synod_node::replica::{ReplicaActor, ReplicaConfig};
use synod_node::{RaftStorageConfig, boot_replica_node};
use synod_raft::{LeaseConfig, MembershipChange, RaftConfig, Role};
use synod_runtime::{ClockFaultSettings, NodeHandle, NodeRuntime, NodeRuntimeConfig, RuntimeError};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{
    AdminBackend, CLOCK_FAULTS_DISABLED, ClockFaults, DISK_FAULTS_DISABLED, DiskFaults,
    MembersRequest,
};
use crate::admission::{Admission, AdmissionConfig};
use crate::command::CommandConfig;
use crate::config::ServerConfig;
use crate::connection::{self, Shared, StatusSource};
use crate::gateway::{GATEWAY_PORT, Gateway, GatewayConfig, Route};
use crate::health::{Health, HealthState};
use crate::metrics::{ActorRow, Metrics, NodeFigures, PeerFigures};
use crate::resp::{Reply, RespLimits, encode};
use crate::status::{FollowerStatus, MemberEndpoints, NodeStatus};

/// Keys one command (DEL, MGET, MSET, a MULTI block) may name; the state machine takes as
/// many operations in one transaction.
const KEYS_PER_COMMAND_MAX: usize = 4_096;
/// Arrivals waiting at the gateway's endpoint.
const GATEWAY_ENDPOINT_CAPACITY: usize = 65_536;
/// How often the gateway's leader hint is refreshed from the local replica.
const LEADER_REFRESH_INTERVAL: Duration = Duration::from_millis(20);
/// Entries summed for one follower's lag in bytes.
const LAG_ENTRIES_SCANNED_MAX: u64 = 10_000;

/// Why a node could not start or stopped on its own.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] synod_core::ConfigError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot listen for {what} on {address}: {message}")]
    Listen {
        what: &'static str,
        address: SocketAddr,
        message: String,
    },
}

/// What does not change while a node runs.
#[derive(Debug, Clone)]
struct NodeInfo {
    node: NodeId,
    cluster_id: u64,
    started: Instant,
    resp_address: SocketAddr,
    http_address: SocketAddr,
    peer_address: SocketAddr,
    members: Vec<MemberEndpoints>,
    /// How long without a leader's contact makes the node degraded.
    degraded_after_ms: u64,
}

/// The leader suspicion of `[raft]`, scaled to the engine's timing.
fn leader_suspicion(
    section: &crate::config::RaftSection,
    raft: &RaftConfig,
) -> synod_raft::LeaderSuspicion {
    use crate::config::LeaderSuspicionName;
    use synod_raft::{LeaderSuspicion, PhiSuspicion};
    match section.leader_suspicion {
        LeaderSuspicionName::Timeout => LeaderSuspicion::RandomizedTimeout,
        LeaderSuspicionName::Phi => LeaderSuspicion::PhiAccrual(PhiSuspicion {
            threshold: section.phi_threshold,
            ..PhiSuspicion::for_timing(
                raft.tick_interval,
                raft.heartbeat_ticks,
                raft.election_ticks,
            )
        }),
    }
}

/// The replica configuration a server config describes.
pub fn replica_config(config: &ServerConfig) -> ReplicaConfig {
    let tick = config.raft.tick_ms;
    let raft = RaftConfig {
        tick_interval: synod_core::Duration::from_millis(tick),
        election_ticks: (config.raft.election_timeout_ms / tick).max(3),
        heartbeat_ticks: (config.raft.heartbeat_interval_ms / tick).max(1),
        snapshot_log_bytes: config.raft.snapshot_log_bytes,
        lease: (config.raft.lease_drift_bound_ppm > 0).then_some(LeaseConfig {
            clock_drift_bound_ppm: config.raft.lease_drift_bound_ppm,
        }),
        ..RaftConfig::default()
    };
    let raft = RaftConfig {
        leader_suspicion: leader_suspicion(&config.raft, &raft),
        ..raft
    };
    let kv = KvConfig {
        txn_ops_max: KEYS_PER_COMMAND_MAX,
        ..KvConfig::default()
    };
    // Members with voter = false are reachable but join later, as learners an operator adds.
    let bootstrap = config
        .members
        .iter()
        .filter(|member| member.voter)
        .map(|member| NodeId(member.id))
        .collect();
    ReplicaConfig::new(
        raft,
        kv,
        RaftStorageConfig::default(),
        bootstrap,
        config.cluster_id,
    )
}

fn runtime_config(config: &ServerConfig) -> NodeRuntimeConfig {
    let mut runtime = NodeRuntimeConfig::new(NodeId(config.node_id));
    runtime.listen_address = Some(config.peer_address());
    runtime.peers = config
        .members
        .iter()
        .map(|member| (NodeId(member.id), member.peer))
        .collect();
    runtime.data_dir = Some(config.data_dir.clone());
    runtime.log_to_stderr = config.log;
    runtime.clock_faults = config.faults.clock;
    runtime.disk_faults = config.faults.disk;
    // Raft and the failure detector go ahead of forwarded client requests on every link.
    runtime.priority_ports = vec![synod_node::replica::RAFT_PORT, synod_node::DETECTOR_PORT];
    (runtime.peer_breaker, runtime.peer_answer_timeout) = config.peer_breaker_config();
    runtime.inbound_capacity = 65_536;
    runtime.peer_queue_capacity = 65_536;
    runtime.local_queue_capacity = 65_536;
    runtime
}

async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|error| ServerError::Listen {
            what,
            address,
            message: error.to_string(),
        })
}

/// Runs one node until `shutdown` completes (then drains and stops cleanly) or the node's
/// root supervisor gives up.
pub async fn run_server(config: ServerConfig, shutdown: impl Future) -> Result<(), ServerError> {
    config.validate()?;
    let replica = replica_config(&config);
    replica.raft.validate()?;
    let node = NodeId(config.node_id);
    // Taken before the runtime's clock starts, so ages computed against the node's clock
    // are never negative.
    let started = Instant::now();
    let mut runtime = NodeRuntime::new(runtime_config(&config))?;
    let endpoint = runtime.open_endpoint(GATEWAY_PORT, GATEWAY_ENDPOINT_CAPACITY)?;
    let resp_listener = bind("RESP", config.resp_address()).await?;
    let http_listener = bind("HTTP", config.http_address()).await?;
    let info = NodeInfo {
        node,
        cluster_id: config.cluster_id,
        started,
        resp_address: resp_listener.local_addr().unwrap_or(config.resp_address()),
        http_address: http_listener.local_addr().unwrap_or(config.http_address()),
        peer_address: runtime.local_address().unwrap_or(config.peer_address()),
        members: config
            .members
            .iter()
            .map(|member| MemberEndpoints {
                node: member.id,
                resp_address: member.resp.to_string(),
                http_address: member.http.to_string(),
            })
            .collect(),
        degraded_after_ms: config.degraded_after_ms(),
    };
    let request_timeout = Duration::from_millis(config.limits.request_timeout_ms);
    let gateway_config = GatewayConfig {
        request_timeout,
        inflight_max: config.replica_requests_max(),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(node, endpoint, gateway_config);
    let metrics = Arc::new(Metrics::new());
    let admission = Admission::new(
        AdmissionConfig::from_section(&config.resilience),
        metrics.clone(),
    );
    let health = Arc::new(Health::default());
    let (drain_sender, draining) = watch::channel(false);
    let source = Arc::new(NodeSource {
        handle: runtime.handle(),
        info: info.clone(),
        gateway: gateway.clone(),
        health: health.clone(),
        connections: Arc::new(AtomicUsize::new(0)),
    });
    let shared = Arc::new(Shared {
        gateway: gateway.clone(),
        metrics: metrics.clone(),
        status: source.clone(),
        command: CommandConfig {
            password: config.password.clone(),
            keys_per_command_max: KEYS_PER_COMMAND_MAX,
            ..CommandConfig::default()
        },
        resp_limits: RespLimits {
            bulk_size_max: config.limits.bulk_max_bytes,
            arguments_max: config.limits.args_max,
            ..RespLimits::default()
        },
        idle_timeout: (config.limits.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(config.limits.idle_timeout_secs)),
        pipeline_max: config.limits.pipeline_max,
        next_id: AtomicU64::new(0),
        open: AtomicUsize::new(0),
        draining,
        stopped_accepting: AtomicBool::new(false),
        admission,
        health: health.clone(),
        admission_wait_max: request_timeout,
    });
    let accept = tokio::spawn(accept_loop(
        resp_listener,
        shared.clone(),
        source.connections.clone(),
        config.limits.max_connections,
    ));
    tokio::spawn(follow_leader(
        FollowLeader {
            handle: runtime.handle(),
            info: info.clone(),
            gateway: gateway.clone(),
            health,
            metrics: metrics.clone(),
            log: config.log.then_some(config.node_id),
        },
        shared.draining.clone(),
    ));
    let router = crate::admin::router(source.clone(), metrics.clone());
    let mut http_stop = shared.draining.clone();
    let http = tokio::spawn(async move {
        let stop = async move {
            let _ = http_stop.wait_for(|draining| *draining).await;
        };
        let _ = axum::serve(http_listener, router)
            .with_graceful_shutdown(stop)
            .await;
    });
    if config.log {
        eprintln!(
            "synod node {node}: RESP on {}, HTTP on {}, peers on {}",
            info.resp_address, info.http_address, info.peer_address
        );
    }
    let detector = FailureDetectorConfig {
        members: replica.bootstrap.clone(),
        detector: DetectorConfig::default(),
    };
    let drain_timeout = Duration::from_millis(config.limits.request_timeout_ms);
    let connections = source.connections.clone();
    let stop = async move {
        shutdown.await;
        // Stop accepting, let connections answer what they started, then stop the node.
        let _ = drain_sender.send(true);
        accept.abort();
        let deadline = Instant::now() + drain_timeout;
        while connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let boot = move |system: &mut System| {
        if let Err(error) = boot_replica_node(system, detector, replica) {
            eprintln!("synod node {node}: cannot boot: {error}");
        }
    };
    let result = runtime.run(boot, stop).await;
    http.abort();
    match result {
        Ok(_) => {
            if config.log {
                eprintln!("synod node {node}: stopped cleanly");
            }
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// What the leader-following task updates.
struct FollowLeader {
    handle: NodeHandle,
    info: NodeInfo,
    gateway: Gateway,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// This node's id when lifecycle lines go to standard error (`log = true`).
    log: Option<u64>,
}

/// What the role log line compares between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleView {
    role: String,
    term: u64,
    leader: Option<u64>,
    degraded: Option<String>,
}

/// The line to log when this node's role, term, leader or degradation changed from
/// `before` (`None`: the first sample), stamped with the Unix time in milliseconds so that
/// the lines of several nodes (and a nemesis report) can be put in one order. A change of
/// the degradation's wording alone (its figures move) is not a change.
fn role_change_line(
    node: u64,
    before: Option<&RoleView>,
    now: &RoleView,
    unix_ms: u128,
) -> Option<String> {
    let same_role = before.is_some_and(|before| {
        (&before.role, before.term, before.leader) == (&now.role, now.term, now.leader)
    });
    let same_health =
        before.is_some_and(|before| before.degraded.is_some() == now.degraded.is_some());
    if same_role && same_health {
        return None;
    }
    let leader = match now.leader {
        Some(leader) if leader == node => "itself".to_string(),
        Some(leader) => format!("node {leader}"),
        None => "none known".to_string(),
    };
    let health = match &now.degraded {
        Some(reason) => format!("degraded: {reason}"),
        None => "healthy".to_string(),
    };
    Some(format!(
        "synod node {node}: {} in term {}, leader {leader}, {health} (unix ms {unix_ms})",
        now.role, now.term
    ))
}

/// Keeps the gateway's idea of the leader in step with this node's replica, so that
/// requests go to a new leader as soon as this node knows of it, and the node's health
/// (degraded, read-only) current for the connections' fast refusals. With logging on, it
/// writes a line at every change of role, term, leader or degradation.
async fn follow_leader(follow: FollowLeader, mut draining: watch::Receiver<bool>) {
    let mut last_view: Option<RoleView> = None;
    let mut interval = tokio::time::interval(LEADER_REFRESH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = draining.wait_for(|draining| *draining) => return,
        }
        let info = follow.info.clone();
        let sampled = follow
            .handle
            .call(move |system| {
                let sample = sample_of(system, &info, 0, false);
                let term = sample.status.term;
                (
                    sample.status.role,
                    term,
                    sample.status.leader,
                    sample.health,
                )
            })
            .await;
        let Ok((role, term, leader, health)) = sampled else {
            return;
        };
        if let Some(node) = follow.log {
            let view = RoleView {
                role: role.clone(),
                term,
                leader,
                degraded: health.reason(),
            };
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis());
            if let Some(line) = role_change_line(node, last_view.as_ref(), &view, unix_ms) {
                eprintln!("{line}");
            }
            last_view = Some(view);
        }
        if role != "starting" {
            follow.gateway.set_leader_hint(leader.map(NodeId));
        }
        let read_only = health.read_only.is_some();
        let degraded = health.reason().is_some();
        follow.metrics.set_health(degraded, read_only);
        follow.health.set(health);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<AtomicUsize>,
    max_connections: usize,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of descriptors or similar: wait a little instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if connections.load(Ordering::Relaxed) >= max_connections {
            shared.metrics.connections_refused();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut bytes = bytes::BytesMut::new();
                let reply = Reply::Error("ERR max number of clients reached".into());
                encode(&reply, crate::resp::ProtocolVersion::Resp2, &mut bytes);
                let _ = stream.write_all(&bytes).await;
            });
            continue;
        }
        connections.fetch_add(1, Ordering::Relaxed);
        shared.metrics.connection_opened();
        let (shared, connections) = (shared.clone(), connections.clone());
        tokio::spawn(async move {
            connection::serve(stream, shared.clone()).await;
            shared.metrics.connection_closed();
            connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The node as the admin API and the connections see it.
struct NodeSource {
    handle: NodeHandle,
    info: NodeInfo,
    gateway: Gateway,
    /// Every sample updates it, so that what INFO or /status just said (degraded or not)
    /// is what the connections enforce from then on.
    health: Arc<Health>,
    connections: Arc<AtomicUsize>,
}

/// Everything read from the node loop in one step.
struct Sample {
    status: NodeStatus,
    health: HealthState,
    raft: Vec<(String, u64)>,
    replica: Vec<(String, u64)>,
    actors: Vec<ActorRow>,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::PreCandidate | Role::Candidate => "candidate",
        Role::Learner => "learner",
    }
}

fn actor_rows(system: &System) -> Vec<ActorRow> {
    let tree = system.tree();
    let mut path: Vec<String> = Vec::new();
    tree.iter()
        .map(|info| {
            path.truncate(info.depth);
            path.push(info.name.clone());
            ActorRow {
                path: path.join("/"),
                name: info.name.clone(),
                mailbox_depth: info.mailbox_len as u64,
                mailbox_high_water: info.mailbox_high_water as u64,
                restarts: info.restarts_count,
                dropped: info.dropped_count + info.rejected_count,
            }
        })
        .collect()
}

/// Reads the node's state inside the node loop, with the followers' lag.
fn sample(system: &System, info: &NodeInfo, connections: u64) -> Sample {
    sample_of(system, info, connections, true)
}

/// Reads the node's state inside the node loop; `with_lag` sums the followers' lag in
/// bytes (a scan of up to `LAG_ENTRIES_SCANNED_MAX` entries each).
fn sample_of(system: &System, info: &NodeInfo, connections: u64, with_lag: bool) -> Sample {
    let mut sample = sample_status(system, info, connections, with_lag);
    let storage_failure = system
        .find("replica")
        .and_then(|id| system.actor::<ReplicaActor>(id))
        .and_then(|replica| replica.storage_failure().map(str::to_string));
    if storage_failure.is_some() {
        // Raft stops while the storage is latched: the role and leader it last had are not
        // true any more, and a client that believed "leader" would keep sending writes here.
        let status = &mut sample.status;
        status.role = "starting".into();
        status.leader = None;
        status.followers.clear();
        status.leader_contact_ms = None;
    }
    sample.health = crate::health::assess(
        &sample.status,
        info.degraded_after_ms,
        storage_failure.as_deref(),
    );
    sample.status.degraded = sample.health.reason();
    sample
}

fn sample_status(system: &System, info: &NodeInfo, connections: u64, with_lag: bool) -> Sample {
    let mut status = NodeStatus {
        node: info.node.0,
        cluster_id: info.cluster_id,
        role: "starting".into(),
        term: 0,
        leader: None,
        commit_index: 0,
        applied_index: 0,
        last_log_index: 0,
        first_log_index: 0,
        snapshot_index: 0,
        voters: Vec::new(),
        learners: Vec::new(),
        followers: Vec::new(),
        leader_contact_ms: None,
        clock_skew_ppm_max: 0,
        lease_suspended_by_skew: false,
        degraded: None,
        keys: 0,
        revision: 0,
        sessions: 0,
        uptime_ms: info.started.elapsed().as_millis() as u64,
        connected_clients: connections,
        resp_address: info.resp_address.to_string(),
        http_address: info.http_address.to_string(),
        peer_address: info.peer_address.to_string(),
        members: info.members.clone(),
    };
    let actors = actor_rows(system);
    let replica = system
        .find("replica")
        .and_then(|id| system.actor::<ReplicaActor>(id));
    let (Some(replica), mut raft_figures, mut replica_figures) = (replica, Vec::new(), Vec::new())
    else {
        return Sample {
            status,
            health: HealthState::default(),
            raft: Vec::new(),
            replica: Vec::new(),
            actors,
        };
    };
    let stats = replica.stats().clone();
    replica_figures.extend([
        ("entries_applied".to_string(), stats.entries_applied),
        ("reads_served".to_string(), stats.reads_served),
        (
            "client_requests_refused".to_string(),
            stats.client_requests_refused,
        ),
        (
            "client_requests_undecodable".to_string(),
            stats.client_requests_undecodable,
        ),
        (
            "peer_messages_undecodable".to_string(),
            stats.peer_messages_undecodable,
        ),
        (
            "peer_messages_foreign".to_string(),
            stats.peer_messages_foreign,
        ),
        (
            "peer_messages_spoofed".to_string(),
            stats.peer_messages_spoofed,
        ),
        ("sends_failed".to_string(), stats.sends_failed),
        ("storage_failures".to_string(), stats.storage_failures),
        (
            "peer_messages_read_only".to_string(),
            stats.peer_messages_read_only,
        ),
    ]);
    if let (Some(raft), Some(kv)) = (replica.raft(), replica.kv()) {
        let membership = raft.membership();
        status.role = role_name(raft.role()).into();
        status.term = raft.term().0;
        status.leader = raft.leader().map(|node| node.0);
        status.commit_index = raft.commit_index().0;
        status.applied_index = kv.applied_index().0;
        status.last_log_index = raft.last_index().0;
        status.first_log_index = raft.first_index().0;
        status.snapshot_index = raft.snapshot_meta().map_or(0, |meta| meta.last_index.0);
        status.voters = membership.voters.iter().map(|node| node.0).collect();
        status.learners = membership.learners.iter().map(|node| node.0).collect();
        status.keys = kv.len();
        status.revision = kv.revision();
        status.sessions = kv.sessions_count() as u64;
        status.leader_contact_ms = if raft.role() == Role::Leader {
            Some(0)
        } else {
            raft.leader_contact_at().map(|at| {
                let now = synod_core::Instant::from_nanos(info.started.elapsed().as_nanos() as u64);
                now.saturating_duration_since(at).as_nanos() / 1_000_000
            })
        };
        status.clock_skew_ppm_max = raft.clock_skew_ppm_max();
        status.lease_suspended_by_skew = raft.lease_suspended_by_skew();
        let now_ns = unix_ns();
        let last = raft.last_index();
        status.followers = raft
            .followers()
            .into_iter()
            .map(|view| {
                let lag_entries = last.0.saturating_sub(view.match_index.0);
                let mut lag_bytes = 0u64;
                let first_missing = synod_core::LogIndex(view.match_index.0 + 1);
                let scanned_max = if with_lag { LAG_ENTRIES_SCANNED_MAX } else { 0 };
                let scan_end = first_missing.0 + lag_entries.min(scanned_max);
                for index in first_missing.0..scan_end {
                    if let Some(entry) = raft.entry(synod_core::LogIndex(index)) {
                        lag_bytes += entry.size() as u64;
                    }
                }
                let lag_ms = if lag_entries == 0 {
                    0
                } else {
                    // Entries without a proposer's time (the bootstrap ones) say nothing.
                    raft.entry(first_missing)
                        .filter(|entry| entry.time_ns > 0)
                        .map_or(0, |entry| now_ns.saturating_sub(entry.time_ns) / 1_000_000)
                };
                FollowerStatus {
                    node: view.node.0,
                    voter: membership.is_voter(view.node),
                    lag_entries,
                    lag_bytes,
                    lag_ms,
                    active: view.active,
                }
            })
            .collect();
        let raft_stats = raft.stats().clone();
        raft_figures.extend([
            (
                "elections_started".to_string(),
                raft_stats.elections_started,
            ),
            ("leaderships_won".to_string(), raft_stats.leaderships_won),
            (
                "check_quorum_step_downs".to_string(),
                raft_stats.check_quorum_step_downs,
            ),
            ("append_conflicts".to_string(), raft_stats.append_conflicts),
            ("snapshots_sent".to_string(), raft_stats.snapshots_sent),
            (
                "snapshots_installed".to_string(),
                raft_stats.snapshots_installed,
            ),
            ("reads_lease".to_string(), raft_stats.reads_lease),
            ("reads_read_index".to_string(), raft_stats.reads_read_index),
            (
                "lease_refused_skew".to_string(),
                raft_stats.lease_refused_skew,
            ),
            (
                "messages_stale_term".to_string(),
                raft_stats.messages_stale_term,
            ),
            ("persisted_index".to_string(), raft.persisted_index().0),
        ]);
    }
    Sample {
        status,
        health: HealthState::default(),
        raft: raft_figures,
        replica: replica_figures,
        actors,
    }
}

impl NodeSource {
    async fn sample(&self) -> Result<Sample, String> {
        let info = self.info.clone();
        let connections = self.connections.load(Ordering::Relaxed) as u64;
        let sample = self
            .handle
            .call(move |system| sample(system, &info, connections))
            .await
            .map_err(|error| error.to_string())?;
        if sample.status.role != "starting" {
            self.gateway
                .set_leader_hint(sample.status.leader.map(NodeId));
        }
        self.health.set(sample.health.clone());
        Ok(sample)
    }
}

impl StatusSource for NodeSource {
    fn status(&self) -> JoinHandle<Option<NodeStatus>> {
        let (handle, info, connections, gateway, health) = (
            self.handle.clone(),
            self.info.clone(),
            self.connections.clone(),
            self.gateway.clone(),
            self.health.clone(),
        );
        tokio::spawn(async move {
            let connections = connections.load(Ordering::Relaxed) as u64;
            let sample = handle
                .call(move |system| sample(system, &info, connections))
                .await
                .ok()?;
            if sample.status.role != "starting" {
                gateway.set_leader_hint(sample.status.leader.map(NodeId));
            }
            health.set(sample.health);
            Some(sample.status)
        })
    }
}

impl AdminBackend for NodeSource {
    async fn status(&self) -> Result<NodeStatus, String> {
        self.sample().await.map(|sample| sample.status)
    }

    async fn figures(&self) -> Result<NodeFigures, String> {
        let sample = self.sample().await?;
        let disk = self.handle.disk_stats();
        let wal = vec![
            ("disk_operations".to_string(), disk.operations_count),
            ("disk_errors".to_string(), disk.errors_count),
            ("disk_bytes_read".to_string(), disk.bytes_read_count),
            ("disk_bytes_written".to_string(), disk.bytes_written_count),
            ("disk_syncs".to_string(), disk.syncs_count),
        ];
        let peers = self
            .handle
            .peer_stats()
            .into_iter()
            .map(|(node, stats)| PeerFigures {
                node: node.0,
                breaker_state: stats.breaker_state.map(|state| state.name()),
                breaker_opened: stats.breaker_opened_count,
                breaker_rejections: stats.breaker_rejections_count,
                frames_sent: stats.frames_sent_count,
                frames_received: stats.frames_received_count,
                reconnects: stats.reconnects_count,
                queue_full_drops: stats.queue_full_drops_count,
            })
            .collect();
        Ok(NodeFigures {
            status: sample.status,
            raft: sample.raft,
            replica: sample.replica,
            wal,
            actors: sample.actors,
            peers,
        })
    }

    async fn supervision(&self) -> Result<Vec<ActorRow>, String> {
        self.sample().await.map(|sample| sample.actors)
    }

    async fn clock_faults(&self) -> Result<ClockFaults, String> {
        match self.handle.clock_faults() {
            Some(settings) => Ok(ClockFaults {
                drift_ppm: settings.drift_ppm,
                offset_ms: settings.offset_ms,
            }),
            None => Err(CLOCK_FAULTS_DISABLED.to_string()),
        }
    }

    async fn set_clock_faults(&self, faults: ClockFaults) -> Result<ClockFaults, String> {
        if self.handle.clock_faults().is_none() {
            return Err(CLOCK_FAULTS_DISABLED.to_string());
        }
        let settings = ClockFaultSettings {
            drift_ppm: faults.drift_ppm,
            offset_ms: faults.offset_ms,
        };
        self.handle.set_clock_faults(settings)?;
        eprintln!(
            "synod node {}: clock faults set: drift {} ppm, wall-clock offset {} ms",
            self.info.node, faults.drift_ppm, faults.offset_ms
        );
        Ok(faults)
    }

    async fn disk_faults(&self) -> Result<DiskFaults, String> {
        match self.handle.disk_faults() {
            Some(settings) => Ok(DiskFaults {
                sync_delay_ms: settings.sync_delay.as_millis(),
                failing: settings.failing,
            }),
            None => Err(DISK_FAULTS_DISABLED.to_string()),
        }
    }

    async fn set_disk_faults(&self, faults: DiskFaults) -> Result<DiskFaults, String> {
        if self.handle.disk_faults().is_none() {
            return Err(DISK_FAULTS_DISABLED.to_string());
        }
        let settings = synod_runtime::DiskFaultSettings {
            sync_delay: synod_core::Duration::from_millis(faults.sync_delay_ms),
            failing: faults.failing,
        };
        self.handle
            .set_disk_faults(settings)
            .map_err(|problem| format!("sync_delay_ms: {problem}"))?;
        eprintln!(
            "synod node {}: disk faults set: sync delay {} ms, failing {}",
            self.info.node, faults.sync_delay_ms, faults.failing
        );
        Ok(faults)
    }

    async fn change_members(&self, request: MembersRequest) -> Result<String, String> {
        let admin = match request {
            MembersRequest::AddLearner { node } => {
                AdminRequest::ChangeMembership(MembershipChange::AddLearner(NodeId(node)))
            }
            MembersRequest::Promote { node } => {
                AdminRequest::ChangeMembership(MembershipChange::Promote(NodeId(node)))
            }
            MembersRequest::Remove { node } => {
                AdminRequest::ChangeMembership(MembershipChange::Remove(NodeId(node)))
            }
            MembersRequest::TransferLeader { to } => AdminRequest::TransferLeadership(NodeId(to)),
        };
        let described = format!("{request:?}");
        match self
            .gateway
            .request(RequestBody::Admin(admin), Route::Leader)
            .await
        {
            Ok(Outcome::Applied { index, term, .. }) => Ok(format!(
                "{described}: committed at index {index} in term {term}"
            )),
            Ok(Outcome::Accepted) => Ok(format!(
                "{described}: started; watch /status for the new leader"
            )),
            Ok(Outcome::Refused { reason }) => Err(format!("{described} refused: {reason}")),
            Ok(other) => Err(format!("{described}: {other:?}")),
            Err(error) => Err(format!("{described}: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(role: &str, term: u64, leader: Option<u64>, degraded: Option<&str>) -> RoleView {
        RoleView {
            role: role.to_string(),
            term,
            leader,
            degraded: degraded.map(str::to_string),
        }
    }

    #[test]
    fn role_lines_are_written_on_changes_only() {
        // Checks the role log: the first sample and every change of role, term, leader or
        // degradation give one exact line; the same view, or a degradation reworded (its
        // figures moved), gives none.
        let follower = view("follower", 3, Some(2), None);
        let lost = view("follower", 3, None, Some("no leader heard for 600 ms"));
        let table: [(Option<&RoleView>, RoleView, Option<&str>); 6] = [
            (
                None,
                follower.clone(),
                Some("synod node 1: follower in term 3, leader node 2, healthy (unix ms 7)"),
            ),
            (Some(&follower), follower.clone(), None),
            (
                Some(&follower),
                lost.clone(),
                Some(
                    "synod node 1: follower in term 3, leader none known, degraded: no leader \
                     heard for 600 ms (unix ms 7)",
                ),
            ),
            (
                Some(&lost),
                view("follower", 3, None, Some("no leader heard for 900 ms")),
                None,
            ),
            (
                Some(&lost),
                view("candidate", 4, None, Some("no leader heard for 900 ms")),
                Some(
                    "synod node 1: candidate in term 4, leader none known, degraded: no \
                     leader heard for 900 ms (unix ms 7)",
                ),
            ),
            (
                Some(&lost),
                view("leader", 4, Some(1), None),
                Some("synod node 1: leader in term 4, leader itself, healthy (unix ms 7)"),
            ),
        ];
        for (before, now, expected) in table {
            assert_eq!(
                role_change_line(1, before, &now, 7).as_deref(),
                expected,
                "{before:?} -> {now:?}"
            );
        }
    }
}
