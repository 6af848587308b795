//! Session guarantees (Terry et al.): read-your-writes, monotonic reads, monotonic writes
//! and writes-follow-reads, for every process, per key.
//!
//! Each guarantee is a constraint on the order of a key's versions (the values written to
//! it): monotonic reads says a later read of a session returns a version no older than an
//! earlier one, and so on. The constraints of all sessions are edges of one graph over the
//! versions; a cycle means no version order satisfies them, and the cycle, read edge by
//! edge, is the explanation. A read tells which version it saw only if exactly one
//! operation wrote its value to the key; reads of values written more than once are
//! counted as skipped, never guessed (no false alarms).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{Call, History, Outcome, Value};
use crate::problem::KeyHistory;

/// The four guarantees, in the order a cycle is blamed on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    ReadYourWrites,
    MonotonicReads,
    WritesFollowReads,
    MonotonicWrites,
}

impl Guarantee {
    pub const ALL: [Guarantee; 4] = [
        Guarantee::ReadYourWrites,
        Guarantee::MonotonicReads,
        Guarantee::WritesFollowReads,
        Guarantee::MonotonicWrites,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guarantee::ReadYourWrites => "read-your-writes",
            Guarantee::MonotonicReads => "monotonic reads",
            Guarantee::WritesFollowReads => "writes-follow-reads",
            Guarantee::MonotonicWrites => "monotonic writes",
        }
    }
}

/// A cycle of version-order constraints on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionViolation {
    pub key: String,
    /// The guarantee the cycle is blamed on: the first of its edges' guarantees in the
    /// order read-your-writes, monotonic reads, writes-follow-reads, monotonic writes.
    pub guarantee: Guarantee,
    pub process: u64,
    /// Indices into `History::operations` of the operations whose constraints form the
    /// cycle.
    pub operations: Vec<usize>,
    pub explanation: String,
}

/// Session guarantees of one key.
#[derive(Debug, Clone, Default)]
pub struct KeySession {
    pub violation: Option<SessionViolation>,
    /// Reads whose version is ambiguous (their value was written more than once).
    pub reads_skipped_count: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Initial,
    Cas,
    Session(Guarantee, u64),
}

#[derive(Clone, Copy)]
struct Edge {
    to: usize,
    why: Why,
    /// The operation that imposes the edge (index into `History::operations`).
    operation: usize,
}

/// Version 0 is the key's initial absence; version `n > 0` is written by `writers[n - 1]`.
struct Versions {
    writers: Vec<usize>,
    by_operation: BTreeMap<usize, usize>,
    by_value: BTreeMap<Value, Vec<usize>>,
    edges: Vec<Vec<Edge>>,
}

impl Versions {
    fn source(&self, value: &Value) -> Option<usize> {
        match self.by_value.get(value).map(Vec::as_slice) {
            Some([only]) => Some(*only),
            None if *value == Value::Null => Some(0),
            _ => None,
        }
    }

    fn add(&mut self, from: usize, to: usize, why: Why, operation: usize) {
        if from != to {
            self.edges[from].push(Edge { to, why, operation });
        }
    }
}

/// Checks the session guarantees of every process on one key.
pub fn check_key(history: &History, key: &KeyHistory) -> KeySession {
    let mut versions = build_versions(history, key);
    let mut per_process: BTreeMap<u64, (Option<usize>, Option<usize>)> = BTreeMap::new();
    let mut reads_skipped_count = 0;
    for key_operation in &key.operations {
        let index = key_operation.source as usize;
        let operation = &history.operations[index];
        if operation.outcome != Outcome::Ok {
            continue;
        }
        let (last_write, last_read) = per_process.entry(operation.process).or_default();
        let process = operation.process;
        let observed = match &operation.call {
            Call::Read(value) | Call::Cas(value, _) => Some(versions.source(value)),
            Call::Write(_) | Call::Delete => None,
        };
        match observed {
            Some(None) => reads_skipped_count += 1,
            Some(Some(source)) => {
                if let Some(previous) = *last_read {
                    let why = Why::Session(Guarantee::MonotonicReads, process);
                    versions.add(previous, source, why, index);
                }
                if let Some(write) = *last_write {
                    let why = Why::Session(Guarantee::ReadYourWrites, process);
                    versions.add(write, source, why, index);
                }
                *last_read = Some(source);
            }
            None => {}
        }
        if let Some(&version) = versions.by_operation.get(&index) {
            if let Some(previous) = *last_write {
                let why = Why::Session(Guarantee::MonotonicWrites, process);
                versions.add(previous, version, why, index);
            }
            if let Some(read) = *last_read {
                let why = Why::Session(Guarantee::WritesFollowReads, process);
                versions.add(read, version, why, index);
            }
            *last_write = Some(version);
        }
    }
    let violation =
        find_cycle(&versions).map(|cycle| describe_cycle(history, key, &versions, &cycle));
    KeySession {
        violation,
        reads_skipped_count,
    }
}

fn build_versions(history: &History, key: &KeyHistory) -> Versions {
    let mut versions = Versions {
        writers: Vec::new(),
        by_operation: BTreeMap::new(),
        by_value: BTreeMap::new(),
        edges: vec![Vec::new()],
    };
    for key_operation in &key.operations {
        let index = key_operation.source as usize;
        let operation = &history.operations[index];
        let Some(value) = operation.call.written_value() else {
            continue;
        };
        if operation.outcome == Outcome::Fail {
            continue;
        }
        versions.writers.push(index);
        let version = versions.writers.len();
        versions.edges.push(Vec::new());
        versions.by_operation.insert(index, version);
        versions
            .by_value
            .entry(value.clone())
            .or_default()
            .push(version);
    }
    if let Some(deleted) = versions.by_value.get_mut(&Value::Null) {
        deleted.push(0);
    }
    for version in 1..=versions.writers.len() {
        let writer = versions.writers[version - 1];
        versions.add(0, version, Why::Initial, writer);
        // Only a cas known to have happened read its expected version; an info cas may
        // never have taken effect.
        if let Call::Cas(expected, _) = &history.operations[writer].call
            && history.operations[writer].outcome == Outcome::Ok
            && let Some(source) = versions.source(expected)
        {
            versions.add(source, version, Why::Cas, writer);
        }
    }
    versions
}

/// Returns the edges of one cycle (as (from, edge)), if the graph has one. Iterative DFS.
fn find_cycle(versions: &Versions) -> Option<Vec<(usize, Edge)>> {
    let count = versions.edges.len();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut color = vec![0u8; count];
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..count {
        if color[root] != 0 {
            continue;
        }
        color[root] = 1;
        path.push((root, 0));
        while let Some(&mut (node, ref mut next_edge)) = path.last_mut() {
            let Some(&edge) = versions.edges[node].get(*next_edge) else {
                color[node] = 2;
                path.pop();
                continue;
            };
            *next_edge += 1;
            match color[edge.to] {
                0 => {
                    color[edge.to] = 1;
                    path.push((edge.to, 0));
                }
                1 => {
                    let start = path.iter().position(|&(on, _)| on == edge.to)?;
                    let mut cycle: Vec<(usize, Edge)> = path[start..]
                        .windows(2)
                        .map(|pair| (pair[0].0, versions.edges[pair[0].0][pair[0].1 - 1]))
                        .collect();
                    cycle.push((node, edge));
                    return Some(cycle);
                }
                _ => {}
            }
        }
    }
    None
}

fn describe_cycle(
    history: &History,
    key: &KeyHistory,
    versions: &Versions,
    cycle: &[(usize, Edge)],
) -> SessionViolation {
    let key_name = history.keys[key.key as usize].clone();
    let version_name = |version: usize| -> String {
        if version == 0 {
            return "the initial absent value".to_string();
        }
        let writer = &history.operations[versions.writers[version - 1]];
        let value = writer.call.written_value().cloned().unwrap_or(Value::Null);
        format!(
            "{value} (written by process {}, line {})",
            writer.process, writer.invoke_line
        )
    };
    let mut blamed: Option<(Guarantee, u64)> = None;
    let mut steps = Vec::new();
    for &(from, edge) in cycle {
        let (from_name, to_name) = (version_name(from), version_name(edge.to));
        let line = history.operations[edge.operation].invoke_line;
        let step = match edge.why {
            Why::Initial => format!("{to_name} replaced {from_name}"),
            Why::Cas => format!("the cas that wrote {to_name} read {from_name}"),
            Why::Session(guarantee, process) => {
                if blamed.is_none_or(|(current, _)| guarantee < current) {
                    blamed = Some((guarantee, process));
                }
                let action = match guarantee {
                    Guarantee::MonotonicReads => "read",
                    Guarantee::ReadYourWrites => "read",
                    Guarantee::WritesFollowReads | Guarantee::MonotonicWrites => "wrote",
                };
                let earlier = match guarantee {
                    Guarantee::MonotonicReads => "after reading",
                    Guarantee::ReadYourWrites | Guarantee::MonotonicWrites => "after writing",
                    Guarantee::WritesFollowReads => "after reading",
                };
                format!(
                    "process {process} {action} {to_name} {earlier} {from_name} (line {line}; {} \
                     puts {from_name} first)",
                    guarantee.name()
                )
            }
        };
        steps.push(step);
    }
    let (guarantee, process) = blamed.unwrap_or((Guarantee::MonotonicWrites, 0));
    let explanation = format!(
        "{} is violated for process {process} on key {key_name:?}: {}. These orderings of the \
         key's versions form a cycle, so no version order satisfies them all.",
        guarantee.name(),
        steps.join("; ")
    );
    let mut operations: Vec<usize> = cycle.iter().map(|(_, edge)| edge.operation).collect();
    operations.sort_unstable();
    operations.dedup();
    SessionViolation {
        key: key_name,
        guarantee,
        process,
        operations,
        explanation,
    }
}
