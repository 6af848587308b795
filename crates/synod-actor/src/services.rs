//! The boundary between actors and the world: network, disk, clocks, randomness, fault points.
//!
//! An executor implements [`Services`]. The simulation executor answers from virtual time, a
//! simulated network and disk and its single seeded PRNG; the tokio executor answers with
//! real sockets, files and clocks. Actors never see which one they run on.

use std::any::Any;
use std::fmt;

use bytes::Bytes;
pub use synod_core::disk::{DiskError, DiskOp, DiskReply, LOCK_FILE_NAME, validate_file_name};
use synod_core::{FaultPoints, Instant, NodeId, WallClock};
use thiserror::Error;

/// A numbered endpoint on a node that one actor binds to receive network messages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Port(pub u16);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// A message that arrived from another node (or this one, through the network service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub from: NodeId,
    pub port: Port,
    pub payload: Bytes,
}

/// Why a network send was not accepted. Delivery is never guaranteed even when it is.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NetSendError {
    #[error("no address is known for node {node}")]
    UnknownNode { node: NodeId },
    #[error("the send queue to node {node} is full ({capacity} messages); the message was dropped")]
    QueueFull { node: NodeId, capacity: usize },
    #[error("payload of {size} bytes exceeds the frame limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The peer has not been answering: its circuit breaker is open (or half-open with its
    /// trial out), and the message was dropped without being queued.
    #[error(
        "node {node} is not answering (its circuit breaker is {state}); the message was \
         dropped, retry in {retry_after_ms} ms"
    )]
    PeerUnavailable {
        node: NodeId,
        state: &'static str,
        retry_after_ms: u64,
    },
}

/// Identifies one outstanding disk request of a node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DiskRequestId(pub u64);

/// The completion of a disk request, delivered back to the actor that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCompletion {
    pub id: DiskRequestId,
    pub result: Result<DiskReply, DiskError>,
}

/// Why a disk request could not even be submitted.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DiskSubmitError {
    #[error("{count} disk requests are already outstanding on this node (limit {limit})")]
    TooManyRequests { count: usize, limit: usize },
    #[error(transparent)]
    Invalid(#[from] DiskError),
}

/// Something an actor reports for the executor to record: the simulator keeps observations
/// with their virtual time for checkers and reports; the tokio executor logs them.
///
/// To downcast a `Box<dyn Observation>`, call `(*boxed).as_any()`: calling `as_any` on the
/// box itself would see the box, which is an observation too.
pub trait Observation: Any + Send + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Send + fmt::Debug> Observation for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What an executor provides to the actors of one node.
pub trait Services {
    /// The node's monotonic clock. It may drift against other nodes' clocks but never goes
    /// backwards.
    fn now(&self) -> Instant;
    /// The node's calendar clock. It may be offset from other nodes' and may jump.
    fn wall_clock(&self) -> WallClock;
    /// A random value. Under simulation it comes from the run's single seeded PRNG.
    fn random_u64(&mut self) -> u64;
    /// Sends a payload to the actor bound to `port` on node `to`. Acceptance does not
    /// promise delivery: messages may be lost, delayed, duplicated or reordered.
    fn send_to_node(&mut self, to: NodeId, port: Port, payload: Bytes) -> Result<(), NetSendError>;
    /// Starts a disk operation; the executor later calls `System::complete_disk` with `id`.
    fn submit_disk(&mut self, id: DiskRequestId, op: DiskOp);
    /// Whether the fault point `point` fires now (never in production).
    fn buggify(&mut self, point: &'static str) -> bool;
    /// A fault-point source a protocol can own (seeded under simulation, inert in production).
    fn fault_points(&mut self) -> Box<dyn FaultPoints + Send>;
    /// Records an observation.
    fn observe(&mut self, observation: Box<dyn Observation>);
}
