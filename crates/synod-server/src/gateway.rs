//! The gateway: how the RESP front end of a node reaches the consistent core.
//!
//! It is a client of the replicas, exactly like a remote one: it owns an endpoint on its
//! node ([`GATEWAY_PORT`]), sends `ClientRequest`s to a replica's CLIENT_PORT (its own node's,
//! or the leader's over the peer transport) and matches the responses to the connections
//! waiting for them. A follower's connections therefore reach the leader without the
//! client noticing:
//!
//! ```text
//! connection --submit (bounded)--> gateway --ClientRequest--> replica (here or the leader)
//! connection <--oneshot-- gateway <--ClientResponse (to GATEWAY_PORT)-- replica
//! ```
//!
//! Retries are safe only where nothing was done: `NotLeader` sends the request on to the
//! named leader (or waits for one to be elected, with backoff, until the deadline); every
//! other answer goes back to the connection as it is. A request that gets no answer by its
//! deadline fails with a timeout; for a write its outcome is then unknown.
//!
//! When this node learns of a new leader, requests still out at another node that led
//! before (killed, paused or cut off, it may never answer) do not wait for their deadline:
//! after a short grace ([`STRANDED_GRACE`], time for a former leader that is alive to answer
//! them itself, often with a clean `NotLeader`), a read is sent again to the new leader (a
//! read changes nothing, and an answer from either is one the read may return), and a write
//! or admin request fails with [`GatewayError::LeaderChanged`], its outcome unknown, as etcd
//! answers "leader changed". Requests out at this node's own replica are left to it: it is
//! alive and answers them.
//! Each send of a request carries its attempt in the wire id, so a late answer to an
//! earlier send is told apart and dropped.
//!
//! At most `inflight_max` requests are out at the replicas at once (sent, not yet
//! answered); the rest wait here, in arrival order, until one is answered or their deadline
//! passes. The replica's mailbox is shared by Raft messages and client requests, so this cap
//! (with every node at it, below half that mailbox; `ServerConfig` checks it) keeps a flood
//! of clients from crowding heartbeats and appends out of the leader's mailbox.
//!
//! A request admitted by the node's admission controller carries its
//! [`Permit`](crate::admission::Permit); the gateway drops it when it answers, which frees
//! the slot and gives the adaptive limit its latency sample (a timeout or a refusal for a
//! full queue counts as a drop, which makes the limit back off).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use synod_actor::Port;
use synod_core::NodeId;
use synod_node::client::{ClientRequest, ClientResponse, Outcome, RequestBody};
use synod_node::replica::CLIENT_PORT;
use synod_runtime::{Endpoint, EndpointSendError, EndpointSender};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::admission::Permit;

/// The port the gateway's endpoint serves on every node.
pub const GATEWAY_PORT: Port = Port(4);
/// Submissions taken from the queue in one turn of the gateway loop.
const SUBMISSIONS_BATCH_MAX: usize = 1_024;
/// How often the gateway looks for expired requests and due retries.
const SWEEP_INTERVAL: Duration = Duration::from_millis(5);
/// How long a request out at a former leader may still be answered by it, after this node
/// learned of a new leader, before it is settled here.
pub const STRANDED_GRACE: Duration = Duration::from_millis(50);

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// How long a request may take, retries included.
    pub request_timeout: Duration,
    /// The wait before a request is tried again when no leader is known.
    pub retry_backoff: Duration,
    /// Redirects to a named leader per request before giving up.
    pub redirects_max: u32,
    /// Requests waiting for an answer; beyond it submissions are refused.
    pub pending_max: usize,
    /// Submissions queued for the gateway loop.
    pub queue_capacity: usize,
    /// Requests out at the replicas at once; more wait in the gateway.
    pub inflight_max: usize,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            request_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(20),
            redirects_max: 8,
            pending_max: 65_536,
            queue_capacity: 16_384,
            inflight_max: 8_192,
        }
    }
}

/// Where a request should be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This node's replica (stale and follower reads).
    Local,
    /// The leader's replica (writes, linearizable and lease reads, admin requests).
    Leader,
}

/// Why the gateway could not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GatewayError {
    #[error("no leader is known ({detail}); retry")]
    NoLeader { detail: String },
    #[error("{reason}")]
    Refused { reason: String },
    #[error("no answer within {waited_ms} ms")]
    Timeout { waited_ms: u64 },
    /// The request was out at `from`, which no longer leads (`to` does); a write's outcome
    /// is unknown.
    #[error("node {from}, which had the request, no longer leads (node {to} does)")]
    LeaderChanged { from: NodeId, to: NodeId },
}

/// The bits of a wire request id that number the sends of one request.
const ATTEMPT_BITS: u32 = 16;

/// The id a send of request `id` carries: the request and which send of it this is.
fn wire_id(id: u64, attempt: u16) -> u64 {
    (id << ATTEMPT_BITS) | u64::from(attempt)
}

/// The request and send a wire id names.
fn split_wire_id(wire: u64) -> (u64, u16) {
    (wire >> ATTEMPT_BITS, (wire & 0xffff) as u16)
}

struct Submission {
    body: RequestBody,
    route: Route,
    reply: oneshot::Sender<Result<Outcome, GatewayError>>,
    permit: Option<Arc<Permit>>,
}

/// A handle connections use to submit requests; cloneable.
#[derive(Clone, Debug)]
pub struct Gateway {
    submissions: mpsc::Sender<Submission>,
    leader_hint: Arc<AtomicU64>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Starts the gateway loop on `endpoint` (which must serve [`GATEWAY_PORT`]) as a task
    /// of the current tokio runtime. It ends when every handle is dropped or the node stops.
    pub fn start(node: NodeId, endpoint: Endpoint, config: GatewayConfig) -> Gateway {
        let (submissions, queue) = mpsc::channel(config.queue_capacity);
        let leader_hint = Arc::new(AtomicU64::new(0));
        let sender = endpoint.sender();
        let gateway_loop = GatewayLoop {
            node,
            endpoint,
            sender,
            queue,
            config,
            leader_hint: leader_hint.clone(),
            leader_seen: None,
            stranded: BTreeMap::new(),
            pending: BTreeMap::new(),
            retries: BTreeMap::new(),
            waiting: VecDeque::new(),
            inflight: 0,
            next_id: 0,
        };
        tokio::spawn(gateway_loop.run());
        Gateway {
            submissions,
            leader_hint,
        }
    }

    /// Sends `body` to the replica `route` names and waits for its answer.
    pub async fn request(&self, body: RequestBody, route: Route) -> Result<Outcome, GatewayError> {
        match self.submit(body, route, None) {
            Ok(receiver) => receiver.await.unwrap_or_else(|_| {
                Err(GatewayError::Refused {
                    reason: "the node is shutting down".into(),
                })
            }),
            Err(error) => Err(error),
        }
    }

    /// Queues `body` without waiting; the answer arrives on the returned receiver. A
    /// connection submits every pipelined command at once and awaits the answers in order.
    /// `permit`, the request's admission, is held until the answer is sent.
    pub fn submit(
        &self,
        body: RequestBody,
        route: Route,
        permit: Option<Arc<Permit>>,
    ) -> Result<oneshot::Receiver<Result<Outcome, GatewayError>>, GatewayError> {
        let (reply, receiver) = oneshot::channel();
        let submission = Submission {
            body,
            route,
            reply,
            permit,
        };
        match self.submissions.try_send(submission) {
            Ok(()) => Ok(receiver),
            Err(mpsc::error::TrySendError::Full(_)) => Err(GatewayError::Refused {
                reason: "BUSY the node's request queue is full; retry later".into(),
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(GatewayError::Refused {
                reason: "the node is shutting down".into(),
            }),
        }
    }

    /// The leader the gateway last learned of (`None`: unknown).
    pub fn leader_hint(&self) -> Option<NodeId> {
        match self.leader_hint.load(Ordering::Relaxed) {
            0 => None,
            node => Some(NodeId(node)),
        }
    }

    /// Tells the gateway who leads, as this node's replica sees it.
    pub fn set_leader_hint(&self, leader: Option<NodeId>) {
        let value = leader.map_or(0, |node| node.0);
        self.leader_hint.store(value, Ordering::Relaxed);
    }
}

struct Pending {
    body: RequestBody,
    route: Route,
    reply: oneshot::Sender<Result<Outcome, GatewayError>>,
    started: Instant,
    deadline: Instant,
    redirects: u32,
    /// The node the request was last sent to.
    target: NodeId,
    /// Which send of the request is the current one (wrapping); answers to others are late.
    attempt: u16,
    /// Whether it is out at a replica now (counted in `inflight`).
    sent: bool,
    permit: Option<Arc<Permit>>,
}

impl Pending {
    /// Answers the connection. A timeout or a refusal for a full queue tells the adaptive
    /// limit the node is overloaded.
    fn answer(self, result: Result<Outcome, GatewayError>) {
        let overloaded = match &result {
            Err(GatewayError::Timeout { .. }) => true,
            Err(GatewayError::Refused { reason }) => reason.starts_with("BUSY"),
            _ => false,
        };
        if overloaded && let Some(permit) = &self.permit {
            permit.mark_dropped();
        }
        let _ = self.reply.send(result);
    }
}

struct GatewayLoop {
    node: NodeId,
    endpoint: Endpoint,
    sender: EndpointSender,
    queue: mpsc::Receiver<Submission>,
    config: GatewayConfig,
    leader_hint: Arc<AtomicU64>,
    /// The leader as the last sweep saw it, to notice a change.
    leader_seen: Option<NodeId>,
    /// Requests out at a former leader when a new one became known: request id to (when
    /// its grace ends, the send it was on, the new leader). At most one entry per pending
    /// request.
    stranded: BTreeMap<u64, (Instant, u16, NodeId)>,
    pending: BTreeMap<u64, Pending>,
    /// Requests waiting to be sent again: (when, request id).
    retries: BTreeMap<(Instant, u64), ()>,
    /// Requests waiting for room under `inflight_max`, oldest first; each is pending, so
    /// there are at most `pending_max`. Ids whose request has gone are skipped.
    waiting: VecDeque<u64>,
    /// Requests out at the replicas; at most `inflight_max`.
    inflight: usize,
    next_id: u64,
}

impl GatewayLoop {
    async fn run(mut self) {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                inbound = self.endpoint.recv() => match inbound {
                    Some(inbound) => {
                        self.on_response(&inbound.payload);
                        for _ in 1..SUBMISSIONS_BATCH_MAX {
                            let Some(inbound) = self.endpoint.try_recv() else { break };
                            self.on_response(&inbound.payload);
                        }
                        self.send_waiting();
                    }
                    None => return self.fail_all("the node stopped"),
                },
                submission = self.queue.recv() => match submission {
                    Some(submission) => {
                        self.on_submission(submission);
                        for _ in 1..SUBMISSIONS_BATCH_MAX {
                            let Ok(submission) = self.queue.try_recv() else { break };
                            self.on_submission(submission);
                        }
                    }
                    None => return self.fail_all("the node is shutting down"),
                },
                _ = sweep.tick(), if !self.pending.is_empty() => {
                    self.sweep(Instant::now());
                    self.send_waiting();
                }
            }
        }
    }

    fn leader(&self) -> Option<NodeId> {
        match self.leader_hint.load(Ordering::Relaxed) {
            0 => None,
            node => Some(NodeId(node)),
        }
    }

    fn on_submission(&mut self, submission: Submission) {
        if self.pending.len() >= self.config.pending_max {
            let reason = "BUSY too many requests are waiting on this node; retry later";
            if let Some(permit) = &submission.permit {
                permit.mark_dropped();
            }
            let _ = submission.reply.send(Err(GatewayError::Refused {
                reason: reason.into(),
            }));
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let now = Instant::now();
        let pending = Pending {
            body: submission.body,
            route: submission.route,
            reply: submission.reply,
            started: now,
            deadline: now + self.config.request_timeout,
            redirects: 0,
            target: self.node,
            attempt: 0,
            sent: false,
            permit: submission.permit,
        };
        self.pending.insert(id, pending);
        self.dispatch(id);
    }

    /// Sends request `id` if there is room under `inflight_max`, else queues it.
    fn dispatch(&mut self, id: u64) {
        if self.inflight < self.config.inflight_max && self.waiting.is_empty() {
            self.send(id);
        } else {
            self.waiting.push_back(id);
            self.send_waiting();
        }
    }

    /// Sends waiting requests into the room answers have made.
    fn send_waiting(&mut self) {
        while self.inflight < self.config.inflight_max {
            let Some(id) = self.waiting.pop_front() else {
                return;
            };
            if self.pending.get(&id).is_some_and(|pending| !pending.sent) {
                self.send(id);
            }
        }
    }

    /// Request `id` is no longer out at a replica (answered, or about to be forgotten).
    fn mark_answered(&mut self, id: u64) {
        if let Some(pending) = self.pending.get_mut(&id)
            && pending.sent
        {
            pending.sent = false;
            self.inflight -= 1;
        }
    }

    /// Sends request `id` to where its route points now.
    fn send(&mut self, id: u64) {
        let leader = self.leader();
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        assert!(!pending.sent, "request {id} sent twice");
        pending.target = match pending.route {
            Route::Local => self.node,
            Route::Leader => leader.unwrap_or(self.node),
        };
        pending.attempt = pending.attempt.wrapping_add(1);
        let request = ClientRequest {
            id: wire_id(id, pending.attempt),
            reply_port: GATEWAY_PORT.0,
            body: pending.body.clone(),
        };
        let result = self
            .sender
            .try_send(pending.target, CLIENT_PORT, request.encode());
        if result.is_ok() {
            pending.sent = true;
            self.inflight += 1;
            assert!(
                self.inflight <= self.config.inflight_max,
                "over inflight_max"
            );
        }
        if let Err(error) = result {
            let reason = match error {
                EndpointSendError::Full { .. } => {
                    "BUSY the node's outgoing queue is full; retry later".to_string()
                }
                EndpointSendError::Stopped => "the node is shutting down".to_string(),
            };
            self.finish(id, Err(GatewayError::Refused { reason }));
        }
    }

    fn on_response(&mut self, payload: &[u8]) {
        let Ok(response) = ClientResponse::decode(payload) else {
            return;
        };
        let (id, attempt) = split_wire_id(response.id);
        if self
            .pending
            .get(&id)
            .is_none_or(|pending| !pending.sent || pending.attempt != attempt)
        {
            // A late answer: to a request that has already timed out or been answered, or
            // to an earlier send of one that was sent again.
            return;
        }
        self.mark_answered(id);
        let pending = self.pending.get_mut(&id).expect("checked above");
        match response.outcome {
            Outcome::NotLeader { leader } => {
                let from = pending.target;
                match leader {
                    Some(leader)
                        if leader != from && pending.redirects < self.config.redirects_max =>
                    {
                        pending.redirects += 1;
                        self.leader_hint.store(leader.0, Ordering::Relaxed);
                        self.dispatch(id);
                    }
                    _ => {
                        let (deadline, started) = (pending.deadline, pending.started);
                        // No leader known (an election is under way): forget a hint that
                        // pointed at the node that just said it does not lead, and wait.
                        if self.leader() == Some(from) || leader.is_none() {
                            self.leader_hint.store(0, Ordering::Relaxed);
                        }
                        let at = Instant::now() + self.config.retry_backoff;
                        if at >= deadline {
                            let detail = format!(
                                "node {from} does not lead and no leader was elected within \
                                 {} ms",
                                started.elapsed().as_millis()
                            );
                            self.finish(id, Err(GatewayError::NoLeader { detail }));
                        } else {
                            self.retries.insert((at, id), ());
                        }
                    }
                }
            }
            outcome => self.finish(id, Ok(outcome)),
        }
    }

    fn finish(&mut self, id: u64, result: Result<Outcome, GatewayError>) {
        self.mark_answered(id);
        if let Some(pending) = self.pending.remove(&id) {
            pending.answer(result);
        }
    }

    /// Sends due retries, moves requests stranded at a former leader, and fails requests
    /// past their deadline.
    fn sweep(&mut self, now: Instant) {
        self.follow_leader_change(now);
        let later = self.retries.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut self.retries, later);
        for (_, id) in due.into_keys() {
            if self.pending.contains_key(&id) {
                self.dispatch(id);
            }
        }
        // Every request gets the same timeout and ids grow with time, so the expired
        // requests are the ones with the lowest ids.
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let pending = entry.remove();
            if pending.sent {
                self.inflight -= 1;
            }
            let waited_ms = pending.started.elapsed().as_millis() as u64;
            pending.answer(Err(GatewayError::Timeout { waited_ms }));
        }
    }

    /// When the known leader has changed to another node, the requests for the leader
    /// still out at a third node (not this one, not the new leader) may be stranded there:
    /// each gets `STRANDED_GRACE` to be answered, then reads are sent again (to the new
    /// leader) and writes and admin requests fail with their outcome unknown.
    fn follow_leader_change(&mut self, now: Instant) {
        let leader = self.leader();
        if leader != self.leader_seen {
            self.leader_seen = leader;
            if let Some(leader) = leader {
                let node = self.node;
                for (id, pending) in &self.pending {
                    let remote = pending.target != node && pending.target != leader;
                    if pending.sent && pending.route == Route::Leader && remote {
                        let due = now + STRANDED_GRACE;
                        self.stranded.insert(*id, (due, pending.attempt, leader));
                    }
                }
            }
        }
        let due: Vec<(u64, u16, NodeId)> = self
            .stranded
            .iter()
            .filter(|(_, (at, _, _))| *at <= now)
            .map(|(id, (_, attempt, leader))| (*id, *attempt, *leader))
            .collect();
        for (id, attempt, leader) in due {
            self.stranded.remove(&id);
            // Answered, or sent again elsewhere, within the grace: nothing to do.
            let Some(pending) = self
                .pending
                .get(&id)
                .filter(|pending| pending.sent && pending.attempt == attempt)
            else {
                continue;
            };
            let (from, read) = (
                pending.target,
                matches!(pending.body, RequestBody::Read { .. }),
            );
            self.mark_answered(id);
            if read {
                self.dispatch(id);
            } else {
                self.finish(id, Err(GatewayError::LeaderChanged { from, to: leader }));
            }
        }
    }

    fn fail_all(&mut self, reason: &str) {
        self.inflight = 0;
        self.stranded.clear();
        self.waiting.clear();
        for (_, pending) in std::mem::take(&mut self.pending) {
            let _ = pending.reply.send(Err(GatewayError::Refused {
                reason: reason.to_string(),
            }));
        }
    }
}
