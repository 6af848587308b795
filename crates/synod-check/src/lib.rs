//! synod-check: the judge of synod's consistency claims.
//!
//! It reads a recorded history of client operations on a key-value map (JSON Lines, the
//! Jepsen/Knossos shape; docs/consistency.md is the spec) and decides, per model:
//!
//! - linearizability, per key (P-compositionality), keys in parallel, with a
//!   just-in-time Wing-Gong-Lowe search (`linear`);
//! - sequential consistency, per key (`sequential`);
//! - the session guarantees of every process (`session`);
//! - lost acknowledged writes, given final reads (`lost`).
//!
//! A violation comes with the key, the smallest window of operations that cannot be
//! linearized, and why, in words; `html` draws it as a timeline. The crate reads no clock:
//! the caller passes a monotonic clock for the per-key time budget.
//!
//! ```no_run
//! use synod_check::{CheckOptions, ParseOptions, check, parse_history};
//! let text = std::fs::read_to_string("history.jsonl").unwrap();
//! let history = parse_history(&text, ParseOptions::default()).unwrap();
//! let report = check(&history, &CheckOptions::default());
//! println!("{}", report.text(&history));
//! ```

pub mod generate;
pub mod history;
pub mod html;
mod linear;
pub mod linearizable;
pub mod lost;
mod problem;
pub mod report;
pub mod sequential;
pub mod session;
mod table;

use std::sync::atomic::{AtomicUsize, Ordering};

pub use history::{
    Call, Event, History, Operation, Outcome, ParseError, ParseOptions, Value, parse_history,
};
pub use linearizable::{KeyLinearizability, LinearViolation};
pub use report::{KeyUnknown, Report, Verdict};

use linear::Limits;
use problem::{KeyHistory, split_by_key};

/// Which models to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Models {
    pub linearizable: bool,
    pub sequential: bool,
    pub session: bool,
    pub lost_writes: bool,
}

impl Models {
    pub const ALL: Models = Models {
        linearizable: true,
        sequential: true,
        session: true,
        lost_writes: true,
    };
}

/// How to check.
pub struct CheckOptions<'a> {
    pub models: Models,
    /// The time budget of one key's search, in nanoseconds of `clock_nanos`; a key whose
    /// search exceeds it is reported unknown.
    pub key_timeout_nanos: Option<u64>,
    /// A monotonic clock in nanoseconds, read only to enforce `key_timeout_nanos`.
    pub clock_nanos: &'a (dyn Fn() -> u64 + Sync),
    /// The most memory all concurrent key searches may hold together.
    pub memory_bytes_max: usize,
    /// Worker threads for the per-key searches (at least 1).
    pub threads: usize,
}

fn no_clock() -> u64 {
    0
}

/// The default memory limit of all searches together: 3 GiB.
pub const MEMORY_BYTES_MAX_DEFAULT: usize = 3 << 30;

impl Default for CheckOptions<'_> {
    fn default() -> Self {
        CheckOptions {
            models: Models::ALL,
            key_timeout_nanos: None,
            clock_nanos: &no_clock,
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
            threads: 1,
        }
    }
}

/// Checks `history` against the selected models.
pub fn check(history: &History, options: &CheckOptions) -> Report {
    let keys = split_by_key(history);
    let threads = options.threads.max(1);
    let memory_per_key = options.memory_bytes_max / threads;
    let per_key = for_each_key(&keys, threads, |key| {
        let started = (options.clock_nanos)();
        let should_stop = || {
            options
                .key_timeout_nanos
                .is_some_and(|budget| (options.clock_nanos)().saturating_sub(started) > budget)
        };
        let limits = Limits {
            should_stop: &should_stop,
            memory_bytes_max: memory_per_key,
        };
        check_one_key(history, key, options.models, &limits)
    });
    report::assemble(history, options.models, per_key)
}

/// Everything checked about one key.
#[derive(Debug, Clone)]
pub(crate) struct KeyResults {
    pub linearizable: Option<KeyLinearizability>,
    pub sequential: Option<sequential::KeySequential>,
    pub session: Option<session::KeySession>,
    pub lost_writes: Option<Option<Vec<lost::LostWrite>>>,
}

fn check_one_key(
    history: &History,
    key: &KeyHistory,
    models: Models,
    limits: &Limits,
) -> KeyResults {
    let linearizable = (models.linearizable || models.sequential)
        .then(|| linearizable::check_key(history, key, limits));
    let sequential = models.sequential.then(|| match &linearizable {
        // Linearizability implies sequential consistency.
        Some(KeyLinearizability::Valid) => sequential::KeySequential::Valid,
        _ => sequential::check_key(history, key, limits),
    });
    KeyResults {
        linearizable: linearizable.filter(|_| models.linearizable),
        sequential,
        session: models.session.then(|| session::check_key(history, key)),
        lost_writes: models.lost_writes.then(|| lost::check_key(history, key)),
    }
}

/// Runs `work` on every key with `threads` workers; results come back in key order.
fn for_each_key<T: Send>(
    keys: &[KeyHistory],
    threads: usize,
    work: impl Fn(&KeyHistory) -> T + Sync,
) -> Vec<T> {
    // Larger keys first, so one big key does not start last and run alone.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(keys[index].events.len()));
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(keys.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let position = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&index) = order.get(position) else {
                            break;
                        };
                        done.push((index, work(&keys[index])));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a key search panicked"))
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}
