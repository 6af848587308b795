//! Snapshots: written to `snapshot-<sequence>.tmp`, checksummed by a trailer, synced,
//! renamed to `snapshot-<sequence>.snap`, and the directory synced; older snapshots are
//! removed only after the new one is durable. Streamed to followers in chunks.
//!
//! ```text
//! file: the snapshot data, then a 32-byte trailer
//! offset size field (from the trailer's start)
//! 0      8    magic "SYNSNAP1"
//! 8      8    last included sequence, u64 LE
//! 16     8    data size, u64 LE
//! 24     4    crc32c of the data, u32 LE
//! 28     4    crc32c of trailer bytes 0..28, u32 LE
//! ```

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use synod_core::disk::{DiskError, DiskOp, DiskReply};
use synod_core::limits::DISK_IO_SIZE_MAX;
use thiserror::Error;

use crate::storage::{Storage, read_whole_file};
use crate::wal::{IoTag, SEQUENCE_MAX, WalFatal};

pub const SNAPSHOT_TRAILER_SIZE: usize = 32;
const MAGIC: &[u8; 8] = b"SYNSNAP1";

/// The final name of the snapshot that includes entries up to `sequence`.
pub fn snapshot_file_name(sequence: u64) -> String {
    format!("snapshot-{sequence:020}.snap")
}

/// The name the snapshot is written under until it is complete and durable.
pub fn snapshot_temporary_name(sequence: u64) -> String {
    format!("snapshot-{sequence:020}.tmp")
}

fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// From a directory listing: the newest snapshot to load, and the files to remove (older
/// snapshots and temporary files of writes that never finished).
pub fn snapshot_files(names: &[String]) -> (Option<String>, Vec<String>) {
    let mut snapshots: Vec<(u64, &String)> = names
        .iter()
        .filter_map(|name| parse_name(name, ".snap").map(|sequence| (sequence, name)))
        .collect();
    snapshots.sort();
    let newest = snapshots.pop().map(|(_, name)| name.clone());
    let mut stale: Vec<String> = snapshots
        .into_iter()
        .map(|(_, name)| name.clone())
        .collect();
    let temporary = names
        .iter()
        .filter(|name| parse_name(name, ".tmp").is_some());
    stale.extend(temporary.cloned());
    (newest, stale)
}

/// A snapshot file that could not be used at start, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedSnapshot {
    pub file: String,
    pub error: SnapshotError,
}

/// What the start-up scan of the snapshot files decided (see [`SnapshotScan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStart {
    /// The newest snapshot that verified, and its file.
    pub loaded: Option<(String, Snapshot)>,
    /// Snapshot files newer than the loaded one that failed verification, newest first.
    /// They are left in place for the operator to look at; the next snapshot written
    /// replaces them.
    pub rejected: Vec<RejectedSnapshot>,
    /// Files to remove: `.tmp` files of writes a crash cut short, and snapshots older than
    /// the loaded one (which it supersedes), in name order.
    pub stale: Vec<String>,
}

impl SnapshotStart {
    /// The removals of the stale files, then one directory sync; empty when none are stale.
    pub fn cleanup_ops(&self) -> Vec<DiskOp> {
        let mut ops: Vec<DiskOp> = (self.stale.iter())
            .map(|path| DiskOp::Remove { path: path.clone() })
            .collect();
        if !ops.is_empty() {
            ops.push(DiskOp::SyncDir);
        }
        ops
    }
}

/// Chooses the snapshot to start from, sans-IO: the driver reads each file
/// [`SnapshotScan::next_file`] names (whole) and feeds it, until it names none; then
/// [`SnapshotScan::finish`] says which snapshot verified and which files are stale.
///
/// Candidates are the complete (`.snap`) files, newest first. The first that verifies is
/// loaded; a newer one that fails (damaged on the media) is reported with its file and the
/// reason, and the scan falls back to the next older one. `.tmp` files are never loaded:
/// a crash cut their write short, so they are stale whatever they hold.
#[derive(Debug)]
pub struct SnapshotScan {
    /// Complete snapshot files, newest first.
    candidates: Vec<String>,
    /// How many candidates have been fed.
    fed_count: usize,
    temporary: Vec<String>,
    start: SnapshotStart,
}

impl SnapshotScan {
    /// Starts a scan over a directory listing; names that are not snapshot files are
    /// ignored.
    pub fn new(names: &[String]) -> SnapshotScan {
        let mut candidates: Vec<(u64, String)> = names
            .iter()
            .filter_map(|name| parse_name(name, ".snap").map(|sequence| (sequence, name.clone())))
            .collect();
        candidates.sort();
        candidates.reverse();
        let temporary = names
            .iter()
            .filter(|name| parse_name(name, ".tmp").is_some())
            .cloned()
            .collect();
        SnapshotScan {
            candidates: candidates.into_iter().map(|(_, name)| name).collect(),
            fed_count: 0,
            temporary,
            start: SnapshotStart::default(),
        }
    }

    /// The next snapshot file to read and feed, or `None` once the scan has decided.
    pub fn next_file(&self) -> Option<&str> {
        if self.start.loaded.is_some() {
            return None;
        }
        self.candidates.get(self.fed_count).map(String::as_str)
    }

    /// Takes the whole contents of the file [`SnapshotScan::next_file`] named.
    pub fn feed(&mut self, file: &str, bytes: &Bytes) {
        assert_eq!(
            self.next_file(),
            Some(file),
            "snapshot files are fed in the order the scan names them"
        );
        self.fed_count += 1;
        match load_snapshot(file, bytes) {
            // The log after it must be able to start at the next sequence.
            Ok(snapshot) if snapshot.last_included_sequence >= SEQUENCE_MAX => {
                let error = SnapshotError::Corrupt {
                    file: file.to_string(),
                    offset: (bytes.len() - SNAPSHOT_TRAILER_SIZE) as u64,
                    reason: format!(
                        "last included sequence {} is not below {SEQUENCE_MAX}",
                        snapshot.last_included_sequence
                    ),
                };
                let file = file.to_string();
                self.start.rejected.push(RejectedSnapshot { file, error });
            }
            Ok(snapshot) => self.start.loaded = Some((file.to_string(), snapshot)),
            Err(error) => {
                let file = file.to_string();
                self.start.rejected.push(RejectedSnapshot { file, error });
            }
        }
    }

    /// What the scan decided. Every complete snapshot older than the loaded one is stale,
    /// rejected or not; with none loaded, the rejected files are all kept.
    pub fn finish(self) -> SnapshotStart {
        assert!(
            self.next_file().is_none(),
            "the scan has files left to read"
        );
        let mut start = self.start;
        if start.loaded.is_some() {
            start
                .stale
                .extend(self.candidates[self.fed_count..].iter().cloned());
        }
        start.stale.extend(self.temporary);
        start.stale.sort();
        start
    }
}

/// Runs a [`SnapshotScan`] over a synchronous storage, reading each candidate whole, and
/// carries out its cleanup (the stale files removed, the directory synced).
pub fn load_snapshot_at_start(
    storage: &mut dyn Storage,
    names: &[String],
) -> Result<SnapshotStart, DiskError> {
    let mut scan = SnapshotScan::new(names);
    while let Some(file) = scan.next_file().map(str::to_string) {
        let bytes = Bytes::from(read_whole_file(storage, &file)?);
        scan.feed(&file, &bytes);
    }
    let start = scan.finish();
    for op in start.cleanup_ops() {
        storage.execute(&op)?;
    }
    Ok(start)
}

/// A loaded or received snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub last_included_sequence: u64,
    pub data: Bytes,
}

/// Why a snapshot is unusable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    #[error("{file} at offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("snapshot chunk at offset {offset} arrived, expected offset {expected}")]
    OutOfOrder { offset: u64, expected: u64 },
    #[error("snapshot chunk does not match the transfer in progress: {reason}")]
    Mismatched { reason: String },
    #[error("snapshot of {size} bytes exceeds snapshot_size_max ({limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "received snapshot fails its checksum (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum { stored: u32, computed: u32 },
}

fn encode_trailer(last_included_sequence: u64, size: u64, checksum: u32) -> Bytes {
    let mut trailer = BytesMut::with_capacity(SNAPSHOT_TRAILER_SIZE);
    trailer.put_slice(MAGIC);
    trailer.put_u64_le(last_included_sequence);
    trailer.put_u64_le(size);
    trailer.put_u32_le(checksum);
    let trailer_checksum = crc32c::crc32c(&trailer);
    trailer.put_u32_le(trailer_checksum);
    trailer.freeze()
}

/// Verifies and decodes a whole snapshot file.
pub fn load_snapshot(file: &str, bytes: &Bytes) -> Result<Snapshot, SnapshotError> {
    let corrupt = |offset: usize, reason: String| SnapshotError::Corrupt {
        file: file.to_string(),
        offset: offset as u64,
        reason,
    };
    let Some(data_size) = bytes.len().checked_sub(SNAPSHOT_TRAILER_SIZE) else {
        return Err(corrupt(
            0,
            format!("{} bytes cannot hold the trailer", bytes.len()),
        ));
    };
    let trailer = &bytes[data_size..];
    let word =
        |offset: usize| u64::from_le_bytes(trailer[offset..offset + 8].try_into().expect("8"));
    let half =
        |offset: usize| u32::from_le_bytes(trailer[offset..offset + 4].try_into().expect("4"));
    if &trailer[..8] != MAGIC {
        return Err(corrupt(
            data_size,
            "no snapshot trailer (bad magic)".to_string(),
        ));
    }
    if crc32c::crc32c(&trailer[..28]) != half(28) {
        return Err(corrupt(
            data_size,
            "the trailer fails its checksum".to_string(),
        ));
    }
    if word(16) != data_size as u64 {
        let reason = format!(
            "the trailer says {} data bytes, the file has {data_size}",
            word(16)
        );
        return Err(corrupt(data_size, reason));
    }
    let computed = crc32c::crc32c(&bytes[..data_size]);
    if computed != half(24) {
        let reason = format!("the data fails its checksum (stored {:#010x})", half(24));
        return Err(corrupt(0, reason));
    }
    let last_included_sequence = word(8);
    if parse_name(file, ".snap").is_some_and(|named| named != last_included_sequence) {
        let reason = format!("the trailer says sequence {last_included_sequence}");
        return Err(corrupt(data_size, reason));
    }
    Ok(Snapshot {
        last_included_sequence,
        data: bytes.slice(..data_size),
    })
}

/// What the writer reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotOutput {
    /// The snapshot is durable under its final name; older ones are being removed.
    Installed {
        last_included_sequence: u64,
    },
    /// The older snapshots are removed durably: the WAL may now be compacted below.
    OldRemoved {
        last_included_sequence: u64,
    },
    Failed(WalFatal),
}

/// Writes one snapshot, sans-IO: `write_chunk`* then `finish`, driven by `poll_io` and
/// `complete` like the WAL.
#[derive(Debug)]
pub struct SnapshotWriter {
    last_included_sequence: u64,
    size: u64,
    checksum: u32,
    finished: bool,
    stale: Vec<String>,
    /// Ops to hand out, each with what its completion means.
    ops_ready: VecDeque<(DiskOp, Milestone)>,
    /// For each handed-out op: what its completion means.
    ops_in_flight: VecDeque<(IoTag, Milestone)>,
    tag_next: u64,
    failure: Option<WalFatal>,
    outputs: VecDeque<SnapshotOutput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Milestone {
    None,
    Installed,
    OldRemoved,
}

impl SnapshotWriter {
    /// Starts a snapshot that includes entries up to `last_included_sequence`; `stale` are
    /// the snapshot files to remove once it is durable (see [`snapshot_files`]).
    pub fn new(last_included_sequence: u64, stale: Vec<String>) -> SnapshotWriter {
        let path = snapshot_temporary_name(last_included_sequence);
        let mut ops_ready = VecDeque::new();
        // A leftover temporary file of an earlier attempt is emptied first.
        let create = DiskOp::Write {
            path: path.clone(),
            offset: 0,
            data: Bytes::new(),
        };
        ops_ready.push_back((create, Milestone::None));
        ops_ready.push_back((DiskOp::SetLen { path, len: 0 }, Milestone::None));
        SnapshotWriter {
            last_included_sequence,
            size: 0,
            checksum: 0,
            finished: false,
            stale,
            ops_ready,
            ops_in_flight: VecDeque::new(),
            tag_next: 0,
            failure: None,
            outputs: VecDeque::new(),
        }
    }

    /// Queues the next piece of snapshot data (at most `DISK_IO_SIZE_MAX` bytes).
    pub fn write_chunk(&mut self, data: Bytes) {
        assert!(!self.finished, "write_chunk after finish");
        assert!(
            data.len() <= DISK_IO_SIZE_MAX,
            "snapshot chunk over the IO limit"
        );
        self.checksum = crc32c::crc32c_append(self.checksum, &data);
        let (path, offset) = (
            snapshot_temporary_name(self.last_included_sequence),
            self.size,
        );
        self.size += data.len() as u64;
        self.push(DiskOp::Write { path, offset, data });
    }

    fn push(&mut self, op: DiskOp) {
        self.ops_ready.push_back((op, Milestone::None));
    }

    /// Queues the trailer, the sync, the rename, the directory sync and the removals.
    pub fn finish(&mut self) {
        assert!(!self.finished, "finish twice");
        self.finished = true;
        let sequence = self.last_included_sequence;
        let temporary = snapshot_temporary_name(sequence);
        let data = encode_trailer(sequence, self.size, self.checksum);
        let offset = self.size;
        self.push(DiskOp::Write {
            path: temporary.clone(),
            offset,
            data,
        });
        self.push(DiskOp::Sync {
            path: temporary.clone(),
        });
        let to = snapshot_file_name(sequence);
        self.push(DiskOp::Rename {
            from: temporary,
            to,
        });
        self.ops_ready
            .push_back((DiskOp::SyncDir, Milestone::Installed));
        for path in std::mem::take(&mut self.stale) {
            self.push(DiskOp::Remove { path });
        }
        self.ops_ready
            .push_back((DiskOp::SyncDir, Milestone::OldRemoved));
    }

    pub fn poll_io(&mut self) -> Option<(IoTag, DiskOp)> {
        if self.failure.is_some() {
            return None;
        }
        let (op, milestone) = self.ops_ready.pop_front()?;
        let tag = IoTag(self.tag_next);
        self.tag_next += 1;
        self.ops_in_flight.push_back((tag, milestone));
        Some((tag, op))
    }

    pub fn complete(&mut self, tag: IoTag, result: Result<DiskReply, DiskError>) {
        let (expected, milestone) = self.ops_in_flight.pop_front().expect("an op in flight");
        assert_eq!(
            expected, tag,
            "snapshot completions must come back in order"
        );
        if self.failure.is_some() {
            return;
        }
        if let Err(error) = result {
            let fatal = WalFatal {
                op: "snapshot",
                error,
            };
            self.failure = Some(fatal.clone());
            self.outputs.push_back(SnapshotOutput::Failed(fatal));
            return;
        }
        let last_included_sequence = self.last_included_sequence;
        match milestone {
            Milestone::Installed => {
                self.outputs.push_back(SnapshotOutput::Installed {
                    last_included_sequence,
                });
            }
            Milestone::OldRemoved => {
                self.outputs.push_back(SnapshotOutput::OldRemoved {
                    last_included_sequence,
                });
            }
            Milestone::None => {}
        }
    }

    pub fn poll_output(&mut self) -> Option<SnapshotOutput> {
        self.outputs.pop_front()
    }
}

/// One piece of a snapshot in transit (InstallSnapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub last_included_sequence: u64,
    pub offset: u64,
    pub total_size: u64,
    /// crc32c of the whole snapshot data, checked when the last chunk arrives.
    pub checksum: u32,
    pub data: Bytes,
}

impl SnapshotChunk {
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 == self.total_size
    }
}

/// Cuts a snapshot into chunks of at most `chunk_size` bytes (at least one chunk).
pub fn snapshot_chunks(snapshot: &Snapshot, chunk_size: usize) -> Vec<SnapshotChunk> {
    assert!(chunk_size > 0, "chunk size must be positive");
    let total_size = snapshot.data.len() as u64;
    let checksum = crc32c::crc32c(&snapshot.data);
    let mut chunks = Vec::new();
    let mut offset = 0;
    // At least one chunk, so that an empty snapshot is still sent.
    loop {
        let end = (offset + chunk_size).min(snapshot.data.len());
        chunks.push(SnapshotChunk {
            last_included_sequence: snapshot.last_included_sequence,
            offset: offset as u64,
            total_size,
            checksum,
            data: snapshot.data.slice(offset..end),
        });
        offset = end;
        if offset >= snapshot.data.len() {
            return chunks;
        }
    }
}

/// Assembles a snapshot from chunks that must arrive in order.
#[derive(Debug)]
pub struct SnapshotReceiver {
    size_max: u64,
    current: Option<(SnapshotChunk, BytesMut)>,
}

impl SnapshotReceiver {
    pub fn new(size_max: u64) -> SnapshotReceiver {
        SnapshotReceiver {
            size_max,
            current: None,
        }
    }

    /// Takes the next chunk; returns the snapshot once the last one is in and verified. A
    /// chunk at offset 0 starts a new transfer, replacing one in progress.
    pub fn accept(&mut self, chunk: SnapshotChunk) -> Result<Option<Snapshot>, SnapshotError> {
        if chunk.total_size > self.size_max {
            let (size, limit) = (chunk.total_size, self.size_max);
            return Err(SnapshotError::TooLarge { size, limit });
        }
        if chunk.offset == 0 {
            self.current = Some((chunk.clone(), BytesMut::new()));
        }
        let Some((first, received)) = self.current.as_mut() else {
            return Err(SnapshotError::OutOfOrder {
                offset: chunk.offset,
                expected: 0,
            });
        };
        let same = (
            first.last_included_sequence,
            first.total_size,
            first.checksum,
        ) == (
            chunk.last_included_sequence,
            chunk.total_size,
            chunk.checksum,
        );
        if !same {
            let reason = format!(
                "sequence {} of {} bytes, the transfer in progress is sequence {} of {} bytes",
                chunk.last_included_sequence,
                chunk.total_size,
                first.last_included_sequence,
                first.total_size
            );
            return Err(SnapshotError::Mismatched { reason });
        }
        if chunk.offset != received.len() as u64 {
            let expected = received.len() as u64;
            return Err(SnapshotError::OutOfOrder {
                offset: chunk.offset,
                expected,
            });
        }
        if chunk.offset + chunk.data.len() as u64 > chunk.total_size {
            let reason = "the chunk runs past the snapshot's size".to_string();
            return Err(SnapshotError::Mismatched { reason });
        }
        received.extend_from_slice(&chunk.data);
        if !chunk.is_last() {
            return Ok(None);
        }
        let (first, received) = self.current.take().expect("a transfer in progress");
        let computed = crc32c::crc32c(&received);
        if computed != first.checksum {
            return Err(SnapshotError::Checksum {
                stored: first.checksum,
                computed,
            });
        }
        Ok(Some(Snapshot {
            last_included_sequence: first.last_included_sequence,
            data: received.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_storage::MemStorage;
    use crate::storage::{Storage, read_whole_file};

    fn run(writer: &mut SnapshotWriter, storage: &mut MemStorage) -> Vec<DiskOp> {
        let mut ops = Vec::new();
        while let Some((tag, op)) = writer.poll_io() {
            let result = storage.execute(&op);
            ops.push(op);
            writer.complete(tag, result);
        }
        ops
    }

    #[test]
    fn a_snapshot_is_written_synced_renamed_and_old_ones_removed_after() {
        // Checks the exact op order (temporary file, trailer, sync, rename, directory sync,
        // then removals) and that the result loads back after a crash.
        let mut storage = MemStorage::new();
        let old = snapshot_file_name(3);
        storage.write(&old, 0, b"old").unwrap();
        let mut writer = SnapshotWriter::new(7, vec![old.clone()]);
        writer.write_chunk(Bytes::from_static(b"hello "));
        writer.write_chunk(Bytes::from_static(b"world"));
        writer.finish();
        let ops = run(&mut writer, &mut storage);
        let temporary = snapshot_temporary_name(7);
        let kinds: Vec<&str> = ops.iter().map(DiskOp::kind).collect();
        assert_eq!(
            kinds,
            [
                "write", "set_len", "write", "write", "write", "sync", "rename", "sync_dir",
                "remove", "sync_dir"
            ]
        );
        assert_eq!(
            ops[6],
            DiskOp::Rename {
                from: temporary,
                to: snapshot_file_name(7)
            }
        );
        let outputs: Vec<SnapshotOutput> = std::iter::from_fn(|| writer.poll_output()).collect();
        assert_eq!(
            outputs,
            vec![
                SnapshotOutput::Installed {
                    last_included_sequence: 7
                },
                SnapshotOutput::OldRemoved {
                    last_included_sequence: 7
                },
            ]
        );
        storage.crash();
        let names = storage.list().unwrap();
        assert_eq!(
            snapshot_files(&names),
            (Some(snapshot_file_name(7)), vec![])
        );
        let bytes = Bytes::from(read_whole_file(&mut storage, &snapshot_file_name(7)).unwrap());
        let snapshot = load_snapshot(&snapshot_file_name(7), &bytes).unwrap();
        assert_eq!(snapshot.data, Bytes::from_static(b"hello world"));
        assert_eq!(snapshot.last_included_sequence, 7);
    }

    #[test]
    fn damaged_snapshots_are_refused_with_file_and_offset() {
        // Checks that every single-bit flip of a snapshot file is refused, naming the file.
        let data = Bytes::from_static(b"some state machine contents");
        let mut file = data.to_vec();
        file.extend_from_slice(&encode_trailer(9, data.len() as u64, crc32c::crc32c(&data)));
        let name = snapshot_file_name(9);
        assert!(load_snapshot(&name, &Bytes::from(file.clone())).is_ok());
        for bit in 0..file.len() * 8 {
            let mut damaged = file.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let error = load_snapshot(&name, &Bytes::from(damaged)).unwrap_err();
            assert!(
                matches!(&error, SnapshotError::Corrupt { file, .. } if *file == name),
                "{bit}"
            );
        }
        let short = load_snapshot(&name, &Bytes::from_static(b"tiny")).unwrap_err();
        assert!(
            short.to_string().contains("cannot hold the trailer"),
            "{short}"
        );
    }

    #[test]
    fn the_receiver_refuses_out_of_order_and_mismatched_chunks() {
        // Checks the refusals: a chunk before the first, a gap, another snapshot's chunk, a
        // snapshot over the limit, and a corrupted chunk caught by the final checksum.
        let snapshot = Snapshot {
            last_included_sequence: 5,
            data: Bytes::from(vec![7u8; 100]),
        };
        let chunks = snapshot_chunks(&snapshot, 40);
        assert_eq!(chunks.len(), 3);
        let mut receiver = SnapshotReceiver::new(1_000);
        let early = receiver.accept(chunks[1].clone()).unwrap_err();
        assert_eq!(
            early,
            SnapshotError::OutOfOrder {
                offset: 40,
                expected: 0
            }
        );
        assert_eq!(receiver.accept(chunks[0].clone()), Ok(None));
        let gap = receiver.accept(chunks[2].clone()).unwrap_err();
        assert_eq!(
            gap,
            SnapshotError::OutOfOrder {
                offset: 80,
                expected: 40
            }
        );
        let mut other = chunks[1].clone();
        other.last_included_sequence = 6;
        assert!(matches!(
            receiver.accept(other),
            Err(SnapshotError::Mismatched { .. })
        ));
        let mut flipped = chunks[1].clone();
        flipped.data = Bytes::from(vec![8u8; 40]);
        assert_eq!(receiver.accept(flipped), Ok(None));
        assert!(matches!(
            receiver.accept(chunks[2].clone()),
            Err(SnapshotError::Checksum { .. })
        ));
        let mut small = SnapshotReceiver::new(50);
        let large = small.accept(chunks[0].clone()).unwrap_err();
        assert_eq!(
            large,
            SnapshotError::TooLarge {
                size: 100,
                limit: 50
            }
        );
    }
}
