//! The actor trait, typed addresses, and the specifications an actor is spawned with.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use synod_core::limits::{MAILBOX_CAPACITY_DEFAULT, MAILBOX_CAPACITY_MAX};
use synod_core::{ConfigError, Duration, Validate, config};

use crate::Context;

/// An actor owns its state and handles one message at a time in a synchronous handler.
///
/// A handler may send messages, set timers, spawn and supervise children and reach the
/// network, disk and clock through its [`Context`]. A panic inside any handler is caught; the
/// actor's state is discarded and its supervisor decides what happens next.
pub trait Actor: Send + 'static {
    /// The messages this actor handles (its own timers deliver this type too).
    type Message: Send + 'static;

    /// Called once per incarnation before any message.
    fn on_start(&mut self, _ctx: &mut Context<'_, Self::Message>) {}

    /// Handles one message.
    fn on_message(&mut self, ctx: &mut Context<'_, Self::Message>, message: Self::Message);

    /// Called when the actor is stopped in an orderly way (not after a panic).
    fn on_stop(&mut self, _ctx: &mut Context<'_, Self::Message>) {}

    /// Called when one of this actor's children has exited, after the supervision decision.
    fn on_child_exit(
        &mut self,
        _ctx: &mut Context<'_, Self::Message>,
        _child: ActorId,
        _reason: &ExitReason,
    ) {
    }
}

/// Identifies an actor within one node's system. A restarted actor keeps its id; a slot
/// freed by a stopped actor is reused with a new generation, so stale ids never alias.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}.{}", self.slot, self.generation)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A typed address of an actor on the same node.
pub struct Addr<M> {
    pub(crate) id: ActorId,
    _message: PhantomData<fn(M) -> M>,
}

impl<M> Addr<M> {
    pub(crate) fn new(id: ActorId) -> Addr<M> {
        Addr {
            id,
            _message: PhantomData,
        }
    }

    pub fn id(&self) -> ActorId {
        self.id
    }
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for Addr<M> {}

impl<M> PartialEq for Addr<M> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<M> Eq for Addr<M> {}

impl<M> fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({:?})", self.id)
    }
}

/// Why an actor exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It called `ctx.stop()`, or it was shut down by its parent or the system.
    Normal,
    /// It called `ctx.fail(reason)`: an abnormal exit it detected itself (e.g. an IO error).
    Failed(String),
    /// Its handler panicked.
    Panicked(String),
    /// One of its children exceeded the restart intensity, so it failed in turn.
    Escalated {
        child: String,
        restarts_count: u32,
        period: Duration,
    },
}

impl ExitReason {
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => write!(f, "normal"),
            ExitReason::Failed(reason) => write!(f, "failed: {reason}"),
            ExitReason::Panicked(reason) => write!(f, "panicked: {reason}"),
            ExitReason::Escalated {
                child,
                restarts_count,
                period,
            } => write!(
                f,
                "child {child} exceeded restart intensity ({restarts_count} restarts in {period})"
            ),
        }
    }
}

/// When a child is restarted after it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted.
    Temporary,
}

/// Which children a supervisor restarts when one fails (Erlang/OTP strategies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// Every child: the others are stopped in reverse start order, then all start again.
    OneForAll,
    /// The failed child and every child started after it.
    RestForOne,
}

/// What a mailbox does with a message that arrives when it is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The send fails and the message is handed back to the sender.
    Reject,
    /// The new message is dropped and counted; the send reports success.
    DropNewest,
    /// The oldest queued message is dropped and counted to make room.
    DropOldest,
}

/// How an actor supervises its children.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SupervisorSpec {
    pub strategy: Strategy,
    /// More than this many restarts within `period` escalates to this actor's own parent.
    pub intensity: u32,
    pub period: Duration,
    /// Delay before the first restart in a period; doubles with each further restart.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for SupervisorSpec {
    fn default() -> Self {
        SupervisorSpec {
            strategy: Strategy::OneForOne,
            intensity: 5,
            period: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
        }
    }
}

impl SupervisorSpec {
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    pub fn intensity(mut self, intensity: u32, period: Duration) -> Self {
        self.intensity = intensity;
        self.period = period;
        self
    }

    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// The delay before a restart that is the `restarts_count`-th within the period.
    pub fn backoff_for(&self, restarts_count: u32) -> Duration {
        if self.backoff_initial.is_zero() {
            return Duration::ZERO;
        }
        let doublings = restarts_count.saturating_sub(1).min(32);
        let delay = self.backoff_initial.saturating_mul(1u64 << doublings);
        delay.min(self.backoff_max)
    }
}

impl Validate for SupervisorSpec {
    fn validate(&self) -> Result<(), ConfigError> {
        config::check_range("intensity", self.intensity, 0, 10_000)?;
        if self.period.is_zero() {
            return Err(ConfigError::new("period", "(0) must be positive"));
        }
        if self.backoff_max < self.backoff_initial {
            return Err(ConfigError::new(
                "backoff_max",
                format!(
                    "({}) must be at least backoff_initial ({})",
                    self.backoff_max, self.backoff_initial
                ),
            ));
        }
        Ok(())
    }
}

/// Everything needed to start, and restart, one actor.
pub struct ChildSpec<A: Actor> {
    pub(crate) name: String,
    pub(crate) factory: Box<dyn FnMut() -> A + Send>,
    pub(crate) restart: Restart,
    pub(crate) mailbox_capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) supervision: SupervisorSpec,
}

impl<A: Actor> ChildSpec<A> {
    /// A permanent child with the default mailbox (reject when full) and supervision.
    /// `factory` builds a fresh actor for every incarnation.
    pub fn new(name: impl Into<String>, factory: impl FnMut() -> A + Send + 'static) -> Self {
        ChildSpec {
            name: name.into(),
            factory: Box::new(factory),
            restart: Restart::Permanent,
            mailbox_capacity: MAILBOX_CAPACITY_DEFAULT,
            overflow: Overflow::Reject,
            supervision: SupervisorSpec::default(),
        }
    }

    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the mailbox bound and what happens when it is reached.
    pub fn mailbox(mut self, capacity: usize, overflow: Overflow) -> Self {
        self.mailbox_capacity = capacity;
        self.overflow = overflow;
        self
    }

    /// How this actor supervises the children it spawns.
    pub fn supervise(mut self, supervision: SupervisorSpec) -> Self {
        self.supervision = supervision;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        config::check_range(
            "mailbox_capacity",
            self.mailbox_capacity,
            1,
            MAILBOX_CAPACITY_MAX,
        )
        .and_then(|()| self.supervision.validate())
        .map_err(|error| error.within(&self.name))
    }
}

/// The type-erased face of an actor that the system stores.
pub(crate) trait ErasedActor: Send {
    fn start(&mut self, ctx: &mut Context<'_, ()>);
    fn message(&mut self, ctx: &mut Context<'_, ()>, message: Box<dyn Any + Send>);
    fn stop(&mut self, ctx: &mut Context<'_, ()>);
    fn child_exit(&mut self, ctx: &mut Context<'_, ()>, child: ActorId, reason: &ExitReason);
    fn as_any(&self) -> &dyn Any;
}

impl<A: Actor> ErasedActor for A {
    fn start(&mut self, ctx: &mut Context<'_, ()>) {
        self.on_start(&mut ctx.retype());
    }

    fn message(&mut self, ctx: &mut Context<'_, ()>, message: Box<dyn Any + Send>) {
        match message.downcast::<A::Message>() {
            Ok(message) => self.on_message(&mut ctx.retype(), *message),
            Err(_) => panic!(
                "message of the wrong type delivered to an actor expecting {}",
                std::any::type_name::<A::Message>()
            ),
        }
    }

    fn stop(&mut self, ctx: &mut Context<'_, ()>) {
        self.on_stop(&mut ctx.retype());
    }

    fn child_exit(&mut self, ctx: &mut Context<'_, ()>, child: ActorId, reason: &ExitReason) {
        self.on_child_exit(&mut ctx.retype(), child, reason);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        // Checks the restart backoff sequence: initial, doubled per restart, capped at max.
        let spec =
            SupervisorSpec::default().backoff(Duration::from_millis(10), Duration::from_millis(50));
        let delays: Vec<u64> = (1..=5)
            .map(|count| spec.backoff_for(count).as_millis())
            .collect();
        assert_eq!(delays, vec![10, 20, 40, 50, 50]);
        let immediate = spec.backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(immediate.backoff_for(7), Duration::ZERO);
    }

    #[test]
    fn invalid_supervision_names_the_field() {
        // Checks that a bad supervision spec is refused with the field named.
        let spec =
            SupervisorSpec::default().backoff(Duration::from_secs(2), Duration::from_secs(1));
        let error = spec.validate().unwrap_err();
        assert_eq!(error.field, "backoff_max");
        let spec = SupervisorSpec::default().intensity(3, Duration::ZERO);
        assert_eq!(spec.validate().unwrap_err().field, "period");
    }
}
