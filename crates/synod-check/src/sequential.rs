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

use std::collections::{BTreeMap, BTreeSet};

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
    let mut problem = Interleaving::build(history, &keys, &BTreeSet::new());
    let sources_of = |problem: &Interleaving, order: Vec<u32>| -> Vec<u32> {
        order
            .iter()
            .map(|&step| problem.steps[step as usize].source)
            .collect()
    };
    // The order the system reported, when it did, verified step by step; when it fails, it
    // guides the search.
    let key_sources = key.operations.iter().map(|operation| operation.source);
    if let Some(reported) = reported_order(history, key_sources)
        && let Some(order) = merge_key_orders(history, &mut problem, &[Some(reported)])
    {
        return (KeySequential::Valid, Some(sources_of(&problem, order)));
    }
    match search(&problem, &budget).0 {
        Outcome::Valid { order } => (KeySequential::Valid, Some(sources_of(&problem, order))),
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
    if merge_key_orders(history, &mut problem, &orders).is_some() {
        decided.method = SequentialMethod::MergedKeyOrders;
        return decided;
    }
    let every_operation = 0..u32::try_from(history.operations.len()).expect("fits u32");
    if let Some(reported) = reported_order(history, every_operation) {
        // Verified step by step like the merged key orders; when it fails, its ranks guide
        // the search instead.
        if merge_key_orders(history, &mut problem, &[Some(reported)]).is_some() {
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
/// the shortest chain (at most `OPTIONAL_CHAIN_MAX` steps) of unplaced optional writes that
/// takes the key there: a write of the value, or a cas to it after the writes that give
/// the cas its expected value (the search's lazy placement). Only steps whose process has
/// reached them qualify (an info write placed before its own process's earlier steps would
/// break that process's order). Verification decides whether the result is an order.
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
    let mut next = vec![0u32; problem.sequences.len()];
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
        let key = step.key;
        if let Some(value) = needed.filter(|&value| states[key as usize] != value) {
            let from = states[key as usize];
            let mut chain = optional_chain(problem, &unplaced, &next, key, from, value);
            let writers: Vec<u32> = chain.iter().map(|&position| unplaced[position]).collect();
            chain.sort_unstable_by(|a, b| b.cmp(a));
            for position in chain {
                unplaced.swap_remove(position);
            }
            for writer in writers {
                apply(&mut states, &problem.steps[writer as usize]);
                problem.advance(&mut next, writer);
                placed_order.push(writer);
            }
        }
        apply(&mut states, step);
        problem.advance(&mut next, step_index);
        placed_order.push(step_index);
    }
    placed_order
}

/// The longest chain of optional writes `place_optional` places before one step.
const OPTIONAL_CHAIN_MAX: usize = 3;

/// The shortest chain of `unplaced` optional writes (positions in `unplaced`, in the order
/// to apply them) that takes `key` from value `from` to value `to`, each of a process that
/// has reached it; empty when there is none within `OPTIONAL_CHAIN_MAX` steps. A
/// breadth-first search over the key's values, each visited once, so no write is used twice.
fn optional_chain(
    problem: &Interleaving,
    unplaced: &[u32],
    next: &[u32],
    key: u32,
    from: u32,
    to: u32,
) -> Vec<usize> {
    let writes: Vec<(usize, Effect)> = unplaced
        .iter()
        .enumerate()
        .filter(|&(_, &step)| {
            problem.steps[step as usize].key == key && problem.may_follow(next, step)
        })
        .map(|(position, &step)| (position, problem.steps[step as usize].effect))
        .collect();
    // value -> (the value before it, the write that took the key there)
    let mut reached: BTreeMap<u32, (u32, usize)> = BTreeMap::new();
    let mut frontier = vec![from];
    for _ in 0..OPTIONAL_CHAIN_MAX {
        let mut further = Vec::new();
        for &state in &frontier {
            for &(position, effect) in &writes {
                let value = match effect {
                    Effect::Blind(value) => value,
                    Effect::Cas(expected, value) if expected == state => value,
                    Effect::Cas(_, _) | Effect::Read(_) => continue,
                };
                if value != from && !reached.contains_key(&value) {
                    reached.insert(value, (state, position));
                    further.push(value);
                }
            }
        }
        if reached.contains_key(&to) {
            break;
        }
        frontier = further;
    }
    let mut chain = Vec::new();
    let mut value = to;
    while let Some(&(before, position)) = reached.get(&value) {
        chain.push(position);
        value = before;
        if value == from {
            break;
        }
    }
    chain.reverse();
    chain
}

/// The order the system reported among `sources` (indices into `History::operations`):
/// every ok operation that carries an `index`, by index, ties by invoke. `None` when none
/// carries one.
fn reported_order(history: &History, sources: impl Iterator<Item = u32>) -> Option<Vec<u32>> {
    let mut reported: Vec<(u64, usize, u32)> = sources
        .filter_map(|source| {
            let operation = &history.operations[source as usize];
            Some((operation.index?, operation.invoke_position, source))
        })
        .collect();
    if reported.is_empty() {
        return None;
    }
    reported.sort_unstable();
    Some(reported.into_iter().map(|(.., source)| source).collect())
}

/// Merges the keys' own orders (from their own searches; a linearizable key has none and
/// is ordered by real time) with the processes' orders. Returns the merged order (the steps
/// that take effect) when it is valid for the whole problem (checked step by step): then
/// no search is needed. Otherwise ranks the problem's steps by it, so that the search
/// tries that order first.
fn merge_key_orders(
    history: &History,
    problem: &mut Interleaving,
    orders: &[Option<Vec<u32>>],
) -> Option<Vec<u32>> {
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
    if problem.verify(&effective) {
        return Some(effective);
    }
    let placed = place_optional(problem, effective);
    if problem.verify(&placed) {
        return Some(placed);
    }
    let mut ranks = vec![0u32; problem.steps.len()];
    for (position, &step) in merged.iter().enumerate() {
        ranks[step as usize] = u32::try_from(position).expect("steps fit u32");
    }
    problem.set_ranks(&ranks);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::split_by_key;
    use crate::{ParseOptions, parse_history};

    #[test]
    fn an_info_write_is_placed_only_where_its_process_has_reached() {
        // Checks the lazy placement of info operations into a reported order: p1's read of
        // x as absent needs one of the two info deletes first; p0's comes first among the
        // steps but p0's read of y (index 9) is not placed yet, so p2's delete is taken
        // and the reported order alone proves the history (once it took p0's and failed).
        let text = [
            (0, "invoke", "read", "y", "null", 0, ""),
            (0, "ok", "read", "y", "null", 1, ",\"index\":9"),
            (0, "invoke", "delete", "x", "null", 2, ""),
            (0, "info", "delete", "x", "null", 3, ""),
            (2, "invoke", "delete", "x", "null", 4, ""),
            (2, "info", "delete", "x", "null", 5, ""),
            (1, "invoke", "write", "x", "1", 0, ""),
            (1, "ok", "write", "x", "1", 1, ",\"index\":2"),
            (1, "invoke", "read", "x", "null", 10, ""),
            (1, "ok", "read", "x", "null", 11, ",\"index\":4"),
        ]
        .map(|(process, kind, f, key, value, time, index)| {
            format!(
                "{{\"process\":{process},\"type\":\"{kind}\",\"f\":\"{f}\",\"key\":\"{key}\",\
                 \"value\":{value},\"time\":{time}{index}}}\n"
            )
        })
        .concat();
        let history = parse_history(&text, ParseOptions::default()).unwrap();
        let keys = split_by_key(&history);
        let key_list: Vec<&KeyHistory> = keys.iter().collect();
        let mut problem = Interleaving::build(&history, &key_list, &BTreeSet::new());
        let every_operation = 0..history.operations.len() as u32;
        let reported = reported_order(&history, every_operation).unwrap();
        let order = merge_key_orders(&history, &mut problem, &[Some(reported)]);
        assert!(order.is_some());
    }

    #[test]
    fn a_cas_of_unknown_outcome_is_placed_after_the_write_it_expects() {
        // Checks chained placement: x is written 1 (index 2), then read as 5 (index 6); 5
        // comes only from an info cas from absent to 5, which holds only after an info
        // delete. Both are placed before the read, delete first, and the key's own check
        // returns that order without a search.
        let text = [
            (0, "invoke", "write", "1", 0, ""),
            (0, "ok", "write", "1", 1, ",\"index\":2"),
            (1, "invoke", "cas", "[null,5]", 2, ""),
            (1, "info", "cas", "[null,5]", 3, ""),
            (2, "invoke", "delete", "null", 4, ""),
            (2, "info", "delete", "null", 5, ""),
            (3, "invoke", "read", "null", 6, ""),
            (3, "ok", "read", "5", 7, ",\"index\":6"),
            (4, "invoke", "read", "null", 8, ""),
            (4, "ok", "read", "1", 9, ",\"index\":3"),
        ]
        .map(|(process, kind, f, value, time, index)| {
            format!(
                "{{\"process\":{process},\"type\":\"{kind}\",\"f\":\"{f}\",\"key\":\"x\",\
                 \"value\":{value},\"time\":{time}{index}}}\n"
            )
        })
        .concat();
        let history = parse_history(&text, ParseOptions::default()).unwrap();
        let keys = split_by_key(&history);
        let never = || false;
        let limits = Limits {
            should_stop: &never,
            memory_bytes_max: 1 << 20,
        };
        // No search budget at all: only the reported order can decide.
        let (verdict, order) = check_key(&history, &keys[0], &limits, 0);
        assert!(matches!(verdict, KeySequential::Valid), "{verdict:?}");
        let functions: Vec<&str> = order
            .unwrap()
            .iter()
            .map(|&source| history.operations[source as usize].call.function_name())
            .collect();
        assert_eq!(functions, ["write", "read", "delete", "cas", "read"]);
    }
}
