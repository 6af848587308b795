//! Fuzzes the WAL record decoder and segment recovery: any bytes must decode to an error or
//! to a record that re-encodes to the same bytes, and recovery must never panic.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use synod_wal::record::{decode_record, encode_record};
use synod_wal::{Recovery, WalConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode_record(data, u32::MAX) {
        let header = record.header;
        let mut again = BytesMut::new();
        let (kind, offset) = (header.record_type, header.batch_offset);
        encode_record(&mut again, kind, offset, header.lsn, header.sequence, record.payload);
        assert_eq!(&again[..], &data[..record.size], "a decoded record re-encodes exactly");
    }
    let mut recovery = Recovery::new(WalConfig::small_for_tests()).expect("valid config");
    if recovery.feed("wal-00000000000000000001.log", data).is_ok() {
        let _ = recovery.finish();
    }
});
