//! `synod bench elections`: phi-accrual leader suspicion against the randomized election
//! timeout, in the simulator, over many seeds (synod-sim's leader-crash experiment: jittery
//! latency and pauses with the leader alive, then the leader crashes).

use std::ops::Range;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, bail};
use clap::Args;
use synod_core::{Duration, Validate};
use synod_raft::{LeaderSuspicion, PhiSuspicion, RaftConfig};
use synod_sim::scenarios::leader_crash::{
    LeaderCrashFigures, LeaderCrashOptions, run_leader_crash,
};

#[derive(Args, Debug, Clone)]
pub struct ElectionsArgs {
    /// Seeds A..B (B excluded); each runs once per suspicion mode.
    #[arg(long, value_parser = crate::sim::parse_range, default_value = "0..200")]
    pub seeds: Range<u64>,
    /// The phi threshold of the phi-accrual mode.
    #[arg(long, default_value_t = 8.0)]
    pub phi_threshold: f64,
    /// Worker threads (each run stays on one thread).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Adjusts the experiment's options to one network condition.
type Condition = fn(LeaderCrashOptions) -> LeaderCrashOptions;

/// One suspicion mode's name and settings.
struct Mode {
    name: String,
    suspicion: LeaderSuspicion,
}

pub fn run(args: &ElectionsArgs) -> Result<ExitCode> {
    if !(1..=256).contains(&args.threads) {
        bail!(
            "bench elections: --threads ({}) must be between 1 and 256",
            args.threads
        );
    }
    let phi = PhiSuspicion {
        threshold: args.phi_threshold,
        ..PhiSuspicion::default()
    };
    let modes = [
        Mode {
            name: "randomized timeout".to_string(),
            suspicion: LeaderSuspicion::RandomizedTimeout,
        },
        Mode {
            name: format!("phi-accrual (threshold {})", args.phi_threshold),
            suspicion: LeaderSuspicion::PhiAccrual(phi),
        },
    ];
    for mode in &modes {
        let config = RaftConfig {
            leader_suspicion: mode.suspicion.clone(),
            ..synod_sim::scenarios::raft::scenario_raft_config(None)
        };
        config.validate()?;
    }
    let options = LeaderCrashOptions::new(LeaderSuspicion::RandomizedTimeout);
    println!(
        "synod bench elections: seeds {}..{}, 5 replicas with clients, 10 ms ticks, 20 ms \
         heartbeats, election timeout 100-200 ms; {} warm-up, {} alive with a {}-{} pause of \
         a random node every {} on average; then the leader crashes",
        args.seeds.start,
        args.seeds.end,
        options.warm_up,
        options.alive,
        options.pause_duration_min,
        options.pause_duration_max,
        options.pause_interval_mean,
    );
    let conditions: [(&str, Condition); 2] = [
        ("jitter 6 ms mean, 50 ms cap", |options| options),
        ("jitter 30 ms mean, 150 ms cap", |options| {
            options.with_wide_jitter()
        }),
    ];
    let mut failed = false;
    let mut rows = Vec::new();
    for (condition, adjust) in conditions {
        for mode in &modes {
            let options = adjust(LeaderCrashOptions::new(mode.suspicion.clone()));
            let figures = run_mode(args, &options);
            for figure in figures.iter().filter(|figure| figure.failure.is_some()) {
                failed = true;
                eprintln!(
                    "{condition}, {}: seed {} failed: {} (replay: synod bench elections \
                     --seeds {}..{})",
                    mode.name,
                    figure.seed,
                    figure.failure.as_deref().unwrap_or_default(),
                    figure.seed,
                    figure.seed + 1,
                );
            }
            rows.push(table_row(condition, &mode.name, &figures));
        }
    }
    print_table(&rows);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs every seed in one mode on the worker threads; figures in seed order.
fn run_mode(args: &ElectionsArgs, options: &LeaderCrashOptions) -> Vec<LeaderCrashFigures> {
    let next_seed = AtomicU64::new(args.seeds.start);
    let figures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.threads {
            scope.spawn(|| {
                loop {
                    let seed = next_seed.fetch_add(1, Ordering::Relaxed);
                    if seed >= args.seeds.end {
                        break;
                    }
                    let figure = run_leader_crash(seed, options);
                    figures.lock().expect("no worker panicked").push(figure);
                }
            });
        }
    });
    let mut figures = figures.into_inner().expect("no worker panicked");
    figures.sort_by_key(|figure| figure.seed);
    figures
}

struct Row {
    condition: String,
    mode: String,
    seeds: usize,
    detection: Vec<Duration>,
    new_leader: Vec<Duration>,
    needless_total: u64,
    needless_seeds: usize,
    pauses_total: u64,
    failures: usize,
}

fn table_row(condition: &str, mode: &str, figures: &[LeaderCrashFigures]) -> Row {
    let mut detection: Vec<Duration> = figures.iter().filter_map(|f| f.detection).collect();
    let mut new_leader: Vec<Duration> = figures.iter().filter_map(|f| f.new_leader).collect();
    detection.sort();
    new_leader.sort();
    Row {
        condition: condition.to_string(),
        mode: mode.to_string(),
        seeds: figures.len(),
        detection,
        new_leader,
        needless_total: figures.iter().map(|f| f.needless_elections).sum(),
        needless_seeds: figures.iter().filter(|f| f.needless_elections > 0).count(),
        pauses_total: figures.iter().map(|f| f.pauses).sum(),
        failures: figures.iter().filter(|f| f.failure.is_some()).count(),
    }
}

/// The nearest-rank percentile of sorted values, in milliseconds.
fn percentile_ms(sorted: &[Duration], percent: usize) -> String {
    if sorted.is_empty() {
        return "-".to_string();
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    let value = sorted[rank - 1];
    format!("{:.0}", value.as_nanos() as f64 / 1e6)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| network | mode | seeds | detect p50 ms | detect p99 ms | new leader p50 ms | \
         new leader p99 ms | needless elections | per seed | seeds with any | pauses | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let per_seed = row.needless_total as f64 / row.seeds.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {per_seed:.2} | {} | {} | {} |",
            row.condition,
            row.mode,
            row.seeds,
            percentile_ms(&row.detection, 50),
            percentile_ms(&row.detection, 99),
            percentile_ms(&row.new_leader, 50),
            percentile_ms(&row.new_leader, 99),
            row.needless_total,
            row.needless_seeds,
            row.pauses_total,
            row.failures,
        );
    }
}
