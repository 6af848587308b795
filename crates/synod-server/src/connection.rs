//! One RESP client connection: read, parse, plan, submit, answer in order.
//!
//! Commands are taken off the socket as fast as they arrive (pipelining) and planned by the
//! connection's [`Connection`](crate::command::Connection) state. Replies go back in command
//! order. Requests of the same kind run concurrently (a pipeline of writes becomes many
//! proposals in flight, which Raft batches into shared appends and fsyncs), but a read
//! never starts while an earlier write of the same connection is unanswered, nor a write
//! while an earlier read is, so a connection always reads its own writes. Commands that
//! change the connection's state (MULTI, EXEC, WATCH, HELLO, SYNOD.SESSION, ...) wait until
//! everything before them is answered.
//!
//! Before a planned request goes to the gateway it passes two gates: the node's health
//! (without a quorum, requests that need one fail at once; with a failed disk, writes do)
//! and the node's admission controller (`admission.rs`), which lets it run, makes it wait
//! for a slot (at most the request timeout), or refuses it at once with `-BUSY`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use synod_kv::{Command, Operation, Response};
use synod_node::client::{Outcome, ReadConsistency, RequestBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::admission::{Admission, Entry, Permit};
use crate::command::{
    CommandConfig, Connection, Done, Plan, ReadDone, ServiceError, Then, Written,
};
use crate::gateway::{Gateway, GatewayError, Route};
use crate::health::Health;
use crate::metrics::{CommandOutcome, Metrics};
use crate::resp::{ProtocolVersion, Reply, RequestParser, RespLimits, encode};
use crate::status::{NodeStatus, ReadLevel};

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 64 << 10;
/// Parsed commands held before the connection stops reading (backpressure).
const PARSED_MAX: usize = 4_096;
/// Reply bytes gathered before they are written out even if more replies are ready.
const WRITE_BATCH_BYTES: usize = 256 << 10;

/// What every connection of a node shares.
pub struct Shared {
    pub gateway: Gateway,
    pub metrics: Arc<Metrics>,
    pub status: Arc<dyn StatusSource>,
    pub command: CommandConfig,
    pub resp_limits: RespLimits,
    pub idle_timeout: Option<Duration>,
    pub pipeline_max: usize,
    pub next_id: AtomicU64,
    pub open: AtomicUsize,
    /// Set when the node drains for shutdown: connections finish what they have started,
    /// answer it, and close.
    pub draining: watch::Receiver<bool>,
    pub stopped_accepting: AtomicBool,
    /// Admission of client requests: the adaptive limit, shedding, group quotas.
    pub admission: Arc<Admission>,
    /// Whether the node can serve requests that need a quorum or its disk now.
    pub health: Arc<Health>,
    /// The longest a request waits for an admission slot (the request timeout).
    pub admission_wait_max: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// Where a connection gets the node's status (INFO, DBSIZE, SYNOD.STATUS).
pub trait StatusSource: Send + Sync + 'static {
    fn status(&self) -> JoinHandle<Option<NodeStatus>>;
}

/// A request submitted to the gateway, waiting for its answer.
enum Waiting {
    Write(oneshot::Receiver<Result<Outcome, GatewayError>>),
    Read(Vec<oneshot::Receiver<Result<Outcome, GatewayError>>>),
    Status(JoinHandle<Option<NodeStatus>>),
    /// Waiting for an admission slot; then submitted (or refused). `write` as in `Failed`.
    Admitting {
        admitted: JoinHandle<Waiting>,
        write: bool,
    },
    /// Refused at submission; `write` tells a write's refusal from a read's.
    Failed {
        error: ServiceError,
        write: bool,
    },
}

/// A plan without its `Then`: what goes to the node.
enum Request {
    Write(Command),
    Read {
        ops: Vec<Operation>,
        level: ReadLevel,
    },
    Status,
}

impl Request {
    fn is_write(&self) -> bool {
        matches!(self, Request::Write(_))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Write,
    Read,
}

enum SlotState {
    Ready(Reply),
    /// Planned, not yet submitted because requests of the other kind are in flight.
    Unsent(Plan),
    Sent(Then, Waiting),
}

struct Slot {
    state: SlotState,
    /// The command's name (lower case) and read level, for metrics.
    command: String,
    level: Option<ReadLevel>,
    started: Instant,
    /// Close the connection after this reply (QUIT).
    close: bool,
}

impl Slot {
    fn kind(&self) -> Option<Kind> {
        match &self.state {
            SlotState::Ready(_) => None,
            SlotState::Unsent(Plan::Write { .. }) => Some(Kind::Write),
            SlotState::Unsent(_) => Some(Kind::Read),
            SlotState::Sent(_, Waiting::Write(_)) => Some(Kind::Write),
            SlotState::Sent(_, Waiting::Failed { write: true, .. }) => Some(Kind::Write),
            SlotState::Sent(_, Waiting::Admitting { write: true, .. }) => Some(Kind::Write),
            SlotState::Sent(_, _) => Some(Kind::Read),
        }
    }
}

/// Commands that may be planned while earlier ones are still in flight: they neither
/// depend on nor change the connection's state beyond their own request.
fn pipelinable(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 24] = [
        b"get",
        b"set",
        b"setnx",
        b"getset",
        b"del",
        b"exists",
        b"mget",
        b"mset",
        b"incr",
        b"incrby",
        b"decr",
        b"decrby",
        b"append",
        b"strlen",
        b"type",
        b"ping",
        b"echo",
        b"synod.cas",
        b"synod.get",
        b"dbsize",
        b"info",
        b"synod.status",
        b"keys",
        b"unlink",
    ];
    NAMES.iter().any(|known| known.eq_ignore_ascii_case(name))
}

/// Serves one accepted connection until the client leaves, a protocol error, the idle
/// timeout, or the node's drain.
pub async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mut state = Connection::new(id, shared.command.clone());
    let mut parser = RequestParser::new(shared.resp_limits);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::new();
    let mut parsed: VecDeque<Vec<Bytes>> = VecDeque::new();
    let mut slots: VecDeque<Slot> = VecDeque::new();
    let mut draining = shared.draining.clone();
    let mut eof = false;
    let mut protocol_error: Option<Reply> = None;
    // The highest log index this connection has seen (a write's, a read's applied index):
    // its stale reads wait for a replica that has applied that far.
    let mut seen_index: u64 = 0;
    let mut closing = false;
    let mut last_activity = Instant::now();
    loop {
        // Plan what may be planned, submit what may be submitted, gather ready replies.
        plan_commands(&mut state, &shared, &mut parsed, &mut slots, &mut closing);
        if parsed.is_empty()
            && let Some(reply) = protocol_error.take()
        {
            closing = true;
            slots.push_back(Slot {
                state: SlotState::Ready(reply),
                command: "protocol_error".into(),
                level: None,
                started: Instant::now(),
                close: true,
            });
        }
        submit_ready(&shared, &state, &mut slots, seen_index);
        let finished = gather_replies(&mut state, &shared, &mut slots, &mut output);
        if finished {
            closing = true;
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        if closing && slots.is_empty() {
            let _ = stream.shutdown().await;
            return;
        }
        if (eof || *draining.borrow()) && slots.is_empty() && parsed.is_empty() {
            return;
        }
        let reading = !eof && !closing && !*draining.borrow() && parsed.len() < PARSED_MAX;
        let idle_deadline = shared
            .idle_timeout
            .filter(|_| slots.is_empty())
            .map(|timeout| last_activity + timeout);
        tokio::select! {
            biased;
            done = wait_front(&mut slots), if front_waiting(&slots) => {
                seen_index = seen_index.max(index_seen(&done));
                if let Some(slot) = slots.front_mut() {
                    let then_state = std::mem::replace(
                        &mut slot.state,
                        SlotState::Ready(Reply::Null),
                    );
                    if let SlotState::Sent(then, _) = then_state {
                        slot.state = SlotState::Ready(state.finish(then, done));
                    }
                }
            }
            read = stream.read_buf(&mut input), if reading => {
                match read {
                    Ok(0) | Err(_) => eof = true,
                    Ok(_) => {
                        last_activity = Instant::now();
                        if let Err(reply) = parse_all(&mut parser, &mut input, &mut parsed) {
                            // A protocol error: answer what came before it, then the error,
                            // and close, as Redis does.
                            protocol_error = Some(reply);
                            eof = true;
                        }
                    }
                }
                if input.capacity() - input.len() < 1024 {
                    input.reserve(READ_CHUNK);
                }
            }
            _ = draining.changed() => {}
            () = sleep_until(idle_deadline) => {
                let reply = Reply::Error("ERR idle timeout: the connection was closed".into());
                let mut bytes = BytesMut::new();
                encode(&reply, state.protocol(), &mut bytes);
                let _ = stream.write_all(&bytes).await;
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn parse_all(
    parser: &mut RequestParser,
    input: &mut BytesMut,
    parsed: &mut VecDeque<Vec<Bytes>>,
) -> Result<(), Reply> {
    while parsed.len() < PARSED_MAX {
        match parser.feed(input) {
            Ok(Some(args)) => parsed.push_back(args),
            Ok(None) => return Ok(()),
            Err(error) => return Err(Reply::Error(format!("ERR {error}"))),
        }
    }
    Ok(())
}

fn in_flight(slots: &VecDeque<Slot>) -> usize {
    slots
        .iter()
        .filter(|slot| !matches!(slot.state, SlotState::Ready(_)))
        .count()
}

fn plan_commands(
    state: &mut Connection,
    shared: &Shared,
    parsed: &mut VecDeque<Vec<Bytes>>,
    slots: &mut VecDeque<Slot>,
    closing: &mut bool,
) {
    while let Some(args) = parsed.front() {
        if *closing {
            parsed.clear();
            return;
        }
        let busy = in_flight(slots);
        if busy >= shared.pipeline_max {
            return;
        }
        let name = args.first().map(|name| name.as_ref()).unwrap_or(b"");
        if busy > 0 && !pipelinable(name) {
            return;
        }
        let args = parsed.pop_front().expect("peeked");
        let command =
            String::from_utf8_lossy(args.first().map_or(&[][..], |name| name)).to_ascii_lowercase();
        let level = state.read_level();
        let plan = state.plan(args);
        let (state_now, close, level) = match plan {
            Plan::Reply(reply) => (SlotState::Ready(reply), false, None),
            Plan::Close(reply) => {
                *closing = true;
                (SlotState::Ready(reply), true, None)
            }
            plan @ Plan::Read { .. } => (SlotState::Unsent(plan), false, Some(level)),
            plan => (SlotState::Unsent(plan), false, None),
        };
        slots.push_back(Slot {
            state: state_now,
            command,
            level,
            started: Instant::now(),
            close,
        });
    }
}

/// Submits planned requests in order, as long as each is of the same kind as every
/// unanswered request before it.
fn submit_ready(
    shared: &Arc<Shared>,
    state: &Connection,
    slots: &mut VecDeque<Slot>,
    seen_index: u64,
) {
    let group = shared.admission.group_of(state.client_name());
    let mut kind_in_flight: Option<Kind> = None;
    for slot in slots.iter_mut() {
        let Some(kind) = slot.kind() else {
            continue;
        };
        if kind_in_flight.is_some_and(|flying| flying != kind) {
            return;
        }
        kind_in_flight = Some(kind);
        if let SlotState::Unsent(_) = slot.state {
            let SlotState::Unsent(plan) =
                std::mem::replace(&mut slot.state, SlotState::Ready(Reply::Null))
            else {
                unreachable!("matched above");
            };
            slot.state = submit(shared, plan, seen_index, group);
        }
    }
}

/// The log index an answer shows the connection: a write's entry, a read's applied index.
fn index_seen(done: &Done) -> u64 {
    match done {
        Done::Written(Ok(written)) => written.index,
        Done::Read(Ok(reads)) => reads
            .iter()
            .map(|read| read.applied_index)
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// Passes a plan through the node's health and admission gates and submits it.
fn submit(shared: &Arc<Shared>, plan: Plan, seen_index: u64, group: usize) -> SlotState {
    let priority = shared.admission.priorities().of_plan(&plan);
    let health = shared.health.check(&plan);
    let (then, request) = match plan {
        Plan::Reply(reply) | Plan::Close(reply) => return SlotState::Ready(reply),
        Plan::Write { command, then } => (then, Request::Write(command)),
        Plan::Read { ops, level, then } => (then, Request::Read { ops, level }),
        Plan::Status { then } => (then, Request::Status),
    };
    let write = request.is_write();
    if let Err(error) = health {
        return SlotState::Sent(then, Waiting::Failed { error, write });
    }
    let priority = priority.expect("a plan that goes to the node has a priority");
    let waiting = match shared.admission.enter(priority, group) {
        Err(refusal) => Waiting::Failed {
            error: ServiceError::Overloaded {
                detail: refusal.to_string(),
            },
            write,
        },
        Ok(Entry::Unlimited) => send_request(shared, request, seen_index, None),
        Ok(Entry::Running(permit)) => send_request(shared, request, seen_index, Some(permit)),
        Ok(Entry::Waiting(permit, woken)) => {
            let shared = shared.clone();
            let admitted = tokio::spawn(async move {
                let wait_max = shared.admission_wait_max;
                let refused = |refusal: crate::admission::Refusal| Waiting::Failed {
                    error: ServiceError::Overloaded {
                        detail: refusal.to_string(),
                    },
                    write,
                };
                match tokio::time::timeout(wait_max, woken).await {
                    Ok(Ok(Ok(()))) => send_request(&shared, request, seen_index, Some(permit)),
                    Ok(Ok(Err(refusal))) => refused(refusal),
                    Ok(Err(_)) => Waiting::Failed {
                        error: ServiceError::Refused {
                            reason: "the node is shutting down".into(),
                        },
                        write,
                    },
                    Err(_) => {
                        let waited_ms = wait_max.as_millis() as u64;
                        let refusal = shared.admission.waited_too_long(priority, group, waited_ms);
                        // Dropping the permit gives up the place in the queue.
                        drop(permit);
                        refused(refusal)
                    }
                }
            });
            Waiting::Admitting { admitted, write }
        }
    };
    SlotState::Sent(then, waiting)
}

/// Submits an admitted request to the gateway; `permit` is held until it is answered.
fn send_request(
    shared: &Shared,
    request: Request,
    seen_index: u64,
    permit: Option<Arc<Permit>>,
) -> Waiting {
    match request {
        Request::Write(command) => {
            let body = RequestBody::Write(Bytes::from(command.encode()));
            match shared.gateway.submit(body, Route::Leader, permit) {
                Ok(receiver) => Waiting::Write(receiver),
                Err(error) => Waiting::Failed {
                    error: service_error(error),
                    write: true,
                },
            }
        }
        Request::Read { ops, level } => {
            let (consistency, route) = read_route(level);
            let mut receivers = Vec::with_capacity(ops.len());
            for op in ops {
                let query = synod_kv::Command { session: None, op };
                let body = RequestBody::Read {
                    query: Bytes::from(query.encode()),
                    consistency,
                    min_applied: seen_index,
                };
                match shared.gateway.submit(body, route, permit.clone()) {
                    Ok(receiver) => receivers.push(receiver),
                    Err(error) => {
                        return Waiting::Failed {
                            error: service_error(error),
                            write: false,
                        };
                    }
                }
            }
            Waiting::Read(receivers)
        }
        Request::Status => {
            let status = shared.status.status();
            match permit {
                None => Waiting::Status(status),
                // The permit is held until the status is read.
                Some(permit) => Waiting::Status(tokio::spawn(async move {
                    let status = status.await.ok().flatten();
                    drop(permit);
                    status
                })),
            }
        }
    }
}

/// How a read level is served: the replica's consistency and where the request goes.
pub fn read_route(level: ReadLevel) -> (ReadConsistency, Route) {
    match level {
        ReadLevel::Linearizable => (ReadConsistency::Linearizable, Route::Leader),
        ReadLevel::Lease => (ReadConsistency::Lease, Route::Leader),
        // A follower read: this node's replica asks the leader for the read index and
        // serves the value itself once it has applied that far.
        ReadLevel::Follower => (ReadConsistency::Linearizable, Route::Local),
        ReadLevel::Stale => (ReadConsistency::Stale, Route::Local),
    }
}

fn front_waiting(slots: &VecDeque<Slot>) -> bool {
    slots
        .front()
        .is_some_and(|slot| matches!(slot.state, SlotState::Sent(..)))
}

/// Waits for the answer of the front slot, which must be `Sent`.
async fn wait_front(slots: &mut VecDeque<Slot>) -> Done {
    let Some(Slot {
        state: SlotState::Sent(_, waiting),
        ..
    }) = slots.front_mut()
    else {
        return std::future::pending().await;
    };
    loop {
        return match waiting {
            Waiting::Admitting { admitted, write } => {
                // Admitted (or refused) by now: wait on what it became.
                let write = *write;
                let admitted = admitted.await.unwrap_or_else(|_| Waiting::Failed {
                    error: ServiceError::Refused {
                        reason: "the node is shutting down".into(),
                    },
                    write,
                });
                *waiting = admitted;
                continue;
            }
            Waiting::Failed { error, write } => failed(*write, error.clone()),
            Waiting::Write(receiver) => Done::Written(write_result(receiver.await)),
            Waiting::Read(receivers) => {
                let mut results = Vec::with_capacity(receivers.len());
                for receiver in receivers.iter_mut() {
                    match read_result(receiver.await) {
                        Ok(done) => results.push(done),
                        Err(error) => return Done::Read(Err(error)),
                    }
                }
                Done::Read(Ok(results))
            }
            Waiting::Status(handle) => match handle.await {
                Ok(Some(status)) => Done::Status(Box::new(status)),
                _ => Done::Read(Err(ServiceError::Refused {
                    reason: "the node's status is not available (starting or stopping)".into(),
                })),
            },
        };
    }
}

fn failed(is_write: bool, error: ServiceError) -> Done {
    if is_write {
        Done::Written(Err(error))
    } else {
        Done::Read(Err(error))
    }
}

fn service_error(error: GatewayError) -> ServiceError {
    match error {
        GatewayError::NoLeader { detail } => ServiceError::NoLeader { detail },
        GatewayError::Refused { reason } => ServiceError::Refused { reason },
        GatewayError::Timeout { waited_ms } => ServiceError::Timeout { waited_ms },
        error @ GatewayError::LeaderChanged { .. } => ServiceError::LeaderChanged {
            detail: error.to_string(),
        },
    }
}

type Answer = Result<Result<Outcome, GatewayError>, oneshot::error::RecvError>;

fn outcome_of(answer: Answer) -> Result<Outcome, ServiceError> {
    match answer {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(error)) => Err(service_error(error)),
        Err(_) => Err(ServiceError::Refused {
            reason: "the node is shutting down".into(),
        }),
    }
}

fn common_error(outcome: Outcome) -> ServiceError {
    match outcome {
        Outcome::NotLeader { leader } => ServiceError::NoLeader {
            detail: match leader {
                Some(leader) => format!("node {leader} leads but could not be reached"),
                None => "an election is under way".into(),
            },
        },
        Outcome::Refused { reason } => ServiceError::Refused { reason },
        Outcome::Unknown { reason } => ServiceError::Unknown { reason },
        other => ServiceError::Refused {
            reason: format!("the replica gave an unexpected answer: {other:?}"),
        },
    }
}

fn write_result(answer: Answer) -> Result<Written, ServiceError> {
    match outcome_of(answer)? {
        Outcome::Applied {
            response,
            term,
            index,
        } => match Response::decode(&response) {
            Ok(response) => Ok(Written {
                response,
                term,
                index,
            }),
            Err(error) => Err(ServiceError::Refused {
                reason: format!("the state machine's reply does not decode: {error}"),
            }),
        },
        other => Err(common_error(other)),
    }
}

fn read_result(answer: Answer) -> Result<ReadDone, ServiceError> {
    match outcome_of(answer)? {
        Outcome::Read {
            response,
            applied_index,
            staleness_ns,
        } => match Response::decode(&response) {
            Ok(response) => Ok(ReadDone {
                response,
                applied_index,
                staleness_ms: staleness_ns.map(|ns| ns / 1_000_000),
            }),
            Err(error) => Err(ServiceError::Refused {
                reason: format!("the state machine's reply does not decode: {error}"),
            }),
        },
        other => Err(common_error(other)),
    }
}

/// Moves ready replies off the front into `output`; returns whether a reply that closes
/// the connection was written.
fn gather_replies(
    state: &mut Connection,
    shared: &Shared,
    slots: &mut VecDeque<Slot>,
    output: &mut BytesMut,
) -> bool {
    while let Some(slot) = slots.front() {
        if !matches!(slot.state, SlotState::Ready(_)) || output.len() >= WRITE_BATCH_BYTES {
            return false;
        }
        let slot = slots.pop_front().expect("peeked");
        let SlotState::Ready(reply) = slot.state else {
            unreachable!("matched above");
        };
        let outcome = match &reply {
            Reply::Error(text)
                if ["TRYAGAIN", "BUSY", "READONLY"]
                    .iter()
                    .any(|prefix| text.starts_with(prefix)) =>
            {
                CommandOutcome::Refused
            }
            Reply::Error(text) if text.contains("no answer within") => CommandOutcome::Timeout,
            Reply::Error(_) => CommandOutcome::Error,
            _ => CommandOutcome::Ok,
        };
        let seconds = slot.started.elapsed().as_secs_f64();
        shared
            .metrics
            .record_command(&slot.command, slot.level, seconds, outcome);
        let version: ProtocolVersion = state.protocol();
        encode(&reply, version, output);
        if slot.close {
            return true;
        }
    }
    false
}
