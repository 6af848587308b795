//! The replica actor: one Raft engine, the key-value state machine it drives, and the
//! durable storage under both, wired to the node's network, disk and clock services.
//!
//! The write path, straight through: a client request arrives on CLIENT_PORT -> `Propose`
//! -> Raft writes `Persist` (to `RaftStorage`, group-committed) and `Send` (append requests
//! to peers) -> peers acknowledge once durable -> the entry commits -> `Apply` -> the state
//! machine applies it -> the response goes back to the client with the entry's fencing
//! token. Reads take ReadIndex or the lease instead of the log, or are served at once from
//! local state with their staleness.
//!
//! A disk that fails under the replica (a write or fsync error: the disk is full or
//! failing) latches its storage, and nothing more is made durable or acknowledged. The
//! replica then turns read-only instead of failing: it stops stepping Raft (it neither votes
//! nor acknowledges, so the others carry on without it), answers pending writes as unknown
//! and refuses new ones with a `READONLY` reason, keeps serving stale reads from the state it
//! has applied, and after [`STORAGE_RETRY_AFTER`] fails on purpose so that its supervisor
//! restarts it: the new incarnation recovers from disk and, if writes succeed again, rejoins.
//! Restarting less often than the supervisor's intensity keeps a dead disk from escalating
//! to the whole node.

use std::collections::BTreeMap;

use bytes::Bytes;
use synod_actor::{Actor, Context, DiskCompletion, DiskRequestId, Inbound, Port};
use synod_core::{Instant, LogIndex, NodeId, Outbox, Protocol, Validate};
use synod_kv::{ApplyContext, KvConfig, KvStore, Operation};
use synod_raft::{
    EntryPayload, Input, Membership, Output, ProposeError, Raft, RaftConfig, ReadError, ReadLevel,
    Recovered, Role, Snapshot, SnapshotMeta,
};
use synod_wal::IoTag;

use crate::client::{
    AdminRequest, ClientRequest, ClientResponse, Outcome, ReadConsistency, RequestBody,
};
use crate::peer::{PeerDecodeError, decode_peer_message, encode_peer_message};
use crate::raft_storage::{RaftStorage, RaftStorageConfig, StorageOutput};

/// The port Raft peer messages travel on.
pub const RAFT_PORT: Port = Port(2);
/// The port client requests arrive on.
pub const CLIENT_PORT: Port = Port(3);
/// Client writes waiting for their entry to apply.
pub const PROPOSALS_PENDING_MAX: usize = 16_384;
/// Reads waiting for their index to be confirmed or applied.
pub const READS_PENDING_MAX: usize = 16_384;
/// Effects one Raft step may produce.
pub const OUTBOX_CAPACITY: usize = 1 << 16;
/// Storage outputs handled per pump before yielding to other messages.
const PUMP_ROUNDS_MAX: usize = 1_024;
/// How long a replica whose storage failed stays read-only before it restarts to try the
/// disk again; well under the node supervisor's restart intensity (10 in 10 s).
pub const STORAGE_RETRY_AFTER: synod_core::Duration = synod_core::Duration::from_secs(2);

/// Everything a replica needs to start.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub raft: RaftConfig,
    pub kv: KvConfig,
    pub storage: RaftStorageConfig,
    /// The initial voters, used when neither snapshot nor log holds a configuration.
    pub bootstrap: Vec<NodeId>,
    /// The cluster's id: peer messages carry it, and those from another cluster are refused
    /// and counted.
    pub cluster_id: u64,
    /// Deliberate protocol bugs the engine runs with (all off unless a test plants one), so
    /// that the simulator can show its checks catch each.
    #[cfg(feature = "planted-bugs")]
    pub planted: synod_raft::PlantedBugs,
}

impl ReplicaConfig {
    /// A config with no planted bugs. Construct configs with it rather than with a struct
    /// literal: the literal would need a `planted` field in builds with the `planted-bugs`
    /// feature and none without it.
    pub fn new(
        raft: RaftConfig,
        kv: KvConfig,
        storage: RaftStorageConfig,
        bootstrap: Vec<NodeId>,
        cluster_id: u64,
    ) -> ReplicaConfig {
        ReplicaConfig {
            raft,
            kv,
            storage,
            bootstrap,
            cluster_id,
            #[cfg(feature = "planted-bugs")]
            planted: synod_raft::PlantedBugs::default(),
        }
    }
}

/// Messages of the replica actor.
#[derive(Debug)]
pub enum ReplicaMessage {
    Inbound(Inbound),
    Tick,
    Disk(DiskCompletion),
    StorageTimer,
    /// Read-only after a storage failure: time to restart and try the disk again.
    StorageRetry,
}

impl From<Inbound> for ReplicaMessage {
    fn from(inbound: Inbound) -> ReplicaMessage {
        ReplicaMessage::Inbound(inbound)
    }
}

/// Who waits for an answer: the client's node, its reply port and its request id.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    node: NodeId,
    port: Port,
    request: u64,
}

/// A read waiting for its index to be confirmed or applied.
#[derive(Debug)]
struct WaitingRead {
    waiter: Waiter,
    query: Operation,
    /// A stale read waiting for the client's session token: served with its staleness.
    stale: bool,
}

/// Counters of what the replica refused or dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplicaStats {
    pub peer_messages_undecodable: u64,
    pub peer_messages_foreign: u64,
    pub peer_messages_spoofed: u64,
    pub client_requests_undecodable: u64,
    pub client_requests_refused: u64,
    pub sends_failed: u64,
    pub entries_applied: u64,
    pub reads_served: u64,
    /// Times the storage failed and the replica turned read-only.
    pub storage_failures: u64,
    /// Peer messages dropped while read-only.
    pub peer_messages_read_only: u64,
}

/// A running replica, between boot and the state machine.
struct Running {
    raft: Raft,
    kv: KvStore,
}

pub struct ReplicaActor {
    config: ReplicaConfig,
    storage: RaftStorage,
    running: Option<Running>,
    outbox: Outbox<Output>,
    in_flight: BTreeMap<DiskRequestId, IoTag>,
    storage_deadline: Option<Instant>,
    next_id: u64,
    proposals: BTreeMap<u64, Waiter>,
    /// Proposals in the log: index -> (term, proposal id).
    proposed: BTreeMap<LogIndex, (synod_core::Term, u64)>,
    reads: BTreeMap<u64, WaitingRead>,
    /// Reads confirmed at an index, waiting for the state machine to apply it.
    reads_waiting: BTreeMap<(LogIndex, u64), WaitingRead>,
    snapshot_saving: bool,
    /// The storage's failure, once it failed: the replica is read-only.
    storage_failure: Option<String>,
    stats: ReplicaStats,
}

impl ReplicaActor {
    /// Panics on an invalid config: configs from users are validated where they are read.
    pub fn new(config: ReplicaConfig) -> ReplicaActor {
        if let Err(error) = config.raft.validate() {
            panic!("invalid replica config: {error}");
        }
        ReplicaActor {
            storage: RaftStorage::new(config.storage.clone()),
            config,
            running: None,
            outbox: Outbox::new(OUTBOX_CAPACITY),
            in_flight: BTreeMap::new(),
            storage_deadline: None,
            next_id: 1,
            proposals: BTreeMap::new(),
            proposed: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_waiting: BTreeMap::new(),
            snapshot_saving: false,
            storage_failure: None,
            stats: ReplicaStats::default(),
        }
    }

    /// The Raft engine, once storage has booted.
    pub fn raft(&self) -> Option<&Raft> {
        self.running.as_ref().map(|running| &running.raft)
    }

    /// The state machine, once storage has booted.
    pub fn kv(&self) -> Option<&KvStore> {
        self.running.as_ref().map(|running| &running.kv)
    }

    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }

    /// The disk error that made this replica read-only, if one did.
    pub fn storage_failure(&self) -> Option<&str> {
        self.storage_failure.as_deref()
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ----- storage -----

    /// Moves storage IO to the disk service and storage outputs into Raft, until quiet.
    fn pump(&mut self, ctx: &mut Context<'_, ReplicaMessage>) {
        for _ in 0..PUMP_ROUNDS_MAX {
            if self.storage_failure.is_some() {
                return;
            }
            let now = ctx.now();
            while let Some((tag, op)) = self.storage.poll_io(now) {
                match ctx.disk(op, ReplicaMessage::Disk) {
                    Ok(id) => {
                        self.in_flight.insert(id, tag);
                    }
                    Err(error) => {
                        ctx.fail(format!("replica: cannot submit disk IO: {error}"));
                        return;
                    }
                }
            }
            self.arm_storage_timer(ctx);
            let Some(output) = self.storage.poll_output() else {
                return;
            };
            self.on_storage_output(ctx, output);
        }
    }

    fn arm_storage_timer(&mut self, ctx: &mut Context<'_, ReplicaMessage>) {
        let deadline = self.storage.deadline();
        if let Some(deadline) = deadline
            && self.storage_deadline != Some(deadline)
        {
            self.storage_deadline = Some(deadline);
            let after = deadline.saturating_duration_since(ctx.now());
            ctx.set_timer(after, ReplicaMessage::StorageTimer);
        }
    }

    fn on_storage_output(&mut self, ctx: &mut Context<'_, ReplicaMessage>, output: StorageOutput) {
        match output {
            StorageOutput::Recovered(recovered) => self.start(ctx, recovered),
            StorageOutput::Persisted { id } => self.step(ctx, Input::Persisted { id }),
            StorageOutput::SnapshotSaved(snapshot) => {
                self.snapshot_saving = false;
                self.step(ctx, Input::SnapshotTaken { snapshot });
            }
            StorageOutput::Failed(reason) => self.enter_read_only(ctx, reason),
        }
    }

    /// The storage failed: nothing more becomes durable. Answers what waits, and stays up
    /// read-only until [`STORAGE_RETRY_AFTER`].
    fn enter_read_only(&mut self, ctx: &mut Context<'_, ReplicaMessage>, reason: String) {
        if self.storage_failure.is_some() {
            return;
        }
        self.stats.storage_failures += 1;
        let unknown = format!(
            "this node's disk failed ({reason}) while the write was pending; its outcome is \
             unknown"
        );
        self.proposed.clear();
        for waiter in std::mem::take(&mut self.proposals).into_values() {
            let reason = unknown.clone();
            self.respond(ctx, waiter, Outcome::Unknown { reason });
        }
        let refused = read_only_reason(&reason);
        let reads = std::mem::take(&mut self.reads).into_values();
        let waiting = std::mem::take(&mut self.reads_waiting).into_values();
        for read in reads.chain(waiting) {
            self.refuse(ctx, read.waiter, &refused);
        }
        self.storage_failure = Some(reason);
        ctx.set_timer(STORAGE_RETRY_AFTER, ReplicaMessage::StorageRetry);
    }

    /// A message while read-only: stale reads are served, everything else is refused or
    /// dropped, and the retry timer restarts the replica.
    fn on_message_read_only(
        &mut self,
        ctx: &mut Context<'_, ReplicaMessage>,
        message: ReplicaMessage,
        failure: String,
    ) {
        match message {
            ReplicaMessage::Inbound(inbound) if inbound.port == RAFT_PORT => {
                self.stats.peer_messages_read_only += 1;
            }
            ReplicaMessage::Inbound(inbound) => {
                let Ok(request) = ClientRequest::decode(&inbound.payload) else {
                    self.stats.client_requests_undecodable += 1;
                    return;
                };
                let waiter = Waiter {
                    node: inbound.from,
                    port: Port(request.reply_port),
                    request: request.id,
                };
                let applied = self.kv().map(KvStore::applied_index);
                match (request.body, applied) {
                    (
                        RequestBody::Read {
                            query,
                            consistency: ReadConsistency::Stale,
                            min_applied,
                        },
                        Some(applied),
                    ) if applied >= LogIndex(min_applied) => {
                        match synod_kv::Command::decode(&query) {
                            Ok(command) => self.serve_stale(ctx, waiter, &command.op),
                            Err(error) => {
                                let reason = format!("the read query does not decode: {error}");
                                self.refuse(ctx, waiter, &reason);
                            }
                        }
                    }
                    _ => self.refuse(ctx, waiter, &read_only_reason(&failure)),
                }
            }
            ReplicaMessage::StorageRetry => ctx.fail(format!(
                "replica storage failed ({failure}); restarting to try the disk again"
            )),
            // Raft is stopped and the storage latched: their timers and completions are moot.
            ReplicaMessage::Tick | ReplicaMessage::Disk(_) | ReplicaMessage::StorageTimer => {}
        }
    }

    /// Storage booted: restore the state machine and start the engine.
    fn start(&mut self, ctx: &mut Context<'_, ReplicaMessage>, recovered: Recovered) {
        let kv = match &recovered.snapshot {
            Some(snapshot) => KvStore::restore(self.config.kv.clone(), &snapshot.data)
                .map_err(|error| format!("the snapshot's state machine: {error}")),
            None => KvStore::new(self.config.kv.clone()).map_err(|error| error.to_string()),
        };
        let kv = match kv {
            Ok(kv) => kv,
            Err(reason) => return ctx.fail(format!("replica start: {reason}")),
        };
        let bootstrap = Membership::with_voters(&self.config.bootstrap);
        let prng = ctx.fork_prng();
        #[cfg_attr(not(feature = "planted-bugs"), expect(unused_mut))]
        let mut raft = Raft::new(
            ctx.node_id(),
            self.config.raft.clone(),
            prng,
            bootstrap,
            recovered,
        );
        #[cfg(feature = "planted-bugs")]
        raft.plant(self.config.planted);
        self.running = Some(Running { raft, kv });
        ctx.set_timer(self.config.raft.tick_interval, ReplicaMessage::Tick);
    }

    // ----- the engine -----

    /// Steps Raft with one input and carries out what it asks, in order.
    fn step(&mut self, ctx: &mut Context<'_, ReplicaMessage>, input: Input) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        running.raft.step(ctx.now(), input, &mut self.outbox);
        let outputs: Vec<Output> = self.outbox.drain().collect();
        for output in outputs {
            self.perform(ctx, output);
        }
    }

    fn perform(&mut self, ctx: &mut Context<'_, ReplicaMessage>, output: Output) {
        match output {
            Output::Persist(persist) => self.storage.persist(persist),
            Output::Send(message) => {
                let bytes = encode_peer_message(self.config.cluster_id, &message);
                if ctx.send_to_node(message.to, RAFT_PORT, bytes).is_err() {
                    self.stats.sends_failed += 1;
                }
            }
            Output::Apply(entries) => {
                for entry in entries {
                    self.apply(ctx, entry);
                }
                self.serve_applied_reads(ctx);
            }
            Output::ApplySnapshot(snapshot) => self.apply_snapshot(ctx, snapshot),
            Output::Proposed { id, token } => {
                if self.proposals.contains_key(&id) {
                    self.proposed.insert(token.index, (token.term, id));
                }
            }
            Output::Rejected { id, error } => {
                if let Some(waiter) = self.proposals.remove(&id) {
                    let outcome = match error {
                        ProposeError::NotLeader { leader_hint } => Outcome::NotLeader {
                            leader: leader_hint,
                        },
                        other => Outcome::Refused {
                            reason: other.to_string(),
                        },
                    };
                    self.respond(ctx, waiter, outcome);
                }
            }
            Output::ReadReady { id, index } => self.on_read_ready(ctx, id, index),
            Output::ReadFailed { id, error } => {
                if let Some(WaitingRead { waiter, .. }) = self.reads.remove(&id) {
                    let outcome = match error {
                        ReadError::NoLeader => Outcome::NotLeader { leader: None },
                        other => Outcome::Refused {
                            reason: other.to_string(),
                        },
                    };
                    self.respond(ctx, waiter, outcome);
                }
            }
            Output::SnapshotWanted { .. } => self.take_snapshot(),
            Output::Compacted { first_index } => self.storage.compact(first_index),
            Output::RoleChanged { .. } => {}
        }
    }

    fn apply(&mut self, ctx: &mut Context<'_, ReplicaMessage>, entry: synod_raft::Entry) {
        let running = self.running.as_mut().expect("applying while running");
        let apply_context = ApplyContext {
            index: entry.index,
            term: entry.term,
            time_ns: entry.time_ns,
        };
        self.stats.entries_applied += 1;
        // A membership change's answer is empty: the change itself is the result.
        let response = match &entry.payload {
            EntryPayload::Command(payload) => running.kv.apply(apply_context, payload).encode(),
            EntryPayload::Noop | EntryPayload::Membership(_) => {
                running.kv.apply_noop(apply_context);
                Vec::new()
            }
        };
        let Some((term, id)) = self.proposed.remove(&entry.index) else {
            return;
        };
        let Some(waiter) = self.proposals.remove(&id) else {
            return;
        };
        let outcome = match response {
            response if term == entry.term => Outcome::Applied {
                response: Bytes::from(response),
                term: term.0,
                index: entry.index.0,
            },
            // Another leader's entry took the index: this proposal never committed.
            _ => Outcome::Refused {
                reason: "the proposal was overwritten by a new leader; retry".into(),
            },
        };
        self.respond(ctx, waiter, outcome);
    }

    fn apply_snapshot(&mut self, ctx: &mut Context<'_, ReplicaMessage>, snapshot: Snapshot) {
        let kv = match KvStore::restore(self.config.kv.clone(), &snapshot.data) {
            Ok(kv) => kv,
            Err(error) => return ctx.fail(format!("installing a snapshot: {error}")),
        };
        self.running.as_mut().expect("running").kv = kv;
        let last = snapshot.meta.last_index;
        let covered: Vec<LogIndex> = self.proposed.range(..=last).map(|(i, _)| *i).collect();
        for index in covered {
            let (_, id) = self.proposed.remove(&index).expect("listed");
            if let Some(waiter) = self.proposals.remove(&id) {
                let reason = "a snapshot replaced the entry; its outcome is unknown".to_string();
                self.respond(ctx, waiter, Outcome::Unknown { reason });
            }
        }
        self.serve_applied_reads(ctx);
    }

    fn take_snapshot(&mut self) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        if self.snapshot_saving {
            return;
        }
        let index = running.kv.applied_index();
        // Storage drops a snapshot that is not newer than the one it has, without an answer.
        let newest = running
            .raft
            .snapshot_meta()
            .map_or(LogIndex(0), |meta| meta.last_index);
        if index <= newest {
            return;
        }
        let Some(term) = running.raft.term_at(index) else {
            return;
        };
        let meta = SnapshotMeta {
            last_index: index,
            last_term: term,
            membership: running.raft.membership_at(index),
        };
        let data = Bytes::from(running.kv.snapshot());
        self.snapshot_saving = true;
        self.storage.save_snapshot(Snapshot { meta, data });
    }

    // ----- clients -----

    fn on_client_request(&mut self, ctx: &mut Context<'_, ReplicaMessage>, inbound: Inbound) {
        let request = match ClientRequest::decode(&inbound.payload) {
            Ok(request) => request,
            Err(_) => {
                self.stats.client_requests_undecodable += 1;
                return;
            }
        };
        let waiter = Waiter {
            node: inbound.from,
            port: Port(request.reply_port),
            request: request.id,
        };
        if self.running.is_none() {
            return self.refuse(ctx, waiter, "the replica is starting; retry");
        }
        match request.body {
            RequestBody::Write(command) => {
                if self.proposals.len() >= PROPOSALS_PENDING_MAX {
                    return self.refuse(ctx, waiter, "too many writes pending; retry later");
                }
                let id = self.next_id();
                self.proposals.insert(id, waiter);
                let time_ns = u64::try_from(ctx.wall_clock().0).unwrap_or(0);
                self.step(
                    ctx,
                    Input::Propose {
                        id,
                        payload: command,
                        time_ns,
                    },
                );
            }
            RequestBody::Read {
                query,
                consistency,
                min_applied,
            } => match synod_kv::Command::decode(&query) {
                Ok(command) => {
                    self.on_read(ctx, waiter, command.op, consistency, LogIndex(min_applied))
                }
                Err(error) => {
                    let reason = format!("the read query does not decode: {error}");
                    self.refuse(ctx, waiter, &reason);
                }
            },
            RequestBody::Admin(AdminRequest::TransferLeadership(to)) => {
                self.step(ctx, Input::TransferLeadership { to });
                self.respond(ctx, waiter, Outcome::Accepted);
            }
            RequestBody::Admin(AdminRequest::ChangeMembership(change)) => {
                if self.proposals.len() >= PROPOSALS_PENDING_MAX {
                    return self.refuse(ctx, waiter, "too many writes pending; retry later");
                }
                let id = self.next_id();
                self.proposals.insert(id, waiter);
                let time_ns = u64::try_from(ctx.wall_clock().0).unwrap_or(0);
                self.step(
                    ctx,
                    Input::ChangeMembership {
                        id,
                        change,
                        time_ns,
                    },
                );
            }
        }
    }

    fn on_read(
        &mut self,
        ctx: &mut Context<'_, ReplicaMessage>,
        waiter: Waiter,
        query: Operation,
        consistency: ReadConsistency,
        min_applied: LogIndex,
    ) {
        if !matches!(query, Operation::Get { .. } | Operation::Range { .. }) {
            return self.refuse(
                ctx,
                waiter,
                "only Get and Range can be read without the log",
            );
        }
        let level = match consistency {
            ReadConsistency::Stale => {
                let applied = self.kv().map_or(LogIndex(0), KvStore::applied_index);
                if applied >= min_applied {
                    return self.serve_stale(ctx, waiter, &query);
                }
                // The client has seen later state than this replica holds: wait for it.
                if self.reads.len() + self.reads_waiting.len() >= READS_PENDING_MAX {
                    return self.refuse(ctx, waiter, "too many reads pending; retry later");
                }
                let id = self.next_id();
                let read = WaitingRead {
                    waiter,
                    query,
                    stale: true,
                };
                self.reads_waiting.insert((min_applied, id), read);
                return;
            }
            ReadConsistency::Linearizable => ReadLevel::Linearizable,
            ReadConsistency::Lease => ReadLevel::Lease,
        };
        if self.reads.len() + self.reads_waiting.len() >= READS_PENDING_MAX {
            return self.refuse(ctx, waiter, "too many reads pending; retry later");
        }
        let id = self.next_id();
        let read = WaitingRead {
            waiter,
            query,
            stale: false,
        };
        self.reads.insert(id, read);
        self.step(ctx, Input::Read { id, level });
    }

    fn on_read_ready(&mut self, ctx: &mut Context<'_, ReplicaMessage>, id: u64, index: LogIndex) {
        let Some(read) = self.reads.remove(&id) else {
            return;
        };
        self.reads_waiting.insert((index, id), read);
        self.serve_applied_reads(ctx);
    }

    /// Serves every confirmed read whose index the state machine has reached.
    fn serve_applied_reads(&mut self, ctx: &mut Context<'_, ReplicaMessage>) {
        let Some(applied) = self.kv().map(KvStore::applied_index) else {
            return;
        };
        let later = self.reads_waiting.split_off(&(applied.next(), 0));
        let ready = std::mem::replace(&mut self.reads_waiting, later);
        for ((_, _), read) in ready {
            if read.stale {
                self.serve_stale(ctx, read.waiter, &read.query);
            } else {
                let outcome = self.read_outcome(&read.query, None);
                self.respond(ctx, read.waiter, outcome);
            }
        }
    }

    fn serve_stale(
        &mut self,
        ctx: &mut Context<'_, ReplicaMessage>,
        waiter: Waiter,
        query: &Operation,
    ) {
        let running = self.running.as_ref().expect("running");
        let staleness_ns = if running.raft.role() == Role::Leader {
            Some(0)
        } else {
            let contact = running.raft.leader_contact_at();
            contact.map(|at| ctx.now().saturating_duration_since(at).as_nanos())
        };
        let outcome = self.read_outcome(query, staleness_ns);
        self.respond(ctx, waiter, outcome);
    }

    fn read_outcome(&mut self, query: &Operation, staleness_ns: Option<u64>) -> Outcome {
        let kv = &self.running.as_ref().expect("running").kv;
        self.stats.reads_served += 1;
        Outcome::Read {
            response: Bytes::from(kv.read(query).encode()),
            applied_index: kv.applied_index().0,
            staleness_ns,
        }
    }

    fn refuse(&mut self, ctx: &mut Context<'_, ReplicaMessage>, waiter: Waiter, reason: &str) {
        self.stats.client_requests_refused += 1;
        let reason = reason.to_string();
        self.respond(ctx, waiter, Outcome::Refused { reason });
    }

    fn respond(&mut self, ctx: &mut Context<'_, ReplicaMessage>, waiter: Waiter, outcome: Outcome) {
        let response = ClientResponse {
            id: waiter.request,
            outcome,
        };
        if ctx
            .send_to_node(waiter.node, waiter.port, response.encode())
            .is_err()
        {
            self.stats.sends_failed += 1;
        }
    }

    fn on_peer_message(&mut self, ctx: &mut Context<'_, ReplicaMessage>, inbound: Inbound) {
        let message = match decode_peer_message(self.config.cluster_id, &inbound.payload) {
            Ok(message) => message,
            Err(PeerDecodeError::ForeignCluster { .. }) => {
                self.stats.peer_messages_foreign += 1;
                return;
            }
            Err(_) => {
                self.stats.peer_messages_undecodable += 1;
                return;
            }
        };
        if message.from != inbound.from {
            self.stats.peer_messages_spoofed += 1;
            return;
        }
        self.step(ctx, Input::Message(message));
    }
}

impl Actor for ReplicaActor {
    type Message = ReplicaMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, ReplicaMessage>) {
        for port in [RAFT_PORT, CLIENT_PORT] {
            if let Err(error) = ctx.bind(port) {
                return ctx.fail(format!("replica: cannot bind {port}: {error}"));
            }
        }
        self.pump(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, ReplicaMessage>, message: ReplicaMessage) {
        if let Some(failure) = self.storage_failure.clone() {
            return self.on_message_read_only(ctx, message, failure);
        }
        match message {
            ReplicaMessage::Inbound(inbound) if inbound.port == RAFT_PORT => {
                if self.running.is_some() {
                    self.on_peer_message(ctx, inbound);
                }
            }
            ReplicaMessage::Inbound(inbound) => self.on_client_request(ctx, inbound),
            ReplicaMessage::Tick => {
                ctx.set_timer(self.config.raft.tick_interval, ReplicaMessage::Tick);
                self.step(ctx, Input::Tick);
            }
            ReplicaMessage::Disk(completion) => {
                if let Some(tag) = self.in_flight.remove(&completion.id) {
                    self.storage.complete(tag, completion.result);
                }
            }
            ReplicaMessage::StorageTimer => self.storage_deadline = None,
            // Only armed while read-only, and a restart discards it.
            ReplicaMessage::StorageRetry => {}
        }
        self.pump(ctx);
    }
}

/// The refusal of a request a read-only replica cannot serve; `READONLY` first, as Redis.
fn read_only_reason(failure: &str) -> String {
    format!(
        "READONLY disk full or failing: {failure}; this node serves only stale reads until \
         its disk recovers"
    )
}
