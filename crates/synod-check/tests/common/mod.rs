//! Helpers shared by the integration tests: a compact way to write histories, and
//! brute-force reference checkers (plain Wing-Gong search over every order, memoized, no
//! reductions) that the fast searches are compared with.

#![allow(dead_code)]

use std::collections::BTreeSet;

use synod_check::{
    Call, CheckOptions, History, Models, Outcome, ParseOptions, Report, Value, check, parse_history,
};

/// Property cases per test: `default`, or `SYNOD_CHECK_CASES` for a longer sweep.
pub fn cases_count(default: u32) -> u32 {
    std::env::var("SYNOD_CHECK_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Checks `history` under `models` only, with the default budgets.
pub fn check_models(history: &History, models: Models) -> Report {
    let options = CheckOptions {
        models,
        ..CheckOptions::default()
    };
    check(history, &options)
}

/// One line: `process type f key value time`, with `value` as JSON.
pub fn line(process: u64, kind: &str, f: &str, key: &str, value: &str, time: u64) -> String {
    format!(
        "{{\"process\":{process},\"type\":\"{kind}\",\"f\":\"{f}\",\"key\":\"{key}\",\
         \"value\":{value},\"time\":{time}}}\n"
    )
}

/// An operation on key "x" that completes: invoke and completion lines.
pub fn op(process: u64, f: &str, value: &str, kind: &str, start: u64, end: u64) -> Vec<String> {
    let invoke_value = if f == "read" { "null" } else { value };
    vec![
        line(process, "invoke", f, "x", invoke_value, start),
        line(process, kind, f, "x", value, end),
    ]
}

/// Parses lines (any order; the parser sorts by time).
pub fn history(lines: &[String]) -> History {
    parse_history(&lines.concat(), ParseOptions::default()).expect("a valid history")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    RealTime,
    Process,
}

/// Brute-force linearizability of every key.
pub fn reference_linearizable(history: &History) -> bool {
    reference(history, Order::RealTime)
}

/// Brute-force sequential consistency of every key.
pub fn reference_sequential(history: &History) -> bool {
    reference(history, Order::Process)
}

fn reference(history: &History, order: Order) -> bool {
    (0..history.keys.len() as u32).all(|key| reference_key(history, key, order))
}

fn reference_key(history: &History, key: u32, order: Order) -> bool {
    let operations: Vec<usize> = (0..history.operations.len())
        .filter(|&index| {
            let operation = &history.operations[index];
            operation.key == key
                && operation.outcome != Outcome::Fail
                && !(operation.outcome == Outcome::Info && matches!(operation.call, Call::Read(_)))
        })
        .collect();
    assert!(
        operations.len() <= 64,
        "reference checker takes at most 64 operations"
    );
    let mut seen = BTreeSet::new();
    let mut stack = vec![(0u64, Value::Null)];
    while let Some((done, state)) = stack.pop() {
        if !seen.insert((done, state.clone())) {
            continue;
        }
        let all_required = operations.iter().enumerate().all(|(bit, &index)| {
            done & (1 << bit) != 0 || history.operations[index].outcome == Outcome::Info
        });
        if all_required {
            return true;
        }
        for (bit, &index) in operations.iter().enumerate() {
            if done & (1 << bit) != 0 || !may_go_next(history, &operations, done, index, order) {
                continue;
            }
            let operation = &history.operations[index];
            let next = match (&operation.call, operation.outcome) {
                (Call::Read(value), _) => (*value == state).then(|| state.clone()),
                (Call::Write(value), _) => Some(value.clone()),
                (Call::Delete, _) => Some(Value::Null),
                (Call::Cas(expected, new), _) => (*expected == state).then(|| new.clone()),
            };
            if let Some(next) = next {
                stack.push((done | (1 << bit), next));
            }
        }
    }
    false
}

fn may_go_next(
    history: &History,
    operations: &[usize],
    done: u64,
    index: usize,
    order: Order,
) -> bool {
    let candidate = &history.operations[index];
    operations.iter().enumerate().all(|(bit, &other)| {
        if done & (1 << bit) != 0 || other == index {
            return true;
        }
        let other = &history.operations[other];
        match order {
            Order::RealTime => other.complete_position.is_none_or(|complete| {
                other.outcome == Outcome::Info || complete > candidate.invoke_position
            }),
            Order::Process => {
                other.process != candidate.process
                    || other.invoke_position > candidate.invoke_position
            }
        }
    })
}

/// An operation on any key that completes: invoke and completion lines.
pub fn op_on(
    process: u64,
    f: &str,
    key: &str,
    value: &str,
    kind: &str,
    start: u64,
    end: u64,
) -> Vec<String> {
    let invoke_value = if f == "read" { "null" } else { value };
    vec![
        line(process, "invoke", f, key, invoke_value, start),
        line(process, kind, f, key, value, end),
    ]
}

/// Brute-force sequential consistency of the whole history, all keys together: one order
/// of every operation that respects each process's order, in which every `ok` operation
/// takes effect and every `info` one may, and every read returns its key's latest write.
pub fn reference_sequential_history(history: &History) -> bool {
    let operations: Vec<usize> = (0..history.operations.len())
        .filter(|&index| {
            let operation = &history.operations[index];
            operation.outcome != Outcome::Fail
                && !(operation.outcome == Outcome::Info && matches!(operation.call, Call::Read(_)))
        })
        .collect();
    assert!(
        operations.len() <= 24,
        "reference takes at most 24 operations"
    );
    let initial = vec![Value::Null; history.keys.len()];
    let mut seen: BTreeSet<(u32, Vec<Value>)> = BTreeSet::new();
    let mut stack = vec![(0u32, initial)];
    while let Some((done, state)) = stack.pop() {
        if !seen.insert((done, state.clone())) {
            continue;
        }
        let finished = operations.iter().enumerate().all(|(bit, &index)| {
            done & (1 << bit) != 0 || history.operations[index].outcome == Outcome::Info
        });
        if finished {
            return true;
        }
        for (bit, &index) in operations.iter().enumerate() {
            if done & (1 << bit) != 0 {
                continue;
            }
            let operation = &history.operations[index];
            // Every earlier operation of the process must be done, or be an info one
            // left out (info operations are their process's last, so none is).
            let is_next = operations.iter().enumerate().all(|(other_bit, &other)| {
                let other = &history.operations[other];
                done & (1 << other_bit) != 0
                    || other.process != operation.process
                    || other.invoke_position >= operation.invoke_position
            });
            if !is_next {
                continue;
            }
            let key = operation.key as usize;
            let next = match &operation.call {
                Call::Read(value) => (*value == state[key]).then(|| state[key].clone()),
                Call::Write(value) => Some(value.clone()),
                Call::Delete => Some(Value::Null),
                Call::Cas(expected, new) => (*expected == state[key]).then(|| new.clone()),
            };
            if let Some(next) = next {
                let mut state = state.clone();
                state[key] = next;
                stack.push((done | (1 << bit), state));
            }
        }
    }
    false
}

/// Brute-force session guarantees of every key: some order of the key's versions (the
/// initial absent value first, then every non-failed write in some order) and some choice
/// of the version each ok read saw satisfies read-your-writes, monotonic reads, monotonic
/// writes, writes-follow-reads and "a cas follows the version it read", for every process.
/// For a fixed order, choosing for each read the earliest candidate the constraints allow
/// is optimal (later constraints are lower bounds), so only orders are enumerated.
pub fn reference_session(history: &History) -> bool {
    (0..history.keys.len() as u32).all(|key| reference_session_key(history, key))
}

fn reference_session_key(history: &History, key: u32) -> bool {
    let on_key: Vec<usize> = (0..history.operations.len())
        .filter(|&index| history.operations[index].key == key)
        .collect();
    // Version 0 is the initial absence; version n is written by writers[n - 1].
    let writers: Vec<usize> = on_key
        .iter()
        .copied()
        .filter(|&index| {
            let operation = &history.operations[index];
            operation.outcome != Outcome::Fail && operation.call.written_value().is_some()
        })
        .collect();
    assert!(
        writers.len() <= 7,
        "reference takes at most 7 versions per key"
    );
    let mut order: Vec<usize> = (1..=writers.len()).collect();
    loop {
        let mut position = vec![0usize; writers.len() + 1];
        for (at, &version) in order.iter().enumerate() {
            position[version] = at + 1;
        }
        if sessions_hold(history, &on_key, &writers, &position) {
            return true;
        }
        if !next_permutation(&mut order) {
            return false;
        }
    }
}

fn sessions_hold(
    history: &History,
    on_key: &[usize],
    writers: &[usize],
    position: &[usize],
) -> bool {
    let candidates = |value: &Value| -> Vec<usize> {
        let mut list: Vec<usize> = writers
            .iter()
            .enumerate()
            .filter(|(_, writer)| history.operations[**writer].call.written_value() == Some(value))
            .map(|(index, _)| position[index + 1])
            .collect();
        if *value == Value::Null {
            list.push(0);
        }
        list
    };
    // Per process: (last write's position, last read's position).
    let mut sessions: std::collections::BTreeMap<u64, (usize, usize)> = Default::default();
    for &index in on_key {
        let operation = &history.operations[index];
        if operation.outcome != Outcome::Ok {
            continue;
        }
        let (last_write, last_read) = sessions.entry(operation.process).or_default();
        let mut own_read = None;
        if let Call::Read(value) | Call::Cas(value, _) = &operation.call {
            let floor = (*last_write).max(*last_read);
            let options = candidates(value);
            if !options.is_empty() {
                match options.into_iter().filter(|&at| at >= floor).min() {
                    Some(at) => own_read = Some(at),
                    None => return false,
                }
            }
        }
        if operation.call.written_value().is_some() {
            let version = writers.iter().position(|&writer| writer == index).unwrap() + 1;
            let at = position[version];
            let floor = (*last_write).max(*last_read).max(own_read.unwrap_or(0));
            if at < floor {
                return false;
            }
            *last_write = at;
        }
        if let Some(at) = own_read {
            *last_read = at;
        }
    }
    true
}

fn next_permutation(items: &mut [usize]) -> bool {
    let Some(pivot) = (1..items.len()).rev().find(|&at| items[at - 1] < items[at]) else {
        return false;
    };
    let successor = (pivot..items.len())
        .rev()
        .find(|&at| items[at] > items[pivot - 1])
        .unwrap();
    items.swap(pivot - 1, successor);
    items[pivot..].reverse();
    true
}
