//! synod-resilience: deterministic, sans-IO state machines that keep a caller and a server
//! standing when what they depend on is slow, failing or overloaded.
//!
//! - [`CircuitBreaker`] (`breaker`): stops calls to a dependency that keeps failing or is
//!   slow, then lets a few trial calls decide when it is healthy again.
//! - [`ConcurrencyLimit`] (`limit`): an adaptive limit on calls in flight, in the spirit of
//!   Netflix's concurrency-limits (Gradient2): it grows while latency stays flat and shrinks
//!   when latency rises or requests are dropped.
//! - [`Bulkhead`] (`bulkhead`): a compartment with a bounded number of running calls and a
//!   bounded queue, refusing at once when full and shedding low priorities first.
//!
//! None of them does IO, reads a clock, draws randomness or spawns anything: time is an
//! input ([`synod_core::Instant`]), every buffer has a named limit, and the same inputs give
//! the same states, so the simulator and unit tests drive them exactly. A driver uses them
//! like this:
//!
//! ```text
//! before a call:   breaker.try_acquire(now)   -> Permit, or Rejected { retry_after }
//!                  limit.acquire(now)         -> Token, or None (over the limit)
//!                  bulkhead.try_enter(prio)   -> Admitted (running or queued), or Refused
//! after the call:  breaker.on_success / on_failure(now, permit, duration)
//!                  limit.release(now, token, latency, dropped)
//!                  bulkhead.leave(ticket)     -> the queued ticket that runs next
//! ```

pub mod breaker;
pub mod bulkhead;
pub mod limit;

pub use breaker::{
    BreakerConfig, BreakerState, BreakerStats, CircuitBreaker, Permit, Rejected, SlidingWindow,
    Transition, TransitionReason, WindowTotals,
};
pub use bulkhead::{
    Admitted, Bulkhead, BulkheadConfig, BulkheadStats, Left, Priority, Refused, RefusedReason,
    TicketId,
};
pub use limit::{ConcurrencyLimit, LimitConfig, LimitStats, Token};
