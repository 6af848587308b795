//! synod-core: the vocabulary every synod crate shares.
//!
//! Identifiers ([`NodeId`], [`ClientId`], [`Term`], [`LogIndex`]), time that is safe under a
//! virtual clock ([`Instant`], [`Duration`]), the seeded [`Prng`], the bounded containers
//! ([`BoundedQueue`], [`Outbox`]), the sans-IO [`Protocol`] shape, fault points
//! ([`FaultPoints`]), named limits, configuration validation, and the phi-accrual
//! arithmetic ([`phi`], [`arrival_window`]) that failure detectors share.
//!
//! This crate does no IO, reads no clock and draws no entropy: everything here is a pure
//! value or a pure function, so that the simulator can replay any run from its seed.

pub mod arrival_window;
pub mod config;
pub mod disk;
pub mod fault;
pub mod ids;
pub mod limits;
pub mod outbox;
pub mod phi;
pub mod prng;
pub mod protocol;
pub mod queue;
pub mod time;

pub use config::{ConfigError, Validate};
pub use fault::{FaultPoints, NoFaults};
pub use ids::{ClientId, LogIndex, NodeId, Term};
pub use outbox::Outbox;
pub use prng::Prng;
pub use protocol::Protocol;
pub use queue::{BoundedQueue, QueueFull};
pub use time::{Duration, Instant, WallClock};
