//! [`Recovery`]: rebuilds a [`Wal`] from the contents of its segment files, telling a torn
//! tail (an incomplete last write, never acknowledged: truncated) from corruption in the
//! middle of the log (damage followed by a record written after it: reported with file and
//! offset, never truncated). A reset segment discards every segment before it, whatever
//! they hold. Pure over the bytes it is fed; see `docs/wal_format.md` for the argument.
//!
//! ```text
//! let names = list the data directory;
//! let mut recovery = Recovery::new(config)?;
//! for name in Recovery::segment_names(&names)? {
//!     recovery.feed(&name, &read_whole_file(name))?;
//! }
//! let (wal, report) = recovery.finish()?;   // the wal hands out its repair ops first
//! ```

use std::collections::VecDeque;

use bytes::Bytes;
use synod_core::disk::DiskOp;
use synod_core::{ConfigError, Validate};
use thiserror::Error;

use crate::config::WalConfig;
use crate::record::{
    DecodeError, RECORD_ALIGNMENT, RECORD_HEADER_SIZE, RESET_MAGIC, RecordHeader, RecordType,
    SEGMENT_MAGIC, decode_header, decode_record,
};
use crate::wal::{
    Location, RecoveredLog, SPARE_SEGMENT_NAME, Segment, Wal, parse_segment_file_name,
};

/// The piece size recovery looks at for evidence of a torn write: the smallest sector.
pub const TEAR_PIECE_SIZE: u64 = 512;

/// Why the log cannot be recovered.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecoveryError {
    #[error(
        "write-ahead log corrupt: {file} at offset {offset}: {reason}. Acknowledged data may \
         be damaged, so nothing was truncated: restore the range from a peer or a backup"
    )]
    Corruption {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "{file} is not a synod WAL segment (at offset {offset}: {reason}); move it out of the \
         data directory"
    )]
    Foreign {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("{file}: a file named like a WAL segment must be wal-<20 digits>.log")]
    BadName { file: String },
    #[error("{file}: segments must be fed in ascending order, after {previous}")]
    OutOfOrder { file: String, previous: String },
    #[error("{0}")]
    Config(ConfigError),
}

/// An incomplete last write that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: String,
    pub offset: u64,
    /// Non-zero bytes found from `offset` on, which the repair overwrites with zeros.
    pub bytes_discarded: u64,
    /// Why the damage is taken for a torn write.
    pub reason: String,
}

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_count: usize,
    pub entries_count: u64,
    pub first_sequence: u64,
    pub next_sequence: u64,
    pub torn_tail: Option<TornTail>,
    /// Segments removed by the repair: incomplete creations or files past a torn tail.
    pub segments_removed: Vec<String>,
    /// The newest reset segment, when the log was reset: the log starts there.
    pub reset_segment: Option<String>,
    /// Segments older than the reset segment, which the repair removes once the reset
    /// segment is durable.
    pub segments_discarded: Vec<String>,
    /// Unreferenced non-zero bytes after the end of a full segment: (file, offset).
    pub garbage_ignored: Vec<(String, u64)>,
}

/// What the bytes at the end of the valid log look like.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Evidence {
    /// An all-zero slot: space never written, or a sector of a torn write that was lost.
    Zero,
    /// Damage that a torn write explains.
    Torn(String),
    /// Damage that a torn write cannot explain.
    Corrupt(String),
}

/// The end of the valid log, once found.
#[derive(Clone, Debug)]
struct End {
    file: String,
    offset: u64,
    expected_lsn: u64,
    evidence: Evidence,
    /// The end of the last non-zero slot from `offset` on (`offset` when there is none).
    garbage_end: u64,
    /// Whether any valid record lies after `offset`.
    valid_after: bool,
    /// A valid record after the end that a torn last write cannot explain: (file, offset,
    /// lsn).
    proof: Option<(String, u64, u64)>,
    /// The end is at the start of an incomplete segment, which the repair removes.
    remove_file: bool,
}

/// Rebuilds a [`Wal`] from its segments, fed in order.
#[derive(Debug)]
pub struct Recovery {
    config: WalConfig,
    segments: Vec<Segment>,
    index: VecDeque<Location>,
    index_base: u64,
    next_lsn: u64,
    end: Option<End>,
    /// The end is final: later segments are only searched for proof and removed.
    end_is_final: bool,
    removable: Vec<String>,
    /// Segments before the newest reset segment, whatever they hold.
    discarded: Vec<String>,
    last_batch: Option<(String, u64, Bytes)>,
    last_file_len: u64,
    last_fed: Option<(String, u64)>,
    /// Non-zero bytes past a torn tail, which the repair overwrites: (file, from, to).
    zero_range: Option<(String, u64, u64)>,
    /// Damage found in a segment, reported by `finish` unless a later reset segment
    /// discards it with the rest of the log before it (a crash during the removals that
    /// follow a reset leaves holes among the discarded segments).
    deferred: Option<RecoveryError>,
    report: RecoveryReport,
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}

/// The most set bits a stretch of never-written space may show (latent bit flips there).
/// A real record header has two random 32-bit checksums, so it never comes close.
pub const BLANK_BITS_MAX: u32 = 4;

/// Whether bytes look never written: zeros, give or take a few flipped bits.
fn is_blank(bytes: &[u8]) -> bool {
    let mut bits = 0;
    for byte in bytes {
        bits += byte.count_ones();
        if bits > BLANK_BITS_MAX {
            return false;
        }
    }
    true
}

impl Recovery {
    pub fn new(config: WalConfig) -> Result<Recovery, RecoveryError> {
        config.validate().map_err(RecoveryError::Config)?;
        Ok(Recovery {
            config,
            segments: Vec::new(),
            index: VecDeque::new(),
            index_base: 1,
            next_lsn: 1,
            end: None,
            end_is_final: false,
            removable: Vec::new(),
            discarded: Vec::new(),
            last_batch: None,
            last_file_len: 0,
            last_fed: None,
            zero_range: None,
            deferred: None,
            report: RecoveryReport::default(),
        })
    }

    /// The WAL segment names among a directory listing, in the order to feed them. Files
    /// that do not start with `wal-` belong to other stores and are left out, and so is the
    /// spare segment ([`SPARE_SEGMENT_NAME`]), which is not part of the log.
    pub fn segment_names(names: &[String]) -> Result<Vec<String>, RecoveryError> {
        let mut segments = Vec::new();
        let is_segment = |name: &&String| name.starts_with("wal-") && *name != SPARE_SEGMENT_NAME;
        for name in names.iter().filter(is_segment) {
            let Some(first_lsn) = parse_segment_file_name(name) else {
                return Err(RecoveryError::BadName { file: name.clone() });
            };
            segments.push((first_lsn, name.clone()));
        }
        segments.sort();
        Ok(segments.into_iter().map(|(_, name)| name).collect())
    }

    /// Takes the whole contents of the next segment file. Damage is reported by
    /// [`Recovery::finish`] (a later reset segment may discard it); only a misnamed or
    /// out-of-order file is refused here.
    pub fn feed(&mut self, name: &str, bytes: &[u8]) -> Result<(), RecoveryError> {
        let first_lsn = parse_segment_file_name(name).ok_or_else(|| RecoveryError::BadName {
            file: name.to_string(),
        })?;
        if let Some((previous, previous_lsn)) = &self.last_fed
            && *previous_lsn >= first_lsn
        {
            let (file, previous) = (name.to_string(), previous.clone());
            return Err(RecoveryError::OutOfOrder { file, previous });
        }
        self.last_fed = Some((name.to_string(), first_lsn));
        if is_reset_segment(bytes, first_lsn) {
            self.discard_before_reset(name);
        }
        if self.deferred.is_some() {
            // Past damage, a file only matters if it is a reset segment (handled above).
            self.removable.push(name.to_string());
            return Ok(());
        }
        if self.end_is_final {
            self.search_for_proof(name, bytes, 0);
            self.removable.push(name.to_string());
            return Ok(());
        }
        if let Err(error) = self.open_segment(name, first_lsn, bytes) {
            self.removable.push(name.to_string());
            self.deferred = Some(error);
        }
        Ok(())
    }

    /// A valid reset segment starts the log afresh: everything fed before it is discarded,
    /// whatever it holds (damage included: the log was given up on purpose), and recovery
    /// goes on as if the reset segment were the first.
    fn discard_before_reset(&mut self, name: &str) {
        let mut discarded = std::mem::take(&mut self.removable);
        discarded.extend(self.segments.drain(..).map(|segment| segment.name));
        if let Some(end) = self.end.take()
            && end.remove_file
            && !discarded.contains(&end.file)
        {
            discarded.push(end.file);
        }
        self.discarded.extend(discarded);
        self.discarded.sort();
        self.discarded.dedup();
        self.index.clear();
        self.index_base = 1;
        self.next_lsn = 1;
        self.end_is_final = false;
        self.last_batch = None;
        self.last_file_len = 0;
        self.zero_range = None;
        self.deferred = None;
        self.report.garbage_ignored.clear();
        self.report.reset_segment = Some(name.to_string());
    }

    /// Checks a segment's header and continuity with the log so far, then replays it.
    fn open_segment(
        &mut self,
        name: &str,
        first_lsn: u64,
        bytes: &[u8],
    ) -> Result<(), RecoveryError> {
        let slot = &bytes[..bytes.len().min(RECORD_HEADER_SIZE)];
        if is_blank(slot) {
            return self.on_incomplete_segment(name, first_lsn, bytes);
        }
        let foreign = |offset: u64, reason: String| RecoveryError::Foreign {
            file: name.to_string(),
            offset,
            reason,
        };
        let record = match decode_record(bytes, u32::MAX) {
            Ok(record) => record,
            // The file ends inside its header record: a creation cut short, like a zero one.
            Err(DecodeError::Truncated { .. } | DecodeError::Short { .. }) => {
                return self.on_incomplete_segment(name, first_lsn, bytes);
            }
            Err(error) => return Err(foreign(0, error.to_string())),
        };
        let header = record.header;
        let magic_known = record.payload == SEGMENT_MAGIC || record.payload == RESET_MAGIC;
        if header.record_type != RecordType::SegmentHeader || !magic_known {
            let reason = format!(
                "its first record is a {:?}, not a segment header",
                header.record_type
            );
            return Err(foreign(0, reason));
        }
        if header.lsn != first_lsn {
            let reason = format!(
                "the header says lsn {}, the file name {first_lsn}",
                header.lsn
            );
            return Err(self.corruption(name, 0, reason));
        }
        match self.end.take() {
            Some(end) => self.continue_after(end, name, &header)?,
            None if self.segments.is_empty() => {
                self.next_lsn = header.lsn;
                self.index_base = header.sequence;
            }
            None => unreachable!("a replayed segment always leaves an end"),
        }
        self.next_lsn += 1;
        self.segments.push(Segment {
            first_lsn,
            name: name.to_string(),
            written_end: record.size as u64,
            capacity: self.config.segment_size.max(bytes.len() as u64),
        });
        self.last_file_len = bytes.len() as u64;
        self.replay_segment(name, bytes, record.size);
        Ok(())
    }

    /// A segment whose header was never written: a creation cut short by a crash.
    fn on_incomplete_segment(
        &mut self,
        name: &str,
        first_lsn: u64,
        bytes: &[u8],
    ) -> Result<(), RecoveryError> {
        let mut end = match self.end.take() {
            Some(end) => end,
            None if first_lsn == 1 => End {
                file: name.to_string(),
                offset: 0,
                expected_lsn: 1,
                evidence: Evidence::Zero,
                garbage_end: 0,
                valid_after: false,
                proof: None,
                remove_file: true,
            },
            None => {
                let reason = "the first segment's header was never written, so where the \
                              log starts is unknown"
                    .to_string();
                return Err(self.corruption(name, 0, reason));
            }
        };
        if end.file != name {
            self.removable.push(name.to_string());
        }
        end.remove_file |= end.file == name;
        self.end = Some(end);
        self.end_is_final = true;
        self.search_for_proof(name, bytes, RECORD_HEADER_SIZE as u64);
        Ok(())
    }

    /// Accepts a segment that continues the log after `end`, or reports the damage.
    fn continue_after(
        &mut self,
        end: End,
        name: &str,
        header: &RecordHeader,
    ) -> Result<(), RecoveryError> {
        let next_sequence = self.index_base + self.index.len() as u64;
        let continues = header.lsn == end.expected_lsn && header.sequence == next_sequence;
        if end.evidence == Evidence::Zero && !end.valid_after && continues {
            if end.garbage_end > end.offset {
                self.report
                    .garbage_ignored
                    .push((end.file.clone(), end.offset));
            }
            return Ok(());
        }
        let reason = match &end.evidence {
            Evidence::Zero if end.valid_after => {
                "a record is missing, and valid records follow it".to_string()
            }
            Evidence::Zero => format!(
                "the log ends here at lsn {}, but the next segment {name} starts at lsn {} \
                 (sequence {}, expected {next_sequence})",
                end.expected_lsn, header.lsn, header.sequence
            ),
            Evidence::Torn(reason) | Evidence::Corrupt(reason) => {
                format!("{reason}, and segment {name} continues the log after it")
            }
        };
        Err(self.corruption(&end.file, end.offset, reason))
    }

    fn corruption(&self, file: &str, offset: u64, reason: String) -> RecoveryError {
        RecoveryError::Corruption {
            file: file.to_string(),
            offset,
            reason,
        }
    }

    /// Replays the records of a segment from `start` up to the first slot that is not the
    /// next valid record, which becomes the log's end.
    fn replay_segment(&mut self, name: &str, bytes: &[u8], start: usize) {
        let mut offset = start;
        let mut batch_start = 0;
        let evidence = loop {
            if offset >= bytes.len() {
                break Evidence::Zero;
            }
            let slot = &bytes[offset..bytes.len().min(offset + RECORD_HEADER_SIZE)];
            if is_blank(slot) {
                break Evidence::Zero;
            }
            let record = match decode_record(&bytes[offset..], u32::MAX) {
                Ok(record) => record,
                Err(error) => break tear_evidence(bytes, offset, &error),
            };
            if let Err(reason) = self.apply(&record.header, name, offset as u64) {
                break Evidence::Corrupt(reason);
            }
            if record.header.batch_offset == 0 {
                batch_start = offset;
            }
            offset += record.size;
        };
        let batch = Bytes::copy_from_slice(&bytes[batch_start..offset]);
        self.last_batch = Some((name.to_string(), batch_start as u64, batch));
        self.segments
            .last_mut()
            .expect("segment opened")
            .written_end = offset as u64;
        let expected_lsn = self.next_lsn;
        let is_zero = evidence == Evidence::Zero;
        let slot_end = bytes.len().min(offset + RECORD_HEADER_SIZE);
        let slot = bytes.get(offset..slot_end).unwrap_or(&[]);
        let garbage_end = if all_zero(slot) { offset } else { slot_end };
        self.end = Some(End {
            file: name.to_string(),
            offset: offset as u64,
            expected_lsn,
            evidence,
            garbage_end: garbage_end as u64,
            valid_after: false,
            proof: None,
            remove_file: false,
        });
        if !is_zero {
            self.end_is_final = true;
        }
        let search_from = (offset + RECORD_HEADER_SIZE) as u64;
        self.search_for_proof(name, bytes, search_from);
    }

    /// Applies one valid record to the replayed log, or says why it does not fit.
    fn apply(&mut self, header: &RecordHeader, name: &str, offset: u64) -> Result<(), String> {
        if header.lsn != self.next_lsn {
            return Err(format!(
                "a record with lsn {}, expected {}",
                header.lsn, self.next_lsn
            ));
        }
        let next_sequence = self.index_base + self.index.len() as u64;
        match header.record_type {
            RecordType::Entry if header.sequence == next_sequence => {
                let first_lsn = self.segments.last().expect("segment").first_lsn;
                self.index.push_back(Location {
                    sequence: header.sequence,
                    lsn: header.lsn,
                    segment_first_lsn: first_lsn,
                    offset,
                    size: header.record_size() as u32,
                });
            }
            RecordType::Truncate if header.sequence <= next_sequence => {
                let from = header.sequence;
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
            record_type => {
                return Err(format!(
                    "a {record_type:?} record with sequence {} in {name}, where the log's \
                     next sequence is {next_sequence}",
                    header.sequence
                ));
            }
        }
        self.next_lsn += 1;
        Ok(())
    }

    /// Looks at every slot from `from` on in a file past (or at) the log's end: where the
    /// non-zero bytes end, and whether a valid record there proves that the damage at the
    /// end had been acknowledged.
    fn search_for_proof(&mut self, name: &str, bytes: &[u8], from: u64) {
        let end = self.end.as_mut().expect("an end to search past");
        let same_file = end.file == name;
        let mut offset = from as usize;
        while offset < bytes.len() {
            let slot = &bytes[offset..bytes.len().min(offset + RECORD_ALIGNMENT)];
            if !all_zero(slot) {
                if same_file {
                    end.garbage_end = (offset + slot.len()) as u64;
                }
                if let Ok(record) = decode_record(&bytes[offset..], u32::MAX) {
                    end.valid_after = true;
                    let header = record.header;
                    let unexplained = header.batch_first_lsn() > end.expected_lsn
                        || header.lsn < end.expected_lsn;
                    if unexplained && end.proof.is_none() {
                        end.proof = Some((name.to_string(), offset as u64, header.lsn));
                    }
                }
            }
            offset += RECORD_ALIGNMENT;
        }
    }

    /// Decides between a clean end, a torn tail and corruption, and builds the engine with
    /// the repair it must carry out before anything new is written.
    pub fn finish(mut self) -> Result<(Wal, RecoveryReport), RecoveryError> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        if let Some(end) = self.end.take() {
            self.judge_end(end)?;
        }
        let repair = self.repair_ops();
        let next_sequence = self.index_base + self.index.len() as u64;
        self.report.segments_count = self.segments.len();
        self.report.entries_count = self.index.len() as u64;
        self.report.first_sequence = self.index_base;
        self.report.next_sequence = next_sequence;
        self.report.segments_removed = self.removable.clone();
        self.report.segments_discarded = self.discarded.clone();
        let log = RecoveredLog {
            segments: self.segments,
            index: self.index,
            index_base: self.index_base,
            next_lsn: self.next_lsn,
            repair,
        };
        Ok((Wal::from_recovered(self.config, log), self.report))
    }

    fn judge_end(&mut self, end: End) -> Result<(), RecoveryError> {
        let what = match &end.evidence {
            Evidence::Zero => "a record is missing".to_string(),
            Evidence::Torn(reason) | Evidence::Corrupt(reason) => reason.clone(),
        };
        if let Some((file, offset, lsn)) = &end.proof {
            let reason = format!(
                "{what}; a valid record written after it (lsn {lsn} in {file} at offset \
                 {offset}) shows it was not the last, unacknowledged write"
            );
            return Err(self.corruption(&end.file, end.offset, reason));
        }
        if let Evidence::Corrupt(reason) = &end.evidence {
            return Err(self.corruption(&end.file, end.offset, reason.clone()));
        }
        if end.remove_file {
            self.removable.insert(0, end.file.clone());
        }
        let clean = end.evidence == Evidence::Zero && end.garbage_end <= end.offset;
        if !clean || end.remove_file || !self.removable.is_empty() {
            self.report.torn_tail = Some(TornTail {
                file: end.file.clone(),
                offset: end.offset,
                bytes_discarded: end.garbage_end.saturating_sub(end.offset),
                reason: what,
            });
        }
        if !end.remove_file && end.garbage_end > end.offset {
            self.zero_range = Some((end.file, end.offset, end.garbage_end));
        }
        Ok(())
    }
}

impl Recovery {
    /// What must reach the disk before the recovered log takes new records: removal of
    /// incomplete or orphaned segments, zeros over a torn tail (so no stale record can ever
    /// follow a new one), the last batch written again and synced (a write whose sync
    /// failed before the restart may sit in the page cache without being durable), the
    /// preallocation restored, and the directory synced. Segments older than a reset
    /// segment are removed last, once the rewritten reset segment is durable: its header may
    /// have sat in the page cache after a failed sync, and removing the old log before the
    /// new one is durable could leave neither after a power loss.
    fn repair_ops(&self) -> Vec<DiskOp> {
        let mut ops = self.repair_ops_of_live_log();
        for name in &self.discarded {
            ops.push(DiskOp::Remove { path: name.clone() });
        }
        if !self.discarded.is_empty() {
            ops.push(DiskOp::SyncDir);
        }
        ops
    }

    fn repair_ops_of_live_log(&self) -> Vec<DiskOp> {
        let mut ops = Vec::new();
        for name in &self.removable {
            ops.push(DiskOp::Remove { path: name.clone() });
        }
        if !self.removable.is_empty() {
            ops.push(DiskOp::SyncDir);
        }
        let Some(last) = self.segments.last() else {
            return ops;
        };
        if let Some((file, from, to)) = &self.zero_range {
            assert_eq!(*file, last.name, "a torn tail is in the last live segment");
            let data = Bytes::from(vec![0u8; (to - from) as usize]);
            let (path, offset) = (file.clone(), *from);
            ops.push(DiskOp::Write { path, offset, data });
        }
        if let Some((file, offset, data)) = &self.last_batch {
            assert_eq!(
                *file, last.name,
                "the last batch is in the last live segment"
            );
            let (path, offset, data) = (file.clone(), *offset, data.clone());
            ops.push(DiskOp::Write { path, offset, data });
        }
        if self.last_file_len < self.config.segment_size {
            let (path, len) = (last.name.clone(), self.config.segment_size);
            ops.push(DiskOp::SetLen { path, len });
        }
        ops.push(DiskOp::Sync {
            path: last.name.clone(),
        });
        ops.push(DiskOp::SyncDir);
        ops
    }
}

/// Whether `bytes` start with a valid reset-segment header for a segment named `first_lsn`.
fn is_reset_segment(bytes: &[u8], first_lsn: u64) -> bool {
    decode_record(bytes, u32::MAX).is_ok_and(|record| {
        record.header.record_type == RecordType::SegmentHeader
            && record.payload == RESET_MAGIC
            && record.header.lsn == first_lsn
    })
}

/// Judges a record that failed to decode at `offset`: could a torn write have left it?
///
/// A torn write leaves whole sectors of old content, and the old content past the log's
/// end is zeros (segments are preallocated and torn tails are zeroed by the repair). A
/// header never straddles a sector, so a torn write leaves a header all new or all zero; a
/// non-zero header that fails its checksum was damaged on the media. A record with a valid
/// header whose payload fails its checksum is torn only if a 512-byte piece of its payload
/// (one that starts on a sector boundary after the header's sector) is blank: all zeros,
/// give or take [`BLANK_BITS_MAX`] flipped bits.
fn tear_evidence(bytes: &[u8], offset: usize, error: &DecodeError) -> Evidence {
    match error {
        DecodeError::Short { .. } | DecodeError::Truncated { .. } => {
            Evidence::Torn(format!("the file ends inside a record ({error})"))
        }
        DecodeError::PayloadChecksum { .. } => {
            let header = decode_header(&bytes[offset..]).expect("the header decoded before");
            let payload_end = (offset + RECORD_HEADER_SIZE) as u64 + u64::from(header.payload_size);
            let mut piece = (offset as u64 / TEAR_PIECE_SIZE + 1) * TEAR_PIECE_SIZE;
            while piece < payload_end {
                let piece_end = (piece + TEAR_PIECE_SIZE).min(payload_end);
                if is_blank(&bytes[piece as usize..piece_end as usize]) {
                    return Evidence::Torn(format!(
                        "{error}, and the piece at offset {piece} was never written"
                    ));
                }
                piece += TEAR_PIECE_SIZE;
            }
            Evidence::Corrupt(format!(
                "{error}, although every sector of the record was written: the media changed it"
            ))
        }
        DecodeError::Padding => Evidence::Corrupt(format!(
            "{error}: the media changed a byte that was written as zero"
        )),
        _ => Evidence::Corrupt(format!(
            "{error}: a damaged record header, which a torn write cannot leave (a header never \
             straddles a sector)"
        )),
    }
}
