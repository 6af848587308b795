//! [`RaftStorage`]: the durable storage of one Raft replica, sans-IO.
//!
//! It joins three of synod-wal's engines in one data directory: the write-ahead log ([`Wal`],
//! one record per Raft log entry, the record's sequence equal to the entry's index, the
//! payload `codec::encode_entry`), the term and vote ([`HardStateStore`], file `hardstate`),
//! and snapshots ([`SnapshotWriter`]; a snapshot file's data is a u32 LE length, the
//! `codec::encode_snapshot_meta` bytes, then the state machine's bytes). An empty `Wal`
//! starts at sequence 1, which is Raft's first index, so no offset is needed anywhere.
//!
//! It is driven like the `Wal` engine, by an actor that hands its ops to the disk service:
//!
//! ```text
//! let mut storage = RaftStorage::new(config);               // boot phase
//! after every input (a completion, a Persist, a snapshot, a compaction, a timer):
//!     while let Some((tag, op)) = storage.poll_io(ctx.now()) {
//!         ctx.disk(op, move |result| Message::StorageIo(tag, result));   // FIFO per node
//!     }
//!     if let Some(deadline) = storage.deadline() { set a timer for it }
//!     while let Some(output) = storage.poll_output() {
//!         Recovered(recovered)   => Raft::new(.., recovered); restore the state machine
//!         Persisted { id }       => raft.step(Input::Persisted { id })
//!         SnapshotSaved(snapshot)=> raft.step(Input::SnapshotTaken { snapshot })
//!         Failed(reason)         => ctx.fail(reason)      // the supervisor restarts us
//!     }
//! on Output::Persist(persist):       storage.persist(persist)
//! on Output::Compacted { first }:    storage.compact(first)
//! on a snapshot of the state machine: storage.save_snapshot(snapshot)
//! on Message::StorageIo(tag, result): storage.complete(tag, result)
//! ```
//!
//! Boot lists the directory, loads the newest snapshot that verifies (an older one when a
//! newer one is damaged; `.tmp` leftovers are removed), reads the hard state, recovers the
//! log segments, reads the log back through read plans and checks every entry, and lets the
//! log's repair run before it reports `Recovered`.
//!
//! Persists are made durable in id order. Those that carry only entries and truncations
//! are handed to the log as soon as they arrive, so their appends batch into one fdatasync
//! (group commit). A Persist with a hard state or a snapshot is a barrier: it starts once
//! everything before it is durable, and nothing after it starts before it is durable, so a
//! crash never leaves entries of a term whose term and vote were not written. A Persist whose
//! entries a later truncation removed before they were durable is reported with that later
//! one. A snapshot is installed (durable under its final name) before the log is reset or
//! truncated behind it, and the log is compacted only below a snapshot that is durable.

use std::collections::{BTreeSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use synod_core::config::check_range;
use synod_core::disk::{DiskError, DiskOp, DiskReply};
use synod_core::limits::DISK_IO_SIZE_MAX;
use synod_core::{ConfigError, Instant, LogIndex, Term, Validate};
use synod_raft::codec::{
    decode_entry_bytes, decode_snapshot_meta, encode_entry, encode_snapshot_meta,
};
use synod_raft::{Entry, HardState, Persist, Recovered, Snapshot};
use synod_wal::hard_state::{HARD_STATE_FILE, HARD_STATE_READ_LEN};
use synod_wal::snapshot::{SNAPSHOT_TRAILER_SIZE, snapshot_file_name};
use synod_wal::{
    AppendError, HardStateOutput, HardStateStore, IoTag, LogGap, ReadPlan, RecordType, Recovery,
    RecoveryReport, RejectedSnapshot, SnapshotOutput, SnapshotScan, SnapshotStart, SnapshotWriter,
    Wal, WalConfig, WalOutput,
};

/// The most Persists waiting to be durable. Raft bounds its own output (its pipeline and
/// the bytes it keeps in flight), so going past this is a bug upstream: `Failed`.
pub const PERSISTS_PENDING_MAX: usize = 4_096;
/// Entries read back per read plan at boot.
pub const BOOT_ENTRIES_PER_READ: u64 = 1_024;
/// The most bytes one write of a snapshot file carries; with one snapshot op in flight at a
/// time, a log batch waits behind at most this much snapshot data in the disk queue.
pub const SNAPSHOT_WRITE_SIZE: usize = 1 << 20;
/// Snapshot writes in flight at once (see [`SNAPSHOT_WRITE_SIZE`]).
pub const SNAPSHOT_OPS_IN_FLIGHT_MAX: usize = 1;
/// The largest `snapshot_size_max` accepted: a snapshot is held in memory whole.
pub const SNAPSHOT_SIZE_LIMIT: u64 = 1 << 40;
/// The bytes of the metadata length that starts a snapshot file's data.
const SNAPSHOT_META_LEN_SIZE: usize = 4;

const _: () = assert!(SNAPSHOT_WRITE_SIZE <= DISK_IO_SIZE_MAX);
const _: () = assert!(SNAPSHOT_OPS_IN_FLIGHT_MAX >= 1);

/// How the replica's storage is laid out and bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStorageConfig {
    pub wal: WalConfig,
    /// The most bytes of a snapshot file's data (metadata and state machine bytes).
    pub snapshot_size_max: u64,
}

impl Default for RaftStorageConfig {
    fn default() -> RaftStorageConfig {
        RaftStorageConfig {
            wal: WalConfig::default(),
            snapshot_size_max: 1 << 30,
        }
    }
}

impl Validate for RaftStorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.wal.validate().map_err(|error| error.within("wal"))?;
        let low = (SNAPSHOT_META_LEN_SIZE + 1) as u64;
        check_range(
            "snapshot_size_max",
            self.snapshot_size_max,
            low,
            SNAPSHOT_SIZE_LIMIT,
        )
    }
}

/// What the storage tells its driver.
#[derive(Clone, Debug)]
pub enum StorageOutput {
    /// Boot finished: what `Raft::new` needs. `Recovered.snapshot` carries the state machine
    /// bytes in `Snapshot.data` (the replica restores its KV store from it).
    Recovered(Recovered),
    /// The Persist with this id, and every one before it, is durable.
    Persisted { id: u64 },
    /// `save_snapshot`'s file is durable (tmp written, synced, renamed, dir synced).
    SnapshotSaved(Snapshot),
    /// Fatal: a latched IO failure, corruption, a gap between snapshot and log, an
    /// undecodable entry. The actor fails with this text and its supervisor restarts it.
    Failed(String),
}

/// What boot found, for logs and operators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    /// The snapshot loaded (the newest that verified), if any.
    pub snapshot_file: Option<String>,
    /// Newer snapshot files that failed verification, newest first. They stay in place
    /// for the operator until the next snapshot written replaces them.
    pub snapshots_rejected: Vec<RejectedSnapshot>,
    /// `.tmp` leftovers of interrupted snapshot writes and snapshots older than the loaded
    /// one, removed.
    pub snapshot_files_removed: Vec<String>,
    /// What log recovery found (torn tail, removed segments, a reset).
    pub log: RecoveryReport,
    /// The log was reset to start at this index: it ended before the snapshot's last index,
    /// or its entry there had another term (a crash came between installing a snapshot and
    /// discarding the log it replaced).
    pub log_reset_to: Option<LogIndex>,
    /// Entries handed to Raft.
    pub entries_count: u64,
}

// ---------------------------------------------------------------------------------------
// IoTag spaces: the top byte of a tag names the engine that handed the op out.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Space {
    Boot = 0,
    Wal = 1,
    HardState = 2,
    Snapshot = 3,
}

const SPACE_SHIFT: u32 = 56;
const SPACE_INNER_MAX: u64 = (1 << SPACE_SHIFT) - 1;

fn tag_in(space: Space, inner: IoTag) -> IoTag {
    assert!(inner.0 <= SPACE_INNER_MAX, "IoTag space exhausted");
    IoTag(((space as u64) << SPACE_SHIFT) | inner.0)
}

fn tag_split(tag: IoTag) -> (Space, IoTag) {
    let space = match tag.0 >> SPACE_SHIFT {
        0 => Space::Boot,
        1 => Space::Wal,
        2 => Space::HardState,
        3 => Space::Snapshot,
        other => panic!("IoTag {:#x} names no storage engine (space {other})", tag.0),
    };
    (space, IoTag(tag.0 & SPACE_INNER_MAX))
}

fn to_wal_hard_state(state: HardState) -> synod_wal::HardState {
    synod_wal::HardState {
        term: state.term,
        vote: state.vote,
    }
}

fn from_wal_hard_state(state: synod_wal::HardState) -> HardState {
    HardState {
        term: state.term,
        vote: state.vote,
    }
}

/// A snapshot file's data, as written: the metadata's length and bytes, then the state
/// machine's bytes (shared, not copied).
fn encode_snapshot_file(snapshot: &Snapshot) -> (Bytes, Bytes) {
    let mut meta = Vec::new();
    encode_snapshot_meta(&snapshot.meta, &mut meta);
    let meta_len = u32::try_from(meta.len()).expect("snapshot metadata fits u32");
    let mut header = BytesMut::with_capacity(SNAPSHOT_META_LEN_SIZE + meta.len());
    header.put_u32_le(meta_len);
    header.put_slice(&meta);
    (header.freeze(), snapshot.data.clone())
}

/// Decodes a verified snapshot file's data back into Raft's snapshot.
fn decode_snapshot_file(file: &str, snapshot: &synod_wal::Snapshot) -> Result<Snapshot, String> {
    let data = &snapshot.data;
    let Some(len_bytes) = data.get(..SNAPSHOT_META_LEN_SIZE) else {
        let size = data.len();
        return Err(format!(
            "{file}: {size} bytes of data cannot hold the metadata length"
        ));
    };
    let meta_len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
    let meta_end = SNAPSHOT_META_LEN_SIZE.saturating_add(meta_len);
    let Some(meta_bytes) = data.get(SNAPSHOT_META_LEN_SIZE..meta_end) else {
        let size = data.len();
        return Err(format!(
            "{file}: metadata of {meta_len} bytes runs past {size} bytes"
        ));
    };
    let meta = decode_snapshot_meta(meta_bytes).map_err(|error| format!("{file}: {error}"))?;
    let sequence = snapshot.last_included_sequence;
    if meta.last_index.0 != sequence {
        let index = meta.last_index;
        return Err(format!(
            "{file}: metadata says {index}, the file says {sequence}"
        ));
    }
    Ok(Snapshot {
        meta,
        data: data.slice(meta_end..),
    })
}

/// A reply in a few words (a data reply can be megabytes).
fn describe_reply(reply: &DiskReply) -> String {
    match reply {
        DiskReply::Done => "done".to_string(),
        DiskReply::Data(data) => format!("{} bytes of data", data.len()),
        DiskReply::Len(len) => format!("length {len}"),
        DiskReply::Names(names) => format!("{} names", names.len()),
    }
}

// ---------------------------------------------------------------------------------------
// Boot.

/// Why a file is read whole at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Snapshot,
    Segment,
}

#[derive(Debug)]
enum BootStep {
    List,
    FileLen {
        path: String,
        kind: FileKind,
    },
    FileRead {
        path: String,
        kind: FileKind,
        len: u64,
        bytes: BytesMut,
    },
    /// Removing stale snapshot files (`Boot::cleanup`).
    Cleanup,
    HardState,
    ReadBack {
        next: u64,
        end: u64,
        plan: ReadPlan,
        ops: Vec<DiskOp>,
        replies: Vec<Bytes>,
    },
    /// The log carries out its repair (and a reset boot asked for); no boot op is left.
    Settle,
}

impl BootStep {
    fn name(&self) -> &'static str {
        match self {
            BootStep::List => "listing the directory",
            BootStep::FileLen { .. } | BootStep::FileRead { .. } => "reading a file",
            BootStep::Cleanup => "removing stale snapshot files",
            BootStep::HardState => "reading the hard state",
            BootStep::ReadBack { .. } => "reading the log back",
            BootStep::Settle => "repairing the log",
        }
    }
}

/// The boot phase: one disk op at a time, then the log's repair.
#[derive(Debug)]
struct Boot {
    config: RaftStorageConfig,
    step: BootStep,
    op_in_flight: Option<IoTag>,
    tag_next: u64,
    names: Vec<String>,
    scan: Option<SnapshotScan>,
    start: SnapshotStart,
    cleanup: VecDeque<DiskOp>,
    segments: VecDeque<String>,
    recovery: Option<Box<Recovery>>,
    hard_state_store: Option<HardStateStore>,
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    wal: Option<Wal>,
    entries: Vec<Entry>,
    report: BootReport,
}

impl Boot {
    fn new(config: RaftStorageConfig) -> Boot {
        Boot {
            config,
            step: BootStep::List,
            op_in_flight: None,
            tag_next: 0,
            names: Vec::new(),
            scan: None,
            start: SnapshotStart::default(),
            cleanup: VecDeque::new(),
            segments: VecDeque::new(),
            recovery: None,
            hard_state_store: None,
            hard_state: HardState::default(),
            snapshot: None,
            wal: None,
            entries: Vec::new(),
            report: BootReport::default(),
        }
    }

    /// The op the current step needs, if it is not in flight already.
    fn poll_io(&mut self) -> Option<(IoTag, DiskOp)> {
        if self.op_in_flight.is_some() {
            return None;
        }
        let op = match &self.step {
            BootStep::List => DiskOp::List,
            BootStep::FileLen { path, .. } => DiskOp::Len { path: path.clone() },
            BootStep::FileRead {
                path, len, bytes, ..
            } => {
                let offset = bytes.len() as u64;
                let want = (len - offset).min(DISK_IO_SIZE_MAX as u64) as u32;
                let path = path.clone();
                DiskOp::Read {
                    path,
                    offset,
                    len: want,
                }
            }
            BootStep::Cleanup => self.cleanup.front()?.clone(),
            BootStep::HardState => DiskOp::Read {
                path: HARD_STATE_FILE.to_string(),
                offset: 0,
                len: HARD_STATE_READ_LEN,
            },
            BootStep::ReadBack { ops, replies, .. } => ops.get(replies.len())?.clone(),
            BootStep::Settle => return None,
        };
        let tag = IoTag(self.tag_next);
        self.tag_next += 1;
        self.op_in_flight = Some(tag);
        Some((tag, op))
    }

    fn on_reply(&mut self, tag: IoTag, reply: DiskReply) -> Result<(), String> {
        let in_flight = self.op_in_flight.take();
        assert_eq!(in_flight, Some(tag), "boot completions come back in order");
        let step = std::mem::replace(&mut self.step, BootStep::Settle);
        match (step, reply) {
            (BootStep::List, DiskReply::Names(names)) => {
                self.scan = Some(SnapshotScan::new(&names));
                self.names = names;
                self.next_snapshot_file()
            }
            (BootStep::FileLen { path, kind }, DiskReply::Len(len)) => {
                self.begin_file_read(path, kind, len)
            }
            (
                BootStep::FileRead {
                    path,
                    kind,
                    len,
                    mut bytes,
                },
                DiskReply::Data(data),
            ) => {
                bytes.extend_from_slice(&data);
                // An empty reply is the end of the file (it shrank since `Len`).
                if data.is_empty() || bytes.len() as u64 >= len {
                    return self.on_file_read(&path, kind, bytes.freeze());
                }
                self.step = BootStep::FileRead {
                    path,
                    kind,
                    len,
                    bytes,
                };
                Ok(())
            }
            (BootStep::Cleanup, DiskReply::Done) => {
                self.cleanup.pop_front();
                self.step = BootStep::Cleanup;
                if self.cleanup.is_empty() {
                    return self.begin_hard_state();
                }
                Ok(())
            }
            (BootStep::HardState, DiskReply::Data(data)) => self.recover_hard_state(&data),
            (step @ BootStep::ReadBack { .. }, DiskReply::Data(data)) => {
                self.on_read_back(step, data)
            }
            (step, reply) => Err(format!(
                "unexpected reply ({}) while {}",
                describe_reply(&reply),
                step.name()
            )),
        }
    }

    fn begin_file_read(&mut self, path: String, kind: FileKind, len: u64) -> Result<(), String> {
        let limit = match kind {
            FileKind::Snapshot => self.config.snapshot_size_max + SNAPSHOT_TRAILER_SIZE as u64,
            FileKind::Segment => DISK_IO_SIZE_MAX as u64,
        };
        if len > limit {
            let what = match kind {
                FileKind::Snapshot => {
                    "snapshot_size_max plus the trailer allows; raise \
                                       snapshot_size_max to load it"
                }
                FileKind::Segment => "any segment can be; move it out of the data directory",
            };
            return Err(format!(
                "{path} is {len} bytes, more than {what} ({limit} bytes)"
            ));
        }
        if len == 0 {
            return self.on_file_read(&path, kind, Bytes::new());
        }
        let bytes = BytesMut::with_capacity(len as usize);
        self.step = BootStep::FileRead {
            path,
            kind,
            len,
            bytes,
        };
        Ok(())
    }

    fn on_file_read(&mut self, path: &str, kind: FileKind, bytes: Bytes) -> Result<(), String> {
        match kind {
            FileKind::Snapshot => {
                let scan = self.scan.as_mut().expect("scanning snapshots");
                scan.feed(path, &bytes);
                self.next_snapshot_file()
            }
            FileKind::Segment => {
                let recovery = self.recovery.as_mut().expect("recovering the log");
                recovery
                    .feed(path, &bytes)
                    .map_err(|error| error.to_string())?;
                self.next_segment()
            }
        }
    }

    /// Reads the next snapshot candidate, or decides and removes the stale files.
    fn next_snapshot_file(&mut self) -> Result<(), String> {
        let scan = self.scan.as_ref().expect("scanning snapshots");
        if let Some(file) = scan.next_file() {
            let path = file.to_string();
            let kind = FileKind::Snapshot;
            self.step = BootStep::FileLen { path, kind };
            return Ok(());
        }
        let start = self.scan.take().expect("scanning snapshots").finish();
        self.cleanup = start.cleanup_ops().into();
        self.report.snapshot_files_removed = start.stale.clone();
        self.report.snapshots_rejected = start.rejected.clone();
        if let Some((file, snapshot)) = &start.loaded {
            self.snapshot = Some(decode_snapshot_file(file, snapshot)?);
            self.report.snapshot_file = Some(file.clone());
        }
        self.start = start;
        if self.cleanup.is_empty() {
            return self.begin_hard_state();
        }
        self.step = BootStep::Cleanup;
        Ok(())
    }

    fn begin_hard_state(&mut self) -> Result<(), String> {
        if self.names.iter().any(|name| name == HARD_STATE_FILE) {
            self.step = BootStep::HardState;
            return Ok(());
        }
        self.recover_hard_state(&[])
    }

    fn recover_hard_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (store, state) = HardStateStore::recover(bytes).map_err(|error| error.to_string())?;
        self.hard_state_store = Some(store);
        self.hard_state = state.map(from_wal_hard_state).unwrap_or_default();
        let segments = Recovery::segment_names(&self.names).map_err(|error| error.to_string())?;
        self.segments = segments.into();
        let recovery = Recovery::new(self.config.wal.clone()).map_err(|e| e.to_string())?;
        self.recovery = Some(Box::new(recovery));
        self.next_segment()
    }

    fn next_segment(&mut self) -> Result<(), String> {
        if let Some(path) = self.segments.pop_front() {
            let kind = FileKind::Segment;
            self.step = BootStep::FileLen { path, kind };
            return Ok(());
        }
        let recovery = self.recovery.take().expect("recovering the log");
        let (wal, report) = recovery.finish().map_err(|error| error.to_string())?;
        self.report.log = report;
        let last = self.snapshot_last_index();
        let first_sequence = wal.first_sequence();
        if first_sequence > last + 1 {
            let gap = LogGap {
                first_sequence,
                snapshot_file: self.report.snapshot_file.clone(),
                last_included_sequence: last,
                rejected: self.report.snapshots_rejected.clone(),
            };
            return Err(gap.to_string());
        }
        // The entry at the snapshot's last index is read too: its term tells whether the
        // log after it continues the snapshot.
        let (next, end) = (first_sequence.max(last), wal.next_sequence());
        self.wal = Some(wal);
        self.plan_read_back(next, end)
    }

    fn snapshot_last_index(&self) -> u64 {
        self.snapshot
            .as_ref()
            .map_or(0, |snapshot| snapshot.meta.last_index.0)
    }

    fn plan_read_back(&mut self, next: u64, end: u64) -> Result<(), String> {
        if next >= end {
            return self.finish_read_back();
        }
        let wal = self.wal.as_ref().expect("recovered");
        let to = end.min(next + BOOT_ENTRIES_PER_READ);
        let plan = wal
            .read_range(next, to)
            .map_err(|error| error.to_string())?;
        // A plan may cover less than asked (it stops at read_size_max).
        let covered = plan.sequences();
        if covered.start != next || covered.end <= next {
            return Err(format!("a read plan for {next}..{to} covers {covered:?}"));
        }
        let ops = plan.ops();
        self.step = BootStep::ReadBack {
            next: covered.end,
            end,
            plan,
            ops,
            replies: Vec::new(),
        };
        Ok(())
    }

    fn on_read_back(&mut self, step: BootStep, data: Bytes) -> Result<(), String> {
        let BootStep::ReadBack {
            next,
            end,
            plan,
            ops,
            mut replies,
        } = step
        else {
            unreachable!("called for the read-back step only");
        };
        replies.push(data);
        if replies.len() < ops.len() {
            self.step = BootStep::ReadBack {
                next,
                end,
                plan,
                ops,
                replies,
            };
            return Ok(());
        }
        let records = plan.decode(&replies).map_err(|error| error.to_string())?;
        for record in records {
            let entry = decode_entry_bytes(&record.payload)
                .map_err(|error| format!("the log entry at index {}: {error}", record.sequence))?;
            self.push_entry(record.sequence, entry)?;
        }
        self.plan_read_back(next, end)
    }

    /// Checks a read-back entry against its position and the entry before it.
    fn push_entry(&mut self, sequence: u64, entry: Entry) -> Result<(), String> {
        if entry.index.0 != sequence {
            let index = entry.index;
            return Err(format!(
                "the log record at index {sequence} holds entry {index}"
            ));
        }
        if let Some(previous) = self.entries.last()
            && previous.term > entry.term
        {
            let (index, term, before) = (entry.index, entry.term, previous.term);
            return Err(format!(
                "log entry {index} has term {term}, below the term {before} of the entry \
                 before it"
            ));
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Lines the log up with the snapshot: entries it covers are dropped, and a log that
    /// does not continue it (too short, or another term at its last index) is reset.
    fn finish_read_back(&mut self) -> Result<(), String> {
        let (last, last_term) = self.snapshot.as_ref().map_or((0, Term(0)), |snapshot| {
            (snapshot.meta.last_index.0, snapshot.meta.last_term)
        });
        let wal = self.wal.as_mut().expect("recovered");
        let conflict = self
            .entries
            .first()
            .is_some_and(|entry| entry.index.0 == last && entry.term != last_term);
        self.entries.retain(|entry| entry.index.0 > last);
        if last > 0 && (conflict || wal.next_sequence() <= last) {
            wal.reset(last + 1).map_err(|error| error.to_string())?;
            self.entries.clear();
            self.report.log_reset_to = Some(LogIndex(last + 1));
        }
        if let Some(first) = self.entries.first() {
            assert_eq!(first.index.0, last + 1, "the log continues the snapshot");
            if first.term < last_term {
                let (index, term) = (first.index, first.term);
                return Err(format!(
                    "log entry {index} has term {term}, below the snapshot's last term \
                     {last_term}"
                ));
            }
        }
        self.report.entries_count = self.entries.len() as u64;
        self.step = BootStep::Settle;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Running: the Persist pipeline.

/// Where one Persist stands; they move through these in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Queued,
    /// Its hard state is being written; waiting for `Saved`.
    HardStateSaving,
    /// Its snapshot waits for the snapshot writer to be free.
    SnapshotWaiting,
    /// Its snapshot is being written; waiting for `Installed`.
    SnapshotWriting,
    /// The log changes (reset or compaction for the snapshot, the truncation) come next.
    Log,
    /// Its entries are being appended (the log's pending queue may be full for a while).
    Appending,
    /// Everything is handed to the log; waiting for durability.
    Submitted,
}

/// What must be durable in the log for a submitted Persist to be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// Nothing of it is in the log: durable once every Persist before it is.
    Nothing,
    /// Durable once every live entry up to `last` is. That also proves every earlier
    /// Persist durable: their records precede these in the log, and no truncation came
    /// since (one would have turned this into `Settled`).
    Entries { last: u64 },
    /// A truncation with no entry after it, or entries a later truncation removed: durable
    /// once the log has nothing left to do, or once a later Persist is.
    Settled,
    /// A barrier that reset the log: durable once the log reports the reset and the
    /// entries appended after it, if any, are durable.
    Reset { last: Option<u64> },
}

#[derive(Debug)]
struct PendingPersist {
    id: u64,
    /// Carries a hard state or a snapshot: starts after every earlier Persist is durable,
    /// and every later one starts after it is.
    barrier: bool,
    hard_state: Option<HardState>,
    snapshot: Option<Snapshot>,
    truncate_from: Option<LogIndex>,
    /// Entries not yet appended.
    entries: VecDeque<Entry>,
    stage: Stage,
    durability: Durability,
    log_reset: bool,
    truncated: bool,
    last_appended: Option<u64>,
}

impl PendingPersist {
    fn new(persist: Persist) -> PendingPersist {
        PendingPersist {
            id: persist.id,
            barrier: persist.hard_state.is_some() || persist.snapshot.is_some(),
            hard_state: persist.hard_state,
            snapshot: persist.snapshot,
            truncate_from: persist.truncate_from,
            entries: persist.entries.into(),
            stage: Stage::Queued,
            durability: Durability::Nothing,
            log_reset: false,
            truncated: false,
            last_appended: None,
        }
    }

    fn durability_when_submitted(&self) -> Durability {
        match (self.log_reset, self.last_appended) {
            (true, last) => Durability::Reset { last },
            (false, Some(last)) => Durability::Entries { last },
            (false, None) if self.truncated => Durability::Settled,
            (false, None) => Durability::Nothing,
        }
    }
}

/// Whose snapshot the writer is writing.
#[derive(Debug)]
enum WriterPurpose {
    /// `save_snapshot`'s: reported with `SnapshotSaved` once installed.
    Save(Snapshot),
    /// The front barrier Persist's.
    Persist,
}

#[derive(Debug)]
struct WriterJob {
    writer: SnapshotWriter,
    purpose: WriterPurpose,
    name: String,
    stale: Vec<String>,
    last_index: u64,
    ops_in_flight: usize,
}

#[derive(Debug)]
enum Phase {
    Boot(Box<Boot>),
    Running,
}

/// The durable storage of one Raft replica; see the module documentation.
#[derive(Debug)]
pub struct RaftStorage {
    config: RaftStorageConfig,
    phase: Phase,
    /// The first fatal failure; nothing is handed out after it.
    failure: Option<String>,
    outputs: VecDeque<StorageOutput>,
    report: BootReport,
    wal: Option<Wal>,
    hard_state_store: Option<HardStateStore>,
    persists: VecDeque<PendingPersist>,
    /// How many Persists at the front are known to be `Submitted` (a stage no Persist
    /// leaves), so the next one to move is found without scanning them again.
    submitted_prefix: usize,
    persist_id_last: u64,
    /// The log reset by the front barrier is not yet reported durable.
    reset_awaited: bool,
    writer: Option<WriterJob>,
    /// The node's own snapshot, waiting for the writer.
    save_queued: Option<Snapshot>,
    /// Snapshot files in the directory.
    snapshot_files: BTreeSet<String>,
    /// The last index of the newest snapshot loaded, written or being written.
    snapshot_index_newest: u64,
    /// The last index of the newest snapshot durable with the older ones removed: the log
    /// may be compacted up to it.
    snapshot_index_durable: u64,
    compact_wanted: u64,
    compact_issued: u64,
    snapshots_superseded_count: u64,
}

impl RaftStorage {
    /// Starts in the boot phase. Panics on an invalid config: configs from users are
    /// validated where they are read.
    pub fn new(config: RaftStorageConfig) -> RaftStorage {
        if let Err(error) = config.validate() {
            panic!("invalid raft storage config: {error}");
        }
        RaftStorage {
            phase: Phase::Boot(Box::new(Boot::new(config.clone()))),
            config,
            failure: None,
            outputs: VecDeque::new(),
            report: BootReport::default(),
            wal: None,
            hard_state_store: None,
            persists: VecDeque::new(),
            submitted_prefix: 0,
            persist_id_last: 0,
            reset_awaited: false,
            writer: None,
            save_queued: None,
            snapshot_files: BTreeSet::new(),
            snapshot_index_newest: 0,
            snapshot_index_durable: 0,
            compact_wanted: 0,
            compact_issued: 0,
            snapshots_superseded_count: 0,
        }
    }

    pub fn config(&self) -> &RaftStorageConfig {
        &self.config
    }

    /// What boot found; complete once `Recovered` was reported.
    pub fn boot_report(&self) -> &BootReport {
        &self.report
    }

    /// The first fatal failure, once there was one.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The log engine, once boot has recovered it.
    pub fn wal(&self) -> Option<&Wal> {
        match &self.phase {
            Phase::Boot(boot) => boot.wal.as_ref(),
            Phase::Running => self.wal.as_ref(),
        }
    }

    /// Persists not yet reported durable.
    pub fn persists_pending_count(&self) -> usize {
        self.persists.len()
    }

    /// `save_snapshot` calls dropped because a snapshot as new or newer was already saved.
    pub fn snapshots_superseded_count(&self) -> u64 {
        self.snapshots_superseded_count
    }

    /// The instant the log's held batch is due (`batch_wait_max`): call `poll_io` then.
    pub fn deadline(&self) -> Option<Instant> {
        if self.failure.is_some() {
            return None;
        }
        self.wal().and_then(Wal::deadline)
    }

    /// The next disk operation, if any. Hand each to the disk service in this order;
    /// completions come back through [`RaftStorage::complete`] in the same order.
    pub fn poll_io(&mut self, now: Instant) -> Option<(IoTag, DiskOp)> {
        if self.failure.is_some() {
            return None;
        }
        if let Phase::Boot(boot) = &mut self.phase {
            if let Some((tag, op)) = boot.poll_io() {
                return Some((tag_in(Space::Boot, tag), op));
            }
            let (tag, op) = boot.wal.as_mut()?.poll_io(now)?;
            return Some((tag_in(Space::Wal, tag), op));
        }
        // Appends refused while the log's pending queue was full go in now: the batch
        // handed out last made room.
        self.advance();
        if self.failure.is_some() {
            return None;
        }
        let store = self.hard_state_store.as_mut().expect("running");
        if let Some((tag, op)) = store.poll_io() {
            return Some((tag_in(Space::HardState, tag), op));
        }
        let wal = self.wal.as_mut().expect("running");
        if let Some((tag, op)) = wal.poll_io(now) {
            return Some((tag_in(Space::Wal, tag), op));
        }
        let job = self.writer.as_mut()?;
        if job.ops_in_flight >= SNAPSHOT_OPS_IN_FLIGHT_MAX {
            return None;
        }
        let (tag, op) = job.writer.poll_io()?;
        job.ops_in_flight += 1;
        Some((tag_in(Space::Snapshot, tag), op))
    }

    /// Takes the completion of the op handed out with `tag`.
    pub fn complete(&mut self, tag: IoTag, result: Result<DiskReply, DiskError>) {
        if self.failure.is_some() {
            return;
        }
        let (space, inner) = tag_split(tag);
        match space {
            Space::Boot => self.on_boot_completion(inner, result),
            Space::Wal => {
                let wal = self.wal_mut().expect("a log op completed before recovery");
                wal.complete(inner, result);
                self.drain_wal_outputs();
            }
            Space::HardState => {
                let store = self.hard_state_store.as_mut().expect("running");
                store.complete(inner, result);
                self.drain_hard_state_outputs();
            }
            Space::Snapshot => {
                let job = self.writer.as_mut().expect("a snapshot op completed");
                job.ops_in_flight -= 1;
                job.writer.complete(inner, result);
                self.drain_writer_outputs();
            }
        }
        match self.phase {
            Phase::Boot(_) => self.finish_boot_when_settled(),
            Phase::Running => self.advance(),
        }
        self.invariants();
    }

    pub fn poll_output(&mut self) -> Option<StorageOutput> {
        self.outputs.pop_front()
    }

    /// Makes a Persist durable: its hard state, its snapshot (replacing the log when
    /// `truncate_from` is the snapshot's last index + 1, else keeping the entries after
    /// it), its truncation, then its entries; `Persisted { id }` reports it. Only after
    /// `Recovered`; ids must increase.
    pub fn persist(&mut self, persist: Persist) {
        assert!(
            matches!(self.phase, Phase::Running),
            "persist before Recovered"
        );
        assert!(
            persist.id > self.persist_id_last,
            "Persist {} after Persist {}: ids must increase",
            persist.id,
            self.persist_id_last
        );
        self.persist_id_last = persist.id;
        if self.failure.is_some() {
            return;
        }
        if self.persists.len() >= PERSISTS_PENDING_MAX {
            self.fail(format!(
                "raft storage: Persist {} would be the {}th waiting to be durable \
                 (PERSISTS_PENDING_MAX {PERSISTS_PENDING_MAX}); Raft should bound its output",
                persist.id,
                PERSISTS_PENDING_MAX + 1
            ));
            return;
        }
        self.persists.push_back(PendingPersist::new(persist));
        self.advance();
        self.invariants();
    }

    /// Writes the node's own snapshot; `SnapshotSaved` reports it durable. One is written at
    /// a time: a second one while another waits replaces it. A snapshot no newer than one
    /// already saved (or being saved) is dropped without output, as Raft ignores it too.
    /// The log is not compacted here: Raft asks for that with `Compacted` ([`Self::compact`]).
    pub fn save_snapshot(&mut self, snapshot: Snapshot) {
        assert!(
            matches!(self.phase, Phase::Running),
            "save_snapshot before Recovered"
        );
        if self.failure.is_some() {
            return;
        }
        if snapshot.meta.last_index.0 <= self.snapshot_index_newest {
            self.snapshots_superseded_count += 1;
            return;
        }
        if self.save_queued.replace(snapshot).is_some() {
            self.snapshots_superseded_count += 1;
        }
        self.advance();
        self.invariants();
    }

    /// Drops log entries below `first_index` (Raft's `Output::Compacted`). Whole segments
    /// go, and only below the newest durable snapshot, so the log never has a gap after it.
    pub fn compact(&mut self, first_index: LogIndex) {
        assert!(
            matches!(self.phase, Phase::Running),
            "compact before Recovered"
        );
        if self.failure.is_some() {
            return;
        }
        self.compact_wanted = self.compact_wanted.max(first_index.0);
        self.advance();
        self.invariants();
    }

    fn wal_mut(&mut self) -> Option<&mut Wal> {
        match &mut self.phase {
            Phase::Boot(boot) => boot.wal.as_mut(),
            Phase::Running => self.wal.as_mut(),
        }
    }

    fn fail(&mut self, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(reason.clone());
            self.outputs.push_back(StorageOutput::Failed(reason));
        }
    }

    fn on_boot_completion(&mut self, tag: IoTag, result: Result<DiskReply, DiskError>) {
        let Phase::Boot(boot) = &mut self.phase else {
            panic!("a boot op completed after boot");
        };
        let outcome = match result {
            Ok(reply) => boot.on_reply(tag, reply),
            Err(error) => {
                boot.op_in_flight = None;
                Err(format!("{}: {error}", boot.step.name()))
            }
        };
        if let Err(reason) = outcome {
            self.fail(format!("raft storage boot: {reason}"));
        }
    }

    fn drain_wal_outputs(&mut self) {
        while let Some(output) = self.wal_mut().and_then(Wal::poll_output) {
            match output {
                WalOutput::Failed(fatal) => self.fail(format!("raft storage: {fatal}")),
                WalOutput::Reset { .. } => self.reset_awaited = false,
                // Durability is read from `Wal::durable_sequence` when Persists are
                // checked; compaction needs no answer.
                WalOutput::Durable { .. } | WalOutput::Compacted { .. } => {}
            }
        }
    }

    fn drain_hard_state_outputs(&mut self) {
        let store = self.hard_state_store.as_mut().expect("running");
        while let Some(output) = store.poll_output() {
            match output {
                HardStateOutput::Saved(_) => {
                    let front = self.persists.front_mut().expect("a barrier is saving");
                    assert_eq!(front.stage, Stage::HardStateSaving, "one save at a time");
                    front.stage = Stage::SnapshotWaiting;
                }
                HardStateOutput::Failed(fatal) => {
                    let reason = format!("raft storage: {fatal}");
                    self.fail(reason);
                    return;
                }
            }
        }
    }

    fn drain_writer_outputs(&mut self) {
        while let Some(job) = self.writer.as_mut()
            && let Some(output) = job.writer.poll_output()
        {
            match output {
                SnapshotOutput::Installed { .. } => self.on_snapshot_installed(),
                SnapshotOutput::OldRemoved { .. } => {
                    let job = self.writer.take().expect("writing");
                    assert_eq!(job.ops_in_flight, 0, "the last snapshot op completed");
                    for stale in &job.stale {
                        self.snapshot_files.remove(stale);
                    }
                    let durable = self.snapshot_index_durable.max(job.last_index);
                    self.snapshot_index_durable = durable;
                }
                SnapshotOutput::Failed(fatal) => {
                    self.fail(format!("raft storage: {fatal}"));
                    return;
                }
            }
        }
    }

    fn on_snapshot_installed(&mut self) {
        let job = self.writer.as_mut().expect("writing");
        self.snapshot_files.insert(job.name.clone());
        match &job.purpose {
            WriterPurpose::Save(snapshot) => {
                let snapshot = snapshot.clone();
                self.outputs
                    .push_back(StorageOutput::SnapshotSaved(snapshot));
            }
            WriterPurpose::Persist => {
                let front = self.persists.front_mut().expect("a barrier is writing");
                assert_eq!(front.stage, Stage::SnapshotWriting, "the front writes");
                front.stage = Stage::Log;
            }
        }
    }

    /// Once the log has carried out its repair (and any reset boot asked for), hands the
    /// recovered state to Raft and starts taking Persists.
    fn finish_boot_when_settled(&mut self) {
        let Phase::Boot(boot) = &mut self.phase else {
            return;
        };
        if self.failure.is_some() || !matches!(boot.step, BootStep::Settle) {
            return;
        }
        let wal = boot.wal.as_ref().expect("recovered");
        if wal.has_requested_work() {
            return;
        }
        let Phase::Boot(boot) = std::mem::replace(&mut self.phase, Phase::Running) else {
            unreachable!("checked above");
        };
        let boot = *boot;
        let last = boot.snapshot_last_index();
        self.wal = boot.wal;
        self.hard_state_store = boot.hard_state_store;
        self.report = boot.report;
        let loaded = boot.start.loaded.iter().map(|(file, _)| file.clone());
        let rejected = boot.start.rejected.iter().map(|r| r.file.clone());
        self.snapshot_files = loaded.chain(rejected).collect();
        self.snapshot_index_newest = last;
        self.snapshot_index_durable = last;
        self.compact_wanted = last + 1;
        let recovered = Recovered {
            hard_state: boot.hard_state,
            snapshot: boot.snapshot,
            entries: boot.entries,
        };
        self.outputs.push_back(StorageOutput::Recovered(recovered));
        self.advance();
    }

    /// Moves Persists on as far as they can go, reports the durable ones, starts a queued
    /// snapshot and a compaction that became safe.
    fn advance(&mut self) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        // Each pass moves one Persist one stage on or reports some durable; stages and
        // Persists are finite, so this ends.
        while self.failure.is_none() {
            let submitted = self.submit_next();
            let completed = self.complete_durable();
            if !submitted && !completed {
                break;
            }
        }
        if self.failure.is_none() {
            self.start_queued_save();
            self.update_compaction();
        }
    }

    /// Moves the first Persist that is not fully handed over one stage on, if it may go:
    /// a barrier only at the front, and nothing behind a barrier that is not durable.
    fn submit_next(&mut self) -> bool {
        let waiting = |persist: &PendingPersist| persist.stage != Stage::Submitted;
        let skip = self.submitted_prefix.min(self.persists.len());
        let Some(index) = self.persists.iter().skip(skip).position(waiting) else {
            self.submitted_prefix = self.persists.len();
            return false;
        };
        let index = index + skip;
        self.submitted_prefix = index;
        if index > 0 && (self.persists[0].barrier || self.persists[index].barrier) {
            return false;
        }
        match self.persists[index].stage {
            Stage::Queued => {
                let persist = &mut self.persists[index];
                match persist.hard_state {
                    Some(state) => {
                        let store = self.hard_state_store.as_mut().expect("running");
                        store.save(to_wal_hard_state(state));
                        persist.stage = Stage::HardStateSaving;
                    }
                    None => persist.stage = Stage::SnapshotWaiting,
                }
                true
            }
            Stage::SnapshotWaiting => self.start_persist_snapshot(index),
            Stage::Log => match self.change_log(index) {
                Ok(()) => {
                    self.persists[index].stage = Stage::Appending;
                    true
                }
                Err(reason) => {
                    let id = self.persists[index].id;
                    self.fail(format!("raft storage: Persist {id}: {reason}"));
                    false
                }
            },
            Stage::Appending => self.append_entries(index),
            Stage::HardStateSaving | Stage::SnapshotWriting | Stage::Submitted => false,
        }
    }

    fn start_persist_snapshot(&mut self, index: usize) -> bool {
        let persist = &mut self.persists[index];
        let Some(snapshot) = persist.snapshot.clone() else {
            persist.stage = Stage::Log;
            return true;
        };
        if self.writer.is_some() {
            return false;
        }
        let id = persist.id;
        let last = snapshot.meta.last_index.0;
        if last < self.snapshot_index_newest {
            let newest = self.snapshot_index_newest;
            self.fail(format!(
                "raft storage: Persist {id}: its snapshot ends at index {last}, before the \
                 snapshot at {newest} already saved"
            ));
            return false;
        }
        if let Err(reason) = self.start_writer(&snapshot, WriterPurpose::Persist) {
            self.fail(format!("raft storage: Persist {id}: {reason}"));
            return false;
        }
        self.persists[index].stage = Stage::SnapshotWriting;
        true
    }

    /// Starts writing `snapshot`; the files of older snapshots go once it is durable.
    fn start_writer(&mut self, snapshot: &Snapshot, purpose: WriterPurpose) -> Result<(), String> {
        assert!(self.writer.is_none(), "one snapshot write at a time");
        let (header, data) = encode_snapshot_file(snapshot);
        let size = (header.len() + data.len()) as u64;
        let last_index = snapshot.meta.last_index.0;
        let limit = self.config.snapshot_size_max;
        if size > limit {
            return Err(format!(
                "the snapshot at index {last_index} is {size} bytes, over snapshot_size_max \
                 ({limit} bytes); raise snapshot_size_max"
            ));
        }
        let name = snapshot_file_name(last_index);
        let stale: Vec<String> = (self.snapshot_files.iter())
            .filter(|file| **file != name)
            .cloned()
            .collect();
        let mut writer = SnapshotWriter::new(last_index, stale.clone());
        writer.write_chunk(header);
        let mut offset = 0;
        while offset < data.len() {
            let end = data.len().min(offset + SNAPSHOT_WRITE_SIZE);
            writer.write_chunk(data.slice(offset..end));
            offset = end;
        }
        writer.finish();
        self.snapshot_index_newest = self.snapshot_index_newest.max(last_index);
        self.writer = Some(WriterJob {
            writer,
            purpose,
            name,
            stale,
            last_index,
            ops_in_flight: 0,
        });
        Ok(())
    }

    /// The Persist's log changes before its entries: for a snapshot, a reset (the log is
    /// replaced) or a compaction asked for (the entries after it are kept); then the
    /// truncation.
    fn change_log(&mut self, index: usize) -> Result<(), String> {
        let wal = self.wal.as_mut().expect("running");
        let persist = &mut self.persists[index];
        if let Some(snapshot) = &persist.snapshot {
            let last = snapshot.meta.last_index.0;
            let replace = persist.truncate_from.is_some_and(|from| from.0 <= last + 1)
                || wal.next_sequence() <= last;
            if replace {
                wal.reset(last + 1).map_err(|error| error.to_string())?;
                self.reset_awaited = true;
                persist.log_reset = true;
            } else {
                let first = wal.first_sequence();
                if first > last + 1 {
                    return Err(format!(
                        "the log starts at index {first}, after the snapshot's last index \
                         {last} + 1, yet the Persist keeps the log"
                    ));
                }
                self.compact_wanted = self.compact_wanted.max(last + 1);
            }
        }
        if let Some(from) = persist.truncate_from
            && !persist.log_reset
        {
            let next = wal.next_sequence();
            if from.0 > next {
                return Err(format!(
                    "truncation from index {from} is past the log's end (next index {next})"
                ));
            }
            if from.0 < next {
                wal.truncate_suffix(from.0)
                    .map_err(|error| error.to_string())?;
                persist.truncated = true;
            }
        }
        if persist.log_reset || persist.truncated {
            // Entries of earlier Persists may be gone: those Persists are durable once this
            // one is (or the log has settled), never through their own entries.
            for earlier in self.persists.range_mut(..index) {
                if matches!(earlier.durability, Durability::Entries { .. }) {
                    earlier.durability = Durability::Settled;
                }
            }
        }
        Ok(())
    }

    /// Appends the Persist's entries; stops early while the log's pending queue is full
    /// (the next `poll_io` retries once a batch has left it).
    fn append_entries(&mut self, index: usize) -> bool {
        let wal = self.wal.as_mut().expect("running");
        let persist = &mut self.persists[index];
        let mut progressed = false;
        while let Some(entry) = persist.entries.front() {
            let expected = wal.next_sequence();
            if entry.index.0 != expected {
                let (id, entry_index) = (persist.id, entry.index);
                self.fail(format!(
                    "raft storage: Persist {id}: entry {entry_index} does not follow the log, \
                     whose next index is {expected}"
                ));
                return false;
            }
            let mut payload = Vec::with_capacity(entry.size() + 1);
            encode_entry(entry, &mut payload);
            match wal.append(RecordType::Entry, Bytes::from(payload)) {
                Ok(sequence) => {
                    assert_eq!(sequence, expected, "the log numbers entries as Raft does");
                    persist.last_appended = Some(sequence);
                    persist.entries.pop_front();
                    progressed = true;
                }
                Err(AppendError::PendingFull { .. }) => return progressed,
                Err(error) => {
                    let id = persist.id;
                    self.fail(format!("raft storage: Persist {id}: {error}"));
                    return false;
                }
            }
        }
        persist.durability = persist.durability_when_submitted();
        persist.stage = Stage::Submitted;
        true
    }

    /// Reports every Persist at the front that is durable, in id order.
    fn complete_durable(&mut self) -> bool {
        let wal = self.wal.as_ref().expect("running");
        let durable = wal.durable_sequence();
        let settled = !wal.has_requested_work();
        let mut done_count = 0;
        for (position, persist) in self.persists.iter().enumerate() {
            if persist.stage != Stage::Submitted {
                break;
            }
            let (met, proves_earlier) = match persist.durability {
                Durability::Nothing => (true, false),
                Durability::Entries { last } => (last <= durable, true),
                Durability::Settled => (settled, true),
                Durability::Reset { last } => {
                    let entries_durable = last.is_none_or(|last| last <= durable);
                    (!self.reset_awaited && entries_durable, true)
                }
            };
            if met && (proves_earlier || done_count == position) {
                done_count = position + 1;
            }
            // Entries become durable in log order, so no later Persist can be met when
            // this one's entries are not: a later reset or truncation would have made this
            // one's durability `Settled`, and the log is not settled while entries wait.
            if !met && matches!(persist.durability, Durability::Entries { .. }) {
                break;
            }
        }
        self.submitted_prefix = self.submitted_prefix.saturating_sub(done_count);
        for _ in 0..done_count {
            let persist = self.persists.pop_front().expect("counted");
            let id = persist.id;
            self.outputs.push_back(StorageOutput::Persisted { id });
        }
        done_count > 0
    }

    /// Starts the queued own snapshot once the writer is free and no Persist's snapshot
    /// (on Raft's critical path) waits for it.
    fn start_queued_save(&mut self) {
        if self.writer.is_some() || self.save_queued.is_none() {
            return;
        }
        let persist_snapshot_waits = self.persists.iter().any(|persist| {
            persist.snapshot.is_some()
                && matches!(
                    persist.stage,
                    Stage::Queued | Stage::HardStateSaving | Stage::SnapshotWaiting
                )
        });
        if persist_snapshot_waits {
            return;
        }
        let snapshot = self.save_queued.take().expect("checked above");
        if snapshot.meta.last_index.0 <= self.snapshot_index_newest {
            self.snapshots_superseded_count += 1;
            return;
        }
        if let Err(reason) = self.start_writer(&snapshot.clone(), WriterPurpose::Save(snapshot)) {
            self.fail(format!("raft storage: save_snapshot: {reason}"));
        }
    }

    /// Asks the log to drop what Raft compacted, but never past the newest snapshot that is
    /// durable with the older ones removed: a crash then still finds the entries after it.
    fn update_compaction(&mut self) {
        let allowed = self.compact_wanted.min(self.snapshot_index_durable + 1);
        if allowed > self.compact_issued && allowed > 1 {
            let wal = self.wal.as_mut().expect("running");
            wal.compact_prefix(allowed);
            self.compact_issued = allowed;
        }
    }

    /// Asserts the pipeline's invariants; called at the end of every public step. The
    /// checks that walk every waiting Persist run in builds with debug assertions (every
    /// test and simulation); release builds keep the constant-time ones.
    pub fn invariants(&self) {
        assert!(
            self.persists.len() <= PERSISTS_PENDING_MAX,
            "Persist queue bound"
        );
        if cfg!(debug_assertions) {
            self.invariants_of_every_persist();
        }
        if let Some(job) = &self.writer {
            assert!(
                job.ops_in_flight <= SNAPSHOT_OPS_IN_FLIGHT_MAX,
                "snapshot ops in flight bound"
            );
        }
        assert!(
            self.compact_issued <= self.snapshot_index_durable + 1,
            "compaction never passes the durable snapshot"
        );
        assert!(
            self.snapshot_index_durable <= self.snapshot_index_newest,
            "the durable snapshot is the newest or older"
        );
    }

    fn invariants_of_every_persist(&self) {
        for persist in self.persists.iter().take(self.submitted_prefix) {
            assert_eq!(
                persist.stage,
                Stage::Submitted,
                "the Persists counted as submitted are"
            );
        }
        let mut handed_over = true;
        for (position, persist) in self.persists.iter().enumerate() {
            if persist.stage == Stage::Submitted {
                assert!(handed_over, "Persists are handed over in order");
            } else {
                if !handed_over {
                    assert_eq!(persist.stage, Stage::Queued, "one Persist moves at a time");
                }
                handed_over = false;
            }
            if persist.barrier && persist.stage != Stage::Queued {
                assert_eq!(position, 0, "a barrier runs alone, at the front");
            }
        }
        for pair in self.persists.iter().zip(self.persists.iter().skip(1)) {
            assert!(pair.0.id < pair.1.id, "Persists are kept in id order");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::RangeInclusive;

    use synod_core::{NodeId, Prng};
    use synod_raft::{EntryPayload, Membership, SnapshotMeta};
    use synod_wal::{CrashFaults, MemStorage, Storage};

    use super::*;

    fn config() -> RaftStorageConfig {
        let mut wal = WalConfig::small_for_tests();
        wal.segment_size = 8 << 10;
        wal.batch_size_max = 2 << 10;
        wal.record_size_max = 700;
        wal.read_size_max = 8 << 10;
        wal.pending_bytes_max = 4 << 10;
        RaftStorageConfig {
            wal,
            snapshot_size_max: 64 << 10,
        }
    }

    /// Executes a storage's ops against a `MemStorage`, in the order they are handed out,
    /// with every op the storage has handed out before the oldest is carried out.
    struct Driver {
        disk: MemStorage,
        storage: RaftStorage,
        in_flight: VecDeque<(IoTag, DiskOp)>,
        outputs: Vec<StorageOutput>,
        /// Every op handed out, with the last Persisted id reported at that moment.
        handed_out: Vec<(DiskOp, u64)>,
        persisted_last: u64,
        syncs_count: u64,
    }

    impl Driver {
        fn new(disk: MemStorage, config: RaftStorageConfig) -> Driver {
            Driver {
                disk,
                storage: RaftStorage::new(config),
                in_flight: VecDeque::new(),
                outputs: Vec::new(),
                handed_out: Vec::new(),
                persisted_last: 0,
                syncs_count: 0,
            }
        }

        fn poll(&mut self) {
            while let Some((tag, op)) = self.storage.poll_io(Instant::ZERO) {
                self.handed_out.push((op.clone(), self.persisted_last));
                self.in_flight.push_back((tag, op));
            }
            self.collect();
        }

        fn collect(&mut self) {
            while let Some(output) = self.storage.poll_output() {
                if let StorageOutput::Persisted { id } = output {
                    assert!(id > self.persisted_last, "Persisted {id} out of order");
                    self.persisted_last = id;
                }
                self.outputs.push(output);
            }
        }

        /// Carries out the oldest op handed out; false once none is left.
        fn step(&mut self) -> bool {
            self.poll();
            let Some((tag, op)) = self.in_flight.pop_front() else {
                return false;
            };
            if matches!(op, DiskOp::Sync { .. } | DiskOp::SyncDir) {
                self.syncs_count += 1;
            }
            let result = self.disk.execute(&op);
            self.storage.complete(tag, result);
            self.collect();
            true
        }

        fn run(&mut self) {
            while self.step() {}
        }

        fn persist(&mut self, persist: Persist) {
            self.storage.persist(persist);
            self.collect();
        }

        fn take_outputs(&mut self) -> Vec<StorageOutput> {
            std::mem::take(&mut self.outputs)
        }

        /// A power loss: only what was synced survives; ops not carried out are lost.
        fn crash(self) -> MemStorage {
            let mut disk = self.disk;
            disk.crash();
            disk
        }
    }

    fn boot_with(
        disk: MemStorage,
        config: RaftStorageConfig,
    ) -> Result<(Driver, Recovered), String> {
        let mut driver = Driver::new(disk, config);
        driver.run();
        let mut recovered = None;
        for output in driver.take_outputs() {
            match output {
                StorageOutput::Recovered(state) => recovered = Some(state),
                StorageOutput::Failed(reason) => return Err(reason),
                other => panic!("unexpected output at boot: {other:?}"),
            }
        }
        let recovered = recovered.ok_or("boot never finished")?;
        Ok((driver, recovered))
    }

    fn boot(disk: MemStorage) -> (Driver, Recovered) {
        boot_with(disk, config()).unwrap_or_else(|reason| panic!("boot failed: {reason}"))
    }

    fn entry(index: u64, term: u64) -> Entry {
        let mut command = format!("command {index} of term {term} ").into_bytes();
        command.resize(100, b'.');
        Entry {
            term: Term(term),
            index: LogIndex(index),
            time_ns: index * 1_000,
            payload: EntryPayload::Command(Bytes::from(command)),
        }
    }

    fn entries(indexes: RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        indexes.map(|index| entry(index, term)).collect()
    }

    fn hard_state(term: u64, vote: Option<u64>) -> HardState {
        HardState {
            term: Term(term),
            vote: vote.map(NodeId),
        }
    }

    fn snapshot(index: u64, term: u64, data: &str) -> Snapshot {
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        Snapshot {
            meta: SnapshotMeta {
                last_index: LogIndex(index),
                last_term: Term(term),
                membership: Membership::with_voters(&voters),
            },
            data: Bytes::from(data.to_string()),
        }
    }

    fn entries_persist(id: u64, entries: Vec<Entry>) -> Persist {
        Persist {
            id,
            hard_state: None,
            snapshot: None,
            truncate_from: None,
            entries,
        }
    }

    fn persisted_ids(outputs: &[StorageOutput]) -> Vec<u64> {
        let id = |output: &StorageOutput| match output {
            StorageOutput::Persisted { id } => Some(*id),
            _ => None,
        };
        outputs.iter().filter_map(id).collect()
    }

    fn segments_count(disk: &mut MemStorage) -> usize {
        let names = disk.list().unwrap();
        Recovery::segment_names(&names).unwrap().len()
    }

    #[test]
    fn config_errors_name_the_field() {
        // Checks that the default config validates and that each broken field is named
        // with its dotted path, the WAL's under `wal.`.
        assert_eq!(RaftStorageConfig::default().validate(), Ok(()));
        type Breaker = fn(&mut RaftStorageConfig);
        let broken: [(Breaker, &str); 3] = [
            (|c| c.snapshot_size_max = 0, "snapshot_size_max"),
            (
                |c| c.snapshot_size_max = SNAPSHOT_SIZE_LIMIT + 1,
                "snapshot_size_max",
            ),
            (|c| c.wal.segment_size = 5_000, "wal.segment_size"),
        ];
        for (breaker, field) in broken {
            let mut config = RaftStorageConfig::default();
            breaker(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn an_empty_directory_boots_to_an_empty_state_and_numbers_entries_from_one() {
        // Checks that a fresh directory recovers to Recovered::default() and that the log
        // gives the first entry sequence 1, Raft's first index, with no offset.
        let (mut driver, recovered) = boot(MemStorage::new());
        assert_eq!(recovered.hard_state, HardState::default());
        assert!(recovered.snapshot.is_none());
        assert!(recovered.entries.is_empty());
        assert_eq!(driver.storage.wal().unwrap().next_sequence(), 1);
        driver.persist(entries_persist(1, entries(1..=2, 1)));
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1]);
        let (_, recovered) = boot(driver.crash());
        assert_eq!(recovered.entries, entries(1..=2, 1));
    }

    /// Boots, makes Persists 1 and 2 durable, issues Persist 3 (a new term with entries),
    /// carries out `ops` ops and cuts the power. Returns what came back and whether
    /// Persist 3 was reported.
    fn crash_during_a_new_term(ops: usize) -> (Recovered, bool) {
        let (mut driver, _) = boot(MemStorage::new());
        driver.persist(Persist {
            hard_state: Some(hard_state(1, Some(1))),
            ..entries_persist(1, entries(1..=3, 1))
        });
        driver.persist(entries_persist(2, entries(4..=5, 1)));
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1, 2]);
        driver.persist(Persist {
            hard_state: Some(hard_state(2, Some(2))),
            ..entries_persist(3, entries(6..=8, 2))
        });
        for _ in 0..ops {
            driver.step();
        }
        let reported = persisted_ids(&driver.take_outputs()) == [3];
        let (_, recovered) = boot(driver.crash());
        (recovered, reported)
    }

    #[test]
    fn a_crash_keeps_what_was_persisted_and_invents_nothing() {
        // Checks, for a power loss after every op of a Persist that raises the term, that
        // Persists 1 and 2 (reported) always come back, that term and vote come back
        // together, that entries of term 2 never come back without the term, and that
        // once Persist 3 is reported all of it comes back.
        let mut reported_seen = false;
        for ops in 0..40 {
            let (recovered, reported) = crash_during_a_new_term(ops);
            let old = hard_state(1, Some(1));
            let new = hard_state(2, Some(2));
            let state = recovered.hard_state;
            assert!(state == old || state == new, "ops {ops}: {state:?}");
            let count = recovered.entries.len();
            assert!((5..=8).contains(&count), "ops {ops}: {count} entries");
            let mut expected = entries(1..=5, 1);
            expected.extend(entries(6..=8, 2));
            assert_eq!(recovered.entries, expected[..count], "ops {ops}");
            if count > 5 {
                assert_eq!(state, new, "ops {ops}: entries of term 2 without the term");
            }
            if reported {
                assert_eq!((state, count), (new, 8), "ops {ops}: reported, then lost");
            }
            reported_seen |= reported;
        }
        assert!(reported_seen, "Persist 3 was never reported within 40 ops");
    }

    #[test]
    fn truncations_survive_a_reboot() {
        // Checks that a truncation followed by entries of a new term replaces the suffix,
        // and that a truncation alone is durable once reported.
        let (mut driver, _) = boot(MemStorage::new());
        driver.persist(Persist {
            hard_state: Some(hard_state(1, Some(1))),
            ..entries_persist(1, entries(1..=5, 1))
        });
        driver.persist(Persist {
            hard_state: Some(hard_state(2, Some(2))),
            ..entries_persist(2, Vec::new())
        });
        driver.persist(Persist {
            truncate_from: Some(LogIndex(3)),
            ..entries_persist(3, entries(3..=4, 2))
        });
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1, 2, 3]);
        let (mut driver, recovered) = boot(driver.crash());
        let mut expected = entries(1..=2, 1);
        expected.extend(entries(3..=4, 2));
        assert_eq!(recovered.entries, expected);
        assert_eq!(recovered.hard_state, hard_state(2, Some(2)));
        driver.persist(Persist {
            truncate_from: Some(LogIndex(4)),
            ..entries_persist(1, Vec::new())
        });
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1]);
        let (_, recovered) = boot(driver.crash());
        assert_eq!(recovered.entries, expected[..3]);
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log_or_keeps_its_suffix_across_reboots() {
        // Checks both kinds of install: truncate_from = last index + 1 resets the log (with
        // entries appended after it), any other keeps the entries after the snapshot.
        let (mut driver, _) = boot(MemStorage::new());
        driver.persist(Persist {
            hard_state: Some(hard_state(1, Some(1))),
            ..entries_persist(1, entries(1..=5, 1))
        });
        driver.persist(Persist {
            hard_state: Some(hard_state(3, None)),
            snapshot: Some(snapshot(10, 3, "state at 10")),
            truncate_from: Some(LogIndex(11)),
            ..entries_persist(2, entries(11..=12, 3))
        });
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1, 2]);
        let (mut driver, recovered) = boot(driver.crash());
        assert_eq!(recovered.snapshot, Some(snapshot(10, 3, "state at 10")));
        assert_eq!(recovered.entries, entries(11..=12, 3));
        assert_eq!(recovered.hard_state, hard_state(3, None));
        assert_eq!(driver.storage.boot_report().log_reset_to, None);
        driver.persist(entries_persist(1, entries(13..=16, 3)));
        driver.persist(Persist {
            snapshot: Some(snapshot(14, 3, "state at 14")),
            ..entries_persist(2, Vec::new())
        });
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1, 2]);
        let (mut driver, recovered) = boot(driver.crash());
        assert_eq!(recovered.snapshot, Some(snapshot(14, 3, "state at 14")));
        assert_eq!(recovered.entries, entries(15..=16, 3));
        let snapshots: Vec<String> = (driver.disk.list().unwrap().into_iter())
            .filter(|name| name.starts_with("snapshot-"))
            .collect();
        assert_eq!(
            snapshots,
            [snapshot_file_name(14)],
            "the older snapshot is removed"
        );
    }

    #[test]
    fn a_crash_between_an_installed_snapshot_and_the_log_reset_resets_at_boot() {
        // Checks every crash point of an install that replaces a conflicting log: boot
        // brings back the old state or the snapshot alone, never the snapshot with the
        // conflicting entries, and resets the log itself when the crash fell in between.
        let mut reset_at_boot_seen = false;
        for ops in 0..40 {
            let (mut driver, _) = boot(MemStorage::new());
            driver.persist(Persist {
                hard_state: Some(hard_state(1, Some(1))),
                ..entries_persist(1, entries(1..=5, 1))
            });
            driver.run();
            driver.persist(Persist {
                snapshot: Some(snapshot(3, 2, "state at 3")),
                truncate_from: Some(LogIndex(4)),
                ..entries_persist(2, Vec::new())
            });
            for _ in 0..ops {
                driver.step();
            }
            let (driver, recovered) = boot(driver.crash());
            match &recovered.snapshot {
                None => assert_eq!(recovered.entries, entries(1..=5, 1), "ops {ops}"),
                Some(found) => {
                    assert_eq!(*found, snapshot(3, 2, "state at 3"), "ops {ops}");
                    assert!(recovered.entries.is_empty(), "ops {ops}");
                }
            }
            let reset = driver.storage.boot_report().log_reset_to;
            reset_at_boot_seen |= reset == Some(LogIndex(4));
        }
        assert!(
            reset_at_boot_seen,
            "no crash fell between the snapshot and the reset"
        );
    }

    /// A booted storage holding `count` entries of term 1 (and term 1 in its hard state).
    fn storage_with_entries(count: u64) -> Driver {
        let (mut driver, _) = boot(MemStorage::new());
        driver.persist(Persist {
            hard_state: Some(hard_state(1, Some(1))),
            ..entries_persist(1, Vec::new())
        });
        for (id, first) in (2..).zip((1..=count).step_by(10)) {
            let last = count.min(first + 9);
            driver.persist(entries_persist(id, entries(first..=last, 1)));
            driver.run();
        }
        driver.take_outputs();
        driver
    }

    #[test]
    fn an_own_snapshot_and_a_compaction_survive_a_reboot() {
        // Checks save_snapshot's SnapshotSaved, that compact removes whole segments below
        // the durable snapshot only, and that a reboot finds the snapshot and the entries
        // after it.
        let mut driver = storage_with_entries(300);
        let segments_before = segments_count(&mut driver.disk);
        driver
            .storage
            .save_snapshot(snapshot(280, 1, "state at 280"));
        driver.run();
        let outputs = driver.take_outputs();
        assert!(
            matches!(&outputs[..], [StorageOutput::SnapshotSaved(saved)]
                if saved.meta.last_index == LogIndex(280)),
            "{outputs:?}"
        );
        driver.storage.compact(LogIndex(271));
        driver.run();
        let segments_after = segments_count(&mut driver.disk);
        assert!(
            segments_after < segments_before,
            "{segments_after} of {segments_before}"
        );
        let first = driver.storage.wal().unwrap().first_sequence();
        assert!((2..=271).contains(&first), "the log starts at {first}");
        let (mut driver, recovered) = boot(driver.crash());
        assert_eq!(recovered.snapshot, Some(snapshot(280, 1, "state at 280")));
        assert_eq!(recovered.entries, entries(281..=300, 1));
        assert_eq!(recovered.hard_state, hard_state(1, Some(1)));
        // A snapshot no newer than the saved one is dropped without output.
        driver.storage.save_snapshot(snapshot(270, 1, "older"));
        driver.run();
        assert!(driver.take_outputs().is_empty());
        assert_eq!(driver.storage.snapshots_superseded_count(), 1);
    }

    #[test]
    fn a_compaction_waits_for_the_snapshot_below_it_to_be_durable() {
        // Checks every crash point of a snapshot saved and compacted behind at once: the
        // log's segments go only after the snapshot is durable, so every boot succeeds,
        // with the snapshot or with the whole log.
        let mut snapshot_seen = false;
        for ops in 0..60 {
            let mut driver = storage_with_entries(300);
            driver
                .storage
                .save_snapshot(snapshot(280, 1, "state at 280"));
            driver.storage.compact(LogIndex(281));
            for _ in 0..ops {
                driver.step();
            }
            let disk = driver.crash();
            let (_, recovered) = boot_with(disk, config())
                .unwrap_or_else(|reason| panic!("ops {ops}: boot failed: {reason}"));
            let first = match &recovered.snapshot {
                Some(found) => {
                    assert_eq!(found.meta.last_index, LogIndex(280), "ops {ops}");
                    snapshot_seen = true;
                    281
                }
                None => 1,
            };
            assert_eq!(recovered.entries, entries(first..=300, 1), "ops {ops}");
        }
        assert!(
            snapshot_seen,
            "the snapshot never became durable within 60 ops"
        );
    }

    #[test]
    fn fifty_entry_only_persists_share_a_few_fdatasyncs() {
        // Checks group commit across Persists: 50 entry-only Persists issued back to back
        // while the first batch is on the disk are reported in order after far fewer than
        // 50 syncs. Batches here may hold all 50 entries (16 KiB).
        let mut config = config();
        config.wal.segment_size = 64 << 10;
        config.wal.batch_size_max = 16 << 10;
        config.wal.pending_bytes_max = 64 << 10;
        let (mut driver, _) = boot_with(MemStorage::new(), config.clone()).unwrap();
        driver.syncs_count = 0;
        for id in 1..=50 {
            driver.persist(entries_persist(id, vec![entry(id, 1)]));
            driver.poll();
        }
        driver.run();
        let expected: Vec<u64> = (1..=50).collect();
        assert_eq!(persisted_ids(&driver.take_outputs()), expected);
        // The segment's creation (file and directory), then two batches: the first entry
        // alone, the 49 that gathered while it was on the disk.
        let syncs = driver.syncs_count;
        assert!(syncs <= 5, "{syncs} syncs for 50 Persists");
        let (_, recovered) = boot_with(driver.crash(), config).unwrap();
        assert_eq!(recovered.entries, entries(1..=50, 1));
    }

    #[test]
    fn a_barrier_waits_for_earlier_entries_and_holds_back_later_ones() {
        // Checks the barrier order: a Persist with a hard state is not written before the
        // entries before it are durable, entries after it are not written before it is
        // durable, and Persisted comes in id order.
        let (mut driver, _) = boot(MemStorage::new());
        driver.handed_out.clear();
        driver.persist(entries_persist(1, entries(1..=3, 1)));
        driver.persist(Persist {
            hard_state: Some(hard_state(2, Some(1))),
            ..entries_persist(2, Vec::new())
        });
        driver.persist(entries_persist(3, entries(4..=5, 2)));
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1, 2, 3]);
        let is_hard_state = |op: &DiskOp| op.paths() == [HARD_STATE_FILE];
        let writes_hard_state = |op: &DiskOp| is_hard_state(op) && op.kind() == "write";
        let position = driver
            .handed_out
            .iter()
            .position(|(op, _)| writes_hard_state(op));
        let position = position.expect("the hard state was written");
        assert_eq!(
            driver.handed_out[position].1, 1,
            "written before Persist 1 was durable"
        );
        let later_log_writes = driver.handed_out[position..]
            .iter()
            .filter(|(op, _)| op.kind() == "write" && op.paths()[0].starts_with("wal-"));
        for (op, persisted) in later_log_writes {
            assert!(
                *persisted >= 2,
                "{op:?} went out before Persist 2 was durable"
            );
        }
    }

    #[test]
    fn appends_wait_while_the_log_pending_queue_is_full() {
        // Checks that a Persist larger than the log's pending_bytes_max is appended in
        // pieces as batches leave, and is reported once all of it is durable.
        let (mut driver, _) = boot(MemStorage::new());
        driver.persist(entries_persist(1, entries(1..=100, 1)));
        assert!(driver.storage.wal().unwrap().next_sequence() < 100);
        driver.run();
        assert_eq!(persisted_ids(&driver.take_outputs()), [1]);
        let (_, recovered) = boot(driver.crash());
        assert_eq!(recovered.entries, entries(1..=100, 1));
    }

    #[test]
    fn a_corrupt_hard_state_slot_fails_boot_naming_the_file_and_slot() {
        // Checks that a flipped bit in the hard state stops boot with a message naming the
        // file and slot, rather than guessing a term and vote.
        let (mut driver, _) = boot(MemStorage::new());
        driver.persist(Persist {
            hard_state: Some(hard_state(5, Some(2))),
            ..entries_persist(1, Vec::new())
        });
        driver.run();
        let mut disk = driver.crash();
        disk.flip_bit(HARD_STATE_FILE, 16 * 8);
        let reason = boot_with(disk, config()).err().expect("boot must fail");
        assert!(reason.contains("hardstate: slot 0"), "{reason}");
    }

    #[test]
    fn a_corrupt_snapshot_falls_back_to_the_log_or_fails_naming_the_gap() {
        // Checks a damaged snapshot file: with the whole log on disk boot falls back to it
        // and reports the rejected file; once the log was compacted behind the snapshot,
        // boot fails naming the snapshot and the missing entries.
        let mut driver = storage_with_entries(20);
        driver.storage.save_snapshot(snapshot(10, 1, "state at 10"));
        driver.run();
        let mut disk = driver.crash();
        disk.flip_bit(&snapshot_file_name(10), 3);
        let (driver, recovered) = boot(disk);
        assert!(recovered.snapshot.is_none());
        assert_eq!(recovered.entries, entries(1..=20, 1));
        let rejected = &driver.storage.boot_report().snapshots_rejected;
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].file, snapshot_file_name(10));

        let mut driver = storage_with_entries(300);
        driver
            .storage
            .save_snapshot(snapshot(280, 1, "state at 280"));
        driver.run();
        driver.storage.compact(LogIndex(281));
        driver.run();
        let mut disk = driver.crash();
        disk.flip_bit(&snapshot_file_name(280), 3);
        let reason = boot_with(disk, config()).err().expect("boot must fail");
        assert!(reason.contains(&snapshot_file_name(280)), "{reason}");
        assert!(reason.contains("are in neither"), "{reason}");
    }

    #[test]
    fn more_persists_than_the_limit_fail_the_storage() {
        // Checks the named bound on waiting Persists: one past PERSISTS_PENDING_MAX is a
        // Failed output naming the limit, after which nothing is handed out.
        let mut config = config();
        config.wal.pending_bytes_max = 4 << 20;
        let (mut driver, _) = boot_with(MemStorage::new(), config).unwrap();
        for id in 1..=PERSISTS_PENDING_MAX as u64 + 1 {
            driver.persist(entries_persist(id, vec![entry(id, 1)]));
        }
        let outputs = driver.take_outputs();
        assert!(
            matches!(&outputs[..], [StorageOutput::Failed(reason)]
                if reason.contains("PERSISTS_PENDING_MAX")),
            "{outputs:?}"
        );
        assert!(driver.storage.poll_io(Instant::ZERO).is_none());
    }

    // -----------------------------------------------------------------------------------
    // Randomized power losses.

    const CRASH_SEEDS_COUNT: u64 = 500;
    const BOOTS_PER_SEED: usize = 3;

    /// One durable unit of a Persist, in the order the storage makes them durable.
    #[derive(Clone, Debug)]
    enum Part {
        HardState(HardState),
        Snapshot { snapshot: Snapshot, replace: bool },
        Truncate(u64),
        Entry(Entry),
        End(u64),
    }

    /// The state the disk stands for: hard state, snapshot, and the entries after it.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct LogState {
        hard_state: HardState,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
    }

    impl LogState {
        fn from_recovered(recovered: &Recovered) -> LogState {
            LogState {
                hard_state: recovered.hard_state,
                snapshot: recovered.snapshot.clone(),
                entries: recovered.entries.clone(),
            }
        }

        fn snapshot_index(&self) -> u64 {
            self.snapshot.as_ref().map_or(0, |s| s.meta.last_index.0)
        }

        fn last_index(&self) -> u64 {
            self.entries
                .last()
                .map_or(self.snapshot_index(), |entry| entry.index.0)
        }

        fn term_at(&self, index: u64) -> Option<Term> {
            if let Some(snapshot) = &self.snapshot
                && snapshot.meta.last_index.0 == index
            {
                return Some(snapshot.meta.last_term);
            }
            let entry = self.entries.iter().find(|entry| entry.index.0 == index)?;
            Some(entry.term)
        }

        fn apply(&mut self, part: &Part) {
            match part {
                Part::HardState(state) => self.hard_state = *state,
                Part::Snapshot { snapshot, replace } => {
                    let last = snapshot.meta.last_index.0;
                    self.entries
                        .retain(|entry| !replace && entry.index.0 > last);
                    self.snapshot = Some(snapshot.clone());
                }
                Part::Truncate(from) => self.entries.retain(|entry| entry.index.0 < *from),
                Part::Entry(entry) => {
                    assert_eq!(entry.index.0, self.last_index() + 1, "generated in order");
                    self.entries.push(entry.clone());
                }
                Part::End(_) => {}
            }
        }
    }

    /// The workload generator and its model: Raft's view of the log (`issued`), every
    /// part issued since the last boot, and what has been reported.
    struct World {
        prng: Prng,
        base: LogState,
        issued: LogState,
        parts: Vec<Part>,
        persist_id_next: u64,
        persisted_last: u64,
        /// Raft's commit index: nothing at or below it is truncated.
        commit: u64,
        /// Committed and reported durable: an own snapshot may cover up to here.
        applied: u64,
        snapshot_index_max: u64,
        own_snapshots: BTreeMap<u64, Snapshot>,
    }

    impl World {
        fn new(prng: Prng) -> World {
            World {
                prng,
                base: LogState::default(),
                issued: LogState::default(),
                parts: Vec::new(),
                persist_id_next: 1,
                persisted_last: 0,
                commit: 0,
                applied: 0,
                snapshot_index_max: 0,
                own_snapshots: BTreeMap::new(),
            }
        }

        fn reboot(&mut self, recovered: &Recovered) {
            self.base = LogState::from_recovered(recovered);
            self.issued = self.base.clone();
            self.parts.clear();
            self.persist_id_next = 1;
            self.persisted_last = 0;
            let snapshot_index = self.issued.snapshot_index();
            self.commit = self
                .commit
                .min(self.issued.last_index())
                .max(snapshot_index);
            self.applied = self.applied.min(self.commit);
            self.snapshot_index_max = snapshot_index;
        }

        fn act(&mut self, driver: &mut Driver) {
            if self.issued.hard_state.term == Term(0) {
                return self.persist_hard_state(driver);
            }
            match self.prng.below(100) {
                0..=39 => self.persist_entries(driver),
                40..=51 => self.persist_truncation(driver),
                52..=61 => self.persist_hard_state(driver),
                62..=71 => self.persist_snapshot(driver),
                72..=81 => self.save_snapshot(driver),
                82..=87 => {
                    let first = 1 + self.prng.below(self.snapshot_index_max + 1);
                    driver.storage.compact(LogIndex(first));
                }
                _ => {}
            }
        }

        fn new_entries(&mut self, first: u64, count: u64) -> Vec<Entry> {
            let term = self.issued.hard_state.term;
            let new_entry = |index: u64, prng: &mut Prng| {
                let size = prng.below(200) as usize;
                let bytes: Vec<u8> = (0..size).map(|_| prng.below(256) as u8).collect();
                Entry {
                    term,
                    index: LogIndex(index),
                    time_ns: index,
                    payload: EntryPayload::Command(Bytes::from(bytes)),
                }
            };
            (first..first + count)
                .map(|index| new_entry(index, &mut self.prng))
                .collect()
        }

        /// Records the Persist's parts, applies them to Raft's view, and hands it over.
        fn issue(&mut self, driver: &mut Driver, mut persist: Persist) {
            persist.id = self.persist_id_next;
            self.persist_id_next += 1;
            let mut parts = Vec::new();
            parts.extend(persist.hard_state.map(Part::HardState));
            let mut replaced = false;
            if let Some(snapshot) = &persist.snapshot {
                let last = snapshot.meta.last_index.0;
                replaced = persist.truncate_from.is_some_and(|from| from.0 <= last + 1)
                    || self.issued.last_index() < last;
                let snapshot = snapshot.clone();
                parts.push(Part::Snapshot {
                    snapshot,
                    replace: replaced,
                });
            }
            if let Some(from) = persist.truncate_from
                && !replaced
            {
                parts.push(Part::Truncate(from.0));
            }
            parts.extend(persist.entries.iter().cloned().map(Part::Entry));
            parts.push(Part::End(persist.id));
            for part in &parts {
                self.issued.apply(part);
            }
            self.parts.extend(parts);
            driver.persist(persist);
        }

        fn persist_entries(&mut self, driver: &mut Driver) {
            let count = 1 + self.prng.below(4);
            let entries = self.new_entries(self.issued.last_index() + 1, count);
            self.issue(driver, entries_persist(0, entries));
        }

        fn persist_truncation(&mut self, driver: &mut Driver) {
            let floor = self.commit.max(self.issued.snapshot_index());
            let last = self.issued.last_index();
            if last <= floor {
                return self.persist_entries(driver);
            }
            let from = floor + 1 + self.prng.below(last - floor);
            let hard_state = self.prng.chance(0.3).then(|| HardState {
                term: self.issued.hard_state.term.next(),
                vote: None,
            });
            if let Some(state) = hard_state {
                self.issued.hard_state.term = state.term;
            }
            let count = self.prng.below(4);
            let entries = self.new_entries(from, count);
            self.issue(
                driver,
                Persist {
                    hard_state,
                    truncate_from: Some(LogIndex(from)),
                    ..entries_persist(0, entries)
                },
            );
        }

        fn persist_hard_state(&mut self, driver: &mut Driver) {
            let state = HardState {
                term: self.issued.hard_state.term.next(),
                vote: self
                    .prng
                    .chance(0.5)
                    .then(|| NodeId(1 + self.prng.below(3))),
            };
            self.issued.hard_state.term = state.term;
            let count = if self.prng.chance(0.5) {
                self.prng.below(4)
            } else {
                0
            };
            let entries = self.new_entries(self.issued.last_index() + 1, count);
            let persist = Persist {
                hard_state: Some(state),
                ..entries_persist(0, entries)
            };
            self.issue(driver, persist);
        }

        /// An install from a leader: past the commit index, keeping a matching suffix or
        /// replacing the log.
        fn persist_snapshot(&mut self, driver: &mut Driver) {
            let lower = self.commit.max(self.snapshot_index_max) + 1;
            let last = self.issued.last_index();
            let keep = lower <= last && self.prng.chance(0.5);
            let mut hard_state = None;
            let (index, term, truncate_from) = if keep {
                let index = lower + self.prng.below(last - lower + 1);
                let term = self.issued.term_at(index).expect("in the log");
                let cut = (index + 1 < last && self.prng.chance(0.3))
                    .then(|| LogIndex(index + 2 + self.prng.below(last - index - 1)));
                (index, term, cut)
            } else {
                let index = lower + self.prng.below(last.saturating_sub(lower) + 6);
                if self.issued.term_at(index) == Some(self.issued.hard_state.term) {
                    let state = HardState {
                        term: self.issued.hard_state.term.next(),
                        vote: None,
                    };
                    self.issued.hard_state.term = state.term;
                    hard_state = Some(state);
                }
                let from = LogIndex(index + 1);
                (index, self.issued.hard_state.term, Some(from))
            };
            let padding = ".".repeat(self.prng.below(3_000) as usize);
            let data = format!("installed {index} of term {term}{padding}");
            let snapshot = snapshot(index, term.0, &data);
            self.commit = index;
            self.snapshot_index_max = index;
            // Entries after the install come after the log as it will be.
            let next = match truncate_from {
                Some(from) if from.0 <= index + 1 => index + 1,
                Some(from) => from.0,
                None => last.max(index) + 1,
            };
            let count = if self.prng.chance(0.3) {
                self.prng.below(3)
            } else {
                0
            };
            let entries = self.new_entries(next, count);
            let persist = Persist {
                hard_state,
                snapshot: Some(snapshot),
                truncate_from,
                ..entries_persist(0, entries)
            };
            self.issue(driver, persist);
        }

        /// The node's own snapshot, of entries committed and durable here.
        fn save_snapshot(&mut self, driver: &mut Driver) {
            let lower = self.snapshot_index_max.max(self.issued.snapshot_index()) + 1;
            if lower > self.applied {
                return;
            }
            let index = lower + self.prng.below(self.applied - lower + 1);
            let term = self
                .issued
                .term_at(index)
                .expect("applied entries are in the log");
            let snapshot = snapshot(index, term.0, &format!("own snapshot at {index}"));
            self.own_snapshots.insert(index, snapshot.clone());
            self.snapshot_index_max = index;
            driver.storage.save_snapshot(snapshot);
        }

        /// Takes the driver's outputs; once every Persist is reported, the commit index
        /// may move up to the end of the log.
        fn observe(&mut self, driver: &mut Driver) -> Result<(), String> {
            for output in driver.take_outputs() {
                match output {
                    StorageOutput::Persisted { id } => {
                        if id != self.persisted_last + 1 {
                            let last = self.persisted_last;
                            return Err(format!("Persisted {id} after Persisted {last}"));
                        }
                        self.persisted_last = id;
                    }
                    StorageOutput::SnapshotSaved(_) => {}
                    StorageOutput::Failed(reason) => return Err(reason),
                    StorageOutput::Recovered(_) => return Err("Recovered twice".into()),
                }
            }
            let all_reported = self.persisted_last + 1 == self.persist_id_next;
            if all_reported && self.prng.chance(0.5) {
                let last = self.issued.last_index();
                self.commit = self.commit + self.prng.below(last - self.commit + 1);
                self.applied = self.commit;
            }
            Ok(())
        }

        /// Whether `recovered` is `state`, give or take an own snapshot that covers a
        /// prefix of it.
        fn consistent(&self, state: &LogState, recovered: &Recovered) -> bool {
            if recovered.hard_state != state.hard_state {
                return false;
            }
            let found = LogState::from_recovered(recovered);
            let (index, expected_index) = (found.snapshot_index(), state.snapshot_index());
            if index == expected_index {
                return found.snapshot == state.snapshot && found.entries == state.entries;
            }
            let Some(snapshot) = &recovered.snapshot else {
                return false;
            };
            let after: Vec<Entry> = (state.entries.iter())
                .filter(|entry| entry.index.0 > index)
                .cloned()
                .collect();
            index > expected_index
                && self.own_snapshots.get(&index) == Some(snapshot)
                && state.term_at(index) == Some(snapshot.meta.last_term)
                && found.entries == after
        }

        /// The prefix property: what came back is the state after every part of the
        /// reported Persists and some prefix of the parts after them.
        fn check(&self, recovered: &Recovered) -> Result<(), String> {
            let reported =
                |part: &Part| matches!(part, Part::End(id) if *id == self.persisted_last);
            let boundary = match self.persisted_last {
                0 => 0,
                _ => self.parts.iter().position(reported).expect("issued") + 1,
            };
            let mut state = self.base.clone();
            for part in &self.parts[..boundary] {
                state.apply(part);
            }
            if self.consistent(&state, recovered) {
                return Ok(());
            }
            for part in &self.parts[boundary..] {
                state.apply(part);
                if self.consistent(&state, recovered) {
                    return Ok(());
                }
            }
            let found = LogState::from_recovered(recovered);
            Err(format!(
                "after Persisted {} the recovered state (hard state {:?}, snapshot at {}, \
                 entries to {}) is no prefix of what was issued",
                self.persisted_last,
                found.hard_state,
                found.snapshot_index(),
                found.last_index()
            ))
        }
    }

    /// One seed: a few boots, each running a random workload cut short by a power loss
    /// that keeps a random, possibly torn, subset of unsynced writes.
    fn run_crash_seed(seed: u64) -> Result<(), String> {
        let mut prng = Prng::from_seed(seed);
        let faults = CrashFaults {
            unsynced_kept_probability: prng.unit_f64(),
            torn_probability: prng.unit_f64(),
            sector_size: [512, 1024, 4096][prng.index(3)],
        };
        let mut world = World::new(prng.fork());
        let mut disk = MemStorage::new();
        for boot_number in 0..=BOOTS_PER_SEED {
            let (mut driver, recovered) =
                boot_with(disk, config()).map_err(|e| format!("boot {boot_number}: {e}"))?;
            if boot_number > 0 {
                world
                    .check(&recovered)
                    .map_err(|e| format!("boot {boot_number}: {e}"))?;
            }
            if boot_number == BOOTS_PER_SEED {
                return Ok(());
            }
            world.reboot(&recovered);
            for _ in 0..1 + prng.below(40) {
                world.act(&mut driver);
                for _ in 0..prng.below(8) {
                    driver.step();
                }
                world.observe(&mut driver)?;
            }
            // Often cut the power with a batch on the disk, sometimes after a long drain.
            let drain_max = if prng.chance(0.5) { 4 } else { 30 };
            for _ in 0..prng.below(drain_max) {
                driver.step();
            }
            world.observe(&mut driver)?;
            disk = driver.disk;
            disk.crash_with(&faults, &mut prng);
        }
        unreachable!("the last boot returns")
    }

    #[test]
    fn power_losses_at_random_points_keep_every_reported_persist_and_invent_nothing() {
        // Checks 500 seeded runs of random Persists (entries, truncations, hard states,
        // installs that keep or replace the log), own snapshots and compactions, each cut
        // by power losses at random ops: every boot recovers a prefix of what was issued
        // that contains everything reported Persisted.
        for seed in 0..CRASH_SEEDS_COUNT {
            let outcome = std::panic::catch_unwind(|| run_crash_seed(seed));
            let problem = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(problem)) => problem,
                Err(_) => "panicked".to_string(),
            };
            panic!(
                "seed {seed}: {problem}; replay: SYNOD_RAFT_STORAGE_SEED={seed} cargo test \
                 -p synod-node raft_storage::tests::a_single_crash_seed_replays"
            );
        }
    }

    #[test]
    fn a_single_crash_seed_replays_from_the_environment() {
        // Checks the seed named by SYNOD_RAFT_STORAGE_SEED (seed 1 when unset): the replay
        // command a failing sweep prints.
        let seed = std::env::var("SYNOD_RAFT_STORAGE_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(1);
        if let Err(problem) = run_crash_seed(seed) {
            panic!("seed {seed}: {problem}");
        }
    }
}
