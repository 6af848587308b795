//! Snapshots: a restored store replies and evolves exactly like the original; damaged or
//! unsuitable snapshots are refused with an error that says why.

mod common;

use std::collections::BTreeSet;

use common::{Harness, SECOND_NS, Workload, put, response_kind};
use synod_kv::{KvConfig, KvStore, SNAPSHOT_MAGIC, SnapshotError};

/// Commands per seed in the randomized round trip.
const STEPS_COUNT: usize = 400;
/// Seeds swept when `SYNOD_KV_SEED` does not pick one.
const SEEDS_COUNT: u64 = 40;
/// The sweep's test, named in the replay command a failing seed prints.
const REPLAY_TEST_NAME: &str = "a_restored_store_replies_and_digests_like_the_original";

/// Runs one seed: a workload on a store, a snapshot at a seed-chosen step, then the rest of
/// the workload on both the store and its restored copy, comparing replies and digests.
/// Returns the kinds of replies seen.
fn round_trip(seed: u64) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    let mut workload = Workload::new(seed);
    let mut original = Harness::with_config(Workload::config());
    let split = (seed as usize * 37) % STEPS_COUNT;
    for _ in 0..split {
        kinds.insert(response_kind(&workload.step(&mut [&mut original])));
    }
    let snapshot = original.store.snapshot();
    let store = KvStore::restore(Workload::config(), &snapshot).unwrap();
    assert_eq!(store.digest(), original.store.digest());
    assert_eq!(store.snapshot(), snapshot);
    let mut copy = Harness {
        store,
        index: original.index,
        time_ns: original.time_ns,
    };
    for _ in split..STEPS_COUNT {
        kinds.insert(response_kind(
            &workload.step(&mut [&mut original, &mut copy]),
        ));
        assert_eq!(copy.store.digest(), original.store.digest());
    }
    kinds
}

#[test]
fn a_restored_store_replies_and_digests_like_the_original() {
    // Checks, over seeded random workloads (sessions, retries, compaction, expiry), that a
    // store restored from a snapshot gives identical replies and digests to the original.
    let replay = std::env::var("SYNOD_KV_SEED").ok();
    let seeds: Vec<u64> = match &replay {
        Some(seed) => vec![seed.parse().expect("SYNOD_KV_SEED is a number")],
        None => (0..SEEDS_COUNT).collect(),
    };
    let mut kinds = BTreeSet::new();
    for seed in seeds {
        match std::panic::catch_unwind(|| round_trip(seed)) {
            Ok(seen) => kinds.extend(seen),
            Err(panic) => {
                eprintln!(
                    "seed {seed} failed; replay with: SYNOD_KV_SEED={seed} cargo test \
                     -p synod-kv --test snapshot {REPLAY_TEST_NAME}"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    if replay.is_none() {
        // The sweep must reach the paths it is meant to test, or it proves nothing.
        let expected = [
            "Registered",
            "Put",
            "Deleted",
            "Cas",
            "Integer",
            "Length",
            "Txn",
            "Value",
            "Range",
            "Done",
            "Error SessionExpired",
            "Error SequenceReused",
            "Error SequenceAcknowledged",
            "Error SessionRepliesFull",
            "Error Compacted",
            "Error NotAnInteger",
        ];
        for kind in expected {
            assert!(
                kinds.contains(kind),
                "the workload never produced {kind}: {kinds:?}"
            );
        }
    }
}

#[test]
fn the_same_commands_give_the_same_digest_and_different_ones_do_not() {
    // Checks determinism across two stores fed the same workload, and that the digest
    // notices a one-value difference.
    let mut workload = Workload::new(7);
    let mut first = Harness::with_config(Workload::config());
    let mut second = Harness::with_config(Workload::config());
    for _ in 0..STEPS_COUNT {
        workload.step(&mut [&mut first, &mut second]);
    }
    assert_eq!(first.store.digest(), second.store.digest());
    first.run(put("a", "one"));
    second.run(put("a", "two"));
    assert_ne!(first.store.digest(), second.store.digest());
}

#[test]
fn damaged_snapshots_are_refused_with_the_reason() {
    // Checks the errors for a short input, a wrong magic, an unknown version, a truncation
    // and trailing garbage, and that no prefix of a snapshot panics the restore.
    let mut harness = Harness::new();
    let client = harness.register();
    harness.run_in(client, 1, 0, put("key", "value"));
    let snapshot = harness.store.snapshot();
    let config = KvConfig::default();
    assert_eq!(
        KvStore::restore(config.clone(), &snapshot[..10]).unwrap_err(),
        SnapshotError::TooShort { size: 10 }
    );
    let mut foreign = snapshot.clone();
    foreign[0] = b'X';
    let error = KvStore::restore(config.clone(), &foreign).unwrap_err();
    assert!(matches!(error, SnapshotError::BadMagic { .. }), "{error}");
    let mut future = snapshot.clone();
    future[SNAPSHOT_MAGIC.len()] = 9;
    assert_eq!(
        KvStore::restore(config.clone(), &future)
            .unwrap_err()
            .to_string(),
        "snapshot format version 9 is not supported (this build reads 1)"
    );
    let truncated = &snapshot[..snapshot.len() - 3];
    let error = KvStore::restore(config.clone(), truncated).unwrap_err();
    assert!(
        matches!(error, SnapshotError::LengthMismatch { .. }),
        "{error}"
    );
    let mut longer = snapshot.clone();
    longer.push(0);
    assert!(KvStore::restore(config.clone(), &longer).is_err());
    for length in 0..snapshot.len() {
        assert!(KvStore::restore(config.clone(), &snapshot[..length]).is_err());
    }
    let restored = KvStore::restore(config, &snapshot).unwrap();
    assert_eq!(restored.digest(), harness.store.digest());
}

#[test]
fn restoring_with_tighter_limits_than_the_state_is_refused() {
    // Checks that a configuration whose sessions_max cannot hold the snapshot's sessions is
    // refused with the field named, rather than breaking an invariant later.
    let mut harness = Harness::new();
    harness.register();
    harness.register();
    harness.time_ns += SECOND_NS;
    let snapshot = harness.store.snapshot();
    let config = KvConfig {
        sessions_max: 1,
        ..KvConfig::default()
    };
    let error = KvStore::restore(config, &snapshot).unwrap_err().to_string();
    assert!(error.contains("sessions_max (1)"), "{error}");
    let invalid = KvConfig {
        txn_ops_max: 0,
        ..KvConfig::default()
    };
    assert_eq!(
        KvStore::restore(invalid, &snapshot)
            .unwrap_err()
            .to_string(),
        "cannot restore with this configuration: config: txn_ops_max (0) must be between 1 \
         and 4096"
    );
}
