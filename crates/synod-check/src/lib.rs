//! synod-check: the judge of synod's consistency claims.
//!
//! It reads a recorded history of client operations on a key-value map (JSON Lines, the
//! Jepsen/Knossos shape; docs/consistency.md is the spec) and decides, per model:
//!
//! - linearizability, per key (P-compositionality), keys in parallel, with a
//!   just-in-time Wing-Gong-Lowe search (`linear`);
//! - sequential consistency of the whole history, all keys together (`sequential`, with
//!   the search in `interleave`), after two fast paths: a key whose own operations cannot
//!   be ordered, and a history whose every key is linearizable;
//! - the session guarantees of every process (`session`), deciding reads of values written
//!   more than once by the key's sequential order or a search, or saying they are
//!   undecided;
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
mod interleave;
mod linear;
pub mod linearizable;
pub mod lost;
mod problem;
pub mod report;
pub mod sequential;
mod sequential_core;
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
    /// The time budget of the whole-history sequential-consistency search, in nanoseconds
    /// of `clock_nanos`; when it runs out the model is unknown.
    pub sequential_timeout_nanos: Option<u64>,
    /// The most configurations that search may expand (a budget that does not depend on
    /// the machine's speed).
    pub sequential_nodes_max: u64,
    /// The most steps the session check spends deciding one key's reads of values written
    /// more than once; beyond it the guarantees involved are undecided for that key.
    pub session_steps_max: u64,
    /// The most configurations one key's sequential-order search may expand (a budget that
    /// does not depend on the machine's speed); beyond it that key is unknown.
    pub key_sequential_nodes_max: u64,
}

fn no_clock() -> u64 {
    0
}

/// The default memory limit of all searches together: 3 GiB.
pub const MEMORY_BYTES_MAX_DEFAULT: usize = 3 << 30;

/// The default configuration budget of the whole-history sequential search.
pub const SEQUENTIAL_NODES_MAX_DEFAULT: u64 = 1 << 26;

impl Default for CheckOptions<'_> {
    fn default() -> Self {
        CheckOptions {
            models: Models::ALL,
            key_timeout_nanos: None,
            clock_nanos: &no_clock,
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
            threads: 1,
            sequential_timeout_nanos: None,
            sequential_nodes_max: SEQUENTIAL_NODES_MAX_DEFAULT,
            session_steps_max: session::STEPS_MAX_DEFAULT,
            key_sequential_nodes_max: u64::MAX,
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
        check_one_key(history, key, options, &limits)
    });
    let sequential = options.models.sequential.then(|| {
        let started = (options.clock_nanos)();
        let should_stop = || {
            options
                .sequential_timeout_nanos
                .is_some_and(|budget| (options.clock_nanos)().saturating_sub(started) > budget)
        };
        let budget = interleave::Budget {
            should_stop: &should_stop,
            memory_bytes_max: options.memory_bytes_max,
            nodes_max: options.sequential_nodes_max,
        };
        sequential::check_history(history, &keys, &per_key, &budget)
    });
    report::assemble(history, options.models, per_key, sequential)
}

/// Everything checked about one key. Some results are kept even when their model was not
/// selected: the whole-history sequential check and the session check use them.
#[derive(Debug, Clone)]
pub(crate) struct KeyResults {
    /// The key's linearizability, when that model is selected.
    pub linearizable: Option<KeyLinearizability>,
    /// Whether the key is known to be linearizable.
    pub is_linearizable: bool,
    /// Sequential consistency of the key's own operations.
    pub sequential: Option<sequential::KeySequential>,
    /// When that search found an order: the operations (indices into
    /// `History::operations`) that took effect, in that order.
    pub sequential_order: Option<Vec<u32>>,
    pub session: Option<session::KeySession>,
    pub lost_writes: Option<Option<Vec<lost::LostWrite>>>,
}

fn check_one_key(
    history: &History,
    key: &KeyHistory,
    options: &CheckOptions,
    limits: &Limits,
) -> KeyResults {
    let models = options.models;
    // The session check needs the key's order only for reads of values written more
    // than once.
    let session_needs_order = models.session && session::has_ambiguous_reads(history, key);
    let needs_order = models.sequential || session_needs_order;
    let linearizable = models
        .linearizable
        .then(|| linearizable::check_key(history, key, limits));
    let is_linearizable = match &linearizable {
        Some(verdict) => *verdict == KeyLinearizability::Valid,
        None => needs_order && linearizable::is_linearizable(history, key, limits) == Some(true),
    };
    let (sequential, sequential_order) = match (needs_order, is_linearizable) {
        (false, _) => (None, None),
        // Linearizability implies sequential consistency.
        (true, true) => (Some(sequential::KeySequential::Valid), None),
        (true, false) => {
            let nodes_max = options.key_sequential_nodes_max;
            let (verdict, order) = sequential::check_key(history, key, limits, nodes_max);
            (Some(verdict), order)
        }
    };
    let key_is_sequential = matches!(sequential, Some(sequential::KeySequential::Valid));
    KeyResults {
        linearizable,
        is_linearizable,
        sequential,
        sequential_order,
        session: models.session.then(|| {
            let budget = session::Budget {
                steps_max: options.session_steps_max,
                should_stop: limits.should_stop,
            };
            session::check_key(history, key, key_is_sequential, &budget)
        }),
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
