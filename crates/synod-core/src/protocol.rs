//! The sans-IO shape every synod protocol has.
//!
//! A protocol is a deterministic state machine. The driver (an actor) feeds it one input at a
//! time with the current time, then performs the effects it wrote into the outbox, in order.
//!
//! ```text
//! loop {
//!     let input = next message, timer or IO completion;
//!     protocol.step(ctx.now(), input, &mut outbox);   // never blocks, never fails, no IO
//!     for effect in outbox.drain() { perform(effect) }  // send, persist, set timer, reply
//! }
//! ```
//!
//! Durability is ordered inside the protocol: it emits a persist effect and emits what
//! depends on it (acks, commits, replies) only after the matching completion input.

use crate::{Instant, Outbox};

/// A deterministic, sans-IO state machine.
pub trait Protocol {
    /// Everything that can happen to the protocol: peer messages, ticks, IO completions.
    type Input;
    /// Everything the protocol asks its driver to do.
    type Output;

    /// Advances the state machine by one input. Malformed, stale or duplicate inputs are
    /// counted and dropped; `step` never panics on peer input and never returns an error.
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox<Self::Output>);

    /// Asserts the protocol's internal invariants. Called at the end of every `step`; the
    /// simulator also calls it after every event.
    fn invariants(&self);
}
