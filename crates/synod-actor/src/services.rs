//! The boundary between actors and the world: network, disk, clocks, randomness, fault points.
//!
//! An executor implements [`Services`]. The simulation executor answers from virtual time, a
//! simulated network and disk and its single seeded PRNG; the tokio executor answers with
//! real sockets, files and clocks. Actors never see which one they run on.

use std::any::Any;
use std::fmt;

use bytes::Bytes;
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
}

/// Identifies one outstanding disk request of a node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DiskRequestId(pub u64);

/// One operation on the node's data directory. Paths are plain file names inside that
/// directory (no separators); see [`validate_file_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskOp {
    /// Reads up to `len` bytes at `offset`; a short read means end of file.
    Read { path: String, offset: u64, len: u32 },
    /// Writes `data` at `offset`, creating the file if it does not exist.
    Write {
        path: String,
        offset: u64,
        data: Bytes,
    },
    /// Makes the file's written bytes durable (fdatasync).
    Sync { path: String },
    /// Truncates or extends the file.
    SetLen { path: String, len: u64 },
    /// The file's current length.
    Len { path: String },
    /// Removes the file (durable only after [`DiskOp::SyncDir`]).
    Remove { path: String },
    /// Atomically renames `from` to `to`, replacing `to` (durable only after `SyncDir`).
    Rename { from: String, to: String },
    /// Makes creations, renames and removals in the directory durable.
    SyncDir,
    /// The names of the files in the directory, sorted.
    List,
}

impl DiskOp {
    /// A short name for traces and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            DiskOp::Read { .. } => "read",
            DiskOp::Write { .. } => "write",
            DiskOp::Sync { .. } => "sync",
            DiskOp::SetLen { .. } => "set_len",
            DiskOp::Len { .. } => "len",
            DiskOp::Remove { .. } => "remove",
            DiskOp::Rename { .. } => "rename",
            DiskOp::SyncDir => "sync_dir",
            DiskOp::List => "list",
        }
    }

    /// Every file name the operation names.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            DiskOp::Read { path, .. }
            | DiskOp::Write { path, .. }
            | DiskOp::Sync { path }
            | DiskOp::SetLen { path, .. }
            | DiskOp::Len { path }
            | DiskOp::Remove { path } => vec![path.as_str()],
            DiskOp::Rename { from, to } => vec![from.as_str(), to.as_str()],
            DiskOp::SyncDir | DiskOp::List => Vec::new(),
        }
    }
}

/// The successful result of a [`DiskOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskReply {
    Done,
    Data(Bytes),
    Len(u64),
    Names(Vec<String>),
}

/// A failed disk operation. After a failed write or sync the caller must treat its storage as
/// unusable (fsync is never retried): it fails and its supervisor restarts it from disk.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DiskError {
    #[error("{op} {path}: no such file")]
    NotFound { op: &'static str, path: String },
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("invalid file name {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{op}: {size} bytes exceeds the single-operation limit of {limit} bytes")]
    TooLarge {
        op: &'static str,
        size: usize,
        limit: usize,
    },
}

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

/// The data-directory lock file, which only the executor touches.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Checks a file name for the node's flat data directory. Both executors apply the same
/// rule, so an actor behaves the same in simulation and in production.
pub fn validate_file_name(path: &str) -> Result<(), DiskError> {
    let reason = if path == LOCK_FILE_NAME {
        Some("reserved for the data directory's lock file")
    } else if path.is_empty() {
        Some("empty")
    } else if path.len() > 255 {
        Some("longer than 255 bytes")
    } else if path == "." || path == ".." {
        Some("names the directory itself")
    } else if path.contains(['/', '\\', '\0']) {
        Some("contains a path separator or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DiskError::InvalidPath {
            path: path.to_string(),
            reason,
        }),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_flat_and_bounded() {
        // Checks which names the data directory accepts: plain names only.
        let table = [
            ("wal-0001.log", true),
            ("LOCK", false),
            ("", false),
            ("..", false),
            ("a/b", false),
            ("a\\b", false),
            ("nul\0", false),
        ];
        for (name, ok) in table {
            assert_eq!(validate_file_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(validate_file_name(&"x".repeat(256)).is_err());
    }
}
