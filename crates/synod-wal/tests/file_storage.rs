//! FileStorage on a real temporary directory: the lock, the Storage semantics and a log
//! that survives closing and reopening.

use std::path::PathBuf;

use bytes::Bytes;
use synod_wal::{FileStorage, FileStorageError, Storage, SyncWal, WalConfig};

/// A fresh directory under the system's temporary directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!("synod-wal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_second_opener_is_refused_with_the_directory_named() {
    // Checks the data-directory lock: a second FileStorage on the same directory fails
    // with an error naming it, and succeeds once the first is dropped.
    let scratch = ScratchDir::new("lock");
    let first = FileStorage::open(&scratch.0).unwrap();
    let error = FileStorage::open(&scratch.0).unwrap_err();
    assert!(matches!(error, FileStorageError::Locked { .. }), "{error}");
    assert!(
        error.to_string().contains(&scratch.0.display().to_string()),
        "{error}"
    );
    drop(first);
    assert!(FileStorage::open(&scratch.0).is_ok());
}

#[test]
fn files_follow_the_storage_semantics() {
    // Checks positional IO, short reads at the end, set_len, rename, remove, the sorted
    // listing without the lock file, and NotFound for a missing file.
    let scratch = ScratchDir::new("semantics");
    let mut storage = FileStorage::open(&scratch.0).unwrap();
    storage.write("b", 4, b"data").unwrap();
    assert_eq!(
        storage.read("b", 0, 100).unwrap(),
        Bytes::from_static(b"\0\0\0\0data")
    );
    storage.sync("b").unwrap();
    storage.set_len("b", 16).unwrap();
    assert_eq!(storage.len("b").unwrap(), 16);
    storage.write("a", 0, b"x").unwrap();
    storage.rename("b", "c").unwrap();
    storage.sync_dir().unwrap();
    assert_eq!(
        storage.list().unwrap(),
        vec!["a".to_string(), "c".to_string()]
    );
    storage.remove("a").unwrap();
    let missing = storage.read("a", 0, 1).unwrap_err();
    assert!(
        matches!(missing, synod_wal::DiskError::NotFound { .. }),
        "{missing}"
    );
    assert!(
        storage.write("LOCK", 0, b"x").is_err(),
        "the lock file is reserved"
    );
}

#[test]
fn a_log_survives_closing_and_reopening() {
    // Checks a SyncWal over real files: entries appended and flushed are read back after
    // the storage is closed and the directory opened again.
    let scratch = ScratchDir::new("reopen");
    let mut config = WalConfig::small_for_tests();
    config.segment_size = 16 << 10;
    let storage = FileStorage::open(&scratch.0).unwrap();
    let (mut wal, _) = SyncWal::open(storage, config.clone()).unwrap();
    let payloads: Vec<Bytes> = (0..200)
        .map(|i| Bytes::from(format!("entry {i}").repeat(20)))
        .collect();
    for payload in &payloads {
        wal.append(payload.clone()).unwrap();
    }
    assert_eq!(wal.flush().unwrap(), 200);
    drop(wal);
    let storage = FileStorage::open(&scratch.0).unwrap();
    let (mut wal, report) = SyncWal::open(storage, config).unwrap();
    assert_eq!(report.torn_tail, None);
    assert!(report.segments_count > 1, "the log rolled segments");
    let entries = wal.read_range(1, 201).unwrap();
    let read: Vec<Bytes> = entries.into_iter().map(|entry| entry.payload).collect();
    assert_eq!(read, payloads);
}
