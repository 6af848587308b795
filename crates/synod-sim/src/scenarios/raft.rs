//! Raft under the simulator: every node runs synod-node's `ReplicaActor` (the Raft engine,
//! the key-value state machine and their storage on the simulated disk) and a few
//! closed-loop clients ([`super::raft_client`]) that read, write, cas and delete a handful
//! of keys and record a history.
//!
//! Safety, checked after every event from the replicas' live state:
//!
//! - Election safety: at most one leader per term over the whole run.
//! - Committed entries never change or disappear: every entry at or below a node's commit
//!   index is compared (term and payload hash) with what any node held committed at that
//!   index before; since every committed index holds one entry everywhere, the committed
//!   prefixes of all logs match.
//! - Leader completeness: when a node is first seen leading a term, its log holds every
//!   entry known to have been committed in an earlier term.
//! - State-machine safety: replicas at the same applied index have the same state digest
//!   (`KvStore::digest`), whether they got there by applying entries or by installing a
//!   snapshot.
//!
//! Liveness, after the majority core is healed: some node leads, every client of every
//! core node completes an operation it invoked after the heal, and a write invoked after
//! the heal commits. At that moment the whole history is checked for linearizability with
//! synod-check (from `check`, since `report` cannot fail a run): a violation is a
//! correctness failure that prints the checker's explanation.
//!
//! Lease reads are configured only when the run keeps clocks within their bound: the lease
//! is sound only while no two clocks run apart faster than its drift bound, and a run with
//! clock faults outside the bound breaks exactly that assumption.
//!
//! Latent bit flips are off, as in the `wal` scenario: a flipped record in the middle of
//! one node's log is detected by its checksum, but the storage cannot repair it alone.

use std::cell::Cell;
use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use synod_actor::{ActorId, ChildSpec, System};
use synod_check::{Call, CheckOptions, Models, ParseOptions, Value, Verdict, check, parse_history};
use synod_core::{Duration, Instant, LogIndex, NodeId, Term};
use synod_kv::{KvConfig, KvStore};
use synod_node::client::ReadConsistency;
use synod_node::raft_storage::RaftStorageConfig;
use synod_node::replica::{ReplicaActor, ReplicaConfig};
use synod_raft::{
    Entry, EntryPayload, LeaderSuspicion, LeaseConfig, Membership, Raft, RaftConfig, RaftStats,
    Role,
};

use super::raft_client::{
    Client, ClientAnomaly, HistoryEvent, HistoryKind, StaleReadServed, Workload,
};
use super::raft_operator::{Operator, OperatorChange, OperatorPlan};
use super::wal::scenario_wal_config;
use crate::mix::FaultMix;
use crate::scenario::{ClusterView, Phase, Scenario};

/// The name `synod sim --scenario` knows this scenario by.
pub const RAFT_SCENARIO: &str = "raft";
/// Operations recorded in one run's history; later invokes are left out of it (counted)
/// so that the linearizability check stays bounded.
pub const HISTORY_OPERATIONS_MAX: usize = 200_000;
/// Committed entries remembered for comparison; the oldest are forgotten beyond it.
pub const COMMITTED_TRACKED_MAX: usize = 1 << 20;
/// State digests remembered for comparison; the oldest are forgotten beyond it.
pub const DIGESTS_TRACKED_MAX: usize = 1 << 20;
/// Memory the linearizability search may use.
pub const CHECK_MEMORY_BYTES_MAX: usize = 1 << 30;
/// The clock drift bound of the default run options, which the lease configuration
/// assumes unless told otherwise.
pub const CLOCK_DRIFT_PPM_MAX_DEFAULT: i64 = 200;

/// The Raft settings of the scenario: the default timing (10 ms ticks, 100 ms election
/// timeout, 20 ms heartbeats), with small snapshot thresholds and chunks so that runs take
/// snapshots, compact their logs and send InstallSnapshot in several chunks. (Entries are
/// about 100 bytes, and a run under every fault commits under a thousand of them: 16 KiB of
/// log is a snapshot every ~160 entries.)
pub fn scenario_raft_config(lease: Option<LeaseConfig>) -> RaftConfig {
    RaftConfig {
        tick_interval: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        snapshot_log_bytes: 16 << 10,
        snapshot_chunk_size: 1 << 10,
        snapshot_trailing_entries: 32,
        // One entry is one WAL record: keep proposals well inside `record_size_max`.
        proposal_size_max: 512,
        lease,
        ..RaftConfig::default()
    }
}

/// The lease drift bound for clocks that each drift at most `drift_ppm_max` from true
/// time: two of them run apart at up to twice that (plus a margin for the second-order
/// term of the ratio of two rates).
pub fn lease_for_drift(drift_ppm_max: i64) -> LeaseConfig {
    LeaseConfig {
        clock_drift_bound_ppm: 2 * drift_ppm_max.unsigned_abs() + 10,
    }
}

/// Everything a replica of an `nodes_count`-node cluster needs.
pub fn scenario_replica_config(nodes_count: usize, lease: Option<LeaseConfig>) -> ReplicaConfig {
    ReplicaConfig::new(
        scenario_raft_config(lease),
        KvConfig::default(),
        RaftStorageConfig {
            wal: scenario_wal_config(),
            snapshot_size_max: 64 << 20,
        },
        (1..=nodes_count as u64).map(NodeId).collect(),
        SCENARIO_CLUSTER_ID,
    )
}

/// An entry the scenario saw committed.
#[derive(Clone, Copy, Debug)]
struct CommittedEntry {
    term: Term,
    hash: u64,
    /// The first node seen holding it committed.
    node: NodeId,
    /// The smallest term of a node seen holding it committed: it was committed in this term
    /// or earlier, so every leader of a later term must hold it.
    term_bound: Term,
}

/// Raft counters summed over the incarnations of every replica.
#[derive(Clone, Copy, Debug, Default)]
struct RaftTotals {
    elections_started: u64,
    leaderships_won: u64,
    check_quorum_step_downs: u64,
    append_conflicts: u64,
    snapshots_sent: u64,
    snapshots_installed: u64,
    reads_lease: u64,
    reads_read_index: u64,
    lease_refused_skew: u64,
}

impl RaftTotals {
    fn add(&mut self, stats: &RaftStats) {
        self.elections_started += stats.elections_started;
        self.leaderships_won += stats.leaderships_won;
        self.check_quorum_step_downs += stats.check_quorum_step_downs;
        self.append_conflicts += stats.append_conflicts;
        self.snapshots_sent += stats.snapshots_sent;
        self.snapshots_installed += stats.snapshots_installed;
        self.reads_lease += stats.reads_lease;
        self.reads_read_index += stats.reads_read_index;
        self.lease_refused_skew += stats.lease_refused_skew;
    }
}

/// What the scenario knows about one node's current replica.
#[derive(Default)]
struct NodeTrack {
    /// (boot generation, actor restarts in the system) when `replica` was looked up: a
    /// change means a new replica incarnation with a fresh engine.
    incarnation: Option<(u64, u64)>,
    replica: Option<ActorId>,
    /// Entries at or below this index of this incarnation's log have been compared.
    commit_checked: LogIndex,
    /// The applied index whose state digest was last compared.
    applied_digested: Option<LogIndex>,
    /// The last term in which this node was seen leading (leader completeness is checked
    /// once per term).
    leader_term_checked: Option<Term>,
    /// The engine's counters as last seen, folded into the totals at the next incarnation.
    stats: RaftStats,
    /// The configuration in this node's log as last seen (kept across its restarts: it
    /// comes back from its disk).
    membership: Option<Membership>,
}

/// The safety invariants over the replicas' live state.
#[derive(Default)]
struct Safety {
    leaders: BTreeMap<Term, NodeId>,
    committed: BTreeMap<LogIndex, CommittedEntry>,
    digests: BTreeMap<LogIndex, (u64, NodeId)>,
    entries_compared: u64,
    digests_compared: u64,
    /// Replica incarnations seen (first boots, reboots and in-place restarts).
    replica_incarnations: u64,
    totals: RaftTotals,
}

fn entry_hash(entry: &Entry) -> u64 {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&entry.time_ns.to_le_bytes());
    match &entry.payload {
        EntryPayload::Noop => bytes.push(0),
        EntryPayload::Command(command) => {
            bytes.push(1);
            bytes.extend_from_slice(command);
        }
        EntryPayload::Membership(membership) => {
            bytes.push(2);
            let lists = [
                &membership.voters,
                &membership.voters_outgoing,
                &membership.learners,
            ];
            for list in lists {
                bytes.extend_from_slice(&(list.len() as u64).to_le_bytes());
                for node in list {
                    bytes.extend_from_slice(&node.0.to_le_bytes());
                }
            }
        }
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

impl Safety {
    fn check_replica(
        &mut self,
        node: NodeId,
        track: &mut NodeTrack,
        raft: &Raft,
        kv: Option<&KvStore>,
    ) -> Result<(), String> {
        if raft.applied_index() > raft.commit_index() {
            return Err(format!(
                "{node} applied up to {} beyond its commit index {}",
                raft.applied_index(),
                raft.commit_index()
            ));
        }
        if track.membership.as_ref() != Some(raft.membership()) {
            track.membership = Some(raft.membership().clone());
        }
        self.check_commits(node, track, raft)?;
        if raft.role() == Role::Leader {
            self.check_leader(node, track, raft)?;
        }
        if let Some(kv) = kv {
            self.check_state(node, track, kv)?;
        }
        Ok(())
    }

    fn check_leader(
        &mut self,
        node: NodeId,
        track: &mut NodeTrack,
        raft: &Raft,
    ) -> Result<(), String> {
        let term = raft.term();
        if track.leader_term_checked == Some(term) {
            return Ok(());
        }
        track.leader_term_checked = Some(term);
        match self.leaders.entry(term) {
            MapEntry::Vacant(vacant) => {
                vacant.insert(node);
            }
            MapEntry::Occupied(occupied) if *occupied.get() != node => {
                return Err(format!(
                    "two leaders in term {term}: {} and {node}",
                    occupied.get()
                ));
            }
            MapEntry::Occupied(_) => {}
        }
        // Leader completeness: entries below the first index are in its snapshot.
        for (index, committed) in self.committed.range(raft.first_index()..) {
            if committed.term_bound >= term {
                continue;
            }
            let found = raft.term_at(*index);
            if found != Some(committed.term) {
                return Err(format!(
                    "{node} leads term {term} without the committed entry {index} (term {}, \
                     seen committed on {} in term {} or earlier): its log has {found:?} there \
                     (log {}..={})",
                    committed.term,
                    committed.node,
                    committed.term_bound,
                    raft.first_index(),
                    raft.last_index()
                ));
            }
        }
        Ok(())
    }

    fn check_commits(
        &mut self,
        node: NodeId,
        track: &mut NodeTrack,
        raft: &Raft,
    ) -> Result<(), String> {
        let commit = raft.commit_index();
        if commit < track.commit_checked {
            return Err(format!(
                "{node}: the commit index went back from {} to {commit} within one \
                 incarnation of the replica",
                track.commit_checked
            ));
        }
        // Entries below the first index were compacted into the snapshot.
        let start = track
            .commit_checked
            .max(raft.first_index().prev().unwrap_or_default());
        for index in start.0 + 1..=commit.0 {
            let index = LogIndex(index);
            let Some(entry) = raft.entry(index) else {
                return Err(format!(
                    "{node}: committed entry {index} is missing from its log {}..={} \
                     (commit {commit})",
                    raft.first_index(),
                    raft.last_index()
                ));
            };
            self.compare_committed(node, raft.term(), index, entry)?;
        }
        track.commit_checked = commit;
        Ok(())
    }

    fn compare_committed(
        &mut self,
        node: NodeId,
        node_term: Term,
        index: LogIndex,
        entry: &Entry,
    ) -> Result<(), String> {
        let hash = entry_hash(entry);
        self.entries_compared += 1;
        match self.committed.entry(index) {
            MapEntry::Vacant(vacant) => {
                vacant.insert(CommittedEntry {
                    term: entry.term,
                    hash,
                    node,
                    term_bound: node_term,
                });
                if self.committed.len() > COMMITTED_TRACKED_MAX {
                    self.committed.pop_first();
                }
            }
            MapEntry::Occupied(mut occupied) => {
                let first = occupied.get_mut();
                if first.term != entry.term || first.hash != hash {
                    return Err(format!(
                        "committed entry {index} changed: {node} holds term {} (payload hash \
                         {hash:016x}), {} held term {} (payload hash {:016x}) committed",
                        entry.term, first.node, first.term, first.hash
                    ));
                }
                first.term_bound = first.term_bound.min(node_term);
            }
        }
        Ok(())
    }

    fn check_state(
        &mut self,
        node: NodeId,
        track: &mut NodeTrack,
        kv: &KvStore,
    ) -> Result<(), String> {
        let applied = kv.applied_index();
        if track.applied_digested == Some(applied) {
            return Ok(());
        }
        track.applied_digested = Some(applied);
        let digest = kv.digest();
        self.digests_compared += 1;
        match self.digests.entry(applied) {
            MapEntry::Vacant(vacant) => {
                vacant.insert((digest, node));
                if self.digests.len() > DIGESTS_TRACKED_MAX {
                    self.digests.pop_first();
                }
            }
            MapEntry::Occupied(occupied) => {
                let (first_digest, first_node) = *occupied.get();
                if first_digest != digest {
                    return Err(format!(
                        "state machines diverge at applied index {applied}: {node} has digest \
                         {digest:016x}, {first_node} had {first_digest:016x}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One history line with its true time.
#[derive(Clone, Debug)]
struct HistoryLine {
    time: Instant,
    event: HistoryEvent,
}

/// An operation invoked and not yet completed.
#[derive(Clone, Copy, Debug)]
struct Invoked {
    at: Instant,
    node: NodeId,
    recorded: bool,
}

/// The recorded history and the figures drawn from it.
#[derive(Default)]
struct HistoryBook {
    lines: Vec<HistoryLine>,
    outstanding: BTreeMap<u64, Invoked>,
    operations_recorded: usize,
    operations_unrecorded: u64,
    ok_count: u64,
    fail_count: u64,
    info_count: u64,
    writes_ok: u64,
    reads_linearizable_ok: u64,
    reads_lease_ok: u64,
    reads_stale_served: u64,
    /// (node, client) pairs that completed an operation invoked after the heal.
    completed_after_heal: BTreeSet<(NodeId, u8)>,
    writes_ok_after_heal: u64,
}

impl HistoryBook {
    fn on_event(
        &mut self,
        at: Instant,
        node: NodeId,
        event: &HistoryEvent,
        healed_at: Option<Instant>,
    ) -> Result<(), String> {
        if event.kind == HistoryKind::Invoke {
            let recorded = self.operations_recorded < HISTORY_OPERATIONS_MAX;
            if recorded {
                self.operations_recorded += 1;
                self.lines.push(HistoryLine {
                    time: at,
                    event: event.clone(),
                });
            } else {
                self.operations_unrecorded += 1;
            }
            let invoked = Invoked { at, node, recorded };
            if self.outstanding.insert(event.process, invoked).is_some() {
                return Err(format!(
                    "{node}: process {} invoked a second operation (a client bug)",
                    event.process
                ));
            }
            return Ok(());
        }
        let Some(invoked) = self.outstanding.remove(&event.process) else {
            return Err(format!(
                "{node}: process {} completed an operation it never invoked (a client bug)",
                event.process
            ));
        };
        if invoked.recorded {
            self.lines.push(HistoryLine {
                time: at,
                event: event.clone(),
            });
        }
        self.count(event);
        if healed_at.is_some_and(|healed| invoked.at >= healed) {
            self.completed_after_heal
                .insert((invoked.node, event.client));
            let is_write = !matches!(event.call, Call::Read(_));
            if is_write && event.kind == HistoryKind::Ok {
                self.writes_ok_after_heal += 1;
            }
        }
        Ok(())
    }

    fn count(&mut self, event: &HistoryEvent) {
        match event.kind {
            HistoryKind::Invoke => {}
            HistoryKind::Ok => self.ok_count += 1,
            HistoryKind::Fail => self.fail_count += 1,
            HistoryKind::Info => self.info_count += 1,
        }
        if event.kind != HistoryKind::Ok {
            return;
        }
        match event.consistency {
            None => self.writes_ok += 1,
            Some(ReadConsistency::Linearizable) => self.reads_linearizable_ok += 1,
            Some(ReadConsistency::Lease) => self.reads_lease_ok += 1,
            Some(ReadConsistency::Stale) => {}
        }
    }

    /// The history in synod-check's JSON Lines format (docs/consistency.md), with or
    /// without the stale reads.
    fn jsonl(&self, with_stale: bool) -> String {
        let mut text = String::with_capacity(self.lines.len() * 96);
        for line in &self.lines {
            let event = &line.event;
            if !with_stale && event.consistency == Some(ReadConsistency::Stale) {
                continue;
            }
            let index = event
                .index
                .map_or(String::new(), |index| format!(",\"index\":{index}"));
            let _ = writeln!(
                text,
                "{{\"process\":{},\"type\":\"{}\",\"f\":\"{}\",\"key\":\"k{}\",\"value\":{},\
                 \"time\":{}{index}}}",
                event.process,
                event.kind.name(),
                event.call.function_name(),
                event.key,
                call_value_json(&event.call),
                line.time.as_nanos()
            );
        }
        text
    }
}

fn value_json(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Int(number) => number.to_string(),
        Value::Str(text) => {
            let escaped: String = text
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .map(|c| match c {
                    '"' | '\\' => '_',
                    other => other,
                })
                .collect();
            format!("\"{escaped}\"")
        }
    }
}

fn call_value_json(call: &Call) -> String {
    match call {
        Call::Read(value) | Call::Write(value) => value_json(value),
        Call::Cas(expected, new) => format!("[{},{}]", value_json(expected), value_json(new)),
        Call::Delete => "null".to_string(),
    }
}

/// The per-key order search budget of the session check with stale reads (configurations).
const SESSION_KEY_NODES_MAX: u64 = 1 << 18;

/// The budget of the whole-history sequential search with stale reads (configurations).
/// Runs need none: the order the replies report (store revisions) is verified instead.
const SEQUENTIAL_NODES_MAX: u64 = 1 << 16;

/// The scenario.
pub struct RaftScenario {
    nodes_count: usize,
    workload: Workload,
    clock_drift_ppm_max: i64,
    /// Whether this run drives clocks outside their bound (set from the fault mix before
    /// the first boot): then leases are off.
    clocks_outside_bound: Cell<bool>,
    /// Whether this run's network duplicates messages (set from the fault mix).
    duplicates_possible: Cell<bool>,
    incarnations: Arc<AtomicU64>,
    tracks: Vec<NodeTrack>,
    safety: Safety,
    history: HistoryBook,
    next_observation: u64,
    options_checked: bool,
    /// The checker's verdict, once the history was checked.
    verdict: Option<String>,
    finished: bool,
    /// Whether `report` checks a history the liveness judgement did not reach.
    history_check_in_report: bool,
    /// Where `report` leaves the history (JSON Lines), for `synod sim --history`.
    history_sink: Option<HistorySink>,
    /// The operator on node 1 that changes membership and leadership during the run.
    operator: Option<OperatorPlan>,
    /// Stale reads answered: (when, key, value read), checked against the writes.
    stale_reads: Vec<(Instant, u8, Value)>,

    /// Operator changes the leader carried out (applied or started) and refused.
    operator_changes_done: u64,
    operator_changes_refused: u64,
    /// How every replica's followers suspect their leader.
    leader_suspicion: LeaderSuspicion,
    /// The deliberate protocol bugs every replica runs with.
    #[cfg(feature = "planted-bugs")]
    planted: synod_raft::PlantedBugs,
}

/// The cluster id the scenario's replicas share.
pub const SCENARIO_CLUSTER_ID: u64 = 0x5e_ed;

/// Stale reads remembered for the check, at most.
const STALE_READS_CHECKED_MAX: usize = 100_000;

/// A run's history in synod-check's format, in the two shapes the run checks.
#[derive(Clone, Debug, Default)]
pub struct RecordedHistory {
    /// Writes, linearizable and lease reads: the history checked for linearizability.
    pub checked: String,
    /// The same with the stale reads too: the history checked for sequential consistency
    /// and the session guarantees.
    pub with_stale: String,
}

/// Receives a run's history at the end of the run.
pub type HistorySink = Arc<Mutex<Option<RecordedHistory>>>;

impl RaftScenario {
    /// The scenario with the default workload, for runs with the default clock bound.
    pub fn new(nodes_count: usize) -> RaftScenario {
        RaftScenario::with_workload(nodes_count, Workload::default())
    }

    /// Panics on a workload outside its limits (callers validate what users give them).
    pub fn with_workload(nodes_count: usize, workload: Workload) -> RaftScenario {
        if let Err(error) = workload.validate() {
            panic!("{error}");
        }
        RaftScenario {
            nodes_count,
            workload,
            clock_drift_ppm_max: CLOCK_DRIFT_PPM_MAX_DEFAULT,
            clocks_outside_bound: Cell::new(false),
            duplicates_possible: Cell::new(false),
            incarnations: Arc::new(AtomicU64::new(0)),
            tracks: (0..nodes_count).map(|_| NodeTrack::default()).collect(),
            safety: Safety::default(),
            history: HistoryBook::default(),
            next_observation: 0,
            options_checked: false,
            verdict: None,
            finished: false,
            history_check_in_report: true,
            history_sink: None,
            operator: Some(OperatorPlan::default()),
            stale_reads: Vec::new(),

            operator_changes_done: 0,
            operator_changes_refused: 0,
            leader_suspicion: LeaderSuspicion::RandomizedTimeout,
            #[cfg(feature = "planted-bugs")]
            planted: synod_raft::PlantedBugs::default(),
        }
    }

    /// For runs whose options allow a drift other than the default: the lease must assume
    /// the run's bound.
    /// Runs without the operator: no membership changes or leader transfers.
    pub fn without_operator(mut self) -> RaftScenario {
        self.operator = None;
        self
    }

    pub fn with_clock_drift_ppm_max(mut self, drift_ppm_max: i64) -> RaftScenario {
        self.clock_drift_ppm_max = drift_ppm_max;
        self
    }

    /// Runs every replica with `suspicion` instead of the randomized election timeout.
    pub fn with_leader_suspicion(mut self, suspicion: LeaderSuspicion) -> RaftScenario {
        self.leader_suspicion = suspicion;
        self
    }

    /// Plants `bugs` in the Raft engine of every replica (of every incarnation), so that a
    /// test can show the scenario's checks catch each deliberate protocol bug.
    #[cfg(feature = "planted-bugs")]
    pub fn with_planted(mut self, bugs: synod_raft::PlantedBugs) -> RaftScenario {
        self.planted = bugs;
        self
    }

    /// For benchmarks, whose runs never reach the liveness judgement: `report` does not
    /// check the (large) history then.
    pub fn without_history_check_in_report(mut self) -> RaftScenario {
        self.history_check_in_report = false;
        self
    }

    /// Leaves the run's history in `sink` when the run ends (replay a seed with it to look
    /// at a violation with `synod check`).
    pub fn with_history_sink(mut self, sink: HistorySink) -> RaftScenario {
        self.history_sink = Some(sink);
        self
    }

    fn lease(&self) -> Option<LeaseConfig> {
        (!self.clocks_outside_bound.get()).then(|| lease_for_drift(self.clock_drift_ppm_max))
    }

    /// The history recorded so far, in synod-check's format.
    pub fn history_jsonl(&self) -> String {
        self.history.jsonl(false)
    }

    /// The lease assumes the configured drift bound; a run that allows more would break
    /// it without the scenario knowing.
    fn check_options(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        if self.options_checked {
            return Ok(());
        }
        self.options_checked = true;
        if self.lease().is_some() && view.clock_drift_ppm_max() > self.clock_drift_ppm_max {
            return Err(format!(
                "the run allows clocks to drift {} ppm but the scenario's leases assume {} ppm: \
                 build it with RaftScenario::with_clock_drift_ppm_max",
                view.clock_drift_ppm_max(),
                self.clock_drift_ppm_max
            ));
        }
        Ok(())
    }

    fn read_observations(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        let healed_at = match view.phase() {
            Phase::Liveness { healed_at } => Some(healed_at),
            Phase::Safety => None,
        };
        for (index, record) in view.observations_since(self.next_observation) {
            if index != self.next_observation {
                return Err(format!(
                    "observations {}..{index} were dropped before the scenario read them",
                    self.next_observation
                ));
            }
            self.next_observation = index + 1;
            if let Some(event) = record.downcast::<HistoryEvent>() {
                self.history
                    .on_event(record.at, record.node, event, healed_at)?;
            } else if let Some(stale) = record.downcast::<StaleReadServed>() {
                self.history.reads_stale_served += 1;
                if self.stale_reads.len() < STALE_READS_CHECKED_MAX {
                    self.stale_reads
                        .push((record.at, stale.key, stale.value.clone()));
                }
            } else if let Some(change) = record.downcast::<OperatorChange>() {
                if change.outcome.starts_with("Applied") || change.outcome == "Accepted" {
                    self.operator_changes_done += 1;
                } else {
                    self.operator_changes_refused += 1;
                }
            } else if let Some(anomaly) = record.downcast::<ClientAnomaly>() {
                return Err(format!(
                    "{} (boot {}): {}",
                    record.node, record.boot, anomaly.description
                ));
            }
        }
        Ok(())
    }

    /// Checks every running replica; returns whether some node leads. (It need not be a
    /// core node: the other nodes may be healthy too. A leader cut off from the others does
    /// not commit, and progress also asks for a committed write.)
    fn check_replicas(&mut self, view: &ClusterView<'_>) -> Result<bool, String> {
        let mut leads = false;
        for node in view.node_ids() {
            let Some(system) = view.system(node) else {
                continue;
            };
            let track = &mut self.tracks[node.0 as usize - 1];
            let incarnation = (view.boot_generation(node), system.stats().restarts_count);
            if track.incarnation != Some(incarnation) {
                self.safety.replica_incarnations += 1;
                self.safety.totals.add(&track.stats);
                *track = NodeTrack {
                    incarnation: Some(incarnation),
                    replica: system.find("replica"),
                    membership: track.membership.take(),
                    ..NodeTrack::default()
                };
            }
            let Some(replica) = track
                .replica
                .and_then(|id| system.actor::<ReplicaActor>(id))
            else {
                continue;
            };
            let Some(raft) = replica.raft() else {
                continue;
            };
            track.stats = raft.stats().clone();
            self.safety.check_replica(node, track, raft, replica.kv())?;
            leads |= raft.role() == Role::Leader;
        }
        Ok(leads)
    }

    fn liveness_reached(&self, view: &ClusterView<'_>, leads: bool) -> bool {
        if !matches!(view.phase(), Phase::Liveness { .. }) || !leads {
            return false;
        }
        if self.history.writes_ok_after_heal == 0 {
            return false;
        }
        let clients = self.workload.clients_per_node as u8;
        view.core_nodes().into_iter().all(|node| {
            (0..clients).all(|client| self.history.completed_after_heal.contains(&(node, client)))
        })
    }

    /// Runs synod-check on the history; `Err` with its explanation unless linearizable.
    /// Stale reads may be old, but never invented: each value read must have been written
    /// to that key by a write invoked before the read was answered.
    fn check_stale_reads(&self) -> Result<(), String> {
        let mut first_written: BTreeMap<(u8, Value), Instant> = BTreeMap::new();
        for line in &self.history.lines {
            let event = &line.event;
            let written = match (&event.kind, &event.call) {
                (HistoryKind::Invoke, Call::Write(value) | Call::Cas(_, value)) => value,
                _ => continue,
            };
            first_written
                .entry((event.key, written.clone()))
                .or_insert(line.time);
        }
        for (at, key, value) in &self.stale_reads {
            if *value == Value::Null {
                continue;
            }
            let written_at = first_written.get(&(*key, value.clone()));
            if written_at.is_none_or(|written_at| written_at > at) {
                return Err(format!(
                    "a stale read of key {key} answered at {at:?} returned {value}, which no \
                     write had produced by then"
                ));
            }
        }
        Ok(())
    }

    fn check_history(&mut self) -> Result<(), String> {
        if self.history.operations_unrecorded == 0 {
            self.check_stale_reads()?;
        }
        // Linearizable and lease reads and every write: linearizable.
        let text = self.history.jsonl(false);
        let history = parse_history(&text, ParseOptions::default()).map_err(|error| {
            format!("the recorded history is malformed (a scenario bug): {error}")
        })?;
        let options = CheckOptions {
            models: Models {
                linearizable: true,
                sequential: false,
                session: false,
                lost_writes: true,
            },
            memory_bytes_max: CHECK_MEMORY_BYTES_MAX,
            threads: 1,
            ..CheckOptions::default()
        };
        let report = check(&history, &options);
        let mut verdict: Vec<String> = report
            .model_verdicts()
            .into_iter()
            .map(|(model, verdict)| format!("{model}={}", verdict.name()))
            .collect();
        if let Verdict::Violation | Verdict::Unknown = report.verdict {
            self.verdict = Some(verdict.join(" "));
            return Err(format!(
                "the history of {} operations is not shown linearizable:\n{}",
                history.operations.len(),
                report.text(&history)
            ));
        }
        // With the stale reads too: each carries its client's session token, so the whole
        // history keeps the session guarantees (read-your-writes, monotonic reads, ...), and
        // it is sequentially consistent: the store's revision order, which every reply
        // reports, is one order that respects every client's own order.
        let text = self.history.jsonl(true);
        let history = parse_history(&text, ParseOptions::default()).map_err(|error| {
            format!("the recorded history is malformed (a scenario bug): {error}")
        })?;
        let options = CheckOptions {
            models: Models {
                linearizable: false,
                sequential: true,
                session: true,
                lost_writes: false,
            },
            // The replies' revisions (`index`) give every key, and the whole history, an
            // order the checker verifies step by step; a search runs only where that fails,
            // bounded so every seed stays quick. Running out of it leaves a model unknown,
            // which fails the run like a violation: it is not a proof.
            key_sequential_nodes_max: SESSION_KEY_NODES_MAX,
            sequential_nodes_max: SEQUENTIAL_NODES_MAX,
            memory_bytes_max: CHECK_MEMORY_BYTES_MAX,
            threads: 1,
            ..CheckOptions::default()
        };
        let report = check(&history, &options);
        verdict.extend(
            report
                .model_verdicts()
                .into_iter()
                .map(|(model, verdict)| format!("stale-included-{model}={}", verdict.name())),
        );
        self.verdict = Some(verdict.join(" "));
        match report.verdict {
            Verdict::Violation => Err(format!(
                "the history with its {} stale reads breaks a session guarantee:\n{}",
                self.history.reads_stale_served,
                report.text(&history)
            )),
            Verdict::Unknown => Err(format!(
                "the checker could not decide the history with its {} stale reads within its \
                 budget (write it with --history-with-stale FILE and run synod check on it):\n{}",
                self.history.reads_stale_served,
                report.text(&history)
            )),
            Verdict::Valid => Ok(()),
        }
    }
}

impl Scenario for RaftScenario {
    fn name(&self) -> &str {
        RAFT_SCENARIO
    }

    /// Every voter set in any replica's last seen configuration: the operator's membership
    /// changes may have left, say, two voters of three nodes, and a core of a majority of
    /// the nodes that holds only one of them cannot elect a leader.
    fn liveness_quorums(&self) -> Vec<Vec<NodeId>> {
        let mut quorums: Vec<Vec<NodeId>> = Vec::new();
        let memberships = self
            .tracks
            .iter()
            .filter_map(|track| track.membership.as_ref());
        for membership in memberships {
            for voters in [&membership.voters, &membership.voters_outgoing] {
                if !voters.is_empty() && !quorums.contains(voters) {
                    quorums.push(voters.clone());
                }
            }
        }
        quorums
    }

    fn nodes_count(&self) -> usize {
        self.nodes_count
    }

    fn adjust_fault_mix(&self, mix: &mut FaultMix) {
        mix.disk.bit_flip_probability = 0.0;
        self.clocks_outside_bound.set(mix.clock_outside_bound);
        self.duplicates_possible
            .set(mix.network.duplicate_probability > 0.0);
    }

    fn boot(&mut self, node: NodeId, system: &mut System) {
        let mut config = scenario_replica_config(self.nodes_count, self.lease());
        config.raft.leader_suspicion = self.leader_suspicion.clone();
        #[cfg(feature = "planted-bugs")]
        {
            config.planted = self.planted;
        }
        let replica = ChildSpec::new("replica", move || ReplicaActor::new(config.clone()));
        if let Err(error) = system.spawn(replica) {
            panic!("cannot boot the replica of {node}: {error}");
        }
        if let (Some(plan), NodeId(1)) = (&self.operator, node) {
            let (plan, nodes_count) = (plan.clone(), self.nodes_count);
            let operator =
                ChildSpec::new("operator", move || Operator::new(nodes_count, plan.clone()));
            if let Err(error) = system.spawn(operator) {
                panic!("cannot boot the operator of {node}: {error}");
            }
        }
        for index in 0..self.workload.clients_per_node {
            let nodes_count = self.nodes_count;
            let workload = self.workload.clone();
            let incarnations = Arc::clone(&self.incarnations);
            let duplicates_possible = self.duplicates_possible.get();
            let client = ChildSpec::new(format!("client-{index}"), move || {
                Client::new(
                    nodes_count,
                    index as u8,
                    workload.clone(),
                    Arc::clone(&incarnations),
                    duplicates_possible,
                )
            });
            if let Err(error) = system.spawn(client) {
                panic!("cannot boot client {index} of {node}: {error}");
            }
        }
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        self.check_options(view)?;
        self.read_observations(view)?;
        let leads = self.check_replicas(view)?;
        if !self.finished && self.liveness_reached(view, leads) {
            self.check_history()?;
            self.finished = true;
        }
        Ok(())
    }

    fn progress(&mut self, _view: &ClusterView<'_>) -> bool {
        self.finished
    }

    fn liveness_bound(&self) -> Duration {
        // Elections take a few 100-200 ms timeouts; a client's operation in flight at the
        // heal may need its whole 1 s timeout, and then one more round trip.
        Duration::from_secs(10)
    }

    fn report(&mut self, view: &ClusterView<'_>) -> Vec<(String, String)> {
        if self.history_check_in_report && self.verdict.is_none() && !self.history.lines.is_empty()
        {
            // The run ended before the liveness judgement: still say what the history shows.
            let _ = self.check_history();
        }
        if let Some(sink) = &self.history_sink {
            let mut slot = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *slot = Some(RecordedHistory {
                checked: self.history.jsonl(false),
                with_stale: self.history.jsonl(true),
            });
        }
        let mut totals = self.safety.totals;
        for track in &self.tracks {
            totals.add(&track.stats);
        }
        let book = &self.history;
        let commits = self
            .safety
            .committed
            .last_key_value()
            .map_or(0, |(index, _)| index.0);
        let figures: Vec<(&str, String)> = vec![
            (
                "operator_changes_done",
                self.operator_changes_done.to_string(),
            ),
            (
                "operator_changes_refused",
                self.operator_changes_refused.to_string(),
            ),
            ("operations_ok", book.ok_count.to_string()),
            ("operations_fail", book.fail_count.to_string()),
            ("operations_info", book.info_count.to_string()),
            ("operations_unfinished", book.outstanding.len().to_string()),
            (
                "operations_unrecorded",
                book.operations_unrecorded.to_string(),
            ),
            ("writes_ok", book.writes_ok.to_string()),
            (
                "reads_linearizable_ok",
                book.reads_linearizable_ok.to_string(),
            ),
            ("reads_lease_ok", book.reads_lease_ok.to_string()),
            ("reads_stale_served", book.reads_stale_served.to_string()),
            ("reads_served_by_lease", totals.reads_lease.to_string()),
            (
                "reads_served_by_read_index",
                totals.reads_read_index.to_string(),
            ),
            ("lease_reads", on_off(self.lease().is_some()).to_string()),
            ("lease_refused_skew", totals.lease_refused_skew.to_string()),
            ("commit_index_max", commits.to_string()),
            ("entries_compared", self.safety.entries_compared.to_string()),
            ("digests_compared", self.safety.digests_compared.to_string()),
            ("terms_with_leader", self.safety.leaders.len().to_string()),
            (
                "replica_incarnations",
                self.safety.replica_incarnations.to_string(),
            ),
            ("elections_started", totals.elections_started.to_string()),
            ("leaderships_won", totals.leaderships_won.to_string()),
            (
                "check_quorum_step_downs",
                totals.check_quorum_step_downs.to_string(),
            ),
            ("append_conflicts", totals.append_conflicts.to_string()),
            ("snapshots_sent", totals.snapshots_sent.to_string()),
            (
                "snapshots_installed",
                totals.snapshots_installed.to_string(),
            ),
            (
                "history_verdict",
                self.verdict
                    .clone()
                    .unwrap_or_else(|| "not checked".to_string()),
            ),
            (
                "virtual_seconds",
                format!("{:.3}", (view.now() - Instant::ZERO).as_secs_f64()),
            ),
        ];
        figures
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect()
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
