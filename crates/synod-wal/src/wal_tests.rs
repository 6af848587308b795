//! Exact-output unit tests of the [`Wal`] engine: the ops each input hands out and the
//! outputs each completion produces.

use bytes::{Bytes, BytesMut};
use synod_core::disk::{DiskError, DiskOp, DiskReply};
use synod_core::{Duration, Instant};

use crate::config::WalConfig;
use crate::record::{RecordType, encode_record, encode_segment_header};
use crate::wal::{AppendError, IoTag, TruncateError, Wal, WalOutput, segment_file_name};

const FIRST: &str = "wal-00000000000000000001.log";

fn config() -> WalConfig {
    WalConfig::small_for_tests()
}

fn entry(wal: &mut Wal, payload: &str) -> u64 {
    let payload = Bytes::copy_from_slice(payload.as_bytes());
    wal.append(RecordType::Entry, payload).expect("append")
}

/// Every op of the current unit, with its tag. The engine hands out one op at a time, so
/// each op but the unit's last is completed successfully on the way; the last stays out
/// for the test to complete (or fail) itself.
fn drain_ops(wal: &mut Wal) -> Vec<(IoTag, DiskOp)> {
    let mut ops = Vec::new();
    while let Some((tag, op)) = wal.poll_io(Instant::ZERO) {
        ops.push((tag, op));
        if wal.unit_ops_left() <= 1 {
            break;
        }
        wal.complete(tag, Ok(DiskReply::Done));
    }
    ops
}

/// Completes whichever of `ops` is still out.
fn complete_all(wal: &mut Wal, ops: &[(IoTag, DiskOp)]) {
    for (tag, _) in ops {
        if wal.op_in_flight() == Some(*tag) {
            wal.complete(*tag, Ok(DiskReply::Done));
        }
    }
}

fn outputs(wal: &mut Wal) -> Vec<WalOutput> {
    std::iter::from_fn(|| wal.poll_output()).collect()
}

/// The bytes of a batch: (type, lsn, sequence, payload) per record.
fn batch(records: &[(RecordType, u64, u64, &str)]) -> Bytes {
    let mut out = BytesMut::new();
    for (index, (record_type, lsn, sequence, payload)) in records.iter().enumerate() {
        let batch_offset = index as u16;
        encode_record(
            &mut out,
            *record_type,
            batch_offset,
            *lsn,
            *sequence,
            payload.as_bytes(),
        );
    }
    out.freeze()
}

fn write(path: &str, offset: u64, data: Bytes) -> DiskOp {
    DiskOp::Write {
        path: path.to_string(),
        offset,
        data,
    }
}

fn sync(path: &str) -> DiskOp {
    DiskOp::Sync {
        path: path.to_string(),
    }
}

fn ops_only(ops: &[(IoTag, DiskOp)]) -> Vec<DiskOp> {
    ops.iter().map(|(_, op)| op.clone()).collect()
}

#[test]
fn the_first_append_creates_a_segment_then_writes_and_syncs() {
    // Checks the exact ops of the first append (segment header, preallocation, file and
    // directory sync, then the record and its sync) and that Durable waits for the last.
    let mut wal = Wal::new(config()).unwrap();
    assert_eq!(entry(&mut wal, "a"), 1);
    let ops = drain_ops(&mut wal);
    let header = encode_segment_header(1, 1).freeze();
    let expected = vec![
        write(FIRST, 0, header),
        DiskOp::SetLen {
            path: FIRST.to_string(),
            len: 64 << 10,
        },
        sync(FIRST),
        DiskOp::SyncDir,
        write(FIRST, 64, batch(&[(RecordType::Entry, 2, 1, "a")])),
        sync(FIRST),
    ];
    assert_eq!(ops_only(&ops), expected);
    complete_all(&mut wal, &ops[..5]);
    assert_eq!(outputs(&mut wal), vec![]);
    complete_all(&mut wal, &ops[5..]);
    assert_eq!(
        outputs(&mut wal),
        vec![WalOutput::Durable { up_to_sequence: 1 }]
    );
    assert!(wal.is_idle());
}

#[test]
fn appends_during_a_batch_in_flight_are_committed_together() {
    // Checks group commit: while one batch is in flight nothing else is handed out, and the
    // appends made meanwhile go out as one write and one sync.
    let mut wal = Wal::new(config()).unwrap();
    entry(&mut wal, "a");
    let first = drain_ops(&mut wal);
    for payload in ["b", "c", "d"] {
        entry(&mut wal, payload);
    }
    assert_eq!(wal.poll_io(Instant::ZERO), None);
    complete_all(&mut wal, &first);
    assert_eq!(
        outputs(&mut wal),
        vec![WalOutput::Durable { up_to_sequence: 1 }]
    );
    let second = drain_ops(&mut wal);
    let records = [
        (RecordType::Entry, 3, 2, "b"),
        (RecordType::Entry, 4, 3, "c"),
        (RecordType::Entry, 5, 4, "d"),
    ];
    assert_eq!(
        ops_only(&second),
        vec![write(FIRST, 128, batch(&records)), sync(FIRST)]
    );
    complete_all(&mut wal, &second);
    assert_eq!(
        outputs(&mut wal),
        vec![WalOutput::Durable { up_to_sequence: 4 }]
    );
}

#[test]
fn a_batch_that_does_not_fit_rolls_to_a_new_segment() {
    // Checks the roll: the segment is named by its first lsn and created (and made durable)
    // before the batch that goes into it.
    let mut config = config();
    config.segment_size = 4_096;
    config.batch_size_max = 2_048;
    config.record_size_max = 1_000;
    config.pending_bytes_max = 1 << 20;
    config.read_size_max = 4_096;
    // Without a spare, the roll-over creates and preallocates the segment itself.
    config.spare_prepare_at_percent = 0;
    let mut wal = Wal::new(config).unwrap();
    let payload = "x".repeat(1_000);
    for _ in 0..3 {
        entry(&mut wal, &payload);
        let ops = drain_ops(&mut wal);
        complete_all(&mut wal, &ops);
    }
    // 64 + 3 * 1056 = 3232 bytes used; a fourth record needs 1056 more and rolls over.
    entry(&mut wal, &payload);
    let ops = drain_ops(&mut wal);
    let second = segment_file_name(5);
    let header = encode_segment_header(5, 4).freeze();
    let data = batch(&[(RecordType::Entry, 6, 4, &payload)]);
    let expected = vec![
        write(&second, 0, header),
        DiskOp::SetLen {
            path: second.clone(),
            len: 4_096,
        },
        sync(&second),
        DiskOp::SyncDir,
        write(&second, 64, data),
        sync(&second),
    ];
    assert_eq!(ops_only(&ops), expected);
}

#[test]
fn truncating_written_entries_writes_a_truncate_record_first() {
    // Checks that truncating written entries queues a truncate record ahead of the next
    // entries, that Durable then reports the surviving prefix, and that truncating only
    // pending entries needs no record at all.
    let mut wal = Wal::new(config()).unwrap();
    for payload in ["a", "b", "c"] {
        entry(&mut wal, payload);
    }
    let ops = drain_ops(&mut wal);
    complete_all(&mut wal, &ops);
    outputs(&mut wal);
    wal.truncate_suffix(2).unwrap();
    assert_eq!(entry(&mut wal, "B"), 2);
    entry(&mut wal, "C");
    wal.truncate_suffix(3).unwrap();
    let ops = drain_ops(&mut wal);
    let records = [
        (RecordType::Truncate, 5, 2, ""),
        (RecordType::Entry, 6, 2, "B"),
    ];
    // 64 + three 64-byte records = 256.
    assert_eq!(
        ops_only(&ops),
        vec![write(FIRST, 256, batch(&records)), sync(FIRST)]
    );
    complete_all(&mut wal, &ops);
    assert_eq!(
        outputs(&mut wal),
        vec![WalOutput::Durable { up_to_sequence: 2 }]
    );
    assert_eq!(wal.next_sequence(), 3);
    let below = wal.truncate_suffix(0).unwrap_err();
    assert_eq!(
        below,
        TruncateError::BelowFirst {
            from: 0,
            first_sequence: 1
        }
    );
}

#[test]
fn compaction_removes_whole_segments_oldest_first_with_a_directory_sync_each() {
    // Checks that compaction removes only segments whose entries are all below the point,
    // never the segment being written, each removal made durable before the next.
    let mut config = config();
    config.segment_size = 4_096;
    config.batch_size_max = 2_048;
    config.record_size_max = 1_000;
    config.read_size_max = 4_096;
    config.spare_prepare_at_percent = 0;
    let mut wal = Wal::new(config).unwrap();
    let payload = "y".repeat(1_000);
    for _ in 0..9 {
        entry(&mut wal, &payload);
        let ops = drain_ops(&mut wal);
        complete_all(&mut wal, &ops);
    }
    // Segments hold sequences 1-3, 4-6 and 7-9.
    assert_eq!(outputs(&mut wal).len(), 9);
    wal.compact_prefix(7);
    let ops = drain_ops(&mut wal);
    let remove = |name: String| DiskOp::Remove { path: name };
    let expected = vec![
        remove(segment_file_name(1)),
        DiskOp::SyncDir,
        remove(segment_file_name(5)),
        DiskOp::SyncDir,
    ];
    assert_eq!(ops_only(&ops), expected);
    complete_all(&mut wal, &ops);
    assert_eq!(
        outputs(&mut wal),
        vec![WalOutput::Compacted { first_sequence: 7 }]
    );
    assert_eq!(wal.first_sequence(), 7);
}

#[test]
fn a_failed_sync_latches_the_log_and_refuses_everything_after() {
    // Checks that a failed sync is fatal: no Durable, a Failed output, no more ops, and
    // appends refused (fsync is never retried).
    let mut wal = Wal::new(config()).unwrap();
    entry(&mut wal, "a");
    let ops = drain_ops(&mut wal);
    complete_all(&mut wal, &ops[..5]);
    let error = DiskError::Io {
        op: "sync",
        path: FIRST.to_string(),
        message: "input/output error".to_string(),
    };
    wal.complete(ops[5].0, Err(error.clone()));
    let outputs = outputs(&mut wal);
    assert!(matches!(&outputs[..], [WalOutput::Failed(fatal)] if fatal.error == error));
    let refused = wal
        .append(RecordType::Entry, Bytes::from_static(b"b"))
        .unwrap_err();
    assert!(matches!(refused, AppendError::Failed(_)));
    assert_eq!(wal.poll_io(Instant::ZERO), None);
}

#[test]
fn appends_beyond_the_limits_are_refused_with_the_limit_named() {
    // Checks the record size and pending bytes limits and the reserved record types.
    let mut config = config();
    config.pending_bytes_max = 4_096;
    let mut wal = Wal::new(config).unwrap();
    let large = Bytes::from(vec![1u8; 2_049]);
    let refused = wal.append(RecordType::Entry, large).unwrap_err();
    assert_eq!(
        refused,
        AppendError::TooLarge {
            size: 2_049,
            limit: 2_048
        }
    );
    let record = Bytes::from(vec![1u8; 2_000]);
    wal.append(RecordType::Entry, record.clone()).unwrap();
    wal.append(RecordType::Entry, record.clone()).unwrap();
    let full = wal.append(RecordType::Entry, record).unwrap_err();
    assert!(
        matches!(full, AppendError::PendingFull { limit: 4_096, .. }),
        "{full}"
    );
    let reserved = wal.append(RecordType::Truncate, Bytes::new()).unwrap_err();
    assert!(matches!(reserved, AppendError::ReservedType { .. }));
}

#[test]
fn a_small_batch_is_held_until_batch_wait_max_when_configured() {
    // Checks batch_wait_max: a lone small append waits for the deadline, then goes out.
    let mut config = config();
    config.batch_wait_max = Duration::from_millis(2);
    let mut wal = Wal::new(config).unwrap();
    entry(&mut wal, "a");
    let start = Instant::from_nanos(1_000);
    assert_eq!(wal.poll_io(start), None);
    let deadline = wal.deadline().expect("a held batch has a deadline");
    assert_eq!(deadline, start + Duration::from_millis(2));
    assert_eq!(wal.poll_io(start + Duration::from_millis(1)), None);
    assert!(wal.poll_io(deadline).is_some());
    assert_eq!(wal.deadline(), None);
}

/// Completes every op the engine hands out, successfully, until it hands out none.
fn run_all(wal: &mut Wal) -> Vec<DiskOp> {
    let mut ops = Vec::new();
    while let Some((tag, op)) = wal.poll_io(Instant::ZERO) {
        ops.push(op);
        wal.complete(tag, Ok(DiskReply::Done));
    }
    ops
}

fn remove(path: &str) -> DiskOp {
    DiskOp::Remove {
        path: path.to_string(),
    }
}

#[test]
fn a_reset_creates_its_segment_durably_before_removing_the_old_ones() {
    // Checks the exact ops of a reset (the reset segment written, preallocated, synced and
    // named durably; then the old segment removed and the directory synced), that the next
    // append gets the new start at once, and that Reset comes before that append's Durable.
    let mut config = config();
    config.spare_prepare_at_percent = 0;
    let mut wal = Wal::new(config).unwrap();
    for payload in ["a", "b", "c"] {
        entry(&mut wal, payload);
    }
    run_all(&mut wal);
    outputs(&mut wal);
    wal.reset(100).unwrap();
    assert_eq!((wal.first_sequence(), wal.next_sequence()), (100, 100));
    assert_eq!(entry(&mut wal, "x"), 100);
    let ops = run_all(&mut wal);
    // The first segment holds lsn 1 (header) and 2-4 (entries): the reset segment is 5.
    let reset = segment_file_name(5);
    let header = crate::record::encode_reset_header(5, 100).freeze();
    let expected = vec![
        write(&reset, 0, header),
        DiskOp::SetLen {
            path: reset.clone(),
            len: 64 << 10,
        },
        sync(&reset),
        DiskOp::SyncDir,
        remove(FIRST),
        DiskOp::SyncDir,
        write(&reset, 64, batch(&[(RecordType::Entry, 6, 100, "x")])),
        sync(&reset),
    ];
    assert_eq!(ops, expected);
    assert_eq!(
        outputs(&mut wal),
        vec![
            WalOutput::Reset { next_sequence: 100 },
            WalOutput::Durable {
                up_to_sequence: 100
            }
        ]
    );
    assert!(wal.is_idle());
}

#[test]
fn nothing_is_reported_durable_between_a_reset_and_its_reset_output() {
    // Checks that a batch in flight when reset is called completes without a Durable, that
    // pending appends are dropped, and that a compaction asked before is forgotten.
    let mut wal = Wal::new(config()).unwrap();
    entry(&mut wal, "a");
    let ops = drain_ops(&mut wal);
    entry(&mut wal, "pending, never written");
    wal.compact_prefix(2);
    wal.reset(7).unwrap();
    complete_all(&mut wal, &ops);
    assert_eq!(outputs(&mut wal), vec![]);
    let ops = run_all(&mut wal);
    let writes_of_entries = ops.iter().filter(
        |op| matches!(op, DiskOp::Write { path, offset, .. } if path == FIRST && *offset > 64),
    );
    assert_eq!(writes_of_entries.count(), 0, "{ops:?}");
    assert_eq!(
        outputs(&mut wal),
        vec![WalOutput::Reset { next_sequence: 7 }]
    );
    assert_eq!((wal.first_sequence(), wal.next_sequence()), (7, 7));
}

#[test]
fn resets_out_of_range_or_after_a_failure_are_refused() {
    // Checks that sequence 0 and sequences past SEQUENCE_MAX are refused, and that a
    // latched log refuses a reset.
    use crate::wal::{ResetError, SEQUENCE_MAX};
    let mut wal = Wal::new(config()).unwrap();
    assert_eq!(
        wal.reset(0),
        Err(ResetError::OutOfRange { next_sequence: 0 })
    );
    let too_far = SEQUENCE_MAX + 1;
    assert_eq!(
        wal.reset(too_far),
        Err(ResetError::OutOfRange {
            next_sequence: too_far
        })
    );
    entry(&mut wal, "a");
    let (tag, _) = wal.poll_io(Instant::ZERO).unwrap();
    let error = DiskError::Io {
        op: "write",
        path: FIRST.to_string(),
        message: "input/output error".to_string(),
    };
    wal.complete(tag, Err(error));
    assert!(matches!(wal.reset(5), Err(ResetError::Failed(_))));
}

/// A configuration whose segments are 8 KiB: the spare is one write of zeros.
fn small_segments() -> WalConfig {
    let mut config = config();
    config.segment_size = 8 << 10;
    config.batch_size_max = 2 << 10;
    config.record_size_max = 1_000;
    config.read_size_max = 8 << 10;
    config
}

#[test]
fn the_spare_is_prepared_between_batches_once_the_segment_is_half_full() {
    // Checks that nothing is prepared below half, that past half the spare's ops (zeros,
    // sync, length, sync) alternate with batches so a batch waits behind at most one, and
    // that the roll-over then writes the header into the spare, syncs and renames it.
    use crate::wal::SPARE_SEGMENT_NAME as SPARE;
    let mut wal = Wal::new(small_segments()).unwrap();
    let payload = "z".repeat(1_000);
    // Three 1056-byte records after the 64-byte header: 3232 bytes, under half of 8192.
    for _ in 0..3 {
        entry(&mut wal, &payload);
        run_all(&mut wal);
    }
    assert!(wal.is_idle(), "no spare below half");
    entry(&mut wal, &payload);
    // The batch goes out alone (the segment is under half when it is issued).
    for _ in 0..2 {
        let (tag, op) = wal.poll_io(Instant::ZERO).unwrap();
        assert!(
            matches!(op, DiskOp::Write { .. } | DiskOp::Sync { .. }),
            "{op:?}"
        );
        assert_eq!(op.paths(), [FIRST]);
        wal.complete(tag, Ok(DiskReply::Done));
    }
    assert!(!wal.is_idle(), "past half the spare is due");
    let mut seen = Vec::new();
    for _ in 0..4 {
        entry(&mut wal, "s");
        // One spare op, then the batch waiting for it.
        for _ in 0..3 {
            let (tag, op) = wal.poll_io(Instant::ZERO).unwrap();
            seen.push(op);
            wal.complete(tag, Ok(DiskReply::Done));
        }
    }
    let zeros = Bytes::from(vec![0u8; 8 << 10]);
    let spare_ops: Vec<DiskOp> = (seen.iter())
        .filter(|op| op.paths() == [SPARE])
        .cloned()
        .collect();
    let set_len = DiskOp::SetLen {
        path: SPARE.to_string(),
        len: 8 << 10,
    };
    let expected = vec![write(SPARE, 0, zeros), sync(SPARE), set_len, sync(SPARE)];
    assert_eq!(spare_ops, expected);
    for (index, op) in seen.iter().enumerate() {
        let is_spare = op.paths() == [SPARE];
        assert_eq!(is_spare, index % 3 == 0, "alternation at {index}: {seen:?}");
    }
    assert!(wal.is_idle(), "the spare is ready");
    // Fill the segment until a batch does not fit: it rolls over into the spare.
    let ops = loop {
        entry(&mut wal, &payload);
        let ops = run_all(&mut wal);
        if ops.len() > 2 {
            break ops;
        }
    };
    let DiskOp::Write { path, offset, .. } = &ops[0] else {
        panic!("{ops:?}");
    };
    assert_eq!((path.as_str(), *offset), (SPARE, 0));
    let name = match &ops[2] {
        DiskOp::Rename { from, to } if from == SPARE => to.clone(),
        other => panic!("expected the spare renamed, got {other:?}"),
    };
    assert_eq!(ops[1], sync(SPARE));
    assert_eq!(ops[3], DiskOp::SyncDir);
    assert!(matches!(&ops[4], DiskOp::Write { path, offset: 64, .. } if *path == name));
    assert_eq!(ops[5], sync(&name));
}

#[test]
fn a_spare_of_a_large_segment_is_written_a_piece_at_a_time() {
    // Checks that a segment larger than SPARE_WRITE_SIZE is prepared in pieces of at most
    // that size, each followed by its sync, covering the whole segment exactly.
    use crate::wal::{SPARE_SEGMENT_NAME as SPARE, SPARE_WRITE_SIZE};
    let mut config = config();
    config.segment_size = 2 * SPARE_WRITE_SIZE + 4_096;
    config.spare_prepare_at_percent = 1;
    let mut wal = Wal::new(config).unwrap();
    let payload = "p".repeat(2_000);
    let mut ops = Vec::new();
    while ops.is_empty() {
        entry(&mut wal, &payload);
        while let Some((tag, op)) = wal.poll_io(Instant::ZERO) {
            wal.complete(tag, Ok(DiskReply::Done));
            if op.paths() == [SPARE] {
                ops.push(op);
                break;
            }
        }
    }
    ops.extend(run_all(&mut wal));
    let mut pieces = Vec::new();
    for pair in ops.chunks(2).take(3) {
        match pair {
            [DiskOp::Write { offset, data, .. }, DiskOp::Sync { .. }] => {
                pieces.push((*offset, data.len() as u64));
            }
            other => panic!("expected a write and a sync, got {other:?}"),
        }
    }
    let size = SPARE_WRITE_SIZE;
    assert_eq!(pieces, vec![(0, size), (size, size), (2 * size, 4_096)]);
    assert!(matches!(ops[6], DiskOp::SetLen { .. }), "{:?}", ops[6]);
    assert_eq!(ops[7], sync(SPARE));
    assert_eq!(ops.len(), 8);
}

#[test]
fn with_the_spare_off_no_spare_op_is_ever_handed_out() {
    // Checks spare_prepare_at_percent = 0: a full segment's worth of appends hands out no
    // op on the spare.
    use crate::wal::SPARE_SEGMENT_NAME as SPARE;
    let mut config = small_segments();
    config.spare_prepare_at_percent = 0;
    let mut wal = Wal::new(config).unwrap();
    let payload = "q".repeat(900);
    for _ in 0..20 {
        entry(&mut wal, &payload);
        let ops = run_all(&mut wal);
        assert!(ops.iter().all(|op| op.paths() != [SPARE]), "{ops:?}");
    }
}
