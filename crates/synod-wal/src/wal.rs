//! [`Wal`]: the sans-IO engine of the segmented write-ahead log.
//!
//! The engine owns the order of everything that reaches the disk. Appends queue in memory;
//! [`Wal::poll_io`] hands out the disk operations of the next unit of work (the repair
//! left by recovery, a compaction, or one batch: one write and one fdatasync, preceded by
//! the creation of a segment when the batch does not fit the current one). Only one unit is
//! in flight; appends that arrive meanwhile gather into the next batch, which is group
//! commit. [`Wal::complete`] takes each completion back, in the order the ops were handed
//! out, and [`Wal::poll_output`] reports `Durable` only after the sync that covers it.
//!
//! Two more kinds of unit exist. [`Wal::reset`] discards the whole log (Raft installing a
//! snapshot past its end): a reset segment is created and made durable, then the old
//! segments are removed. And once the active segment is `spare_prepare_at_percent` full,
//! the next segment file (the spare) is written with zeros and synced one op at a time,
//! each op taking its turn between batches, so a roll-over only renames it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use synod_core::disk::{DiskError, DiskOp, DiskReply};
use synod_core::{Instant, Validate};
use thiserror::Error;

use crate::config::WalConfig;
use crate::record::{
    RecordType, SEGMENT_HEADER_SIZE, TRUNCATE_RECORD_SIZE, decode_record, encode_record,
    encode_reset_header, encode_segment_header, record_size,
};

/// The most disk operations one unit of work may hand out.
pub const UNIT_OPS_COUNT_MAX: usize = 4 * 1024;
/// The most old segments one discard unit (after a reset) removes.
pub const DISCARD_REMOVALS_MAX: usize = 1_024;
/// The most bytes of zeros one write of the spare's preparation carries: the longest op a
/// batch can wait behind.
pub const SPARE_WRITE_SIZE: u64 = 256 << 10;
/// The highest sequence a reset may start the log at, far from overflow.
pub const SEQUENCE_MAX: u64 = u64::MAX >> 2;
/// The name of the spare segment: the next segment file, preallocated and synced before it
/// is needed, then given its header and renamed to its segment name at the roll-over. It is
/// not part of the log: recovery ignores it, and every preparation overwrites it whole.
pub const SPARE_SEGMENT_NAME: &str = "wal-spare.tmp";

// A discard unit is its removals and one directory sync.
const _: () = assert!(DISCARD_REMOVALS_MAX < UNIT_OPS_COUNT_MAX);
const _: () = assert!(SPARE_WRITE_SIZE as usize <= synod_core::limits::DISK_IO_SIZE_MAX);

/// The zeros the spare is written with, shared by every preparation write.
static ZEROS: [u8; SPARE_WRITE_SIZE as usize] = [0; SPARE_WRITE_SIZE as usize];

/// Identifies one handed-out disk operation; completions must come back in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IoTag(pub u64);

/// The name of the segment whose first record has `first_lsn`.
pub fn segment_file_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

/// The first lsn named by a segment file name, or `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A fatal storage failure: the log has latched and the node must recover from disk.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("write-ahead log: {op} failed ({error}); the node must stop and recover from disk")]
pub struct WalFatal {
    pub op: &'static str,
    pub error: DiskError,
}

/// What the engine tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalOutput {
    /// Every live entry up to and including `up_to_sequence` is durable. The value can go
    /// down after a truncation: it always describes the current log.
    Durable { up_to_sequence: u64 },
    /// Whole segments below the requested point were removed durably.
    Compacted { first_sequence: u64 },
    /// The reset asked for by [`Wal::reset`] is durable: after a crash the log is empty and
    /// starts at `next_sequence` (plus whatever was appended after the reset and reported
    /// `Durable`). No `Durable` or `Compacted` output is emitted between the call to
    /// `reset` and this one.
    Reset { next_sequence: u64 },
    /// The log has latched after a failed write or sync; the owner must fail and recover.
    Failed(WalFatal),
}

/// Why an append was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AppendError {
    #[error("{0}")]
    Failed(WalFatal),
    #[error("record payload of {size} bytes exceeds record_size_max ({limit} bytes)")]
    TooLarge { size: usize, limit: u32 },
    #[error(
        "{pending_bytes} bytes already wait for a batch (pending_bytes_max {limit}): \
         wait for Durable before appending more"
    )]
    PendingFull { pending_bytes: u64, limit: u64 },
    #[error("record type {record_type:?} is written by the log itself; append entries only")]
    ReservedType { record_type: RecordType },
}

/// Why a truncation was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TruncateError {
    #[error("{0}")]
    Failed(WalFatal),
    #[error("cannot truncate from {from}: the log starts at {first_sequence} (compacted below)")]
    BelowFirst { from: u64, first_sequence: u64 },
    #[error("cannot truncate from {from}: the log ends before {next_sequence}")]
    BeyondEnd { from: u64, next_sequence: u64 },
}

/// Why a reset was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ResetError {
    #[error("{0}")]
    Failed(WalFatal),
    #[error("cannot reset the log to start at {next_sequence}: it must be in 1..={SEQUENCE_MAX}")]
    OutOfRange { next_sequence: u64 },
}

/// Why a read was refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error("{0}")]
    Failed(WalFatal),
    #[error("sequence {from} was compacted: the log starts at {first_sequence}")]
    Compacted { from: u64, first_sequence: u64 },
    #[error("sequence {from} is not written yet: written entries end before {written_next}")]
    NotWritten { from: u64, written_next: u64 },
    #[error("empty range {from}..{to}")]
    EmptyRange { from: u64, to: u64 },
    #[error("{file} at offset {offset}: {reason}")]
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
}

/// One live entry read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    pub sequence: u64,
    pub payload: Bytes,
}

/// One segment file of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) first_lsn: u64,
    pub(crate) name: String,
    /// The bytes handed out for writing (header included): the next record goes here.
    pub(crate) written_end: u64,
    /// The size the segment may grow to.
    pub(crate) capacity: u64,
}

/// Where a live, written entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) sequence: u64,
    pub(crate) lsn: u64,
    pub(crate) segment_first_lsn: u64,
    pub(crate) offset: u64,
    pub(crate) size: u32,
}

/// A record waiting for a batch.
#[derive(Clone, Debug)]
struct PendingRecord {
    record_type: RecordType,
    sequence: u64,
    payload: Bytes,
}

/// The unit of work in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Repair,
    Compaction,
    Batch {
        last_lsn: u64,
    },
    /// The creation of a reset segment, whose header has `header_lsn`.
    Reset {
        next_sequence: u64,
        header_lsn: u64,
    },
    /// Removals of segments a durable reset left behind.
    Discard,
    /// One op of the spare's preparation.
    Spare,
}

/// Where the spare segment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spare {
    /// No spare is known to be ready (a leftover of an earlier life is simply overwritten).
    Absent,
    /// Being prepared: the index of the next op to hand out (see [`Wal::spare_op`]).
    Preparing { step: u64 },
    /// Written with zeros to `segment_size` and synced: the next roll-over renames it.
    Ready,
}

/// What [`crate::Recovery`] hands over to a new engine.
#[derive(Debug)]
pub(crate) struct RecoveredLog {
    pub(crate) segments: Vec<Segment>,
    pub(crate) index: VecDeque<Location>,
    pub(crate) index_base: u64,
    pub(crate) next_lsn: u64,
    pub(crate) repair: Vec<DiskOp>,
}

/// The write-ahead log engine. See the crate documentation for the driver loop.
#[derive(Debug)]
pub struct Wal {
    config: WalConfig,
    failure: Option<WalFatal>,
    segments: Vec<Segment>,
    /// Live entries that have been handed out for writing, in order.
    index: VecDeque<Location>,
    /// The sequence of the first live written entry (the next one when `index` is empty).
    index_base: u64,
    next_lsn: u64,
    /// The sequence the next append gets.
    next_sequence: u64,
    /// The next sequence after replaying only the records handed out for writing, as
    /// recovery would: what a new segment's header records.
    issued_next_sequence: u64,
    pending: VecDeque<PendingRecord>,
    pending_bytes: u64,
    repair: Vec<DiskOp>,
    ops_ready: VecDeque<DiskOp>,
    ops_in_flight: VecDeque<IoTag>,
    tag_next: u64,
    unit: Option<Unit>,
    unit_ops_remaining: usize,
    durable_lsn: u64,
    durable_reported: Option<u64>,
    compaction_below: Option<u64>,
    /// A reset asked for and not yet handed out: the sequence the log restarts at.
    reset_requested: Option<u64>,
    /// Segments of the log before a durable reset, still to be removed, oldest first.
    discarded: VecDeque<String>,
    spare: Spare,
    /// The last unit was a spare op: a waiting batch goes next, so no batch ever waits
    /// behind more than one op of the spare.
    spare_went_last: bool,
    hold_since: Option<Instant>,
    outputs: VecDeque<WalOutput>,
}

impl Wal {
    /// An empty log in an empty directory. Use [`crate::Recovery`] for an existing one.
    pub fn new(config: WalConfig) -> Result<Wal, synod_core::ConfigError> {
        config.validate()?;
        let log = RecoveredLog {
            segments: Vec::new(),
            index: VecDeque::new(),
            index_base: 1,
            next_lsn: 1,
            repair: Vec::new(),
        };
        Ok(Wal::from_recovered(config, log))
    }

    pub(crate) fn from_recovered(config: WalConfig, log: RecoveredLog) -> Wal {
        let next_sequence = log.index_base + log.index.len() as u64;
        let wal = Wal {
            config,
            failure: None,
            segments: log.segments,
            index: log.index,
            index_base: log.index_base,
            next_lsn: log.next_lsn,
            next_sequence,
            issued_next_sequence: next_sequence,
            pending: VecDeque::new(),
            pending_bytes: 0,
            repair: log.repair,
            ops_ready: VecDeque::new(),
            ops_in_flight: VecDeque::new(),
            tag_next: 0,
            unit: None,
            unit_ops_remaining: 0,
            durable_lsn: 0,
            durable_reported: None,
            compaction_below: None,
            reset_requested: None,
            discarded: VecDeque::new(),
            spare: Spare::Absent,
            spare_went_last: false,
            hold_since: None,
            outputs: VecDeque::new(),
        };
        wal.invariants();
        wal
    }

    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// The sequence the next append gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The first live sequence (entries below it were compacted).
    pub fn first_sequence(&self) -> u64 {
        self.index_base
    }

    /// The fatal failure, once the log has latched.
    pub fn failure(&self) -> Option<&WalFatal> {
        self.failure.as_ref()
    }

    /// Whether nothing is queued, handed out or in flight, the spare's preparation
    /// included.
    pub fn is_idle(&self) -> bool {
        !self.has_requested_work() && self.unit.is_none() && !self.spare_due()
    }

    /// Whether anything the owner asked for is not done yet: appends not yet durable, a
    /// repair, reset, discard or compaction, or a unit of those in flight. The spare's
    /// preparation is background work and does not count: a synchronous driver flushes
    /// until this is false, and the spare advances by the op between batches it is given.
    pub fn has_requested_work(&self) -> bool {
        let unit_requested = self.unit.is_some_and(|unit| unit != Unit::Spare);
        unit_requested
            || !self.pending.is_empty()
            || !self.repair.is_empty()
            || self.reset_requested.is_some()
            || !self.discarded.is_empty()
            || self.compaction_below.is_some()
    }

    /// The instant at which a held small batch should be issued, if one is held: the driver
    /// sets a timer and calls [`Wal::poll_io`] again then.
    pub fn deadline(&self) -> Option<Instant> {
        let since = self.hold_since?;
        Some(since.saturating_add(self.config.batch_wait_max))
    }

    /// Queues an entry and returns its sequence. It is durable once a `Durable` output
    /// covers the sequence; nothing that depends on it may be acknowledged before.
    pub fn append(&mut self, record_type: RecordType, payload: Bytes) -> Result<u64, AppendError> {
        if let Some(failure) = &self.failure {
            return Err(AppendError::Failed(failure.clone()));
        }
        if record_type != RecordType::Entry {
            return Err(AppendError::ReservedType { record_type });
        }
        let limit = self.config.record_size_max;
        if payload.len() > limit as usize {
            return Err(AppendError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        let size = record_size(payload.len()) as u64;
        if self.pending_bytes + size > self.config.pending_bytes_max {
            return Err(AppendError::PendingFull {
                pending_bytes: self.pending_bytes,
                limit: self.config.pending_bytes_max,
            });
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.push_pending(record_type, sequence, payload);
        self.invariants();
        Ok(sequence)
    }

    fn push_pending(&mut self, record_type: RecordType, sequence: u64, payload: Bytes) {
        self.pending_bytes += record_size(payload.len()) as u64;
        self.pending.push_back(PendingRecord {
            record_type,
            sequence,
            payload,
        });
    }

    /// The next disk operation to submit, if any. Operations must be carried out in the
    /// order they are handed out, and their completions given back in that order.
    ///
    /// One operation is out at a time: the next is handed out only after the previous one
    /// succeeded. Disk services run queued operations in order and do not stop at a
    /// failure, so a batch written after a failed segment-header write would otherwise
    /// reach the disk and later look like proof that the damaged header had been synced
    /// (found by the simulator's `wal` scenario).
    pub fn poll_io(&mut self, now: Instant) -> Option<(IoTag, DiskOp)> {
        if self.failure.is_some() || !self.ops_in_flight.is_empty() {
            return None;
        }
        if self.unit.is_none() {
            self.start_next_unit(now);
        }
        let op = self.ops_ready.pop_front()?;
        let tag = IoTag(self.tag_next);
        self.tag_next += 1;
        self.ops_in_flight.push_back(tag);
        self.invariants();
        Some((tag, op))
    }

    /// Takes the completion of the operation handed out with `tag`.
    pub fn complete(&mut self, tag: IoTag, result: Result<DiskReply, DiskError>) {
        let expected = self.ops_in_flight.pop_front();
        assert_eq!(
            expected,
            Some(tag),
            "WAL completions must come back in FIFO order"
        );
        if self.failure.is_some() {
            return;
        }
        if let Err(error) = result {
            self.latch(error);
            return;
        }
        self.unit_ops_remaining -= 1;
        if self.unit_ops_remaining == 0 {
            self.finish_unit();
        }
        self.invariants();
    }

    /// The operation handed out and not yet completed, for tests.
    #[cfg(test)]
    pub(crate) fn op_in_flight(&self) -> Option<IoTag> {
        self.ops_in_flight.front().copied()
    }

    /// Operations of the current unit still to complete, for tests.
    #[cfg(test)]
    pub(crate) fn unit_ops_left(&self) -> u64 {
        self.unit_ops_remaining as u64
    }

    /// The next output for the driver.
    pub fn poll_output(&mut self) -> Option<WalOutput> {
        self.outputs.pop_front()
    }

    fn latch(&mut self, error: DiskError) {
        let op = match &error {
            DiskError::NotFound { op, .. }
            | DiskError::Io { op, .. }
            | DiskError::TooLarge { op, .. } => op,
            DiskError::InvalidPath { .. } | DiskError::PreviousIo { .. } => "io",
        };
        let fatal = WalFatal { op, error };
        self.failure = Some(fatal.clone());
        self.ops_ready.clear();
        self.unit = None;
        self.hold_since = None;
        self.outputs.push_back(WalOutput::Failed(fatal));
    }

    fn finish_unit(&mut self) {
        let unit = self.unit.take().expect("a unit was in flight");
        self.spare_went_last = unit == Unit::Spare;
        // Between a call to `reset` and the durability of the reset segment, nothing about
        // the old log (nor the empty new one) may be reported: a crash could bring either.
        let withheld = self.reset_requested.is_some();
        match unit {
            Unit::Repair => self.durable_lsn = self.next_lsn - 1,
            Unit::Batch { last_lsn } => self.durable_lsn = last_lsn,
            Unit::Compaction if withheld => {}
            Unit::Compaction => {
                let first_sequence = self.index_base;
                self.outputs
                    .push_back(WalOutput::Compacted { first_sequence });
            }
            Unit::Reset {
                next_sequence,
                header_lsn,
            } => {
                self.durable_lsn = header_lsn;
                self.durable_reported = Some(next_sequence - 1);
                if !withheld {
                    self.outputs.push_back(WalOutput::Reset { next_sequence });
                }
            }
            Unit::Discard => {}
            Unit::Spare => self.advance_spare(),
        }
        let reports = matches!(unit, Unit::Repair | Unit::Batch { .. });
        let durable = self.durable_sequence();
        if self.durable_reported != Some(durable) && reports && !withheld {
            self.durable_reported = Some(durable);
            let output = WalOutput::Durable {
                up_to_sequence: durable,
            };
            self.outputs.push_back(output);
        }
    }

    /// The highest sequence such that every live entry up to it is durable.
    pub fn durable_sequence(&self) -> u64 {
        let count = self
            .index
            .partition_point(|location| location.lsn <= self.durable_lsn);
        match count {
            0 => self.index_base - 1,
            _ => self.index[count - 1].sequence,
        }
    }

    /// Picks the next unit: the repair, a reset, the removals a reset left, a compaction,
    /// then batches and the spare's ops in turn (a waiting batch never waits behind more
    /// than one op of the spare, and the spare is never starved by a stream of batches).
    fn start_next_unit(&mut self, now: Instant) {
        assert!(self.ops_ready.is_empty(), "ops left without a unit");
        if !self.repair.is_empty() {
            self.ops_ready.extend(std::mem::take(&mut self.repair));
            self.begin_unit(Unit::Repair);
            return;
        }
        if self.reset_requested.is_some() {
            self.issue_reset();
            return;
        }
        if !self.discarded.is_empty() {
            self.issue_discard();
            return;
        }
        if self.compaction_below.is_some() {
            self.issue_compaction();
            if self.unit.is_some() {
                return;
            }
        }
        let batch_ready = !self.pending.is_empty() && !self.holds_batch(now);
        if self.spare_due() && !(batch_ready && self.spare_went_last) {
            self.issue_spare_op();
        } else if batch_ready {
            self.issue_batch();
        }
    }

    fn begin_unit(&mut self, unit: Unit) {
        assert!(
            self.ops_ready.len() <= UNIT_OPS_COUNT_MAX,
            "unit over its op limit"
        );
        self.unit_ops_remaining = self.ops_ready.len();
        self.unit = Some(unit);
    }

    /// Whether a small batch should wait for more appends (`batch_wait_max`).
    fn holds_batch(&mut self, now: Instant) -> bool {
        let full = self.pending_bytes >= u64::from(self.config.batch_size_max)
            || self.pending.len() >= self.config.batch_records_max as usize;
        if self.config.batch_wait_max.is_zero() || full {
            self.hold_since = None;
            return false;
        }
        let since = *self.hold_since.get_or_insert(now);
        if now >= since.saturating_add(self.config.batch_wait_max) {
            self.hold_since = None;
            return false;
        }
        true
    }

    /// Takes records off the pending queue for one batch.
    fn take_batch(&mut self) -> (Vec<PendingRecord>, usize) {
        let mut records = Vec::new();
        let mut size = 0;
        while let Some(record) = self.pending.front() {
            let record_bytes = record_size(record.payload.len());
            let fits = size + record_bytes <= self.config.batch_size_max as usize
                && records.len() < self.config.batch_records_max as usize;
            if !fits && !records.is_empty() {
                break;
            }
            size += record_bytes;
            self.pending_bytes -= record_bytes as u64;
            records.push(self.pending.pop_front().expect("front exists"));
        }
        (records, size)
    }

    fn issue_batch(&mut self) {
        let (records, size) = self.take_batch();
        let needs_segment = match self.segments.last() {
            None => true,
            Some(segment) => segment.written_end + size as u64 > segment.capacity,
        };
        if needs_segment {
            self.create_segment(false);
        }
        let segment = self.segments.last().expect("a segment exists");
        let (name, offset, segment_first_lsn) =
            (segment.name.clone(), segment.written_end, segment.first_lsn);
        let mut batch = BytesMut::with_capacity(size);
        for (batch_offset, record) in records.iter().enumerate() {
            let lsn = self.next_lsn;
            self.next_lsn += 1;
            let record_offset = offset + batch.len() as u64;
            let batch_offset = u16::try_from(batch_offset).expect("batch_records_max fits u16");
            let payload = &record.payload;
            encode_record(
                &mut batch,
                record.record_type,
                batch_offset,
                lsn,
                record.sequence,
                payload,
            );
            let location = Location {
                sequence: record.sequence,
                lsn,
                segment_first_lsn,
                offset: record_offset,
                size: record_size(payload.len()) as u32,
            };
            self.replay_issued(record.record_type, location);
        }
        assert_eq!(batch.len(), size, "batch size as planned");
        let last_lsn = self.next_lsn - 1;
        self.segments.last_mut().expect("segment").written_end += size as u64;
        let data = batch.freeze();
        self.ops_ready.push_back(DiskOp::Write {
            path: name.clone(),
            offset,
            data,
        });
        self.ops_ready.push_back(DiskOp::Sync { path: name });
        self.begin_unit(Unit::Batch { last_lsn });
    }

    /// Applies a handed-out record to the index, exactly as recovery replays it.
    fn replay_issued(&mut self, record_type: RecordType, location: Location) {
        self.issued_next_sequence = match record_type {
            RecordType::Entry => location.sequence + 1,
            _ => location.sequence,
        };
        match record_type {
            RecordType::Entry => {
                // Truncated entries were dropped from the index when truncate was called;
                // an entry handed out now continues the live log.
                let expected = self.index_base + self.index.len() as u64;
                assert_eq!(location.sequence, expected, "entries are consecutive");
                self.index.push_back(location);
            }
            RecordType::Truncate => self.truncate_index(location.sequence),
            RecordType::SegmentHeader => unreachable!("segment headers are not queued"),
        }
    }

    fn truncate_index(&mut self, from: u64) {
        while self
            .index
            .back()
            .is_some_and(|location| location.sequence >= from)
        {
            self.index.pop_back();
        }
        if self.index.is_empty() {
            self.index_base = self.index_base.min(from);
        }
    }

    /// Hands out the creation of a new segment (a reset segment when `reset`): its header,
    /// its preallocation, and the syncs that make both and its name durable before any
    /// record in it can be. With a spare ready, the header goes into the spare, which is
    /// synced and renamed: the preallocation was paid before.
    fn create_segment(&mut self, reset: bool) {
        let first_lsn = self.next_lsn;
        self.next_lsn += 1;
        let next_sequence = self.issued_next_sequence;
        let name = segment_file_name(first_lsn);
        let header = if reset {
            encode_reset_header(first_lsn, next_sequence)
        } else {
            encode_segment_header(first_lsn, next_sequence)
        };
        let spare_ready = self.spare == Spare::Ready;
        let path = if spare_ready {
            SPARE_SEGMENT_NAME.to_string()
        } else {
            name.clone()
        };
        self.ops_ready.push_back(DiskOp::Write {
            path: path.clone(),
            offset: 0,
            data: header.freeze(),
        });
        if spare_ready {
            self.spare = Spare::Absent;
            self.ops_ready
                .push_back(DiskOp::Sync { path: path.clone() });
            let to = name.clone();
            self.ops_ready.push_back(DiskOp::Rename { from: path, to });
        } else {
            let len = self.config.segment_size;
            let set_len = DiskOp::SetLen {
                path: path.clone(),
                len,
            };
            self.ops_ready.push_back(set_len);
            self.ops_ready.push_back(DiskOp::Sync { path });
        }
        self.ops_ready.push_back(DiskOp::SyncDir);
        self.segments.push(Segment {
            first_lsn,
            name,
            written_end: SEGMENT_HEADER_SIZE as u64,
            capacity: self.config.segment_size,
        });
    }

    /// Removes every entry at or after `from`; the next append gets `from`. Durable (a
    /// crash cannot bring the entries back) once a batch after it is: a truncate record is
    /// written with the next batch, and `Durable` reports only the surviving entries.
    pub fn truncate_suffix(&mut self, from: u64) -> Result<(), TruncateError> {
        if let Some(failure) = &self.failure {
            return Err(TruncateError::Failed(failure.clone()));
        }
        if from < self.index_base {
            let first_sequence = self.index_base;
            return Err(TruncateError::BelowFirst {
                from,
                first_sequence,
            });
        }
        if from > self.next_sequence {
            let next_sequence = self.next_sequence;
            return Err(TruncateError::BeyondEnd {
                from,
                next_sequence,
            });
        }
        let before = self.pending.len();
        self.pending
            .retain(|record| record.record_type != RecordType::Entry || record.sequence < from);
        if self.pending.len() != before {
            let sizes = self
                .pending
                .iter()
                .map(|record| record_size(record.payload.len()));
            self.pending_bytes = sizes.sum::<usize>() as u64;
        }
        if self.pending_replay_next() > from {
            self.push_pending(RecordType::Truncate, from, Bytes::new());
        }
        self.truncate_index(from);
        self.next_sequence = from;
        self.invariants();
        Ok(())
    }

    /// The next sequence after replaying the written log and then the pending records.
    fn pending_replay_next(&self) -> u64 {
        let mut next = self.index_base + self.index.len() as u64;
        for record in &self.pending {
            next = match record.record_type {
                RecordType::Entry => record.sequence + 1,
                _ => record.sequence,
            };
        }
        next
    }

    /// Discards the whole log, pending appends included, and starts it afresh at
    /// `next_sequence` (Raft installing a snapshot that ends past the log, or conflicts with
    /// it). The next append gets `next_sequence` at once; it is written after the reset.
    ///
    /// On disk: a reset segment (its header says the log starts here) is created, synced
    /// and its name made durable; only then are the old segments removed. A crash at any
    /// point recovers either the old log or the empty log at `next_sequence` (with what was
    /// appended after the reset, as far as it was written), never a mix. `Reset` reports
    /// it durable; until then no `Durable` or `Compacted` is reported.
    pub fn reset(&mut self, next_sequence: u64) -> Result<(), ResetError> {
        if let Some(failure) = &self.failure {
            return Err(ResetError::Failed(failure.clone()));
        }
        if !(1..=SEQUENCE_MAX).contains(&next_sequence) {
            return Err(ResetError::OutOfRange { next_sequence });
        }
        self.pending.clear();
        self.pending_bytes = 0;
        self.hold_since = None;
        self.compaction_below = None;
        self.index.clear();
        self.index_base = next_sequence;
        self.next_sequence = next_sequence;
        self.reset_requested = Some(next_sequence);
        self.invariants();
        Ok(())
    }

    /// Hands out the creation of the reset segment; the old segments are removed by the
    /// discard units that follow, once it is durable.
    fn issue_reset(&mut self) {
        let next_sequence = self.reset_requested.take().expect("a reset was requested");
        assert!(
            self.pending_replay_next() >= next_sequence,
            "appends after the reset"
        );
        let old = std::mem::take(&mut self.segments);
        self.discarded
            .extend(old.into_iter().map(|segment| segment.name));
        self.issued_next_sequence = next_sequence;
        let header_lsn = self.next_lsn;
        self.create_segment(true);
        self.begin_unit(Unit::Reset {
            next_sequence,
            header_lsn,
        });
    }

    /// Removes up to [`DISCARD_REMOVALS_MAX`] segments a durable reset left behind, then
    /// syncs the directory. Their order does not matter: recovery discards every segment
    /// older than the newest reset segment.
    fn issue_discard(&mut self) {
        let count = self.discarded.len().min(DISCARD_REMOVALS_MAX);
        for path in self.discarded.drain(..count) {
            self.ops_ready.push_back(DiskOp::Remove { path });
        }
        self.ops_ready.push_back(DiskOp::SyncDir);
        self.begin_unit(Unit::Discard);
    }

    /// Whether the spare has work to do: it is being prepared, or the active segment has
    /// passed `spare_prepare_at_percent` and no spare is ready.
    fn spare_due(&self) -> bool {
        let percent = u128::from(self.config.spare_prepare_at_percent);
        match self.spare {
            Spare::Ready => false,
            Spare::Preparing { .. } => true,
            Spare::Absent => {
                let Some(active) = self.segments.last() else {
                    return false;
                };
                percent > 0
                    && u128::from(active.written_end) * 100 >= u128::from(active.capacity) * percent
            }
        }
    }

    /// The spare's preparation, step by step: every `SPARE_WRITE_SIZE` piece written with
    /// zeros and synced (so the sync at the roll-over has nothing left to flush), then the
    /// length set (a leftover spare of an earlier life may be longer) and synced. The first
    /// write creates the file. Returns `None` past the last step.
    fn spare_op(&self, step: u64) -> Option<DiskOp> {
        let path = SPARE_SEGMENT_NAME.to_string();
        let size = self.config.segment_size;
        let pieces_count = size.div_ceil(SPARE_WRITE_SIZE);
        let op = match step {
            step if step < 2 * pieces_count && step % 2 == 0 => {
                let offset = step / 2 * SPARE_WRITE_SIZE;
                let len = (size - offset).min(SPARE_WRITE_SIZE) as usize;
                let data = Bytes::from_static(&ZEROS[..len]);
                DiskOp::Write { path, offset, data }
            }
            step if step < 2 * pieces_count => DiskOp::Sync { path },
            step if step == 2 * pieces_count => DiskOp::SetLen { path, len: size },
            step if step == 2 * pieces_count + 1 => DiskOp::Sync { path },
            _ => return None,
        };
        Some(op)
    }

    fn issue_spare_op(&mut self) {
        let step = match self.spare {
            Spare::Preparing { step } => step,
            _ => 0,
        };
        let op = self.spare_op(step).expect("a due spare has a step left");
        self.spare = Spare::Preparing { step };
        self.ops_ready.push_back(op);
        self.begin_unit(Unit::Spare);
    }

    fn advance_spare(&mut self) {
        let Spare::Preparing { step } = self.spare else {
            // The spare was taken by a roll-over while its last op was out: impossible,
            // since a roll-over is part of a batch and only one unit runs at a time.
            unreachable!("a spare op completed with no preparation under way");
        };
        self.spare = match self.spare_op(step + 1) {
            Some(_) => Spare::Preparing { step: step + 1 },
            None => Spare::Ready,
        };
    }

    /// Asks for the removal of every segment whose live entries are all below `below`
    /// (never the segment being written). Reported by `Compacted` once durable.
    pub fn compact_prefix(&mut self, below: u64) {
        if self.failure.is_some() {
            return;
        }
        self.compaction_below = Some(self.compaction_below.map_or(below, |old| old.max(below)));
        self.invariants();
    }

    fn issue_compaction(&mut self) {
        let below = self.compaction_below.take().expect("compaction requested");
        // A compaction could remove the reset segment; the segments it discarded must be
        // gone first, or recovery would chain them to what follows.
        assert!(self.discarded.is_empty(), "compaction before the discards");
        // Segments go oldest first, each removal made durable before the next, so a crash
        // leaves a suffix of the segments and never a hole in the middle of the log.
        while self.segments.len() > 1 {
            let next_first_lsn = self.segments[1].first_lsn;
            let in_segment = self
                .index
                .partition_point(|location| location.lsn < next_first_lsn);
            let removable = in_segment == 0 || self.index[in_segment - 1].sequence < below;
            if !removable || self.ops_ready.len() + 2 > UNIT_OPS_COUNT_MAX {
                break;
            }
            for _ in 0..in_segment {
                let location = self.index.pop_front().expect("counted above");
                self.index_base = location.sequence + 1;
            }
            let segment = self.segments.remove(0);
            self.ops_ready
                .push_back(DiskOp::Remove { path: segment.name });
            self.ops_ready.push_back(DiskOp::SyncDir);
        }
        if !self.ops_ready.is_empty() {
            self.begin_unit(Unit::Compaction);
        }
    }

    /// Plans the reads of the live entries `from..to` that have been handed out for
    /// writing (at most `read_size_max` bytes: the plan may cover fewer). Submit the plan's
    /// ops after every op handed out before (FIFO makes them see the written data), then
    /// decode the replies with [`ReadPlan::decode`].
    pub fn read_range(&self, from: u64, to: u64) -> Result<ReadPlan, ReadError> {
        if let Some(failure) = &self.failure {
            return Err(ReadError::Failed(failure.clone()));
        }
        if from < self.index_base {
            let first_sequence = self.index_base;
            return Err(ReadError::Compacted {
                from,
                first_sequence,
            });
        }
        let written_next = self.index_base + self.index.len() as u64;
        if from >= written_next {
            return Err(ReadError::NotWritten { from, written_next });
        }
        if from >= to {
            return Err(ReadError::EmptyRange { from, to });
        }
        let start = (from - self.index_base) as usize;
        let end = (to.min(written_next) - self.index_base) as usize;
        let mut plan = ReadPlan::default();
        let mut bytes = 0u64;
        for location in self.index.range(start..end) {
            bytes += u64::from(location.size);
            if bytes > u64::from(self.config.read_size_max) && !plan.reads.is_empty() {
                break;
            }
            let name = self.segment_name(location.segment_first_lsn);
            plan.add(name, *location);
        }
        Ok(plan)
    }

    fn segment_name(&self, first_lsn: u64) -> String {
        let index = self
            .segments
            .partition_point(|segment| segment.first_lsn < first_lsn);
        let segment = &self.segments[index];
        assert_eq!(segment.first_lsn, first_lsn, "indexed segment exists");
        segment.name.clone()
    }

    /// Asserts the engine's invariants; called at the end of every public step.
    /// Everything `invariants` checks plus the whole index and the pending accounting:
    /// O(entries), for tests and simulation sweeps rather than every step.
    pub fn invariants_exhaustive(&self) {
        self.invariants();
        for (position, location) in self.index.iter().enumerate() {
            let expected = self.index_base + position as u64;
            assert_eq!(location.sequence, expected, "index gap");
        }
        for pair in self.index.iter().zip(self.index.iter().skip(1)) {
            assert!(pair.0.lsn < pair.1.lsn, "index lsns increase");
        }
        let sizes: usize = self
            .pending
            .iter()
            .map(|r| record_size(r.payload.len()))
            .sum();
        assert_eq!(sizes as u64, self.pending_bytes, "pending bytes accounted");
    }

    pub fn invariants(&self) {
        for pair in self.segments.windows(2) {
            assert!(
                pair[0].first_lsn < pair[1].first_lsn,
                "segments ordered by lsn"
            );
        }
        for segment in &self.segments {
            assert!(segment.written_end <= segment.capacity, "segment overfull");
        }
        // The whole-index checks cost O(entries) and live in `invariants_exhaustive`;
        // per step only the ends of the index are checked, so a step stays O(batch).
        if let (Some(first), Some(last)) = (self.index.front(), self.index.back()) {
            assert_eq!(first.sequence, self.index_base, "index starts at its base");
            let span = (self.index.len() - 1) as u64;
            assert_eq!(last.sequence, self.index_base + span, "index gap");
            assert!(first.lsn <= last.lsn, "index lsns increase");
        }
        let slack = (TRUNCATE_RECORD_SIZE * self.pending.len()) as u64;
        assert!(
            self.pending_bytes <= self.config.pending_bytes_max + slack,
            "pending bound"
        );
        assert!(
            self.durable_lsn < self.next_lsn,
            "durable beyond the written log"
        );
        assert!(
            self.unit.is_some() || self.ops_ready.is_empty(),
            "ops without a unit"
        );
        assert!(
            self.ops_in_flight.len() <= UNIT_OPS_COUNT_MAX * 2,
            "ops in flight bound"
        );
        assert!(self.next_sequence >= self.index_base, "next below the base");
        if self.reset_requested.is_some() {
            assert!(
                self.index.is_empty(),
                "entries written before the reset segment"
            );
        }
        if self.unit == Some(Unit::Compaction) {
            assert!(self.discarded.is_empty(), "compaction before the discards");
        }
    }
}

/// One read of a plan: a contiguous run of records in one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRead {
    pub file: String,
    pub offset: u64,
    pub len: u32,
    locations: Vec<Location>,
}

/// The reads that fetch a range of entries, and how to check what comes back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadPlan {
    reads: Vec<PlannedRead>,
}

impl ReadPlan {
    fn add(&mut self, file: String, location: Location) {
        if let Some(last) = self.reads.last_mut()
            && last.file == file
            && last.offset + u64::from(last.len) == location.offset
            && u64::from(last.len) + u64::from(location.size)
                <= synod_core::limits::DISK_IO_SIZE_MAX as u64
        {
            last.len += location.size;
            last.locations.push(location);
            return;
        }
        self.reads.push(PlannedRead {
            file,
            offset: location.offset,
            len: location.size,
            locations: vec![location],
        });
    }

    /// The read operations, to be submitted in order.
    pub fn ops(&self) -> Vec<DiskOp> {
        let read = |planned: &PlannedRead| DiskOp::Read {
            path: planned.file.clone(),
            offset: planned.offset,
            len: planned.len,
        };
        self.reads.iter().map(read).collect()
    }

    /// The sequences the plan covers, `first..end`.
    pub fn sequences(&self) -> std::ops::Range<u64> {
        let first = self
            .reads
            .first()
            .map_or(0, |read| read.locations[0].sequence);
        let count: usize = self.reads.iter().map(|read| read.locations.len()).sum();
        first..first + count as u64
    }

    /// Checks and decodes the replies of [`ReadPlan::ops`], one per op, in order: every
    /// record's checksums, type, lsn and sequence must be what was written.
    pub fn decode(&self, replies: &[Bytes]) -> Result<Vec<WalEntry>, ReadError> {
        assert_eq!(
            replies.len(),
            self.reads.len(),
            "one reply per planned read"
        );
        let mut entries = Vec::new();
        for (planned, reply) in self.reads.iter().zip(replies) {
            for location in &planned.locations {
                let start = (location.offset - planned.offset) as usize;
                let corruption = |reason: String| ReadError::Corruption {
                    file: planned.file.clone(),
                    offset: location.offset,
                    reason,
                };
                let bytes = reply.get(start..).unwrap_or(&[]);
                let record =
                    decode_record(bytes, u32::MAX).map_err(|e| corruption(e.to_string()))?;
                let header = record.header;
                let expected = (RecordType::Entry, location.lsn, location.sequence);
                if (header.record_type, header.lsn, header.sequence) != expected {
                    return Err(corruption(format!(
                        "found {:?} lsn {} sequence {}, expected {expected:?}",
                        header.record_type, header.lsn, header.sequence
                    )));
                }
                let payload_start = start + crate::record::RECORD_HEADER_SIZE;
                let payload = reply.slice(payload_start..payload_start + record.payload.len());
                entries.push(WalEntry {
                    sequence: location.sequence,
                    payload,
                });
            }
        }
        Ok(entries)
    }
}
