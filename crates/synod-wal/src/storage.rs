//! The `Storage` trait: a node's flat data directory as a small synchronous interface, and
//! two wrappers over it: [`CheckedStorage`], which latches on the first failed write or
//! sync, and [`CountdownStorage`], which fails the Nth call for fault sweeps.
//!
//! The engines of this crate never call a `Storage`: they emit [`DiskOp`]s. A `Storage` is
//! what executes those ops synchronously ([`Storage::execute`]) in tests, tools, benchmarks
//! and [`crate::SyncWal`]; the actor executors carry out the same ops on their own disks.

use bytes::Bytes;
use synod_core::disk::{DiskError, DiskOp, DiskReply, validate_file_name};

/// A flat data directory. Paths are plain file names (see [`validate_file_name`]).
///
/// The semantics are those of POSIX files and of the simulated disk: a write creates the
/// file, writes and length changes are durable only after `sync`, and creations, renames and
/// removals only after `sync_dir`.
pub trait Storage {
    /// Reads up to `len` bytes at `offset`; a short result means end of file.
    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<Bytes, DiskError>;
    /// Writes `data` at `offset`, creating the file if needed.
    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Makes the file's data durable (fdatasync).
    fn sync(&mut self, path: &str) -> Result<(), DiskError>;
    /// Truncates or extends (with zeros) the file.
    fn set_len(&mut self, path: &str, len: u64) -> Result<(), DiskError>;
    /// The file's current length.
    fn len(&mut self, path: &str) -> Result<u64, DiskError>;
    /// Removes the file.
    fn remove(&mut self, path: &str) -> Result<(), DiskError>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError>;
    /// Makes creations, renames and removals durable.
    fn sync_dir(&mut self) -> Result<(), DiskError>;
    /// The file names, sorted, without the lock file.
    fn list(&mut self) -> Result<Vec<String>, DiskError>;

    /// Carries out one [`DiskOp`], so that any executor can run any op on any storage.
    fn execute(&mut self, op: &DiskOp) -> Result<DiskReply, DiskError> {
        for path in op.paths() {
            validate_file_name(path)?;
        }
        let done = |()| DiskReply::Done;
        match op {
            DiskOp::Read { path, offset, len } => {
                self.read(path, *offset, *len).map(DiskReply::Data)
            }
            DiskOp::Write { path, offset, data } => self.write(path, *offset, data).map(done),
            DiskOp::Sync { path } => self.sync(path).map(done),
            DiskOp::SetLen { path, len } => self.set_len(path, *len).map(done),
            DiskOp::Len { path } => self.len(path).map(DiskReply::Len),
            DiskOp::Remove { path } => self.remove(path).map(done),
            DiskOp::Rename { from, to } => self.rename(from, to).map(done),
            DiskOp::SyncDir => self.sync_dir().map(done),
            DiskOp::List => self.list().map(DiskReply::Names),
        }
    }
}

/// Reads a whole file with as many reads as [`synod_core::limits::DISK_IO_SIZE_MAX`] needs.
pub fn read_whole_file(storage: &mut dyn Storage, path: &str) -> Result<Vec<u8>, DiskError> {
    let len = storage.len(path)?;
    let chunk_max = synod_core::limits::DISK_IO_SIZE_MAX as u64;
    let mut bytes = Vec::new();
    let mut offset = 0;
    // Each pass reads at most one chunk and ends the loop at the end of the file.
    while offset < len {
        let want = (len - offset).min(chunk_max) as u32;
        let chunk = storage.read(path, offset, want)?;
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        if bytes.is_empty() {
            // The common case, a file that fits one read: take the buffer without copying
            // it (recovery reads every segment whole, so this copy was its largest cost).
            bytes = Vec::from(chunk);
        } else {
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok(bytes)
}

/// A storage that latches on its first failed write, sync, length change, rename, removal
/// or directory sync: from then on every call returns [`DiskError::PreviousIo`]. It never
/// retries anything. A failed fsync may have dropped dirty pages (fsyncgate), so nothing
/// written before it can be trusted until the node restarts and recovers from disk.
#[derive(Debug)]
pub struct CheckedStorage<S: Storage> {
    inner: S,
    first_failure: Option<String>,
}

impl<S: Storage> CheckedStorage<S> {
    pub fn new(inner: S) -> CheckedStorage<S> {
        CheckedStorage {
            inner,
            first_failure: None,
        }
    }

    /// The first failure, once latched.
    pub fn first_failure(&self) -> Option<&str> {
        self.first_failure.as_deref()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn refuse_if_latched(&self) -> Result<(), DiskError> {
        match &self.first_failure {
            Some(first_failure) => Err(DiskError::PreviousIo {
                first_failure: first_failure.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs a mutating call, latching on its failure.
    fn mutate<T>(
        &mut self,
        call: impl FnOnce(&mut S) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        self.refuse_if_latched()?;
        let result = call(&mut self.inner);
        if let Err(error) = &result {
            self.first_failure = Some(error.to_string());
        }
        result
    }
}

impl<S: Storage> Storage for CheckedStorage<S> {
    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<Bytes, DiskError> {
        self.refuse_if_latched()?;
        self.inner.read(path, offset, len)
    }
    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.mutate(|inner| inner.write(path, offset, data))
    }
    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        self.mutate(|inner| inner.sync(path))
    }
    fn set_len(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        self.mutate(|inner| inner.set_len(path, len))
    }
    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        self.refuse_if_latched()?;
        self.inner.len(path)
    }
    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        self.mutate(|inner| inner.remove(path))
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        self.mutate(|inner| inner.rename(from, to))
    }
    fn sync_dir(&mut self) -> Result<(), DiskError> {
        self.mutate(|inner| inner.sync_dir())
    }
    fn list(&mut self) -> Result<Vec<String>, DiskError> {
        self.refuse_if_latched()?;
        self.inner.list()
    }
}

/// A failed write of a [`CountdownStorage`] keeps whole sectors of this size.
pub const FAILED_WRITE_SECTOR_SIZE: u64 = 512;

/// What a [`CountdownStorage`] does after its injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterCountdown {
    /// Every later call fails too (a dead disk).
    FailEverything,
    /// Later calls reach the inner storage (a transient error).
    PassThrough,
}

/// A storage that fails its Nth call (counting from 1, every kind of call) with an IO error,
/// for sweeps that try a failure at every point of a workload. A failed write first puts
/// the sectors of the first half of its data into the inner storage, as a write cut short
/// would.
#[derive(Debug)]
pub struct CountdownStorage<S: Storage> {
    inner: S,
    fail_at_call: u64,
    after: AfterCountdown,
    calls_count: u64,
    failed_op: Option<DiskOp>,
}

impl<S: Storage> CountdownStorage<S> {
    /// Fails call number `fail_at_call` (1-based); 0 never fails.
    pub fn new(inner: S, fail_at_call: u64, after: AfterCountdown) -> CountdownStorage<S> {
        CountdownStorage {
            inner,
            fail_at_call,
            after,
            calls_count: 0,
            failed_op: None,
        }
    }

    pub fn calls_count(&self) -> u64 {
        self.calls_count
    }

    /// The operation that was failed, once it has been.
    pub fn failed_op(&self) -> Option<&DiskOp> {
        self.failed_op.as_ref()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Counts a call and decides whether it fails.
    fn check(&mut self, op: DiskOp) -> Result<(), DiskError> {
        self.calls_count += 1;
        let failing = self.calls_count == self.fail_at_call
            || (self.failed_op.is_some() && self.after == AfterCountdown::FailEverything);
        if !failing {
            return Ok(());
        }
        let error = DiskError::Io {
            op: op.kind(),
            path: op.paths().first().copied().unwrap_or("").to_string(),
            message: format!("input/output error (injected at call {})", self.calls_count),
        };
        if self.failed_op.is_none() {
            if let DiskOp::Write { path, offset, data } = &op {
                // A prefix of a failed write may reach the page cache, in whole sectors.
                let middle = offset + data.len() as u64 / 2;
                let kept = (middle / FAILED_WRITE_SECTOR_SIZE * FAILED_WRITE_SECTOR_SIZE)
                    .saturating_sub(*offset) as usize;
                let _ = self.inner.write(path, *offset, &data[..kept]);
            }
            self.failed_op = Some(op);
        }
        Err(error)
    }
}

fn name(path: &str) -> String {
    path.to_string()
}

impl<S: Storage> Storage for CountdownStorage<S> {
    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<Bytes, DiskError> {
        self.check(DiskOp::Read {
            path: name(path),
            offset,
            len,
        })?;
        self.inner.read(path, offset, len)
    }
    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let data_copy = Bytes::copy_from_slice(data);
        self.check(DiskOp::Write {
            path: name(path),
            offset,
            data: data_copy,
        })?;
        self.inner.write(path, offset, data)
    }
    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        self.check(DiskOp::Sync { path: name(path) })?;
        self.inner.sync(path)
    }
    fn set_len(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        self.check(DiskOp::SetLen {
            path: name(path),
            len,
        })?;
        self.inner.set_len(path, len)
    }
    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        self.check(DiskOp::Len { path: name(path) })?;
        self.inner.len(path)
    }
    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        self.check(DiskOp::Remove { path: name(path) })?;
        self.inner.remove(path)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        self.check(DiskOp::Rename {
            from: name(from),
            to: name(to),
        })?;
        self.inner.rename(from, to)
    }
    fn sync_dir(&mut self) -> Result<(), DiskError> {
        self.check(DiskOp::SyncDir)?;
        self.inner.sync_dir()
    }
    fn list(&mut self) -> Result<Vec<String>, DiskError> {
        self.check(DiskOp::List)?;
        self.inner.list()
    }
}
