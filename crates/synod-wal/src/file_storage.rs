//! [`FileStorage`]: a real data directory, locked against a second opener, with positional
//! IO, `fdatasync` for files, `fsync` of the directory itself, and a bounded cache of open
//! files.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use synod_core::disk::{DiskError, LOCK_FILE_NAME, validate_file_name};
use synod_core::limits::DISK_IO_SIZE_MAX;
use thiserror::Error;

use crate::storage::Storage;

/// The most files a [`FileStorage`] keeps open; the least recently used is closed beyond.
pub const OPEN_FILES_MAX: usize = 64;
/// ENOSPC on Linux.
const ERRNO_NO_SPACE: i32 = 28;

/// Why a data directory cannot be opened.
#[derive(Debug, Error)]
pub enum FileStorageError {
    #[error(
        "data directory {dir} is locked by another process (lock file {lock_file}): \
         stop the other synod process or use another directory"
    )]
    Locked { dir: PathBuf, lock_file: PathBuf },
    #[error("data directory {dir}: {message}")]
    Io { dir: PathBuf, message: String },
}

struct CachedFile {
    file: File,
    last_used: u64,
}

/// A locked data directory on a real file system.
/// Zeros written per call while preallocating.
const PREALLOCATE_CHUNK_SIZE: usize = 1 << 20;

pub struct FileStorage {
    dir: PathBuf,
    _lock: File,
    files: BTreeMap<String, CachedFile>,
    use_counter: u64,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FileStorage")
            .field("dir", &self.dir)
            .field("open_files", &self.files.len())
            .finish()
    }
}

/// Maps an io error to a [`DiskError`]; a full disk says so.
fn disk_error(op: &'static str, path: &str, error: &io::Error) -> DiskError {
    let path = path.to_string();
    if error.kind() == io::ErrorKind::NotFound {
        return DiskError::NotFound { op, path };
    }
    let message = if error.kind() == io::ErrorKind::StorageFull
        || error.raw_os_error() == Some(ERRNO_NO_SPACE)
    {
        format!("no space left on device: the disk is full ({error})")
    } else {
        error.to_string()
    };
    DiskError::Io { op, path, message }
}

impl FileStorage {
    /// Creates `dir` if needed and takes its lock; a second opener is refused.
    pub fn open(dir: &Path) -> Result<FileStorage, FileStorageError> {
        let failed = |error: io::Error| FileStorageError::Io {
            dir: dir.to_path_buf(),
            message: error.to_string(),
        };
        fs::create_dir_all(dir).map_err(failed)?;
        let lock_file = dir.join(LOCK_FILE_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_file)
            .map_err(failed)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let dir = dir.to_path_buf();
                return Err(FileStorageError::Locked { dir, lock_file });
            }
            Err(TryLockError::Error(error)) => return Err(failed(error)),
        }
        Ok(FileStorage {
            dir: dir.to_path_buf(),
            _lock: lock,
            files: BTreeMap::new(),
            use_counter: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn open_file(
        &mut self,
        op: &'static str,
        path: &str,
        create: bool,
    ) -> Result<&File, DiskError> {
        validate_file_name(path)?;
        self.use_counter += 1;
        if !self.files.contains_key(path) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(self.dir.join(path))
                .map_err(|error| disk_error(op, path, &error))?;
            if self.files.len() >= OPEN_FILES_MAX {
                let oldest = self.files.iter().min_by_key(|(_, cached)| cached.last_used);
                let oldest = oldest.map(|(name, _)| name.clone());
                if let Some(name) = oldest {
                    self.files.remove(&name);
                }
            }
            let cached = CachedFile { file, last_used: 0 };
            self.files.insert(path.to_string(), cached);
        }
        assert!(
            self.files.len() <= OPEN_FILES_MAX,
            "file cache over its bound"
        );
        let cached = self.files.get_mut(path).expect("opened above");
        cached.last_used = self.use_counter;
        Ok(&cached.file)
    }

    fn dir_name(&self) -> String {
        self.dir.display().to_string()
    }
}

impl Storage for FileStorage {
    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<Bytes, DiskError> {
        let size = len as usize;
        if size > DISK_IO_SIZE_MAX {
            let limit = DISK_IO_SIZE_MAX;
            return Err(DiskError::TooLarge {
                op: "read",
                size,
                limit,
            });
        }
        let file = self.open_file("read", path, false)?;
        let mut data = vec![0u8; size];
        let mut filled = 0;
        // Each pass fills more of the buffer or stops at the end of the file.
        while filled < size {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(disk_error("read", path, &error)),
            }
        }
        data.truncate(filled);
        Ok(Bytes::from(data))
    }

    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        if data.len() > DISK_IO_SIZE_MAX {
            let (size, limit) = (data.len(), DISK_IO_SIZE_MAX);
            return Err(DiskError::TooLarge {
                op: "write",
                size,
                limit,
            });
        }
        let file = self.open_file("write", path, true)?;
        file.write_all_at(data, offset)
            .map_err(|error| disk_error("write", path, &error))
    }

    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        let file = self.open_file("sync", path, false)?;
        file.sync_data()
            .map_err(|error| disk_error("sync", path, &error))
    }

    /// Extending writes real zeros rather than leaving a sparse hole: a preallocated
    /// segment must own its blocks, or every later fdatasync into the hole also has to
    /// journal a block allocation (measured: several times the latency of an overwrite).
    fn set_len(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        let file = self.open_file("set_len", path, false)?;
        let current = file
            .metadata()
            .map_err(|error| disk_error("set_len", path, &error))?
            .len();
        if len > current {
            let zeros = vec![0u8; PREALLOCATE_CHUNK_SIZE];
            let mut offset = current;
            while offset < len {
                let length = (len - offset).min(PREALLOCATE_CHUNK_SIZE as u64) as usize;
                file.write_all_at(&zeros[..length], offset)
                    .map_err(|error| disk_error("set_len", path, &error))?;
                offset += length as u64;
            }
        }
        file.set_len(len)
            .map_err(|error| disk_error("set_len", path, &error))
    }

    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        validate_file_name(path)?;
        let metadata = fs::metadata(self.dir.join(path));
        Ok(metadata
            .map_err(|error| disk_error("len", path, &error))?
            .len())
    }

    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        validate_file_name(path)?;
        self.files.remove(path);
        fs::remove_file(self.dir.join(path)).map_err(|error| disk_error("remove", path, &error))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        validate_file_name(from)?;
        validate_file_name(to)?;
        self.files.remove(from);
        self.files.remove(to);
        let renamed = fs::rename(self.dir.join(from), self.dir.join(to));
        renamed.map_err(|error| disk_error("rename", from, &error))
    }

    fn sync_dir(&mut self) -> Result<(), DiskError> {
        let name = self.dir_name();
        let dir = File::open(&self.dir).map_err(|error| disk_error("sync_dir", &name, &error))?;
        dir.sync_all()
            .map_err(|error| disk_error("sync_dir", &name, &error))
    }

    fn list(&mut self) -> Result<Vec<String>, DiskError> {
        let name = self.dir_name();
        let failed = |error: io::Error| disk_error("list", &name, &error);
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            if !entry.file_type().map_err(failed)?.is_file() {
                continue;
            }
            // Names that are not UTF-8 were not made by synod and are left out.
            if let Ok(file_name) = entry.file_name().into_string()
                && file_name != LOCK_FILE_NAME
            {
                names.push(file_name);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        // Checks that ENOSPC maps to an Io error whose message says the disk is full.
        let error = io::Error::from_raw_os_error(ERRNO_NO_SPACE);
        let mapped = disk_error("write", "wal-1.log", &error);
        let DiskError::Io { message, .. } = mapped else {
            panic!("expected an Io error, got {mapped:?}");
        };
        assert!(
            message.starts_with("no space left on device: the disk is full"),
            "{message}"
        );
    }
}
