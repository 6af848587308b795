//! The countdown sweep: fail the Nth storage call of a workload, for every N, then recover
//! and check that the log is a prefix of what was appended holding every acknowledged entry.
//! The workload appends, truncates, compacts, resets the log and rolls segments both by
//! creating them and by renaming a prepared spare.

use std::collections::BTreeSet;

mod common;

use common::{Model, recover_and_check, run_workload};
use synod_core::Prng;
use synod_core::disk::DiskOp;
use synod_wal::{AfterCountdown, CheckedStorage, CountdownStorage, MemStorage, Storage, SyncWal};

const WORKLOAD_SEED: u64 = 7;
const WORKLOAD_STEPS: usize = 600;

/// Runs the workload over a storage that fails call `fail_at` (0: never); returns the
/// storage inside, the model, the number of calls made and the op that was failed.
fn run_with_failure(fail_at: u64) -> (MemStorage, Model, u64, Option<DiskOp>) {
    let storage = CountdownStorage::new(MemStorage::new(), fail_at, AfterCountdown::FailEverything);
    let mut model = Model::new();
    let storage = match SyncWal::open(storage, common::config()) {
        Ok((mut wal, _)) => {
            let mut prng = Prng::from_seed(WORKLOAD_SEED);
            run_workload(&mut wal, &mut model, &mut prng, WORKLOAD_STEPS);
            wal.into_storage()
        }
        // The failure hit recovery itself (the listing of an empty directory).
        Err(_) => CountdownStorage::new(MemStorage::new(), 0, AfterCountdown::PassThrough),
    };
    let calls = storage.calls_count();
    let failed = storage.failed_op().cloned();
    (storage.into_inner(), model, calls, failed)
}

#[test]
fn every_single_failure_point_recovers_a_prefix_with_every_acknowledged_entry() {
    // Checks, for a failure at every call N of the workload, both a power loss (only
    // synced data survives) and a process restart (the page cache survives, a failed sync
    // dropped its pages) followed by more work and a power loss.
    let (mut reference_storage, reference, calls, failed) = run_with_failure(0);
    assert!(failed.is_none());
    assert!(reference.truncations_count() > 3, "the workload truncates");
    assert!(reference.compaction_max() > 20, "the workload compacts");
    assert!(reference.resets_count() > 2, "the workload resets the log");
    let segments = reference_storage.list().unwrap();
    assert!(
        segments[0] != "wal-00000000000000000001.log",
        "compaction removed {segments:?}"
    );
    assert!(
        segments.len() > 1,
        "the workload rolls segments: {segments:?}"
    );
    assert!(
        reference.acknowledged() > 20,
        "the workload acknowledges entries"
    );
    assert!(
        calls > 500,
        "the workload makes enough calls to sweep ({calls})"
    );
    let mut failed_kinds = BTreeSet::new();
    for fail_at in 1..=calls {
        let replay = format!("cargo test -p synod-wal --test countdown (fail_at {fail_at})");
        let (mut storage, model, _, failed) = run_with_failure(fail_at);
        failed_kinds.extend(failed.as_ref().map(DiskOp::kind));
        let mut power_loss = storage.clone();
        power_loss.crash();
        if let Err(problem) = recover_and_check(power_loss, &model) {
            panic!("power loss after failing call {fail_at} ({failed:?}): {problem}; {replay}");
        }
        if let Some(DiskOp::Sync { path }) = &failed {
            storage.drop_unsynced(path);
        }
        let (mut wal, mut model) = match recover_and_check(storage, &model) {
            Ok(recovered) => recovered,
            Err(problem) => panic!("restart after failing call {fail_at}: {problem}; {replay}"),
        };
        let mut prng = Prng::from_seed(fail_at);
        assert!(
            run_workload(&mut wal, &mut model, &mut prng, 30),
            "{replay}"
        );
        let mut storage = wal.into_storage();
        storage.crash();
        if let Err(problem) = recover_and_check(storage, &model) {
            panic!("power loss after the restart of call {fail_at}: {problem}; {replay}");
        }
    }
    // Renames are the spare becoming a segment; removals are compactions and resets.
    let kinds = ["write", "sync", "set_len", "rename", "remove", "sync_dir"];
    for kind in kinds {
        assert!(
            failed_kinds.contains(kind),
            "no {kind} was failed: {failed_kinds:?}"
        );
    }
}

#[test]
fn checked_storage_latches_on_the_first_failure() {
    // Checks that after one failed call every call, reads included, returns PreviousIo
    // naming the first failure, even though the storage beneath works again.
    let countdown = CountdownStorage::new(MemStorage::new(), 2, AfterCountdown::PassThrough);
    let mut storage = CheckedStorage::new(countdown);
    storage.write("a", 0, b"x").unwrap();
    assert!(storage.sync("a").is_err());
    let error = storage.read("a", 0, 1).unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("a previous write or sync failed (sync a: input/output error"),
        "{text}"
    );
    assert!(storage.write("a", 0, b"y").is_err());
    assert!(storage.first_failure().is_some());
}
