//! `synod bench`: throughput and detection figures, printed as numbers. Timings are
//! measured here with the real clock; nothing in a test asserts them.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use synod_core::Duration;
use synod_sim::scenarios::heartbeat::{
    DetectionFigures, HeartbeatScenario, false_suspicion_rate_per_pair_hour, percentile,
};
use synod_sim::{FaultSelection, RunOptions, Scenario};

use crate::scenarios;

// Declared here rather than in main.rs, which another change is editing; `path` keeps the file
// beside its siblings (src/bench_load.rs).
#[path = "bench_elections.rs"]
mod bench_elections;
#[path = "bench_load.rs"]
mod bench_load;
#[path = "bench_overload.rs"]
mod bench_overload;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Simulated events per second on one core: a 5-node cluster, every fault kind on.
    /// `--scenario raft` runs replicas with closed-loop clients and also prints committed
    /// operations per simulated second.
    Sim {
        /// Events per measured run.
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Measured runs (seeds 1..=runs); the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: u64,
        /// heartbeat or raft.
        #[arg(long, default_value = "heartbeat")]
        scenario: String,
        /// A fault preset (see `synod sim --faults`); `all` turns every kind on.
        #[arg(long, default_value = "all")]
        faults: String,
    },
    /// Messages per second through a chain of actors on the tokio executor.
    Actors {
        #[arg(long, default_value_t = 16)]
        chain: usize,
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
    },
    /// The write-ahead log against the raw 4 KiB write + fdatasync loop on the same disk,
    /// with 1, 16, 64 and 256 writers of 256-byte records, and recovery speed; prints JSON.
    Wal {
        /// Where the benchmark's files go (removed afterwards); must be on the disk to measure.
        #[arg(long, default_value = "target/bench-wal")]
        dir: std::path::PathBuf,
        /// Appends per writer-count run (split across the writers).
        #[arg(long, default_value_t = 20_000)]
        appends: u64,
        /// Megabytes of log written and then recovered.
        #[arg(long, default_value_t = 512)]
        recovery_megabytes: u64,
    },
    /// Failure-detection time and false-suspicion rate per fault kind, over many seeds.
    Detector {
        /// Seeds per fault kind.
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        /// Virtual seconds of faults per seed.
        #[arg(long, default_value_t = 60)]
        safety_secs: u64,
    },
    /// synod-check on generated histories of every shape: generation, parse and check
    /// times, each model alone, verdicts and peak memory per shape; prints JSON.
    Check(crate::bench_check::BenchCheckArgs),
    /// The key-value state machine: memory per key, Put applies per second, snapshot and
    /// restore time; prints JSON.
    Kv {
        /// Keys put (one Put entry each).
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 16)]
        value_size: usize,
    },
    /// Closed-loop load against a running synod, Redis or etcd: throughput, HDR latency
    /// percentiles and checked reads; prints one JSON line (and a history with --history).
    Load(bench_load::LoadArgs),
    /// A cluster offered 3x its peak write rate open-loop, with load shedding on and then
    /// off: accepted throughput, p99 of accepted requests, refusals, leader changes and
    /// each node's peak RSS; prints lines and one JSON line.
    Overload(bench_overload::OverloadArgs),
    /// Phi-accrual leader suspicion against the randomized election timeout in the
    /// simulator: time to detect a crashed leader and to replace it, and elections started
    /// needlessly under jitter and pauses, over many seeds; prints a Markdown table.
    Elections(bench_elections::ElectionsArgs),
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Sim {
            events,
            runs,
            scenario,
            faults,
        } => match scenario.as_str() {
            "heartbeat" => bench_sim(events, runs, &faults),
            "raft" => crate::bench_raft::run(events, runs, &faults),
            other => bail!("bench sim: unknown scenario {other:?}: choose heartbeat or raft"),
        },
        BenchCommand::Actors { chain, messages } => bench_actors(chain, messages),
        BenchCommand::Detector { seeds, safety_secs } => bench_detector(seeds, safety_secs),
        BenchCommand::Check(args) => crate::bench_check::run(&args),
        BenchCommand::Load(args) => bench_load::run(&args),
        BenchCommand::Overload(args) => bench_overload::run(&args),
        BenchCommand::Elections(args) => bench_elections::run(&args),
        BenchCommand::Kv { keys, value_size } => {
            println!("{}", crate::bench_kv::run(keys, value_size)?);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Wal {
            dir,
            appends,
            recovery_megabytes,
        } => {
            println!(
                "{}",
                crate::bench_wal::run(&dir, appends, recovery_megabytes)?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bench_sim(events: u64, runs: u64, faults: &str) -> Result<ExitCode> {
    if runs == 0 || events == 0 {
        bail!("--events and --runs must be positive");
    }
    let mut options = RunOptions::with_faults(scenarios::fault_preset(faults)?);
    options.safety_duration = Duration::from_secs(1_000_000);
    let factory = || Box::new(HeartbeatScenario::new(5)) as Box<dyn Scenario>;
    println!("simulator: 5-node heartbeat cluster, faults {faults}, one thread");
    let mut rates = Vec::new();
    for seed in 1..=runs {
        let started = Instant::now();
        let outcome = synod_sim::bench(&factory, &options, seed, events);
        let elapsed = started.elapsed().as_secs_f64();
        let rate = outcome.events_count as f64 / elapsed.max(1e-9);
        println!(
            "  seed {seed}: {} events, {} virtual, {elapsed:.3}s wall, {rate:.0} events/s",
            outcome.events_count, outcome.virtual_duration
        );
        if let Some(verdict) = outcome.verdict {
            println!("  (the run ended early: {verdict:?})");
        }
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} simulated events/s", rates[rates.len() / 2]);
    Ok(ExitCode::SUCCESS)
}

fn bench_actors(chain: usize, messages: u64) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = runtime
        .block_on(synod_runtime::bench_actor_chain(chain, messages))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    println!("tokio executor: a chain of {chain} actors, {messages} messages");
    println!(
        "  delivered {} (reordered {}), {:.3}s",
        report.delivered_count,
        report.reordered_count,
        report.elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} messages/s through the whole chain",
        report.messages_per_second
    );
    println!("  {:.0} actor-to-actor hand-offs/s", report.hops_per_second);
    Ok(ExitCode::SUCCESS)
}

fn bench_detector(seeds: u64, safety_secs: u64) -> Result<ExitCode> {
    if seeds == 0 || safety_secs == 0 {
        bail!("--seeds and --safety-secs must be positive");
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    println!(
        "phi-accrual detector, 5 nodes, default config, {seeds} seeds x {safety_secs}s per kind"
    );
    println!(
        "{:<10} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8} {:>14} {:>7}",
        "faults", "detected", "p50", "p99", "max", "missed", "false", "false/pair-h", "failed"
    );
    let mut failed_total = 0;
    for preset in ["crash", "pause", "partition", "loss"] {
        let sink = Arc::new(Mutex::new(DetectionFigures::default()));
        let options = RunOptions {
            faults: FaultSelection::Fixed(scenarios::fault_preset(preset)?),
            safety_duration: Duration::from_secs(safety_secs),
            ..RunOptions::default()
        };
        let shared = sink.clone();
        let factory =
            move || Box::new(HeartbeatScenario::with_sink(5, shared.clone())) as Box<dyn Scenario>;
        let outcome = synod_sim::sweep(&factory, &options, 0..seeds, threads, false);
        failed_total += outcome.failed_count();
        let figures = sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        print_detector_row(preset, &figures, outcome.failed_count());
    }
    println!(
        "detected: outages an observer suspected; p50/p99/max: time from the fault to suspicion"
    );
    println!(
        "missed: outages over 2s nobody suspected; false: suspicions of a healthy, reachable peer"
    );
    Ok(if failed_total == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_detector_row(preset: &str, figures: &DetectionFigures, failed: usize) {
    let mut samples: Vec<Duration> = figures
        .detection_samples
        .values()
        .flatten()
        .copied()
        .collect();
    samples.sort();
    let millis = |span: Duration| format!("{:.0}ms", span.as_millis_f64());
    let missed: u64 = figures.missed_count.values().sum();
    println!(
        "{:<10} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8} {:>14.3} {:>7}",
        preset,
        samples.len(),
        millis(percentile(&samples, 50)),
        millis(percentile(&samples, 99)),
        millis(percentile(&samples, 100)),
        missed,
        figures.false_suspicions_count,
        false_suspicion_rate_per_pair_hour(figures),
        failed
    );
}
