//! A synod node's metrics: command counters and latency histograms, connection figures, a
//! rolling per-second window for the dashboard, and the Prometheus text behind `/metrics`.
//!
//! [`Metrics`] is shared by every connection task as an `Arc<Metrics>`. The figures the node
//! already keeps elsewhere (the replica's Raft state, WAL counters, actor mailboxes) are not
//! copied in here: the node hands them to [`Metrics::encode`] at scrape time as
//! [`NodeFigures`], so a scrape shows them as of that moment.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets_range};
use prometheus_client::registry::{Metric, Registry};
use serde::Serialize;

use crate::status::{NodeStatus, ReadLevel};

/// Seconds the dashboard window covers.
pub const WINDOW_SECONDS: u64 = 120;

/// Distinct command names given their own label value; later names are counted as
/// `"other"`, so a client sending random command names cannot grow the registry without
/// bound.
pub const COMMAND_NAMES_MAX: usize = 256;

/// Longest command name given its own label value.
pub const COMMAND_NAME_LENGTH_MAX: usize = 48;

/// Named numbers taken from each list of [`NodeFigures`]; the rest are left out.
pub const FIGURES_NAMED_MAX: usize = 256;

/// Actor rows taken from [`NodeFigures::actors`]; the rest are left out.
pub const ACTOR_ROWS_MAX: usize = 1024;

/// The slowest latency the dashboard window tells apart (100 s); slower ones count as this.
const WINDOW_LATENCY_US_MAX: u64 = 100_000_000;

/// Histogram buckets: 18 exponential steps from 50 µs to 10 s.
const DURATION_SECONDS_MIN: f64 = 50e-6;
const DURATION_SECONDS_MAX: f64 = 10.0;
const DURATION_BUCKETS_COUNT: u16 = 18;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandOutcome {
    /// Answered with a value.
    Ok,
    /// Answered with an error reply (wrong type, syntax, not leader...).
    Error,
    /// Refused before it ran (a limit, a full queue, shutting down).
    Refused,
    /// Not answered in time.
    Timeout,
}

impl CommandOutcome {
    pub fn name(self) -> &'static str {
        match self {
            CommandOutcome::Ok => "ok",
            CommandOutcome::Error => "error",
            CommandOutcome::Refused => "refused",
            CommandOutcome::Timeout => "timeout",
        }
    }
}

/// One second of the dashboard window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondStats {
    /// Start of the second, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Commands completed in that second, whatever their outcome.
    pub ops: u64,
    /// Median and 99th percentile latency in microseconds (0 when `ops` is 0).
    pub p50_us: u64,
    pub p99_us: u64,
}

/// One actor of the node's supervision tree with its mailbox figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorRow {
    /// Where the actor sits in the tree, parents first: `"node/replica"`.
    pub path: String,
    pub name: String,
    pub mailbox_depth: u64,
    pub mailbox_high_water: u64,
    pub restarts: u64,
    /// Messages refused because the mailbox was full.
    pub dropped: u64,
}

/// What the node supplies at scrape time, next to what [`Metrics`] records itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeFigures {
    /// Raft state, followers' lag and the node's counts (keys, sessions, clients).
    pub status: NodeStatus,
    /// Raft counters that [`NodeStatus`] does not carry: `("leader_changes", 3)`.
    pub raft: Vec<(String, u64)>,
    /// Replica counters: `("entries_applied", 1200)`.
    pub replica: Vec<(String, u64)>,
    /// WAL and disk counters: `("fsyncs", 40)`, `("bytes_written", 81920)`.
    pub wal: Vec<(String, u64)>,
    /// The actor tree, in tree order.
    pub actors: Vec<ActorRow>,
    /// The transport's view of each peer, by node id.
    pub peers: Vec<PeerFigures>,
}

/// One peer as the transport sees it: its circuit breaker and its connection counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerFigures {
    pub node: u64,
    /// `closed`, `open` or `half-open`; `None`: no breaker.
    pub breaker_state: Option<&'static str>,
    pub breaker_opened: u64,
    pub breaker_rejections: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub reconnects: u64,
    pub queue_full_drops: u64,
}

impl NodeFigures {
    /// Figures holding only a status, for a node that has nothing else to report yet.
    pub fn from_status(status: NodeStatus) -> NodeFigures {
        NodeFigures {
            status,
            raft: Vec::new(),
            replica: Vec::new(),
            wal: Vec::new(),
            actors: Vec::new(),
            peers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CommandLabels {
    command: String,
    level: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DurationLabels {
    command: String,
    level: &'static str,
}

fn command_histogram() -> Histogram {
    Histogram::new(exponential_buckets_range(
        DURATION_SECONDS_MIN,
        DURATION_SECONDS_MAX,
        DURATION_BUCKETS_COUNT,
    ))
}

/// The node's metrics registry and dashboard window.
pub struct Metrics {
    registry: Registry,
    commands: Family<CommandLabels, Counter>,
    command_duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
    /// Command names given their own label value (at most [`COMMAND_NAMES_MAX`]).
    command_names: Mutex<BTreeSet<String>>,
    connections_open: Gauge,
    connections_opened: Counter,
    connections_refused: Counter,
    window: Mutex<Window>,
    resilience: ResilienceMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "synod_commands",
            "Commands completed, by command, read level and outcome",
            commands.clone(),
        );
        let command_duration =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                command_histogram,
            );
        registry.register(
            "synod_command_duration_seconds",
            "Time from a command's arrival to its reply, by command and read level",
            command_duration.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "synod_connections_open",
            "RESP connections open now",
            connections_open.clone(),
        );
        let connections_opened = Counter::default();
        registry.register(
            "synod_connections_opened",
            "RESP connections accepted",
            connections_opened.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "synod_connections_refused",
            "RESP connections refused (the connection limit was reached)",
            connections_refused.clone(),
        );
        let resilience = ResilienceMetrics::register(&mut registry);
        Metrics {
            resilience,
            registry,
            commands,
            command_duration,
            command_names: Mutex::new(BTreeSet::new()),
            connections_open,
            connections_opened,
            connections_refused,
            window: Mutex::new(Window::new()),
        }
    }

    /// Records one completed command, in the dashboard window's current second by the
    /// system clock.
    pub fn record_command(
        &self,
        command: &str,
        level: Option<ReadLevel>,
        latency_seconds: f64,
        outcome: CommandOutcome,
    ) {
        self.record_command_at(command, level, latency_seconds, outcome, SystemTime::now());
    }

    /// Records one completed command that finished at `now`.
    pub fn record_command_at(
        &self,
        command: &str,
        level: Option<ReadLevel>,
        latency_seconds: f64,
        outcome: CommandOutcome,
        now: SystemTime,
    ) {
        // A negative or NaN latency (a clock stepping back) counts as zero.
        let latency_seconds = if latency_seconds > 0.0 {
            latency_seconds
        } else {
            0.0
        };
        let command = self.command_label(command);
        let level = level.map_or("none", ReadLevel::name);
        self.commands
            .get_or_create(&CommandLabels {
                command: command.clone(),
                level,
                outcome: outcome.name(),
            })
            .inc();
        self.command_duration
            .get_or_create(&DurationLabels { command, level })
            .observe(latency_seconds);
        let latency_us = (latency_seconds * 1e6) as u64;
        lock(&self.window).record(unix_seconds(now), latency_us);
    }

    pub fn connection_opened(&self) {
        self.connections_open.inc();
        self.connections_opened.inc();
    }

    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub fn connections_refused(&self) {
        self.connections_refused.inc();
    }

    /// The dashboard window: the last [`WINDOW_SECONDS`] whole seconds by the system
    /// clock, oldest first.
    pub fn recent(&self) -> Vec<SecondStats> {
        self.recent_at(SystemTime::now())
    }

    /// The [`WINDOW_SECONDS`] whole seconds before the second holding `now`, oldest first.
    /// Seconds without commands are present with `ops` 0.
    pub fn recent_at(&self, now: SystemTime) -> Vec<SecondStats> {
        lock(&self.window).recent(unix_seconds(now))
    }

    /// The registry and `node`'s figures in the Prometheus text format, version 0.0.4.
    pub fn encode(&self, node: &NodeFigures) -> String {
        let mut text = String::new();
        let node_registry = node_registry(node);
        // Writing into a String cannot fail, and encode_registry fails only when its writer
        // does.
        let encoded = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &node_registry));
        assert!(encoded.is_ok(), "encoding metrics into a String failed");
        openmetrics_to_prometheus_text(&text)
    }

    fn command_label(&self, command: &str) -> String {
        let valid = !command.is_empty()
            && command.len() <= COMMAND_NAME_LENGTH_MAX
            && command.bytes().all(|byte| byte.is_ascii_graphic());
        if !valid {
            return "other".to_string();
        }
        let mut names = lock(&self.command_names);
        if names.contains(command) {
            return command.to_string();
        }
        if names.len() >= COMMAND_NAMES_MAX {
            return "other".to_string();
        }
        names.insert(command.to_string());
        command.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AdmissionLabels {
    priority: &'static str,
    group: String,
    outcome: &'static str,
}

/// The admission controller's and the node's health figures.
struct ResilienceMetrics {
    admissions: Family<AdmissionLabels, Counter>,
    limit: Gauge,
    running: Gauge,
    queued: Gauge,
    rtt_long_us: Gauge,
    degraded: Gauge,
    read_only: Gauge,
}

impl ResilienceMetrics {
    fn register(registry: &mut Registry) -> ResilienceMetrics {
        let metrics = ResilienceMetrics {
            admissions: Family::default(),
            limit: Gauge::default(),
            running: Gauge::default(),
            queued: Gauge::default(),
            rtt_long_us: Gauge::default(),
            degraded: Gauge::default(),
            read_only: Gauge::default(),
        };
        registry.register(
            "synod_admission",
            "Client requests at admission, by priority, connection group and outcome \
             (admitted, queued, refused, shed, timed_out, unlimited)",
            metrics.admissions.clone(),
        );
        let gauges = [
            (
                "synod_admission_limit",
                "The adaptive limit on client requests running at once",
                &metrics.limit,
            ),
            (
                "synod_admission_running",
                "Client requests admitted and not yet answered",
                &metrics.running,
            ),
            (
                "synod_admission_queued",
                "Client requests waiting for a running slot",
                &metrics.queued,
            ),
            (
                "synod_admission_rtt_long_microseconds",
                "The adaptive limit's long-term latency estimate",
                &metrics.rtt_long_us,
            ),
            (
                "synod_node_degraded",
                "1 while this node cannot serve requests that need a quorum or its disk",
                &metrics.degraded,
            ),
            (
                "synod_node_read_only",
                "1 while this node refuses writes because its disk is full or failing",
                &metrics.read_only,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        metrics
    }
}

impl Metrics {
    /// Counts one admission decision.
    pub fn record_admission(
        &self,
        priority: synod_resilience::Priority,
        group: &str,
        outcome: &'static str,
    ) {
        self.resilience
            .admissions
            .get_or_create(&AdmissionLabels {
                priority: priority.name(),
                group: group.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn set_admission(&self, figures: crate::admission::AdmissionFigures) {
        let resilience = &self.resilience;
        resilience.limit.set(i64::from(figures.limit));
        resilience.running.set(i64::from(figures.running));
        resilience.queued.set(i64::from(figures.queued));
        let rtt = i64::try_from(figures.rtt_long_us).unwrap_or(i64::MAX);
        resilience.rtt_long_us.set(rtt);
    }

    pub fn set_health(&self, degraded: bool, read_only: bool) {
        self.resilience.degraded.set(i64::from(degraded));
        self.resilience.read_only.set(i64::from(read_only));
    }
}

/// Turns the OpenMetrics text the registry writes into the Prometheus text format 0.0.4
/// that `/metrics` declares: a counter family is named after its samples (`x_total`, not
/// `x`) in its HELP and TYPE lines. Every other line is the same in both formats.
fn openmetrics_to_prometheus_text(text: &str) -> String {
    let counters: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut converted = String::with_capacity(text.len() + counters.len() * 12);
    for line in text.lines() {
        let family_line = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then_some((prefix, name, tail))
        });
        match family_line {
            Some((prefix, name, tail)) => {
                let _ = writeln!(converted, "{prefix}{name}_total {tail}");
            }
            None => {
                converted.push_str(line);
                converted.push('\n');
            }
        }
    }
    converted
}

/// Locks a mutex, carrying on with the data if a holder panicked: the metrics stay
/// consistent enough to report, and a metrics panic must not take the node down.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// One second of the ring: the second it holds and its latencies.
struct Slot {
    /// Unix second this slot holds; `None` while unused.
    second: Option<u64>,
    ops: u64,
    /// Created on first use, then reset and reused.
    latencies_us: Option<hdrhistogram::Histogram<u64>>,
}

/// A ring of per-second latency histograms: the window's seconds plus the current one.
/// A second's slot is `second % slots.len()`; a slot holding an older second is reset when
/// a newer one needs it, and a record for a second older than the slot holds is dropped.
struct Window {
    slots: Vec<Slot>,
}

impl Window {
    fn new() -> Window {
        let slots_count = WINDOW_SECONDS as usize + 1;
        let slots = (0..slots_count)
            .map(|_| Slot {
                second: None,
                ops: 0,
                latencies_us: None,
            })
            .collect();
        Window { slots }
    }

    fn record(&mut self, second: u64, latency_us: u64) {
        let slots_count = self.slots.len() as u64;
        let slot = &mut self.slots[(second % slots_count) as usize];
        match slot.second {
            Some(held) if held > second => return,
            Some(held) if held == second => {}
            _ => {
                slot.second = Some(second);
                slot.ops = 0;
                if let Some(latencies_us) = &mut slot.latencies_us {
                    latencies_us.reset();
                }
            }
        }
        slot.ops += 1;
        let latencies_us = slot.latencies_us.get_or_insert_with(|| {
            // Two significant figures keep a slot near 20 KiB; the dashboard needs no more.
            hdrhistogram::Histogram::new_with_bounds(1, WINDOW_LATENCY_US_MAX, 2)
                .expect("constant histogram bounds are valid")
        });
        latencies_us.saturating_record(latency_us.clamp(1, WINDOW_LATENCY_US_MAX));
    }

    fn recent(&self, now_second: u64) -> Vec<SecondStats> {
        let slots_count = self.slots.len() as u64;
        let first = now_second.saturating_sub(WINDOW_SECONDS);
        (first..now_second)
            .map(|second| {
                let slot = &self.slots[(second % slots_count) as usize];
                let mut stats = SecondStats {
                    unix_ms: second * 1000,
                    ops: 0,
                    p50_us: 0,
                    p99_us: 0,
                };
                if slot.second == Some(second)
                    && let Some(latencies_us) = &slot.latencies_us
                {
                    stats.ops = slot.ops;
                    stats.p50_us = latencies_us.value_at_quantile(0.5);
                    stats.p99_us = latencies_us.value_at_quantile(0.99);
                }
                stats
            })
            .collect()
    }
}

type U64Gauge = Gauge<u64, AtomicU64>;
type Labels = Vec<(&'static str, String)>;

/// A per-peer counter family: its name, its help and how to read it from a peer's figures.
type PeerCounter = (&'static str, &'static str, fn(&PeerFigures) -> u64);

/// A registry built for one scrape from what the node supplied, with the family names it
/// holds so that a node-supplied name never repeats one.
struct NodeRegistry {
    registry: Registry,
    names: BTreeSet<String>,
}

/// A registry built for one scrape from what the node supplied.
fn node_registry(node: &NodeFigures) -> Registry {
    let mut registry = NodeRegistry {
        registry: Registry::default(),
        names: BTreeSet::new(),
    };
    registry.add_status(&node.status);
    registry.add_followers(&node.status);
    registry.add_named("synod_raft_", "A Raft counter", &node.raft);
    registry.add_named("synod_replica_", "A replica counter", &node.replica);
    registry.add_named("synod_wal_", "A WAL or disk counter", &node.wal);
    registry.add_actors(&node.actors);
    registry.add_peers(&node.peers);
    registry.registry
}

impl NodeRegistry {
    fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        let fresh = self.names.insert(name.to_string());
        assert!(fresh, "metric family {name} registered twice");
        self.registry.register(name, help, metric);
    }

    fn add_gauge(&mut self, name: &str, help: &str, value: u64) {
        let gauge = U64Gauge::default();
        gauge.set(value);
        self.register(name, help, gauge);
    }

    fn add_status(&mut self, status: &NodeStatus) {
        let leader = status.leader.unwrap_or(0);
        let gauges: [(&str, &str, u64); 18] = [
            ("synod_node_id", "This node's id", status.node),
            ("synod_cluster_id", "The cluster's id", status.cluster_id),
            (
                "synod_raft_term",
                "The node's current Raft term",
                status.term,
            ),
            (
                "synod_raft_leader",
                "The leader this node knows of (0: none)",
                leader,
            ),
            (
                "synod_raft_commit_index",
                "Highest log index known committed",
                status.commit_index,
            ),
            (
                "synod_raft_applied_index",
                "Highest log index applied",
                status.applied_index,
            ),
            (
                "synod_raft_last_log_index",
                "Last index in the log",
                status.last_log_index,
            ),
            (
                "synod_raft_first_log_index",
                "First index still in the log",
                status.first_log_index,
            ),
            (
                "synod_raft_snapshot_index",
                "Last index in the snapshot",
                status.snapshot_index,
            ),
            (
                "synod_raft_voters",
                "Voting members",
                status.voters.len() as u64,
            ),
            (
                "synod_raft_learners",
                "Non-voting members",
                status.learners.len() as u64,
            ),
            (
                "synod_raft_clock_skew_ppm_max",
                "Largest clock-rate skew proven towards a voter, in parts per million",
                status.clock_skew_ppm_max,
            ),
            (
                "synod_raft_lease_suspended_by_skew",
                "1 while lease reads are suspended because a voter's clock skew exceeds the \
                 lease's drift bound",
                u64::from(status.lease_suspended_by_skew),
            ),
            (
                "synod_keys",
                "Keys holding a value in the applied state",
                status.keys,
            ),
            (
                "synod_revision",
                "The state machine's revision",
                status.revision,
            ),
            (
                "synod_sessions",
                "Client sessions registered",
                status.sessions,
            ),
            (
                "synod_uptime_ms",
                "Milliseconds since the node started",
                status.uptime_ms,
            ),
            (
                "synod_connected_clients",
                "RESP connections open",
                status.connected_clients,
            ),
        ];
        for (name, help, value) in gauges {
            self.add_gauge(name, help, value);
        }
        if let Some(contact_ms) = status.leader_contact_ms {
            self.add_gauge(
                "synod_raft_leader_contact_ms",
                "Milliseconds since this node last heard from a leader",
                contact_ms,
            );
        }
        let role = Family::<Labels, U64Gauge>::default();
        role.get_or_create(&vec![("role", status.role.clone())])
            .set(1);
        self.register(
            "synod_node_role",
            "The node's Raft role (the labelled one is 1)",
            role,
        );
    }

    fn add_followers(&mut self, status: &NodeStatus) {
        if status.followers.is_empty() {
            return;
        }
        let entries = Family::<Labels, U64Gauge>::default();
        let bytes = Family::<Labels, U64Gauge>::default();
        let lag_ms = Family::<Labels, U64Gauge>::default();
        let active = Family::<Labels, U64Gauge>::default();
        for follower in &status.followers {
            let labels = vec![
                ("follower", follower.node.to_string()),
                ("voter", follower.voter.to_string()),
            ];
            entries.get_or_create(&labels).set(follower.lag_entries);
            bytes.get_or_create(&labels).set(follower.lag_bytes);
            lag_ms.get_or_create(&labels).set(follower.lag_ms);
            active
                .get_or_create(&labels)
                .set(u64::from(follower.active));
        }
        self.register(
            "synod_follower_lag_entries",
            "Entries the leader holds that the follower has not acknowledged",
            entries,
        );
        self.register(
            "synod_follower_lag_bytes",
            "Bytes of the entries the follower has not acknowledged",
            bytes,
        );
        self.register(
            "synod_follower_lag_ms",
            "Age in milliseconds of the oldest entry the follower lacks (0: none)",
            lag_ms,
        );
        self.register(
            "synod_follower_active",
            "1 when the leader heard from the follower within the election timeout",
            active,
        );
    }

    fn add_peers(&mut self, peers: &[PeerFigures]) {
        if peers.is_empty() {
            return;
        }
        let state = Family::<Labels, U64Gauge>::default();
        for peer in peers {
            let Some(current) = peer.breaker_state else {
                continue;
            };
            for name in ["closed", "open", "half-open"] {
                let labels = vec![("peer", peer.node.to_string()), ("state", name.to_string())];
                state.get_or_create(&labels).set(u64::from(name == current));
            }
        }
        self.register(
            "synod_peer_breaker_state",
            "1 for the state the peer's circuit breaker is in",
            state,
        );
        let counters: [PeerCounter; 6] = [
            (
                "synod_peer_breaker_opened",
                "Times the peer's circuit breaker opened (the peer stopped answering)",
                |peer| peer.breaker_opened,
            ),
            (
                "synod_peer_breaker_rejections",
                "Frames to the peer refused because its circuit breaker was open",
                |peer| peer.breaker_rejections,
            ),
            (
                "synod_peer_frames_sent",
                "Frames sent to the peer",
                |peer| peer.frames_sent,
            ),
            (
                "synod_peer_frames_received",
                "Frames received from the peer",
                |peer| peer.frames_received,
            ),
            (
                "synod_peer_reconnects",
                "Connections to the peer made again after one was lost",
                |peer| peer.reconnects,
            ),
            (
                "synod_peer_queue_full_drops",
                "Frames to the peer dropped because its send queue was full",
                |peer| peer.queue_full_drops,
            ),
        ];
        for (name, help, value) in counters {
            let family = Family::<Labels, Counter>::default();
            for peer in peers {
                let labels = vec![("peer", peer.node.to_string())];
                family.get_or_create(&labels).inc_by(value(peer));
            }
            self.register(name, help, family);
        }
    }

    /// Registers each named number as a counter `<prefix><name>_total`. Names are reduced
    /// to the characters a metric name allows; a name that repeats one already registered
    /// is left out.
    fn add_named(&mut self, prefix: &str, help: &str, named: &[(String, u64)]) {
        for (name, value) in named.iter().take(FIGURES_NAMED_MAX) {
            let name = format!("{prefix}{}", metric_name_part(name));
            if self.names.contains(&name) {
                continue;
            }
            let counter = Counter::<u64>::default();
            counter.inc_by(*value);
            self.register(&name, &format!("{help}, as the node counts it"), counter);
        }
    }

    fn add_actors(&mut self, actors: &[ActorRow]) {
        if actors.is_empty() {
            return;
        }
        let depth = Family::<Labels, U64Gauge>::default();
        let high_water = Family::<Labels, U64Gauge>::default();
        let restarts = Family::<Labels, Counter>::default();
        let dropped = Family::<Labels, Counter>::default();
        let mut seen = BTreeSet::new();
        for actor in actors.iter().take(ACTOR_ROWS_MAX) {
            if !seen.insert(actor.path.as_str()) {
                continue;
            }
            let labels = vec![("actor", actor.path.clone())];
            depth.get_or_create(&labels).set(actor.mailbox_depth);
            high_water
                .get_or_create(&labels)
                .set(actor.mailbox_high_water);
            restarts.get_or_create(&labels).inc_by(actor.restarts);
            dropped.get_or_create(&labels).inc_by(actor.dropped);
        }
        self.register(
            "synod_actor_mailbox_depth",
            "Messages waiting in the mailbox",
            depth,
        );
        self.register(
            "synod_actor_mailbox_high_water",
            "Most messages ever waiting in the mailbox at once",
            high_water,
        );
        self.register(
            "synod_actor_restarts",
            "Times the supervisor restarted the actor",
            restarts,
        );
        self.register(
            "synod_actor_dropped",
            "Messages refused because the mailbox was full",
            dropped,
        );
    }
}

/// `name` as a metric name part: ASCII letters, digits and `_`, lowercase, at most 64
/// characters, and never empty or ending in a suffix the exposition format reserves.
fn metric_name_part(name: &str) -> String {
    let mut part: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    for suffix in ["_total", "_created", "_count", "_sum", "_bucket"] {
        if let Some(stripped) = part.strip_suffix(suffix) {
            part = stripped.to_string();
        }
    }
    if part.is_empty() {
        part.push_str("unnamed");
    }
    part
}

/// Renders actor rows as an indented tree, one actor a line, two spaces per level of
/// `path`.
pub fn supervision_text(rows: &[ActorRow]) -> String {
    let mut text = String::new();
    for row in rows {
        let depth = row.path.matches('/').count();
        // Writing into a String cannot fail.
        let _ = writeln!(
            text,
            "{:indent$}{}  mailbox {} (high {})  restarts {}  dropped {}",
            "",
            row.name,
            row.mailbox_depth,
            row.mailbox_high_water,
            row.restarts,
            row.dropped,
            indent = depth * 2,
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix_ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(unix_ms)
    }

    #[test]
    fn window_reports_whole_seconds_with_percentiles() {
        // Checks that recent_at lists the 120 whole seconds before now, with each second's
        // count and percentiles, and zeros for seconds without commands.
        let metrics = Metrics::new();
        for latency_us in 1..=100u64 {
            let latency = latency_us as f64 * 1e-6 * 100.0;
            metrics.record_command_at("get", None, latency, CommandOutcome::Ok, at(1_000_500));
        }
        metrics.record_command_at("set", None, 0.001, CommandOutcome::Ok, at(1_001_100));
        let recent = metrics.recent_at(at(1_002_000));
        assert_eq!(recent.len(), WINDOW_SECONDS as usize);
        assert_eq!(recent.last().map(|s| s.unix_ms), Some(1_001_000));
        let second = recent[recent.len() - 2];
        assert_eq!((second.unix_ms, second.ops), (1_000_000, 100));
        assert!(
            (4_900..=5_100).contains(&second.p50_us),
            "p50 {}",
            second.p50_us
        );
        assert!(
            (9_800..=10_000).contains(&second.p99_us),
            "p99 {}",
            second.p99_us
        );
        assert_eq!(
            recent[0],
            SecondStats {
                unix_ms: 882_000,
                ops: 0,
                p50_us: 0,
                p99_us: 0
            }
        );
    }

    #[test]
    fn window_reuses_slots_and_drops_records_too_old() {
        // Checks that a slot reused for a later second forgets the earlier one, and that a
        // record older than the second its slot holds is dropped.
        let metrics = Metrics::new();
        metrics.record_command_at("get", None, 0.001, CommandOutcome::Ok, at(10_000));
        metrics.record_command_at("get", None, 0.001, CommandOutcome::Ok, at(131_000));
        metrics.record_command_at("get", None, 0.001, CommandOutcome::Ok, at(10_000));
        let recent = metrics.recent_at(at(132_000));
        let ops: u64 = recent.iter().map(|s| s.ops).sum();
        assert_eq!(ops, 1);
        assert_eq!(
            recent.last().map(|s| (s.unix_ms, s.ops)),
            Some((131_000, 1))
        );
    }

    #[test]
    fn command_names_beyond_the_limit_count_as_other() {
        // Checks that unknown, overlong or excess command names share the label "other".
        let metrics = Metrics::new();
        assert_eq!(metrics.command_label("get"), "get");
        assert_eq!(metrics.command_label(""), "other");
        assert_eq!(
            metrics.command_label(&"x".repeat(COMMAND_NAME_LENGTH_MAX + 1)),
            "other"
        );
        assert_eq!(metrics.command_label("a b"), "other");
        for index in 0..COMMAND_NAMES_MAX {
            metrics.command_label(&format!("c{index}"));
        }
        assert_eq!(metrics.command_label("late"), "other");
        assert_eq!(metrics.command_label("get"), "get");
    }

    #[test]
    fn metric_name_parts_are_sanitised() {
        // Checks the reduction of node-supplied names to metric name characters.
        let table = [
            ("entries_applied", "entries_applied"),
            ("Bytes Written", "bytes_written"),
            ("fsyncs_total", "fsyncs"),
            ("", "unnamed"),
            ("é", "_"),
        ];
        for (name, expected) in table {
            assert_eq!(metric_name_part(name), expected, "name {name:?}");
        }
    }

    #[test]
    fn supervision_text_indents_by_path_depth() {
        // Checks that the tree text indents each actor two spaces per level of its path.
        let row = |path: &str, name: &str| ActorRow {
            path: path.to_string(),
            name: name.to_string(),
            mailbox_depth: 1,
            mailbox_high_water: 2,
            restarts: 0,
            dropped: 0,
        };
        let text = supervision_text(&[row("node", "node"), row("node/replica", "replica")]);
        assert_eq!(
            text,
            "node  mailbox 1 (high 2)  restarts 0  dropped 0\n  \
             replica  mailbox 1 (high 2)  restarts 0  dropped 0\n"
        );
    }
}
