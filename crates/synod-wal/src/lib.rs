//! synod-wal: the storage engine of a synod replica. A segmented, checksummed,
//! group-committed write-ahead log ([`Wal`]), its recovery ([`Recovery`]), the durable term
//! and vote ([`HardStateStore`]) and snapshots ([`SnapshotWriter`], [`load_snapshot`],
//! [`snapshot_chunks`], [`SnapshotReceiver`]), all sans-IO: they emit [`DiskOp`]s and take
//! their completions back as inputs, never blocking and never reading a clock. The byte
//! formats and the argument for recovery are in `docs/wal_format.md`.
//!
//! The [`Storage`] trait executes those ops synchronously: [`FileStorage`] (a locked real
//! directory), [`MemStorage`] (in memory, with a crash model), [`CheckedStorage`] (latches
//! on the first failed write or sync) and [`CountdownStorage`] (fails the Nth call).
//! [`SyncWal`] drives a [`Wal`] over any `Storage` for tests, tools and benchmarks, and
//! [`SyncWal::open_with_snapshot`] opens a data directory: the newest snapshot that
//! verifies ([`SnapshotScan`]) and the log after it, checked against each other.
//!
//! ## The driver loop (an actor)
//!
//! ```text
//! at start:   ops = [List]; SnapshotScan::new(names): read and feed each next_file(),
//!             then its cleanup_ops(); Len + Read of every name in
//!             Recovery::segment_names(..); recovery.feed(name, bytes) for each;
//!             (wal, report) = recovery.finish()?; check the log against the snapshot
//!             (SyncWal::open_with_snapshot shows how)
//! on append:  let sequence = wal.append(RecordType::Entry, payload)?;     // queued only
//! on install: wal.reset(last_included + 1)?;   // after the snapshot's Installed
//! after every input (append, completion, timer):
//!     while let Some((tag, op)) = wal.poll_io(ctx.now()) {
//!         ctx.disk(op, move |result| Message::WalIo(tag, result));        // FIFO per node
//!     }
//!     if let Some(deadline) = wal.deadline() { set a timer for it }       // batch_wait_max
//!     while let Some(output) = wal.poll_output() {
//!         match output {
//!             WalOutput::Durable { up_to_sequence } => acknowledge what depends on it,
//!             WalOutput::Reset { .. } => the log restarts durably; acknowledge it,
//!             WalOutput::Compacted { .. } => {}
//!             WalOutput::Failed(fatal) => ctx.fail(fatal.to_string()),  // restart, recover
//!         }
//!     }
//! on Message::WalIo(tag, result): wal.complete(tag, result), then the loop above.
//! ```
//!
//! One unit of work (a batch: write + fdatasync, with a segment creation before it when
//! needed; or a compaction; or the repair recovery asks for; or a reset; or one op of the
//! spare segment's background preparation) is in flight at a time; the appends that arrive
//! meanwhile form the next batch. That is group commit, and it is what makes recovery
//! sound: only the last batch can be incomplete on the media.

pub mod config;
pub mod file_storage;
pub mod hard_state;
pub mod mem_storage;
pub mod record;
pub mod recovery;
pub mod snapshot;
pub mod storage;
pub mod sync_wal;
pub mod wal;
#[cfg(test)]
mod wal_tests;

pub use config::WalConfig;
pub use file_storage::{FileStorage, FileStorageError};
pub use hard_state::{HardState, HardStateError, HardStateOutput, HardStateStore};
pub use mem_storage::{CrashFaults, MemStorage};
pub use record::RecordType;
pub use recovery::{Recovery, RecoveryError, RecoveryReport, TornTail};
pub use snapshot::{
    RejectedSnapshot, Snapshot, SnapshotChunk, SnapshotError, SnapshotOutput, SnapshotReceiver,
    SnapshotScan, SnapshotStart, SnapshotWriter, load_snapshot, load_snapshot_at_start,
    snapshot_chunks,
};
pub use storage::{AfterCountdown, CheckedStorage, CountdownStorage, Storage, read_whole_file};
pub use sync_wal::{LogGap, OpenError, OpenReport, SyncWal};
pub use wal::{
    AppendError, IoTag, ReadError, ReadPlan, ResetError, TruncateError, Wal, WalEntry, WalFatal,
    WalOutput,
};

pub use synod_core::disk::{DiskError, DiskOp, DiskReply};
