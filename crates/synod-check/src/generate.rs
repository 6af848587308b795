//! Histories that are valid by construction, for tests and benchmarks.
//!
//! Workers run a random concurrent workload against a sequential model of the key-value
//! map: each operation gets an invoke time, a completion time and a linearization point
//! strictly between them, and the model applies operations in linearization-point order,
//! which fixes every read's result and every cas's outcome. The recorded history is
//! therefore linearizable. A fraction of operations end as info: they take effect (or not,
//! at random) at a point after their invoke that may lie past their info line, and their
//! worker continues under a new process id, as in Jepsen.
//!
//! With `process_lag_ns_max > 0`, every process's recorded times are shifted later by its
//! own random lag (as if its clock, or the replica it talks to, lagged). Each process's
//! order is kept and the model still applied operations in one order that respects it, so
//! the history is sequentially consistent by construction, but reads across processes now
//! break real time: it is, in general, not linearizable.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use synod_core::Prng;

/// The shape of a generated history.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub operations: usize,
    pub keys: usize,
    /// Concurrent workers (each is one process at a time).
    pub processes: usize,
    /// Values are drawn from `0..values`; a small range makes writes collide.
    pub values: u64,
    /// The fraction of operations that end as info.
    pub info_rate: f64,
    /// Each process's times are shifted by a lag drawn from `0..=process_lag_ns_max` (0: the
    /// history is linearizable; more: sequentially consistent only).
    pub process_lag_ns_max: u64,
    pub seed: u64,
}

/// The named shapes of the benchmarks (docs/consistency.md, "Generated histories").
pub const SHAPE_NAMES: [&str; 5] = ["many-keys", "hot-10", "hot-20", "hot-50", "sequential"];

impl Shape {
    /// A named shape: `many-keys` (100,000 operations, 1,000 keys, 50 processes),
    /// `hot-10` and `hot-20` (10,000 operations on one key from 10 or 20 processes),
    /// `hot-50` (20,000 operations on one key from 50 processes); 1% info, values 0..5.
    /// `sequential`: 5,000 operations on 8 keys from 8 processes, each lagging by up to
    /// 5 µs, values drawn from 0..2^40 (unique in practice, as Jepsen's and Elle's
    /// workloads make them), no info: sequentially consistent but not linearizable, so
    /// only the search over all keys together decides it.
    pub fn named(name: &str, seed: u64) -> Option<Shape> {
        let (operations, keys, processes) = match name {
            "many-keys" => (100_000, 1_000, 50),
            "hot-10" => (10_000, 1, 10),
            "hot-20" => (10_000, 1, 20),
            "hot-50" => (20_000, 1, 50),
            "sequential" => {
                return Some(Shape {
                    operations: 5_000,
                    keys: 8,
                    processes: 8,
                    values: 1 << 40,
                    info_rate: 0.0,
                    process_lag_ns_max: 5_000,
                    seed,
                });
            }
            _ => return None,
        };
        Some(Shape {
            operations,
            keys,
            processes,
            values: 5,
            info_rate: 0.01,
            process_lag_ns_max: 0,
            seed,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write(u64),
    Cas(u64, u64),
    Delete,
}

struct Planned {
    process: u64,
    key: usize,
    kind: Kind,
    invoke: u64,
    complete: u64,
    /// `None`: an info operation that never takes effect.
    effect_at: Option<u64>,
    is_info: bool,
    /// Filled in by the model: the value read, or whether the cas matched.
    read: Option<u64>,
    cas_matched: bool,
    /// The position of its effect in the model's order, once applied.
    rank: Option<u64>,
}

/// Generates a linearizable history of `shape` as JSON Lines.
pub fn generate(shape: &Shape) -> String {
    let mut planned = plan(shape);
    apply_model(&mut planned);
    render(&planned, false)
}

/// Generates as [`generate`], and gives every ok completion an `index`: the position of its
/// effect in the model's order (the order a system that knows its own order would report).
pub fn generate_with_order(shape: &Shape) -> String {
    let mut planned = plan(shape);
    apply_model(&mut planned);
    render(&planned, true)
}

const LATENCY_MEAN_NS: f64 = 1_000.0;
const THINK_MEAN_NS: f64 = 200.0;

fn plan(shape: &Shape) -> Vec<Planned> {
    let mut prng = Prng::from_seed(shape.seed);
    let processes = shape.processes.max(1);
    let mut next_free: Vec<u64> = (0..processes).map(|_| prng.below(1_000)).collect();
    let mut process_of: Vec<u64> = (0..processes as u64).collect();
    let mut planned = Vec::with_capacity(shape.operations);
    for _ in 0..shape.operations {
        let worker = (0..processes)
            .min_by_key(|&worker| (next_free[worker], worker))
            .expect("at least one worker");
        let invoke = next_free[worker];
        let latency = 2 + prng.exponential(LATENCY_MEAN_NS, LATENCY_MEAN_NS * 20.0) as u64;
        let complete = invoke + latency;
        let value = |prng: &mut Prng| prng.below(shape.values.max(1));
        let kind = match prng.below(100) {
            0..50 => Kind::Read,
            50..80 => Kind::Write(value(&mut prng)),
            80..95 => Kind::Cas(value(&mut prng), value(&mut prng)),
            _ => Kind::Delete,
        };
        let is_info = prng.chance(shape.info_rate);
        let effect_at = if is_info {
            let late = prng.below((LATENCY_MEAN_NS * 20.0) as u64);
            prng.chance(0.5).then_some(invoke + 1 + late)
        } else {
            Some(invoke + 1 + prng.below(latency - 1))
        };
        planned.push(Planned {
            process: process_of[worker],
            key: prng.index(shape.keys.max(1)),
            kind,
            invoke,
            complete,
            effect_at,
            is_info,
            read: None,
            cas_matched: false,
            rank: None,
        });
        next_free[worker] = complete + 1 + prng.exponential(THINK_MEAN_NS, 10_000.0) as u64;
        if is_info {
            process_of[worker] += processes as u64;
        }
    }
    if shape.process_lag_ns_max > 0 {
        lag_processes(&mut planned, shape.process_lag_ns_max, &mut prng);
    }
    planned
}

/// Shifts each process's recorded times by its own lag; effect points stay, so the model's
/// order (which respects every process's order) is unchanged.
fn lag_processes(planned: &mut [Planned], lag_ns_max: u64, prng: &mut Prng) {
    let mut lags: BTreeMap<u64, u64> = BTreeMap::new();
    for operation in planned.iter_mut() {
        let lag = *lags
            .entry(operation.process)
            .or_insert_with(|| prng.below(lag_ns_max + 1));
        operation.invoke += lag;
        operation.complete += lag;
    }
}

fn apply_model(planned: &mut [Planned]) {
    let mut order: Vec<(u64, usize)> = planned
        .iter()
        .enumerate()
        .filter_map(|(index, operation)| operation.effect_at.map(|time| (time, index)))
        .collect();
    order.sort_unstable();
    let mut map: BTreeMap<usize, u64> = BTreeMap::new();
    for (rank, (_, index)) in order.into_iter().enumerate() {
        let operation = &mut planned[index];
        operation.rank = Some(rank as u64);
        let current = map.get(&operation.key).copied();
        match operation.kind {
            Kind::Read => operation.read = current,
            Kind::Write(value) => {
                map.insert(operation.key, value);
            }
            Kind::Cas(expected, new) => {
                operation.cas_matched = current == Some(expected);
                if operation.cas_matched {
                    map.insert(operation.key, new);
                }
            }
            Kind::Delete => {
                map.remove(&operation.key);
            }
        }
    }
}

fn render(planned: &[Planned], with_index: bool) -> String {
    // (time, invoke before completion at equal times is irrelevant: linearization points
    // lie strictly inside), then operation order for determinism.
    let mut lines: Vec<(u64, usize, bool)> = Vec::with_capacity(planned.len() * 2);
    for (index, operation) in planned.iter().enumerate() {
        lines.push((operation.invoke, index, false));
        lines.push((operation.complete, index, true));
    }
    lines.sort_unstable();
    let mut out = String::with_capacity(planned.len() * 150);
    for (time, index, is_completion) in lines {
        let operation = &planned[index];
        let (f, value) = match operation.kind {
            Kind::Read => {
                let value = match (is_completion, operation.is_info, operation.read) {
                    (true, false, Some(read)) => read.to_string(),
                    _ => "null".to_string(),
                };
                ("read", value)
            }
            Kind::Write(value) => ("write", value.to_string()),
            Kind::Cas(expected, new) => ("cas", format!("[{expected},{new}]")),
            Kind::Delete => ("delete", "null".to_string()),
        };
        let kind = match (is_completion, operation.is_info, operation.kind) {
            (false, _, _) => "invoke",
            (true, true, _) => "info",
            (true, false, Kind::Cas(_, _)) if !operation.cas_matched => "fail",
            (true, false, _) => "ok",
        };
        let index = match operation.rank {
            Some(rank) if with_index && kind == "ok" => format!(",\"index\":{rank}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{{\"process\":{},\"type\":\"{kind}\",\"f\":\"{f}\",\"key\":\"k{}\",\"value\":{value},\
             \"time\":{time}{index}}}",
            operation.process, operation.key
        );
    }
    out
}
