//! Fuzzes the WAL record decoder and segment recovery: any bytes must decode to an error or
//! to a record that re-encodes to the same bytes, and recovery must never panic, whether
//! the bytes are one segment or cut into two (which reaches the checks between segments:
//! continuity, incomplete segments, reset segments that discard what precedes them).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use synod_wal::record::{decode_record, encode_record};
use synod_wal::{Recovery, WalConfig};

const FIRST: &str = "wal-00000000000000000001.log";

/// Recovers a log from `segments` (name, bytes), as a driver would, ignoring the outcome.
fn recover(segments: &[(&str, &[u8])]) {
    let mut recovery = Recovery::new(WalConfig::small_for_tests()).expect("valid config");
    for (name, bytes) in segments {
        if recovery.feed(name, bytes).is_err() {
            return;
        }
    }
    let _ = recovery.finish();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_record(data, u32::MAX) {
        let header = record.header;
        let mut again = BytesMut::new();
        let (kind, offset) = (header.record_type, header.batch_offset);
        encode_record(&mut again, kind, offset, header.lsn, header.sequence, record.payload);
        assert_eq!(&again[..], &data[..record.size], "a decoded record re-encodes exactly");
    }
    recover(&[(FIRST, data)]);
    // The first byte picks where the input is cut (in 32-byte slots) and the lsn that names
    // the second segment.
    if let Some((&choice, rest)) = data.split_first() {
        let cut = (usize::from(choice & 0x0f) * 32).min(rest.len());
        let second = format!("wal-{:020}.log", 2 + u64::from(choice >> 4));
        recover(&[(FIRST, &rest[..cut]), (&second, &rest[cut..])]);
    }
});
