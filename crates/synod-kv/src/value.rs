//! The in-memory representation of keys and their version histories, designed to be small
//! at millions of keys.
//!
//! A key or value of up to [`INLINE_SIZE_MAX`] bytes is stored inline in a 24-byte
//! [`CompactBytes`], with no heap allocation; a longer one takes one exact-size heap
//! allocation (no capacity slack, no reference count). A key whose history holds one version
//! (the common case) stores it inline in [`KeyHistory::One`], without a `Vec`. So a key of up
//! to 22 bytes with one value of up to 22 bytes costs one B-tree slot of 72 bytes and
//! nothing else. Reads copy a value out into [`Bytes`]; the store never shares its buffers.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;

/// The longest byte string stored inline in a [`CompactBytes`].
pub const INLINE_SIZE_MAX: usize = 22;

/// An immutable byte string: inline up to [`INLINE_SIZE_MAX`] bytes, else one exact-size heap
/// allocation. Orders, compares and borrows as `[u8]`, so a map keyed by it is searched with
/// `&[u8]`.
#[derive(Clone)]
pub enum CompactBytes {
    Inline {
        length: u8,
        bytes: [u8; INLINE_SIZE_MAX],
    },
    Heap(Box<[u8]>),
}

const _: () = assert!(INLINE_SIZE_MAX <= u8::MAX as usize);

impl CompactBytes {
    pub fn new(value: &[u8]) -> CompactBytes {
        if value.len() <= INLINE_SIZE_MAX {
            let mut bytes = [0u8; INLINE_SIZE_MAX];
            bytes[..value.len()].copy_from_slice(value);
            let length = u8::try_from(value.len()).expect("inline length fits u8");
            CompactBytes::Inline { length, bytes }
        } else {
            CompactBytes::Heap(Box::from(value))
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            CompactBytes::Inline { length, bytes } => &bytes[..usize::from(*length)],
            CompactBytes::Heap(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// A copy as [`Bytes`], for replies.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_slice())
    }
}

impl fmt::Debug for CompactBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}", Bytes::copy_from_slice(self.as_slice()))
    }
}

impl PartialEq for CompactBytes {
    fn eq(&self, other: &CompactBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for CompactBytes {}

impl PartialOrd for CompactBytes {
    fn partial_cmp(&self, other: &CompactBytes) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CompactBytes {
    fn cmp(&self, other: &CompactBytes) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

// `Borrow` requires that `Eq` and `Ord` agree with `[u8]`'s, which they do: both compare
// `as_slice()`.
impl Borrow<[u8]> for CompactBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

/// A value as a reader sees it: the bytes and the etcd-style revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    pub value: Bytes,
    /// The revision of the write that created the key (after it was last absent).
    pub create_revision: u64,
    /// The revision of the write that set this value.
    pub mod_revision: u64,
    /// How many times the key has been written since it was created: 1 after creation.
    pub version: u64,
}

/// One version of a key in its history: a value, or a tombstone recording a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The revision of the write that created the key; 0 for a tombstone.
    pub create_revision: u64,
    /// The revision of the write that produced this version.
    pub mod_revision: u64,
    /// Writes since creation (1 after creation); 0 for a tombstone.
    pub version: u64,
    /// `None` for a tombstone.
    pub value: Option<CompactBytes>,
}

impl Version {
    pub fn tombstone(mod_revision: u64) -> Version {
        Version {
            create_revision: 0,
            mod_revision,
            version: 0,
            value: None,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// The version as a reader sees it; `None` for a tombstone.
    pub fn visible(&self) -> Option<VersionedValue> {
        let value = self.value.as_ref()?;
        Some(VersionedValue {
            value: value.to_bytes(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        })
    }
}

/// The versions of one key, oldest first, with strictly increasing `mod_revision`. A history
/// with one version stores it inline; only a key with several versions allocates a `Vec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHistory {
    One(Version),
    Many(Vec<Version>),
}

impl KeyHistory {
    pub fn versions(&self) -> &[Version] {
        match self {
            KeyHistory::One(version) => std::slice::from_ref(version),
            KeyHistory::Many(versions) => versions,
        }
    }

    /// The newest version.
    pub fn latest(&self) -> &Version {
        self.versions()
            .last()
            .expect("a key history is never empty")
    }

    /// The newest version with `mod_revision <= revision`, if any.
    pub fn at(&self, revision: u64) -> Option<&Version> {
        let versions = self.versions();
        let after = versions.partition_point(|version| version.mod_revision <= revision);
        after.checked_sub(1).map(|index| &versions[index])
    }

    /// Appends a version newer than every version held.
    pub fn push(&mut self, version: Version) {
        assert!(version.mod_revision > self.latest().mod_revision);
        match self {
            KeyHistory::One(first) => {
                let first = first.clone();
                *self = KeyHistory::Many(vec![first, version]);
            }
            KeyHistory::Many(versions) => versions.push(version),
        }
    }

    /// How many of the oldest versions compaction at `compacted_revision` drops: all but the
    /// newest at or below it, and that one too when it is a tombstone (a key deleted at or
    /// before the compaction point is gone for every readable revision).
    pub fn prunable_count(&self, compacted_revision: u64) -> usize {
        let versions = self.versions();
        let at_or_below = versions.partition_point(|v| v.mod_revision <= compacted_revision);
        match at_or_below {
            0 => 0,
            count if versions[count - 1].is_tombstone() => count,
            count => count - 1,
        }
    }

    /// The versions compaction keeps (see [`KeyHistory::prunable_count`]).
    pub fn retained(&self, compacted_revision: u64) -> &[Version] {
        &self.versions()[self.prunable_count(compacted_revision)..]
    }

    /// Drops the versions compaction does not keep, returning to the inline form when one is
    /// left. Returns true when none is left: the caller removes the key.
    pub fn prune(&mut self, compacted_revision: u64) -> bool {
        let prunable = self.prunable_count(compacted_revision);
        if prunable == 0 {
            return false;
        }
        let KeyHistory::Many(versions) = self else {
            return true; // The one version is prunable.
        };
        versions.drain(..prunable);
        match versions.len() {
            0 => true,
            1 => {
                let only = versions.pop().expect("one version is left");
                *self = KeyHistory::One(only);
                false
            }
            _ => {
                versions.shrink_to_fit();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(revision: u64, bytes: &[u8]) -> Version {
        Version {
            create_revision: 1,
            mod_revision: revision,
            version: revision,
            value: Some(CompactBytes::new(bytes)),
        }
    }

    #[test]
    fn compact_bytes_are_small_and_order_like_slices() {
        // Checks the sizes the memory budget relies on and that ordering is byte order
        // whether a string is inline or on the heap.
        assert_eq!(size_of::<CompactBytes>(), 24);
        assert_eq!(size_of::<Option<CompactBytes>>(), 24);
        assert_eq!(size_of::<Version>(), 48);
        assert_eq!(size_of::<KeyHistory>(), 48);
        let short = CompactBytes::new(b"abc");
        let long = CompactBytes::new(&[b'a'; 40]);
        assert!(matches!(short, CompactBytes::Inline { .. }));
        assert!(matches!(long, CompactBytes::Heap(_)));
        assert!(long < short);
        assert_eq!(long.len(), 40);
        assert_eq!(CompactBytes::new(&[7; 22]).as_slice(), &[7; 22]);
        assert_eq!(CompactBytes::new(b"").len(), 0);
    }

    #[test]
    fn history_reads_at_a_revision_and_prunes_to_the_compaction_point() {
        // Checks `at` and that pruning keeps the newest version at or below the compaction
        // point, drops a tombstone there, and returns to the inline form.
        let mut history = KeyHistory::One(value(2, b"a"));
        history.push(value(5, b"b"));
        history.push(Version::tombstone(7));
        history.push(value(9, b"c"));
        assert_eq!(history.at(1), None);
        assert_eq!(history.at(4).unwrap().mod_revision, 2);
        assert_eq!(history.at(8).unwrap().mod_revision, 7);
        assert_eq!(history.prunable_count(1), 0);
        assert_eq!(history.prunable_count(6), 1);
        assert_eq!(history.prunable_count(7), 3);
        assert_eq!(history.retained(8).len(), 1);
        let mut pruned = history.clone();
        assert!(!pruned.prune(6));
        assert_eq!(pruned.versions().len(), 3);
        assert_eq!(pruned.versions()[0].mod_revision, 5);
        let mut pruned = history;
        assert!(!pruned.prune(8));
        assert!(matches!(pruned, KeyHistory::One(ref v) if v.mod_revision == 9));
        assert!(KeyHistory::One(Version::tombstone(3)).prune(3));
        assert!(!KeyHistory::One(Version::tombstone(3)).prune(2));
    }
}
