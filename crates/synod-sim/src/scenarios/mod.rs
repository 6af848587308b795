//! Scenarios that ship with the simulator, for its own tests and as worked examples of the
//! [`crate::Scenario`] interface.

pub mod heartbeat;
pub mod leader_crash;
pub mod pingpong;
pub mod raft;
pub mod raft_client;
pub mod raft_operator;
pub mod wal;
