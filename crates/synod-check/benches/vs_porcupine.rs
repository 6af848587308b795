//! `cargo bench -p synod-check --bench vs_porcupine`: synod-check against porcupine-rs (a
//! Rust port of Porcupine) on the generated shapes of docs/consistency.md, side by side.
//!
//! Each run happens in a child process (this same binary, `--child`) under `ulimit -v` and
//! `timeout`, so a checker that exhausts memory or time is reported as such instead of
//! taking the machine down. The child prints its verdict, check time, parse time and peak
//! resident memory. Environment: `SYNOD_BENCH_SHAPES` (comma-separated shape names),
//! `SYNOD_BENCH_TIMEOUT_SECS` (default 150), `SYNOD_BENCH_MEMORY_GIB` (default 16),
//! `SYNOD_BENCH_SEED` (default 1).

// A benchmark measures wall-clock time and runs children; the determinism bans do not apply.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::process::Command;
use std::time::{Duration, Instant};

use porcupine_rs::{CheckResult, Model, Operation};
use synod_check::generate::{SHAPE_NAMES, Shape, generate};
use synod_check::{Call, CheckOptions, History, Models, Outcome, ParseOptions, Value};

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.len() >= 4 && arguments[1] == "--child" {
        child(&arguments[2], &arguments[3]);
        return;
    }
    let shapes: Vec<String> = std::env::var("SYNOD_BENCH_SHAPES")
        .map(|list| list.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| {
            // The linearizable shapes: the `sequential` one is not meant to pass this model.
            SHAPE_NAMES
                .iter()
                .filter(|name| Shape::named(name, 1).is_some_and(|s| s.process_lag_ns_max == 0))
                .map(|name| name.to_string())
                .collect()
        });
    let timeout_secs: u64 = env_number("SYNOD_BENCH_TIMEOUT_SECS", 150);
    let memory_gib: u64 = env_number("SYNOD_BENCH_MEMORY_GIB", 16);
    let seed: u64 = env_number("SYNOD_BENCH_SEED", 1);
    println!(
        "synod-check vs porcupine-rs 0.3.0 (seed {seed}; each run in a child process limited \
         to {timeout_secs} s and {memory_gib} GiB of address space)"
    );
    println!(
        "{:<10} {:>7} {:>5} {:>5} | {:>10} {:>8} {:>8} {:<9} | {:>12} {:>8} {:<9}",
        "shape",
        "ops",
        "keys",
        "procs",
        "synod s",
        "parse s",
        "MiB",
        "verdict",
        "porcupine s",
        "MiB",
        "verdict"
    );
    for name in &shapes {
        let Some(shape) = Shape::named(name, seed) else {
            println!("unknown shape {name:?}; shapes: {}", SHAPE_NAMES.join(", "));
            continue;
        };
        let path = std::env::temp_dir().join(format!("synod-bench-{name}-{seed}.jsonl"));
        std::fs::write(&path, generate(&shape)).expect("write the generated history");
        let path = path.to_string_lossy().to_string();
        let synod = run_child("synod", &path, timeout_secs, memory_gib);
        let porcupine = run_child("porcupine", &path, timeout_secs, memory_gib);
        println!(
            "{:<10} {:>7} {:>5} {:>5} | {:>10} {:>8} {:>8} {:<9} | {:>12} {:>8} {:<9}",
            name,
            shape.operations,
            shape.keys,
            shape.processes,
            synod.seconds,
            synod.parse_seconds,
            synod.memory_mib,
            synod.verdict,
            porcupine.seconds,
            porcupine.memory_mib,
            porcupine.verdict
        );
    }
    println!(
        "times: the check alone, after parsing (synod's parse time is shown apart; porcupine \
         gets the same parsed operations); MiB: peak resident memory of the child"
    );
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

struct ChildResult {
    seconds: String,
    parse_seconds: String,
    memory_mib: String,
    verdict: String,
}

fn run_child(checker: &str, path: &str, timeout_secs: u64, memory_gib: u64) -> ChildResult {
    let executable = std::env::current_exe().expect("the bench binary");
    let script = format!(
        "ulimit -v {}; exec timeout {timeout_secs} \"$0\" --child {checker} \"$1\"",
        memory_gib * 1024 * 1024
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(executable)
        .arg(path)
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    if output.status.success() && fields.len() == 4 {
        return ChildResult {
            verdict: fields[0].to_string(),
            seconds: fields[1].to_string(),
            parse_seconds: fields[2].to_string(),
            memory_mib: fields[3].to_string(),
        };
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failure = match output.status.code() {
        Some(124) => format!("timeout>{timeout_secs}s"),
        _ if stderr.contains("memory allocation") => format!("out-of-mem>{memory_gib}GiB"),
        _ => format!("failed: {}", stderr.lines().last().unwrap_or("")),
    };
    ChildResult {
        verdict: failure,
        seconds: "-".into(),
        parse_seconds: "-".into(),
        memory_mib: "-".into(),
    }
}

/// Runs one checker on one file and prints `verdict seconds parse_seconds peak_mib`.
fn child(checker: &str, path: &str) {
    let text = std::fs::read_to_string(path).expect("read the history");
    let parse_started = Instant::now();
    let history = synod_check::parse_history(&text, ParseOptions::default()).expect("parse");
    let parse_seconds = parse_started.elapsed();
    let started = Instant::now();
    let verdict = match checker {
        "synod" => check_synod(&history),
        _ => check_porcupine(&history),
    };
    let seconds = started.elapsed();
    println!(
        "{verdict} {:.3} {:.3} {}",
        seconds.as_secs_f64(),
        parse_seconds.as_secs_f64(),
        peak_memory_mib()
    );
}

fn check_synod(history: &History) -> String {
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let options = CheckOptions {
        models: Models {
            linearizable: true,
            sequential: false,
            session: false,
            lost_writes: false,
        },
        threads,
        ..CheckOptions::default()
    };
    let report = synod_check::check(history, &options);
    report.verdict.name().to_lowercase()
}

fn peak_memory_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib / 1024)
}

/// A key-value register for porcupine-rs, partitioned by key. Info operations return at
/// the end of time and accept any result, as in Porcupine's own key-value model.
#[derive(Clone)]
struct KeyValue;

#[derive(Clone, Debug)]
struct KeyValueOperation {
    key: u32,
    call: Call,
    is_info: bool,
}

impl Model for KeyValue {
    type State = Value;
    type Op = KeyValueOperation;
    type Metadata = ();

    fn partition_operations(history: &[Operation<Self>]) -> Vec<Vec<Operation<Self>>> {
        let mut by_key: std::collections::BTreeMap<u32, Vec<Operation<Self>>> =
            std::collections::BTreeMap::new();
        for operation in history {
            by_key
                .entry(operation.op.key)
                .or_default()
                .push(operation.clone());
        }
        by_key.into_values().collect()
    }

    fn init() -> Value {
        Value::Null
    }

    fn step(state: &Value, op: &KeyValueOperation) -> (bool, Value) {
        match &op.call {
            Call::Read(value) => (op.is_info || value == state, state.clone()),
            Call::Write(value) => (true, value.clone()),
            Call::Delete => (true, Value::Null),
            Call::Cas(expected, new) if expected == state => (true, new.clone()),
            Call::Cas(_, _) => (op.is_info, state.clone()),
        }
    }
}

fn check_porcupine(history: &History) -> String {
    let operations: Vec<Operation<KeyValue>> = history
        .operations
        .iter()
        .filter(|operation| operation.outcome != Outcome::Fail)
        .map(|operation| {
            let is_info = operation.outcome == Outcome::Info;
            Operation {
                client_id: u32::try_from(operation.process).ok(),
                call_time: operation.invoke_position as i64,
                return_time: match (is_info, operation.complete_position) {
                    (false, Some(position)) => position as i64,
                    _ => i64::MAX,
                },
                op: KeyValueOperation {
                    key: operation.key,
                    call: operation.call.clone(),
                    is_info,
                },
                metadata: None,
            }
        })
        .collect();
    let result = porcupine_rs::check_operations_timeout(&operations, Duration::from_secs(3600));
    match result {
        CheckResult::Ok => "valid".into(),
        CheckResult::Illegal => "violation".into(),
        CheckResult::Unknown => "unknown".into(),
    }
}
