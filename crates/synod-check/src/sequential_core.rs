//! Shrinking a sequential-consistency violation to a small core and explaining it.
//!
//! Relaxing an operation (dropping a read, letting a write or cas take effect or not) only
//! removes constraints, so a relaxed problem that still has no order proves the original
//! has none. The shrinker relaxes groups of operations, halving the group size as in
//! delta debugging: first whole processes, then single operations, and keeps every
//! relaxation under which the search still finds no order. Its searches have their own
//! budget; when it runs out, the core found so far is reported (it is still a proof).
//!
//! The core is explained as a cycle of "must come before" steps when one can be read off
//! it: a process's own order, a read that returned a value only one operation wrote (it
//! follows that write), and a read of a key's initial value that no operation writes back
//! (it precedes every write of the key). Otherwise the core is listed per process, with
//! where the order that got furthest was stuck.

use std::collections::BTreeSet;

use crate::history::{Call, History, Value};
use crate::interleave::{Budget, Interleaving, Outcome, search};
use crate::problem::{Effect, KeyHistory};
use crate::sequential::{SequentialScope, SequentialViolation};

/// The most configurations one shrinking search may expand, and all of them together.
const CORE_TRY_NODES_MAX: u64 = 1 << 20;
const CORE_NODES_MAX: u64 = 1 << 24;
/// The most operations shrunk one by one (beyond it, only whole processes are relaxed).
const CORE_OPERATIONS_TRIED_MAX: usize = 256;

/// A set of operations that has no order, with the configuration that got furthest.
pub struct Core {
    pub problem: Interleaving,
    pub deepest: Vec<u64>,
    /// Whether shrinking stopped at its budget before trying every relaxation.
    pub cut_short: bool,
}

struct Shrink<'a> {
    history: &'a History,
    keys: &'a [&'a KeyHistory],
    budget: &'a Budget<'a>,
    relaxed: BTreeSet<u32>,
    core: Core,
    nodes_spent: u64,
}

/// Shrinks `problem` (which has no order; `deepest` is from its search) to a small core.
pub fn minimize(
    history: &History,
    keys: &[&KeyHistory],
    problem: Interleaving,
    deepest: Vec<u64>,
    budget: &Budget,
) -> Core {
    let mut shrink = Shrink {
        history,
        keys,
        budget,
        relaxed: BTreeSet::new(),
        core: Core {
            problem,
            deepest,
            cut_short: false,
        },
        nodes_spent: 0,
    };
    let by_process: Vec<Vec<u32>> = (0..shrink.core.problem.sequences.len())
        .map(|process| required_sources(&shrink.core.problem, Some(process)))
        .filter(|sources| !sources.is_empty())
        .collect();
    shrink.relax_groups(by_process);
    let single: Vec<Vec<u32>> = required_sources(&shrink.core.problem, None)
        .into_iter()
        .map(|source| vec![source])
        .collect();
    if single.len() <= CORE_OPERATIONS_TRIED_MAX {
        shrink.relax_groups(single);
    } else {
        shrink.core.cut_short = true;
    }
    shrink.core
}

/// The sources of the required steps of one process (or of all).
fn required_sources(problem: &Interleaving, process: Option<usize>) -> Vec<u32> {
    let processes = match process {
        Some(process) => process..process + 1,
        None => 0..problem.sequences.len(),
    };
    processes
        .flat_map(|process| problem.sequences[process].iter())
        .map(|&step| &problem.steps[step as usize])
        .filter(|step| !step.optional)
        .map(|step| step.source)
        .collect()
}

impl Shrink<'_> {
    /// Tries to relax the groups in chunks, halving the chunk size down to one group.
    fn relax_groups(&mut self, mut groups: Vec<Vec<u32>>) {
        let mut size = groups.len().div_ceil(2).max(1);
        while !groups.is_empty() {
            let mut kept = Vec::new();
            for chunk in groups.chunks(size) {
                if !self.try_relax(chunk) {
                    kept.extend_from_slice(chunk);
                }
            }
            groups = kept;
            if size == 1 {
                break;
            }
            size = size.div_ceil(2);
        }
    }

    fn try_relax(&mut self, chunk: &[Vec<u32>]) -> bool {
        if self.nodes_spent >= CORE_NODES_MAX || (self.budget.should_stop)() {
            self.core.cut_short = true;
            return false;
        }
        let mut relaxed = self.relaxed.clone();
        relaxed.extend(chunk.iter().flatten().copied());
        let candidate = Interleaving::build(self.history, self.keys, &relaxed);
        let budget = Budget {
            should_stop: self.budget.should_stop,
            memory_bytes_max: self.budget.memory_bytes_max,
            nodes_max: self.budget.nodes_max.min(CORE_TRY_NODES_MAX),
        };
        let (outcome, nodes_count) = search(&candidate, &budget);
        self.nodes_spent += nodes_count;
        match outcome {
            Outcome::Violation { deepest } => {
                self.relaxed = relaxed;
                self.core.problem = candidate;
                self.core.deepest = deepest;
                true
            }
            Outcome::Unknown(_) => {
                self.core.cut_short = true;
                false
            }
            Outcome::Valid { .. } => false,
        }
    }
}

/// Why one step must come before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    ProgramOrder,
    /// The later step saw a value only the earlier one wrote.
    ReadsFrom,
    /// The earlier step saw its key's initial value, which nothing writes back.
    ReadsInitial,
    /// The earlier step saw the value `source` wrote, and the later one writes the key
    /// after `source`: it overwrites that value, so it comes after the step that saw it.
    Overwrites {
        source: u32,
    },
    /// The earlier step writes the key before `read`, which saw the later step's value:
    /// it must come before that value was written.
    OverwrittenBefore {
        read: u32,
    },
}

/// The most steps whose derived "overwrites" edges are worked out (cubic in the steps).
const DERIVED_EDGES_STEPS_MAX: usize = 64;

/// Explains a core: which processes' orders conflict, on which keys, and why.
pub fn explain(history: &History, core: &Core, scope: SequentialScope) -> SequentialViolation {
    let problem = &core.problem;
    let effective = effective_steps(problem);
    let mut operations: Vec<usize> = (0..problem.steps.len())
        .filter(|&index| effective[index])
        .map(|index| problem.steps[index].source as usize)
        .collect();
    operations.sort_by_key(|&index| history.operations[index].invoke_position);
    let processes: BTreeSet<u64> = operations
        .iter()
        .map(|&index| history.operations[index].process)
        .collect();
    let keys: BTreeSet<String> = operations
        .iter()
        .map(|&index| history.keys[history.operations[index].key as usize].clone())
        .collect();
    let (processes, keys): (Vec<u64>, Vec<String>) =
        (processes.into_iter().collect(), keys.into_iter().collect());
    let mut text = match scope {
        SequentialScope::Key => format!(
            "the operations on key {:?} cannot be put in one order that keeps each process's \
             own order and gives every read the latest write (even ignoring real time).",
            keys.first().map_or("", String::as_str)
        ),
        SequentialScope::History => format!(
            "each key's operations can be ordered on their own, but no single order of all \
             of them keeps each process's own order and gives every read the latest write: \
             the orders of {} conflict on keys {}.",
            list_processes(&processes),
            list_keys(&keys)
        ),
    };
    match find_cycle(problem, &effective) {
        Some(cycle) => {
            let steps: Vec<String> = cycle
                .iter()
                .map(|&(from, to, why)| describe_edge(history, problem, from, to, why))
                .collect();
            text.push_str(&format!(
                " The smallest conflict found: {}. Each of these must come before the next, \
                 and the last before the first: a cycle, so no such order exists.",
                steps.join("; ")
            ));
        }
        None => text.push_str(&describe_listing(history, core, &effective)),
    }
    if core.cut_short {
        text.push_str(" (Shrinking the conflict stopped at its budget; a smaller one may exist.)");
    }
    SequentialViolation {
        scope,
        keys,
        processes,
        operations,
        explanation: text,
    }
}

fn list_processes(processes: &[u64]) -> String {
    let names: Vec<String> = processes.iter().map(u64::to_string).collect();
    match names.len() {
        1 => format!("process {}", names[0]),
        _ => format!("processes {}", names.join(", ")),
    }
}

fn list_keys(keys: &[String]) -> String {
    let names: Vec<String> = keys.iter().map(|key| format!("{key:?}")).collect();
    names.join(", ")
}

/// "process 0's write of 1 to "x" (line 1)".
fn operation_name(history: &History, source: u32) -> String {
    let operation = &history.operations[source as usize];
    let key = &history.keys[operation.key as usize];
    let action = match &operation.call {
        Call::Read(value) => format!("read of {value} from {key:?}"),
        Call::Write(value) => format!("write of {value} to {key:?}"),
        Call::Cas(expected, new) => format!("cas {expected} -> {new} on {key:?}"),
        Call::Delete => format!("delete of {key:?}"),
    };
    format!(
        "process {}'s {action} (line {})",
        operation.process, operation.invoke_line
    )
}

fn describe_edge(
    history: &History,
    problem: &Interleaving,
    from: u32,
    to: u32,
    why: Why,
) -> String {
    let (from_step, to_step) = (&problem.steps[from as usize], &problem.steps[to as usize]);
    let (from_name, to_name) = (
        operation_name(history, from_step.source),
        operation_name(history, to_step.source),
    );
    let value_name = |step: &crate::interleave::Step| {
        let key = &problem.keys[step.key as usize];
        match step.effect {
            Effect::Read(value) | Effect::Cas(value, _) => key.values[value as usize].to_string(),
            Effect::Blind(_) => Value::Null.to_string(),
        }
    };
    match why {
        Why::ProgramOrder => format!("{from_name} comes before its {}", strip_owner(&to_name)),
        Why::ReadsFrom => format!(
            "{from_name} comes before {to_name}, which saw {}, a value only that operation \
             wrote",
            value_name(to_step)
        ),
        Why::Overwrites { source } => format!(
            "{from_name} saw the value {} wrote, and {to_name} writes the key after that, so \
             it comes after {}",
            operation_name(history, problem.steps[source as usize].source),
            strip_owner(&from_name)
        ),
        Why::OverwrittenBefore { read } => format!(
            "{from_name} writes the key before {}, which saw the value {to_name} wrote, so it \
             comes before that write",
            operation_name(history, problem.steps[read as usize].source)
        ),
        Why::ReadsInitial => format!(
            "{from_name} saw the key's initial {}, which no operation writes back, so it comes \
             before {to_name}",
            value_name(from_step)
        ),
    }
}

/// "process 0's read of 1 ..." -> "read of 1 ...": the owner is already named.
fn strip_owner(name: &str) -> &str {
    name.split_once("'s ").map_or(name, |(_, rest)| rest)
}

/// The core per process, and where the order that got furthest was stuck.
fn describe_listing(history: &History, core: &Core, effective: &[bool]) -> String {
    let problem = &core.problem;
    let mut per_process = Vec::new();
    let mut stuck = Vec::new();
    for (process, sequence) in problem.sequences.iter().enumerate() {
        let names: Vec<String> = sequence
            .iter()
            .filter(|&&step| effective[step as usize])
            .map(|&step| {
                let step = &problem.steps[step as usize];
                let name = strip_owner(&operation_name(history, step.source)).to_string();
                if step.optional {
                    format!("{name} (unknown outcome; it must have taken effect)")
                } else {
                    name
                }
            })
            .collect();
        if !names.is_empty() {
            let id = problem.process_ids[process];
            per_process.push(format!("process {id}: {}", names.join(", then ")));
        }
        if let Some(head) = problem.head(&core.deepest, process) {
            let step = &problem.steps[head as usize];
            let key = &problem.keys[step.key as usize];
            let state = problem.state(&core.deepest, step.key as usize);
            let held = if state == crate::problem::JUNK {
                "a value no read returns".to_string()
            } else {
                key.values[state as usize].to_string()
            };
            if !step.optional && matches!(step.effect, Effect::Read(_) | Effect::Cas(_, _)) {
                let name = operation_name(history, step.source);
                stuck.push(format!("{name} waits while the key holds {held}"));
            }
        }
    }
    let effective_count = effective.iter().filter(|&&is| is).count();
    let optional_count = (0..problem.steps.len())
        .filter(|&index| problem.steps[index].optional && !effective[index])
        .count();
    let mut text = format!(
        " The smallest conflict found is these {effective_count} operations, which an \
         exhaustive search could not order: {}.",
        per_process.join("; ")
    );
    if optional_count > 0 {
        text.push_str(&format!(
            " {optional_count} more writes of unknown outcome may or may not have taken effect."
        ));
    }
    if !stuck.is_empty() {
        text.push_str(&format!(
            " In the order that got furthest, {}.",
            stuck.join("; ")
        ));
    }
    text
}

/// The steps that certainly take effect: the required ones, and (repeatedly) an optional
/// write that is the only source of a value such a step needs.
fn effective_steps(problem: &Interleaving) -> Vec<bool> {
    let mut effective: Vec<bool> = problem.steps.iter().map(|step| !step.optional).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for index in 0..problem.steps.len() {
            if !effective[index] {
                continue;
            }
            if let Source::Step(writer) = source_of(problem, index)
                && !effective[writer as usize]
            {
                effective[writer as usize] = true;
                changed = true;
            }
        }
    }
    effective
}

/// Where the value a step needs comes from, when that is certain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The step needs no value, or several steps could supply it.
    Unknown,
    /// The key's initial value, which no step writes.
    Initial,
    /// The only step that writes the value (the initial value is another).
    Step(u32),
}

fn source_of(problem: &Interleaving, index: usize) -> Source {
    let step = &problem.steps[index];
    let observed = match step.effect {
        Effect::Read(value) | Effect::Cas(value, _) => value,
        Effect::Blind(_) => return Source::Unknown,
    };
    let mut writers = (0..problem.steps.len()).filter(|&other| {
        let writes = match problem.steps[other].effect {
            Effect::Blind(value) | Effect::Cas(_, value) => value == observed,
            Effect::Read(_) => false,
        };
        other != index && problem.steps[other].key == step.key && writes
    });
    let initial = problem.keys[step.key as usize].initial == observed;
    match (initial, writers.next(), writers.next()) {
        (true, None, _) => Source::Initial,
        (false, Some(writer), None) => Source::Step(u32::try_from(writer).expect("fits u32")),
        _ => Source::Unknown,
    }
}

/// A cycle of "must come before" edges among the steps that take effect, if one can be
/// read off.
fn find_cycle(problem: &Interleaving, effective: &[bool]) -> Option<Vec<(u32, u32, Why)>> {
    let edges = before_edges(problem, effective);
    let count = problem.steps.len();
    // 0 = unvisited, 1 = on the path, 2 = done.
    let mut color = vec![0u8; count];
    let mut path: Vec<(u32, usize)> = Vec::new();
    for root in 0..count {
        if color[root] != 0 {
            continue;
        }
        color[root] = 1;
        path.push((u32::try_from(root).expect("steps fit u32"), 0));
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let Some(&(to, why)) = edges[node as usize].get(*next) else {
                color[node as usize] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            match color[to as usize] {
                0 => {
                    color[to as usize] = 1;
                    path.push((to, 0));
                }
                1 => {
                    let start = path.iter().position(|&(on, _)| on == to)?;
                    let mut cycle: Vec<(u32, u32, Why)> = path[start..]
                        .windows(2)
                        .map(|pair| {
                            let (from, taken) = pair[0];
                            let (to, why) = edges[from as usize][taken - 1];
                            (from, to, why)
                        })
                        .collect();
                    cycle.push((node, to, why));
                    return Some(cycle);
                }
                _ => {}
            }
        }
    }
    None
}

/// The "must come before" edges that hold in every order of the steps that take effect:
/// each process's order, reads-from and reads-initial, and (for small cores) the edges they
/// imply about overwrites, to a fixed point.
fn before_edges(problem: &Interleaving, effective: &[bool]) -> Vec<Vec<(u32, Why)>> {
    let count = problem.steps.len();
    let mut edges: Vec<Vec<(u32, Why)>> = vec![Vec::new(); count];
    let id = |index: usize| u32::try_from(index).expect("steps fit u32");
    for sequence in &problem.sequences {
        let kept: Vec<u32> = sequence
            .iter()
            .copied()
            .filter(|&step| effective[step as usize])
            .collect();
        for pair in kept.windows(2) {
            edges[pair[0] as usize].push((pair[1], Why::ProgramOrder));
        }
    }
    let writes_on = |key: u32, except: usize| -> Vec<usize> {
        (0..count)
            .filter(|&other| other != except && effective[other])
            .filter(|&other| problem.steps[other].key == key)
            .filter(|&other| !matches!(problem.steps[other].effect, Effect::Read(_)))
            .collect()
    };
    let mut reads_from: Vec<(usize, usize)> = Vec::new();
    for index in (0..count).filter(|&index| effective[index]) {
        match source_of(problem, index) {
            Source::Step(writer) => {
                edges[writer as usize].push((id(index), Why::ReadsFrom));
                reads_from.push((index, writer as usize));
            }
            Source::Initial => {
                for other in writes_on(problem.steps[index].key, index) {
                    edges[index].push((id(other), Why::ReadsInitial));
                }
            }
            Source::Unknown => {}
        }
    }
    if effective.iter().filter(|&&is| is).count() <= DERIVED_EDGES_STEPS_MAX {
        derive_overwrites(problem, &mut edges, &reads_from, &writes_on);
    }
    edges
}

/// For a step r that saw the value only w wrote, every other write x of the key comes
/// before w or after r: if x is known to follow w, it follows r; if it is known to precede
/// r, it precedes w. Repeated until nothing changes.
fn derive_overwrites(
    problem: &Interleaving,
    edges: &mut [Vec<(u32, Why)>],
    reads_from: &[(usize, usize)],
    writes_on: &dyn Fn(u32, usize) -> Vec<usize>,
) {
    let id = |index: usize| u32::try_from(index).expect("steps fit u32");
    let mut changed = true;
    while changed {
        changed = false;
        for &(read, writer) in reads_from {
            for other in writes_on(problem.steps[read].key, writer) {
                if other == read {
                    continue;
                }
                let has = |edges: &[Vec<(u32, Why)>], from: usize, to: usize| {
                    edges[from].iter().any(|&(next, _)| next as usize == to)
                };
                if !has(edges, read, other) && reaches(edges, writer, other) {
                    let why = Why::Overwrites { source: id(writer) };
                    edges[read].push((id(other), why));
                    changed = true;
                }
                if !has(edges, other, writer) && reaches(edges, other, read) {
                    let why = Why::OverwrittenBefore { read: id(read) };
                    edges[other].push((id(writer), why));
                    changed = true;
                }
            }
        }
    }
}

/// Whether a path of edges leads from `from` to `to`.
fn reaches(edges: &[Vec<(u32, Why)>], from: usize, to: usize) -> bool {
    let mut seen = vec![false; edges.len()];
    let mut stack = vec![from];
    while let Some(node) = stack.pop() {
        if node == to {
            return true;
        }
        for &(next, _) in &edges[node] {
            if !std::mem::replace(&mut seen[next as usize], true) {
                stack.push(next as usize);
            }
        }
    }
    false
}
