//! The workload of the `raft` scenario: closed-loop clients that run on every node and talk
//! to the replicas through synod-node's client protocol, recording a history for
//! synod-check.
//!
//! A client has one operation outstanding at a time. It picks a key from a small set and an
//! operation (read, write, cas, delete), sends it to the node it believes leads (following
//! `NotLeader` hints; a share of reads goes to a random node instead, to exercise follower
//! reads and deposed leaders), and waits for the answer or its timeout. Every invoke and every
//! completion is reported with `ctx.observe`; the scenario stamps them with the
//! simulator's true time, since `ctx.now()` is the node's own drifting clock and could not
//! order events of different nodes.
//!
//! A write whose answer is lost has an unknown outcome: it is recorded as `info` and the
//! client continues under a new process id, as the history format requires; it never
//! retries, so `info` really is unknown.
//!
//! Writes carry a synod-kv session (`RegisterSession` once, then sequence numbers). The
//! client does not retry, but the simulated network duplicates messages, and a duplicated
//! request is a second proposal of the same command: without a session both copies apply,
//! which a history shows as one operation taking effect twice (the first sweep found this:
//! a cas applied, then its copy failed, and the client was told "fail"). With a session the
//! store applies a sequence once and answers a copy with the cached reply. The client
//! acknowledges everything below its current sequence, since it never retries, so a late
//! copy of an earlier command is refused (`SequenceAcknowledged`) rather than applied.
//! `Workload::write_sessions` turns sessions off to show the difference.
//!
//! A refusal (`NotLeader`, `Refused`, a session-layer error) answers one copy only: another
//! copy of the request may have reached a leader. In runs whose network duplicates
//! messages such a write is therefore `info`, not `fail`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use synod_actor::{Actor, Context, Inbound, Port, TimerId};
use synod_check::{Call, Value};
use synod_core::{ClientId, Duration, NodeId};
use synod_kv::{Command, CommandError, Compare, Operation, PutCondition, Response, SessionRef};
use synod_node::client::{ClientRequest, ClientResponse, Outcome, ReadConsistency, RequestBody};
use synod_node::replica::CLIENT_PORT;

/// The first client's reply port; client `k` binds `CLIENT_REPLY_PORT_BASE + k`.
pub const CLIENT_REPLY_PORT_BASE: u16 = 100;
/// Clients per node.
pub const CLIENTS_PER_NODE_MAX: usize = 8;
/// Keys the workload touches.
pub const KEYS_COUNT_MAX: usize = 16;
/// Bits of a process id that count the process ids of one client incarnation; the bits
/// above them are the incarnation, so process ids never repeat within a run.
pub const PROCESS_SERIAL_BITS: u32 = 20;
/// Operations one client incarnation may issue: it then falls silent. Each operation can
/// retire at most one process id, so this also bounds the process serial.
pub const OPERATIONS_PER_CLIENT_MAX: u64 = (1 << PROCESS_SERIAL_BITS) - 1;
/// Client incarnations per run (a written value is `incarnation << 32 | operation`, and must
/// stay a positive 64-bit signed integer).
pub const CLIENT_INCARNATIONS_MAX: u64 = 1 << 30;
/// Key revisions the clients keep when they ask the store to compact, so that the state (and
/// with it every snapshot and digest) stays small however long a run is.
pub const REVISIONS_RETAINED: u64 = 64;
/// A client asks for a compaction every this many of its operations.
pub const COMPACT_EVERY_OPERATIONS: u64 = 64;

/// Percentages of the operation mix; reads get the rest.
const WRITE_PERCENT: u64 = 30;
const CAS_PERCENT: u64 = 20;
const DELETE_PERCENT: u64 = 10;
/// Percent of reads sent as stale reads (served locally, not part of the checked history).
const STALE_READ_PERCENT: u64 = 10;

/// What the clients do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub clients_per_node: usize,
    pub keys_count: usize,
    /// A client waits a uniform time in `[0, think_time_max]` between operations.
    pub think_time_max: Duration,
    /// An operation without an answer after this long (on the client's clock) is `info`.
    pub request_timeout: Duration,
    /// Operations per client incarnation.
    pub operations_per_client_max: u64,
    /// Percent of reads sent to a random node instead of the believed leader: follower
    /// reads (forwarded ReadIndex), and reads that reach deposed leaders.
    pub reads_anywhere_percent: u64,
    /// Whether writes carry a session (exactly-once under duplicated requests).
    pub write_sessions: bool,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            clients_per_node: 2,
            keys_count: 5,
            think_time_max: Duration::from_millis(40),
            request_timeout: Duration::from_secs(1),
            operations_per_client_max: 20_000,
            reads_anywhere_percent: 20,
            write_sessions: true,
        }
    }
}

impl Workload {
    /// Refuses a workload outside the limits, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let check = |field: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "raft workload: {field} ({value}) must be between {min} and {max}"
                ))
            }
        };
        check(
            "clients_per_node",
            self.clients_per_node as u64,
            1,
            CLIENTS_PER_NODE_MAX as u64,
        )?;
        check(
            "keys_count",
            self.keys_count as u64,
            1,
            KEYS_COUNT_MAX as u64,
        )?;
        check(
            "operations_per_client_max",
            self.operations_per_client_max,
            1,
            OPERATIONS_PER_CLIENT_MAX,
        )?;
        check(
            "reads_anywhere_percent",
            self.reads_anywhere_percent,
            0,
            100,
        )?;
        check(
            "request_timeout_ms",
            self.request_timeout.as_millis(),
            1,
            60_000,
        )
    }
}

/// The name of key `index`.
pub fn key_name(index: u8) -> Bytes {
    Bytes::from(format!("k{index}"))
}

/// How an operation of the history ended, or that it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryKind {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl HistoryKind {
    pub fn name(self) -> &'static str {
        match self {
            HistoryKind::Invoke => "invoke",
            HistoryKind::Ok => "ok",
            HistoryKind::Fail => "fail",
            HistoryKind::Info => "info",
        }
    }
}

/// Observation: one line of the history (docs/consistency.md). The scenario adds the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEvent {
    pub process: u64,
    /// Which of its node's clients made it (for the liveness judgement).
    pub client: u8,
    pub kind: HistoryKind,
    pub key: u8,
    /// On an ok read, the value read; otherwise what was invoked.
    pub call: Call,
    /// The read's consistency level; `None` for writes.
    pub consistency: Option<ReadConsistency>,
    /// On an ok completion, its place in the store's order from the revision the reply
    /// carried (`outcome_revision`; a retry's cached reply keeps the first revision). The
    /// checker's hint for the order of the sequential check.
    pub index: Option<u64>,
}

/// Observation: a stale read was answered (these are not linearizable by design, so they
/// stay out of the history; the scenario counts them and checks that each returned a value
/// some write had produced by then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleReadServed {
    pub staleness_ns: Option<u64>,
    pub key: u8,
    pub value: Value,
}

/// Observation: a replica answered something the protocol does not allow (an undecodable
/// response, a value for a write, a refused unconditional put). The scenario fails the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAnomaly {
    pub description: String,
}

#[derive(Debug)]
pub enum ClientMessage {
    Inbound(Inbound),
    /// Time to issue the next operation.
    Next,
    Timeout {
        request: u64,
    },
}

impl From<Inbound> for ClientMessage {
    fn from(inbound: Inbound) -> ClientMessage {
        ClientMessage::Inbound(inbound)
    }
}

/// What a client is waiting for.
#[derive(Debug)]
enum Purpose {
    /// An operation of the history.
    Operation {
        key: u8,
        call: Call,
        consistency: Option<ReadConsistency>,
    },
    /// A session for its writes.
    Register,
}

/// The request a client is waiting on.
#[derive(Debug)]
struct Pending {
    request: u64,
    purpose: Purpose,
    timer: TimerId,
}

/// An operation the client has chosen, before it is sent.
struct Chosen {
    body: RequestBody,
    call: Call,
    consistency: Option<ReadConsistency>,
}

/// One closed-loop client.
pub struct Client {
    nodes_count: usize,
    index: u8,
    workload: Workload,
    /// Shared by every client of a run: the source of unique incarnation numbers.
    incarnations: Arc<AtomicU64>,
    incarnation: u64,
    /// This incarnation's current process id, counted from 0: a new one after every `info`
    /// (the history format retires a process whose operation may still take effect).
    process_serial: u64,
    operations_count: u64,
    next_request: u64,
    leader_guess: NodeId,
    pending: Option<Pending>,
    /// The last value this client saw for each key (`Null`: absent or never seen), used as
    /// the expected value of its cas operations.
    last_seen: Vec<Value>,
    /// The newest store revision a write reply reported, for compaction.
    revision_seen: u64,
    /// The highest log index this client has seen (a write's entry, a read's applied
    /// index): its session token, which stale reads carry so they never go back in time.
    index_seen: u64,
    /// The key-value session writes carry, once registered, and its last sequence.
    kv_session: Option<ClientId>,
    kv_sequence: u64,
    /// Whether the network may deliver a request twice (the run's fault mix duplicates
    /// messages): then a refusal of one copy says nothing about the other.
    duplicates_possible: bool,
}

impl Client {
    pub fn new(
        nodes_count: usize,
        index: u8,
        workload: Workload,
        incarnations: Arc<AtomicU64>,
        duplicates_possible: bool,
    ) -> Client {
        assert!(
            (index as usize) < CLIENTS_PER_NODE_MAX,
            "client index {index}"
        );
        let keys_count = workload.keys_count;
        Client {
            nodes_count,
            index,
            workload,
            incarnations,
            incarnation: 0,
            process_serial: 0,
            operations_count: 0,
            next_request: 0,
            leader_guess: NodeId(1),
            pending: None,
            last_seen: vec![Value::Null; keys_count],
            revision_seen: 0,
            index_seen: 0,
            kv_session: None,
            kv_sequence: 0,
            duplicates_possible,
        }
    }

    fn port(&self) -> Port {
        Port(CLIENT_REPLY_PORT_BASE + u16::from(self.index))
    }

    fn process(&self) -> u64 {
        assert!(
            self.process_serial < 1 << PROCESS_SERIAL_BITS,
            "process ids exhausted"
        );
        (self.incarnation << PROCESS_SERIAL_BITS) | self.process_serial
    }

    fn random_below(ctx: &mut Context<'_, ClientMessage>, bound: u64) -> u64 {
        ctx.random_u64() % bound
    }

    fn random_node(&self, ctx: &mut Context<'_, ClientMessage>) -> NodeId {
        NodeId(1 + Self::random_below(ctx, self.nodes_count as u64))
    }

    fn schedule_next(&mut self, ctx: &mut Context<'_, ClientMessage>) {
        let think_max = self.workload.think_time_max.as_nanos();
        let think = Self::random_below(ctx, think_max + 1);
        ctx.set_timer(Duration::from_nanos(think), ClientMessage::Next);
    }

    fn next_request(&mut self) -> u64 {
        self.next_request += 1;
        assert!(
            self.next_request >> 32 == self.incarnation,
            "request ids of one incarnation exhausted"
        );
        self.next_request
    }

    fn observe(
        &self,
        ctx: &mut Context<'_, ClientMessage>,
        kind: HistoryKind,
        key: u8,
        call: &Call,
        consistency: Option<ReadConsistency>,
        index: Option<u64>,
    ) {
        ctx.observe(HistoryEvent {
            process: self.process(),
            client: self.index,
            kind,
            key,
            call: call.clone(),
            consistency,
            index: index.filter(|_| kind == HistoryKind::Ok),
        });
    }

    /// A value no other operation of the run writes.
    fn unique_value(&self) -> i64 {
        let value = (self.incarnation << 32) | self.operations_count;
        i64::try_from(value).expect("incarnation below 2^30 keeps values positive")
    }

    /// A write's request: in the session when there is one, acknowledging every earlier
    /// sequence (this client never retries).
    fn write_body(&mut self, op: Operation) -> RequestBody {
        let session = self.kv_session.map(|client| {
            self.kv_sequence += 1;
            SessionRef {
                client,
                sequence: self.kv_sequence,
                acknowledged: self.kv_sequence - 1,
            }
        });
        RequestBody::Write(Bytes::from(Command { session, op }.encode()))
    }

    /// Chooses the next operation on `key`.
    fn choose(&mut self, ctx: &mut Context<'_, ClientMessage>, key: u8) -> Chosen {
        let name = key_name(key);
        let roll = Self::random_below(ctx, 100);
        let (body, call) = if roll < WRITE_PERCENT {
            let value = self.unique_value();
            let body = self.write_body(Operation::Put {
                key: name,
                value: Bytes::from(value.to_string()),
                condition: PutCondition::Always,
                return_previous: false,
            });
            (body, Call::Write(Value::Int(value)))
        } else if roll < WRITE_PERCENT + CAS_PERCENT {
            // A garbage read (already a violation) is not worth comparing against.
            let expected = match &self.last_seen[key as usize] {
                Value::Int(number) => Value::Int(*number),
                Value::Null | Value::Str(_) => Value::Null,
            };
            let new = self.unique_value();
            let compare = Compare::ValueEquals(match &expected {
                Value::Int(number) => Some(Bytes::from(number.to_string())),
                Value::Null | Value::Str(_) => None,
            });
            let body = self.write_body(Operation::Cas {
                key: name,
                compare,
                value: Bytes::from(new.to_string()),
            });
            (body, Call::Cas(expected, Value::Int(new)))
        } else if roll < WRITE_PERCENT + CAS_PERCENT + DELETE_PERCENT {
            let body = self.write_body(Operation::Delete { keys: vec![name] });
            (body, Call::Delete)
        } else {
            return self.choose_read(ctx, key);
        };
        Chosen {
            body,
            call,
            consistency: None,
        }
    }

    fn choose_read(&mut self, ctx: &mut Context<'_, ClientMessage>, key: u8) -> Chosen {
        let level = Self::random_below(ctx, 100);
        let consistency = if level < STALE_READ_PERCENT {
            ReadConsistency::Stale
        } else if level.is_multiple_of(2) {
            ReadConsistency::Linearizable
        } else {
            ReadConsistency::Lease
        };
        Chosen {
            body: RequestBody::Read {
                query: Bytes::from(
                    Command {
                        session: None,
                        op: Operation::Get {
                            key: key_name(key),
                            revision: None,
                        },
                    }
                    .encode(),
                ),
                consistency,
                min_applied: self.index_seen,
            },
            call: Call::Read(Value::Null),
            consistency: Some(consistency),
        }
    }

    /// Sends a request to `target` and waits for it; false (and the next attempt
    /// scheduled) when the request could not leave this node.
    fn send(
        &mut self,
        ctx: &mut Context<'_, ClientMessage>,
        target: NodeId,
        body: RequestBody,
        purpose: Purpose,
    ) -> bool {
        let request = self.next_request();
        let encoded = ClientRequest {
            id: request,
            reply_port: self.port().0,
            body,
        }
        .encode();
        if ctx.send_to_node(target, CLIENT_PORT, encoded).is_err() {
            // Nothing left this node (the path is full): nothing happened, so nothing is
            // recorded. Try another node after a pause.
            self.leader_guess = self.random_node(ctx);
            self.schedule_next(ctx);
            return false;
        }
        let timeout = ClientMessage::Timeout { request };
        let timer = ctx.set_timer(self.workload.request_timeout, timeout);
        self.pending = Some(Pending {
            request,
            purpose,
            timer,
        });
        true
    }

    fn on_next(&mut self, ctx: &mut Context<'_, ClientMessage>) {
        if self.pending.is_some() {
            return;
        }
        if self.workload.write_sessions && self.kv_session.is_none() {
            let register = Bytes::from(command(Operation::RegisterSession));
            let target = self.leader_guess;
            self.send(ctx, target, RequestBody::Write(register), Purpose::Register);
            return;
        }
        if self.operations_count >= self.workload.operations_per_client_max {
            return;
        }
        self.operations_count += 1;
        if self
            .operations_count
            .is_multiple_of(COMPACT_EVERY_OPERATIONS)
        {
            self.send_compaction(ctx);
        }
        let key = Self::random_below(ctx, self.workload.keys_count as u64) as u8;
        let chosen = self.choose(ctx, key);
        let purpose = Purpose::Operation {
            key,
            call: chosen.call.clone(),
            consistency: chosen.consistency,
        };
        let anywhere = Self::random_below(ctx, 100) < self.workload.reads_anywhere_percent;
        let target = if chosen.consistency.is_some() && anywhere {
            self.random_node(ctx)
        } else {
            self.leader_guess
        };
        if self.send(ctx, target, chosen.body, purpose) {
            let kind = HistoryKind::Invoke;
            self.observe(ctx, kind, key, &chosen.call, chosen.consistency, None);
        }
    }

    /// Fire and forget: the answer carries a request id nobody waits for.
    fn send_compaction(&mut self, ctx: &mut Context<'_, ClientMessage>) {
        let Some(revision) = self.revision_seen.checked_sub(REVISIONS_RETAINED) else {
            return;
        };
        if revision == 0 {
            return;
        }
        let request = self.next_request();
        let body = RequestBody::Write(Bytes::from(command(Operation::Compact { revision })));
        let encoded = ClientRequest {
            id: request,
            reply_port: self.port().0,
            body,
        }
        .encode();
        let _ = ctx.send_to_node(self.leader_guess, CLIENT_PORT, encoded);
    }

    fn on_timeout(&mut self, ctx: &mut Context<'_, ClientMessage>, request: u64) {
        let Some(pending) = self.pending.take_if(|pending| pending.request == request) else {
            return;
        };
        // The node may be down or cut off: look elsewhere.
        self.leader_guess = self.random_node(ctx);
        match pending.purpose {
            Purpose::Operation {
                key,
                call,
                consistency,
            } => self.complete(ctx, key, &call, consistency, HistoryKind::Info, None),
            Purpose::Register => self.schedule_next(ctx),
        }
    }

    fn on_response(&mut self, ctx: &mut Context<'_, ClientMessage>, inbound: Inbound) {
        let response = match ClientResponse::decode(&inbound.payload) {
            Ok(response) => response,
            Err(error) => {
                let description = format!("an undecodable response from {}: {error}", inbound.from);
                return ctx.observe(ClientAnomaly { description });
            }
        };
        let Some(pending) = self
            .pending
            .take_if(|pending| pending.request == response.id)
        else {
            // A late answer to a request already given up on, or to a compaction.
            return;
        };
        ctx.cancel_timer(pending.timer);
        match pending.purpose {
            Purpose::Register => self.on_registered(ctx, inbound.from, response.outcome),
            Purpose::Operation {
                key,
                mut call,
                consistency,
            } => {
                let outcome = response.outcome;
                let revision = outcome_revision(&outcome);
                let kind = self.judge(ctx, inbound.from, key, &mut call, consistency, outcome);
                self.complete(ctx, key, &call, consistency, kind, revision);
            }
        }
    }

    fn on_registered(
        &mut self,
        ctx: &mut Context<'_, ClientMessage>,
        from: NodeId,
        outcome: Outcome,
    ) {
        match outcome {
            Outcome::Applied { response, .. } => match Response::decode(&response) {
                Ok(Response::Registered { client }) => {
                    self.kv_session = Some(client);
                    self.kv_sequence = 0;
                }
                other => {
                    let description = format!("{from} answered a registration with {other:?}");
                    ctx.observe(ClientAnomaly { description });
                }
            },
            Outcome::NotLeader { leader } => self.follow(ctx, from, leader),
            Outcome::Refused { .. } | Outcome::Unknown { .. } => {
                self.leader_guess = self.random_node(ctx);
            }
            Outcome::Read { .. } | Outcome::Accepted => {
                let description = format!("{from} answered a registration with {outcome:?}");
                ctx.observe(ClientAnomaly { description });
            }
        }
        self.schedule_next(ctx);
    }

    /// Records the completion, retires the process id after `info`, and schedules the next
    /// operation.
    fn complete(
        &mut self,
        ctx: &mut Context<'_, ClientMessage>,
        key: u8,
        call: &Call,
        consistency: Option<ReadConsistency>,
        kind: HistoryKind,
        index: Option<u64>,
    ) {
        self.observe(ctx, kind, key, call, consistency, index);
        if kind == HistoryKind::Ok {
            self.last_seen[key as usize] = match call {
                Call::Read(value) | Call::Write(value) | Call::Cas(_, value) => value.clone(),
                Call::Delete => Value::Null,
            };
        }
        if kind == HistoryKind::Info {
            self.process_serial += 1;
        }
        self.schedule_next(ctx);
    }

    fn follow(&mut self, ctx: &mut Context<'_, ClientMessage>, from: NodeId, hint: Option<NodeId>) {
        self.leader_guess = match hint {
            Some(leader) if leader != from => leader,
            _ => self.random_node(ctx),
        };
    }

    /// A write refused before the log, when the network may have delivered a copy of the
    /// request that was not refused: the copy may apply, so the outcome is unknown.
    fn refused_write(&self, call: &Call) -> HistoryKind {
        let is_write = !matches!(call, Call::Read(_));
        if is_write && self.duplicates_possible {
            HistoryKind::Info
        } else {
            HistoryKind::Fail
        }
    }

    /// Turns a replica's outcome into the history's verdict, filling in a read's value.
    fn judge(
        &mut self,
        ctx: &mut Context<'_, ClientMessage>,
        from: NodeId,
        key: u8,
        call: &mut Call,
        consistency: Option<ReadConsistency>,
        outcome: Outcome,
    ) -> HistoryKind {
        match &outcome {
            Outcome::Applied { index, .. } => self.index_seen = self.index_seen.max(*index),
            Outcome::Read { applied_index, .. } => {
                self.index_seen = self.index_seen.max(*applied_index);
            }
            _ => {}
        }
        match outcome {
            Outcome::NotLeader { leader } => {
                self.follow(ctx, from, leader);
                self.refused_write(call)
            }
            Outcome::Refused { .. } => {
                if Self::random_below(ctx, 2) == 0 {
                    self.leader_guess = self.random_node(ctx);
                }
                self.refused_write(call)
            }
            Outcome::Unknown { .. } => HistoryKind::Info,
            Outcome::Accepted => {
                let description = format!("{from} answered {call:?} as an operator request");
                ctx.observe(ClientAnomaly { description });
                HistoryKind::Info
            }
            Outcome::Read {
                response,
                staleness_ns,
                ..
            } => {
                let value = match Response::decode(&response) {
                    Ok(Response::Value { value, .. }) => value,
                    other => {
                        let description = format!("{from} answered {call:?} with {other:?}");
                        ctx.observe(ClientAnomaly { description });
                        return HistoryKind::Info;
                    }
                };
                let Call::Read(read) = call else {
                    let description = format!("{from} answered {call:?} with a value");
                    ctx.observe(ClientAnomaly { description });
                    return HistoryKind::Info;
                };
                *read = value.map_or(Value::Null, |versioned| parse_value(&versioned.value));
                if consistency == Some(ReadConsistency::Stale) {
                    let value = read.clone();
                    ctx.observe(StaleReadServed {
                        staleness_ns,
                        key,
                        value,
                    });
                }
                HistoryKind::Ok
            }
            Outcome::Applied { response, .. } => self.judge_write(ctx, from, call, &response),
        }
    }

    fn judge_write(
        &mut self,
        ctx: &mut Context<'_, ClientMessage>,
        from: NodeId,
        call: &Call,
        response: &[u8],
    ) -> HistoryKind {
        let response = match Response::decode(response) {
            Ok(response) => response,
            Err(error) => {
                let description = format!("{from} sent an undecodable kv response: {error}");
                ctx.observe(ClientAnomaly { description });
                return HistoryKind::Info;
            }
        };
        if let Some(revision) = response_revision(&response) {
            self.revision_seen = self.revision_seen.max(revision);
        }
        match (call, &response) {
            (Call::Write(_), Response::Put { written: true, .. }) => HistoryKind::Ok,
            // The store caches a session command's reply, so every copy of the request
            // gets this same answer: it is final.
            (Call::Cas(..), Response::Cas { succeeded, .. }) => {
                if *succeeded {
                    HistoryKind::Ok
                } else {
                    HistoryKind::Fail
                }
            }
            (Call::Delete, Response::Deleted { .. }) => HistoryKind::Ok,
            (Call::Write(_) | Call::Cas(..) | Call::Delete, Response::Error(error)) => {
                self.judge_error(call, error)
            }
            (call, response) => {
                let description = format!("{from} answered {call:?} with {response:?}");
                ctx.observe(ClientAnomaly { description });
                HistoryKind::Info
            }
        }
    }

    /// A command the store answered with an error changed nothing. A session-layer error is
    /// not cached, though: a copy of the request may have been applied, or may be later.
    fn judge_error(&mut self, call: &Call, error: &CommandError) -> HistoryKind {
        let session_layer = matches!(
            error,
            CommandError::SessionExpired { .. }
                | CommandError::SequenceReused { .. }
                | CommandError::SequenceAcknowledged { .. }
                | CommandError::SessionRepliesFull { .. }
                | CommandError::AcknowledgedNotBelowSequence { .. }
        );
        if matches!(error, CommandError::SessionExpired { .. }) {
            self.kv_session = None;
        }
        if session_layer {
            self.refused_write(call)
        } else {
            HistoryKind::Fail
        }
    }
}

fn command(op: Operation) -> Vec<u8> {
    Command { session: None, op }.encode()
}

/// Where an outcome's reply places it in the store's order (see `HistoryEvent::index`): a
/// change at revision R is 2R, and what leaves the store as it was at R (a read served at
/// R, a delete of absent keys) is 2R + 1, after the change and in its process's order.
fn outcome_revision(outcome: &Outcome) -> Option<u64> {
    let (Outcome::Applied { response, .. } | Outcome::Read { response, .. }) = outcome else {
        return None;
    };
    let (revision, changed) = match Response::decode(response).ok()? {
        Response::Value { revision, .. } => (revision, false),
        Response::Deleted { revision, count } => (revision, count > 0),
        response => (response_revision(&response)?, true),
    };
    let position = revision.checked_mul(2)?;
    Some(if changed { position } else { position + 1 })
}

fn response_revision(response: &Response) -> Option<u64> {
    match response {
        Response::Put { revision, .. }
        | Response::Deleted { revision, .. }
        | Response::Cas { revision, .. } => Some(*revision),
        _ => None,
    }
}

/// A value as the history records it: the decimal integer the workload wrote, or (for
/// anything else, which no client wrote) its bytes in hex, so the checker flags the read.
pub fn parse_value(bytes: &[u8]) -> Value {
    let number = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse::<i64>().ok());
    match number {
        Some(number) => Value::Int(number),
        None => {
            let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            Value::Str(format!("garbage:{hex}"))
        }
    }
}

impl Actor for Client {
    type Message = ClientMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, ClientMessage>) {
        self.incarnation = self.incarnations.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(
            self.incarnation < CLIENT_INCARNATIONS_MAX,
            "too many client incarnations in one run"
        );
        // Request ids never repeat across incarnations on this port, so a late answer to
        // an earlier incarnation's request cannot pass for an answer to this one's.
        self.next_request = self.incarnation << 32;
        if let Err(error) = ctx.bind(self.port()) {
            return ctx.fail(format!("client {}: cannot bind: {error}", self.index));
        }
        self.leader_guess = self.random_node(ctx);
        self.schedule_next(ctx);
    }

    fn on_message(&mut self, ctx: &mut Context<'_, ClientMessage>, message: ClientMessage) {
        match message {
            ClientMessage::Inbound(inbound) => self.on_response(ctx, inbound),
            ClientMessage::Next => self.on_next(ctx),
            ClientMessage::Timeout { request } => self.on_timeout(ctx, request),
        }
    }
}
