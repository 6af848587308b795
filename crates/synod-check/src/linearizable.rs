//! Linearizability of one key, with the counterexample: the smallest window of events that
//! cannot be linearized whatever happened before it, and why, in words.

use serde::Serialize;

use crate::history::{Call, History, Value};
use crate::linear::{Limits, Search, SearchOutcome, search};
use crate::problem::{JUNK, KeyHistory, Problem};

/// Linearizability of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLinearizability {
    Valid,
    Violation(Box<LinearViolation>),
    /// The search stopped (time or memory) before deciding; never reported as valid.
    Unknown {
        reason: String,
    },
}

/// A key whose history cannot be linearized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinearViolation {
    pub key: String,
    /// Index into `History::operations` of the operation no order can complete.
    pub operation: usize,
    /// Indices into `History::operations` of the window's operations, by invoke: those
    /// invoked in the window, and those in flight at its start that completed ok.
    pub window: Vec<usize>,
    /// Info operations invoked before the window that may take effect in it (they are part
    /// of the relaxed window but listed only by count).
    pub info_in_flight_count: usize,
    /// When the window starts (nanoseconds, the history's clock).
    pub window_start_time: u64,
    /// The values the key could hold just before the failing operation returned; `None`
    /// stands for any value that no operation in the window observes.
    pub possible_values: Vec<Option<Value>>,
    /// Why, in words.
    pub explanation: String,
}

/// Search nodes before the first look for a local counterexample, and the most between
/// two looks (the budget doubles after each).
const NODES_BEFORE_FIRST_PROBE: u64 = 1 << 16;
const NODES_BETWEEN_PROBES_MAX: u64 = 1 << 22;
/// Window lengths (in the key's events) tried when probing, and the nodes each may use.
const PROBE_WINDOW_EVENTS: [usize; 4] = [8, 32, 128, 512];
const PROBE_NODES_MAX: u64 = 1 << 18;

/// Checks one key. The whole-key search runs in slices; between slices, when it has not
/// got past some event for a while, small relaxed windows ending there are searched: one
/// that fails proves a violation at once (a violation usually is local, while proving it
/// from the key's start means exhausting every configuration before it).
pub fn check_key(history: &History, key: &KeyHistory, limits: &Limits) -> KeyLinearizability {
    let problem = Problem::whole(history, key);
    let mut whole = Search::new(&problem);
    let mut budget = NODES_BEFORE_FIRST_PROBE;
    let mut probed = std::collections::BTreeSet::new();
    loop {
        match whole.run(limits, Some(budget)) {
            SearchOutcome::Valid => return KeyLinearizability::Valid,
            SearchOutcome::Unknown(reason) => {
                return KeyLinearizability::Unknown {
                    reason: reason.describe(),
                };
            }
            SearchOutcome::Violation { event, .. } => {
                let failing = problem.operations[problem.events[event].operation as usize].source;
                let violation = smallest_window(history, key, failing, 0, limits);
                return KeyLinearizability::Violation(Box::new(violation));
            }
            SearchOutcome::Paused { deepest_event } => {
                if probed.insert(deepest_event)
                    && let Some((failing, start)) =
                        probe(history, key, &problem, deepest_event, limits)
                {
                    let violation = smallest_window(history, key, failing, start, limits);
                    return KeyLinearizability::Violation(Box::new(violation));
                }
                budget = (budget * 2).min(NODES_BETWEEN_PROBES_MAX);
            }
        }
    }
}

/// The most search nodes `is_linearizable` spends.
const VERDICT_NODES_MAX: u64 = 1 << 22;

/// Whether the key is linearizable, by the search alone (no counterexample is built), within
/// a node budget; `None` when the search stops first. For the fast paths of other models,
/// which only need to know that a key is linearizable.
pub(crate) fn is_linearizable(
    history: &History,
    key: &KeyHistory,
    limits: &Limits,
) -> Option<bool> {
    let problem = Problem::whole(history, key);
    match Search::new(&problem).run(limits, Some(VERDICT_NODES_MAX)) {
        SearchOutcome::Valid => Some(true),
        SearchOutcome::Violation { .. } => Some(false),
        SearchOutcome::Unknown(_) | SearchOutcome::Paused { .. } => None,
    }
}

/// Searches relaxed windows that end at the first return at or after `deepest_event`;
/// returns the operation that fails in one and the window's start (a key event index).
fn probe(
    history: &History,
    key: &KeyHistory,
    problem: &Problem,
    deepest_event: usize,
    limits: &Limits,
) -> Option<(u32, usize)> {
    let stuck = problem.events[deepest_event..]
        .iter()
        .find(|event| event.is_return)?;
    let source = problem.operations[stuck.operation as usize].source;
    let end = key
        .operations
        .iter()
        .find(|operation| operation.source == source)?
        .complete_index? as usize;
    for length in PROBE_WINDOW_EVENTS {
        let start = end.saturating_sub(length);
        let window = Problem::window(history, key, start, end);
        let mut search = Search::new(&window);
        if let SearchOutcome::Violation { event, .. } = search.run(limits, Some(PROBE_NODES_MAX)) {
            let failing = window.operations[window.events[event].operation as usize].source;
            return Some((failing, start));
        }
        if start == 0 {
            break;
        }
    }
    None
}

/// Finds the latest window start from which the events up to the failing return still
/// cannot be linearized, given that the window from `known_start` fails (binary search: a
/// later start relaxes more, so failure is monotone in the start).
fn smallest_window(
    history: &History,
    key: &KeyHistory,
    failing: u32,
    known_start: usize,
    limits: &Limits,
) -> LinearViolation {
    let failing_key_operation = key
        .operations
        .iter()
        .find(|operation| operation.source == failing)
        .expect("the failing operation belongs to the key");
    let end = failing_key_operation
        .complete_index
        .expect("a failing operation returned") as usize;
    let run = |start: usize| {
        let problem = Problem::window(history, key, start, end);
        let outcome = search(&problem, limits);
        (problem, outcome)
    };
    let (mut best_problem, mut best_outcome) = run(known_start);
    let (mut low, mut high) = (known_start, failing_key_operation.invoke_index as usize + 1);
    while high > low + 1 {
        let middle = low + (high - low) / 2;
        let (problem, outcome) = run(middle);
        if matches!(outcome, SearchOutcome::Violation { .. }) {
            low = middle;
            best_problem = problem;
            best_outcome = outcome;
        } else {
            high = middle;
        }
    }
    let (best_problem, best_outcome) = minimize(
        history,
        key,
        failing,
        low,
        end,
        best_problem,
        best_outcome,
        limits,
    );
    let states_before = match best_outcome {
        SearchOutcome::Violation { states_before, .. } => states_before,
        // The window is known to fail; if its rerun stopped early the failing operation is
        // still the one to show.
        SearchOutcome::Valid | SearchOutcome::Unknown(_) | SearchOutcome::Paused { .. } => {
            Vec::new()
        }
    };
    describe(history, key, &best_problem, failing, low, &states_before)
}

/// The most operations in a window that `minimize` tries to relax one by one.
const MINIMIZE_OPERATIONS_MAX: usize = 256;

/// Relaxes the window's operations one at a time (a read is dropped, a write or cas may
/// then take effect at any moment or never), keeping each relaxation under which the window
/// still fails; a relaxed write whose value nothing observes then drops out of the window.
#[allow(clippy::too_many_arguments)]
fn minimize(
    history: &History,
    key: &KeyHistory,
    failing: u32,
    start: usize,
    end: usize,
    problem: Problem,
    outcome: SearchOutcome,
    limits: &Limits,
) -> (Problem, SearchOutcome) {
    if !matches!(outcome, SearchOutcome::Violation { .. })
        || problem.operations.len() > MINIMIZE_OPERATIONS_MAX
    {
        return (problem, outcome);
    }
    let candidates: Vec<u32> = problem
        .operations
        .iter()
        .filter(|operation| !operation.optional && operation.source != failing)
        .map(|operation| operation.source)
        .collect();
    let mut relaxed = std::collections::BTreeSet::new();
    let (mut best_problem, mut best_outcome) = (problem, outcome);
    for source in candidates {
        relaxed.insert(source);
        let candidate = Problem::relaxed_window(history, key, start, end, &relaxed);
        let candidate_outcome = search(&candidate, limits);
        let still_fails = matches!(candidate_outcome, SearchOutcome::Violation { event, .. }
            if candidate.operations[candidate.events[event].operation as usize].source == failing);
        if still_fails {
            (best_problem, best_outcome) = (candidate, candidate_outcome);
        } else {
            relaxed.remove(&source);
        }
    }
    (best_problem, best_outcome)
}

fn describe(
    history: &History,
    key: &KeyHistory,
    problem: &Problem,
    failing: u32,
    start: usize,
    states_before: &[u32],
) -> LinearViolation {
    let key_name = history.keys[key.key as usize].clone();
    let mut window: Vec<usize> = problem
        .operations
        .iter()
        .map(|operation| operation.source as usize)
        .collect();
    window.sort_by_key(|&index| history.operations[index].invoke_position);
    let start_position = key.events.get(start).map_or(0, |&(source, is_completion)| {
        let operation = &history.operations[source as usize];
        match (is_completion, operation.complete_position) {
            (true, Some(position)) => position,
            _ => operation.invoke_position,
        }
    });
    let is_old_info = |index: &usize| {
        let operation = &history.operations[*index];
        operation.outcome != crate::history::Outcome::Ok
            && operation.invoke_position < start_position
    };
    let info_in_flight_count = window.iter().filter(|index| is_old_info(index)).count();
    window.retain(|index| !is_old_info(index));
    let window_start_time = key.events.get(start).map_or(0, |&(source, is_completion)| {
        let operation = &history.operations[source as usize];
        match (is_completion, operation.complete_time) {
            (true, Some(time)) => time,
            _ => operation.invoke_time,
        }
    });
    // JUNK stands for the values no read in the window returns; name the ones the
    // window's operations write, so the reader sees the value that got in the way.
    let unobserved_written: std::collections::BTreeSet<Value> = window
        .iter()
        .filter(|&&index| history.operations[index].outcome != crate::history::Outcome::Fail)
        .filter_map(|&index| history.operations[index].call.written_value())
        .filter(|value| !problem.values[1..].contains(value))
        .cloned()
        .collect();
    let mut possible_values: Vec<Option<Value>> = Vec::new();
    for &state in states_before {
        if state != JUNK {
            possible_values.push(Some(problem.values[state as usize].clone()));
        } else if unobserved_written.is_empty() {
            possible_values.push(None);
        } else {
            possible_values.extend(unobserved_written.iter().cloned().map(Some));
        }
    }
    possible_values.sort();
    possible_values.dedup();
    let explanation = explain(
        history,
        key,
        &key_name,
        failing as usize,
        &window,
        info_in_flight_count,
        start,
        window_start_time,
        &possible_values,
    );
    LinearViolation {
        key: key_name,
        operation: failing as usize,
        window,
        info_in_flight_count,
        window_start_time,
        possible_values,
        explanation,
    }
}

#[allow(clippy::too_many_arguments)]
fn explain(
    history: &History,
    key: &KeyHistory,
    key_name: &str,
    failing: usize,
    window: &[usize],
    info_in_flight_count: usize,
    start: usize,
    window_start_time: u64,
    possible_values: &[Option<Value>],
) -> String {
    let operation = &history.operations[failing];
    let timing = format!(
        "invoked at {} ns, returned at {} ns",
        operation.invoke_time,
        operation.complete_time.unwrap_or(operation.invoke_time)
    );
    let held = describe_values(possible_values);
    let written_anywhere = |wanted: &Value| {
        *wanted == Value::Null
            || key.operations.iter().any(|candidate| {
                history.operations[candidate.source as usize]
                    .call
                    .written_value()
                    .is_some_and(|value| value == wanted)
            })
    };
    let mut text = match &operation.call {
        Call::Read(value) if !written_anywhere(value) => format!(
            "process {} read {value} from key {key_name:?} ({timing}), but no operation ever \
             wrote {value} to that key.",
            operation.process
        ),
        Call::Read(value) => format!(
            "process {} read {value} from key {key_name:?} ({timing}). In every order of the \
             operations before it, the key held {held} when the read returned, and none of \
             the operations still in flight could make it {value}.",
            operation.process
        ),
        Call::Cas(expected, new) => format!(
            "process {}'s cas {expected} -> {new} on key {key_name:?} succeeded ({timing}). In \
             every order of the operations before it, the key held {held} when the cas \
             returned, and none of the operations still in flight could make it {expected}.",
            operation.process
        ),
        Call::Write(_) | Call::Delete => format!(
            "process {}'s {} on key {key_name:?} cannot be ordered ({timing}).",
            operation.process, operation.call
        ),
    };
    let others = window.len().saturating_sub(1) + info_in_flight_count;
    if start == 0 {
        text.push_str(&format!(
            " The window is the key's history from its start: {others} other operation(s)."
        ));
    } else {
        text.push_str(&format!(
            " This holds for the {others} other operation(s) from {window_start_time} ns on, \
             whatever the key held before and whether the operations already in flight then \
             took effect before, during, or never."
        ));
    }
    text
}

fn describe_values(values: &[Option<Value>]) -> String {
    let names: Vec<String> = values
        .iter()
        .map(|value| match value {
            Some(value) => value.to_string(),
            None => "a value no read in the window returns".to_string(),
        })
        .collect();
    match names.len() {
        0 => "no value at all (no order of them is valid)".to_string(),
        1 => names[0].clone(),
        _ => format!("one of {}", names.join(", ")),
    }
}
