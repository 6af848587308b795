//! The failure-detector actor: drives the phi-accrual protocol with real heartbeats.
//!
//! At start it makes its incarnation durable (see [`crate::incarnation`]): read both slots,
//! write the next incarnation into the other slot, sync, and sync the directory if the file
//! is new. Only then does it bind the heartbeat port and send heartbeats carrying that
//! incarnation, so a restarted node can never reuse an incarnation peers have already seen.
//! A disk error at any step fails the actor; its supervisor restarts it and it starts over
//! from what is on disk (a failed fsync is never retried).

use bytes::Bytes;
use synod_actor::{
    Actor, Addr, Context, DiskCompletion, DiskError, DiskOp, DiskReply, Inbound, SendError,
};
use synod_core::config::check_range;
use synod_core::limits::NODES_COUNT_MAX;
use synod_core::{ConfigError, Duration, NodeId, Outbox, Protocol, Validate};
use synod_detector::{DetectorConfig, Input, OUTPUTS_PER_STEP_MAX, Output, PhiAccrualDetector};

use crate::DETECTOR_PORT;
use crate::incarnation::{self, INCARNATION_FILE, READ_LEN, Recovered, SLOT_STRIDE};
use crate::membership::MembershipMessage;
use crate::wire::Heartbeat;

/// The most local subscribers to suspicion events.
pub const SUBSCRIBERS_COUNT_MAX: usize = 16;

/// Failure detection settings of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureDetectorConfig {
    /// Every node of the cluster, this one included.
    pub members: Vec<NodeId>,
    pub detector: DetectorConfig,
}

impl Validate for FailureDetectorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("members", self.members.len(), 1, NODES_COUNT_MAX)?;
        let mut sorted = self.members.clone();
        sorted.sort();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::new(
                "members",
                format!("lists {} twice", pair[0]),
            ));
        }
        self.detector
            .validate()
            .map_err(|error| error.within("detector"))
    }
}

/// A change in what this node believes about a peer, published to subscribers and
/// reported to the executor as an observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MembershipEvent {
    Suspected {
        peer: NodeId,
        phi: f64,
        silence: Duration,
    },
    Recovered {
        peer: NodeId,
        suspected_for: Duration,
    },
    Restarted {
        peer: NodeId,
        incarnation: u64,
    },
}

/// Observation: this node made incarnation `incarnation` durable and started using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeBooted {
    pub incarnation: u64,
}

/// Messages of the failure-detector actor.
#[derive(Debug)]
pub enum DetectorMessage {
    Inbound(Inbound),
    Disk(DiskCompletion),
    /// Time to send heartbeats and evaluate suspicion.
    Tick,
    /// Publish events to this actor from now on (current suspicions are sent at once).
    Subscribe(Addr<MembershipMessage>),
}

impl From<Inbound> for DetectorMessage {
    fn from(inbound: Inbound) -> Self {
        DetectorMessage::Inbound(inbound)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Reading,
    Writing { incarnation: u64 },
    Syncing { incarnation: u64 },
    SyncingDirectory { incarnation: u64 },
    Running { incarnation: u64 },
}

/// Counters of the actor (the protocol keeps its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorStatus {
    pub heartbeats_sent_count: u64,
    pub send_failures_count: u64,
    pub malformed_count: u64,
    pub events_dropped_count: u64,
    pub subscribers_refused_count: u64,
}

/// Sends heartbeats and turns arrivals into suspicion through the phi-accrual detector.
pub struct FailureDetectorActor {
    config: FailureDetectorConfig,
    phase: Phase,
    detector: PhiAccrualDetector,
    outbox: Outbox<Output>,
    subscribers: Vec<Addr<MembershipMessage>>,
    sequence: u64,
    status: DetectorStatus,
}

impl FailureDetectorActor {
    /// Panics on an invalid config: configs from users are validated where they are read.
    pub fn new(config: FailureDetectorConfig) -> FailureDetectorActor {
        if let Err(error) = config.validate() {
            panic!("invalid failure detector config: {error}");
        }
        FailureDetectorActor {
            detector: PhiAccrualDetector::new(config.detector.clone()),
            config,
            phase: Phase::Reading,
            outbox: Outbox::new(OUTPUTS_PER_STEP_MAX),
            subscribers: Vec::new(),
            sequence: 0,
            status: DetectorStatus::default(),
        }
    }

    /// The incarnation in use, once it is durable.
    pub fn incarnation(&self) -> Option<u64> {
        match self.phase {
            Phase::Running { incarnation } => Some(incarnation),
            _ => None,
        }
    }

    pub fn detector(&self) -> &PhiAccrualDetector {
        &self.detector
    }

    pub fn status(&self) -> DetectorStatus {
        self.status
    }

    fn on_disk(&mut self, ctx: &mut Context<'_, DetectorMessage>, completion: DiskCompletion) {
        let result = match completion.result {
            Ok(reply) => self.advance_boot(ctx, reply),
            Err(DiskError::NotFound { .. }) if self.phase == Phase::Reading => {
                self.begin_write(ctx, Recovered { next: 1, slot: 0 })
            }
            Err(error) => Err(error.to_string()),
        };
        if let Err(reason) = result {
            ctx.fail(format!("incarnation store: {reason}"));
        }
    }

    fn advance_boot(
        &mut self,
        ctx: &mut Context<'_, DetectorMessage>,
        reply: DiskReply,
    ) -> Result<(), String> {
        match (self.phase, reply) {
            (Phase::Reading, DiskReply::Data(bytes)) => {
                let recovered = incarnation::recover(&bytes).map_err(|error| error.to_string())?;
                self.begin_write(ctx, recovered)
            }
            (Phase::Writing { incarnation }, DiskReply::Done) => {
                self.phase = Phase::Syncing { incarnation };
                let path = INCARNATION_FILE.to_string();
                submit(ctx, DiskOp::Sync { path })
            }
            // The directory is synced on every boot, not only when this boot created the
            // file: an earlier boot may have created it with a write that failed, leaving
            // a directory entry that only the page cache knows and a crash would lose.
            (Phase::Syncing { incarnation }, DiskReply::Done) => {
                self.phase = Phase::SyncingDirectory { incarnation };
                submit(ctx, DiskOp::SyncDir)
            }
            (Phase::SyncingDirectory { incarnation }, DiskReply::Done) => {
                self.start_running(ctx, incarnation);
                Ok(())
            }
            (phase, reply) => Err(format!(
                "unexpected disk reply {reply:?} in phase {phase:?}"
            )),
        }
    }

    fn begin_write(
        &mut self,
        ctx: &mut Context<'_, DetectorMessage>,
        recovered: Recovered,
    ) -> Result<(), String> {
        let incarnation = recovered.next;
        let offset = recovered.slot * SLOT_STRIDE;
        self.phase = Phase::Writing { incarnation };
        let data = incarnation::encode_slot(incarnation);
        let path = INCARNATION_FILE.to_string();
        submit(ctx, DiskOp::Write { path, offset, data })
    }

    fn start_running(&mut self, ctx: &mut Context<'_, DetectorMessage>, incarnation: u64) {
        self.phase = Phase::Running { incarnation };
        ctx.observe(NodeBooted { incarnation });
        if let Err(error) = ctx.bind(DETECTOR_PORT) {
            ctx.fail(format!("cannot receive heartbeats: {error}"));
            return;
        }
        let now = ctx.now();
        let me = ctx.node_id();
        for peer in self
            .config
            .members
            .iter()
            .copied()
            .filter(|peer| *peer != me)
        {
            self.detector
                .step(now, Input::Monitor(peer), &mut self.outbox);
        }
        self.on_tick(ctx);
    }

    fn on_tick(&mut self, ctx: &mut Context<'_, DetectorMessage>) {
        let Some(incarnation) = self.incarnation() else {
            return;
        };
        let interval = self.config.detector.heartbeat_interval;
        // A rare stall: this node misses a few of its own heartbeat rounds, as a long
        // garbage-collection pause or a starved thread would make it.
        let next = if ctx.buggify("detector.heartbeat_stall") {
            interval.saturating_mul(4)
        } else {
            interval
        };
        ctx.set_timer(next, DetectorMessage::Tick);
        self.sequence += 1;
        let payload = Heartbeat {
            incarnation,
            sequence: self.sequence,
        }
        .encode();
        self.send_heartbeats(ctx, payload);
        self.detector.step(ctx.now(), Input::Tick, &mut self.outbox);
        self.publish(ctx);
    }

    fn send_heartbeats(&mut self, ctx: &mut Context<'_, DetectorMessage>, payload: Bytes) {
        let me = ctx.node_id();
        for peer in self
            .config
            .members
            .iter()
            .copied()
            .filter(|peer| *peer != me)
        {
            match ctx.send_to_node(peer, DETECTOR_PORT, payload.clone()) {
                Ok(()) => self.status.heartbeats_sent_count += 1,
                Err(_) => self.status.send_failures_count += 1,
            }
        }
    }

    fn on_inbound(&mut self, ctx: &mut Context<'_, DetectorMessage>, inbound: Inbound) {
        let heartbeat = match Heartbeat::decode(&inbound.payload) {
            Ok(heartbeat) => heartbeat,
            Err(_) => {
                self.status.malformed_count += 1;
                return;
            }
        };
        if inbound.from == ctx.node_id() {
            self.status.malformed_count += 1;
            return;
        }
        let input = Input::Heartbeat {
            from: inbound.from,
            incarnation: heartbeat.incarnation,
        };
        self.detector.step(ctx.now(), input, &mut self.outbox);
        self.publish(ctx);
    }

    fn on_subscribe(
        &mut self,
        ctx: &mut Context<'_, DetectorMessage>,
        subscriber: Addr<MembershipMessage>,
    ) {
        if !self.subscribers.contains(&subscriber) {
            if self.subscribers.len() >= SUBSCRIBERS_COUNT_MAX {
                self.status.subscribers_refused_count += 1;
                return;
            }
            self.subscribers.push(subscriber);
        }
        let now = ctx.now();
        let suspected: Vec<MembershipEvent> = self
            .detector
            .peers()
            .filter(|(_, status)| status.suspected)
            .map(|(peer, status)| MembershipEvent::Suspected {
                peer,
                phi: self.detector.phi(peer, now).unwrap_or(0.0),
                silence: status.last_heartbeat.map_or(Duration::ZERO, |at| now - at),
            })
            .collect();
        for event in suspected {
            self.deliver(ctx, subscriber, event);
        }
    }

    /// Turns the protocol's outputs into events for subscribers and the executor.
    fn publish(&mut self, ctx: &mut Context<'_, DetectorMessage>) {
        let events: Vec<MembershipEvent> = self
            .outbox
            .drain()
            .map(|output| match output {
                Output::Suspect { peer, phi, silence } => {
                    MembershipEvent::Suspected { peer, phi, silence }
                }
                Output::Recover {
                    peer,
                    suspected_for,
                } => MembershipEvent::Recovered {
                    peer,
                    suspected_for,
                },
                Output::Restarted { peer, incarnation } => {
                    MembershipEvent::Restarted { peer, incarnation }
                }
            })
            .collect();
        for event in events {
            ctx.observe(event);
            for subscriber in self.subscribers.clone() {
                self.deliver(ctx, subscriber, event);
            }
        }
    }

    fn deliver(
        &mut self,
        ctx: &mut Context<'_, DetectorMessage>,
        subscriber: Addr<MembershipMessage>,
        event: MembershipEvent,
    ) {
        match ctx.send(subscriber, MembershipMessage::Event(event)) {
            Ok(()) => {}
            Err(SendError::Full(_)) => self.status.events_dropped_count += 1,
            Err(SendError::Closed(_)) => {
                self.status.events_dropped_count += 1;
                self.subscribers.retain(|existing| *existing != subscriber);
            }
        }
    }
}

fn submit(ctx: &mut Context<'_, DetectorMessage>, op: DiskOp) -> Result<(), String> {
    ctx.disk(op, DetectorMessage::Disk)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

impl Actor for FailureDetectorActor {
    type Message = DetectorMessage;

    fn on_start(&mut self, ctx: &mut Context<'_, DetectorMessage>) {
        let op = DiskOp::Read {
            path: INCARNATION_FILE.to_string(),
            offset: 0,
            len: READ_LEN,
        };
        if let Err(reason) = submit(ctx, op) {
            ctx.fail(format!("incarnation store: {reason}"));
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_, DetectorMessage>, message: DetectorMessage) {
        match message {
            DetectorMessage::Inbound(inbound) => self.on_inbound(ctx, inbound),
            DetectorMessage::Disk(completion) => self.on_disk(ctx, completion),
            DetectorMessage::Tick => self.on_tick(ctx),
            DetectorMessage::Subscribe(subscriber) => self.on_subscribe(ctx, subscriber),
        }
        self.detector.invariants();
    }
}
