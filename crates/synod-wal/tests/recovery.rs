//! Recovery against damaged data directories: bit flips anywhere in a segment, foreign and
//! truncated files. Every error names the file and offset; nothing panics; nothing
//! acknowledged is lost silently.

mod common;

use bytes::Bytes;
use synod_core::Prng;
use synod_wal::{MemStorage, OpenError, Recovery, RecoveryError, Storage, SyncWal, WalEntry};

const FIRST: &str = "wal-00000000000000000001.log";

/// A log of three acknowledged batches (3, 2 and 2 entries) in one segment.
fn acknowledged_log() -> (MemStorage, Vec<Bytes>, Vec<u64>) {
    let (mut wal, _) = SyncWal::open(MemStorage::new(), common::config()).unwrap();
    let mut prng = Prng::from_seed(3);
    let mut payloads = Vec::new();
    for batch in [3, 2, 2] {
        for _ in 0..batch {
            let payload = common::payload(&mut prng, 200);
            wal.append(payload.clone()).unwrap();
            payloads.push(payload);
        }
        wal.flush().unwrap();
    }
    assert_eq!(wal.durable_sequence(), 7);
    let offsets = record_offsets(&payloads);
    (wal.into_storage(), payloads, offsets)
}

/// The offset of each entry record, and the end of the last one.
fn record_offsets(payloads: &[Bytes]) -> Vec<u64> {
    let mut offsets = vec![64u64];
    for payload in payloads {
        let size = (32 + payload.len()).div_ceil(32) * 32;
        offsets.push(offsets.last().unwrap() + size as u64);
    }
    offsets
}

fn open(storage: MemStorage) -> Result<(Vec<WalEntry>, synod_wal::RecoveryReport), OpenError> {
    let (mut wal, report) = SyncWal::open(storage, common::config())?;
    let (first, next) = (wal.wal().first_sequence(), wal.wal().next_sequence());
    let entries = if next > first {
        wal.read_range(first, next).unwrap()
    } else {
        Vec::new()
    };
    Ok((entries, report))
}

fn corruption_at(error: &OpenError) -> Option<(String, u64)> {
    match error {
        OpenError::Recovery(RecoveryError::Corruption { file, offset, .. })
        | OpenError::Recovery(RecoveryError::Foreign { file, offset, .. }) => {
            Some((file.clone(), *offset))
        }
        _ => None,
    }
}

#[test]
fn every_bit_flip_in_a_segment_is_detected_and_located() {
    // Checks each single-bit flip of a segment of acknowledged batches: in the header or in
    // any record it is reported as corruption at that record's offset (a flipped record
    // whose every sector was written cannot be a torn write); in the zero space after the
    // log it is garbage that recovery discards, keeping every entry.
    let (storage, payloads, offsets) = acknowledged_log();
    let log_end = *offsets.last().unwrap();
    for bit in 0..(log_end + 1_024) * 8 {
        let mut damaged = storage.clone();
        damaged.flip_bit(FIRST, bit);
        damaged.crash();
        let byte = bit / 8;
        let outcome = std::panic::catch_unwind(|| open(damaged));
        let outcome = outcome.unwrap_or_else(|_| panic!("bit {bit}: recovery panicked"));
        if byte < log_end {
            let error = outcome.expect_err("a flip in written data is detected");
            let (file, offset) =
                corruption_at(&error).unwrap_or_else(|| panic!("bit {bit}: {error}"));
            let record_start = offsets
                .iter()
                .copied()
                .filter(|start| *start <= byte)
                .max()
                .unwrap_or(0);
            let expected = if byte < 64 { 0 } else { record_start };
            assert_eq!(
                (file.as_str(), offset),
                (FIRST, expected),
                "bit {bit}: {error}"
            );
        } else {
            let (entries, report) = outcome.unwrap_or_else(|e| panic!("bit {bit}: {e}"));
            let recovered: Vec<Bytes> = entries.into_iter().map(|entry| entry.payload).collect();
            assert_eq!(recovered, payloads, "bit {bit}");
            let torn = report.torn_tail.expect("the garbage is reported");
            assert_eq!(
                (torn.file.as_str(), torn.offset),
                (FIRST, log_end),
                "bit {bit}"
            );
        }
    }
}

#[test]
fn a_flip_in_a_torn_last_write_is_treated_as_torn() {
    // Checks a last write cut at a sector boundary inside a record, with a bit flipped in
    // that record's payload or after it: recovery truncates it as a torn tail and keeps
    // every acknowledged entry.
    let (storage, payloads, offsets) = acknowledged_log();
    let log_end = *offsets.last().unwrap();
    let mut torn = storage.clone();
    let mut prng = Prng::from_seed(9);
    let batch: Vec<Bytes> = (0..6).map(|_| common::payload(&mut prng, 300)).collect();
    let mut bytes = Vec::new();
    for (index, payload) in batch.iter().enumerate() {
        let mut record = bytes::BytesMut::new();
        let lsn = 9 + index as u64;
        synod_wal::record::encode_record(
            &mut record,
            synod_wal::RecordType::Entry,
            index as u16,
            lsn,
            8 + index as u64,
            payload,
        );
        bytes.extend_from_slice(&record);
    }
    // The write is cut at the first 512-byte boundary more than 600 bytes into it.
    let cut = (log_end + 600).div_ceil(512) * 512;
    let kept = (cut - log_end) as usize;
    torn.write(FIRST, log_end, &bytes[..kept]).unwrap();
    torn.sync(FIRST).unwrap();
    let straddling = record_offsets(&batch)
        .iter()
        .map(|offset| offset - 64 + log_end)
        .filter(|start| *start < cut)
        .max()
        .unwrap();
    for bit in (straddling + 32) * 8..(cut + 512) * 8 {
        let mut damaged = torn.clone();
        damaged.flip_bit(FIRST, bit);
        let (entries, report) = open(damaged).unwrap_or_else(|error| panic!("bit {bit}: {error}"));
        let recovered: Vec<Bytes> = entries.into_iter().map(|entry| entry.payload).collect();
        assert_eq!(&recovered[..7], &payloads[..], "bit {bit}");
        assert!(
            recovered[7..]
                .iter()
                .zip(&batch)
                .all(|(got, written)| got == written),
            "bit {bit}"
        );
        let tail = report.torn_tail.expect("a torn tail");
        assert_eq!(
            (tail.file.as_str(), tail.offset),
            (FIRST, straddling),
            "bit {bit}"
        );
    }
}

#[test]
fn foreign_and_misnamed_files_are_refused_with_their_names() {
    // Checks that a file named like a segment but holding other bytes, and a file whose
    // name is a malformed segment name, are refused with an error naming them.
    let mut foreign = MemStorage::new();
    foreign
        .write(
            FIRST,
            0,
            b"this is not a write-ahead log at all, but a text file",
        )
        .unwrap();
    let error = open(foreign).unwrap_err();
    assert_eq!(
        corruption_at(&error),
        Some((FIRST.to_string(), 0)),
        "{error}"
    );
    assert!(
        error.to_string().contains("is not a synod WAL segment"),
        "{error}"
    );
    let mut misnamed = MemStorage::new();
    misnamed.write("wal-1.log", 0, b"x").unwrap();
    let error = open(misnamed).unwrap_err();
    assert!(error.to_string().contains("wal-1.log"), "{error}");
    let mut unrelated = MemStorage::new();
    unrelated.write("hardstate", 0, b"not ours").unwrap();
    assert!(
        open(unrelated).is_ok(),
        "files of other stores are left alone"
    );
}

#[test]
fn a_truncated_file_is_torn_at_the_end_and_corrupt_in_the_middle() {
    // Checks a segment cut inside its last record: as the last segment it is a torn tail
    // (the entries before survive); followed by another segment it is corruption, named
    // by file and offset.
    let (storage, payloads, offsets) = acknowledged_log();
    let mut cut = storage.clone();
    cut.set_len(FIRST, offsets[6] + 40).unwrap();
    cut.sync(FIRST).unwrap();
    let (entries, report) = open(cut).unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[5].payload, payloads[5]);
    assert_eq!(report.torn_tail.map(|tail| tail.offset), Some(offsets[6]));

    let (mut wal, _) = SyncWal::open(MemStorage::new(), common::config()).unwrap();
    let mut prng = Prng::from_seed(4);
    let segments_count = |wal: &mut SyncWal<MemStorage>| {
        let names = wal.storage_mut().list().unwrap();
        Recovery::segment_names(&names).unwrap().len()
    };
    while segments_count(&mut wal) < 2 {
        wal.append(common::payload(&mut prng, 600)).unwrap();
        wal.flush().unwrap();
    }
    let mut storage = wal.into_storage();
    storage.set_len(FIRST, 1_000).unwrap();
    storage.sync(FIRST).unwrap();
    let error = open(storage).unwrap_err();
    let (file, offset) = corruption_at(&error).unwrap_or_else(|| panic!("{error}"));
    assert_eq!(file, FIRST, "{error}");
    assert!((64..=1_000).contains(&offset), "{error}");
}

#[test]
fn a_recovered_log_continues_where_it_ended() {
    // Checks that after recovery new entries continue the sequence, truncation and
    // compaction survive a crash, and a clean shutdown reports no torn tail.
    let (storage, _, _) = acknowledged_log();
    let (mut wal, report) = SyncWal::open(storage, common::config()).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!((report.first_sequence, report.next_sequence), (1, 8));
    wal.truncate_suffix(6).unwrap();
    assert_eq!(wal.append(Bytes::from_static(b"six")).unwrap(), 6);
    wal.flush().unwrap();
    let mut storage = wal.into_storage();
    storage.crash();
    let (entries, _) = open(storage).unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[5].payload, Bytes::from_static(b"six"));
}
