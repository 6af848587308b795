//! `Problem`: one key's operations reduced to what the searches need.
//!
//! Values are interned to small integers. A value that no read returns and no cas expects
//! can never be observed, so every such value becomes one value, `JUNK`: a search cannot
//! tell them apart, and merging them shrinks its state space. Operations that cannot affect
//! a verdict are dropped: failed operations (they did not happen), reads whose result is
//! unknown, and optional (info) writes whose value is never observed (such a write may be
//! assumed never to have happened, since nothing could see it).

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Call, History, Outcome, Value};

/// The interned id of every value nothing observes.
pub const JUNK: u32 = 0;

/// What an operation does to the key's model state, on interned values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// Requires the state to be the value; leaves it unchanged.
    Read(u32),
    /// A write or delete: sets the state whatever it was.
    Blind(u32),
    /// Requires the first value; sets the second.
    Cas(u32, u32),
}

impl Effect {
    /// Whether the effect requires the state to be `value` (a read or cas of it).
    pub fn needs(self, value: u32) -> bool {
        match self {
            Effect::Read(wanted) | Effect::Cas(wanted, _) => wanted == value,
            Effect::Blind(_) => false,
        }
    }
}

/// One operation of a problem.
#[derive(Debug, Clone, Copy)]
pub struct ProblemOperation {
    pub effect: Effect,
    /// Optional operations (info, or relaxed by a window) may take effect at any moment
    /// after their invoke, or never; they have no return event.
    pub optional: bool,
    /// Index into `History::operations`.
    pub source: u32,
}

/// An invoke or return of a problem operation, in real-time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemEvent {
    pub operation: u32,
    pub is_return: bool,
}

/// One key's history, ready for a search.
#[derive(Debug, Clone)]
pub struct Problem {
    pub operations: Vec<ProblemOperation>,
    pub events: Vec<ProblemEvent>,
    /// Interned values: `values[id]`; `values[JUNK]` is a placeholder.
    pub values: Vec<Value>,
    /// The states the search may start from (one, `null`, unless relaxed by a window).
    pub initial_states: Vec<u32>,
}

/// Where an operation of a key sits in that key's events.
#[derive(Debug, Clone, Copy)]
pub struct KeyOperation {
    /// Index into `History::operations`.
    pub source: u32,
    pub invoke_index: u32,
    /// `None` when the operation has no completion.
    pub complete_index: Option<u32>,
}

/// A key's events and operations (indices into the key's own event list).
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    pub key: u32,
    /// Indices into `History::operations`, one per event, with the completion flag.
    pub events: Vec<(u32, bool)>,
    pub operations: Vec<KeyOperation>,
}

/// Splits a history into per-key histories, in key-id order.
pub fn split_by_key(history: &History) -> Vec<KeyHistory> {
    let mut keys: Vec<KeyHistory> = (0..history.keys.len())
        .map(|key| KeyHistory {
            key: u32::try_from(key).expect("key ids fit u32"),
            ..KeyHistory::default()
        })
        .collect();
    let mut position_in_key = vec![0u32; history.operations.len()];
    for event in &history.events {
        let operation = &history.operations[event.operation as usize];
        let key = &mut keys[operation.key as usize];
        let index = u32::try_from(key.events.len()).expect("events fit u32");
        key.events.push((event.operation, event.is_completion));
        if event.is_completion {
            let slot = position_in_key[event.operation as usize] as usize;
            key.operations[slot].complete_index = Some(index);
        } else {
            position_in_key[event.operation as usize] =
                u32::try_from(key.operations.len()).expect("operations fit u32");
            key.operations.push(KeyOperation {
                source: event.operation,
                invoke_index: index,
                complete_index: None,
            });
        }
    }
    keys
}

/// How each operation enters a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dropped,
    /// Returns inside the window: must take effect between invoke and return.
    Required,
    /// May take effect at any moment from its invoke in the window (or from the window's
    /// start), or never.
    Optional {
        from_start: bool,
    },
}

impl Problem {
    /// The whole key, from the empty initial state.
    pub fn whole(history: &History, key: &KeyHistory) -> Problem {
        let last = key.events.len().saturating_sub(1);
        Problem::window(history, key, 0, last)
    }

    /// The key's events `start..=end`. For `start > 0` the window is relaxed so that it is
    /// judged on its own: the key may hold any value at the start, operations in flight at
    /// the start may have taken effect before it, during it or never, and so may operations
    /// that have not returned by `end`. A window that fails relaxed fails whatever happened
    /// before it.
    pub fn window(history: &History, key: &KeyHistory, start: usize, end: usize) -> Problem {
        Problem::relaxed_window(history, key, start, end, &BTreeSet::new())
    }

    /// `window`, with the operations in `relaxed` (indices into `History::operations`)
    /// made optional too: each may take effect at any moment after its invoke, or never.
    /// That only removes constraints, so a relaxed window that fails proves a violation.
    pub fn relaxed_window(
        history: &History,
        key: &KeyHistory,
        start: usize,
        end: usize,
        relaxed: &BTreeSet<u32>,
    ) -> Problem {
        let modes: Vec<Mode> = key
            .operations
            .iter()
            .map(
                |operation| match mode_in_window(history, operation, start, end) {
                    Mode::Required if relaxed.contains(&operation.source) => {
                        Mode::Optional { from_start: false }
                    }
                    mode => mode,
                },
            )
            .collect();
        let values = intern_observed(history, key, &modes);
        let id = |value: &Value| values.get(value).copied().unwrap_or(JUNK);
        let mut value_list = vec![Value::Null; values.len() + 1];
        for (value, &value_id) in &values {
            value_list[value_id as usize] = value.clone();
        }
        let mut operations = Vec::new();
        let mut problem_index = vec![u32::MAX; key.operations.len()];
        for (index, (operation, mode)) in key.operations.iter().zip(&modes).enumerate() {
            let optional = match mode {
                Mode::Dropped => continue,
                Mode::Required => false,
                Mode::Optional { .. } => true,
            };
            let source = &history.operations[operation.source as usize];
            let effect = match &source.call {
                Call::Read(value) => Effect::Read(id(value)),
                Call::Write(value) => Effect::Blind(id(value)),
                Call::Delete => Effect::Blind(id(&Value::Null)),
                Call::Cas(expected, new) => Effect::Cas(id(expected), id(new)),
            };
            let invisible = match effect {
                Effect::Read(_) => true,
                Effect::Blind(value) | Effect::Cas(_, value) => value == JUNK,
            };
            if optional && invisible {
                continue;
            }
            problem_index[index] = u32::try_from(operations.len()).expect("fits u32");
            operations.push(ProblemOperation {
                effect,
                optional,
                source: operation.source,
            });
        }
        let events = window_events(key, &modes, &problem_index, start, end);
        let initial_states = if start == 0 {
            vec![id(&Value::Null)]
        } else {
            relaxed_initial_states(history, key, &values)
        };
        Problem {
            operations,
            events,
            values: value_list,
            initial_states,
        }
    }
}

fn mode_in_window(history: &History, operation: &KeyOperation, start: usize, end: usize) -> Mode {
    let source = &history.operations[operation.source as usize];
    if source.outcome == Outcome::Fail {
        return Mode::Dropped;
    }
    let invoke = operation.invoke_index as usize;
    // An info operation may take effect even after its info line, so only an ok
    // operation's completion bounds it.
    let complete = match source.outcome {
        Outcome::Ok => operation.complete_index.map(|index| index as usize),
        Outcome::Info | Outcome::Fail => None,
    };
    if invoke > end || complete.is_some_and(|index| index < start) {
        return Mode::Dropped;
    }
    let returns_inside = complete.is_some_and(|index| index <= end);
    if invoke >= start && returns_inside && source.outcome == Outcome::Ok {
        return Mode::Required;
    }
    Mode::Optional {
        from_start: invoke < start,
    }
}

/// Interns every value a kept read returns or a kept cas expects, in value order, from 1.
fn intern_observed(history: &History, key: &KeyHistory, modes: &[Mode]) -> BTreeMap<Value, u32> {
    let mut observed = BTreeMap::new();
    for (operation, mode) in key.operations.iter().zip(modes) {
        let source = &history.operations[operation.source as usize];
        match (&source.call, mode) {
            (Call::Read(value), Mode::Required) => {
                observed.insert(value.clone(), 0);
            }
            (Call::Cas(expected, _), Mode::Required | Mode::Optional { .. }) => {
                observed.insert(expected.clone(), 0);
            }
            _ => {}
        }
    }
    for (index, value_id) in observed.values_mut().enumerate() {
        *value_id = u32::try_from(index + 1).expect("value ids fit u32");
    }
    observed
}

fn window_events(
    key: &KeyHistory,
    modes: &[Mode],
    problem_index: &[u32],
    start: usize,
    end: usize,
) -> Vec<ProblemEvent> {
    let mut events = Vec::new();
    for (mode, &index) in modes.iter().zip(problem_index) {
        if index != u32::MAX && *mode == (Mode::Optional { from_start: true }) {
            events.push(ProblemEvent {
                operation: index,
                is_return: false,
            });
        }
    }
    let mut key_operation_of = BTreeMap::new();
    for (position, operation) in key.operations.iter().enumerate() {
        key_operation_of.insert(operation.source, position);
    }
    for &(source, is_completion) in &key.events[start..=end.min(key.events.len() - 1)] {
        let position = key_operation_of[&source];
        let index = problem_index[position];
        if index == u32::MAX {
            continue;
        }
        let keep = match modes[position] {
            Mode::Dropped | Mode::Optional { from_start: true } => false,
            Mode::Required => true,
            Mode::Optional { from_start: false } => !is_completion,
        };
        if keep {
            events.push(ProblemEvent {
                operation: index,
                is_return: is_completion,
            });
        }
    }
    events
}

/// Every value the key could hold at a window's start: any observed value that some
/// operation writes (or null), plus `JUNK` for the values nothing observes.
fn relaxed_initial_states(
    history: &History,
    key: &KeyHistory,
    values: &BTreeMap<Value, u32>,
) -> Vec<u32> {
    let mut states = vec![JUNK];
    if let Some(&null_id) = values.get(&Value::Null) {
        states.push(null_id);
    }
    let mut written = BTreeSet::new();
    for operation in &key.operations {
        let source = &history.operations[operation.source as usize];
        if source.outcome != Outcome::Fail
            && let Some(value) = source.call.written_value()
            && let Some(&value_id) = values.get(value)
        {
            written.insert(value_id);
        }
    }
    for id in written {
        if !states.contains(&id) {
            states.push(id);
        }
    }
    states
}
