//! The disk: a dedicated IO thread that carries out `DiskOp`s on real files in the node's data
//! directory, and the lock that keeps two runtimes off one directory.
//!
//! The node loop hands requests over a bounded channel and never waits for the disk; the
//! thread executes them one at a time, in submission order, and sends each completion back
//! over another bounded channel that the node loop reads. Blocking file system calls stay on
//! this thread, away from the tokio workers that serve the network.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use synod_actor::{DiskCompletion, DiskError, DiskOp, DiskReply, DiskRequestId};
use synod_core::NodeId;
use synod_core::limits::DISK_IO_SIZE_MAX;
use tokio::sync::mpsc;

use crate::error::RuntimeError;
use crate::transport::add;

/// The name of the lock file in every data directory. Actors cannot use this name.
pub use synod_actor::LOCK_FILE_NAME;

/// Holds the data directory's lock for as long as it lives (the operating system releases
/// it when the file is closed, also when the process dies).
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

/// Creates `dir` if needed and takes its lock, refusing if another runtime holds it.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<DataDirLock, RuntimeError> {
    let failed = |error: io::Error| RuntimeError::DataDirectory {
        dir: dir.to_path_buf(),
        message: error.to_string(),
    };
    fs::create_dir_all(dir).map_err(failed)?;
    let lock_file = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_file)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(RuntimeError::DataDirectoryLocked {
                dir: dir.to_path_buf(),
                lock_file,
            });
        }
        Err(TryLockError::Error(error)) => return Err(failed(error)),
    }
    // The process id in the file tells an operator which process holds the lock.
    let pid = format!("{}\n", std::process::id());
    file.set_len(0).map_err(failed)?;
    file.write_all_at(pid.as_bytes(), 0).map_err(failed)?;
    Ok(DataDirLock { _file: file })
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
}

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
    pub(crate) dir: PathBuf,
    pub(crate) open_files_max: usize,
    /// The data directory lock moves to the thread, so that it is held for as long as
    /// anything may still touch the directory, even if shutdown stops waiting for the thread.
    pub(crate) lock: Option<DataDirLock>,
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

/// The IO thread's loop, driven by requests; it ends when the node drops its sender.
fn serve_requests(parts: DiskThreadParts) {
    let DiskThreadParts {
        dir,
        open_files_max,
        lock,
        mut requests,
        completions,
        counters,
        ..
    } = parts;
    let mut files = FileCache::new(dir, open_files_max);
    while let Some(DiskRequest { id, op }) = requests.blocking_recv() {
        let result = files.execute(&op);
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
    drop(files);
    drop(lock);
    drop(completions);
}

/// Maps an io error to the actor-facing error for `op` on `path`.
fn disk_error(op: &'static str, path: &str, error: &io::Error) -> DiskError {
    match error.kind() {
        io::ErrorKind::NotFound => DiskError::NotFound {
            op,
            path: path.to_string(),
        },
        _ => DiskError::Io {
            op,
            path: path.to_string(),
            message: error.to_string(),
        },
    }
}

/// Checks a name again on the IO thread: the actor layer validated it (the lock file's name
/// included), but this is the last place before the file system.
fn check_name(path: &str) -> Result<(), DiskError> {
    synod_actor::validate_file_name(path)
}

struct CachedFile {
    file: File,
    last_used: u64,
}

/// Open file handles of the data directory, at most `open_max`; the least recently used one
/// is closed to make room.
pub(crate) struct FileCache {
    dir: PathBuf,
    files: BTreeMap<String, CachedFile>,
    open_max: usize,
    use_sequence: u64,
}

impl FileCache {
    pub(crate) fn new(dir: PathBuf, open_max: usize) -> FileCache {
        assert!(open_max > 0, "the file cache needs room for one file");
        FileCache {
            dir,
            files: BTreeMap::new(),
            open_max,
            use_sequence: 0,
        }
    }

    /// The open handle of `name`, opening it (and creating it if `create`) when needed.
    fn open(&mut self, name: &str, create: bool) -> io::Result<&File> {
        self.use_sequence += 1;
        let sequence = self.use_sequence;
        if !self.files.contains_key(name) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(self.dir.join(name))?;
            if self.files.len() >= self.open_max {
                self.evict_least_recently_used();
            }
            let cached = CachedFile { file, last_used: 0 };
            self.files.insert(name.to_string(), cached);
            assert!(
                self.files.len() <= self.open_max,
                "file cache over its bound"
            );
        }
        let cached = self.files.get_mut(name).expect("inserted above");
        cached.last_used = sequence;
        Ok(&cached.file)
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .files
            .iter()
            .min_by_key(|(_, cached)| cached.last_used)
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            self.files.remove(&name);
        }
    }

    /// Carries out one operation.
    pub(crate) fn execute(&mut self, op: &DiskOp) -> Result<DiskReply, DiskError> {
        for path in op.paths() {
            check_name(path)?;
        }
        let kind = op.kind();
        match op {
            DiskOp::Read { path, offset, len } => self.read(path, *offset, *len),
            DiskOp::Write { path, offset, data } => self.write(path, *offset, data),
            DiskOp::Sync { path } => {
                let file = self
                    .open(path, false)
                    .map_err(|e| disk_error(kind, path, &e))?;
                file.sync_data().map_err(|e| disk_error(kind, path, &e))?;
                Ok(DiskReply::Done)
            }
            // Like truncate(2), and like the simulated disk: a missing file is NotFound.
            DiskOp::SetLen { path, len } => {
                let file = self
                    .open(path, false)
                    .map_err(|e| disk_error(kind, path, &e))?;
                file.set_len(*len).map_err(|e| disk_error(kind, path, &e))?;
                Ok(DiskReply::Done)
            }
            DiskOp::Len { path } => {
                let metadata = fs::metadata(self.dir.join(path));
                let metadata = metadata.map_err(|e| disk_error(kind, path, &e))?;
                Ok(DiskReply::Len(metadata.len()))
            }
            DiskOp::Remove { path } => {
                self.files.remove(path.as_str());
                let removed = fs::remove_file(self.dir.join(path));
                removed.map_err(|e| disk_error(kind, path, &e))?;
                Ok(DiskReply::Done)
            }
            DiskOp::Rename { from, to } => {
                self.files.remove(from.as_str());
                self.files.remove(to.as_str());
                let renamed = fs::rename(self.dir.join(from), self.dir.join(to));
                renamed.map_err(|e| disk_error(kind, from, &e))?;
                Ok(DiskReply::Done)
            }
            DiskOp::SyncDir => self.sync_dir(),
            DiskOp::List => self.list(),
        }
    }

    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<DiskReply, DiskError> {
        let size = len as usize;
        if size > DISK_IO_SIZE_MAX {
            return Err(DiskError::TooLarge {
                op: "read",
                size,
                limit: DISK_IO_SIZE_MAX,
            });
        }
        let file = self
            .open(path, false)
            .map_err(|e| disk_error("read", path, &e))?;
        let mut data = vec![0u8; size];
        let mut filled = 0;
        // Each pass either fills more of the buffer or ends at the end of the file.
        while filled < size {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(disk_error("read", path, &error)),
            }
        }
        data.truncate(filled);
        Ok(DiskReply::Data(Bytes::from(data)))
    }

    fn write(&mut self, path: &str, offset: u64, data: &Bytes) -> Result<DiskReply, DiskError> {
        if data.len() > DISK_IO_SIZE_MAX {
            return Err(DiskError::TooLarge {
                op: "write",
                size: data.len(),
                limit: DISK_IO_SIZE_MAX,
            });
        }
        let file = self
            .open(path, true)
            .map_err(|e| disk_error("write", path, &e))?;
        file.write_all_at(data, offset)
            .map_err(|e| disk_error("write", path, &e))?;
        Ok(DiskReply::Done)
    }

    fn sync_dir(&mut self) -> Result<DiskReply, DiskError> {
        let name = self.dir.display().to_string();
        let dir = File::open(&self.dir).map_err(|e| disk_error("sync_dir", &name, &e))?;
        dir.sync_all()
            .map_err(|e| disk_error("sync_dir", &name, &e))?;
        Ok(DiskReply::Done)
    }

    /// The regular files of the directory, sorted, without the lock file. Names that are not
    /// UTF-8 were not made by synod and are left out.
    fn list(&mut self) -> Result<DiskReply, DiskError> {
        let name = self.dir.display().to_string();
        let failed = |error: io::Error| disk_error("list", &name, &error);
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            if !entry.file_type().map_err(failed)?.is_file() {
                continue;
            }
            if let Ok(file_name) = entry.file_name().into_string()
                && file_name != LOCK_FILE_NAME
            {
                names.push(file_name);
            }
        }
        names.sort();
        Ok(DiskReply::Names(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, removed on drop.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(name: &str) -> ScratchDir {
            let path = std::env::temp_dir()
                .join(format!("synod-runtime-unit-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("create scratch dir");
            ScratchDir(path)
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn file_cache_stays_bounded_and_follows_renames() {
        // Checks that the cache never holds more than its limit, that a renamed file is
        // read under its new name, and the error mapping for missing and reserved names.
        let scratch = ScratchDir::new("cache");
        let mut files = FileCache::new(scratch.0.clone(), 2);
        for name in ["a", "b", "c"] {
            let data = Bytes::from(name.as_bytes().to_vec());
            let write = DiskOp::Write {
                path: name.to_string(),
                offset: 0,
                data,
            };
            assert_eq!(files.execute(&write), Ok(DiskReply::Done));
            assert!(files.files.len() <= 2);
        }
        let rename = DiskOp::Rename {
            from: "a".to_string(),
            to: "b".to_string(),
        };
        assert_eq!(files.execute(&rename), Ok(DiskReply::Done));
        let read = |path: &str| DiskOp::Read {
            path: path.to_string(),
            offset: 0,
            len: 16,
        };
        let data = Bytes::from_static(b"a");
        assert_eq!(files.execute(&read("b")), Ok(DiskReply::Data(data)));
        let missing = DiskError::NotFound {
            op: "read",
            path: "a".to_string(),
        };
        assert_eq!(files.execute(&read("a")), Err(missing));
        let names = vec!["b".to_string(), "c".to_string()];
        assert_eq!(files.execute(&DiskOp::List), Ok(DiskReply::Names(names)));
        assert!(matches!(
            files.execute(&read(LOCK_FILE_NAME)),
            Err(DiskError::InvalidPath { .. })
        ));
    }
}
