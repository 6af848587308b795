//! The disk: a dedicated IO thread that carries out `DiskOp`s on real files in the node's data
//! directory, and the lock that keeps two runtimes off one directory.
//!
//! The node loop hands requests over a bounded channel and never waits for the disk; the
//! thread executes them one at a time, in submission order, and sends each completion back
//! over another bounded channel that the node loop reads. Blocking file system calls stay on
//! this thread, away from the tokio workers that serve the network.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use synod_actor::{DiskCompletion, DiskOp, DiskReply, DiskRequestId};
use synod_core::NodeId;
use synod_wal::{FileStorage, FileStorageError, Storage};
use tokio::sync::mpsc;

use crate::error::RuntimeError;
use crate::transport::add;

/// The name of the lock file in every data directory. Actors cannot use this name.
pub use synod_actor::LOCK_FILE_NAME;

/// The data directory, opened as synod-wal's `FileStorage`: it holds the directory's lock for
/// as long as it lives (the operating system releases it when the file is closed, also when
/// the process dies), and it is what the IO thread carries every `DiskOp` out on, so real
/// files have one implementation in synod.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    storage: FileStorage,
}

/// Creates `dir` if needed and takes its lock, refusing if another runtime holds it.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<DataDirLock, RuntimeError> {
    match FileStorage::open(dir) {
        Ok(storage) => Ok(DataDirLock { storage }),
        Err(FileStorageError::Locked { dir, lock_file }) => {
            Err(RuntimeError::DataDirectoryLocked { dir, lock_file })
        }
        Err(FileStorageError::Io { dir, message }) => {
            Err(RuntimeError::DataDirectory { dir, message })
        }
    }
}

/// One request for the IO thread.
#[derive(Debug)]
pub(crate) struct DiskRequest {
    pub(crate) id: DiskRequestId,
    pub(crate) op: DiskOp,
}

/// Live counters of the disk thread.
#[derive(Debug, Default)]
pub(crate) struct DiskCounters {
    pub(crate) operations: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// An injected slow disk: microseconds each file or directory sync waits before it
    /// runs (0: none). Set only through [`crate::NodeHandle::set_disk_faults`].
    pub(crate) sync_delay_us: AtomicU64,
    /// An injected failing disk: every write, sync, truncation, removal and rename fails
    /// with an IO error, as a dying or full device fails them. Set only through
    /// [`crate::NodeHandle::set_disk_faults`].
    pub(crate) failing: std::sync::atomic::AtomicBool,
}

/// The disk faults a node may be given at run time (`[faults] disk`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaultSettings {
    /// Every file and directory sync waits this long first (a slow disk; zero: none).
    pub sync_delay: synod_core::Duration,
    /// Every operation that changes the disk fails (a failing disk).
    pub failing: bool,
}

/// The longest injected sync delay a node accepts.
pub const DISK_SYNC_DELAY_MAX: synod_core::Duration = synod_core::Duration::from_secs(10);

/// A snapshot of the disk counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub operations_count: u64,
    pub errors_count: u64,
    pub bytes_read_count: u64,
    pub bytes_written_count: u64,
    /// File and directory syncs.
    pub syncs_count: u64,
}

impl DiskCounters {
    pub(crate) fn snapshot(&self) -> DiskStats {
        let read = |counter: &AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        DiskStats {
            operations_count: read(&self.operations),
            errors_count: read(&self.errors),
            bytes_read_count: read(&self.bytes_read),
            bytes_written_count: read(&self.bytes_written),
            syncs_count: read(&self.syncs),
        }
    }
}

/// Everything the IO thread owns.
pub(crate) struct DiskThreadParts {
    pub(crate) node: NodeId,
    /// The data directory (and its lock) moves to the thread, so that it is held for as
    /// long as anything may still touch the directory, even if shutdown stops waiting.
    pub(crate) lock: DataDirLock,
    pub(crate) requests: mpsc::Receiver<DiskRequest>,
    pub(crate) completions: mpsc::Sender<DiskCompletion>,
    pub(crate) counters: Arc<DiskCounters>,
}

/// Starts the IO thread. It runs until its requests channel is closed and drained.
pub(crate) fn start_disk_thread(
    parts: DiskThreadParts,
) -> Result<std::thread::JoinHandle<()>, RuntimeError> {
    let node = parts.node;
    std::thread::Builder::new()
        .name(format!("synod-disk-{node}"))
        .spawn(move || serve_requests(parts))
        .map_err(|error| RuntimeError::DiskThread {
            node,
            message: error.to_string(),
        })
}

/// The error an injected failing disk gives `op`: every operation that changes the disk
/// fails; reads, lengths and listings still work, as on a device that went bad for writes.
fn injected_failure(op: &DiskOp, failing: bool) -> Option<synod_core::disk::DiskError> {
    let (name, path) = match op {
        _ if !failing => return None,
        DiskOp::Write { path, .. } => ("write", path.as_str()),
        DiskOp::Sync { path } => ("sync", path.as_str()),
        DiskOp::SetLen { path, .. } => ("set_len", path.as_str()),
        DiskOp::Remove { path } => ("remove", path.as_str()),
        DiskOp::Rename { from, .. } => ("rename", from.as_str()),
        DiskOp::SyncDir => ("sync_dir", "."),
        DiskOp::Read { .. } | DiskOp::Len { .. } | DiskOp::List => return None,
    };
    Some(synod_core::disk::DiskError::Io {
        op: name,
        path: path.to_string(),
        message: "input/output error (an injected failing disk: POST /faults/disk)".into(),
    })
}

/// The IO thread's loop, driven by requests; it ends when the node drops its sender.
fn serve_requests(parts: DiskThreadParts) {
    let DiskThreadParts {
        lock,
        mut requests,
        completions,
        counters,
        ..
    } = parts;
    let mut storage = lock.storage;
    while let Some(DiskRequest { id, op }) = requests.blocking_recv() {
        if matches!(op, DiskOp::Sync { .. } | DiskOp::SyncDir) {
            // An injected slow disk holds the IO thread as a slow device would.
            let delay_us = counters
                .sync_delay_us
                .load(std::sync::atomic::Ordering::Relaxed)
                .min(DISK_SYNC_DELAY_MAX.as_micros());
            if delay_us > 0 {
                std::thread::sleep(std::time::Duration::from_micros(delay_us));
            }
        }
        let failing = counters.failing.load(std::sync::atomic::Ordering::Relaxed);
        let result = match injected_failure(&op, failing) {
            Some(error) => Err(error),
            None => storage.execute(&op),
        };
        add(&counters.operations, 1);
        match (&op, &result) {
            (_, Err(_)) => add(&counters.errors, 1),
            (DiskOp::Read { .. }, Ok(DiskReply::Data(data))) => {
                add(&counters.bytes_read, data.len() as u64);
            }
            (DiskOp::Write { data, .. }, Ok(_)) => add(&counters.bytes_written, data.len() as u64),
            (DiskOp::Sync { .. } | DiskOp::SyncDir, Ok(_)) => add(&counters.syncs, 1),
            _ => {}
        }
        // Waiting for room here is backpressure from the node loop to the disk: completions
        // are never dropped, because the actor that asked is waiting for each one. After the
        // node loop is gone the remaining requests are still carried out, in order.
        let _ = completions.blocking_send(DiskCompletion { id, result });
    }
    // The lock goes before the completion channel closes: the node loop takes the closed
    // channel to mean the directory is free for the next runtime.
    drop(storage);
    drop(completions);
}
