//! What an actor's handler can do: the [`Context`].

use std::any::Any;
use std::marker::PhantomData;

use bytes::Bytes;
use synod_core::{Duration, FaultPoints, Instant, NodeId, Prng, WallClock};
use thiserror::Error;

use crate::actor::{ActorId, Addr, ChildSpec, ExitReason};
use crate::services::{
    DiskCompletion, DiskOp, DiskRequestId, DiskSubmitError, Inbound, NetSendError, Observation,
    Port, Services,
};
use crate::system::Core;
use crate::{Actor, TimerId};

/// Why a local send failed. The message comes back so nothing is lost silently.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SendError<M> {
    #[error("the mailbox is full and rejects new messages")]
    Full(M),
    #[error("the actor has stopped")]
    Closed(M),
}

impl<M> SendError<M> {
    pub fn into_message(self) -> M {
        match self {
            SendError::Full(message) | SendError::Closed(message) => message,
        }
    }
}

/// Why a spawn failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpawnError {
    #[error(transparent)]
    Config(#[from] synod_core::ConfigError),
    #[error("{what} limit of {limit} reached")]
    Limit { what: &'static str, limit: usize },
    #[error("an actor that is stopping cannot spawn children")]
    Stopping,
}

/// Why a port could not be bound.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BindError {
    #[error("{port} is already bound by actor {owner}")]
    InUse { port: Port, owner: ActorId },
}

/// The handle a handler gets: everything an actor may do goes through it.
pub struct Context<'a, M> {
    pub(crate) core: &'a mut Core,
    pub(crate) services: &'a mut dyn Services,
    pub(crate) me: ActorId,
    pub(crate) stopping: bool,
    _message: PhantomData<fn(M) -> M>,
}

impl<'a, M: Send + 'static> Context<'a, M> {
    pub(crate) fn new(
        core: &'a mut Core,
        services: &'a mut dyn Services,
        me: ActorId,
        stopping: bool,
    ) -> Self {
        Context {
            core,
            services,
            me,
            stopping,
            _message: PhantomData,
        }
    }

    pub(crate) fn retype<N>(&mut self) -> Context<'_, N> {
        Context {
            core: self.core,
            services: self.services,
            me: self.me,
            stopping: self.stopping,
            _message: PhantomData,
        }
    }

    /// The node's monotonic clock.
    pub fn now(&self) -> Instant {
        self.services.now()
    }

    /// The node's calendar clock (may be skewed and may jump).
    pub fn wall_clock(&self) -> WallClock {
        self.services.wall_clock()
    }

    /// The node this actor runs on.
    pub fn node_id(&self) -> NodeId {
        self.core.node
    }

    /// This actor's own address.
    pub fn myself(&self) -> Addr<M> {
        Addr::new(self.me)
    }

    /// This actor's name as given in its spec.
    pub fn name(&self) -> &str {
        self.core.name_of(self.me)
    }

    /// Sends a message to an actor on this node, following the target's overflow policy.
    pub fn send<N: Send + 'static>(&mut self, to: Addr<N>, message: N) -> Result<(), SendError<N>> {
        self.core.send(to, message)
    }

    /// Delivers `message` to this actor after `after`. Timers die with the incarnation.
    pub fn set_timer(&mut self, after: Duration, message: M) -> TimerId {
        let deadline = self.now() + after;
        self.core.set_timer(self.me, deadline, Box::new(message))
    }

    /// Cancels a timer; returns false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.core.cancel_timer(timer)
    }

    /// Spawns a child this actor supervises with its own supervision spec.
    pub fn spawn<A: Actor>(&mut self, spec: ChildSpec<A>) -> Result<Addr<A::Message>, SpawnError> {
        if self.stopping {
            return Err(SpawnError::Stopping);
        }
        self.core.spawn(Some(self.me), spec)
    }

    /// Stops a child in an orderly way (its own children first). Its restart type decides
    /// whether it comes back: a permanent child is restarted.
    pub fn stop_child(&mut self, child: ActorId) {
        if self.core.parent_of(child) == Some(self.me) {
            self.core.request_stop(child);
        }
    }

    /// Stops this actor normally once the current handler returns.
    pub fn stop(&mut self) {
        self.core.set_pending_exit(ExitReason::Normal);
    }

    /// Exits abnormally once the current handler returns; the supervisor decides what next.
    /// Use it for conditions the actor cannot recover from in place, such as a failed fsync.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.core
            .set_pending_exit(ExitReason::Failed(reason.into()));
    }

    /// Receives network messages sent to `port` on this node. Rebind after a restart.
    pub fn bind(&mut self, port: Port) -> Result<(), BindError>
    where
        M: From<Inbound>,
    {
        self.core.bind(port, self.me, convert_inbound::<M>)
    }

    /// Sends `payload` to the actor bound to `port` on node `to`.
    pub fn send_to_node(
        &mut self,
        to: NodeId,
        port: Port,
        payload: Bytes,
    ) -> Result<(), NetSendError> {
        let limit = synod_core::limits::FRAME_PAYLOAD_SIZE_MAX;
        if payload.len() > limit {
            return Err(NetSendError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        self.services.send_to_node(to, port, payload)
    }

    /// Starts a disk operation. Its completion arrives later as `map(completion)`.
    pub fn disk(
        &mut self,
        op: DiskOp,
        map: fn(DiskCompletion) -> M,
    ) -> Result<DiskRequestId, DiskSubmitError> {
        for path in op.paths() {
            crate::services::validate_file_name(path)?;
        }
        let convert: Box<dyn FnOnce(DiskCompletion) -> Box<dyn Any + Send> + Send> =
            Box::new(move |completion| Box::new(map(completion)));
        let id = self.core.register_disk(self.me, convert)?;
        self.services.submit_disk(id, op);
        Ok(id)
    }

    /// A random value from the executor (the run's seeded PRNG under simulation).
    pub fn random_u64(&mut self) -> u64 {
        self.services.random_u64()
    }

    /// A new deterministic PRNG for a protocol this actor owns.
    pub fn fork_prng(&mut self) -> Prng {
        Prng::from_seed(self.services.random_u64())
    }

    /// Whether the fault point `point` fires now (only ever under simulation).
    pub fn buggify(&mut self, point: &'static str) -> bool {
        self.services.buggify(point)
    }

    /// A fault-point source for a protocol this actor owns.
    pub fn fault_points(&mut self) -> Box<dyn FaultPoints + Send> {
        self.services.fault_points()
    }

    /// Reports an observation to the executor (recorded by the simulator, logged in
    /// production).
    pub fn observe(&mut self, observation: impl Observation) {
        self.services.observe(Box::new(observation));
    }
}

fn convert_inbound<M: From<Inbound> + Send + 'static>(inbound: Inbound) -> Box<dyn Any + Send> {
    Box::new(M::from(inbound))
}
