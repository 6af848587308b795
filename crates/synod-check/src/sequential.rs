//! Sequential consistency: one order of all operations, of all keys, that respects each
//! process's own order (real time is not respected across processes) and in which every
//! read returns the latest write of its key.
//!
//! Sequential consistency is not compositional, so the whole history is searched as one
//! problem (`interleave`). Two fast paths avoid that search: a key whose own operations
//! cannot be ordered makes the whole history fail (each key is checked on its own, in
//! parallel, and only when it is not linearizable), and a history whose every key is
//! linearizable is sequentially consistent (linearizability is compositional, and a
//! process's order is part of real-time order since it runs one operation at a time).
//!
//! A violation is shrunk before it is explained: operations are relaxed (a read dropped, a
//! write made optional), first a process at a time, then one by one, and a relaxation is
//! kept when the rest still has no order. What remains is a small core, explained as a
//! cycle of "must come before" steps when one can be read off it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::KeyResults;
use crate::history::History;
use crate::interleave::{Budget, Interleaving, Outcome, search};
use crate::linear::Limits;
use crate::problem::{Effect, KeyHistory};
use crate::report::Verdict;
use crate::sequential_core::{explain, minimize};

/// Sequential consistency of one key's own operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySequential {
    Valid,
    Violation(Box<SequentialViolation>),
    Unknown { reason: String },
}

/// Whether a violation lies in one key's operations or only in the keys together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SequentialScope {
    /// The key's own operations cannot be ordered: the whole history cannot be either.
    Key,
    /// Every key can be ordered on its own, but no one order serves them all.
    History,
}

/// Operations no order of which respects every process's order and every read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequentialViolation {
    pub scope: SequentialScope,
    /// The keys of the smallest conflicting set of operations found.
    pub keys: Vec<String>,
    /// The processes whose orders conflict.
    pub processes: Vec<u64>,
    /// Indices into `History::operations` of that set, in real-time order of invokes.
    pub operations: Vec<usize>,
    pub explanation: String,
}

/// How the whole-history verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequentialMethod {
    /// Every key is linearizable, hence the history is sequentially consistent.
    EveryKeyLinearizable,
    /// Every key's own order, merged with every process's order, is one valid order.
    MergedKeyOrders,
    /// The order the system reported (the operations' `index` fields), merged with every
    /// process's order, is one valid order.
    ReportedOrder,
    /// Some key's own operations cannot be ordered.
    KeyViolation,
    /// A search over all keys together.
    Search,
}

/// Sequential consistency of the whole history.
#[derive(Debug, Clone)]
pub struct HistorySequential {
    pub verdict: Verdict,
    pub method: SequentialMethod,
    pub violations: Vec<SequentialViolation>,
    /// Why the whole-history search stopped without a verdict.
    pub unknown_reason: Option<String>,
    /// Configurations the whole-history search expanded (0 when it did not run).
    pub search_nodes: u64,
}

/// Checks one key's own operations. When they have an order, also returns it: the
/// operations that took effect (indices into `History::operations`), in order.
pub(crate) fn check_key(
    history: &History,
    key: &KeyHistory,
    limits: &Limits,
    nodes_max: u64,
) -> (KeySequential, Option<Vec<u32>>) {
    let budget = Budget {
        should_stop: limits.should_stop,
        memory_bytes_max: limits.memory_bytes_max,
        nodes_max,
    };
    let keys = [key];
    let problem = Interleaving::build(history, &keys, &BTreeSet::new());
    match search(&problem, &budget).0 {
        Outcome::Valid { order } => {
            let sources = order
                .iter()
                .map(|&step| problem.steps[step as usize].source)
                .collect();
            (KeySequential::Valid, Some(sources))
        }
        Outcome::Unknown(stop) => {
            let reason = stop.describe("--timeout");
            (KeySequential::Unknown { reason }, None)
        }
        Outcome::Violation { deepest } => {
            let core = minimize(history, &keys, problem, deepest, &budget);
            let violation = explain(history, &core, SequentialScope::Key);
            (KeySequential::Violation(Box::new(violation)), None)
        }
    }
}

/// Checks the whole history, given every key's own results (`results[i]` is `keys[i]`'s).
pub(crate) fn check_history(
    history: &History,
    keys: &[KeyHistory],
    results: &[KeyResults],
    budget: &Budget,
) -> HistorySequential {
    let violations: Vec<SequentialViolation> = results
        .iter()
        .filter_map(|result| match &result.sequential {
            Some(KeySequential::Violation(violation)) => Some((**violation).clone()),
            _ => None,
        })
        .collect();
    let mut decided = HistorySequential {
        verdict: Verdict::Violation,
        method: SequentialMethod::KeyViolation,
        violations,
        unknown_reason: None,
        search_nodes: 0,
    };
    if !decided.violations.is_empty() {
        return decided;
    }
    decided.verdict = Verdict::Valid;
    if results.iter().all(|result| result.is_linearizable) {
        decided.method = SequentialMethod::EveryKeyLinearizable;
        return decided;
    }
    let key_list: Vec<&KeyHistory> = keys.iter().collect();
    let mut problem = Interleaving::build(history, &key_list, &BTreeSet::new());
    let orders: Vec<Option<Vec<u32>>> = results
        .iter()
        .map(|result| result.sequential_order.clone())
        .collect();
    if merge_key_orders(history, &mut problem, &orders) {
        decided.method = SequentialMethod::MergedKeyOrders;
        return decided;
    }
    if let Some(reported) = reported_order(history) {
        // Verified step by step like the merged key orders; when it fails, its ranks guide
        // the search instead.
        if merge_key_orders(history, &mut problem, &[Some(reported)]) {
            decided.method = SequentialMethod::ReportedOrder;
            return decided;
        }
    }
    decided.method = SequentialMethod::Search;
    let (outcome, nodes_count) = search(&problem, budget);
    decided.search_nodes = nodes_count;
    match outcome {
        Outcome::Valid { .. } => {}
        Outcome::Unknown(stop) => {
            decided.verdict = Verdict::Unknown;
            decided.unknown_reason = Some(stop.describe("--sequential-timeout"));
        }
        Outcome::Violation { deepest } => {
            decided.verdict = Verdict::Violation;
            let core = minimize(history, &key_list, problem, deepest, budget);
            let violation = explain(history, &core, SequentialScope::History);
            decided.violations.push(violation);
        }
    }
    decided
}

/// Adds to `order` the optional steps it lacks (info operations, which report no order):
/// walking the order, a step that needs a value its key does not hold gets, just before it,
/// an unplaced optional step that writes that value (the search's lazy placement).
/// Verification decides whether the result is an order.
fn place_optional(problem: &Interleaving, order: Vec<u32>) -> Vec<u32> {
    let mut placed = vec![false; problem.steps.len()];
    for &step in &order {
        placed[step as usize] = true;
    }
    let mut unplaced: Vec<u32> = (0..problem.steps.len())
        .filter(|&index| {
            let step = &problem.steps[index];
            !placed[index] && step.optional && !matches!(step.effect, Effect::Read(_))
        })
        .map(|index| u32::try_from(index).expect("steps fit u32"))
        .collect();
    let mut states: Vec<u32> = problem.keys.iter().map(|key| key.initial).collect();
    let mut placed_order = Vec::with_capacity(order.len() + unplaced.len());
    let apply = |states: &mut [u32], step: &crate::interleave::Step| {
        let state = &mut states[step.key as usize];
        match step.effect {
            Effect::Blind(value) => *state = value,
            Effect::Cas(expected, new) if expected == *state => *state = new,
            Effect::Read(_) | Effect::Cas(_, _) => {}
        }
    };
    for step_index in order {
        let step = &problem.steps[step_index as usize];
        let needed = match step.effect {
            Effect::Read(value) | Effect::Cas(value, _) => Some(value),
            Effect::Blind(_) => None,
        };
        if let Some(value) = needed.filter(|&value| states[step.key as usize] != value) {
            let state = states[step.key as usize];
            let writer = unplaced.iter().position(|&candidate| {
                let candidate = &problem.steps[candidate as usize];
                candidate.key == step.key
                    && match candidate.effect {
                        Effect::Blind(written) => written == value,
                        Effect::Cas(expected, written) => written == value && expected == state,
                        Effect::Read(_) => false,
                    }
            });
            if let Some(position) = writer {
                let writer = unplaced.swap_remove(position);
                apply(&mut states, &problem.steps[writer as usize]);
                placed_order.push(writer);
            }
        }
        apply(&mut states, step);
        placed_order.push(step_index);
    }
    placed_order
}

/// The order the system reported: every ok operation that carries an `index`, by index,
/// ties by invoke. `None` when no operation carries one.
fn reported_order(history: &History) -> Option<Vec<u32>> {
    let mut reported: Vec<(u64, usize, u32)> = history
        .operations
        .iter()
        .enumerate()
        .filter_map(|(source, operation)| {
            let index = operation.index?;
            let source = u32::try_from(source).expect("fewer than 2^32 operations");
            Some((index, operation.invoke_position, source))
        })
        .collect();
    if reported.is_empty() {
        return None;
    }
    reported.sort_unstable();
    Some(reported.into_iter().map(|(.., source)| source).collect())
}

/// Merges the keys' own orders (from their own searches; a linearizable key has none and
/// is ordered by real time) with the processes' orders. Returns true when the merged
/// order is valid for the whole history (checked step by step): then no search is needed.
/// Otherwise ranks the problem's steps by it, so that the search tries that order first.
fn merge_key_orders(
    history: &History,
    problem: &mut Interleaving,
    orders: &[Option<Vec<u32>>],
) -> bool {
    let mut step_of = vec![u32::MAX; history.operations.len()];
    for (index, step) in problem.steps.iter().enumerate() {
        step_of[step.source as usize] = u32::try_from(index).expect("steps fit u32");
    }
    let chains: Vec<Vec<u32>> = orders
        .iter()
        .flatten()
        .map(|order| {
            order
                .iter()
                .map(|&source| step_of[source as usize])
                .filter(|&step| step != u32::MAX)
                .collect()
        })
        .collect();
    let (merged, _) = problem.merge_orders(&chains);
    let mut took_effect = vec![false; problem.steps.len()];
    for &step in chains.iter().flatten() {
        took_effect[step as usize] = true;
    }
    let effective: Vec<u32> = merged
        .iter()
        .copied()
        .filter(|&step| took_effect[step as usize] || !problem.steps[step as usize].optional)
        .collect();
    if problem.verify(&effective) || problem.verify(&place_optional(problem, effective)) {
        return true;
    }
    let mut ranks = vec![0u32; problem.steps.len()];
    for (position, &step) in merged.iter().enumerate() {
        ranks[step as usize] = u32::try_from(position).expect("steps fit u32");
    }
    problem.set_ranks(&ranks);
    false
}
