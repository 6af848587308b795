//! Helpers shared by the integration tests: a compact way to write histories, and
//! brute-force reference checkers (plain Wing-Gong search over every order, memoized, no
//! reductions) that the fast searches are compared with.

#![allow(dead_code)]

use std::collections::BTreeSet;

use synod_check::{Call, History, Outcome, ParseOptions, Value, parse_history};

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
