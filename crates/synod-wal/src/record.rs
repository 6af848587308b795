//! The record codec: explicit little-endian, 32-byte aligned, two CRC32C checksums.
//!
//! ```text
//! offset size field
//! 0      4    header checksum: crc32c of header bytes 4..32, u32 LE
//! 4      4    payload checksum: crc32c of the payload, u32 LE
//! 8      4    payload size in bytes, u32 LE
//! 12     1    record type (1 segment header, 2 entry, 3 truncate)
//! 13     1    format version (1)
//! 14     2    batch offset: records before this one in its write, u16 LE
//! 16     8    lsn: the record's number in the log, +1 per record, never reused, u64 LE
//! 24     8    sequence, u64 LE (entry: its sequence; truncate: the first sequence removed;
//!             segment header: the sequence of the next entry)
//! 32     n    payload
//! 32+n   pad  zeros up to the next multiple of 32
//! ```
//!
//! The header has its own checksum and never straddles a 32-byte boundary, so it never
//! straddles a sector: recovery can tell a header that was never written (all zeros) from
//! one that was damaged (non-zero, failing its checksum). See `docs/wal_format.md`.
//!
//! Decoding checks every size before it slices and never panics on any input.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// The size of a record header.
pub const RECORD_HEADER_SIZE: usize = 32;
/// Every record starts at a multiple of this offset in its segment.
pub const RECORD_ALIGNMENT: usize = 32;
/// The format version written into every record.
pub const FORMAT_VERSION: u8 = 1;
/// The payload of a segment header record: identifies the file as a synod WAL segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"synodwal";
/// The payload of the header record of a **reset** segment: the log starts afresh here, at
/// the header's sequence, and every older segment is discarded (`Wal::reset`).
pub const RESET_MAGIC: &[u8; 8] = b"synodrst";
/// The size of a segment header record (header, magic, padding); entries start here.
pub const SEGMENT_HEADER_SIZE: usize = record_size(SEGMENT_MAGIC.len());
/// The size of a truncate record (it has no payload).
pub const TRUNCATE_RECORD_SIZE: usize = record_size(0);
/// The most records one batch may hold: the batch offset is a u16.
pub const BATCH_RECORDS_COUNT_MAX: usize = u16::MAX as usize + 1;

const _: () = assert!(RECORD_HEADER_SIZE.is_multiple_of(RECORD_ALIGNMENT));
const _: () = assert!(RECORD_ALIGNMENT.is_power_of_two());
// A header never straddles a 512-byte sector because sectors are multiples of the alignment.
const _: () = assert!(512usize.is_multiple_of(RECORD_ALIGNMENT));
const _: () = assert!(SEGMENT_HEADER_SIZE == 64);
const _: () = assert!(RESET_MAGIC.len() == SEGMENT_MAGIC.len());

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecordType {
    /// The first record of every segment, naming its first lsn and next sequence.
    SegmentHeader,
    /// An entry of the log: an opaque payload (a Raft entry).
    Entry,
    /// Removes every entry at or after `sequence`; the next entry takes that sequence.
    Truncate,
}

impl RecordType {
    pub const fn code(self) -> u8 {
        match self {
            RecordType::SegmentHeader => 1,
            RecordType::Entry => 2,
            RecordType::Truncate => 3,
        }
    }

    pub const fn from_code(code: u8) -> Option<RecordType> {
        match code {
            1 => Some(RecordType::SegmentHeader),
            2 => Some(RecordType::Entry),
            3 => Some(RecordType::Truncate),
            _ => None,
        }
    }
}

/// The decoded fixed part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub record_type: RecordType,
    pub payload_size: u32,
    pub payload_checksum: u32,
    pub batch_offset: u16,
    pub lsn: u64,
    pub sequence: u64,
}

impl RecordHeader {
    /// The lsn of the first record of the write this record was part of.
    pub fn batch_first_lsn(&self) -> u64 {
        self.lsn - u64::from(self.batch_offset)
    }

    /// The record's size on disk, padding included.
    pub fn record_size(&self) -> usize {
        record_size(self.payload_size as usize)
    }
}

/// The size on disk of a record with `payload_size` bytes of payload.
pub const fn record_size(payload_size: usize) -> usize {
    (RECORD_HEADER_SIZE + payload_size).div_ceil(RECORD_ALIGNMENT) * RECORD_ALIGNMENT
}

/// Why bytes are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{available} bytes cannot hold a {RECORD_HEADER_SIZE}-byte record header")]
    Short { available: usize },
    #[error("the record header is all zeros (space that was never written)")]
    Zero,
    #[error(
        "the record header fails its checksum (stored {stored:#010x}, computed {computed:#010x})"
    )]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("unknown format version {version}")]
    Version { version: u8 },
    #[error("unknown record type {code}")]
    UnknownType { code: u8 },
    #[error("batch offset {batch_offset} is not below lsn {lsn}")]
    BatchOffset { batch_offset: u16, lsn: u64 },
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: u32, limit: u32 },
    #[error("the record needs {needed} bytes but only {available} remain in the file")]
    Truncated { needed: usize, available: usize },
    #[error("the payload fails its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    PayloadChecksum { stored: u32, computed: u32 },
    #[error("the padding after the payload is not zero")]
    Padding,
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Appends one encoded record (header, payload, padding) to `out`.
pub fn encode_record(
    out: &mut BytesMut,
    record_type: RecordType,
    batch_offset: u16,
    lsn: u64,
    sequence: u64,
    payload: &[u8],
) {
    assert!(
        lsn > u64::from(batch_offset),
        "batch offset {batch_offset} >= lsn {lsn}"
    );
    let payload_size = u32::try_from(payload.len()).expect("payload size fits a u32");
    let start = out.len();
    out.put_u32_le(0);
    out.put_u32_le(crc32c::crc32c(payload));
    out.put_u32_le(payload_size);
    out.put_u8(record_type.code());
    out.put_u8(FORMAT_VERSION);
    out.put_u16_le(batch_offset);
    out.put_u64_le(lsn);
    out.put_u64_le(sequence);
    let header_checksum = crc32c::crc32c(&out[start + 4..start + RECORD_HEADER_SIZE]);
    out[start..start + 4].copy_from_slice(&header_checksum.to_le_bytes());
    out.put_slice(payload);
    let padding = record_size(payload.len()) - RECORD_HEADER_SIZE - payload.len();
    out.put_bytes(0, padding);
}

/// Decodes and checks a record header at the start of `bytes`.
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    let Some(header) = bytes.get(..RECORD_HEADER_SIZE) else {
        return Err(DecodeError::Short {
            available: bytes.len(),
        });
    };
    if header.iter().all(|byte| *byte == 0) {
        return Err(DecodeError::Zero);
    }
    let stored = u32_at(header, 0);
    let computed = crc32c::crc32c(&header[4..]);
    if stored != computed {
        return Err(DecodeError::HeaderChecksum { stored, computed });
    }
    let version = header[13];
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version { version });
    }
    let code = header[12];
    let record_type = RecordType::from_code(code).ok_or(DecodeError::UnknownType { code })?;
    let batch_offset = u16::from_le_bytes([header[14], header[15]]);
    let lsn = u64_at(header, 16);
    if u64::from(batch_offset) >= lsn {
        return Err(DecodeError::BatchOffset { batch_offset, lsn });
    }
    Ok(RecordHeader {
        record_type,
        payload_size: u32_at(header, 8),
        payload_checksum: u32_at(header, 4),
        batch_offset,
        lsn,
        sequence: u64_at(header, 24),
    })
}

/// A record decoded from a byte slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub header: RecordHeader,
    pub payload: &'a [u8],
    /// The bytes the record takes, padding included.
    pub size: usize,
}

/// Decodes and fully checks the record at the start of `bytes`: header checksum, sizes,
/// payload checksum and zero padding.
pub fn decode_record(
    bytes: &[u8],
    payload_size_max: u32,
) -> Result<DecodedRecord<'_>, DecodeError> {
    let header = decode_header(bytes)?;
    if header.payload_size > payload_size_max {
        return Err(DecodeError::PayloadTooLarge {
            size: header.payload_size,
            limit: payload_size_max,
        });
    }
    let size = header.record_size();
    let Some(record) = bytes.get(..size) else {
        return Err(DecodeError::Truncated {
            needed: size,
            available: bytes.len(),
        });
    };
    let payload_end = RECORD_HEADER_SIZE + header.payload_size as usize;
    let payload = &record[RECORD_HEADER_SIZE..payload_end];
    let computed = crc32c::crc32c(payload);
    if computed != header.payload_checksum {
        return Err(DecodeError::PayloadChecksum {
            stored: header.payload_checksum,
            computed,
        });
    }
    if record[payload_end..].iter().any(|byte| *byte != 0) {
        return Err(DecodeError::Padding);
    }
    Ok(DecodedRecord {
        header,
        payload,
        size,
    })
}

/// Encodes the header record of a segment whose first record has `lsn`.
pub fn encode_segment_header(lsn: u64, next_sequence: u64) -> BytesMut {
    encode_header_with_magic(lsn, next_sequence, SEGMENT_MAGIC)
}

/// Encodes the header record of a reset segment: the log starts afresh at `next_sequence`.
pub fn encode_reset_header(lsn: u64, next_sequence: u64) -> BytesMut {
    encode_header_with_magic(lsn, next_sequence, RESET_MAGIC)
}

fn encode_header_with_magic(lsn: u64, next_sequence: u64, magic: &[u8; 8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(SEGMENT_HEADER_SIZE);
    encode_record(
        &mut out,
        RecordType::SegmentHeader,
        0,
        lsn,
        next_sequence,
        magic,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(record_type: RecordType, lsn: u64, sequence: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_record(&mut out, record_type, 0, lsn, sequence, payload);
        out.to_vec()
    }

    #[test]
    fn encoding_is_pinned_little_endian() {
        // Checks the exact bytes of one entry record, so a format change cannot go unnoticed.
        let bytes = encoded(RecordType::Entry, 0x0102, 0x0a0b, b"abc");
        assert_eq!(bytes.len(), 64);
        assert_eq!(&bytes[8..12], &[3, 0, 0, 0]);
        assert_eq!(bytes[12], 2);
        assert_eq!(bytes[13], 1);
        assert_eq!(&bytes[14..16], &[0, 0]);
        assert_eq!(&bytes[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..32], &[0x0b, 0x0a, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[32..35], b"abc");
        assert!(bytes[35..].iter().all(|byte| *byte == 0));
        assert_eq!(u32_at(&bytes, 4), crc32c::crc32c(b"abc"));
        assert_eq!(u32_at(&bytes, 0), crc32c::crc32c(&bytes[4..32]));
    }

    #[test]
    fn record_sizes_round_up_to_the_alignment() {
        // Checks the size table: header plus payload, rounded up to 32 bytes.
        let table = [(0, 32), (1, 64), (32, 64), (33, 96), (8, 64), (1000, 1056)];
        for (payload, size) in table {
            assert_eq!(record_size(payload), size, "payload {payload}");
        }
    }

    #[test]
    fn decoding_reports_each_kind_of_damage() {
        // Checks the error for zeros, short input, each checksum, padding, type and size.
        let good = encoded(RecordType::Entry, 5, 4, b"payload");
        assert_eq!(decode_record(&good, 100).unwrap().payload, b"payload");
        let with = |index: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[index] = value;
            bytes
        };
        let header_fix = |mut bytes: Vec<u8>| {
            let checksum = crc32c::crc32c(&bytes[4..32]);
            bytes[..4].copy_from_slice(&checksum.to_le_bytes());
            bytes
        };
        type Expected = fn(&DecodeError) -> bool;
        let table: Vec<(Vec<u8>, Expected)> = vec![
            (vec![0; 64], |e| matches!(e, DecodeError::Zero)),
            (good[..20].to_vec(), |e| {
                matches!(e, DecodeError::Short { .. })
            }),
            (with(20, 9), |e| {
                matches!(e, DecodeError::HeaderChecksum { .. })
            }),
            (with(33, 0), |e| {
                matches!(e, DecodeError::PayloadChecksum { .. })
            }),
            (with(50, 1), |e| matches!(e, DecodeError::Padding)),
            (header_fix(with(12, 9)), |e| {
                matches!(e, DecodeError::UnknownType { code: 9 })
            }),
            (header_fix(with(13, 2)), |e| {
                matches!(e, DecodeError::Version { version: 2 })
            }),
            (good[..40].to_vec(), |e| {
                matches!(e, DecodeError::Truncated { .. })
            }),
        ];
        for (index, (bytes, expected)) in table.iter().enumerate() {
            let error = decode_record(bytes, 100).unwrap_err();
            assert!(expected(&error), "case {index}: {error:?}");
        }
        let error = decode_record(&good, 3).unwrap_err();
        assert_eq!(error, DecodeError::PayloadTooLarge { size: 7, limit: 3 });
    }

    #[test]
    fn segment_header_is_a_record_with_the_magic() {
        // Checks that a segment header decodes as a SegmentHeader record carrying the magic.
        let header = encode_segment_header(7, 3);
        let record = decode_record(&header, 8).unwrap();
        assert_eq!(record.header.record_type, RecordType::SegmentHeader);
        assert_eq!((record.header.lsn, record.header.sequence), (7, 3));
        assert_eq!(record.payload, SEGMENT_MAGIC);
        assert_eq!(record.size, SEGMENT_HEADER_SIZE);
    }

    #[test]
    fn reset_header_differs_from_a_segment_header_only_in_its_magic() {
        // Checks that a reset header is a SegmentHeader record of the same size whose
        // payload is the reset magic.
        let reset = encode_reset_header(7, 3);
        let record = decode_record(&reset, 8).unwrap();
        assert_eq!(record.header.record_type, RecordType::SegmentHeader);
        assert_eq!((record.header.lsn, record.header.sequence), (7, 3));
        assert_eq!(record.payload, RESET_MAGIC);
        assert_eq!(reset.len(), SEGMENT_HEADER_SIZE);
    }
}
