//! The vocabulary of a node's disk: the operations on its flat data directory, their results
//! and errors. Executors carry them out (real files, the simulated disk); storage code
//! (the write-ahead log, the incarnation store) speaks them. Nothing here does IO.

use bytes::Bytes;
use thiserror::Error;

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
    /// Returned by a latching storage for every call after its first failed write or sync.
    #[error(
        "a previous write or sync failed ({first_failure}); this storage refuses all further \
         IO until the node restarts and recovers from disk"
    )]
    PreviousIo { first_failure: String },
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
