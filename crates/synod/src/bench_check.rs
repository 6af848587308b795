//! `synod bench check`: synod-check on generated histories of every named shape (the
//! linearizable many-keys, hot-10, hot-20 and hot-50, and the lagged multi-key
//! `sequential` one), printed as JSON: generation, parse and check times, the time of each
//! model checked alone, the verdicts, and the peak memory.
//!
//! Each shape runs in a child process (this binary with the hidden `--one-shape NAME`), so
//! that its peak resident memory is its own. The comparison with porcupine-rs stays in
//! `cargo bench -p synod-check --bench vs_porcupine`.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::{Value as Json, json};
use synod_check::generate::{SHAPE_NAMES, Shape, generate};
use synod_check::{CheckOptions, History, Models, ParseOptions, Report, parse_history};

#[derive(Args, Debug)]
pub struct BenchCheckArgs {
    /// Shapes to run (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// The generator's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time budget per key, and of the whole-history sequential search, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Worker threads for the per-key searches (default: the machine's parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Run one shape in this process and print its JSON object (used by the parent).
    #[arg(long, hide = true)]
    one_shape: Option<String>,
}

pub fn run(args: &BenchCheckArgs) -> Result<ExitCode> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |count| count.get()))
        .max(1);
    if let Some(name) = &args.one_shape {
        println!(
            "{}",
            one_shape(name, args.seed, args.timeout_secs, threads)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = if args.shapes.is_empty() {
        SHAPE_NAMES.iter().map(|name| name.to_string()).collect()
    } else {
        args.shapes.clone()
    };
    let mut results = Vec::new();
    for name in &names {
        if Shape::named(name, args.seed).is_none() {
            bail!(
                "unknown shape {name:?}: the shapes are {}",
                SHAPE_NAMES.join(", ")
            );
        }
        results.push(run_child(name, args, threads)?);
    }
    let report = json!({
        "benchmark": "synod-check on generated histories",
        "seed": args.seed,
        "threads": threads,
        "timeout_secs": args.timeout_secs,
        "shapes": results,
        "notes": "seconds are wall-clock; models_seconds times each model checked alone; \
                  peak_rss_mib is the child's peak resident memory (VmHWM)",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

fn run_child(name: &str, args: &BenchCheckArgs, threads: usize) -> Result<Json> {
    let executable = std::env::current_exe().context("finding the synod executable")?;
    let output = Command::new(executable)
        .args(["bench", "check", "--one-shape", name])
        .args(["--seed", &args.seed.to_string()])
        .args(["--timeout-secs", &args.timeout_secs.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .with_context(|| format!("running the child for shape {name}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success()
        && let Ok(result) = serde_json::from_str::<Json>(stdout.trim())
    {
        return Ok(result);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Ok(json!({
        "shape": name,
        "error": format!("the child exited with {}: {}", output.status,
            stderr.lines().last().unwrap_or("")),
    }))
}

fn one_shape(name: &str, seed: u64, timeout_secs: u64, threads: usize) -> Result<Json> {
    let Some(shape) = Shape::named(name, seed) else {
        bail!("unknown shape {name:?}");
    };
    let started = Instant::now();
    let text = generate(&shape);
    let generate_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let history = parse_history(&text, ParseOptions::default())
        .map_err(|error| anyhow::anyhow!("a generated history does not parse: {error}"))?;
    let parse_seconds = started.elapsed().as_secs_f64();
    let (report, check_seconds) = timed_check(&history, Models::ALL, timeout_secs, threads);
    let alone = |models| timed_check(&history, models, timeout_secs, threads).1;
    let only = |pick: fn(&mut Models)| {
        let mut models = Models {
            linearizable: false,
            sequential: false,
            session: false,
            lost_writes: false,
        };
        pick(&mut models);
        models
    };
    let models_seconds = json!({
        "linearizable": rounded(alone(only(|models| models.linearizable = true))),
        "sequential": rounded(alone(only(|models| models.sequential = true))),
        "session": rounded(alone(only(|models| models.session = true))),
        "lost_writes": rounded(alone(only(|models| models.lost_writes = true))),
    });
    Ok(json!({
        "shape": name,
        "operations": shape.operations,
        "keys": shape.keys,
        "processes": shape.processes,
        "generate_seconds": rounded(generate_seconds),
        "parse_seconds": rounded(parse_seconds),
        "check_seconds": rounded(check_seconds),
        "models_seconds": models_seconds,
        "verdicts": verdicts(&report),
        "peak_rss_mib": peak_memory_mib(),
    }))
}

fn timed_check(
    history: &History,
    models: Models,
    timeout_secs: u64,
    threads: usize,
) -> (Report, f64) {
    let started = Instant::now();
    let clock = move || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let options = CheckOptions {
        models,
        key_timeout_nanos: Some(timeout_secs.saturating_mul(1_000_000_000)),
        clock_nanos: &clock,
        threads,
        sequential_timeout_nanos: Some(timeout_secs.saturating_mul(1_000_000_000)),
        ..CheckOptions::default()
    };
    let report = synod_check::check(history, &options);
    (report, started.elapsed().as_secs_f64())
}

fn verdicts(report: &Report) -> Json {
    let mut verdicts = serde_json::Map::new();
    for (model, verdict) in report.model_verdicts() {
        verdicts.insert(model.to_string(), json!(verdict.name().to_lowercase()));
    }
    if let Some(sequential) = &report.sequential {
        verdicts.insert("sequential_method".into(), json!(sequential.method));
        verdicts.insert(
            "sequential_search_nodes".into(),
            json!(sequential.search_nodes),
        );
    }
    Json::Object(verdicts)
}

fn rounded(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// The process's peak resident memory in MiB (VmHWM), or 0 where /proc is missing.
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
