//! The simulated disk: one node's flat data directory, modelled the way the media and the
//! kernel really behave, so that synod's write-ahead log can be proven against it.
//!
//! ## The model
//!
//! Every file is an inode with two images. The **live** image is the page cache: what reads
//! see now. The **durable** image is what survives a crash. Between them sits the file's
//! ordered list of **unsynced changes** (writes and length changes since its last sync).
//! `Write` and `SetLen` change the live image and append to that list; `Sync` (fdatasync)
//! applies the list, in order, to the durable image.
//!
//! The directory has the same split: a live name table (what `List` and opens see), a
//! durable name table, and the ordered list of unsynced directory changes (the creation of
//! a file by its first write, `Rename`, `Remove`). `SyncDir` makes the live table durable.
//! Syncing a file does not make its name durable: a file that was created and synced but
//! whose directory was never synced may vanish at a crash (POSIX promises no more; ext4
//! often does better, and code must not rely on it).
//!
//! A **crash** rebuilds the live state from the durable one plus a seeded subset of what
//! was not yet synced, which is what the kernel's background writeback may have flushed:
//! - each unsynced directory change is kept with `unsynced_write_kept_probability`,
//!   independently of the others (POSIX does not order them), and applied whole: a rename
//!   is all or nothing, the target name always names the old or the new file;
//! - each unsynced data change of each file is kept with the same probability, in order;
//!   a kept write that spans two or more sectors is **torn** with `torn_write_probability`:
//!   half the time only a prefix of its sectors (at least one, never all) reaches the
//!   media, otherwise each sector independently. A piece of a write inside one sector is
//!   atomic. So a crash never produces a byte that was never written (holes read as zeros,
//!   as file extension defines), but it can produce any sector-level mix of old and new.
//!
//! With every probability at zero ([`DiskFaultConfig::fault_free`]) a crash leaves exactly
//! the durable state, and neither `execute`, `latency` nor `crash` draws from the PRNG
//! (`Prng::chance` draws nothing for a probability of 0), so a run with a perfect disk
//! spends its random stream only on the rest of the simulation.
//!
//! ## Injected faults
//!
//! - Write failure: `Write` (and `SetLen`) returns `DiskError::Io`. A failed write first
//!   creates the file (the open succeeded), then a seeded prefix of its sectors, possibly
//!   none, reaches the page cache. A failed `SetLen` changes nothing.
//! - Sync failure ("fsyncgate"): `Sync` returns `DiskError::Io`. The file's unsynced
//!   changes are resolved as at a crash (a seeded subset, possibly torn, reaches the
//!   media) and then dropped: like Linux since 4.13, the dirty pages are marked clean, so a
//!   later successful `Sync` does not make them durable, although reads keep seeing them
//!   in the page cache until a crash. A failed `SyncDir` returns `DiskError::Io` and
//!   changes nothing (its changes stay unsynced and may still be kept at a crash).
//! - Read failure: `Read` returns `DiskError::Io`; nothing changes. `Len`, `List`,
//!   `Remove` and `Rename` are never failed by injection.
//! - Bit flip (latent corruption): with `bit_flip_probability` per write, one bit of the
//!   bytes that will reach the media is flipped. The page cache keeps the correct bytes,
//!   so the corruption shows only once the write is durable and the node reads it back
//!   after a crash. Reads themselves never flip bits, and durable data never rots later.
//! - No space: a write or extension that would take the total live size of the directory
//!   (the sum of the live lengths of its files; removed files free their space at once)
//!   past `capacity_bytes` fails with `DiskError::Io` "no space left on device" and writes
//!   nothing. Creating more than [`FILES_COUNT_MAX`] files fails the same way.
//! - Latency: [`SimDisk::latency`] is the base cost plus a per-KiB cost (for a sync, of the
//!   file's dirty bytes), plus `latency_sync` for syncs, plus, with
//!   `latency_spike_probability`, a spike drawn uniformly in
//!   `[latency_spike / 2, latency_spike]`.
//!
//! ## Bounds
//!
//! A single read or write larger than [`DISK_IO_SIZE_MAX`] is refused with
//! `DiskError::TooLarge`. When a file holds more than [`UNSYNCED_CHANGES_COUNT_MAX`] unsynced
//! changes or [`UNSYNCED_BYTES_PER_FILE_MAX`] unsynced bytes, the oldest change is written
//! back to its durable image (as the kernel's writeback would); unsynced directory changes
//! beyond [`UNSYNCED_DIRECTORY_CHANGES_COUNT_MAX`] are committed the same way, oldest first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use synod_actor::{DiskError, DiskOp, DiskReply, validate_file_name};
use synod_core::config::check_range;
use synod_core::limits::DISK_IO_SIZE_MAX;
use synod_core::{ConfigError, Duration, Prng, Validate};

/// The default sector size: the atomic unit of a write on current drives.
pub const SECTOR_SIZE_DEFAULT: usize = 4_096;
/// The smallest sector size: drives write no less than 512 bytes atomically. Smaller
/// sectors would also multiply the draws a torn write costs.
pub const SECTOR_SIZE_MIN: usize = 512;
/// The largest sector size accepted.
pub const SECTOR_SIZE_MAX: usize = 1 << 20;
/// The default capacity of one node's data directory.
pub const CAPACITY_BYTES_DEFAULT: u64 = 1 << 30;
/// The largest capacity accepted. Every offset the disk stores is below it, so it must fit
/// a `usize` (checked at compile time below).
pub const CAPACITY_BYTES_MAX: u64 = 1 << 40;
/// The most files the live directory may hold (the inode table of the simulated device).
pub const FILES_COUNT_MAX: usize = 65_536;
/// The most unsynced changes one file keeps before the oldest is written back.
pub const UNSYNCED_CHANGES_COUNT_MAX: usize = 1_024;
/// The most unsynced bytes one file keeps before the oldest change is written back.
pub const UNSYNCED_BYTES_PER_FILE_MAX: usize = 256 << 20;
/// The most unsynced directory changes kept before the oldest is committed.
pub const UNSYNCED_DIRECTORY_CHANGES_COUNT_MAX: usize = 1_024;
/// The longest latency any latency field may hold: longer is almost surely a unit mistake.
pub const LATENCY_MAX: Duration = Duration::from_secs(60);

const _: () = assert!(CAPACITY_BYTES_MAX <= usize::MAX as u64);
const _: () = assert!(CAPACITY_BYTES_DEFAULT <= CAPACITY_BYTES_MAX);
const _: () = assert!(SECTOR_SIZE_MIN.is_power_of_two() && SECTOR_SIZE_MAX.is_power_of_two());
const _: () = assert!(SECTOR_SIZE_MIN <= SECTOR_SIZE_DEFAULT);
const _: () = assert!(SECTOR_SIZE_DEFAULT <= SECTOR_SIZE_MAX);
// One maximal write always fits the unsynced budget, so the writeback loop terminates with
// the newest change still unsynced.
const _: () = assert!(DISK_IO_SIZE_MAX <= UNSYNCED_BYTES_PER_FILE_MAX);

/// How the simulated disk misbehaves. Every probability defaults to zero: a perfect disk,
/// where a crash loses exactly what was not synced.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskFaultConfig {
    /// The chance that a `Write` or `SetLen` fails with an IO error. A failed write may
    /// leave a prefix of its sectors in the page cache.
    pub write_failure_probability: f64,
    /// The chance that a `Sync` or `SyncDir` fails. A failed `Sync` marks the file's dirty
    /// pages clean without writing them all (fsyncgate).
    pub sync_failure_probability: f64,
    /// The chance that a `Read` fails with an IO error.
    pub read_failure_probability: f64,
    /// The chance, per write, that one bit of what reaches the media is flipped.
    pub bit_flip_probability: f64,
    /// At a crash (or failed sync): the chance that a kept write of two or more sectors is
    /// torn.
    pub torn_write_probability: f64,
    /// At a crash (or failed sync): the chance that each unsynced change (a write, a length
    /// change, a creation, rename or removal) reached the media anyway.
    pub unsynced_write_kept_probability: f64,
    /// The atomic unit of a write, in bytes: a power of two.
    pub sector_size: usize,
    /// The most bytes the live files of the directory may hold together.
    pub capacity_bytes: u64,
    /// The cost of every operation.
    pub latency_base: Duration,
    /// The cost per KiB read, written or (for a sync) flushed.
    pub latency_per_kib: Duration,
    /// The extra cost of `Sync` and `SyncDir`.
    pub latency_sync: Duration,
    /// The chance that an operation is slowed by a spike.
    pub latency_spike_probability: f64,
    /// The largest spike; a spike is drawn in `[latency_spike / 2, latency_spike]`.
    pub latency_spike: Duration,
}

impl DiskFaultConfig {
    /// A perfect disk with the latencies of a fast SSD: no injected fault, nothing unsynced
    /// survives a crash.
    pub fn fault_free() -> DiskFaultConfig {
        DiskFaultConfig {
            write_failure_probability: 0.0,
            sync_failure_probability: 0.0,
            read_failure_probability: 0.0,
            bit_flip_probability: 0.0,
            torn_write_probability: 0.0,
            unsynced_write_kept_probability: 0.0,
            sector_size: SECTOR_SIZE_DEFAULT,
            capacity_bytes: CAPACITY_BYTES_DEFAULT,
            latency_base: Duration::from_micros(20),
            latency_per_kib: Duration::from_nanos(500),
            latency_sync: Duration::from_millis(1),
            latency_spike_probability: 0.0,
            latency_spike: Duration::from_millis(50),
        }
    }

    fn probabilities(&self) -> [(&'static str, f64); 7] {
        [
            ("write_failure_probability", self.write_failure_probability),
            ("sync_failure_probability", self.sync_failure_probability),
            ("read_failure_probability", self.read_failure_probability),
            ("bit_flip_probability", self.bit_flip_probability),
            ("torn_write_probability", self.torn_write_probability),
            (
                "unsynced_write_kept_probability",
                self.unsynced_write_kept_probability,
            ),
            ("latency_spike_probability", self.latency_spike_probability),
        ]
    }

    fn latencies(&self) -> [(&'static str, Duration); 4] {
        [
            ("latency_base", self.latency_base),
            ("latency_per_kib", self.latency_per_kib),
            ("latency_sync", self.latency_sync),
            ("latency_spike", self.latency_spike),
        ]
    }
}

impl Default for DiskFaultConfig {
    fn default() -> DiskFaultConfig {
        DiskFaultConfig::fault_free()
    }
}

impl Validate for DiskFaultConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (field, probability) in self.probabilities() {
            // A NaN passes every comparison in check_range, so it is refused by name first.
            if probability.is_nan() {
                return Err(ConfigError::new(field, "(NaN) must be between 0 and 1"));
            }
            check_range(field, probability, 0.0, 1.0)?;
        }
        check_range(
            "sector_size",
            self.sector_size,
            SECTOR_SIZE_MIN,
            SECTOR_SIZE_MAX,
        )?;
        if !self.sector_size.is_power_of_two() {
            return Err(ConfigError::new(
                "sector_size",
                format!("({}) must be a power of two", self.sector_size),
            ));
        }
        check_range("capacity_bytes", self.capacity_bytes, 1, CAPACITY_BYTES_MAX)?;
        for (field, latency) in self.latencies() {
            check_range(field, latency, Duration::ZERO, LATENCY_MAX)?;
        }
        Ok(())
    }
}

/// Counters of what the disk did and what it injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub reads: u64,
    pub writes: u64,
    pub syncs: u64,
    pub set_lens: u64,
    pub lens: u64,
    pub removes: u64,
    pub renames: u64,
    pub directory_syncs: u64,
    pub lists: u64,
    /// Operations refused before they ran: an invalid name or a size over the limit.
    pub refused: u64,
    /// Operations on a file that does not exist.
    pub not_found: u64,
    pub bytes_read: u64,
    /// Bytes that reached the page cache (including the prefix of a failed write).
    pub bytes_written: u64,
    pub write_failures: u64,
    /// Failed `Sync` and `SyncDir` operations.
    pub sync_failures: u64,
    pub read_failures: u64,
    /// Writes and extensions refused because the directory was full.
    pub no_space_failures: u64,
    pub bit_flips: u64,
    pub latency_spikes: u64,
    pub crashes: u64,
    /// Kept writes torn at a crash or a failed sync.
    pub torn_writes: u64,
    /// Unsynced data changes that reached the media at a crash or a failed sync.
    pub unsynced_writes_kept: u64,
    /// Unsynced data changes lost at a crash or a failed sync.
    pub unsynced_writes_lost: u64,
    /// Unsynced directory changes kept at a crash.
    pub directory_changes_kept: u64,
    /// Unsynced directory changes lost at a crash.
    pub directory_changes_lost: u64,
    /// Unsynced changes (data or directory) made durable because a bound was reached.
    pub writebacks: u64,
}

/// Names an inode. Inodes outlive their live names until the removal is durable.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct InodeId(u64);

/// A change to a file's bytes that is in the page cache but not yet known durable.
#[derive(Clone, Debug)]
enum DataChange {
    /// `data` is what will reach the media, which a bit flip may make differ from what the
    /// page cache holds.
    Write {
        offset: u64,
        data: Bytes,
    },
    SetLen {
        len: u64,
    },
}

impl DataChange {
    fn size(&self) -> usize {
        match self {
            DataChange::Write { data, .. } => data.len(),
            DataChange::SetLen { .. } => 0,
        }
    }
}

/// A change to the directory that is live but not yet known durable.
#[derive(Clone, Debug)]
enum DirectoryChange {
    Create {
        name: String,
        inode: InodeId,
    },
    Remove {
        name: String,
        inode: InodeId,
    },
    Rename {
        from: String,
        to: String,
        inode: InodeId,
    },
}

impl DirectoryChange {
    fn inode(&self) -> InodeId {
        match self {
            DirectoryChange::Create { inode, .. }
            | DirectoryChange::Remove { inode, .. }
            | DirectoryChange::Rename { inode, .. } => *inode,
        }
    }

    /// Applies the change to a name table. A removal or the source side of a rename only
    /// acts if the name still refers to the same inode.
    fn apply(&self, names: &mut BTreeMap<String, InodeId>) {
        match self {
            DirectoryChange::Create { name, inode } => {
                names.insert(name.clone(), *inode);
            }
            DirectoryChange::Remove { name, inode } => {
                if names.get(name) == Some(inode) {
                    names.remove(name);
                }
            }
            DirectoryChange::Rename { from, to, inode } => {
                if names.get(from) == Some(inode) {
                    names.remove(from);
                }
                names.insert(to.clone(), *inode);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    /// The page cache: what reads see.
    live: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first.
    unsynced: VecDeque<DataChange>,
    /// The total data bytes of `unsynced`.
    unsynced_bytes: usize,
    /// Whether applying the unsynced changes to the durable image may no longer give the
    /// live image: a failed sync dropped dirty pages, or the media stored a flipped bit.
    /// Cleared by a crash, which makes the live image the durable one.
    media_diverged: bool,
}

/// One node's simulated data directory. See the module documentation for the model.
#[derive(Clone)]
pub struct SimDisk {
    config: DiskFaultConfig,
    inodes: BTreeMap<InodeId, Inode>,
    names_live: BTreeMap<String, InodeId>,
    names_durable: BTreeMap<String, InodeId>,
    /// Directory changes since the last `SyncDir`, oldest first.
    directory_unsynced: VecDeque<DirectoryChange>,
    inode_next: u64,
    stats: DiskStats,
}

impl fmt::Debug for SimDisk {
    // The file images can be large, so the debug form summarises them.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SimDisk")
            .field("files", &self.file_names())
            .field("usage_bytes", &self.usage_bytes())
            .field("directory_unsynced", &self.directory_unsynced.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SimDisk {
    /// An empty directory. Panics if `config` does not validate (call `validate` first to
    /// report the error).
    pub fn new(config: DiskFaultConfig) -> SimDisk {
        if let Err(error) = config.validate() {
            panic!("SimDisk::new: {error}");
        }
        SimDisk {
            config,
            inodes: BTreeMap::new(),
            names_live: BTreeMap::new(),
            names_durable: BTreeMap::new(),
            directory_unsynced: VecDeque::new(),
            inode_next: 0,
            stats: DiskStats::default(),
        }
    }

    /// Replaces the fault configuration (the nemesis turns faults on and off between
    /// phases). The files are untouched. Panics if `config` does not validate.
    pub fn set_faults(&mut self, config: DiskFaultConfig) {
        if let Err(error) = config.validate() {
            panic!("SimDisk::set_faults: {error}");
        }
        self.config = config;
    }

    pub fn config(&self) -> &DiskFaultConfig {
        &self.config
    }

    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    /// The live bytes of `path` (what a read sees now), or `None` if it does not exist.
    pub fn live_contents(&self, path: &str) -> Option<&[u8]> {
        let inode = self.names_live.get(path)?;
        Some(self.inodes[inode].live.as_slice())
    }

    /// The durable bytes under the durable name `path`: what a crash that keeps no unsynced
    /// change would leave there. `None` if the name is not durable.
    pub fn durable_contents(&self, path: &str) -> Option<&[u8]> {
        let inode = self.names_durable.get(path)?;
        Some(self.inodes[inode].durable.as_slice())
    }

    /// The live file names, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.names_live.keys().cloned().collect()
    }

    /// The total live size of the files, which `capacity_bytes` bounds.
    pub fn usage_bytes(&self) -> u64 {
        self.names_live
            .values()
            .map(|inode| self.inodes[inode].live.len() as u64)
            .sum()
    }

    /// Performs `op` on the live state, injecting the configured faults.
    pub fn execute(&mut self, op: &DiskOp, prng: &mut Prng) -> Result<DiskReply, DiskError> {
        self.count_op(op);
        if let Err(error) = check_op(op) {
            self.stats.refused += 1;
            return Err(error);
        }
        let result = match op {
            DiskOp::Read { path, offset, len } => self.on_read(path, *offset, *len, prng),
            DiskOp::Write { path, offset, data } => self.on_write(path, *offset, data, prng),
            DiskOp::Sync { path } => self.on_sync(path, prng),
            DiskOp::SetLen { path, len } => self.on_set_len(path, *len, prng),
            DiskOp::Len { path } => self
                .inode_live(path, "len")
                .map(|inode| DiskReply::Len(inode.live.len() as u64)),
            DiskOp::Remove { path } => self.on_remove(path),
            DiskOp::Rename { from, to } => self.on_rename(from, to),
            DiskOp::SyncDir => self.on_sync_directory(prng),
            DiskOp::List => Ok(DiskReply::Names(self.file_names())),
        };
        if let Err(DiskError::NotFound { .. }) = result {
            self.stats.not_found += 1;
        }
        self.invariants();
        result
    }

    /// How long `op` takes. Call it before `execute`: a sync costs per KiB of the file's
    /// dirty bytes at the time of the call.
    pub fn latency(&mut self, op: &DiskOp, prng: &mut Prng) -> Duration {
        let config = &self.config;
        let (bytes, is_sync) = match op {
            DiskOp::Read { len, .. } => (*len as usize, false),
            DiskOp::Write { data, .. } => (data.len(), false),
            DiskOp::Sync { path } => (self.dirty_bytes(path), true),
            DiskOp::SyncDir => (0, true),
            DiskOp::SetLen { .. }
            | DiskOp::Len { .. }
            | DiskOp::Remove { .. }
            | DiskOp::Rename { .. }
            | DiskOp::List => (0, false),
        };
        let kib = bytes.div_ceil(1024) as u64;
        let mut latency = config.latency_base + config.latency_per_kib.saturating_mul(kib);
        if is_sync {
            latency = latency + config.latency_sync;
        }
        if prng.chance(config.latency_spike_probability) {
            let spike = config.latency_spike.as_nanos();
            latency = latency + Duration::from_nanos(prng.range_inclusive(spike / 2, spike));
            self.stats.latency_spikes += 1;
        }
        latency
    }

    /// The node crashes: the live state becomes the durable state plus a seeded subset of
    /// the unsynced changes, possibly torn (see the module documentation).
    pub fn crash(&mut self, prng: &mut Prng) {
        self.stats.crashes += 1;
        let mut names = self.names_durable.clone();
        for change in &self.directory_unsynced {
            if prng.chance(self.config.unsynced_write_kept_probability) {
                change.apply(&mut names);
                self.stats.directory_changes_kept += 1;
            } else {
                self.stats.directory_changes_lost += 1;
            }
        }
        self.directory_unsynced.clear();
        self.names_live = names.clone();
        self.names_durable = names;
        self.collect_garbage();
        for inode in self.inodes.values_mut() {
            let changes = std::mem::take(&mut inode.unsynced);
            resolve_unsynced(
                &mut inode.durable,
                changes,
                &self.config,
                &mut self.stats,
                prng,
            );
            inode.unsynced_bytes = 0;
            inode.live.clone_from(&inode.durable);
            inode.media_diverged = false;
        }
        self.invariants();
    }

    fn count_op(&mut self, op: &DiskOp) {
        let counter = match op {
            DiskOp::Read { .. } => &mut self.stats.reads,
            DiskOp::Write { .. } => &mut self.stats.writes,
            DiskOp::Sync { .. } => &mut self.stats.syncs,
            DiskOp::SetLen { .. } => &mut self.stats.set_lens,
            DiskOp::Len { .. } => &mut self.stats.lens,
            DiskOp::Remove { .. } => &mut self.stats.removes,
            DiskOp::Rename { .. } => &mut self.stats.renames,
            DiskOp::SyncDir => &mut self.stats.directory_syncs,
            DiskOp::List => &mut self.stats.lists,
        };
        *counter += 1;
    }

    /// The unsynced bytes of the live file `path` (0 if it does not exist).
    fn dirty_bytes(&self, path: &str) -> usize {
        let inode = self.names_live.get(path);
        inode.map_or(0, |inode| self.inodes[inode].unsynced_bytes)
    }

    fn inode_live(&self, path: &str, op: &'static str) -> Result<&Inode, DiskError> {
        match self.names_live.get(path) {
            Some(inode) => Ok(&self.inodes[inode]),
            None => Err(not_found(op, path)),
        }
    }

    fn on_read(
        &mut self,
        path: &str,
        offset: u64,
        len: u32,
        prng: &mut Prng,
    ) -> Result<DiskReply, DiskError> {
        let live = &self.inode_live(path, "read")?.live;
        if prng.chance(self.config.read_failure_probability) {
            self.stats.read_failures += 1;
            return Err(io_error("read", path, "input/output error (injected)"));
        }
        // A start past the end reads nothing; the end is clamped to the file (short read).
        let start = usize::try_from(offset).map_or(live.len(), |start| start.min(live.len()));
        let end = start.saturating_add(len as usize).min(live.len());
        let data = Bytes::copy_from_slice(&live[start..end]);
        self.stats.bytes_read += data.len() as u64;
        Ok(DiskReply::Data(data))
    }

    fn on_write(
        &mut self,
        path: &str,
        offset: u64,
        data: &Bytes,
        prng: &mut Prng,
    ) -> Result<DiskReply, DiskError> {
        let existing = self.names_live.get(path).copied();
        let len_old = existing.map_or(0, |inode| self.inodes[&inode].live.len() as u64);
        // Writing nothing creates the file but does not extend it (as pwrite of 0 bytes).
        let len_new = if data.is_empty() {
            len_old
        } else {
            len_old.max(offset.saturating_add(data.len() as u64))
        };
        self.check_space("write", path, len_old, len_new, existing.is_none())?;
        let inode = match existing {
            Some(inode) => inode,
            None => self.create_file(path),
        };
        if prng.chance(self.config.write_failure_probability) {
            self.stats.write_failures += 1;
            let pieces = SectorPieces::new(offset, data.len(), self.config.sector_size);
            // "Nothing reached the page cache" is the prefix of zero pieces.
            let kept = if pieces.count == 0 {
                0
            } else {
                prng.index(pieces.count)
            };
            let prefix_end = if kept == 0 {
                0
            } else {
                pieces.range(kept - 1).end
            };
            self.write_data(inode, offset, data.slice(..prefix_end), prng);
            return Err(io_error("write", path, "input/output error (injected)"));
        }
        self.write_data(inode, offset, data.clone(), prng);
        Ok(DiskReply::Done)
    }

    /// Refuses a change of a file's live length from `len_old` to `len_new` (and, with
    /// `creates`, a new file) that the device has no room for.
    fn check_space(
        &mut self,
        op: &'static str,
        path: &str,
        len_old: u64,
        len_new: u64,
        creates: bool,
    ) -> Result<(), DiskError> {
        let usage = self.usage_bytes();
        let usage_new = usage.saturating_sub(len_old).saturating_add(len_new);
        if len_new > len_old && usage_new > self.config.capacity_bytes {
            self.stats.no_space_failures += 1;
            let message = format!(
                "no space left on device ({usage} of {} bytes used, {} more needed)",
                self.config.capacity_bytes,
                len_new - len_old,
            );
            return Err(io_error(op, path, message));
        }
        if creates && self.names_live.len() >= FILES_COUNT_MAX {
            self.stats.no_space_failures += 1;
            let message = format!("no space left on device (all {FILES_COUNT_MAX} inodes used)");
            return Err(io_error(op, path, message));
        }
        Ok(())
    }

    fn create_file(&mut self, path: &str) -> InodeId {
        let inode = InodeId(self.inode_next);
        self.inode_next += 1;
        self.inodes.insert(inode, Inode::default());
        self.names_live.insert(path.to_string(), inode);
        self.push_directory_change(DirectoryChange::Create {
            name: path.to_string(),
            inode,
        });
        inode
    }

    /// Puts `data` in the page cache of `inode` and queues what reaches the media, which a
    /// bit flip may alter.
    fn write_data(&mut self, inode: InodeId, offset: u64, data: Bytes, prng: &mut Prng) {
        if data.is_empty() {
            return;
        }
        self.stats.bytes_written += data.len() as u64;
        let file = self.inodes.get_mut(&inode).expect("written inode exists");
        apply_write(&mut file.live, offset, &data);
        let media = if prng.chance(self.config.bit_flip_probability) {
            self.stats.bit_flips += 1;
            file.media_diverged = true;
            let mut flipped = data.to_vec();
            let bit = prng.below(flipped.len() as u64 * 8);
            flipped[(bit / 8) as usize] ^= 1 << (bit % 8);
            Bytes::from(flipped)
        } else {
            data
        };
        self.push_data_change(
            inode,
            DataChange::Write {
                offset,
                data: media,
            },
        );
    }

    /// Queues an unsynced change, writing back the oldest ones while the file is over its
    /// unsynced bounds.
    fn push_data_change(&mut self, inode: InodeId, change: DataChange) {
        let file = self.inodes.get_mut(&inode).expect("changed inode exists");
        file.unsynced_bytes += change.size();
        file.unsynced.push_back(change);
        while file.unsynced.len() > UNSYNCED_CHANGES_COUNT_MAX
            || file.unsynced_bytes > UNSYNCED_BYTES_PER_FILE_MAX
        {
            let oldest = file
                .unsynced
                .pop_front()
                .expect("over a bound, so not empty");
            file.unsynced_bytes -= oldest.size();
            apply_change(&mut file.durable, &oldest);
            self.stats.writebacks += 1;
        }
        assert!(
            !file.unsynced.is_empty(),
            "the newest change stays unsynced"
        );
    }

    fn push_directory_change(&mut self, change: DirectoryChange) {
        self.directory_unsynced.push_back(change);
        if self.directory_unsynced.len() > UNSYNCED_DIRECTORY_CHANGES_COUNT_MAX {
            let oldest = self.directory_unsynced.pop_front().expect("over the bound");
            oldest.apply(&mut self.names_durable);
            self.stats.writebacks += 1;
            self.collect_garbage();
        }
    }

    fn on_sync(&mut self, path: &str, prng: &mut Prng) -> Result<DiskReply, DiskError> {
        let inode = *self
            .names_live
            .get(path)
            .ok_or_else(|| not_found("sync", path))?;
        let file = self.inodes.get_mut(&inode).expect("named inode exists");
        let changes = std::mem::take(&mut file.unsynced);
        file.unsynced_bytes = 0;
        if prng.chance(self.config.sync_failure_probability) {
            // Fsyncgate: whatever did not reach the media is dropped with the dirty pages,
            // so no later sync writes it, while the page cache still shows it.
            self.stats.sync_failures += 1;
            if !changes.is_empty() {
                file.media_diverged = true;
            }
            resolve_unsynced(
                &mut file.durable,
                changes,
                &self.config,
                &mut self.stats,
                prng,
            );
            return Err(io_error("sync", path, "input/output error (injected)"));
        }
        for change in &changes {
            apply_change(&mut file.durable, change);
        }
        if !file.media_diverged {
            assert_eq!(file.live.len(), file.durable.len(), "sync of {path}");
            debug_assert!(file.live == file.durable, "sync of {path}");
        }
        Ok(DiskReply::Done)
    }

    fn on_set_len(
        &mut self,
        path: &str,
        len: u64,
        prng: &mut Prng,
    ) -> Result<DiskReply, DiskError> {
        let inode = *self
            .names_live
            .get(path)
            .ok_or_else(|| not_found("set_len", path))?;
        let len_old = self.inodes[&inode].live.len() as u64;
        self.check_space("set_len", path, len_old, len, false)?;
        if prng.chance(self.config.write_failure_probability) {
            self.stats.write_failures += 1;
            return Err(io_error("set_len", path, "input/output error (injected)"));
        }
        let change = DataChange::SetLen { len };
        let file = self.inodes.get_mut(&inode).expect("named inode exists");
        apply_change(&mut file.live, &change);
        self.push_data_change(inode, change);
        Ok(DiskReply::Done)
    }

    fn on_remove(&mut self, path: &str) -> Result<DiskReply, DiskError> {
        let inode = self
            .names_live
            .remove(path)
            .ok_or_else(|| not_found("remove", path))?;
        self.push_directory_change(DirectoryChange::Remove {
            name: path.to_string(),
            inode,
        });
        Ok(DiskReply::Done)
    }

    fn on_rename(&mut self, from: &str, to: &str) -> Result<DiskReply, DiskError> {
        let inode = *self
            .names_live
            .get(from)
            .ok_or_else(|| not_found("rename", from))?;
        // Renaming a file onto itself succeeds and does nothing, as POSIX says.
        if from == to {
            return Ok(DiskReply::Done);
        }
        self.names_live.remove(from);
        self.names_live.insert(to.to_string(), inode);
        self.push_directory_change(DirectoryChange::Rename {
            from: from.to_string(),
            to: to.to_string(),
            inode,
        });
        Ok(DiskReply::Done)
    }

    fn on_sync_directory(&mut self, prng: &mut Prng) -> Result<DiskReply, DiskError> {
        if prng.chance(self.config.sync_failure_probability) {
            // The journal did not commit; the changes stay unsynced and a crash may still
            // keep any of them.
            self.stats.sync_failures += 1;
            return Err(io_error("sync_dir", ".", "input/output error (injected)"));
        }
        self.names_durable.clone_from(&self.names_live);
        self.directory_unsynced.clear();
        self.collect_garbage();
        Ok(DiskReply::Done)
    }

    /// Drops the inodes that no name, live or durable, and no unsynced directory change
    /// refers to any more.
    fn collect_garbage(&mut self) {
        let mut referenced: BTreeSet<InodeId> = self.names_live.values().copied().collect();
        referenced.extend(self.names_durable.values().copied());
        referenced.extend(self.directory_unsynced.iter().map(DirectoryChange::inode));
        self.inodes.retain(|inode, _| referenced.contains(inode));
    }

    fn invariants(&self) {
        assert!(self.names_live.len() <= FILES_COUNT_MAX);
        assert!(self.directory_unsynced.len() <= UNSYNCED_DIRECTORY_CHANGES_COUNT_MAX);
        let named = self
            .names_live
            .values()
            .chain(self.names_durable.values())
            .copied();
        for inode in named.chain(self.directory_unsynced.iter().map(DirectoryChange::inode)) {
            assert!(
                self.inodes.contains_key(&inode),
                "{inode:?} is named but gone"
            );
        }
        if self.directory_unsynced.is_empty() {
            assert_eq!(
                self.names_live, self.names_durable,
                "synced directory differs"
            );
        }
        for (inode, file) in &self.inodes {
            assert!(
                file.unsynced.len() <= UNSYNCED_CHANGES_COUNT_MAX,
                "{inode:?}"
            );
            assert!(
                file.unsynced_bytes <= UNSYNCED_BYTES_PER_FILE_MAX,
                "{inode:?}"
            );
            if file.unsynced.is_empty() && !file.media_diverged {
                assert_eq!(file.live.len(), file.durable.len(), "{inode:?} synced");
            }
        }
    }
}

/// Refuses an operation with an invalid name or a size over the single-operation limit.
fn check_op(op: &DiskOp) -> Result<(), DiskError> {
    for path in op.paths() {
        validate_file_name(path)?;
    }
    let size = match op {
        DiskOp::Read { len, .. } => *len as usize,
        DiskOp::Write { data, .. } => data.len(),
        _ => 0,
    };
    if size > DISK_IO_SIZE_MAX {
        return Err(DiskError::TooLarge {
            op: op.kind(),
            size,
            limit: DISK_IO_SIZE_MAX,
        });
    }
    Ok(())
}

fn not_found(op: &'static str, path: &str) -> DiskError {
    DiskError::NotFound {
        op,
        path: path.to_string(),
    }
}

fn io_error(op: &'static str, path: &str, message: impl Into<String>) -> DiskError {
    DiskError::Io {
        op,
        path: path.to_string(),
        message: message.into(),
    }
}

/// An offset or length the disk stored. Every one was below `capacity_bytes` when it was
/// accepted, and `CAPACITY_BYTES_MAX` fits a `usize`.
fn to_index(value: u64) -> usize {
    usize::try_from(value).expect("stored offsets are below CAPACITY_BYTES_MAX")
}

/// Writes `data` into `image` at `offset`, extending the image with zeros if needed.
fn apply_write(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = to_index(offset);
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

fn apply_change(image: &mut Vec<u8>, change: &DataChange) {
    match change {
        DataChange::Write { offset, data } => apply_write(image, *offset, data),
        DataChange::SetLen { len } => image.resize(to_index(*len), 0),
    }
}

/// Applies to `image` the seeded subset of `changes` that reached the media before a crash
/// or a failed sync: each change is kept with `unsynced_write_kept_probability`, in order,
/// and a kept write may be torn.
fn resolve_unsynced(
    image: &mut Vec<u8>,
    changes: VecDeque<DataChange>,
    config: &DiskFaultConfig,
    stats: &mut DiskStats,
    prng: &mut Prng,
) {
    for change in changes {
        if !prng.chance(config.unsynced_write_kept_probability) {
            stats.unsynced_writes_lost += 1;
            continue;
        }
        stats.unsynced_writes_kept += 1;
        match change {
            DataChange::Write { offset, data } => {
                apply_maybe_torn(image, offset, &data, config, stats, prng);
            }
            DataChange::SetLen { len } => image.resize(to_index(len), 0),
        }
    }
}

/// Applies a kept write whole or, with `torn_write_probability`, torn at sector boundaries:
/// half the time a prefix of its sectors (at least one, never all), otherwise each sector
/// independently with even odds. A write within one sector cannot tear.
fn apply_maybe_torn(
    image: &mut Vec<u8>,
    offset: u64,
    data: &[u8],
    config: &DiskFaultConfig,
    stats: &mut DiskStats,
    prng: &mut Prng,
) {
    let pieces = SectorPieces::new(offset, data.len(), config.sector_size);
    if pieces.count < 2 || !prng.chance(config.torn_write_probability) {
        apply_write(image, offset, data);
        return;
    }
    stats.torn_writes += 1;
    if prng.chance(0.5) {
        let kept = prng.range_inclusive(1, pieces.count as u64 - 1) as usize;
        apply_write(image, offset, &data[..pieces.range(kept - 1).end]);
        return;
    }
    // Bounded by DISK_IO_SIZE_MAX / SECTOR_SIZE_MIN + 1 pieces.
    for index in 0..pieces.count {
        if prng.chance(0.5) {
            let range = pieces.range(index);
            apply_write(image, offset + range.start as u64, &data[range]);
        }
    }
}

/// The pieces of a write of `len` bytes at `offset`, cut at sector boundaries of the file:
/// piece `i` is the part of the data that falls in the write's `i`-th sector. The first and
/// last pieces may be partial sectors.
#[derive(Clone, Copy, Debug)]
struct SectorPieces {
    offset: u64,
    len: usize,
    sector_size: u64,
    sector_first: u64,
    count: usize,
}

impl SectorPieces {
    fn new(offset: u64, len: usize, sector_size: usize) -> SectorPieces {
        let sector_size = sector_size as u64;
        let sector_first = offset / sector_size;
        let count = if len == 0 {
            0
        } else {
            let sector_last = (offset + len as u64 - 1) / sector_size;
            to_index(sector_last - sector_first + 1)
        };
        SectorPieces {
            offset,
            len,
            sector_size,
            sector_first,
            count,
        }
    }

    /// The range of the write's data that piece `index` covers.
    fn range(&self, index: usize) -> Range<usize> {
        assert!(index < self.count, "piece {index} of {}", self.count);
        let sector_start = (self.sector_first + index as u64) * self.sector_size;
        let start = sector_start.max(self.offset) - self.offset;
        let end =
            (sector_start + self.sector_size).min(self.offset + self.len as u64) - self.offset;
        to_index(start)..to_index(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTOR: usize = SECTOR_SIZE_MIN;

    fn write(path: &str, offset: u64, data: &[u8]) -> DiskOp {
        DiskOp::Write {
            path: path.to_string(),
            offset,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn read(path: &str, offset: u64, len: u32) -> DiskOp {
        DiskOp::Read {
            path: path.to_string(),
            offset,
            len,
        }
    }

    fn sync(path: &str) -> DiskOp {
        DiskOp::Sync {
            path: path.to_string(),
        }
    }

    fn rename(from: &str, to: &str) -> DiskOp {
        DiskOp::Rename {
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    fn remove(path: &str) -> DiskOp {
        DiskOp::Remove {
            path: path.to_string(),
        }
    }

    /// Small sectors, so that tests tear writes of a few KiB.
    fn config() -> DiskFaultConfig {
        DiskFaultConfig {
            sector_size: SECTOR,
            ..DiskFaultConfig::fault_free()
        }
    }

    fn ok(disk: &mut SimDisk, prng: &mut Prng, op: DiskOp) -> DiskReply {
        match disk.execute(&op, prng) {
            Ok(reply) => reply,
            Err(error) => panic!("{op:?} failed: {error}"),
        }
    }

    /// Writes `data` to a new file `path` and makes both its bytes and its name durable.
    fn durable_file(disk: &mut SimDisk, prng: &mut Prng, path: &str, data: &[u8]) {
        ok(disk, prng, write(path, 0, data));
        ok(disk, prng, sync(path));
        ok(disk, prng, DiskOp::SyncDir);
    }

    fn is_io_error(result: Result<DiskReply, DiskError>) -> bool {
        matches!(result, Err(DiskError::Io { .. }))
    }

    #[test]
    fn write_then_read_back_with_short_reads_and_zero_fill() {
        // Checks reads of written data, a short read at end of file, a read past the end, a
        // write past the end that fills the gap with zeros, and reads of a missing file.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(1);
        ok(&mut disk, &mut prng, write("a", 0, b"hello"));
        let reply = ok(&mut disk, &mut prng, read("a", 1, 3));
        assert_eq!(reply, DiskReply::Data(Bytes::from_static(b"ell")));
        let reply = ok(&mut disk, &mut prng, read("a", 3, 100));
        assert_eq!(reply, DiskReply::Data(Bytes::from_static(b"lo")));
        let reply = ok(&mut disk, &mut prng, read("a", 99, 4));
        assert_eq!(reply, DiskReply::Data(Bytes::new()));
        ok(&mut disk, &mut prng, write("a", 7, b"!"));
        assert_eq!(disk.live_contents("a"), Some(&b"hello\0\0!"[..]));
        let len = ok(&mut disk, &mut prng, DiskOp::Len { path: "a".into() });
        assert_eq!(len, DiskReply::Len(8));
        let missing = disk.execute(&read("b", 0, 1), &mut prng);
        assert_eq!(
            missing,
            Err(DiskError::NotFound {
                op: "read",
                path: "b".into()
            })
        );
        let names = ok(&mut disk, &mut prng, DiskOp::List);
        assert_eq!(names, DiskReply::Names(vec!["a".to_string()]));
        assert_eq!(disk.stats().not_found, 1);
        assert_eq!(disk.stats().bytes_written, 6);
    }

    #[test]
    fn unsynced_write_is_lost_at_crash_when_nothing_is_kept() {
        // Checks that with unsynced_write_kept_probability 0 a crash restores exactly the
        // durable bytes: the overwrite and the extension since the last sync are gone.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(2);
        durable_file(&mut disk, &mut prng, "log", b"committed");
        ok(&mut disk, &mut prng, write("log", 0, b"COMMITTED and more"));
        assert_eq!(disk.live_contents("log"), Some(&b"COMMITTED and more"[..]));
        assert_eq!(disk.durable_contents("log"), Some(&b"committed"[..]));
        disk.crash(&mut prng);
        assert_eq!(disk.live_contents("log"), Some(&b"committed"[..]));
        assert_eq!(disk.stats().unsynced_writes_lost, 1);
        assert_eq!(disk.stats().crashes, 1);
    }

    #[test]
    fn synced_write_survives_crash_even_when_nothing_else_is_kept() {
        // Checks that synced bytes under a synced name survive a crash, including a
        // truncation made durable by the sync.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(3);
        durable_file(&mut disk, &mut prng, "log", b"0123456789");
        ok(
            &mut disk,
            &mut prng,
            DiskOp::SetLen {
                path: "log".into(),
                len: 4,
            },
        );
        ok(&mut disk, &mut prng, write("log", 4, b"ab"));
        ok(&mut disk, &mut prng, sync("log"));
        disk.crash(&mut prng);
        assert_eq!(disk.live_contents("log"), Some(&b"0123ab"[..]));
        assert_eq!(disk.file_names(), vec!["log".to_string()]);
    }

    #[test]
    fn kept_unsynced_writes_survive_whole_when_never_torn() {
        // Checks that with unsynced_write_kept_probability 1 and no tearing a crash keeps
        // every unsynced write and every directory change.
        let mut disk = SimDisk::new(DiskFaultConfig {
            unsynced_write_kept_probability: 1.0,
            ..config()
        });
        let mut prng = Prng::from_seed(4);
        ok(&mut disk, &mut prng, write("new", 0, &[7; 3 * SECTOR]));
        disk.crash(&mut prng);
        assert_eq!(disk.live_contents("new"), Some(&[7; 3 * SECTOR][..]));
        assert_eq!(disk.stats().unsynced_writes_kept, 1);
        assert_eq!(disk.stats().directory_changes_kept, 1);
    }

    /// Checks that every sector of `result` equals that sector of `old` or of `new` (both
    /// read as zeros past their end), and returns which of the two it took.
    fn sector_origins(old: &[u8], new: &[u8], result: &[u8]) -> (bool, bool) {
        let padded = |image: &[u8], range: Range<usize>| -> Vec<u8> {
            (range)
                .map(|index| image.get(index).copied().unwrap_or(0))
                .collect()
        };
        let (mut took_old, mut took_new) = (false, false);
        for start in (0..result.len()).step_by(SECTOR) {
            let range = start..(start + SECTOR).min(result.len());
            let sector = &result[range.clone()];
            let is_old = sector == padded(old, range.clone());
            let is_new = sector == padded(new, range.clone());
            assert!(is_old || is_new, "sector at {start} is neither old nor new");
            took_old |= is_old && !is_new;
            took_new |= is_new && !is_old;
        }
        (took_old, took_new)
    }

    #[test]
    fn torn_write_at_crash_mixes_old_and_new_only_at_sector_granularity() {
        // Checks that a torn unsynced write leaves, in every sector, either the old or the
        // new bytes (never bytes that were not written), over many seeds, for an aligned
        // overwrite and for an unaligned write that extends the file; and that both pure
        // and mixed outcomes occur.
        let old: Vec<u8> = (0..6 * SECTOR).map(|index| (index % 251) as u8).collect();
        let cases: [(u64, usize); 2] = [(0, 6 * SECTOR), (100, 8 * SECTOR)];
        for (offset, len) in cases {
            let data: Vec<u8> = (0..len).map(|index| 255 - (index % 7) as u8).collect();
            let mut new = old.clone();
            apply_write(&mut new, offset, &data);
            let mut mixed = 0;
            for seed in 0..200 {
                let mut disk = SimDisk::new(DiskFaultConfig {
                    unsynced_write_kept_probability: 1.0,
                    torn_write_probability: 1.0,
                    ..config()
                });
                let mut prng = Prng::from_seed(seed);
                durable_file(&mut disk, &mut prng, "seg", &old);
                ok(&mut disk, &mut prng, write("seg", offset, &data));
                disk.crash(&mut prng);
                let result = disk.live_contents("seg").expect("the file is durable");
                assert!(result.len() >= old.len() && result.len() <= new.len());
                let (took_old, took_new) = sector_origins(&old, &new, result);
                if took_old && took_new {
                    mixed += 1;
                }
                assert_eq!(disk.stats().torn_writes, 1, "seed {seed}");
            }
            assert!(
                mixed > 50,
                "only {mixed} of 200 crashes mixed old and new sectors"
            );
        }
    }

    /// Builds durable files `a` (contents "A"), `b` ("B") and `d` ("D"), then, without a
    /// directory sync, renames `a` onto `b`, creates and syncs `c`, and removes `d`.
    fn directory_scenario(seed: u64, kept_probability: f64) -> SimDisk {
        let mut disk = SimDisk::new(DiskFaultConfig {
            unsynced_write_kept_probability: kept_probability,
            ..config()
        });
        let mut prng = Prng::from_seed(seed);
        for (name, contents) in [("a", b"A"), ("b", b"B"), ("d", b"D")] {
            durable_file(&mut disk, &mut prng, name, contents);
        }
        ok(&mut disk, &mut prng, rename("a", "b"));
        ok(&mut disk, &mut prng, write("c", 0, b"C"));
        ok(&mut disk, &mut prng, sync("c"));
        ok(&mut disk, &mut prng, remove("d"));
        assert_eq!(disk.file_names(), vec!["b".to_string(), "c".to_string()]);
        assert_eq!(disk.live_contents("b"), Some(&b"A"[..]));
        disk.crash(&mut prng);
        disk
    }

    #[test]
    fn unsynced_directory_changes_are_reverted_or_kept_atomically() {
        // Checks that at a crash each unsynced create, rename and remove is entirely undone
        // or entirely applied: the rename target always holds the old or the new file,
        // never neither and never both names; the synced file `c` vanishes or survives
        // whole; and that with probability 0 and 1 the outcome is exactly the old or new
        // directory.
        let reverted = directory_scenario(0, 0.0);
        assert_eq!(reverted.file_names(), vec!["a", "b", "d"]);
        assert_eq!(reverted.live_contents("a"), Some(&b"A"[..]));
        assert_eq!(reverted.live_contents("b"), Some(&b"B"[..]));
        let kept = directory_scenario(0, 1.0);
        assert_eq!(kept.file_names(), vec!["b", "c"]);
        assert_eq!(kept.live_contents("b"), Some(&b"A"[..]));
        assert_eq!(kept.live_contents("c"), Some(&b"C"[..]));
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let disk = directory_scenario(seed, 0.5);
            let renamed = match (disk.live_contents("a"), disk.live_contents("b")) {
                (Some(b"A"), Some(b"B")) => false,
                (None, Some(b"A")) => true,
                other => panic!("seed {seed}: rename half applied: {other:?}"),
            };
            let created = match disk.live_contents("c") {
                None => false,
                Some(b"C") => true,
                other => panic!("seed {seed}: created file damaged: {other:?}"),
            };
            let removed = match disk.live_contents("d") {
                None => true,
                Some(b"D") => false,
                other => panic!("seed {seed}: removed file damaged: {other:?}"),
            };
            outcomes.insert((renamed, created, removed));
        }
        assert_eq!(outcomes.len(), 8, "every combination occurs: {outcomes:?}");
    }

    #[test]
    fn failed_sync_loses_the_data_and_a_later_sync_does_not_bring_it_back() {
        // Checks fsyncgate: after a failed sync that wrote nothing, the page cache still
        // shows the new bytes, a later successful sync reports success without making them
        // durable, and a crash returns the old bytes.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(5);
        durable_file(&mut disk, &mut prng, "wal", b"old!");
        ok(&mut disk, &mut prng, write("wal", 0, b"new!"));
        disk.set_faults(DiskFaultConfig {
            sync_failure_probability: 1.0,
            ..config()
        });
        assert!(is_io_error(disk.execute(&sync("wal"), &mut prng)));
        disk.set_faults(config());
        assert_eq!(disk.live_contents("wal"), Some(&b"new!"[..]));
        ok(&mut disk, &mut prng, sync("wal"));
        assert_eq!(disk.durable_contents("wal"), Some(&b"old!"[..]));
        disk.crash(&mut prng);
        assert_eq!(disk.live_contents("wal"), Some(&b"old!"[..]));
        assert_eq!(disk.stats().sync_failures, 1);
        assert_eq!(disk.stats().unsynced_writes_lost, 1);
    }

    #[test]
    fn writes_after_a_failed_sync_still_become_durable() {
        // Checks that fsyncgate drops only the pages dirty at the failure: a write made
        // after it is made durable by the next successful sync.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(6);
        durable_file(&mut disk, &mut prng, "wal", b"aaaa");
        ok(&mut disk, &mut prng, write("wal", 0, b"bb"));
        disk.set_faults(DiskFaultConfig {
            sync_failure_probability: 1.0,
            ..config()
        });
        assert!(is_io_error(disk.execute(&sync("wal"), &mut prng)));
        disk.set_faults(config());
        ok(&mut disk, &mut prng, write("wal", 2, b"cc"));
        ok(&mut disk, &mut prng, sync("wal"));
        disk.crash(&mut prng);
        assert_eq!(disk.live_contents("wal"), Some(&b"aacc"[..]));
    }

    #[test]
    fn bit_flip_changes_exactly_one_bit_of_the_media_copy() {
        // Checks that a bit flip leaves the page cache correct and changes exactly one bit
        // of the durable bytes, which reads return after a crash.
        let mut disk = SimDisk::new(DiskFaultConfig {
            bit_flip_probability: 1.0,
            ..config()
        });
        let mut prng = Prng::from_seed(7);
        let data: Vec<u8> = (0..3 * SECTOR).map(|index| index as u8).collect();
        durable_file(&mut disk, &mut prng, "seg", &data);
        assert_eq!(disk.live_contents("seg"), Some(&data[..]));
        disk.crash(&mut prng);
        let len = data.len() as u32;
        let DiskReply::Data(reread) = ok(&mut disk, &mut prng, read("seg", 0, len)) else {
            panic!("read returns data");
        };
        assert_eq!(reread.len(), data.len());
        let flipped: u32 = data
            .iter()
            .zip(reread.iter())
            .map(|(written, stored)| (written ^ stored).count_ones())
            .sum();
        assert_eq!(flipped, 1);
        assert_eq!(disk.stats().bit_flips, 1);
    }

    #[test]
    fn capacity_limit_refuses_writes_and_extensions_past_it() {
        // Checks that a write or extension past capacity_bytes fails with "no space left
        // on device" and changes nothing, that overwrites within the used space still work,
        // and that removing a file frees its space.
        let mut disk = SimDisk::new(DiskFaultConfig {
            capacity_bytes: 1_000,
            ..config()
        });
        let mut prng = Prng::from_seed(8);
        ok(&mut disk, &mut prng, write("a", 0, &[1; 600]));
        let full = disk.execute(&write("b", 0, &[2; 401]), &mut prng);
        let Err(DiskError::Io { message, .. }) = full else {
            panic!("expected no space, got {full:?}");
        };
        assert!(message.starts_with("no space left on device"), "{message}");
        assert_eq!(disk.file_names(), vec!["a".to_string()]);
        let extend = DiskOp::SetLen {
            path: "a".into(),
            len: 1_001,
        };
        assert!(is_io_error(disk.execute(&extend, &mut prng)));
        ok(&mut disk, &mut prng, write("b", 0, &[2; 400]));
        ok(&mut disk, &mut prng, write("a", 0, &[3; 600]));
        assert_eq!(disk.usage_bytes(), 1_000);
        ok(&mut disk, &mut prng, remove("a"));
        ok(&mut disk, &mut prng, write("b", 400, &[2; 600]));
        assert_eq!(disk.stats().no_space_failures, 2);
    }

    #[test]
    fn invalid_names_and_oversized_operations_are_refused() {
        // Checks that every operation validates every name it carries and that reads and
        // writes over DISK_IO_SIZE_MAX are refused, all without touching the directory.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(9);
        ok(&mut disk, &mut prng, write("ok", 0, b"x"));
        let table = [
            write("a/b", 0, b"x"),
            read("", 0, 1),
            sync(".."),
            rename("ok", "x\0"),
            remove("c\\d"),
        ];
        for op in &table {
            let result = disk.execute(op, &mut prng);
            assert!(
                matches!(result, Err(DiskError::InvalidPath { .. })),
                "{op:?}"
            );
        }
        let too_long = read("ok", 0, DISK_IO_SIZE_MAX as u32 + 1);
        let result = disk.execute(&too_long, &mut prng);
        assert!(matches!(
            result,
            Err(DiskError::TooLarge { op: "read", .. })
        ));
        let huge = DiskOp::Write {
            path: "ok".into(),
            offset: 0,
            data: Bytes::from(vec![0; DISK_IO_SIZE_MAX + 1]),
        };
        let result = disk.execute(&huge, &mut prng);
        assert!(matches!(
            result,
            Err(DiskError::TooLarge { op: "write", .. })
        ));
        assert_eq!(disk.file_names(), vec!["ok".to_string()]);
        assert_eq!(disk.stats().refused, 7);
    }

    #[test]
    fn write_failure_leaves_at_most_a_sector_prefix() {
        // Checks that a failed write returns an IO error, still creates the file, and leaves
        // in the page cache a whole-sector prefix of the data, never all of it.
        let data = vec![9u8; 4 * SECTOR];
        let mut prefixes = BTreeSet::new();
        for seed in 0..50 {
            let mut disk = SimDisk::new(DiskFaultConfig {
                write_failure_probability: 1.0,
                ..config()
            });
            let mut prng = Prng::from_seed(seed);
            assert!(is_io_error(disk.execute(&write("f", 0, &data), &mut prng)));
            let live = disk.live_contents("f").expect("the open created the file");
            assert_eq!(live.len() % SECTOR, 0);
            assert!(live.len() < data.len());
            assert_eq!(live, &data[..live.len()]);
            prefixes.insert(live.len());
        }
        assert_eq!(
            prefixes.len(),
            4,
            "prefixes of 0 to 3 sectors: {prefixes:?}"
        );
    }

    #[test]
    fn read_failure_returns_an_error_and_keeps_the_data() {
        // Checks that an injected read failure is an IO error and the data reads back once
        // the fault is off.
        let mut disk = SimDisk::new(DiskFaultConfig {
            read_failure_probability: 1.0,
            ..config()
        });
        let mut prng = Prng::from_seed(10);
        ok(&mut disk, &mut prng, write("f", 0, b"data"));
        assert!(is_io_error(disk.execute(&read("f", 0, 4), &mut prng)));
        disk.set_faults(config());
        let reply = ok(&mut disk, &mut prng, read("f", 0, 4));
        assert_eq!(reply, DiskReply::Data(Bytes::from_static(b"data")));
        assert_eq!(disk.stats().read_failures, 1);
    }

    #[test]
    fn unsynced_changes_are_written_back_past_their_bound() {
        // Checks that a file never holds more than UNSYNCED_CHANGES_COUNT_MAX unsynced
        // changes: the oldest are written back to the durable image, in order.
        let mut disk = SimDisk::new(config());
        let mut prng = Prng::from_seed(11);
        durable_file(&mut disk, &mut prng, "f", &[0; 8]);
        let extra = 3;
        for index in 0..UNSYNCED_CHANGES_COUNT_MAX + extra {
            ok(&mut disk, &mut prng, write("f", (index % 8) as u64, &[1]));
        }
        assert_eq!(disk.stats().writebacks, extra as u64);
        assert_eq!(
            disk.durable_contents("f"),
            Some(&[1, 1, 1, 0, 0, 0, 0, 0][..])
        );
    }

    #[test]
    fn latency_stays_within_configured_bounds() {
        // Checks that without spikes latency is exactly base + per-KiB cost (+ the sync
        // cost, which counts dirty bytes), and with spikes it stays within the spike bound
        // and spikes occur at about their rate.
        let config = DiskFaultConfig {
            latency_base: Duration::from_micros(10),
            latency_per_kib: Duration::from_micros(1),
            latency_sync: Duration::from_millis(2),
            latency_spike: Duration::from_millis(100),
            ..config()
        };
        let mut disk = SimDisk::new(config.clone());
        let mut prng = Prng::from_seed(12);
        let op = write("f", 0, &[0; 2_048]);
        assert_eq!(disk.latency(&op, &mut prng), Duration::from_micros(12));
        ok(&mut disk, &mut prng, op.clone());
        let sync_latency = disk.latency(&sync("f"), &mut prng);
        assert_eq!(sync_latency, Duration::from_micros(2_012));
        disk.set_faults(DiskFaultConfig {
            latency_spike_probability: 0.25,
            ..config
        });
        let mut spikes = 0;
        for _ in 0..1_000 {
            let latency = disk.latency(&op, &mut prng);
            let spike = latency.saturating_sub(Duration::from_micros(12));
            if !spike.is_zero() {
                spikes += 1;
                assert!(spike >= Duration::from_millis(50), "{latency}");
                assert!(spike <= Duration::from_millis(100), "{latency}");
            }
        }
        assert!((200..300).contains(&spikes), "{spikes} spikes");
        assert_eq!(disk.stats().latency_spikes, spikes);
    }

    /// Runs a fixed workload with every fault on and a crash, from `seed`.
    fn faulty_run(seed: u64) -> (Vec<(String, Vec<u8>)>, DiskStats) {
        let mut disk = SimDisk::new(DiskFaultConfig {
            write_failure_probability: 0.1,
            sync_failure_probability: 0.1,
            bit_flip_probability: 0.1,
            torn_write_probability: 0.5,
            unsynced_write_kept_probability: 0.5,
            ..config()
        });
        let mut prng = Prng::from_seed(seed);
        for index in 0..40u64 {
            let name = format!("f{}", index % 4);
            let data = vec![index as u8; SECTOR * (1 + index as usize % 3)];
            let _ = disk.execute(&write(&name, index * 100, &data), &mut prng);
            if index % 5 == 0 {
                let _ = disk.execute(&sync(&name), &mut prng);
            }
            if index % 11 == 0 {
                let _ = disk.execute(&rename(&name, "renamed"), &mut prng);
                let _ = disk.execute(&DiskOp::SyncDir, &mut prng);
            }
        }
        disk.crash(&mut prng);
        let files = disk
            .file_names()
            .into_iter()
            .map(|name| {
                let contents = disk.live_contents(&name).expect("listed").to_vec();
                (name, contents)
            })
            .collect();
        (files, disk.stats())
    }

    #[test]
    fn same_seed_gives_the_same_crash_outcome() {
        // Checks determinism: the same seed gives the same files, bytes and counters after
        // a faulty workload and a crash, and different seeds give different outcomes.
        assert_eq!(faulty_run(13), faulty_run(13));
        let outcomes: BTreeSet<Vec<(String, Vec<u8>)>> =
            (0..5).map(|seed| faulty_run(seed).0).collect();
        assert!(outcomes.len() > 1, "five seeds gave one outcome");
    }

    #[test]
    fn config_validation_names_the_field() {
        // Checks that the fault-free config is valid and that bad values are refused with
        // the field's name.
        assert_eq!(DiskFaultConfig::fault_free().validate(), Ok(()));
        let table = [
            (
                DiskFaultConfig {
                    write_failure_probability: 1.5,
                    ..config()
                },
                "write_failure_probability",
            ),
            (
                DiskFaultConfig {
                    torn_write_probability: f64::NAN,
                    ..config()
                },
                "torn_write_probability",
            ),
            (
                DiskFaultConfig {
                    sector_size: 1_000,
                    ..config()
                },
                "sector_size",
            ),
            (
                DiskFaultConfig {
                    capacity_bytes: 0,
                    ..config()
                },
                "capacity_bytes",
            ),
            (
                DiskFaultConfig {
                    latency_spike: Duration::from_secs(61),
                    ..config()
                },
                "latency_spike",
            ),
        ];
        for (config, field) in table {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn sector_pieces_cut_at_file_sector_boundaries() {
        // Checks the pieces of aligned, unaligned, single-sector and empty writes.
        // (offset, len, the pieces as (start, end) in the data)
        type Case = (u64, usize, &'static [(usize, usize)]);
        let table: [Case; 4] = [
            (0, 1_024, &[(0, 512), (512, 1_024)]),
            (100, 1_000, &[(0, 412), (412, 924), (924, 1_000)]),
            (600, 10, &[(0, 10)]),
            (5, 0, &[]),
        ];
        for (offset, len, expected) in table {
            let pieces = SectorPieces::new(offset, len, 512);
            let ranges: Vec<(usize, usize)> = (0..pieces.count)
                .map(|index| pieces.range(index))
                .map(|range| (range.start, range.end))
                .collect();
            assert_eq!(ranges, expected, "offset {offset} len {len}");
        }
    }
}
