//! Property tests of the decoders: encode/decode round trips, and arbitrary bytes never
//! panic a decoder.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use synod_wal::record::{RecordType, decode_record, encode_record, record_size};
use synod_wal::{
    HardStateStore, MemStorage, Recovery, Snapshot, SnapshotReceiver, Storage, WalConfig,
};

fn record_type() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::SegmentHeader),
        Just(RecordType::Entry),
        Just(RecordType::Truncate)
    ]
}

proptest! {
    #[test]
    fn records_round_trip(
        record_type in record_type(),
        lsn in 1u64..u64::MAX,
        batch_offset in any::<u16>(),
        sequence in any::<u64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        // Checks that every encodable record decodes to exactly what was encoded.
        let batch_offset = if u64::from(batch_offset) >= lsn { 0 } else { batch_offset };
        let mut out = BytesMut::new();
        encode_record(&mut out, record_type, batch_offset, lsn, sequence, &payload);
        prop_assert_eq!(out.len(), record_size(payload.len()));
        let record = decode_record(&out, u32::MAX).unwrap();
        prop_assert_eq!(record.header.record_type, record_type);
        prop_assert_eq!((record.header.lsn, record.header.sequence), (lsn, sequence));
        prop_assert_eq!(record.header.batch_offset, batch_offset);
        prop_assert_eq!(record.payload, &payload[..]);
        prop_assert_eq!(record.size, out.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        // Checks the record decoder, segment recovery, the hard state slots and the
        // snapshot loader on arbitrary input: errors, never panics.
        let _ = decode_record(&bytes, u32::MAX);
        let mut recovery = Recovery::new(WalConfig::small_for_tests()).unwrap();
        if recovery.feed("wal-00000000000000000001.log", &bytes).is_ok() {
            let _ = recovery.finish();
        }
        let _ = HardStateStore::recover(&bytes);
        let _ = synod_wal::load_snapshot("snapshot-00000000000000000001.snap", &Bytes::from(bytes));
    }

    #[test]
    fn a_record_followed_by_garbage_still_decodes(
        payload in proptest::collection::vec(any::<u8>(), 0..500),
        garbage in proptest::collection::vec(any::<u8>(), 0..500),
    ) {
        // Checks that decoding looks only at the record's own bytes.
        let mut out = BytesMut::new();
        encode_record(&mut out, RecordType::Entry, 0, 1, 1, &payload);
        out.extend_from_slice(&garbage);
        prop_assert_eq!(decode_record(&out, u32::MAX).unwrap().payload, &payload[..]);
    }

    #[test]
    fn snapshots_stream_in_chunks_and_reassemble(
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        chunk_size in 1usize..2000,
    ) {
        // Checks that chunking and reassembly give back the snapshot, whatever the sizes.
        let snapshot = Snapshot { last_included_sequence: 42, data: Bytes::from(data) };
        let mut receiver = SnapshotReceiver::new(1 << 20);
        let mut assembled = None;
        for chunk in synod_wal::snapshot_chunks(&snapshot, chunk_size) {
            prop_assert!(assembled.is_none());
            assembled = receiver.accept(chunk).unwrap();
        }
        prop_assert_eq!(assembled, Some(snapshot));
    }
}

#[test]
fn recovery_of_a_written_log_survives_arbitrary_tails() {
    // Checks that appending arbitrary bytes after a valid log never panics recovery.
    let mut storage = MemStorage::new();
    let (mut wal, _) =
        synod_wal::SyncWal::open(storage.clone(), WalConfig::small_for_tests()).unwrap();
    for index in 0..20u8 {
        wal.append(Bytes::from(vec![index + 1; 100])).unwrap();
    }
    wal.flush().unwrap();
    storage = wal.into_storage();
    let mut prng = synod_core::Prng::from_seed(5);
    for _ in 0..200 {
        let mut damaged = storage.clone();
        let offset = 64 + prng.below(4096);
        let garbage: Vec<u8> = (0..1 + prng.below(300))
            .map(|_| prng.below(256) as u8)
            .collect();
        damaged
            .write("wal-00000000000000000001.log", offset, &garbage)
            .unwrap();
        let _ = synod_wal::SyncWal::open(damaged, WalConfig::small_for_tests());
    }
}
