//! synod-raft: the Raft consensus engine, sans-IO.
//!
//! The engine is a deterministic state machine. Its driver (the replica actor in synod-node)
//! feeds it one [`Input`] at a time and performs the [`Output`]s it writes, in order:
//!
//! ```text
//! loop {
//!     let input = tick | peer message | proposal | read | Persisted | SnapshotTaken;
//!     raft.step(now, input, &mut outbox);
//!     for output in outbox.drain() {
//!         Persist  -> storage (completion comes back as Input::Persisted)
//!         Send     -> network
//!         Apply    -> state machine, then reply to the waiting clients
//!         ReadReady-> serve the read once the state machine has applied the index
//!     }
//! }
//! ```
//!
//! Durability is ordered inside the engine: nothing that depends on a `Persist` (a vote, an
//! append acknowledgement, the leader's own match index, applying) is emitted before the
//! matching `Persisted` input. docs/raft.md describes the protocol and where it departs
//! from the paper.

pub mod codec;
pub mod config;
mod election;
pub mod io;
mod log;
mod membership;
pub mod message;
#[cfg(feature = "planted-bugs")]
pub mod planted;
mod progress;
pub mod quorum;
mod raft;
mod reads;
mod replication;
mod skew;
mod snapshot;
mod suspicion;
pub mod types;

pub use config::{LeaderSuspicion, LeaseConfig, PhiSuspicion, RaftConfig};
pub use io::{Input, MembershipChange, Output, Persist, ProposeError, ReadError, ReadLevel, Role};
pub use message::{Message, MessageBody};
#[cfg(feature = "planted-bugs")]
pub use planted::PlantedBugs;
pub use raft::{FollowerView, Raft, RaftStats};
pub use types::{
    Entry, EntryPayload, FencingToken, HardState, Membership, Recovered, Snapshot, SnapshotMeta,
};

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod scenario_tests;
#[cfg(test)]
mod suspicion_tests;
#[cfg(test)]
mod unit_tests;
