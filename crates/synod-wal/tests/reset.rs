//! Log resets (Raft installing a snapshot past the end of the log, or conflicting with it):
//! a crash at any point brings back the old log or the new one, never a mix, and the
//! segments before a reset are discarded whatever they hold.

mod common;

use bytes::Bytes;
use synod_core::Prng;
use synod_wal::{
    CrashFaults, DiskOp, MemStorage, Recovery, Storage, SyncWal, WalConfig, WalOutput,
};

/// The log found in `storage` by recovery: its first sequence and its payloads.
fn recovered(storage: MemStorage, config: &WalConfig) -> Result<(u64, Vec<Bytes>), String> {
    let (mut wal, _) = SyncWal::open(storage, config.clone()).map_err(|e| e.to_string())?;
    let (first, next) = (wal.wal().first_sequence(), wal.wal().next_sequence());
    if next == first {
        return Ok((first, Vec::new()));
    }
    let entries = wal.read_range(first, next).map_err(|e| e.to_string())?;
    Ok((
        first,
        entries.into_iter().map(|entry| entry.payload).collect(),
    ))
}

/// A log of `count` flushed entries over several segments, and their payloads.
fn log_of(count: usize, config: &WalConfig) -> (SyncWal<MemStorage>, Vec<Bytes>) {
    let (mut wal, _) = SyncWal::open(MemStorage::new(), config.clone()).unwrap();
    let mut prng = Prng::from_seed(11);
    let mut payloads = Vec::new();
    for _ in 0..count {
        let payload = common::payload(&mut prng, 500);
        wal.append(payload.clone()).unwrap();
        payloads.push(payload);
    }
    wal.flush().unwrap();
    (wal, payloads)
}

/// Whether a recovered log is the old one whole, or a prefix of the new one.
fn old_or_new(
    found: &(u64, Vec<Bytes>),
    old: &[Bytes],
    new_start: u64,
    new: &[Bytes],
) -> Result<(), String> {
    let (first, entries) = found;
    if *first == 1 && entries == old {
        return Ok(());
    }
    if *first == new_start && new.starts_with(entries) {
        return Ok(());
    }
    let summary = entries.len();
    Err(format!(
        "recovered {summary} entries from {first}: neither the old log (1..={}) nor a prefix \
         of the new one ({new_start}..)",
        old.len()
    ))
}

#[test]
fn a_power_loss_at_every_op_of_a_reset_recovers_the_old_log_or_the_new_one() {
    // Checks, for resets past the end and inside the log, with and without the spare, a
    // power loss after every op (keeping exactly the synced state, and keeping seeded
    // random subsets of unsynced writes, torn): the log comes back whole as it was before
    // the reset, or as the new log from its start with a prefix of what followed.
    for (reset_to, spare_percent) in [(500, 50), (500, 0), (4, 50), (4, 0)] {
        let mut config = common::config();
        config.spare_prepare_at_percent = spare_percent;
        let (mut wal, old) = log_of(40, &config);
        wal.reset(reset_to).unwrap();
        let mut prng = Prng::from_seed(reset_to + u64::from(spare_percent));
        let new: Vec<Bytes> = (0..12).map(|_| common::payload(&mut prng, 500)).collect();
        for payload in &new {
            wal.append(payload.clone()).unwrap();
        }
        let mut steps = 0;
        loop {
            let case = format!("reset to {reset_to}, spare {spare_percent}%, step {steps}");
            let mut exact = wal.storage().clone();
            exact.crash();
            let found = recovered(exact, &config).map_err(|e| format!("{case}: {e}"));
            old_or_new(&found.unwrap(), &old, reset_to, &new).expect(&case);
            for seed in 0..20 {
                let faults = CrashFaults {
                    unsynced_kept_probability: prng.unit_f64(),
                    torn_probability: prng.unit_f64(),
                    sector_size: 512,
                };
                let mut storage = wal.storage().clone();
                storage.crash_with(&faults, &mut Prng::from_seed(seed));
                let found = recovered(storage, &config).unwrap_or_else(|e| panic!("{case}: {e}"));
                old_or_new(&found, &old, reset_to, &new).unwrap_or_else(|e| panic!("{case}: {e}"));
            }
            if !wal.step_io() {
                break;
            }
            steps += 1;
        }
        assert!(steps >= 8, "the reset and the appends took {steps} ops");
        let outputs = wal.take_outputs();
        let reset = WalOutput::Reset {
            next_sequence: reset_to,
        };
        assert!(outputs.contains(&reset), "{outputs:?}");
        let (first, entries) = recovered(wal.into_storage(), &config).unwrap();
        assert_eq!((first, entries), (reset_to, new));
    }
}

/// Runs a reset of a 40-entry log with the engine by hand, failing the sync of the reset
/// segment's header and dropping its unsynced pages (fsyncgate), as a process that then
/// restarts finds it: the header still readable in the page cache, never durable.
fn reset_whose_sync_failed(config: &WalConfig) -> (MemStorage, Vec<Bytes>) {
    let (wal, old) = log_of(40, config);
    let mut storage = wal.into_storage();
    let names = storage.list().unwrap();
    let mut recovery = Recovery::new(config.clone()).unwrap();
    for name in Recovery::segment_names(&names).unwrap() {
        let bytes = synod_wal::read_whole_file(&mut storage, &name).unwrap();
        recovery.feed(&name, &bytes).unwrap();
    }
    let (mut engine, _) = recovery.finish().unwrap();
    engine.reset(300).unwrap();
    let mut header_written = None;
    while let Some((tag, op)) = engine.poll_io(synod_core::Instant::ZERO) {
        if let (DiskOp::Sync { path }, Some(written)) = (&op, &header_written)
            && path == written
        {
            storage.drop_unsynced(path);
            let error = synod_wal::DiskError::Io {
                op: "sync",
                path: path.clone(),
                message: "input/output error (injected)".to_string(),
            };
            engine.complete(tag, Err(error));
            break;
        }
        // The first write at offset 0 after the reset is the reset segment's header.
        if let DiskOp::Write {
            path, offset: 0, ..
        } = &op
            && header_written.is_none()
        {
            header_written = Some(path.clone());
        }
        let result = storage.execute(&op);
        engine.complete(tag, result);
    }
    assert!(
        engine.failure().is_some(),
        "the sync of the reset segment failed"
    );
    (storage, old)
}

#[test]
fn a_reset_whose_sync_failed_survives_a_power_loss_anywhere_in_the_repair() {
    // Checks the fsyncgate case: a restarted process reads the reset segment's header from
    // the page cache although it never became durable. Recovery adopts the reset; its repair
    // must make the reset segment durable before removing the old segments, so a power loss
    // after any op of the repair recovers the old log or the empty new one, never neither.
    let mut config = common::config();
    config.spare_prepare_at_percent = 0;
    let (storage, old) = reset_whose_sync_failed(&config);
    let (mut wal, report) = SyncWal::open(storage, config.clone()).unwrap();
    assert!(report.reset_segment.is_some(), "{report:?}");
    assert!(!report.segments_discarded.is_empty(), "{report:?}");
    let mut steps = 0;
    loop {
        let mut storage = wal.storage().clone();
        storage.crash();
        let found = recovered(storage, &config).unwrap_or_else(|e| panic!("step {steps}: {e}"));
        old_or_new(&found, &old, 300, &[]).unwrap_or_else(|e| panic!("step {steps}: {e}"));
        if !wal.step_io() {
            break;
        }
        steps += 1;
    }
    assert!(steps > 4, "the repair took {steps} ops");
    let mut storage = wal.into_storage();
    storage.crash();
    assert_eq!(recovered(storage, &config).unwrap(), (300, Vec::new()));
}

#[test]
fn a_reset_segment_discards_older_segments_whatever_they_hold() {
    // Checks that segments before a reset segment are discarded even when they are damaged
    // (a flipped bit, a hole where a removal was made durable and others not) and that
    // recovery reports them and removes them in its repair.
    let config = common::config();
    let (mut wal, _) = log_of(120, &config);
    wal.reset(77).unwrap();
    wal.append(Bytes::from_static(b"after")).unwrap();
    wal.flush().unwrap();
    let mut storage = wal.into_storage();
    let names = storage.list().unwrap();
    let segments = Recovery::segment_names(&names).unwrap();
    assert_eq!(
        segments.len(),
        1,
        "the old segments were removed: {segments:?}"
    );
    // Put back old segments, one of them damaged, with a hole between them.
    let (old_wal, _) = log_of(120, &config);
    let mut old_storage = old_wal.into_storage();
    let old_names = Recovery::segment_names(&old_storage.list().unwrap()).unwrap();
    assert!(old_names.len() >= 3, "{old_names:?}");
    for (index, name) in old_names
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 1)
    {
        let bytes = synod_wal::read_whole_file(&mut old_storage, name).unwrap();
        storage.write(name, 0, &bytes).unwrap();
        if index == 0 {
            storage.flip_bit(name, 8 * 200);
        }
    }
    storage.sync_dir().unwrap();
    let (mut reopened, report) = SyncWal::open(storage, config.clone()).unwrap();
    assert_eq!(report.reset_segment.as_deref(), Some(segments[0].as_str()));
    assert_eq!(report.segments_discarded.len(), old_names.len() - 1);
    assert_eq!(reopened.read_range(77, 78).unwrap()[0].payload, "after");
    reopened.flush().unwrap();
    let listed = reopened.storage_mut().list().unwrap();
    assert_eq!(Recovery::segment_names(&listed).unwrap(), segments);
}

#[test]
fn a_damaged_segment_without_a_later_reset_is_still_reported() {
    // Checks that deferring damage until the end of recovery (for a reset segment that may
    // follow) still reports it, naming the file, when no reset segment follows.
    let config = common::config();
    let (wal, _) = log_of(120, &config);
    let mut storage = wal.into_storage();
    let names = Recovery::segment_names(&storage.list().unwrap()).unwrap();
    assert!(names.len() >= 3, "{names:?}");
    storage.remove(&names[1]).unwrap();
    let Err(error) = SyncWal::open(storage, config) else {
        panic!("a log with a missing middle segment opened");
    };
    assert!(error.to_string().contains(&names[0]), "{error}");
}

#[test]
fn a_reset_header_under_another_segment_name_is_refused_not_obeyed() {
    // Checks that a reset header only counts in the file its lsn names: copied under a
    // later segment name it is reported as corruption naming that file, and the log before
    // it is not discarded. An entry whose payload is the reset magic stays an entry.
    let config = common::config();
    let (mut wal, old) = log_of(3, &config);
    wal.append(Bytes::from_static(b"synodrst")).unwrap();
    wal.flush().unwrap();
    wal.reset(50).unwrap();
    wal.flush().unwrap();
    let mut storage = wal.into_storage();
    let names = Recovery::segment_names(&storage.list().unwrap()).unwrap();
    let reset_bytes = synod_wal::read_whole_file(&mut storage, &names[0]).unwrap();
    let (entries_wal, _) = log_of(3, &config);
    let mut moved = entries_wal.into_storage();
    moved
        .write("wal-00000000000000000900.log", 0, &reset_bytes)
        .unwrap();
    let Err(error) = SyncWal::open(moved.clone(), config.clone()) else {
        panic!("a misplaced reset header was obeyed");
    };
    let text = error.to_string();
    assert!(text.contains("wal-00000000000000000900.log"), "{text}");
    let (mut intact, _) = log_of(3, &config);
    intact.append(Bytes::from_static(b"synodrst")).unwrap();
    intact.flush().unwrap();
    let (first, entries) = recovered(intact.into_storage(), &config).unwrap();
    assert_eq!((first, &entries[..3]), (1, &old[..]));
    assert_eq!(entries[3], Bytes::from_static(b"synodrst"));
}
