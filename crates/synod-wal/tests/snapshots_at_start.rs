//! Opening a data directory with snapshots: the newest snapshot that verifies is loaded, a
//! damaged newer one is reported and an older complete one used instead, stale files are
//! removed, and the log is checked against the snapshot (a gap is a clear error).

mod common;

use bytes::Bytes;
use synod_wal::snapshot::{snapshot_file_name, snapshot_temporary_name};
use synod_wal::{
    MemStorage, OpenError, SnapshotError, SnapshotScan, SnapshotWriter, Storage, SyncWal,
};

/// Writes a complete snapshot of `data` through the writer, leaving older files alone.
fn write_snapshot(storage: &mut MemStorage, sequence: u64, data: &'static [u8]) {
    let mut writer = SnapshotWriter::new(sequence, Vec::new());
    writer.write_chunk(Bytes::from_static(data));
    writer.finish();
    while let Some((tag, op)) = writer.poll_io() {
        let result = storage.execute(&op);
        writer.complete(tag, result);
    }
}

/// A log of entries `first..next` (payload: the sequence as text), flushed.
fn log_from(storage: MemStorage, first: u64, next: u64) -> MemStorage {
    let (mut wal, _) = SyncWal::open(storage, common::config()).unwrap();
    if first > 1 {
        wal.reset(first).unwrap();
    }
    for sequence in first..next {
        assert_eq!(wal.append(sequence.to_string()).unwrap(), sequence);
    }
    wal.flush().unwrap();
    wal.into_storage()
}

#[test]
fn the_newest_snapshot_is_loaded_and_stale_files_are_removed() {
    // Checks that of three snapshots and a leftover .tmp, the newest is loaded, the older
    // ones and the .tmp are removed durably, and the log after it is returned with it.
    let mut storage = MemStorage::new();
    write_snapshot(&mut storage, 3, b"three");
    write_snapshot(&mut storage, 5, b"five");
    write_snapshot(&mut storage, 8, b"eight");
    storage
        .write(&snapshot_temporary_name(12), 0, b"half a snap")
        .unwrap();
    storage.sync_dir().unwrap();
    let storage = log_from(storage, 1, 15);
    let (mut wal, report) = SyncWal::open_with_snapshot(storage, common::config()).unwrap();
    let snapshot = report.snapshot.expect("a snapshot");
    assert_eq!(snapshot.last_included_sequence, 8);
    assert_eq!(snapshot.data, Bytes::from_static(b"eight"));
    assert_eq!(report.snapshot_file, Some(snapshot_file_name(8)));
    assert!(report.snapshots_rejected.is_empty());
    let removed = vec![
        snapshot_file_name(3),
        snapshot_file_name(5),
        snapshot_temporary_name(12),
    ];
    assert_eq!(report.snapshot_files_removed, removed);
    assert_eq!(report.log_reset_to, None);
    assert_eq!(wal.read_range(9, 10).unwrap()[0].payload, "9");
    let mut storage = wal.into_storage();
    storage.crash();
    let snapshots: Vec<String> = (storage.list().unwrap().into_iter())
        .filter(|name| name.starts_with("snapshot-"))
        .collect();
    assert_eq!(snapshots, vec![snapshot_file_name(8)]);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_an_older_one_and_is_reported() {
    // Checks that a bit flip in the newest snapshot makes the open load the next older
    // one, report the damaged file with the reason, keep it for the operator, and remove
    // only snapshots older than the one loaded.
    let mut storage = MemStorage::new();
    write_snapshot(&mut storage, 2, b"two");
    write_snapshot(&mut storage, 4, b"four");
    write_snapshot(&mut storage, 6, b"six");
    storage.flip_bit(&snapshot_file_name(6), 3);
    let storage = log_from(storage, 1, 10);
    let (_, report) = SyncWal::open_with_snapshot(storage, common::config()).unwrap();
    assert_eq!(report.snapshot_file, Some(snapshot_file_name(4)));
    let [rejected] = &report.snapshots_rejected[..] else {
        panic!("{:?}", report.snapshots_rejected);
    };
    assert_eq!(rejected.file, snapshot_file_name(6));
    assert!(
        matches!(&rejected.error, SnapshotError::Corrupt { file, offset: 0, reason }
            if *file == snapshot_file_name(6) && reason.contains("checksum")),
        "{}",
        rejected.error
    );
    assert_eq!(report.snapshot_files_removed, vec![snapshot_file_name(2)]);
}

#[test]
fn with_every_snapshot_damaged_a_log_from_the_start_still_opens() {
    // Checks that when no snapshot verifies, none is removed, each is reported, and a log
    // that starts at sequence 1 is enough to open.
    let mut storage = MemStorage::new();
    write_snapshot(&mut storage, 4, b"four");
    storage.set_len(&snapshot_file_name(4), 10).unwrap();
    storage.sync(&snapshot_file_name(4)).unwrap();
    let storage = log_from(storage, 1, 6);
    let (_, report) = SyncWal::open_with_snapshot(storage, common::config()).unwrap();
    assert_eq!(report.snapshot, None);
    assert_eq!(report.snapshots_rejected.len(), 1);
    let text = report.snapshots_rejected[0].error.to_string();
    assert!(text.contains("cannot hold the trailer"), "{text}");
    assert!(report.snapshot_files_removed.is_empty());
}

#[test]
fn a_log_that_starts_after_the_snapshot_is_a_gap_naming_both() {
    // Checks the gap: a snapshot up to 10 and a log from 20 leave 11..=19 nowhere; the
    // error names the sequences and the snapshot file, and mentions a rejected newer one.
    let mut storage = MemStorage::new();
    write_snapshot(&mut storage, 10, b"ten");
    write_snapshot(&mut storage, 19, b"nineteen");
    storage.flip_bit(&snapshot_file_name(19), 7);
    let storage = log_from(storage, 20, 25);
    let Err(error) = SyncWal::open_with_snapshot(storage, common::config()) else {
        panic!("a log with a gap after the snapshot opened");
    };
    let OpenError::Gap(gap) = &error else {
        panic!("expected a gap, got {error}");
    };
    assert_eq!((gap.first_sequence, gap.last_included_sequence), (20, 10));
    let text = error.to_string();
    for needed in [
        "starts at sequence 20",
        "snapshot-00000000000000000010.snap ends at sequence 10",
        "entries 11..=19",
        "snapshot-00000000000000000019.snap was rejected",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
    let no_snapshot = log_from(MemStorage::new(), 5, 7);
    let Err(error) = SyncWal::open_with_snapshot(no_snapshot, common::config()) else {
        panic!("a log from 5 without a snapshot opened");
    };
    assert!(
        error.to_string().contains("there is no snapshot"),
        "{error}"
    );
}

#[test]
fn a_log_that_ends_before_the_snapshot_is_reset_to_follow_it() {
    // Checks the crash between installing a snapshot and resetting the log: the log (up
    // to 7) ends before the snapshot's last sequence (30), so opening resets it to 31,
    // durably; and a log that reaches the snapshot exactly is left as it is.
    let mut storage = log_from(MemStorage::new(), 1, 8);
    write_snapshot(&mut storage, 30, b"thirty");
    let (mut wal, report) = SyncWal::open_with_snapshot(storage, common::config()).unwrap();
    assert_eq!(report.log_reset_to, Some(31));
    assert_eq!(wal.append("31").unwrap(), 31);
    wal.flush().unwrap();
    let mut storage = wal.into_storage();
    storage.crash();
    let (mut wal, report) = SyncWal::open_with_snapshot(storage, common::config()).unwrap();
    assert_eq!(report.log_reset_to, None);
    assert_eq!(wal.wal().first_sequence(), 31);
    assert_eq!(wal.read_range(31, 32).unwrap()[0].payload, "31");

    let mut exact = log_from(MemStorage::new(), 1, 8);
    write_snapshot(&mut exact, 7, b"seven");
    let (wal, report) = SyncWal::open_with_snapshot(exact, common::config()).unwrap();
    assert_eq!(report.log_reset_to, None);
    assert_eq!(wal.wal().next_sequence(), 8);
}

#[test]
fn a_crash_at_every_op_of_a_snapshot_write_opens_the_old_or_the_new_snapshot() {
    // Checks a power loss after each op of writing snapshot 9 over snapshot 5 (the older
    // removed by the writer at the end): the open loads snapshot 5 or 9, whole, never a
    // damaged one, and no .tmp file survives the open.
    let base = {
        let mut storage = log_from(MemStorage::new(), 1, 12);
        write_snapshot(&mut storage, 5, b"five");
        storage
    };
    let mut writer = SnapshotWriter::new(9, vec![snapshot_file_name(5)]);
    writer.write_chunk(Bytes::from_static(b"nine, "));
    writer.write_chunk(Bytes::from_static(b"in two chunks"));
    writer.finish();
    let mut storage = base.clone();
    let mut ops_count = 0;
    loop {
        let mut crashed = storage.clone();
        crashed.crash();
        let case = format!("after {ops_count} ops");
        let (mut wal, report) = SyncWal::open_with_snapshot(crashed, common::config())
            .unwrap_or_else(|error| panic!("{case}: {error}"));
        let snapshot = report.snapshot.expect("a snapshot");
        let expected: &[u8] = match snapshot.last_included_sequence {
            5 => b"five",
            9 => b"nine, in two chunks",
            other => panic!("{case}: snapshot {other}"),
        };
        assert_eq!(snapshot.data, Bytes::from_static(expected), "{case}");
        assert!(report.snapshots_rejected.is_empty(), "{case}");
        let names = wal.storage_mut().list().unwrap();
        assert!(
            names.iter().all(|name| !name.ends_with(".tmp")),
            "{case}: {names:?}"
        );
        let Some((tag, op)) = writer.poll_io() else {
            assert_eq!(snapshot.last_included_sequence, 9, "{case}");
            break;
        };
        let result = storage.execute(&op);
        writer.complete(tag, result);
        ops_count += 1;
    }
    assert!(ops_count >= 9, "the writer took {ops_count} ops");
}

#[test]
fn the_scan_reads_newest_first_and_stops_at_the_first_valid_snapshot() {
    // Checks the sans-IO scan alone: candidates in descending order, a rejected one
    // followed by a valid one, then nothing more to read; names of other stores ignored.
    let names: Vec<String> = [
        snapshot_file_name(2),
        snapshot_file_name(11),
        snapshot_file_name(7),
        snapshot_temporary_name(13),
        "hardstate".to_string(),
        "snapshot-7.snap".to_string(),
    ]
    .into_iter()
    .collect();
    let mut scan = SnapshotScan::new(&names);
    assert_eq!(scan.next_file(), Some(snapshot_file_name(11).as_str()));
    scan.feed(&snapshot_file_name(11), &Bytes::from_static(b"garbage"));
    assert_eq!(scan.next_file(), Some(snapshot_file_name(7).as_str()));
    let mut storage = MemStorage::new();
    write_snapshot(&mut storage, 7, b"seven");
    let bytes = synod_wal::read_whole_file(&mut storage, &snapshot_file_name(7)).unwrap();
    scan.feed(&snapshot_file_name(7), &Bytes::from(bytes));
    assert_eq!(scan.next_file(), None);
    let start = scan.finish();
    assert_eq!(
        start.loaded.map(|(file, _)| file),
        Some(snapshot_file_name(7))
    );
    assert_eq!(start.rejected.len(), 1);
    assert_eq!(
        start.stale,
        vec![snapshot_file_name(2), snapshot_temporary_name(13)]
    );
}

#[test]
fn a_snapshot_whose_sequence_leaves_no_room_for_a_log_is_rejected() {
    // Checks that a well-formed snapshot claiming the last possible sequence is refused
    // with its file and reason (no log could start after it) instead of overflowing, and
    // that the scan falls back to the older snapshot.
    let mut storage = MemStorage::new();
    write_snapshot(&mut storage, 3, b"three");
    write_snapshot(&mut storage, u64::MAX, b"the end");
    let storage = log_from(storage, 1, 6);
    let (_, report) = SyncWal::open_with_snapshot(storage, common::config()).unwrap();
    assert_eq!(report.snapshot_file, Some(snapshot_file_name(3)));
    let [rejected] = &report.snapshots_rejected[..] else {
        panic!("{:?}", report.snapshots_rejected);
    };
    assert_eq!(rejected.file, snapshot_file_name(u64::MAX));
    let text = rejected.error.to_string();
    assert!(text.contains("is not below"), "{text}");
}
