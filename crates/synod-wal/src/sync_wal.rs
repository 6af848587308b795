//! [`SyncWal`]: a [`Wal`] driven synchronously over a [`Storage`], every emitted op executed
//! inline. For tests, fault sweeps, tools and benchmarks; actors drive the engine through
//! their context instead.

use bytes::Bytes;
use synod_core::Instant;
use synod_core::disk::{DiskError, DiskReply};
use thiserror::Error;

use crate::config::WalConfig;
use crate::record::RecordType;
use crate::recovery::{Recovery, RecoveryError, RecoveryReport};
use crate::storage::{Storage, read_whole_file};
use crate::wal::{AppendError, ReadError, TruncateError, Wal, WalEntry, WalFatal, WalOutput};

/// Why a log could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error("opening the write-ahead log: {0}")]
    Disk(DiskError),
    #[error("{0}")]
    Recovery(RecoveryError),
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
    /// Recovers the log from `storage`. The repair recovery asks for runs with the first IO.
    pub fn open(
        mut storage: S,
        config: WalConfig,
    ) -> Result<(SyncWal<S>, RecoveryReport), OpenError> {
        let names = storage.list().map_err(OpenError::Disk)?;
        let mut recovery = Recovery::new(config).map_err(OpenError::Recovery)?;
        let segment_names = Recovery::segment_names(&names).map_err(OpenError::Recovery)?;
        for name in segment_names {
            let bytes = read_whole_file(&mut storage, &name).map_err(OpenError::Disk)?;
            recovery.feed(&name, &bytes).map_err(OpenError::Recovery)?;
        }
        let (wal, report) = recovery.finish().map_err(OpenError::Recovery)?;
        let durable_sequence = wal.durable_sequence();
        let sync_wal = SyncWal {
            storage,
            wal,
            now: Instant::ZERO,
            outputs: Vec::new(),
            durable_sequence,
        };
        Ok((sync_wal, report))
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

    /// The highest sequence a `Durable` output has covered (0 before the first).
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
            if let WalOutput::Durable { up_to_sequence } = output {
                self.durable_sequence = up_to_sequence;
            }
            self.outputs.push(output);
        }
    }

    /// Runs IO until nothing is left to do; returns the durable sequence.
    pub fn flush(&mut self) -> Result<u64, WalFatal> {
        let now = self.now;
        self.now = Instant::MAX;
        while self.step_io() {}
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
