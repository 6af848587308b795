//! Power losses at random points of random workloads, against a disk that keeps a random
//! subset of unsynced writes and tears them at sector boundaries: no acknowledged entry is
//! lost, no entry is invented, a reset comes back whole or not at all, nothing panics.

mod common;

use common::{Model, recover_and_check, run_workload};
use synod_core::Prng;
use synod_wal::{CrashFaults, MemStorage, SyncWal};

const SEEDS_COUNT: u64 = 2_000;
const CRASHES_PER_SEED: usize = 3;

/// One seed: a few rounds of work cut short by a power loss, each followed by recovery.
fn run_seed(seed: u64) -> Result<(), String> {
    let mut prng = Prng::from_seed(seed);
    let faults = CrashFaults {
        unsynced_kept_probability: prng.unit_f64(),
        torn_probability: prng.unit_f64(),
        sector_size: [512, 1024, 4096][prng.index(3)],
    };
    let (mut wal, _) =
        SyncWal::open(MemStorage::new(), common::config()).map_err(|e| e.to_string())?;
    let mut model = Model::new();
    for crash in 0..CRASHES_PER_SEED {
        let steps = 1 + prng.below(60) as usize;
        if !run_workload_unflushed(&mut wal, &mut model, &mut prng, steps) {
            return Err(format!(
                "the workload failed on a perfect disk (crash {crash})"
            ));
        }
        let mut storage = wal.into_storage();
        storage.crash_with(&faults, &mut prng);
        let recovered =
            recover_and_check(storage, &model).map_err(|e| format!("crash {crash}: {e}"))?;
        (wal, model) = recovered;
    }
    Ok(())
}

/// The workload, stopped in the middle of its IO: the crash comes before the last flush.
fn run_workload_unflushed(
    wal: &mut SyncWal<MemStorage>,
    model: &mut Model,
    prng: &mut Prng,
    steps: usize,
) -> bool {
    let ok = run_workload(wal, model, prng, steps);
    // A reset cut short by the crash: the old log or the new one must come back.
    if prng.below(4) == 0 {
        common::reset(wal, model, prng);
    }
    for _ in 0..prng.below(5) {
        let data = common::payload(prng, 600);
        if wal.append(data.clone()).is_ok() {
            model.append(data);
        }
    }
    // Up to a dozen ops: far enough to crash anywhere in a reset and the removals after it.
    for _ in 0..prng.below(12) {
        wal.step_io();
    }
    for output in wal.take_outputs() {
        model.on_output(&output);
    }
    ok
}

#[test]
fn power_losses_at_random_points_never_lose_or_invent_entries() {
    // Checks thousands of seeded runs, each with several power losses that keep a random,
    // possibly torn, subset of unsynced writes.
    for seed in 0..SEEDS_COUNT {
        let outcome = std::panic::catch_unwind(|| run_seed(seed));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(problem)) => problem,
            Err(_) => "panicked".to_string(),
        };
        panic!(
            "seed {seed}: {problem}; replay: \
             SYNOD_WAL_SEED={seed} cargo test -p synod-wal --test crash_seeds"
        );
    }
}

#[test]
fn a_single_seed_replays_from_the_environment() {
    // Checks the seed named by SYNOD_WAL_SEED (seed 1 when unset), the replay command of
    // a failing sweep.
    let seed = std::env::var("SYNOD_WAL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(1);
    if let Err(problem) = run_seed(seed) {
        panic!("seed {seed}: {problem}");
    }
}
