//! The linearizability search for one key: Wing-Gong-Lowe with just-in-time linearization.
//!
//! The search walks the key's events in real-time order. A configuration says which
//! in-flight operations are already linearized, which info operations are left, and the
//! register's value; operations are linearized only when forced (at their return, Lowe's
//! just-in-time rule), so a configuration names only operations still in flight and fits
//! in a few words. The search is depth-first over (event, configuration), memoized; a
//! valid history is usually walked straight through. Reductions, each argued in
//! docs/consistency.md and checked against brute force by the property tests:
//!
//! - reads are linearized greedily: a pending read whose value is the state is linearized
//!   at once (a read changes nothing, so placing it earlier never hurts);
//! - absorption: a write nothing observes may be placed just before any blind write that
//!   took effect after its invoke; instead of branching, the search remembers which
//!   in-flight writes and reads were in flight at the last visible blind write (`A`, `B`)
//!   and decides at their return (`retro`), so it never has to linearize a write early
//!   just so that some other read can see it;
//! - among in-flight operations with the same effect, the one whose return comes first is
//!   used first, and a recorded operation before an info token;
//! - info operations are tokens counted per effect, first up to a small cap (see `search`).
//!
//! Row layout: `L` (slots linearized), `A` (slots absorbable), `B` (read slots in flight at
//! the last visible blind write), each `slot_words` long; token counts (a byte per kind);
//! then the state.

// A row is several parallel word arrays (L, A, B); indexing them by one word index is
// clearer than zipping three iterators.
#![allow(clippy::needless_range_loop)]

use crate::problem::{Effect, Problem, ProblemEvent};
use crate::table::WordSet;

/// What stops a search before it decides.
pub struct Limits<'a> {
    /// Called often; returning true stops the search with `StopReason::Timeout`.
    pub should_stop: &'a (dyn Fn() -> bool + Sync),
    /// The most bytes the search's tables may hold.
    pub memory_bytes_max: usize,
}

/// Why a search stopped without a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Timeout,
    /// More than 255 info operations of one kind would have to be tracked exactly.
    Tokens,
    Memory {
        bytes: usize,
    },
}

impl StopReason {
    pub fn describe(&self) -> String {
        match self {
            StopReason::Timeout => "the search exceeded its time budget (--timeout)".into(),
            StopReason::Tokens => {
                "more than 255 info operations with the same effect are pending at once".into()
            }
            StopReason::Memory { bytes } => format!(
                "the search reached its memory limit ({} MiB)",
                bytes / (1024 * 1024)
            ),
        }
    }
}

/// The result of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    Valid,
    /// No order reaches past `event` (a return); `states_before` are the values the key
    /// could hold just before it, in the configurations that were still alive.
    Violation {
        event: usize,
        states_before: Vec<u32>,
    },
    Unknown(StopReason),
    /// The node budget of this call is spent; `deepest_event` is the furthest event any
    /// configuration has reached so far. Calling `run` again resumes.
    Paused {
        deepest_event: usize,
    },
}

/// A resumable search for a linearization of one problem.
///
/// Info tokens left are first counted only up to `TOKEN_CAP_FAST` per kind: configurations
/// that differ only in how many of a kind are left beyond the cap are merged, which keeps
/// the search small when info operations pile up. The capped count never exceeds the true
/// one, so that search explores a subset of the true behaviours: its "valid" is exact. Only
/// when it reports a violation after a count was capped is the search repeated with exact
/// counts.
pub struct Search<'p> {
    problem: &'p Problem,
    engine: Engine<'p>,
    exact: bool,
}

impl<'p> Search<'p> {
    pub fn new(problem: &'p Problem) -> Search<'p> {
        Search {
            problem,
            engine: Engine::new(problem, TOKEN_CAP_FAST),
            exact: false,
        }
    }

    /// Runs until a verdict, a limit, or (`Paused`) `node_budget` more nodes.
    pub fn run(&mut self, limits: &Limits, node_budget: Option<u64>) -> SearchOutcome {
        loop {
            let outcome = self.engine.run(limits, node_budget);
            let is_violation = matches!(outcome, SearchOutcome::Violation { .. });
            if !(is_violation && self.engine.saturated) {
                return outcome;
            }
            if self.exact {
                return SearchOutcome::Unknown(StopReason::Tokens);
            }
            self.engine = Engine::new(self.problem, u8::MAX);
            self.exact = true;
        }
    }
}

/// Searches for a linearization of `problem` until a verdict or a limit.
pub fn search(problem: &Problem, limits: &Limits) -> SearchOutcome {
    Search::new(problem).run(limits, None)
}

/// Info tokens counted per kind in the first search.
const TOKEN_CAP_FAST: u8 = 1;

const NO_SLOT: u32 = u32::MAX;
/// DFS nodes between two calls of `should_stop`.
const NODES_PER_LIMIT_CHECK: u64 = 1024;

#[derive(Clone, Copy)]
struct TokenGroup {
    effect: Effect,
}

/// Whether a move is worth exploring.
enum Usefulness {
    No,
    Yes,
    /// Only as the step before a cas.
    IfCasNext,
}

/// Who takes effect in a move: a recorded operation in a slot, or an info token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Actor {
    Slot(u32),
    Token(u32),
}

#[derive(Clone, Copy)]
struct Candidate {
    actor: Actor,
    new_state: u32,
    is_recorded_cas: bool,
    deadline: u32,
}

/// The two kinds of search node: a configuration just before an event, or one in the
/// middle of forcing the operation that returns at that event.
const PHASE_BEFORE: u64 = 0;
const PHASE_FORCING: u64 = 1;
/// Forcing, right after a blind write whose only use is to enable a cas: the next move
/// must be a cas.
const PHASE_CAS_NEXT: u64 = 2;

struct Engine<'p> {
    problem: &'p Problem,
    slot_words: usize,
    width: usize,
    /// Per operation: slot (recorded) or token group (optional).
    operation_slot: Vec<u32>,
    operation_group: Vec<u32>,
    /// Per operation: index of its return event (recorded operations).
    operation_deadline: Vec<u32>,
    groups: Vec<TokenGroup>,
    slot_operation: Vec<u32>,
    reads_by_value: Vec<u64>,
    pending_blind: Vec<u64>,
    pending_cas: Vec<u64>,
    /// Every in-flight read slot.
    pending_reads: Vec<u64>,
    /// The context (pending operations) reflects events `0..context_event`.
    context_event: usize,
    /// Children of the node being expanded, as stack entries, preferred first.
    children: Vec<u64>,
    candidates: Vec<Candidate>,
    /// Info tokens left per group are counted up to this cap (see `search`).
    token_cap: u8,
    /// Whether a count at the cap was not incremented (the search under-approximates).
    saturated: bool,
    nodes_count: u64,
    started: bool,
    /// Stack entries `[event, phase, row..]` still to expand.
    stack: Vec<u64>,
    /// Nodes already expanded (a cache: clearing it only costs time).
    seen: WordSet,
    deepest_event: usize,
    deepest_states: Vec<u32>,
    /// The event whose forced operation is being expanded.
    current_event: usize,
}

impl<'p> Engine<'p> {
    fn new(problem: &'p Problem, token_cap: u8) -> Engine<'p> {
        let operations_count = problem.operations.len();
        let mut operation_slot = vec![NO_SLOT; operations_count];
        let mut operation_deadline = vec![u32::MAX; operations_count];
        let mut free_slots: Vec<u32> = Vec::new();
        let mut slots_count = 0u32;
        let mut by_effect: std::collections::BTreeMap<Effect, Vec<u32>> = Default::default();
        for (index, event) in problem.events.iter().enumerate() {
            let operation = event.operation as usize;
            if problem.operations[operation].optional {
                by_effect
                    .entry(problem.operations[operation].effect)
                    .or_default()
                    .push(event.operation);
            } else if event.is_return {
                operation_deadline[operation] = u32::try_from(index).expect("fits u32");
                free_slots.push(operation_slot[operation]);
            } else {
                let slot = free_slots.pop().unwrap_or_else(|| {
                    slots_count += 1;
                    slots_count - 1
                });
                operation_slot[operation] = slot;
            }
        }
        let mut operation_group = vec![NO_SLOT; operations_count];
        let mut groups = Vec::new();
        for (effect, members) in by_effect {
            let group = u32::try_from(groups.len()).expect("fits u32");
            for member in members {
                operation_group[member as usize] = group;
            }
            groups.push(TokenGroup { effect });
        }
        let slot_words = (slots_count as usize).div_ceil(64);
        let token_words = groups.len().div_ceil(8);
        let width = 3 * slot_words + token_words + 1;
        Engine {
            problem,
            slot_words,
            width,
            operation_slot,
            operation_group,
            operation_deadline,
            groups,
            slot_operation: vec![NO_SLOT; slots_count as usize],
            reads_by_value: vec![0; problem.values.len() * slot_words],
            pending_blind: vec![0; slot_words],
            pending_cas: vec![0; slot_words],
            pending_reads: vec![0; slot_words],
            context_event: 0,
            children: Vec::new(),
            candidates: Vec::new(),
            token_cap,
            saturated: false,
            nodes_count: 0,
            started: false,
            stack: Vec::new(),
            seen: WordSet::new(width + 2),
            deepest_event: 0,
            deepest_states: Vec::new(),
            current_event: 0,
        }
    }

    fn state_index(&self) -> usize {
        self.width - 1
    }

    /// Depth-first over search nodes, each (event, phase, configuration); a stack entry is
    /// `[event, phase, row..]`. A node is expanded once (the `seen` cache). A valid history
    /// is usually walked straight through; for a violation every node dies, and the
    /// deepest event any configuration reached is where no order can go on (where a
    /// breadth-first frontier would become empty).
    fn run(&mut self, limits: &Limits, node_budget: Option<u64>) -> SearchOutcome {
        let entry_width = self.width + 2;
        if !self.started {
            self.started = true;
            for &state in self.problem.initial_states.iter().rev() {
                let mut entry = vec![0u64; entry_width];
                entry[1 + self.width] = u64::from(state);
                self.stack.extend_from_slice(&entry);
            }
        }
        let nodes_max = node_budget.map_or(u64::MAX, |budget| self.nodes_count + budget);
        let mut entry = vec![0u64; entry_width];
        while !self.stack.is_empty() {
            if self.nodes_count >= nodes_max {
                return SearchOutcome::Paused {
                    deepest_event: self.deepest_event,
                };
            }
            let start = self.stack.len() - entry_width;
            entry.copy_from_slice(&self.stack[start..]);
            self.stack.truncate(start);
            let (event, phase) = (entry[0] as usize, entry[1]);
            if event == self.problem.events.len() {
                return SearchOutcome::Valid;
            }
            if !self.seen.insert(&entry) {
                continue;
            }
            if let Some(outcome) = self.check_limits(limits) {
                return outcome;
            }
            let row = &entry[2..];
            if phase == PHASE_BEFORE {
                let state = row[self.state_index()] as u32;
                if event > self.deepest_event {
                    (self.deepest_event, self.deepest_states) = (event, vec![state]);
                } else if event == self.deepest_event && !self.deepest_states.contains(&state) {
                    self.deepest_states.push(state);
                }
            }
            self.seek(event);
            self.children.clear();
            if phase == PHASE_BEFORE {
                self.before_event(event, row);
            } else {
                self.forcing(event, row, phase == PHASE_CAS_NEXT);
            }
            for child in self.children.chunks_exact(entry_width).rev() {
                self.stack.extend_from_slice(child);
            }
        }
        let mut states = self.deepest_states.clone();
        states.sort_unstable();
        SearchOutcome::Violation {
            event: self.deepest_event,
            states_before: states,
        }
    }

    fn check_limits(&mut self, limits: &Limits) -> Option<SearchOutcome> {
        let (seen, stack_words) = (&mut self.seen, self.stack.capacity());
        self.nodes_count += 1;
        // Checked on the first node too, so that a spent budget stops even a tiny search.
        if self.nodes_count % NODES_PER_LIMIT_CHECK != 1 {
            return None;
        }
        if (limits.should_stop)() {
            return Some(SearchOutcome::Unknown(StopReason::Timeout));
        }
        if seen.bytes() > limits.memory_bytes_max / 2 {
            // The cache only saves work: dropping it keeps every verdict exact.
            seen.clear();
        }
        let bytes = seen.bytes() + stack_words * 8;
        (bytes > limits.memory_bytes_max)
            .then_some(SearchOutcome::Unknown(StopReason::Memory { bytes }))
    }

    fn push_child(&mut self, event: usize, phase: u64, row: &[u64]) {
        self.children.push(event as u64);
        self.children.push(phase);
        self.children.extend_from_slice(row);
    }

    /// The children of a configuration just before `event`.
    fn before_event(&mut self, event: usize, row: &[u64]) {
        let ProblemEvent {
            operation,
            is_return,
        } = self.problem.events[event];
        let operation = operation as usize;
        let mut row = row.to_vec();
        if self.problem.operations[operation].optional {
            self.add_token(&mut row, self.operation_group[operation] as usize);
            self.push_child(event + 1, PHASE_BEFORE, &row);
            return;
        }
        let slot = self.operation_slot[operation] as usize;
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if !is_return {
            if let Effect::Read(value) = self.problem.operations[operation].effect
                && row[self.state_index()] == u64::from(value)
            {
                row[word] |= bit;
            }
            self.push_child(event + 1, PHASE_BEFORE, &row);
        } else if row[word] & bit != 0 {
            row[word] &= !bit;
            row[self.slot_words + word] &= !bit;
            row[2 * self.slot_words + word] &= !bit;
            self.push_child(event + 1, PHASE_BEFORE, &row);
        } else {
            self.push_child(event, PHASE_FORCING, &row);
        }
    }

    /// The children of a configuration in which the operation returning at `event` is not
    /// yet linearized: ways to linearize it now, then other in-flight operations first.
    fn forcing(&mut self, event: usize, row: &[u64], cas_only: bool) {
        let operation = self.problem.events[event].operation as usize;
        let slot = self.operation_slot[operation] as usize;
        self.current_event = event;
        let forced_is_cas = matches!(self.problem.operations[operation].effect, Effect::Cas(..));
        if !cas_only || forced_is_cas {
            self.emit_finishes(row, operation, slot);
        }
        self.expand(row, operation, slot, cas_only);
    }

    /// Brings the pending-operation context to just before `event`, applying or undoing
    /// events' invokes and returns (the context depends only on the event index).
    fn seek(&mut self, event: usize) {
        while self.context_event < event {
            self.apply_context(self.context_event, true);
            self.context_event += 1;
        }
        while self.context_event > event {
            self.context_event -= 1;
            self.apply_context(self.context_event, false);
        }
    }

    /// Applies (`forward`) or undoes an event's effect on the context.
    fn apply_context(&mut self, event: usize, forward: bool) {
        let ProblemEvent {
            operation,
            is_return,
        } = self.problem.events[event];
        let operation = operation as usize;
        if self.problem.operations[operation].optional {
            return;
        }
        let slot = self.operation_slot[operation] as usize;
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        let pending = forward != is_return;
        self.slot_operation[slot] = if pending {
            u32::try_from(operation).expect("fits u32")
        } else {
            NO_SLOT
        };
        let mask = match self.problem.operations[operation].effect {
            Effect::Read(value) => {
                &mut self.reads_by_value[value as usize * self.slot_words + word]
            }
            Effect::Blind(_) => &mut self.pending_blind[word],
            Effect::Cas(_, _) => &mut self.pending_cas[word],
        };
        if pending {
            *mask |= bit;
        } else {
            *mask &= !bit;
        }
        if matches!(self.problem.operations[operation].effect, Effect::Read(_)) {
            if pending {
                self.pending_reads[word] |= bit;
            } else {
                self.pending_reads[word] &= !bit;
            }
        }
    }

    /// Records a child just after the event, with the returning operation's slot cleared
    /// for its next user.
    fn finish(&mut self, mut row: Vec<u64>, slot: usize) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        row[word] &= !bit;
        row[self.slot_words + word] &= !bit;
        row[2 * self.slot_words + word] &= !bit;
        self.push_child(self.current_event + 1, PHASE_BEFORE, &row);
    }

    fn emit_finishes(&mut self, row: &[u64], operation: usize, slot: usize) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        let state = row[self.state_index()] as u32;
        match self.problem.operations[operation].effect {
            Effect::Blind(value) => {
                if row[self.slot_words + word] & bit != 0 {
                    // Placed just before the last visible blind write, together with the
                    // reads of its value that were in flight there.
                    let mut absorbed = row.to_vec();
                    absorbed[word] |= bit;
                    let reads =
                        &self.reads_by_value[value as usize * self.slot_words..][..self.slot_words];
                    for word_index in 0..self.slot_words {
                        let retro = 2 * self.slot_words + word_index;
                        absorbed[word_index] |= reads[word_index] & row[retro];
                        absorbed[self.slot_words + word_index] &= !absorbed[word_index];
                        absorbed[retro] &= !absorbed[word_index];
                    }
                    self.finish(absorbed, slot);
                }
                let mut visible = row.to_vec();
                self.apply(&mut visible, Actor::Slot(slot as u32), value, true);
                self.finish(visible, slot);
            }
            Effect::Cas(expected, new) => {
                if state == expected {
                    let mut applied = row.to_vec();
                    self.apply(&mut applied, Actor::Slot(slot as u32), new, false);
                    self.finish(applied, slot);
                }
            }
            Effect::Read(value) => {
                debug_assert_ne!(state, value, "greedy reads: a matching read is linearized");
                if let Some(retro) = self.retro(row, slot, value) {
                    self.finish(retro, slot);
                }
            }
        }
    }

    fn expand(&mut self, row: &[u64], operation: usize, slot: usize, cas_only: bool) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        self.collect_candidates(row, slot);
        let candidates = std::mem::take(&mut self.candidates);
        let forced_effect = self.problem.operations[operation].effect;
        let mut child = vec![0u64; self.width];
        for candidate in &candidates {
            let is_cas = candidate.is_recorded_cas
                || matches!(candidate.actor, Actor::Token(group)
                    if matches!(self.groups[group as usize].effect, Effect::Cas(..)));
            if cas_only && !is_cas {
                continue;
            }
            child.copy_from_slice(row);
            let is_blind = !candidate.is_recorded_cas
                && match candidate.actor {
                    Actor::Slot(candidate_slot) => matches!(
                        self.problem.operations
                            [self.slot_operation[candidate_slot as usize] as usize]
                            .effect,
                        Effect::Blind(_)
                    ),
                    Actor::Token(group) => {
                        matches!(self.groups[group as usize].effect, Effect::Blind(_))
                    }
                };
            self.apply(&mut child, candidate.actor, candidate.new_state, is_blind);
            if child[word] & bit != 0 {
                // The forced read fired.
                self.finish(child.clone(), slot);
                continue;
            }
            let is_token = matches!(candidate.actor, Actor::Token(_));
            let usefulness = if candidate.is_recorded_cas {
                Usefulness::Yes
            } else {
                self.is_useful(row, &child, forced_effect, slot, is_token)
            };
            let event = self.current_event;
            match usefulness {
                Usefulness::Yes => self.push_child(event, PHASE_FORCING, &child),
                Usefulness::IfCasNext => self.push_child(event, PHASE_CAS_NEXT, &child),
                Usefulness::No => {}
            }
        }
        self.candidates = candidates;
    }

    /// Satisfies the forced read (slot `slot`, value `value`) retroactively: if it was in
    /// flight at the last visible blind write B, and so was an unlinearized blind write W
    /// of `value`, then "W, the read" placed just before B is invisible to every other
    /// operation (B overwrites it). Every other read of `value` in flight at B is placed
    /// there too. This replaces exploring, at every forced return, the writes that could be
    /// linearized early only to be observed by some other read.
    fn retro(&self, row: &[u64], slot: usize, value: u32) -> Option<Vec<u64>> {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        let retro_reads = 2 * self.slot_words;
        if row[retro_reads + word] & bit == 0 {
            return None;
        }
        let mut best: Option<(u32, usize)> = None;
        for word_index in 0..self.slot_words {
            let mut bits = row[self.slot_words + word_index] & !row[word_index];
            while bits != 0 {
                let writer = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let operation = self.slot_operation[writer] as usize;
                if self.problem.operations[operation].effect != Effect::Blind(value) {
                    continue;
                }
                let deadline = self.operation_deadline[operation];
                if best.is_none_or(|(earliest, _)| deadline < earliest) {
                    best = Some((deadline, writer));
                }
            }
        }
        let (_, writer) = best?;
        let mut result = row.to_vec();
        result[writer / 64] |= 1 << (writer % 64);
        let reads = &self.reads_by_value[value as usize * self.slot_words..][..self.slot_words];
        for word_index in 0..self.slot_words {
            result[word_index] |= reads[word_index] & row[retro_reads + word_index];
            result[self.slot_words + word_index] &= !result[word_index];
            result[retro_reads + word_index] &= !result[word_index];
        }
        Some(result)
    }

    /// Whether a move (not a recorded cas, which is always explored) can lead somewhere
    /// the other choices cannot: it reaches the forced operation's requirement, a cas can
    /// follow it, or it is an info token whose value some in-flight read observes (reads
    /// observing a recorded write are satisfied retroactively instead, see `retro`).
    fn is_useful(
        &self,
        before: &[u64],
        after: &[u64],
        forced: Effect,
        forced_slot: usize,
        is_token: bool,
    ) -> Usefulness {
        let state = after[self.state_index()] as u32;
        match forced {
            Effect::Read(value) | Effect::Cas(value, _) if value == state => {
                return Usefulness::Yes;
            }
            _ => {}
        }
        // A blind write of the value the key already holds changes nothing visible but
        // lets in-flight reads be satisfied just before it (see `retro`); that matters
        // only before an operation that is not a blind write (the forced read or cas).
        let forced_observes = matches!(forced, Effect::Read(_) | Effect::Cas(..));
        if forced_observes && state == before[self.state_index()] as u32 && !is_token {
            return Usefulness::Yes;
        }
        if is_token {
            let reads = &self.reads_by_value[state as usize * self.slot_words..][..self.slot_words];
            if reads
                .iter()
                .zip(before)
                .any(|(read, linear)| read & !linear != 0)
            {
                return Usefulness::Yes;
            }
        }
        if self.cas_can_follow(after, state, forced_slot) {
            Usefulness::IfCasNext
        } else {
            Usefulness::No
        }
    }

    /// Whether an in-flight cas (recorded, not the forced one, or an info token) expects
    /// `state`.
    fn cas_can_follow(&self, after: &[u64], state: u32, forced_slot: usize) -> bool {
        for (word_index, &pending) in self.pending_cas.iter().enumerate() {
            let mut bits = pending & !after[word_index];
            while bits != 0 {
                let slot = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if slot == forced_slot {
                    continue;
                }
                let operation = self.slot_operation[slot] as usize;
                if let Effect::Cas(expected, _) = self.problem.operations[operation].effect
                    && expected == state
                {
                    return true;
                }
            }
        }
        (0..self.groups.len()).any(|group| {
            matches!(self.groups[group].effect, Effect::Cas(expected, _) if expected == state)
                && self.token_available(after, group).is_some()
        })
    }

    /// Fills `candidates` with the moves from `row`: per written value, the blind write
    /// with the earliest return (or an info token); per new value, the applicable cas with
    /// the earliest return (or an info token). The forced operation is not a candidate.
    fn collect_candidates(&mut self, row: &[u64], forced_slot: usize) {
        self.candidates.clear();
        let state = row[self.state_index()] as u32;
        for word_index in 0..self.slot_words {
            let pending = self.pending_blind[word_index] | self.pending_cas[word_index];
            let mut bits = pending & !row[word_index];
            while bits != 0 {
                let slot = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if slot == forced_slot {
                    continue;
                }
                let operation = self.slot_operation[slot] as usize;
                let deadline = self.operation_deadline[operation];
                let (new_state, is_recorded_cas) = match self.problem.operations[operation].effect {
                    Effect::Blind(value) => (value, false),
                    Effect::Cas(expected, new) if expected == state => (new, true),
                    Effect::Cas(_, _) | Effect::Read(_) => continue,
                };
                self.offer(Candidate {
                    actor: Actor::Slot(slot as u32),
                    new_state,
                    is_recorded_cas,
                    deadline,
                });
            }
        }
        for group in 0..self.groups.len() {
            let (new_state, is_cas) = match self.groups[group].effect {
                Effect::Blind(value) => (value, false),
                Effect::Cas(expected, new) if expected == state => (new, true),
                Effect::Cas(_, _) | Effect::Read(_) => continue,
            };
            let taken = self
                .candidates
                .iter()
                .any(|other| other.new_state == new_state && other.is_recorded_cas == is_cas);
            if !taken && self.token_available(row, group).is_some() {
                self.candidates.push(Candidate {
                    actor: Actor::Token(u32::try_from(group).expect("fits u32")),
                    new_state,
                    is_recorded_cas: false,
                    deadline: u32::MAX,
                });
            }
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        let same = self.candidates.iter_mut().find(|other| {
            other.new_state == candidate.new_state
                && other.is_recorded_cas == candidate.is_recorded_cas
        });
        match same {
            Some(other) if other.deadline > candidate.deadline => *other = candidate,
            Some(_) => {}
            None => self.candidates.push(candidate),
        }
    }

    fn token_index(&self, group: usize) -> (usize, u32) {
        (3 * self.slot_words + group / 8, 8 * (group % 8) as u32)
    }

    /// How many tokens of `group` are left in `row` (capped at `token_cap`).
    fn token_count(&self, row: &[u64], group: usize) -> u8 {
        let (word, shift) = self.token_index(group);
        (row[word] >> shift) as u8
    }

    fn token_available(&self, row: &[u64], group: usize) -> Option<()> {
        (self.token_count(row, group) > 0).then_some(())
    }

    /// An info operation of `group` was invoked: one more token, up to the cap.
    fn add_token(&mut self, row: &mut [u64], group: usize) {
        let (word, shift) = self.token_index(group);
        if (row[word] >> shift) as u8 >= self.token_cap {
            self.saturated = true;
        } else {
            row[word] += 1 << shift;
        }
    }

    /// Applies a move: marks the actor used, sets the state, fires the reads of the new
    /// state, and (for a blind write) makes every in-flight write absorbable.
    fn apply(&self, row: &mut [u64], actor: Actor, new_state: u32, is_blind: bool) {
        match actor {
            Actor::Slot(slot) => row[slot as usize / 64] |= 1 << (slot % 64),
            Actor::Token(group) => {
                let (word, shift) = self.token_index(group as usize);
                assert!((row[word] >> shift) as u8 > 0, "a token is available");
                row[word] -= 1 << shift;
            }
        }
        let state_index = self.state_index();
        row[state_index] = u64::from(new_state);
        let reads = &self.reads_by_value[new_state as usize * self.slot_words..];
        for word in 0..self.slot_words {
            row[word] |= reads[word];
            let (absorb, retro) = (self.slot_words + word, 2 * self.slot_words + word);
            if is_blind {
                row[absorb] = self.pending_blind[word];
                row[retro] = self.pending_reads[word];
            }
            row[absorb] &= !row[word];
            row[retro] &= !row[word];
        }
    }
}
