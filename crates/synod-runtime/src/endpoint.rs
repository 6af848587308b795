//! Endpoints: ports of a node served by tasks outside its actor system.
//!
//! A front end that runs on tokio (the RESP server's gateway) speaks to the node's actors
//! the way a remote client would: it sends payloads to a node and port, and receives what
//! actors send to its own port on this node. The node loop carries both directions, so an
//! endpoint's messages pass the same bounded queues and the same transport as actors':
//!
//! ```text
//! task --EndpointSender (bounded)--> node loop --services.send_to_node--> actor or peer
//! actor or peer --> node loop --(port is an endpoint's)--> Endpoint (bounded) --> task
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use synod_actor::{Inbound, Port};
use synod_core::NodeId;
use thiserror::Error;
use tokio::sync::mpsc;

/// A payload an endpoint sends through the node loop.
#[derive(Debug)]
pub(crate) struct EndpointMessage {
    pub(crate) to: NodeId,
    pub(crate) port: Port,
    pub(crate) payload: Bytes,
}

/// Counters of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct EndpointCounters {
    /// Arrivals dropped because the endpoint's queue was full.
    pub(crate) dropped: AtomicU64,
}

/// The receiving side of an endpoint, held by the task that serves the port.
#[derive(Debug)]
pub struct Endpoint {
    port: Port,
    incoming: mpsc::Receiver<Inbound>,
    sender: EndpointSender,
}

impl Endpoint {
    pub(crate) fn new(
        port: Port,
        incoming: mpsc::Receiver<Inbound>,
        sender: EndpointSender,
    ) -> Endpoint {
        Endpoint {
            port,
            incoming,
            sender,
        }
    }

    pub fn port(&self) -> Port {
        self.port
    }

    /// The next message sent to this port; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.incoming.recv().await
    }

    /// A message already waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.incoming.try_recv().ok()
    }

    pub fn sender(&self) -> EndpointSender {
        self.sender.clone()
    }

    /// Arrivals dropped so far because this endpoint's queue was full.
    pub fn dropped_count(&self) -> u64 {
        self.sender.counters.dropped.load(Ordering::Relaxed)
    }

    /// Sends of this node's endpoints that its services refused so far (unknown node, full
    /// peer queue, too large).
    pub fn send_failures_count(&self) -> u64 {
        self.sender.send_failures.load(Ordering::Relaxed)
    }
}

/// Why an endpoint's send did not reach the node loop. Like a network send, one that did
/// is still not promised delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EndpointSendError {
    #[error("the node's endpoint queue is full ({capacity} messages); retry later")]
    Full { capacity: usize },
    #[error("the node is not running")]
    Stopped,
}

/// The sending side of an endpoint; cloneable.
#[derive(Debug, Clone)]
pub struct EndpointSender {
    pub(crate) outgoing: mpsc::Sender<EndpointMessage>,
    pub(crate) capacity: usize,
    pub(crate) counters: Arc<EndpointCounters>,
    pub(crate) send_failures: Arc<AtomicU64>,
}

impl EndpointSender {
    /// Queues `payload` for the actor bound to `port` on node `to` (this node or a peer);
    /// never waits.
    pub fn try_send(
        &self,
        to: NodeId,
        port: Port,
        payload: Bytes,
    ) -> Result<(), EndpointSendError> {
        let message = EndpointMessage { to, port, payload };
        self.outgoing
            .try_send(message)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => EndpointSendError::Full {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => EndpointSendError::Stopped,
            })
    }

    /// Like [`EndpointSender::try_send`], waiting for room in the queue.
    pub async fn send(
        &self,
        to: NodeId,
        port: Port,
        payload: Bytes,
    ) -> Result<(), EndpointSendError> {
        let message = EndpointMessage { to, port, payload };
        self.outgoing
            .send(message)
            .await
            .map_err(|_| EndpointSendError::Stopped)
    }
}

/// The node loop's side of its endpoints.
#[derive(Debug)]
pub(crate) struct EndpointRoutes {
    /// Port -> where its arrivals go, and the endpoint's counters.
    pub(crate) ports: BTreeMap<Port, (mpsc::Sender<Inbound>, Arc<EndpointCounters>)>,
    /// Sends of any endpoint that the node's services refused.
    pub(crate) send_failures: Arc<AtomicU64>,
}

impl EndpointRoutes {
    /// Hands `inbound` to the endpoint serving its port, or gives it back when no endpoint
    /// does. A full endpoint drops the message (counted), as a full mailbox would.
    pub(crate) fn route(&self, inbound: Inbound) -> Option<Inbound> {
        let Some((sender, counters)) = self.ports.get(&inbound.port) else {
            return Some(inbound);
        };
        if sender.try_send(inbound).is_err() {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        None
    }
}
