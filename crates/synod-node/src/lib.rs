//! synod-node: a synod node as a supervision tree of actors.
//!
//! Today a node runs failure detection and membership:
//!
//! ```text
//! root (system supervisor)
//! └── node                 NodeSupervisor, rest_for_one
//!     ├── detector         FailureDetectorActor: incarnation on disk, heartbeats, phi-accrual
//!     └── membership       MembershipView: subscribes to the detector, keeps the suspect set
//! ```
//!
//! rest_for_one is the right strategy here: the membership view depends on its subscription
//! to the detector, so when the detector restarts the view must restart after it and
//! subscribe again, while a failing view alone does not disturb the detector.
//!
//! Every actor here runs unchanged under the simulator (synod-sim) and on tokio
//! (synod-runtime). Replicas, storage and client sessions join this tree in later work.

pub mod client;
pub mod detector_actor;
pub mod incarnation;
pub mod membership;
pub mod peer;
pub mod raft_storage;
pub mod replica;
pub mod supervisor;
pub mod wal_actor;
pub mod wire;

pub use detector_actor::{
    DetectorMessage, DetectorStatus, FailureDetectorActor, FailureDetectorConfig, MembershipEvent,
    NodeBooted,
};
pub use membership::{MembershipMessage, MembershipView};
pub use raft_storage::{BootReport, RaftStorage, RaftStorageConfig, StorageOutput};
pub use replica::{
    CLIENT_PORT, RAFT_PORT, ReplicaActor, ReplicaConfig, ReplicaMessage, ReplicaStats,
};
pub use supervisor::{NodeSupervisor, boot_node, boot_replica_node};
pub use wal_actor::{WalAccepted, WalActor, WalContents, WalMessage, WalReply};
pub use wire::{DecodeError, Heartbeat};

/// The port failure-detector heartbeats travel on.
pub const DETECTOR_PORT: synod_actor::Port = synod_actor::Port(1);
