//! Sweeps: many seeds on worker threads, reported in seed order.
//!
//! Each seed runs single-threaded from start to end on one worker; workers take seeds from a
//! shared counter. Results are sorted by seed before anyone sees them, so a sweep's output
//! does not depend on the number of threads or on scheduling.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FailureClass;
use crate::options::RunOptions;
use crate::run::{RunOutcome, run_seed};
use crate::scenario::Scenario;
use crate::sim::{Failure, Verdict};

/// The most worker threads a sweep starts.
pub const SWEEP_THREADS_MAX: usize = 256;

/// A scenario factory that worker threads can share.
pub type SharedScenarioFactory<'a> = &'a (dyn Fn() -> Box<dyn Scenario> + Sync);

/// The outcome of every seed of a sweep, in seed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepOutcome {
    pub outcomes: Vec<RunOutcome>,
}

impl SweepOutcome {
    pub fn failures(&self) -> impl Iterator<Item = &RunOutcome> {
        self.outcomes.iter().filter(|outcome| !outcome.passed())
    }

    pub fn failed_count(&self) -> usize {
        self.failures().count()
    }

    pub fn passed_count(&self) -> usize {
        self.outcomes.len() - self.failed_count()
    }

    pub fn events_count(&self) -> u64 {
        self.outcomes
            .iter()
            .map(|outcome| outcome.events_count)
            .sum()
    }

    /// 0 when every seed passed, else the exit code of the first failing seed.
    pub fn exit_code(&self) -> i32 {
        self.failures().next().map_or(0, RunOutcome::exit_code)
    }

    /// The totals, then the failure report of every failing seed.
    pub fn report(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} seeds: {} passed, {} failed ({} events)",
            self.outcomes.len(),
            self.passed_count(),
            self.failed_count(),
            self.events_count()
        );
        for failure in self.failures().filter_map(RunOutcome::failure_report) {
            text.push_str(&failure);
        }
        text
    }
}

/// Runs every seed of `seeds` on `threads` workers. With `check_determinism` each seed runs
/// twice and a difference in trace hash, event count or verdict is a nondeterminism failure.
pub fn sweep(
    factory: SharedScenarioFactory<'_>,
    options: &RunOptions,
    seeds: Range<u64>,
    threads: usize,
    check_determinism: bool,
) -> SweepOutcome {
    let seeds_count = seeds.end.saturating_sub(seeds.start);
    let workers = threads.clamp(1, SWEEP_THREADS_MAX);
    let workers = usize::try_from(seeds_count).map_or(workers, |count| workers.min(count.max(1)));
    let next = AtomicU64::new(seeds.start);
    let results: Mutex<Vec<RunOutcome>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end || seed < seeds.start {
                        break;
                    }
                    local.push(run_checked(factory, options, seed, check_determinism));
                }
                let mut results = results.lock().unwrap_or_else(|error| error.into_inner());
                results.extend(local);
            });
        }
    });
    let mut outcomes = results
        .into_inner()
        .unwrap_or_else(|error| error.into_inner());
    outcomes.sort_by_key(|outcome| outcome.seed);
    SweepOutcome { outcomes }
}

fn run_checked(
    factory: SharedScenarioFactory<'_>,
    options: &RunOptions,
    seed: u64,
    check_determinism: bool,
) -> RunOutcome {
    let first = run_seed(&factory, options, seed);
    if !check_determinism {
        return first;
    }
    let second = run_seed(&factory, options, seed);
    let same = first.trace_hash == second.trace_hash
        && first.events_count == second.events_count
        && first.verdict == second.verdict;
    if same {
        return first;
    }
    let description = format!(
        "two runs of the same seed differ: trace hash {:016x} vs {:016x}, {} vs {} events, \
         verdict {:?} vs {:?}",
        first.trace_hash,
        second.trace_hash,
        first.events_count,
        second.events_count,
        first.verdict,
        second.verdict
    );
    RunOutcome {
        verdict: Verdict::Failed(Failure {
            class: FailureClass::Nondeterminism,
            description,
            at: None,
        }),
        ..first
    }
}
