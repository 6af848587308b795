//! Session guarantees (Terry et al.): read-your-writes, monotonic reads, monotonic writes
//! and writes-follow-reads, for every process, per key.
//!
//! Each guarantee is a constraint on the order of a key's versions (the values written to
//! it): monotonic reads says a later read of a session returns a version no older than an
//! earlier one, and so on. The guarantees hold when some order of the versions satisfies
//! the constraints of all sessions, for some choice of which version each read saw.
//!
//! A read whose value exactly one operation wrote saw that version, so its constraints are
//! plain edges of one graph over the versions, and a cycle is a violation, read edge by
//! edge. A read of a value written more than once is ambiguous; it is decided in three
//! ways, most conclusive first:
//!
//! 1. When the key's own operations have a sequential order (it is linearizable or
//!    sequentially consistent), that order fixes which version each read saw and orders the
//!    versions so that every session's reads and writes appear in its program order: all
//!    four guarantees hold, whatever the ambiguity.
//! 2. Otherwise each candidate version of an ambiguous read is tried against the plain
//!    edges; a candidate that closes a cycle is ruled out. A read with no candidate left is
//!    a violation, explained candidate by candidate; a read with one left is plain.
//! 3. The remaining reads are decided by a depth-first search over their candidates with a
//!    step budget. If the budget runs out, the guarantees their constraints involve are
//!    reported undecided for that key, never valid.

use std::collections::{BTreeMap, BTreeSet};

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

/// No version order satisfies the constraints of one key's sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionViolation {
    pub key: String,
    /// The guarantee blamed: the first of the guarantees involved in the order
    /// read-your-writes, monotonic reads, writes-follow-reads, monotonic writes.
    pub guarantee: Guarantee,
    pub process: u64,
    /// Indices into `History::operations` of the operations whose constraints conflict.
    pub operations: Vec<usize>,
    pub explanation: String,
}

/// Guarantees the checker could not decide on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionUndecided {
    pub key: String,
    pub guarantees: Vec<Guarantee>,
    pub reason: String,
}

/// How a key's ambiguous reads (values written more than once) were decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ambiguity {
    /// No read was ambiguous.
    None,
    /// The key's sequential order decided them (every guarantee holds).
    KeyOrder,
    /// Ruling out candidates and searching over the rest decided them.
    Searched,
    /// The search ran out of its budget.
    Undecided,
}

/// Session guarantees of one key.
#[derive(Debug, Clone)]
pub struct KeySession {
    pub violation: Option<SessionViolation>,
    pub undecided: Option<SessionUndecided>,
    pub ambiguity: Ambiguity,
    /// Ok reads and cas whose value was written by more than one operation.
    pub reads_ambiguous_count: usize,
    /// Ok reads and cas of a value no operation wrote: they name no version, so they
    /// constrain nothing here (linearizability and sequential consistency reject them).
    pub reads_unwritten_count: usize,
}

/// The default of the most reachability steps (graph nodes visited) spent deciding one
/// key's ambiguous reads; beyond it the key's guarantees are undecided.
pub const STEPS_MAX_DEFAULT: u64 = 1 << 22;

/// What stops the decision of a key's ambiguous reads.
pub struct Budget<'a> {
    pub steps_max: u64,
    /// The caller's time budget, asked every few thousand steps.
    pub should_stop: &'a dyn Fn() -> bool,
}
/// Steps between two calls of the caller's `should_stop`.
const STEPS_PER_STOP_CHECK: u64 = 1 << 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Initial,
    Cas,
    Session(Guarantee, u64),
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    to: usize,
    why: Why,
    /// The operation that imposes the edge (index into `History::operations`).
    operation: usize,
}

/// One end of a constraint: a known version, or the version an ambiguous read saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Version(usize),
    Choice(usize),
}

#[derive(Debug, Clone, Copy)]
struct Constraint {
    from: End,
    to: End,
    why: Why,
    operation: usize,
}

/// An ambiguous read: the operation and the versions it may have seen.
#[derive(Debug, Clone)]
struct Choice {
    operation: usize,
    candidates: Vec<usize>,
}

/// Version 0 is the key's initial absence; version `n > 0` is written by `writers[n - 1]`.
struct Versions {
    writers: Vec<usize>,
    by_operation: BTreeMap<usize, usize>,
    by_value: BTreeMap<Value, Vec<usize>>,
}

impl Versions {
    fn build(history: &History, key: &KeyHistory) -> Versions {
        let mut versions = Versions {
            writers: Vec::new(),
            by_operation: BTreeMap::new(),
            by_value: BTreeMap::new(),
        };
        versions.by_value.insert(Value::Null, vec![0]);
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
            versions.by_operation.insert(index, version);
            let list = versions.by_value.entry(value.clone()).or_default();
            list.push(version);
        }
        versions
    }

    fn count(&self) -> usize {
        self.writers.len() + 1
    }

    fn candidates(&self, value: &Value) -> &[usize] {
        self.by_value.get(value).map_or(&[], Vec::as_slice)
    }
}

/// Whether some ok read or cas of the key returned a value written more than once: only
/// then does the session check need the key's sequential order.
pub fn has_ambiguous_reads(history: &History, key: &KeyHistory) -> bool {
    let versions = Versions::build(history, key);
    key.operations.iter().any(|key_operation| {
        let operation = &history.operations[key_operation.source as usize];
        match (&operation.call, operation.outcome) {
            (Call::Read(value) | Call::Cas(value, _), Outcome::Ok) => {
                versions.candidates(value).len() > 1
            }
            _ => false,
        }
    })
}

/// Everything the constraints of one key need.
struct Constraints {
    versions: Versions,
    list: Vec<Constraint>,
    choices: Vec<Choice>,
    reads_unwritten_count: usize,
}

/// Checks the session guarantees of every process on one key. `key_is_sequential` says
/// the key's own operations are known to have a sequential order (step 1 of the module
/// comment).
pub fn check_key(
    history: &History,
    key: &KeyHistory,
    key_is_sequential: bool,
    budget: &Budget,
) -> KeySession {
    let constraints = collect(history, key);
    let mut session = KeySession {
        violation: None,
        undecided: None,
        ambiguity: Ambiguity::None,
        reads_ambiguous_count: constraints.choices.len(),
        reads_unwritten_count: constraints.reads_unwritten_count,
    };
    let mut graph = Graph::new(constraints.versions.count(), budget);
    for constraint in &constraints.list {
        if let (End::Version(from), End::Version(to)) = (constraint.from, constraint.to) {
            graph.push(from, edge(to, constraint));
        }
    }
    if let Some(cycle) = graph.any_cycle() {
        // A sequential order of the key satisfies every plain edge: a cycle among them
        // would mean the order search or this graph is wrong.
        assert!(
            !key_is_sequential,
            "session cycle on a key with a sequential order"
        );
        session.violation = Some(describe_cycle(history, key, &constraints, &cycle));
        return session;
    }
    if constraints.choices.is_empty() {
        return session;
    }
    if key_is_sequential {
        session.ambiguity = Ambiguity::KeyOrder;
        return session;
    }
    let mut resolver = Resolver::new(&constraints, graph);
    session.ambiguity = Ambiguity::Searched;
    match resolver.resolve() {
        Resolution::Satisfiable => {}
        Resolution::NoCandidate { choice, cycles } => {
            let violation = describe_no_candidate(history, key, &constraints, choice, &cycles);
            session.violation = Some(violation);
        }
        Resolution::Exhausted => {
            let violation = describe_exhausted(history, key, &constraints, &resolver);
            session.violation = Some(violation);
        }
        Resolution::OutOfBudget => {
            session.ambiguity = Ambiguity::Undecided;
            session.undecided = Some(describe_undecided(history, key, &constraints, &resolver));
        }
    }
    session
}

fn edge(to: usize, constraint: &Constraint) -> Edge {
    Edge {
        to,
        why: constraint.why,
        operation: constraint.operation,
    }
}

/// Walks the key's ok operations per session and collects every constraint.
fn collect(history: &History, key: &KeyHistory) -> Constraints {
    let versions = Versions::build(history, key);
    let mut constraints = Constraints {
        list: Vec::new(),
        choices: Vec::new(),
        reads_unwritten_count: 0,
        versions,
    };
    for version in 1..constraints.versions.count() {
        let writer = constraints.versions.writers[version - 1];
        constraints.add(End::Version(0), End::Version(version), Why::Initial, writer);
    }
    // Per process: (last write's version, last read's end).
    let mut sessions: BTreeMap<u64, (Option<usize>, Option<End>)> = BTreeMap::new();
    for key_operation in &key.operations {
        let index = key_operation.source as usize;
        let operation = &history.operations[index];
        if operation.outcome != Outcome::Ok {
            continue;
        }
        let process = operation.process;
        let (last_write, last_read) = sessions.entry(process).or_default();
        let session = |guarantee| Why::Session(guarantee, process);
        let observed = match &operation.call {
            Call::Read(value) | Call::Cas(value, _) => constraints.end_of(value, index),
            Call::Write(_) | Call::Delete => None,
        };
        if let Some(end) = observed {
            if let Some(previous) = *last_read {
                constraints.add(previous, end, session(Guarantee::MonotonicReads), index);
            }
            if let Some(write) = *last_write {
                let why = session(Guarantee::ReadYourWrites);
                constraints.add(End::Version(write), end, why, index);
            }
        }
        let previous_read = *last_read;
        if observed.is_some() {
            *last_read = observed;
        }
        let Some(&version) = constraints.versions.by_operation.get(&index) else {
            continue;
        };
        let written = End::Version(version);
        if let Some(previous) = *last_write {
            let why = session(Guarantee::MonotonicWrites);
            constraints.add(End::Version(previous), written, why, index);
        }
        if let Some(read) = previous_read {
            constraints.add(read, written, session(Guarantee::WritesFollowReads), index);
        }
        if let Some(expected) = observed {
            constraints.add(expected, written, Why::Cas, index);
        }
        *last_write = Some(version);
    }
    constraints
}

impl Constraints {
    fn add(&mut self, from: End, to: End, why: Why, operation: usize) {
        if from != to {
            self.list.push(Constraint {
                from,
                to,
                why,
                operation,
            });
        }
    }

    /// The end a read of `value` by `operation` names: a version, a new choice, or none
    /// (nobody wrote the value).
    fn end_of(&mut self, value: &Value, operation: usize) -> Option<End> {
        match self.versions.candidates(value) {
            [] => {
                self.reads_unwritten_count += 1;
                None
            }
            [only] => Some(End::Version(*only)),
            candidates => {
                let candidates = candidates.to_vec();
                self.choices.push(Choice {
                    operation,
                    candidates,
                });
                Some(End::Choice(self.choices.len() - 1))
            }
        }
    }
}

/// The version graph with undoable edges and budgeted reachability.
struct Graph<'a> {
    edges: Vec<Vec<Edge>>,
    steps_count: u64,
    out_of_budget: bool,
    budget: &'a Budget<'a>,
}

impl<'a> Graph<'a> {
    fn new(count: usize, budget: &'a Budget<'a>) -> Graph<'a> {
        Graph {
            edges: vec![Vec::new(); count],
            steps_count: 0,
            out_of_budget: false,
            budget,
        }
    }

    fn push(&mut self, from: usize, edge: Edge) {
        self.edges[from].push(edge);
    }

    fn pop(&mut self, from: usize) {
        self.edges[from].pop();
    }

    /// A path of edges from `from` to `to`, if one exists (`Some(vec![])` when equal).
    /// `None` too when the step budget runs out (`out_of_budget` is then set).
    fn path(&mut self, from: usize, to: usize) -> Option<Vec<(usize, Edge)>> {
        let mut parent: BTreeMap<usize, (usize, Edge)> = BTreeMap::new();
        let mut stack = vec![from];
        let mut seen = BTreeSet::from([from]);
        while let Some(node) = stack.pop() {
            if node == to {
                let mut path = Vec::new();
                let mut at = to;
                while at != from {
                    let (previous, edge) = parent[&at];
                    path.push((previous, edge));
                    at = previous;
                }
                path.reverse();
                return Some(path);
            }
            if self.spend() {
                return None;
            }
            for &edge in &self.edges[node] {
                if seen.insert(edge.to) {
                    parent.insert(edge.to, (node, edge));
                    stack.push(edge.to);
                }
            }
        }
        None
    }

    /// Counts one step; true when the budget is spent.
    fn spend(&mut self) -> bool {
        self.steps_count += 1;
        let stop = self.steps_count >= self.budget.steps_max
            || (self.steps_count.is_multiple_of(STEPS_PER_STOP_CHECK)
                && (self.budget.should_stop)());
        self.out_of_budget |= stop;
        self.out_of_budget
    }

    /// Adds `from -> edge.to` unless it closes a cycle; returns the cycle it would close.
    fn try_push(&mut self, from: usize, edge: Edge) -> Result<(), Vec<(usize, Edge)>> {
        if let Some(mut cycle) = self.path(edge.to, from) {
            cycle.push((from, edge));
            return Err(cycle);
        }
        self.push(from, edge);
        Ok(())
    }

    /// One cycle of the graph, if it has one (iterative DFS; not budgeted: linear).
    fn any_cycle(&self) -> Option<Vec<(usize, Edge)>> {
        let count = self.edges.len();
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
                let Some(&edge) = self.edges[node].get(*next_edge) else {
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
                            .map(|pair| (pair[0].0, self.edges[pair[0].0][pair[0].1 - 1]))
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
}

enum Resolution {
    Satisfiable,
    /// Every candidate of `choice` closes a cycle with the plain edges (one per candidate).
    NoCandidate {
        choice: usize,
        cycles: Vec<(usize, Vec<(usize, Edge)>)>,
    },
    /// The search tried every combination of candidates.
    Exhausted,
    OutOfBudget,
}

/// Decides the ambiguous reads: rules out candidates, then searches.
struct Resolver<'c, 'g> {
    constraints: &'c Constraints,
    graph: Graph<'g>,
    /// Per choice, the constraints that touch it.
    touching: Vec<Vec<usize>>,
    /// Per choice, its candidates still possible, most likely first.
    candidates: Vec<Vec<usize>>,
    /// Per choice, the version assigned (fixed or by the search).
    assigned: Vec<Option<usize>>,
}

impl<'c, 'g> Resolver<'c, 'g> {
    fn new(constraints: &'c Constraints, graph: Graph<'g>) -> Resolver<'c, 'g> {
        let mut touching = vec![Vec::new(); constraints.choices.len()];
        for (index, constraint) in constraints.list.iter().enumerate() {
            for end in [constraint.from, constraint.to] {
                if let End::Choice(choice) = end
                    && touching[choice].last() != Some(&index)
                {
                    touching[choice].push(index);
                }
            }
        }
        let candidates = constraints
            .choices
            .iter()
            .map(|choice| choice.candidates.clone())
            .collect();
        Resolver {
            touching,
            candidates,
            assigned: vec![None; constraints.choices.len()],
            constraints,
            graph,
        }
    }

    fn resolve(&mut self) -> Resolution {
        if let Some(resolution) = self.rule_out() {
            return resolution;
        }
        self.search()
    }

    /// Assigns `version` to `choice` and adds the constraints whose ends are now all
    /// known; returns the nodes that gained an edge (one entry per edge). On a cycle,
    /// undoes what it added and returns the cycle.
    fn assign(&mut self, choice: usize, version: usize) -> Result<Vec<usize>, Vec<(usize, Edge)>> {
        self.assigned[choice] = Some(version);
        let mut added: Vec<usize> = Vec::new();
        for &index in &self.touching[choice] {
            let constraint = self.constraints.list[index];
            let from = self.resolve_end(constraint.from);
            let to = self.resolve_end(constraint.to);
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            if from == to {
                continue;
            }
            if let Err(cycle) = self.graph.try_push(from, edge(to, &constraint)) {
                self.undo(choice, &added);
                return Err(cycle);
            }
            added.push(from);
        }
        Ok(added)
    }

    fn undo(&mut self, choice: usize, added: &[usize]) {
        for &from in added.iter().rev() {
            self.graph.pop(from);
        }
        self.assigned[choice] = None;
    }

    fn resolve_end(&self, end: End) -> Option<usize> {
        match end {
            End::Version(version) => Some(version),
            End::Choice(choice) => self.assigned[choice],
        }
    }

    /// Rules out, repeatedly, every candidate that closes a cycle with the known edges,
    /// and fixes choices left with one candidate. A read left with none is a violation.
    fn rule_out(&mut self) -> Option<Resolution> {
        let mut changed = true;
        while changed {
            changed = false;
            for choice in 0..self.candidates.len() {
                if self.assigned[choice].is_some() {
                    continue;
                }
                let mut kept = Vec::new();
                let mut cycles = Vec::new();
                for &version in &self.candidates[choice].clone() {
                    let added = self.trial(choice, version);
                    if self.graph.out_of_budget {
                        return Some(Resolution::OutOfBudget);
                    }
                    match added {
                        Ok(()) => kept.push(version),
                        Err(cycle) => cycles.push((version, cycle)),
                    }
                }
                if kept.is_empty() {
                    return Some(Resolution::NoCandidate { choice, cycles });
                }
                self.candidates[choice] = kept;
                if self.candidates[choice].len() == 1 {
                    let only = self.candidates[choice][0];
                    let assigned = self.assign(choice, only);
                    if self.graph.out_of_budget {
                        return Some(Resolution::OutOfBudget);
                    }
                    if let Err(cycle) = assigned {
                        return Some(Resolution::NoCandidate {
                            choice,
                            cycles: vec![(only, cycle)],
                        });
                    }
                    changed = true;
                }
            }
        }
        None
    }

    /// Whether `choice = version` closes a cycle with the edges known now; adds nothing.
    fn trial(&mut self, choice: usize, version: usize) -> Result<(), Vec<(usize, Edge)>> {
        let added = self.assign(choice, version)?;
        self.undo(choice, &added);
        Ok(())
    }

    /// Depth-first over the unassigned choices' candidates (iterative). A level holds the
    /// index of its next candidate and the edges its current assignment added.
    fn search(&mut self) -> Resolution {
        let open: Vec<usize> = (0..self.candidates.len())
            .filter(|&choice| self.assigned[choice].is_none())
            .collect();
        let mut levels: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new())];
        while let Some(depth) = levels.len().checked_sub(1) {
            if depth == open.len() {
                return Resolution::Satisfiable;
            }
            let choice = open[depth];
            if self.assigned[choice].is_some() {
                let added = std::mem::take(&mut levels[depth].1);
                self.undo(choice, &added);
            }
            let Some(&version) = self.candidates[choice].get(levels[depth].0) else {
                levels.pop();
                continue;
            };
            levels[depth].0 += 1;
            let assigned = self.assign(choice, version);
            if self.graph.out_of_budget {
                return Resolution::OutOfBudget;
            }
            if let Ok(added) = assigned {
                levels[depth].1 = added;
                levels.push((0, Vec::new()));
            }
        }
        Resolution::Exhausted
    }

    /// The guarantees of the constraints that touch an unassigned choice.
    fn open_guarantees(&self) -> Vec<Guarantee> {
        let mut guarantees = BTreeSet::new();
        for (choice, touching) in self.touching.iter().enumerate() {
            if self.assigned[choice].is_some() {
                continue;
            }
            for &index in touching {
                if let Why::Session(guarantee, _) = self.constraints.list[index].why {
                    guarantees.insert(guarantee);
                }
            }
        }
        guarantees.into_iter().collect()
    }
}

fn version_name(history: &History, versions: &Versions, version: usize) -> String {
    if version == 0 {
        return "the initial absent value".to_string();
    }
    let writer = &history.operations[versions.writers[version - 1]];
    let value = writer.call.written_value().cloned().unwrap_or(Value::Null);
    format!(
        "{value} (written by process {}, line {})",
        writer.process, writer.invoke_line
    )
}

/// The cycle's steps in words, and the guarantee (with its process) to blame.
fn cycle_steps(
    history: &History,
    versions: &Versions,
    cycle: &[(usize, Edge)],
) -> (Vec<String>, Option<(Guarantee, u64)>) {
    let mut blamed: Option<(Guarantee, u64)> = None;
    let mut steps = Vec::new();
    for &(from, edge) in cycle {
        let from_name = version_name(history, versions, from);
        let to_name = version_name(history, versions, edge.to);
        let line = history.operations[edge.operation].invoke_line;
        let step = match edge.why {
            Why::Initial => format!("{to_name} replaced {from_name}"),
            Why::Cas => format!("the cas that wrote {to_name} read {from_name}"),
            Why::Session(guarantee, process) => {
                if blamed.is_none_or(|(current, _)| guarantee < current) {
                    blamed = Some((guarantee, process));
                }
                let (action, earlier) = match guarantee {
                    Guarantee::MonotonicReads => ("read", "after reading"),
                    Guarantee::ReadYourWrites => ("read", "after writing"),
                    Guarantee::MonotonicWrites => ("wrote", "after writing"),
                    Guarantee::WritesFollowReads => ("wrote", "after reading"),
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
    (steps, blamed)
}

fn cycle_operations(cycle: &[(usize, Edge)]) -> Vec<usize> {
    cycle.iter().map(|(_, edge)| edge.operation).collect()
}

fn violation(
    history: &History,
    key: &KeyHistory,
    blamed: Option<(Guarantee, u64)>,
    mut operations: Vec<usize>,
    explanation: String,
) -> SessionViolation {
    let (guarantee, process) = blamed.unwrap_or((Guarantee::MonotonicWrites, 0));
    operations.sort_unstable();
    operations.dedup();
    SessionViolation {
        key: history.keys[key.key as usize].clone(),
        guarantee,
        process,
        operations,
        explanation: format!(
            "{} is violated for process {process} on key {:?}: {explanation}",
            guarantee.name(),
            history.keys[key.key as usize]
        ),
    }
}

fn describe_cycle(
    history: &History,
    key: &KeyHistory,
    constraints: &Constraints,
    cycle: &[(usize, Edge)],
) -> SessionViolation {
    let (steps, blamed) = cycle_steps(history, &constraints.versions, cycle);
    let explanation = format!(
        "{}. These orderings of the key's versions form a cycle, so no version order \
         satisfies them all.",
        steps.join("; ")
    );
    violation(history, key, blamed, cycle_operations(cycle), explanation)
}

fn read_name(history: &History, operation: usize) -> String {
    let read = &history.operations[operation];
    let value = match &read.call {
        Call::Read(value) | Call::Cas(value, _) => value.clone(),
        Call::Write(_) | Call::Delete => Value::Null,
    };
    format!(
        "process {}'s {} of {value} (line {})",
        read.process,
        read.call.function_name(),
        read.invoke_line
    )
}

fn describe_no_candidate(
    history: &History,
    key: &KeyHistory,
    constraints: &Constraints,
    choice: usize,
    cycles: &[(usize, Vec<(usize, Edge)>)],
) -> SessionViolation {
    let read = constraints.choices[choice].operation;
    // Blame the guarantees that constrain this read itself: the cycles may pass through
    // other sessions' constraints, but it is this read that no version can satisfy.
    let mut blamed: Option<(Guarantee, u64)> = None;
    for constraint in &constraints.list {
        let touches = [constraint.from, constraint.to].contains(&End::Choice(choice));
        if let (true, Why::Session(guarantee, process)) = (touches, constraint.why)
            && blamed.is_none_or(|current| guarantee < current.0)
        {
            blamed = Some((guarantee, process));
        }
    }
    let mut operations = vec![read];
    let mut cases = Vec::new();
    for (version, cycle) in cycles {
        let (steps, cycle_blame) = cycle_steps(history, &constraints.versions, cycle);
        blamed = blamed.or(cycle_blame);
        operations.extend(cycle_operations(cycle));
        let name = version_name(history, &constraints.versions, *version);
        cases.push(format!("if it saw {name}: {}", steps.join("; ")));
    }
    let explanation = format!(
        "{} could have seen any of {} versions, and each closes a cycle in the order of the \
         key's versions: {}.",
        read_name(history, read),
        constraints.choices[choice].candidates.len(),
        cases.join(". ")
    );
    violation(history, key, blamed, operations, explanation)
}

fn describe_exhausted(
    history: &History,
    key: &KeyHistory,
    constraints: &Constraints,
    resolver: &Resolver,
) -> SessionViolation {
    let open: Vec<usize> = (0..constraints.choices.len())
        .filter(|&choice| resolver.assigned[choice].is_none())
        .collect();
    let mut blamed: Option<(Guarantee, u64)> = None;
    for &choice in &open {
        for &index in &resolver.touching[choice] {
            if let Why::Session(guarantee, process) = constraints.list[index].why
                && blamed.is_none_or(|current| guarantee < current.0)
            {
                blamed = Some((guarantee, process));
            }
        }
    }
    let reads: Vec<String> = open
        .iter()
        .map(|&choice| read_name(history, constraints.choices[choice].operation))
        .collect();
    let operations = open
        .iter()
        .map(|&choice| constraints.choices[choice].operation)
        .collect();
    let explanation = format!(
        "these reads returned values written more than once: {}. The checker tried every \
         choice of which version each saw, and each closes a cycle in the order of the \
         key's versions.",
        reads.join(", ")
    );
    violation(history, key, blamed, operations, explanation)
}

fn describe_undecided(
    history: &History,
    key: &KeyHistory,
    constraints: &Constraints,
    resolver: &Resolver,
) -> SessionUndecided {
    let open_count = resolver.assigned.iter().filter(|v| v.is_none()).count();
    let first = (0..constraints.choices.len())
        .find(|&choice| resolver.assigned[choice].is_none())
        .map(|choice| read_name(history, constraints.choices[choice].operation))
        .unwrap_or_default();
    SessionUndecided {
        key: history.keys[key.key as usize].clone(),
        guarantees: resolver.open_guarantees(),
        reason: format!(
            "{open_count} reads returned values written more than once (the first: {first}) \
             and the key has no known sequential order; the search over which version each \
             saw ran out of its budget ({} steps, or the time budget)",
            resolver.graph.budget.steps_max
        ),
    }
}
