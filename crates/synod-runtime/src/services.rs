//! `RuntimeServices`: what the actors of one node reach on this executor. Network sends go
//! into bounded per-peer queues (or, to the node itself, into a local queue), disk requests go
//! to the IO thread, clocks are real, randomness comes from a per-node seeded PRNG, fault
//! points never fire, and observations go into a bounded log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use synod_actor::{
    DiskCompletion, DiskError, DiskOp, DiskRequestId, Inbound, NetSendError, Observation, Port,
    Services,
};
use synod_core::limits::{DISK_REQUESTS_COUNT_MAX, FRAME_PAYLOAD_SIZE_MAX};
use synod_core::{BoundedQueue, FaultPoints, Instant, NoFaults, NodeId, Prng, WallClock};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::disk::DiskRequest;
use crate::peer::{OutgoingFrame, PeerLink};
use crate::record::{BoundedLog, Logger, lock};

/// One observation an actor reported, with the node's clock reading at the time.
#[derive(Debug)]
pub struct ObservationRecord {
    pub at: Instant,
    pub observation: Box<dyn Observation>,
}

/// The bounded log of observations, shared with node handles so tests can watch it.
pub(crate) type ObservationLog = Arc<Mutex<BoundedLog<ObservationRecord>>>;

/// Counters of the services themselves (the transport and disk have their own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServicesStats {
    pub local_sends_count: u64,
    pub local_queue_full_count: u64,
    pub unknown_node_sends_count: u64,
    pub disk_submitted_count: u64,
    /// Disk requests that failed at once because there is no data directory or IO thread.
    pub disk_refused_count: u64,
    pub observations_count: u64,
}

/// The executor's services for one node.
#[derive(Debug)]
pub(crate) struct RuntimeServices {
    pub(crate) node: NodeId,
    pub(crate) clock: Clock,
    pub(crate) prng: Prng,
    pub(crate) logger: Logger,
    pub(crate) log_observations: bool,
    pub(crate) peers: BTreeMap<NodeId, PeerLink>,
    pub(crate) peer_queue_capacity: usize,
    /// Ports whose frames go in each peer's priority queue.
    pub(crate) priority_ports: Vec<Port>,
    /// Messages an actor sent to its own node, delivered by the node loop after each round.
    pub(crate) local: BoundedQueue<Inbound>,
    /// `None` when the node has no data directory.
    pub(crate) disk: Option<mpsc::Sender<DiskRequest>>,
    /// Completions of requests that could not reach the IO thread, delivered like local sends.
    pub(crate) disk_refused: BoundedQueue<DiskCompletion>,
    pub(crate) observations: ObservationLog,
    pub(crate) stats: ServicesStats,
}

impl RuntimeServices {
    pub(crate) fn new(
        node: NodeId,
        seed: u64,
        clock: Clock,
        logger: Logger,
        local_queue_capacity: usize,
        observations: ObservationLog,
    ) -> RuntimeServices {
        RuntimeServices {
            node,
            clock,
            prng: Prng::from_seed(seed),
            logger,
            log_observations: false,
            peers: BTreeMap::new(),
            peer_queue_capacity: 1,
            priority_ports: Vec::new(),
            local: BoundedQueue::new(local_queue_capacity),
            disk: None,
            disk_refused: BoundedQueue::new(DISK_REQUESTS_COUNT_MAX),
            observations,
            stats: ServicesStats::default(),
        }
    }

    fn refuse_disk(&mut self, id: DiskRequestId, op: &DiskOp, message: &str) {
        self.stats.disk_refused_count += 1;
        let path = op
            .paths()
            .first()
            .map_or_else(String::new, |p| p.to_string());
        let completion = DiskCompletion {
            id,
            result: Err(DiskError::Io {
                op: op.kind(),
                path,
                message: message.to_string(),
            }),
        };
        // The actor system allows at most DISK_REQUESTS_COUNT_MAX outstanding requests, and
        // this queue has that capacity, so it cannot be full.
        let pushed = self.disk_refused.push_back(completion);
        assert!(
            pushed.is_ok(),
            "more refused disk requests than may be outstanding"
        );
    }
}

/// A seed for a node that was not given one: the standard library's per-process random
/// hasher keys come from the operating system, mixed with the time and the process id.
pub(crate) fn seed_from_entropy() -> u64 {
    use std::hash::BuildHasher;
    let nanos = Clock::wall_clock().0;
    std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()))
}

impl Services for RuntimeServices {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn wall_clock(&self) -> WallClock {
        self.clock.node_wall_clock()
    }

    fn random_u64(&mut self) -> u64 {
        self.prng.next_u64()
    }

    fn send_to_node(&mut self, to: NodeId, port: Port, payload: Bytes) -> Result<(), NetSendError> {
        if payload.len() > FRAME_PAYLOAD_SIZE_MAX {
            return Err(NetSendError::TooLarge {
                size: payload.len(),
                limit: FRAME_PAYLOAD_SIZE_MAX,
            });
        }
        if to == self.node {
            let inbound = Inbound {
                from: self.node,
                port,
                payload,
            };
            return match self.local.push_back(inbound) {
                Ok(()) => {
                    self.stats.local_sends_count += 1;
                    Ok(())
                }
                Err(_) => {
                    self.stats.local_queue_full_count += 1;
                    let capacity = self.local.capacity();
                    Err(NetSendError::QueueFull { node: to, capacity })
                }
            };
        }
        let Some(peer) = self.peers.get(&to) else {
            self.stats.unknown_node_sends_count += 1;
            return Err(NetSendError::UnknownNode { node: to });
        };
        let priority = self.priority_ports.contains(&port);
        if let Err(rejected) = peer.counters.admit(self.clock.now(), !priority) {
            return Err(NetSendError::PeerUnavailable {
                node: to,
                state: rejected.state.name(),
                retry_after_ms: rejected.retry_after.as_millis(),
            });
        }
        // A closed queue means the peer's task is gone, which happens only while the node
        // shuts down; to the actor that is the same as a full queue: the message is dropped.
        let queue = if priority {
            &peer.priority
        } else {
            &peer.queue
        };
        match queue.try_send(OutgoingFrame { port, payload }) {
            Ok(()) => Ok(()),
            Err(_) => {
                peer.counters.count_queue_full();
                Err(NetSendError::QueueFull {
                    node: to,
                    capacity: self.peer_queue_capacity,
                })
            }
        }
    }

    fn submit_disk(&mut self, id: DiskRequestId, op: DiskOp) {
        self.stats.disk_submitted_count += 1;
        let Some(disk) = &self.disk else {
            self.refuse_disk(id, &op, "this node has no data directory");
            return;
        };
        // The channel holds DISK_REQUESTS_COUNT_MAX requests, as many as the actor system
        // lets be outstanding, so it is never full; it is closed only if the IO thread died.
        if let Err(error) = disk.try_send(DiskRequest { id, op }) {
            let request = match error {
                mpsc::error::TrySendError::Full(request)
                | mpsc::error::TrySendError::Closed(request) => request,
            };
            self.refuse_disk(id, &request.op, "the disk thread is not running");
        }
    }

    fn buggify(&mut self, _point: &'static str) -> bool {
        false
    }

    fn fault_points(&mut self) -> Box<dyn FaultPoints + Send> {
        Box::new(NoFaults)
    }

    fn observe(&mut self, observation: Box<dyn Observation>) {
        self.stats.observations_count += 1;
        let at = self.clock.now();
        if self.log_observations {
            self.logger
                .log(format_args!("{at} observed {observation:?}"));
        }
        lock(&self.observations).push(ObservationRecord { at, observation });
    }
}
