//! The multi-version key space: every key's history, the store-wide revision, and compaction.
//!
//! Writes of one entry all get the revision `revision + 1`; [`Keyspace::commit`] makes it
//! the store's revision if the entry wrote anything (one revision per entry, like etcd).
//! Compaction is logical at once (reads below the compaction point fail, reads at or above
//! it are unchanged) and physical gradually: a key's history is pruned when the key is
//! written, and a cursor prunes a bounded number of keys per applied entry.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::config::RANGE_ENTRY_OVERHEAD_SIZE;
use crate::response::{RangeEntry, ReadError};
use crate::value::{CompactBytes, KeyHistory, Version, VersionedValue};

/// The key space of a store.
#[derive(Debug, Clone, Default)]
pub struct Keyspace {
    keys: BTreeMap<CompactBytes, KeyHistory>,
    /// The revision of the last entry that wrote a key (0 before any).
    revision: u64,
    /// Reads below this revision are refused; versions no read at or above it can see may
    /// still be held until pruned.
    compacted_revision: u64,
    /// Keys whose newest version is a value.
    live_keys_count: u64,
    /// Where pruning continues: `None` when no pruning is pending.
    prune_cursor: Option<Bound<CompactBytes>>,
    /// Whether the entry being applied has written (then `commit` bumps the revision).
    entry_written: bool,
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace::default()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn compacted_revision(&self) -> u64 {
        self.compacted_revision
    }

    pub fn live_keys_count(&self) -> u64 {
        self.live_keys_count
    }

    /// Keys held in memory, including deleted keys whose tombstones are not yet pruned.
    pub fn keys_held_count(&self) -> usize {
        self.keys.len()
    }

    /// The newest version of `key`, including writes of the entry being applied; `None`
    /// when the key is absent or deleted.
    pub fn current(&self, key: &[u8]) -> Option<&Version> {
        let latest = self.keys.get(key)?.latest();
        (!latest.is_tombstone()).then_some(latest)
    }

    /// Resolves a read's revision: `None` is the current revision; one below the compaction
    /// point or above the current revision is refused.
    pub fn read_revision(&self, revision: Option<u64>) -> Result<u64, ReadError> {
        let Some(revision) = revision else {
            return Ok(self.revision);
        };
        if revision > self.revision {
            return Err(ReadError::FutureRevision {
                revision,
                current: self.revision,
            });
        }
        if revision < self.compacted_revision {
            return Err(ReadError::Compacted {
                revision,
                compacted: self.compacted_revision,
            });
        }
        Ok(revision)
    }

    pub fn get(
        &self,
        key: &[u8],
        revision: Option<u64>,
    ) -> Result<Option<VersionedValue>, ReadError> {
        let revision = self.read_revision(revision)?;
        let Some(history) = self.keys.get(key) else {
            return Ok(None);
        };
        Ok(history.at(revision).and_then(Version::visible))
    }

    /// The keys in `[start, end)` that hold a value at `revision` (already resolved), in key
    /// order: at most `limit` entries and, beyond the first, at most `size_max` bytes. The
    /// flag says whether more keys matched.
    pub fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        size_max: usize,
        revision: u64,
    ) -> (Vec<RangeEntry>, bool) {
        assert!(limit > 0);
        if let Some(end) = end
            && end <= start
        {
            return (Vec::new(), false);
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut entries = Vec::new();
        let mut size = 0;
        for (key, history) in self.keys.range::<[u8], _>((Bound::Included(start), upper)) {
            let Some(version) = history.at(revision) else {
                continue;
            };
            let Some(value) = &version.value else {
                continue;
            };
            let entry_size = key.len() + value.len() + RANGE_ENTRY_OVERHEAD_SIZE;
            if entries.len() == limit || (!entries.is_empty() && size + entry_size > size_max) {
                return (entries, true);
            }
            size += entry_size;
            let value = version.visible().expect("not a tombstone");
            entries.push(RangeEntry {
                key: key.to_bytes(),
                value,
            });
        }
        (entries, false)
    }

    /// The revision writes of the entry being applied get.
    fn entry_revision(&self) -> u64 {
        self.revision.checked_add(1).expect("revision overflow")
    }

    /// Sets `key` to `value` at the entry's revision.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        let revision = self.entry_revision();
        self.entry_written = true;
        let created = |revision| Version {
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            value: Some(CompactBytes::new(value)),
        };
        let Some(history) = self.keys.get_mut(key) else {
            self.keys
                .insert(CompactBytes::new(key), KeyHistory::One(created(revision)));
            self.live_keys_count += 1;
            return;
        };
        if history.prune(self.compacted_revision) {
            *history = KeyHistory::One(created(revision));
            self.live_keys_count += 1;
            return;
        }
        let latest = history.latest();
        let version = if latest.is_tombstone() {
            self.live_keys_count += 1;
            created(revision)
        } else {
            Version {
                create_revision: latest.create_revision,
                mod_revision: revision,
                version: latest.version + 1,
                value: Some(CompactBytes::new(value)),
            }
        };
        history.push(version);
    }

    /// Deletes `key` at the entry's revision; false (and no write) when it is absent.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let revision = self.entry_revision();
        let Some(history) = self.keys.get_mut(key) else {
            return false;
        };
        if history.latest().is_tombstone() {
            return false;
        }
        // The newest version is a value, so pruning leaves at least that one.
        let emptied = history.prune(self.compacted_revision);
        assert!(!emptied);
        history.push(Version::tombstone(revision));
        self.entry_written = true;
        self.live_keys_count -= 1;
        true
    }

    /// Ends the entry being applied: if it wrote, its revision becomes the store's. Returns
    /// the store's revision.
    pub fn commit(&mut self) -> u64 {
        if self.entry_written {
            self.revision = self.entry_revision();
            self.entry_written = false;
        }
        self.revision
    }

    /// Moves the compaction point to `revision` and starts pruning from the first key.
    pub fn compact(&mut self, revision: u64) -> Result<(), ReadError> {
        if revision > self.revision {
            return Err(ReadError::FutureRevision {
                revision,
                current: self.revision,
            });
        }
        if revision <= self.compacted_revision {
            return Err(ReadError::Compacted {
                revision,
                compacted: self.compacted_revision,
            });
        }
        self.compacted_revision = revision;
        self.prune_cursor = Some(Bound::Unbounded);
        Ok(())
    }

    /// Prunes the histories of up to `keys_max` keys from the cursor on, removing keys left
    /// with no version.
    pub fn prune_step(&mut self, keys_max: usize) {
        let Some(cursor) = self.prune_cursor.take() else {
            return;
        };
        let lower = match &cursor {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
            Bound::Included(_) => unreachable!("the prune cursor is never inclusive"),
        };
        let compacted_revision = self.compacted_revision;
        let mut emptied = Vec::new();
        let mut visited = 0;
        let mut last = None;
        let range = self.keys.range_mut::<[u8], _>((lower, Bound::Unbounded));
        for (key, history) in range.take(keys_max) {
            visited += 1;
            if history.prune(compacted_revision) {
                emptied.push(key.clone());
            }
            last = Some(key);
        }
        let next = (visited == keys_max).then(|| last.cloned()).flatten();
        for key in emptied {
            self.keys.remove(key.as_slice());
        }
        self.prune_cursor = next.map(Bound::Excluded);
    }

    /// Every key with the versions compaction keeps, in key order; keys with none are left
    /// out. This is the logical state that snapshots and the digest record.
    pub fn retained(&self) -> impl Iterator<Item = (&CompactBytes, &[Version])> {
        let compacted_revision = self.compacted_revision;
        self.keys
            .iter()
            .map(move |(key, history)| (key, history.retained(compacted_revision)))
            .filter(|(_, versions)| !versions.is_empty())
    }

    /// Rebuilds a key space from a snapshot's parts, which the caller has validated.
    pub fn from_parts(
        keys: BTreeMap<CompactBytes, KeyHistory>,
        revision: u64,
        compacted_revision: u64,
    ) -> Keyspace {
        let live_keys_count = keys.values().filter(|h| !h.latest().is_tombstone()).count();
        Keyspace {
            keys,
            revision,
            compacted_revision,
            live_keys_count: live_keys_count as u64,
            prune_cursor: None,
            entry_written: false,
        }
    }

    /// The checks cheap enough to run after every entry.
    pub fn invariants_entry(&self) {
        assert!(!self.entry_written, "an entry's writes were not committed");
        assert!(self.compacted_revision <= self.revision);
        assert!(self.live_keys_count <= self.keys.len() as u64);
    }

    /// Every invariant, O(keys and versions).
    pub fn invariants(&self) {
        self.invariants_entry();
        let mut live_keys_count = 0;
        for (key, history) in &self.keys {
            if let KeyHistory::Many(versions) = history {
                assert!(
                    versions.len() >= 2,
                    "key {key:?}: a Many history holds one version"
                );
            }
            let versions = history.versions();
            for version in versions {
                assert!(version.mod_revision >= 1 && version.mod_revision <= self.revision);
                if !version.is_tombstone() {
                    assert!(version.create_revision >= 1);
                    assert!(version.create_revision <= version.mod_revision);
                    assert!(version.version >= 1);
                } else {
                    assert_eq!((version.create_revision, version.version), (0, 0));
                }
            }
            for pair in versions.windows(2) {
                check_successor(key, &pair[0], &pair[1]);
            }
            live_keys_count += u64::from(!history.latest().is_tombstone());
        }
        assert_eq!(live_keys_count, self.live_keys_count);
    }
}

/// Asserts that `next` can follow `previous` in a key's history.
fn check_successor(key: &CompactBytes, previous: &Version, next: &Version) {
    assert!(
        next.mod_revision > previous.mod_revision,
        "key {key:?}: revisions out of order"
    );
    match (previous.is_tombstone(), next.is_tombstone()) {
        (false, false) => {
            assert_eq!(
                next.create_revision, previous.create_revision,
                "key {key:?}"
            );
            assert_eq!(next.version, previous.version + 1, "key {key:?}");
        }
        (true, false) => {
            assert_eq!(next.create_revision, next.mod_revision, "key {key:?}");
            assert_eq!(next.version, 1, "key {key:?}");
        }
        (false, true) => {}
        (true, true) => panic!("key {key:?}: two tombstones in a row"),
    }
}
