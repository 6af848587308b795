//! Sequential consistency of one key: one order of all operations that respects each
//! process's own order (real time is not respected across processes).
//!
//! Linearizability implies sequential consistency, so the caller runs this search only for
//! keys that are not known to be linearizable. The search is depth-first over
//! (position in each process's operations, register value), memoized, with reads placed
//! greedily like the linearizability search. Info operations are each their process's
//! last operation; they may be applied or left out.

use serde::Serialize;

use crate::history::History;
use crate::linear::{Limits, StopReason};
use crate::problem::{Effect, JUNK, KeyHistory, Problem};
use crate::table::WordSet;

/// Sequential consistency of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySequential {
    Valid,
    Violation(Box<SequentialViolation>),
    Unknown { reason: String },
}

/// A key no interleaving of whose processes explains the reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequentialViolation {
    pub key: String,
    /// Indices into `History::operations` of the operations each process was stuck on in
    /// the interleaving that got furthest.
    pub blocked: Vec<usize>,
    pub explanation: String,
}

const NODES_PER_LIMIT_CHECK: u64 = 1024;

struct Processes {
    /// Per process, its operations (indices into the problem) in its order.
    sequences: Vec<Vec<u32>>,
}

/// Checks one key for sequential consistency.
pub fn check_key(history: &History, key: &KeyHistory, limits: &Limits) -> KeySequential {
    let problem = Problem::whole(history, key);
    let processes = group_by_process(history, &problem);
    let count = processes.sequences.len();
    let width = count.div_ceil(2) + 1;
    let mut visited = WordSet::new(width);
    let mut stack: Vec<u64> = Vec::new();
    let mut row = vec![0u64; width];
    row[width - 1] = u64::from(problem.initial_states[0]);
    close_reads(&problem, &processes, &mut row);
    visited.insert(&row);
    stack.extend_from_slice(&row);
    let mut deepest = row.clone();
    let mut deepest_placed = 0usize;
    let mut nodes_count = 0u64;
    while !stack.is_empty() {
        let start = stack.len() - width;
        row.copy_from_slice(&stack[start..]);
        stack.truncate(start);
        nodes_count += 1;
        if nodes_count.is_multiple_of(NODES_PER_LIMIT_CHECK) {
            if (limits.should_stop)() {
                return unknown(StopReason::Timeout);
            }
            let bytes = visited.bytes() + stack.capacity() * 8;
            if bytes > limits.memory_bytes_max {
                return unknown(StopReason::Memory { bytes });
            }
        }
        if is_complete(&problem, &processes, &row) {
            return KeySequential::Valid;
        }
        let placed: usize = (0..count).map(|process| position(&row, process)).sum();
        if placed > deepest_placed {
            deepest_placed = placed;
            deepest.copy_from_slice(&row);
        }
        for process in 0..count {
            let Some(operation) = head(&processes, &row, process) else {
                continue;
            };
            let state = row[width - 1] as u32;
            let new_state = match problem.operations[operation as usize].effect {
                Effect::Blind(value) => value,
                Effect::Cas(expected, new) if expected == state => new,
                Effect::Cas(_, _) | Effect::Read(_) => continue,
            };
            let mut child = row.clone();
            set_position(&mut child, process, position(&row, process) + 1);
            child[width - 1] = u64::from(new_state);
            close_reads(&problem, &processes, &mut child);
            if visited.insert(&child) {
                stack.extend_from_slice(&child);
            }
        }
    }
    violation(history, key, &problem, &processes, &deepest)
}

fn unknown(reason: StopReason) -> KeySequential {
    KeySequential::Unknown {
        reason: reason.describe(),
    }
}

fn group_by_process(history: &History, problem: &Problem) -> Processes {
    let mut by_process: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
    for event in problem.events.iter().filter(|event| !event.is_return) {
        let source = problem.operations[event.operation as usize].source;
        let process = history.operations[source as usize].process;
        by_process.entry(process).or_default().push(event.operation);
    }
    Processes {
        sequences: by_process.into_values().collect(),
    }
}

fn position(row: &[u64], process: usize) -> usize {
    ((row[process / 2] >> (32 * (process % 2))) & 0xFFFF_FFFF) as usize
}

fn set_position(row: &mut [u64], process: usize, value: usize) {
    let shift = 32 * (process % 2);
    let word = &mut row[process / 2];
    *word = (*word & !(0xFFFF_FFFF << shift)) | ((value as u64) << shift);
}

fn head(processes: &Processes, row: &[u64], process: usize) -> Option<u32> {
    processes.sequences[process]
        .get(position(row, process))
        .copied()
}

/// Places every read at a process's head whose value is the state, until none is left.
fn close_reads(problem: &Problem, processes: &Processes, row: &mut [u64]) {
    let state = row[row.len() - 1] as u32;
    for process in 0..processes.sequences.len() {
        while let Some(operation) = head(processes, row, process) {
            match problem.operations[operation as usize].effect {
                Effect::Read(value) if value == state => {
                    set_position(row, process, position(row, process) + 1);
                }
                _ => break,
            }
        }
    }
}

/// Complete when every process has placed all operations except, possibly, a last
/// optional (info) one, which may never have happened.
fn is_complete(problem: &Problem, processes: &Processes, row: &[u64]) -> bool {
    (0..processes.sequences.len()).all(|process| match head(processes, row, process) {
        None => true,
        Some(operation) => {
            problem.operations[operation as usize].optional
                && position(row, process) + 1 == processes.sequences[process].len()
        }
    })
}

fn violation(
    history: &History,
    key: &KeyHistory,
    problem: &Problem,
    processes: &Processes,
    deepest: &[u64],
) -> KeySequential {
    let key_name = history.keys[key.key as usize].clone();
    let state = deepest[deepest.len() - 1] as u32;
    let held = if state == JUNK {
        "a value no read returns".to_string()
    } else {
        problem.values[state as usize].to_string()
    };
    let mut blocked = Vec::new();
    let mut lines = Vec::new();
    for process in 0..processes.sequences.len() {
        let Some(operation) = head(processes, deepest, process) else {
            continue;
        };
        let problem_operation = &problem.operations[operation as usize];
        if problem_operation.optional {
            continue;
        }
        let source = &history.operations[problem_operation.source as usize];
        blocked.push(problem_operation.source as usize);
        lines.push(format!(
            "process {} waits to {} (line {})",
            source.process, source.call, source.invoke_line
        ));
    }
    let total: usize = processes.sequences.iter().map(Vec::len).sum();
    let placed: usize = (0..processes.sequences.len())
        .map(|process| position(deepest, process))
        .sum();
    let explanation = format!(
        "no interleaving of the processes' operations on key {key_name:?} explains every read, \
         even ignoring real time. The furthest one places {placed} of {total} operations and \
         leaves the key holding {held}; there {}.",
        lines.join("; ")
    );
    KeySequential::Violation(Box::new(SequentialViolation {
        key: key_name,
        blocked,
        explanation,
    }))
}
