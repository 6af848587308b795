//! [`SyncWal`]: a [`Wal`] driven synchronously over a [`Storage`], every emitted op executed
//! inline. For tests, fault sweeps, tools and benchmarks; actors drive the engine through
//! their context instead.
//!
//! [`SyncWal::open_with_snapshot`] is how a replica's data directory is opened: the newest
//! snapshot that verifies, the log recovered after it, and the two checked against each
//! other. [`SyncWal::open`] recovers the log alone.

use std::fmt;

use bytes::Bytes;
use synod_core::Instant;
use synod_core::disk::{DiskError, DiskReply};
use thiserror::Error;

use crate::config::WalConfig;
use crate::record::RecordType;
use crate::recovery::{Recovery, RecoveryError, RecoveryReport};
use crate::snapshot::{RejectedSnapshot, Snapshot, load_snapshot_at_start};
use crate::storage::{Storage, read_whole_file};
use crate::wal::{
    AppendError, ReadError, ResetError, TruncateError, Wal, WalEntry, WalFatal, WalOutput,
};

/// Why a log could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("opening the write-ahead log: {0}")]
    Disk(DiskError),
    #[error("{0}")]
    Recovery(RecoveryError),
    #[error("{0}")]
    Gap(LogGap),
}

/// Entries that are in neither the snapshot nor the log: the log starts after the entry
/// that follows the snapshot's last included one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogGap {
    /// The first sequence the recovered log holds (or would hold, when it is empty).
    pub first_sequence: u64,
    /// The snapshot loaded, if any, and the last sequence it includes (0 without one).
    pub snapshot_file: Option<String>,
    pub last_included_sequence: u64,
    /// Newer snapshot files that failed verification: the entries may be in one of them.
    pub rejected: Vec<RejectedSnapshot>,
}

impl fmt::Display for LogGap {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, last) = (self.first_sequence, self.last_included_sequence);
        write!(
            formatter,
            "the write-ahead log starts at sequence {first}, but "
        )?;
        match &self.snapshot_file {
            Some(file) => write!(formatter, "the snapshot {file} ends at sequence {last}")?,
            None => write!(formatter, "there is no snapshot")?,
        }
        write!(
            formatter,
            ": entries {}..={} are in neither",
            last + 1,
            first - 1
        )?;
        for rejected in &self.rejected {
            write!(
                formatter,
                "; {} was rejected: {}",
                rejected.file, rejected.error
            )?;
        }
        write!(
            formatter,
            ". Restore this replica from a peer (or a backup); the log was left as it is"
        )
    }
}

/// What opening a data directory found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The snapshot the state machine starts from (the newest that verified), if any.
    pub snapshot: Option<Snapshot>,
    /// Its file name.
    pub snapshot_file: Option<String>,
    /// Newer snapshot files that failed verification, with the reason, newest first.
    pub snapshots_rejected: Vec<RejectedSnapshot>,
    /// Stale snapshot files removed: `.tmp` files of interrupted writes and snapshots older
    /// than the loaded one.
    pub snapshot_files_removed: Vec<String>,
    /// What log recovery found.
    pub log: RecoveryReport,
    /// The log ended before the snapshot's last included sequence (a crash came between
    /// installing a snapshot and resetting the log past it): it was reset to start after
    /// the snapshot, durable with the first flush.
    pub log_reset_to: Option<u64>,
}

/// A write-ahead log over a synchronous storage.
#[derive(Debug)]
pub struct SyncWal<S: Storage> {
    storage: S,
    wal: Wal,
    now: Instant,
    outputs: Vec<WalOutput>,
    durable_sequence: u64,
}

impl<S: Storage> SyncWal<S> {
    /// Recovers the log alone from `storage`, leaving snapshot files alone. The repair
    /// recovery asks for runs with the first IO.
    pub fn open(
        mut storage: S,
        config: WalConfig,
    ) -> Result<(SyncWal<S>, RecoveryReport), OpenError> {
        let names = storage.list().map_err(OpenError::Disk)?;
        let (wal, report) = recover_log(&mut storage, &names, config)?;
        Ok((SyncWal::from_wal(storage, wal), report))
    }

    /// Opens a replica's data directory: loads the newest snapshot that verifies (falling
    /// back to an older complete one when a newer one is damaged, which is reported),
    /// removes stale snapshot files, recovers the log and checks it against the snapshot.
    ///
    /// The log must start at or before the sequence after the snapshot's last included one
    /// (1 without a snapshot); otherwise entries are missing and [`OpenError::Gap`] names
    /// them. A log that ends before that sequence is wholly covered by the snapshot: it is
    /// reset to start after it ([`OpenReport::log_reset_to`]). When the log does reach the
    /// snapshot, the caller (Raft) still compares the term of the log's entry at the
    /// snapshot's last included sequence and resets the log itself if they differ.
    pub fn open_with_snapshot(
        mut storage: S,
        config: WalConfig,
    ) -> Result<(SyncWal<S>, OpenReport), OpenError> {
        let names = storage.list().map_err(OpenError::Disk)?;
        let start = load_snapshot_at_start(&mut storage, &names).map_err(OpenError::Disk)?;
        let (wal, log) = recover_log(&mut storage, &names, config)?;
        let (snapshot_file, snapshot) = start.loaded.unzip();
        let last_included = snapshot.as_ref().map_or(0, |s| s.last_included_sequence);
        let first_sequence = wal.first_sequence();
        if first_sequence > last_included + 1 {
            return Err(OpenError::Gap(LogGap {
                first_sequence,
                snapshot_file,
                last_included_sequence: last_included,
                rejected: start.rejected,
            }));
        }
        let mut sync_wal = SyncWal::from_wal(storage, wal);
        let mut log_reset_to = None;
        if sync_wal.wal.next_sequence() <= last_included {
            let next_sequence = last_included + 1;
            let reset = sync_wal.wal.reset(next_sequence);
            reset.expect("a freshly recovered log takes a reset below SEQUENCE_MAX");
            log_reset_to = Some(next_sequence);
        }
        let report = OpenReport {
            snapshot,
            snapshot_file,
            snapshots_rejected: start.rejected,
            snapshot_files_removed: start.stale,
            log,
            log_reset_to,
        };
        Ok((sync_wal, report))
    }

    fn from_wal(storage: S, wal: Wal) -> SyncWal<S> {
        let durable_sequence = wal.durable_sequence();
        SyncWal {
            storage,
            wal,
            now: Instant::ZERO,
            outputs: Vec::new(),
            durable_sequence,
        }
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Sets the time given to the engine (for `batch_wait_max`).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    /// The highest sequence a `Durable` output has covered (0 before the first), or the
    /// one before the start of a reset log once its `Reset` output came.
    pub fn durable_sequence(&self) -> u64 {
        self.durable_sequence
    }

    /// Every output so far, in order, leaving none.
    pub fn take_outputs(&mut self) -> Vec<WalOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// Queues an entry; it is durable once [`SyncWal::durable_sequence`] covers it.
    pub fn append(&mut self, payload: impl Into<Bytes>) -> Result<u64, AppendError> {
        self.wal.append(RecordType::Entry, payload.into())
    }

    pub fn truncate_suffix(&mut self, from: u64) -> Result<(), TruncateError> {
        self.wal.truncate_suffix(from)
    }

    pub fn compact_prefix(&mut self, below: u64) {
        self.wal.compact_prefix(below);
    }

    /// Discards the whole log and starts it afresh at `next_sequence` (see [`Wal::reset`]);
    /// durable once a flush has run (a `Reset` output).
    pub fn reset(&mut self, next_sequence: u64) -> Result<(), ResetError> {
        self.wal.reset(next_sequence)
    }

    /// Executes one handed-out op, if there is one.
    pub fn step_io(&mut self) -> bool {
        let Some((tag, op)) = self.wal.poll_io(self.now) else {
            return false;
        };
        let result = self.storage.execute(&op);
        self.wal.complete(tag, result);
        // Test and debug builds recheck the whole index after every IO.
        if cfg!(debug_assertions) {
            self.wal.invariants_exhaustive();
        }
        self.collect_outputs();
        true
    }

    fn collect_outputs(&mut self) {
        while let Some(output) = self.wal.poll_output() {
            match output {
                WalOutput::Durable { up_to_sequence } => self.durable_sequence = up_to_sequence,
                WalOutput::Reset { next_sequence } => self.durable_sequence = next_sequence - 1,
                WalOutput::Compacted { .. } | WalOutput::Failed(_) => {}
            }
            self.outputs.push(output);
        }
    }

    /// Runs IO until everything asked for is done (every append durable, resets,
    /// compactions and repairs carried out); returns the durable sequence. The spare
    /// segment's background preparation advances by the op it is given between batches
    /// and is not waited for.
    pub fn flush(&mut self) -> Result<u64, WalFatal> {
        self.run_io(Wal::has_requested_work)
    }

    /// Runs IO until nothing at all is left, the spare's preparation included.
    pub fn settle(&mut self) -> Result<u64, WalFatal> {
        self.run_io(|wal| !wal.is_idle())
    }

    fn run_io(&mut self, more: fn(&Wal) -> bool) -> Result<u64, WalFatal> {
        let now = self.now;
        self.now = Instant::MAX;
        while more(&self.wal) && self.step_io() {}
        self.now = now;
        match self.wal.failure() {
            Some(failure) => Err(failure.clone()),
            None => Ok(self.durable_sequence),
        }
    }

    /// Reads the live entries `from..to` that have been written (every plan in turn).
    pub fn read_range(&mut self, from: u64, to: u64) -> Result<Vec<WalEntry>, ReadError> {
        let mut entries = Vec::new();
        let mut next = from;
        while next < to {
            let plan = match self.wal.read_range(next, to) {
                Ok(plan) => plan,
                Err(ReadError::NotWritten { .. }) if next > from => break,
                Err(error) => return Err(error),
            };
            let mut replies = Vec::new();
            for op in plan.ops() {
                match self.storage.execute(&op) {
                    Ok(DiskReply::Data(bytes)) => replies.push(bytes),
                    Ok(other) => unreachable!("a read replied {other:?}"),
                    Err(error) => {
                        let fatal = WalFatal { op: "read", error };
                        return Err(ReadError::Failed(fatal));
                    }
                }
            }
            let decoded = plan.decode(&replies)?;
            next = plan.sequences().end;
            entries.extend(decoded);
        }
        Ok(entries)
    }
}

/// Recovers the log from the segments among `names`.
fn recover_log<S: Storage>(
    storage: &mut S,
    names: &[String],
    config: WalConfig,
) -> Result<(Wal, RecoveryReport), OpenError> {
    let mut recovery = Recovery::new(config).map_err(OpenError::Recovery)?;
    let segment_names = Recovery::segment_names(names).map_err(OpenError::Recovery)?;
    for name in segment_names {
        let bytes = read_whole_file(storage, &name).map_err(OpenError::Disk)?;
        recovery.feed(&name, &bytes).map_err(OpenError::Recovery)?;
    }
    recovery.finish().map_err(OpenError::Recovery)
}
