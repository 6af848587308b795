//! An in-memory [`Storage`] with a page cache and a durable image, like a tiny simulated
//! disk: writes and length changes reach the live image at once and the durable image at
//! `sync`; creations, renames and removals become durable at `sync_dir`. [`MemStorage::crash`]
//! keeps only what is durable; [`MemStorage::crash_with`] also keeps a seeded subset of the
//! unsynced changes, possibly torn at sector boundaries, as a power loss may.

use std::collections::BTreeMap;

use bytes::Bytes;
use synod_core::Prng;
use synod_core::disk::{DiskError, LOCK_FILE_NAME, validate_file_name};
use synod_core::limits::DISK_IO_SIZE_MAX;

use crate::storage::Storage;

/// One change to a file's data that is not yet durable.
#[derive(Clone, Debug)]
enum DataChange {
    Write { offset: u64, data: Bytes },
    SetLen { len: u64 },
}

/// One change to the directory that is not yet durable.
#[derive(Clone, Debug)]
enum DirectoryChange {
    Create { name: String, inode: u64 },
    Remove { name: String },
    Rename { from: String, to: String },
}

#[derive(Clone, Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<DataChange>,
}

/// How a [`MemStorage::crash_with`] treats what was not synced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrashFaults {
    /// The chance that each unsynced change reached the media anyway.
    pub unsynced_kept_probability: f64,
    /// The chance that a kept multi-sector write is torn.
    pub torn_probability: f64,
    /// The atomic unit of a write.
    pub sector_size: usize,
}

/// A perfect in-memory data directory with a crash model.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inodes: BTreeMap<u64, Inode>,
    names_live: BTreeMap<String, u64>,
    names_durable: BTreeMap<String, u64>,
    directory_unsynced: Vec<DirectoryChange>,
    inode_next: u64,
}

fn not_found(op: &'static str, path: &str) -> DiskError {
    DiskError::NotFound {
        op,
        path: path.to_string(),
    }
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn apply_change(bytes: &mut Vec<u8>, change: &DataChange) {
    match change {
        DataChange::Write { offset, data } => apply_write(bytes, *offset, data),
        DataChange::SetLen { len } => bytes.resize(*len as usize, 0),
    }
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// What reads see now.
    pub fn live_contents(&self, path: &str) -> Option<&[u8]> {
        let inode = self.names_live.get(path)?;
        Some(&self.inodes[inode].live)
    }

    /// What survives a crash (for a name that is durable).
    pub fn durable_contents(&self, path: &str) -> Option<&[u8]> {
        let inode = self.names_durable.get(path)?;
        Some(&self.inodes[inode].durable)
    }

    /// Flips one bit of a file in both images (latent corruption found after a restart).
    pub fn flip_bit(&mut self, path: &str, bit: u64) {
        let inode = self.names_live[path];
        let file = self.inodes.get_mut(&inode).expect("named inode exists");
        let index = (bit / 8) as usize;
        file.live[index] ^= 1 << (bit % 8);
        if index < file.durable.len() {
            file.durable[index] ^= 1 << (bit % 8);
        }
    }

    /// Drops the unsynced changes of `path` without making them durable, as a failed fsync
    /// does on Linux (fsyncgate): reads still see them until the next crash.
    pub fn drop_unsynced(&mut self, path: &str) {
        if let Some(inode) = self.names_live.get(path) {
            let file = self.inodes.get_mut(inode).expect("named inode exists");
            file.unsynced.clear();
        }
    }

    /// A power loss that keeps exactly the durable state.
    pub fn crash(&mut self) {
        let mut prng = Prng::from_seed(0);
        let faults = CrashFaults {
            unsynced_kept_probability: 0.0,
            torn_probability: 0.0,
            sector_size: 512,
        };
        self.crash_with(&faults, &mut prng);
    }

    /// A power loss that keeps the durable state plus a seeded subset of unsynced changes.
    pub fn crash_with(&mut self, faults: &CrashFaults, prng: &mut Prng) {
        let mut names = self.names_durable.clone();
        for change in std::mem::take(&mut self.directory_unsynced) {
            if !prng.chance(faults.unsynced_kept_probability) {
                continue;
            }
            match change {
                DirectoryChange::Create { name, inode } => {
                    names.insert(name, inode);
                }
                DirectoryChange::Remove { name } => {
                    names.remove(&name);
                }
                DirectoryChange::Rename { from, to } => {
                    if let Some(inode) = names.remove(&from) {
                        names.insert(to, inode);
                    }
                }
            }
        }
        self.names_live = names.clone();
        self.names_durable = names;
        let referenced: Vec<u64> = self.names_live.values().copied().collect();
        self.inodes.retain(|inode, _| referenced.contains(inode));
        for file in self.inodes.values_mut() {
            for change in std::mem::take(&mut file.unsynced) {
                if prng.chance(faults.unsynced_kept_probability) {
                    apply_kept_change(&mut file.durable, &change, faults, prng);
                }
            }
            file.live.clone_from(&file.durable);
        }
    }

    fn inode_mut(&mut self, op: &'static str, path: &str) -> Result<&mut Inode, DiskError> {
        let inode = *self
            .names_live
            .get(path)
            .ok_or_else(|| not_found(op, path))?;
        Ok(self.inodes.get_mut(&inode).expect("named inode exists"))
    }
}

/// Applies a change that survived a crash, tearing a multi-sector write if drawn.
fn apply_kept_change(
    durable: &mut Vec<u8>,
    change: &DataChange,
    faults: &CrashFaults,
    prng: &mut Prng,
) {
    let DataChange::Write { offset, data } = change else {
        apply_change(durable, change);
        return;
    };
    let sector = faults.sector_size as u64;
    let first_sector = offset / sector;
    let end = offset + data.len() as u64;
    let sectors_count = end.div_ceil(sector) - first_sector;
    if sectors_count < 2 || !prng.chance(faults.torn_probability) {
        apply_write(durable, *offset, data);
        return;
    }
    let prefix_only = prng.chance(0.5);
    let prefix_count = 1 + prng.below(sectors_count - 1);
    for index in 0..sectors_count {
        let kept = if prefix_only {
            index < prefix_count
        } else {
            prng.chance(0.5)
        };
        if !kept {
            continue;
        }
        let piece_start = ((first_sector + index) * sector).max(*offset);
        let piece_end = ((first_sector + index + 1) * sector).min(end);
        let range = (piece_start - offset) as usize..(piece_end - offset) as usize;
        apply_write(durable, piece_start, &data[range]);
    }
}

fn check_size(op: &'static str, size: usize) -> Result<(), DiskError> {
    if size > DISK_IO_SIZE_MAX {
        return Err(DiskError::TooLarge {
            op,
            size,
            limit: DISK_IO_SIZE_MAX,
        });
    }
    Ok(())
}

impl Storage for MemStorage {
    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<Bytes, DiskError> {
        validate_file_name(path)?;
        check_size("read", len as usize)?;
        let live = &self.inode_mut("read", path)?.live;
        let start = (offset.min(live.len() as u64)) as usize;
        let end = (start + len as usize).min(live.len());
        Ok(Bytes::copy_from_slice(&live[start..end]))
    }

    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        validate_file_name(path)?;
        check_size("write", data.len())?;
        if !self.names_live.contains_key(path) {
            let inode = self.inode_next;
            self.inode_next += 1;
            self.inodes.insert(inode, Inode::default());
            self.names_live.insert(path.to_string(), inode);
            let name = path.to_string();
            self.directory_unsynced
                .push(DirectoryChange::Create { name, inode });
        }
        if data.is_empty() {
            return Ok(());
        }
        let file = self.inode_mut("write", path)?;
        apply_write(&mut file.live, offset, data);
        let data = Bytes::copy_from_slice(data);
        file.unsynced.push(DataChange::Write { offset, data });
        Ok(())
    }

    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        validate_file_name(path)?;
        let file = self.inode_mut("sync", path)?;
        for change in std::mem::take(&mut file.unsynced) {
            apply_change(&mut file.durable, &change);
        }
        Ok(())
    }

    fn set_len(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        validate_file_name(path)?;
        let file = self.inode_mut("set_len", path)?;
        file.live.resize(len as usize, 0);
        file.unsynced.push(DataChange::SetLen { len });
        Ok(())
    }

    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        validate_file_name(path)?;
        Ok(self.inode_mut("len", path)?.live.len() as u64)
    }

    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        validate_file_name(path)?;
        self.names_live
            .remove(path)
            .ok_or_else(|| not_found("remove", path))?;
        let name = path.to_string();
        self.directory_unsynced
            .push(DirectoryChange::Remove { name });
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        validate_file_name(from)?;
        validate_file_name(to)?;
        let inode = self
            .names_live
            .remove(from)
            .ok_or_else(|| not_found("rename", from))?;
        self.names_live.insert(to.to_string(), inode);
        self.directory_unsynced.push(DirectoryChange::Rename {
            from: from.to_string(),
            to: to.to_string(),
        });
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), DiskError> {
        self.names_durable = self.names_live.clone();
        self.directory_unsynced.clear();
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<String>, DiskError> {
        let names = self.names_live.keys();
        Ok(names
            .filter(|name| *name != LOCK_FILE_NAME)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_what_was_synced() {
        // Checks the durability rules: data needs sync, a name needs sync_dir.
        let mut storage = MemStorage::new();
        storage.write("a", 0, b"hello").unwrap();
        storage.sync("a").unwrap();
        storage.sync_dir().unwrap();
        storage.write("a", 5, b" world").unwrap();
        storage.write("b", 0, b"lost").unwrap();
        storage.sync("b").unwrap();
        storage.crash();
        assert_eq!(storage.live_contents("a"), Some(&b"hello"[..]));
        assert_eq!(storage.live_contents("b"), None);
        assert_eq!(storage.list().unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn dropped_unsynced_changes_are_lost_even_after_a_later_sync() {
        // Checks the fsyncgate model: pages marked clean by a failed sync never get durable.
        let mut storage = MemStorage::new();
        storage.write("a", 0, b"one").unwrap();
        storage.sync("a").unwrap();
        storage.sync_dir().unwrap();
        storage.write("a", 3, b"two").unwrap();
        storage.drop_unsynced("a");
        assert_eq!(storage.live_contents("a"), Some(&b"onetwo"[..]));
        storage.sync("a").unwrap();
        storage.crash();
        assert_eq!(storage.live_contents("a"), Some(&b"one"[..]));
    }

    #[test]
    fn torn_crash_keeps_whole_sectors_only() {
        // Checks that a torn write leaves every sector either all old or all new.
        for seed in 0..64 {
            let mut storage = MemStorage::new();
            storage.set_len_or_create("a", 2048);
            storage.write("a", 0, &[7u8; 2048]).unwrap();
            let faults = CrashFaults {
                unsynced_kept_probability: 1.0,
                torn_probability: 1.0,
                sector_size: 512,
            };
            storage.crash_with(&faults, &mut Prng::from_seed(seed));
            let bytes = storage.live_contents("a").unwrap().to_vec();
            for sector in bytes.chunks(512) {
                assert!(sector.iter().all(|b| *b == 7) || sector.iter().all(|b| *b == 0));
            }
        }
    }

    impl MemStorage {
        fn set_len_or_create(&mut self, path: &str, len: u64) {
            self.write(path, 0, &[]).unwrap();
            self.set_len(path, len).unwrap();
            self.sync(path).unwrap();
            self.sync_dir().unwrap();
        }
    }
}
