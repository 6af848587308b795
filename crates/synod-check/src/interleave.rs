//! The search for one order of a set of keys' operations that respects every process's
//! program order (not real time) and every key's register semantics: sequential
//! consistency, over one key or the whole map.
//!
//! Unlike linearizability, sequential consistency is not compositional: every key may have
//! an order of its own while no single order serves all keys at once (process 0 writes x
//! then reads y as absent, process 1 writes y then reads x as absent). So the search runs
//! over all the keys together. A configuration is how far each process has got and the
//! value of every key, bit-packed into a few words (`Interleaving::width`); the search is
//! depth-first over configurations, memoized on them (a configuration reached twice is
//! expanded once), so its size is bounded by the product of the processes' lengths, the
//! classic dynamic programme for a fixed number of processes.
//!
//! Reads at a process's head whose value the key holds are placed at once (a read changes
//! nothing, so placing it earlier never breaks an order that exists). The other moves
//! (writes, deletes, cas, and skipping an optional operation) are tried in an order that
//! often finds a valid order with little backtracking: first a move that destroys no value
//! another process's next step on the key reads, then by rank (the invoke's real-time
//! position, or a merged order the caller sets). The order only affects speed, never the
//! verdict.
//!
//! Values are interned per key as in `Problem` (values nothing observes are one value) and
//! unknown-outcome operations may take effect or not: an info operation is its process's
//! last, so leaving it unplaced is the same as it never happening.
//!
//! A process's last step, when it is a write or delete (or an optional cas), is placed
//! lazily: only just before a blocked step that needs its value, or (a required write or
//! delete) at the very end. This keeps the verdict exact: in any valid order, move such a
//! step to just before the first step that reads its value (nothing on its key lies in
//! between, or that step would read it first, and nothing of its process follows it), or,
//! when nothing reads it, to the end (or out, when optional). Without it, every pending
//! info write doubles the configurations: applied already, or not yet.
//!
//! A move is dead, and not explored, when it overwrites a value that an unplaced required step
//! still needs and that no unplaced step can write again.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::History;
use crate::problem::{Effect, KeyHistory, Problem};
use crate::table::WordSet;

/// A bit field of a packed configuration.
#[derive(Debug, Clone, Copy)]
struct Field {
    word: u32,
    shift: u32,
    bits: u32,
}

impl Field {
    fn get(self, row: &[u64]) -> u32 {
        if self.bits == 0 {
            return 0;
        }
        ((row[self.word as usize] >> self.shift) & mask(self.bits)) as u32
    }

    fn set(self, row: &mut [u64], value: u32) {
        assert!(
            u64::from(value) <= mask(self.bits),
            "a value outgrew its field"
        );
        if self.bits == 0 {
            return;
        }
        let word = &mut row[self.word as usize];
        *word = (*word & !(mask(self.bits) << self.shift)) | (u64::from(value) << self.shift);
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The bits that hold the numbers `0..count`.
fn bits_for(count: usize) -> u32 {
    if count <= 1 {
        0
    } else {
        usize::BITS - (count - 1).leading_zeros()
    }
}

/// Allocates fields word by word; a field never straddles two words.
#[derive(Default)]
struct Layout {
    word: u32,
    bit: u32,
}

impl Layout {
    fn field(&mut self, bits: u32) -> Field {
        assert!(bits <= 32, "a field holds at most 32 bits");
        if self.bit + bits > 64 {
            self.word += 1;
            self.bit = 0;
        }
        let field = Field {
            word: self.word,
            shift: self.bit,
            bits,
        };
        self.bit += bits;
        field
    }

    fn width(&self) -> usize {
        self.word as usize + 1
    }
}

/// One operation of an interleaving problem.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Index into `Interleaving::keys`.
    pub key: u32,
    pub effect: Effect,
    /// May take effect or not (info, or relaxed while looking for a small core).
    pub optional: bool,
    /// Index into `History::operations`.
    pub source: u32,
    /// The invoke's position in real-time order: the tie-breaker of the move order.
    rank: u32,
}

/// One key of an interleaving problem.
#[derive(Debug, Clone)]
pub struct InterleavingKey {
    /// The interned values (`values[JUNK]` is a placeholder), as in `Problem`.
    pub values: Vec<crate::history::Value>,
    pub initial: u32,
    field: Field,
    /// Processes with a step on this key.
    processes: Vec<u32>,
}

/// Keys and processes ready for the search.
#[derive(Debug, Clone)]
pub struct Interleaving {
    pub steps: Vec<Step>,
    /// Per process, its steps (indices into `steps`) in program order.
    pub sequences: Vec<Vec<u32>>,
    /// Per process, its id in the history.
    pub process_ids: Vec<u64>,
    pub keys: Vec<InterleavingKey>,
    progress: Vec<Field>,
    /// Per process, the position from which what is left may stay unplaced: after its last
    /// required step, not counting a lazy last step (placed at the end).
    required_end: Vec<u32>,
    /// Per step: placed only when it unblocks another process (see the module comment).
    lazy: Vec<bool>,
    /// Per process, for each key it touches (sorted by key), its positions on that key.
    key_positions: Vec<Vec<(u32, Vec<u32>)>>,
    /// Per key and value: where steps need it (reads, cas) and supply it (writes).
    sites: Vec<Vec<ValueSites>>,
    /// Per step: its process and its position in that process's sequence.
    owners: Vec<(u32, u32)>,
    width: usize,
}

/// Where one value of one key is needed and supplied: per process, sorted positions.
#[derive(Debug, Clone, Default)]
struct ValueSites {
    needs: Vec<(u32, Vec<u32>)>,
    supplies: Vec<(u32, Vec<u32>)>,
}

impl ValueSites {
    fn add(list: &mut Vec<(u32, Vec<u32>)>, process: u32, position: u32) {
        match list.last_mut() {
            Some((last, positions)) if *last == process => positions.push(position),
            _ => list.push((process, vec![position])),
        }
    }
}

impl Interleaving {
    /// The operations of `keys`, with the operations in `relaxed` (indices into
    /// `History::operations`) made optional (a relaxed read is dropped): each relaxation
    /// removes constraints, so a relaxed problem with no order proves the original has none.
    pub fn build(history: &History, keys: &[&KeyHistory], relaxed: &BTreeSet<u32>) -> Self {
        let mut steps = Vec::new();
        let mut interleaving_keys = Vec::new();
        let mut layout = Layout::default();
        for key in keys.iter().filter(|key| !key.events.is_empty()) {
            let last = key.events.len() - 1;
            let problem = Problem::relaxed_window(history, key, 0, last, relaxed);
            if problem.operations.is_empty() {
                continue;
            }
            let slot = u32::try_from(interleaving_keys.len()).expect("keys fit u32");
            for operation in &problem.operations {
                let source = &history.operations[operation.source as usize];
                steps.push(Step {
                    key: slot,
                    effect: operation.effect,
                    optional: operation.optional,
                    source: operation.source,
                    rank: u32::try_from(source.invoke_position).expect("events fit u32"),
                });
            }
            interleaving_keys.push(InterleavingKey {
                field: layout.field(bits_for(problem.values.len())),
                initial: problem.initial_states[0],
                values: problem.values,
                processes: Vec::new(),
            });
        }
        let mut by_process: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (index, step) in steps.iter().enumerate() {
            let process = history.operations[step.source as usize].process;
            let index = u32::try_from(index).expect("steps fit u32");
            by_process.entry(process).or_default().push(index);
        }
        let mut interleaving = Interleaving {
            steps,
            sequences: Vec::new(),
            process_ids: Vec::new(),
            keys: interleaving_keys,
            progress: Vec::new(),
            required_end: Vec::new(),
            key_positions: Vec::new(),
            sites: Vec::new(),
            owners: Vec::new(),
            lazy: Vec::new(),
            width: 0,
        };
        interleaving.owners = vec![(0, 0); interleaving.steps.len()];
        interleaving.lazy = vec![false; interleaving.steps.len()];
        interleaving.sites = interleaving
            .keys
            .iter()
            .map(|key| vec![ValueSites::default(); key.values.len()])
            .collect();
        for (process, mut sequence) in by_process {
            sequence.sort_by_key(|&step| interleaving.steps[step as usize].rank);
            interleaving.add_process(process, sequence, &mut layout);
        }
        interleaving.width = layout.width();
        interleaving
    }

    fn add_process(&mut self, process: u64, sequence: Vec<u32>, layout: &mut Layout) {
        let index = u32::try_from(self.sequences.len()).expect("processes fit u32");
        let mut positions: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut required_end = 0;
        for (position, &step_index) in sequence.iter().enumerate() {
            let step = &self.steps[step_index as usize];
            let position = u32::try_from(position).expect("positions fit u32");
            self.owners[step_index as usize] = (index, position);
            positions.entry(step.key).or_default().push(position);
            if !step.optional {
                required_end = position + 1;
            }
            // An optional step needs nothing (it may never happen) but may supply a value.
            let sites = &mut self.sites[step.key as usize];
            let (needed, supplied) = match step.effect {
                Effect::Read(value) => (Some(value), None),
                Effect::Blind(value) => (None, Some(value)),
                Effect::Cas(expected, new) => (Some(expected), Some(new)),
            };
            if let Some(value) = needed.filter(|_| !step.optional) {
                ValueSites::add(&mut sites[value as usize].needs, index, position);
            }
            if let Some(value) = supplied {
                ValueSites::add(&mut sites[value as usize].supplies, index, position);
            }
        }
        for &key in positions.keys() {
            self.keys[key as usize].processes.push(index);
        }
        if let Some(&last) = sequence.last() {
            let step = &self.steps[last as usize];
            let lazy = match step.effect {
                Effect::Blind(_) => true,
                Effect::Cas(_, _) => step.optional,
                Effect::Read(_) => false,
            };
            self.lazy[last as usize] = lazy;
            let last_position = u32::try_from(sequence.len() - 1).expect("positions fit u32");
            if lazy && required_end == last_position + 1 {
                required_end = sequence[..sequence.len() - 1]
                    .iter()
                    .rposition(|&step| !self.steps[step as usize].optional)
                    .map_or(0, |position| position as u32 + 1);
            }
        }
        self.progress
            .push(layout.field(bits_for(sequence.len() + 1)));
        self.required_end.push(required_end);
        self.key_positions.push(positions.into_iter().collect());
        self.process_ids.push(process);
        self.sequences.push(sequence);
    }

    /// The position of `process` in `row`: how many of its steps are placed.
    pub fn position(&self, row: &[u64], process: usize) -> usize {
        self.progress[process].get(row) as usize
    }

    /// The value (interned) `key` holds in `row`.
    pub fn state(&self, row: &[u64], key: usize) -> u32 {
        self.keys[key].field.get(row)
    }

    /// The step `process` would place next, if any.
    pub fn head(&self, row: &[u64], process: usize) -> Option<u32> {
        self.sequences[process]
            .get(self.position(row, process))
            .copied()
    }

    fn initial_row(&self) -> Vec<u64> {
        let mut row = vec![0u64; self.width];
        for key in &self.keys {
            key.field.set(&mut row, key.initial);
        }
        row
    }

    /// Places every read at `process`'s head whose value its key holds.
    fn close_process(&self, row: &mut [u64], process: usize) {
        let field = self.progress[process];
        let mut position = field.get(row) as usize;
        while let Some(&step) = self.sequences[process].get(position) {
            let step = &self.steps[step as usize];
            match step.effect {
                Effect::Read(value) if value == self.state(row, step.key as usize) => {
                    position += 1;
                }
                _ => break,
            }
        }
        field.set(row, u32::try_from(position).expect("positions fit u32"));
    }

    fn close_all(&self, row: &mut [u64]) {
        for process in 0..self.sequences.len() {
            self.close_process(row, process);
        }
    }

    /// After `process` moved on `key`: only its own head and reads of `key` can have become
    /// placeable (placing a read changes no value, so nothing cascades).
    fn close_after(&self, row: &mut [u64], process: usize, key: usize) {
        self.close_process(row, process);
        for &other in &self.keys[key].processes {
            self.close_process(row, other as usize);
        }
    }

    fn is_complete(&self, row: &[u64]) -> bool {
        (0..self.sequences.len())
            .all(|process| self.position(row, process) >= self.required_end[process] as usize)
    }

    fn placed_count(&self, row: &[u64]) -> usize {
        (0..self.sequences.len())
            .map(|process| self.position(row, process))
            .sum()
    }

    /// The next step of `process` on `key` at or after its position.
    fn next_on_key(&self, row: &[u64], process: usize, key: u32) -> Option<u32> {
        let positions = &self.key_positions[process];
        let entry = positions.binary_search_by_key(&key, |(on, _)| *on).ok()?;
        let list = &positions[entry].1;
        let position = self.progress[process].get(row);
        let next = list.partition_point(|&at| at < position);
        list.get(next)
            .map(|&at| self.sequences[process][at as usize])
    }

    /// Appends the moves from `row`, most promising first.
    fn moves(&self, row: &[u64], moves: &mut Vec<Move>) {
        let start = moves.len();
        // (key, value, process) of every head that reads or cas-expects a value, sorted.
        let mut head_needs: Vec<(u32, u32, u32)> = Vec::new();
        for process in 0..self.sequences.len() {
            if let Some(step) = self.head(row, process) {
                let step = &self.steps[step as usize];
                if let Effect::Read(value) | Effect::Cas(value, _) = step.effect {
                    let process = u32::try_from(process).expect("processes fit u32");
                    head_needs.push((step.key, value, process));
                }
            }
        }
        head_needs.sort_unstable();
        // Per key, computed when first needed: how many processes' next step on the key
        // needs the value it holds.
        let mut needing_counts: Vec<Option<u32>> = vec![None; self.keys.len()];
        for process in 0..self.sequences.len() {
            let Some(step_index) = self.head(row, process) else {
                continue;
            };
            let step = &self.steps[step_index as usize];
            let key = step.key as usize;
            let state = self.state(row, key);
            let new_state = match step.effect {
                Effect::Blind(value) => Some(value),
                Effect::Cas(expected, new) if expected == state => Some(new),
                Effect::Cas(_, _) | Effect::Read(_) => None,
            };
            let process_u32 = u32::try_from(process).expect("processes fit u32");
            if let Some(new_state) = new_state {
                let from = head_needs
                    .partition_point(|&(on, value, _)| (on, value) < (step.key, new_state));
                let unblocks = head_needs[from..]
                    .iter()
                    .take_while(|&&(on, value, _)| (on, value) == (step.key, new_state))
                    .any(|&(_, _, other)| other != process_u32);
                let destroys = new_state != state && {
                    let count = *needing_counts[key]
                        .get_or_insert_with(|| self.needing_count(row, key, state));
                    let own = self
                        .next_on_key(row, process, step.key)
                        .is_some_and(|next| self.steps[next as usize].effect.needs(state));
                    count > u32::from(own)
                };
                if unblocks || !self.lazy[step_index as usize] {
                    moves.push(Move {
                        process: process_u32,
                        skip: false,
                        priority: (destroys, step.rank),
                    });
                }
            }
            let has_later = self.position(row, process) + 1 < self.sequences[process].len();
            if step.optional && has_later {
                moves.push(Move {
                    process: process_u32,
                    skip: true,
                    priority: (true, u32::MAX),
                });
            }
        }
        moves[start..].sort_by_key(|candidate| (candidate.priority, candidate.process));
    }

    /// How many processes' next step on `key` needs `value` (only processes with a step that
    /// needs it at all are looked at).
    fn needing_count(&self, row: &[u64], key: usize, value: u32) -> u32 {
        let key_u32 = u32::try_from(key).expect("keys fit u32");
        let needing =
            self.sites[key][value as usize]
                .needs
                .iter()
                .filter(|(process, positions)| {
                    let position = self.progress[*process as usize].get(row);
                    let first = positions.partition_point(|&at| at < position);
                    positions.get(first).is_some_and(|&at| {
                        let step = self.sequences[*process as usize][at as usize];
                        self.next_on_key(row, *process as usize, key_u32) == Some(step)
                    })
                });
        u32::try_from(needing.count()).expect("processes fit u32")
    }

    /// Applies `chosen` and places the reads it makes placeable. Returns false when the
    /// result is dead: a value of the key that some unplaced step still needs is gone and
    /// no unplaced step can write it again (values are only ever consumed, so no order
    /// from there can complete).
    fn apply(&self, row: &mut [u64], chosen: Move) -> bool {
        let process = chosen.process as usize;
        let step_index = self.head(row, process).expect("a move has a step");
        let step = self.steps[step_index as usize];
        let key = step.key as usize;
        let old_state = self.state(row, key);
        let field = self.progress[process];
        field.set(row, field.get(row) + 1);
        if chosen.skip {
            // An optional write left out supplies its value no more.
            if let Effect::Blind(value) | Effect::Cas(_, value) = step.effect
                && value != old_state
                && self.is_lost(row, key, value)
            {
                return false;
            }
        } else {
            let new_state = match step.effect {
                Effect::Blind(value) | Effect::Cas(_, value) => value,
                Effect::Read(_) => unreachable!("reads are placed by closing, never moved"),
            };
            self.keys[key].field.set(row, new_state);
            if new_state != old_state && self.is_lost(row, key, old_state) {
                return false;
            }
        }
        self.close_after(row, process, key);
        true
    }

    /// Appends the steps that took effect from `parent` to `child`: the move's step, then
    /// the reads closing placed (in any order: closing changes no value).
    fn transition(&self, parent: &[u64], child: &[u64], taken: Option<Move>, order: &mut Vec<u32>) {
        let moved = taken.map(|taken| taken.process as usize);
        if let Some(taken) = taken
            && !taken.skip
        {
            let process = taken.process as usize;
            order.push(self.sequences[process][self.position(parent, process)]);
        }
        for process in 0..self.sequences.len() {
            let from = self.position(parent, process) + usize::from(moved == Some(process));
            let to = self.position(child, process);
            order.extend_from_slice(&self.sequences[process][from.min(to)..to]);
        }
    }

    /// Whether `order` (steps that take effect) respects every process's order, leaves out
    /// only optional steps, and gives every read and cas the value it needs.
    pub fn verify(&self, order: &[u32]) -> bool {
        let mut states: Vec<u32> = self.keys.iter().map(|key| key.initial).collect();
        let mut next = vec![0u32; self.sequences.len()];
        for &step_index in order {
            if !self.may_follow(&next, step_index) {
                return false;
            }
            self.advance(&mut next, step_index);
            let step = &self.steps[step_index as usize];
            let state = &mut states[step.key as usize];
            match step.effect {
                Effect::Read(value) if value == *state => {}
                Effect::Blind(value) => *state = value,
                Effect::Cas(expected, new) if expected == *state => *state = new,
                Effect::Read(_) | Effect::Cas(_, _) => return false,
            }
        }
        (0..self.sequences.len()).all(|process| {
            self.sequences[process][next[process] as usize..]
                .iter()
                .all(|&step| self.steps[step as usize].optional)
        })
    }

    /// Whether `step` may come next after a prefix that placed, per process, the steps
    /// before `next[process]`: it is not behind that point and skips only optional steps.
    pub fn may_follow(&self, next: &[u32], step: u32) -> bool {
        let (process, position) = self.owners[step as usize];
        let from = next[process as usize];
        position >= from
            && self.sequences[process as usize][from as usize..position as usize]
                .iter()
                .all(|&skip| self.steps[skip as usize].optional)
    }

    /// Records `step` as placed in the per-process progress `next` (see `may_follow`).
    pub fn advance(&self, next: &mut [u32], step: u32) {
        let (process, position) = self.owners[step as usize];
        let reached = &mut next[process as usize];
        *reached = (*reached).max(position + 1);
    }

    /// Steps the search tries earlier when their `ranks` are smaller (by default, the
    /// invoke's real-time position).
    pub fn set_ranks(&mut self, ranks: &[u32]) {
        assert_eq!(ranks.len(), self.steps.len(), "one rank per step");
        for (step, &rank) in self.steps.iter_mut().zip(ranks) {
            step.rank = rank;
        }
    }

    /// Merges per-key orders (each a list of steps of one key, as a key's own search
    /// found it) with every process's order into one order of all steps: a topological
    /// order of both, by smallest rank first. Where they form a cycle, the process head
    /// with the smallest rank goes next regardless. Returns the order and how many cycles
    /// were broken (none: the order keeps every key's order).
    pub fn merge_orders(&self, key_orders: &[Vec<u32>]) -> (Vec<u32>, usize) {
        let count = self.steps.len();
        let mut successors: Vec<Vec<u32>> = vec![Vec::new(); count];
        let mut predecessors_count = vec![0u32; count];
        let chains = self.sequences.iter().chain(key_orders);
        for chain in chains {
            for pair in chain.windows(2) {
                successors[pair[0] as usize].push(pair[1]);
                predecessors_count[pair[1] as usize] += 1;
            }
        }
        let mut ready: BTreeSet<(u32, u32)> = (0..count)
            .filter(|&step| predecessors_count[step] == 0)
            .map(|step| (self.steps[step].rank, step as u32))
            .collect();
        let mut done = vec![false; count];
        let mut order = Vec::with_capacity(count);
        let mut broken_count = 0;
        while order.len() < count {
            let step = match ready.pop_first() {
                Some((_, step)) => step,
                None => {
                    broken_count += 1;
                    self.smallest_head(&done)
                }
            };
            if done[step as usize] {
                continue;
            }
            done[step as usize] = true;
            order.push(step);
            for &next in &successors[step as usize] {
                let left = &mut predecessors_count[next as usize];
                *left = left.saturating_sub(1);
                if *left == 0 && !done[next as usize] {
                    ready.insert((self.steps[next as usize].rank, next));
                }
            }
        }
        (order, broken_count)
    }

    /// The first not-done step of each process with the smallest rank.
    fn smallest_head(&self, done: &[bool]) -> u32 {
        self.sequences
            .iter()
            .filter_map(|sequence| sequence.iter().copied().find(|&step| !done[step as usize]))
            .min_by_key(|&step| (self.steps[step as usize].rank, step))
            .expect("a step is left while the order is short")
    }

    /// Whether `value` (not what `key` holds) is needed by an unplaced step but supplied by
    /// none.
    fn is_lost(&self, row: &[u64], key: usize, value: u32) -> bool {
        let sites = &self.sites[key][value as usize];
        let any_unplaced = |list: &[(u32, Vec<u32>)]| {
            list.iter().any(|(process, positions)| {
                let position = self.progress[*process as usize].get(row);
                positions.last().is_some_and(|&last| last >= position)
            })
        };
        any_unplaced(&sites.needs) && !any_unplaced(&sites.supplies)
    }
}

#[derive(Debug, Clone, Copy)]
struct Move {
    process: u32,
    /// Leave an optional step out instead of applying it.
    skip: bool,
    /// (destroys a value another process's next step on the key needs, rank): smaller
    /// first.
    priority: (bool, u32),
}

/// What stops a search.
pub struct Budget<'a> {
    /// Called every `NODES_PER_LIMIT_CHECK` configurations; true stops with `Stop::Timeout`.
    pub should_stop: &'a (dyn Fn() -> bool + Sync),
    pub memory_bytes_max: usize,
    /// The most configurations the search may expand.
    pub nodes_max: u64,
}

/// Why a search stopped before deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Memory { bytes: usize },
    Nodes { count: u64 },
}

impl Stop {
    /// Why, in words; `timeout_flag` names the option that sets the time budget.
    pub fn describe(&self, timeout_flag: &str) -> String {
        match self {
            Stop::Timeout => format!("the search exceeded its time budget ({timeout_flag})"),
            Stop::Memory { bytes } => format!(
                "the search reached its memory limit ({} MiB)",
                bytes / (1024 * 1024)
            ),
            Stop::Nodes { count } => format!(
                "the search expanded its budget of {count} configurations \
                 (--sequential-nodes-max)"
            ),
        }
    }
}

/// The verdict of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `order` lists the steps that took effect, in an order that satisfies everything.
    Valid {
        order: Vec<u32>,
    },
    /// No order exists. `deepest` is the configuration that placed the most steps.
    Violation {
        deepest: Vec<u64>,
    },
    Unknown(Stop),
}

/// DFS configurations between two looks at the clock and the memory.
const NODES_PER_LIMIT_CHECK: u64 = 1024;

struct Frame {
    /// Index into the visited set.
    row: u32,
    moves_start: u32,
    next: u32,
}

/// Searches for one order of `problem`'s steps. Returns the verdict and the configurations
/// expanded.
pub fn search(problem: &Interleaving, budget: &Budget) -> (Outcome, u64) {
    let mut row = problem.initial_row();
    problem.close_all(&mut row);
    let mut order = Vec::new();
    problem.transition(&problem.initial_row(), &row, None, &mut order);
    if problem.is_complete(&row) {
        return (
            Outcome::Valid {
                order: finish_order(problem, order, &row),
            },
            1,
        );
    }
    let mut visited = WordSet::new(problem.width);
    visited.insert(&row);
    let mut moves: Vec<Move> = Vec::new();
    problem.moves(&row, &mut moves);
    let mut frames = vec![Frame {
        row: 0,
        moves_start: 0,
        next: 0,
    }];
    let (mut deepest_placed, mut deepest_row) = (problem.placed_count(&row), 0usize);
    let mut nodes_count = 1u64;
    while let Some(frame) = frames.last_mut() {
        let index = (frame.moves_start + frame.next) as usize;
        if index >= moves.len() {
            moves.truncate(frame.moves_start as usize);
            frames.pop();
            continue;
        }
        frame.next += 1;
        row.copy_from_slice(visited.row(frame.row as usize));
        let alive = problem.apply(&mut row, moves[index]);
        if !visited.insert(&row) || !alive {
            continue;
        }
        nodes_count += 1;
        if let Some(stop) = check_budget(budget, nodes_count, &visited, &frames, &moves) {
            return (Outcome::Unknown(stop), nodes_count);
        }
        if problem.is_complete(&row) {
            let order = witness(problem, &visited, &frames, &moves, order, &row);
            return (Outcome::Valid { order }, nodes_count);
        }
        let row_index = visited.len() - 1;
        let placed = problem.placed_count(&row);
        if placed > deepest_placed {
            (deepest_placed, deepest_row) = (placed, row_index);
        }
        let moves_start = u32::try_from(moves.len()).expect("moves fit u32");
        problem.moves(&row, &mut moves);
        frames.push(Frame {
            row: u32::try_from(row_index).expect("rows fit u32"),
            moves_start,
            next: 0,
        });
    }
    let deepest = visited.row(deepest_row).to_vec();
    (Outcome::Violation { deepest }, nodes_count)
}

/// The order of steps along the search path that reached `last`, starting with `order`
/// (the reads placed at the root).
fn witness(
    problem: &Interleaving,
    visited: &WordSet,
    frames: &[Frame],
    moves: &[Move],
    mut order: Vec<u32>,
    last: &[u64],
) -> Vec<u32> {
    for (index, frame) in frames.iter().enumerate() {
        let parent = visited.row(frame.row as usize);
        let child = match frames.get(index + 1) {
            Some(next) => visited.row(next.row as usize),
            None => last,
        };
        let taken = moves[(frame.moves_start + frame.next - 1) as usize];
        problem.transition(parent, child, Some(taken), &mut order);
    }
    finish_order(problem, order, last)
}

/// Appends the lazy last writes nothing needed (they go at the end) and checks the order.
fn finish_order(problem: &Interleaving, mut order: Vec<u32>, last: &[u64]) -> Vec<u32> {
    for (process, sequence) in problem.sequences.iter().enumerate() {
        // Only the last step can be left for the end (optional steps before it are out).
        if let Some(&step) = sequence.last()
            && problem.position(last, process) < sequence.len()
            && !problem.steps[step as usize].optional
        {
            order.push(step);
        }
    }
    assert!(problem.verify(&order), "a search path is a valid order");
    order
}

fn check_budget(
    budget: &Budget,
    nodes_count: u64,
    visited: &WordSet,
    frames: &[Frame],
    moves: &[Move],
) -> Option<Stop> {
    if nodes_count >= budget.nodes_max {
        return Some(Stop::Nodes {
            count: budget.nodes_max,
        });
    }
    if !nodes_count.is_multiple_of(NODES_PER_LIMIT_CHECK) {
        return None;
    }
    if (budget.should_stop)() {
        return Some(Stop::Timeout);
    }
    let bytes = visited.bytes() + std::mem::size_of_val(frames) + std::mem::size_of_val(moves);
    (bytes > budget.memory_bytes_max || visited.len() >= crate::table::ROWS_COUNT_MAX)
        .then_some(Stop::Memory { bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_pack_without_straddling_words() {
        // Checks that fields of assorted widths keep their values and never cross a word.
        let mut layout = Layout::default();
        let widths = [3u32, 17, 32, 1, 0, 30, 5, 32, 12];
        let fields: Vec<Field> = widths.iter().map(|&bits| layout.field(bits)).collect();
        let mut row = vec![0u64; layout.width()];
        for (index, field) in fields.iter().enumerate() {
            assert!(field.shift + field.bits <= 64);
            field.set(&mut row, mask(field.bits).min(index as u64 * 3) as u32);
        }
        for (index, field) in fields.iter().enumerate() {
            assert_eq!(
                u64::from(field.get(&row)),
                mask(field.bits).min(index as u64 * 3)
            );
        }
    }

    #[test]
    fn bits_for_counts() {
        // Checks the field widths for value counts at the edges of powers of two.
        let table = [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (256, 8),
            (257, 9),
        ];
        for (count, bits) in table {
            assert_eq!(bits_for(count), bits, "count {count}");
        }
    }
}
