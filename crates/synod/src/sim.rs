//! `synod sim`: run seeds of a simulated cluster and report what happened.

use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use synod_core::Duration;
use synod_sim::{FaultSelection, RunOptions, RunOutcome, SweepOutcome};

use crate::scenarios;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// The scenario to run: heartbeat (the phi-accrual failure-detection cluster), wal (the
    /// write-ahead log under crashes and disk faults), raft (replicas and clients, every
    /// history checked for linearizability), pingpong. `--protocol` is an alias.
    #[arg(long, alias = "protocol", default_value = "heartbeat")]
    pub scenario: String,
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Run a sweep over seeds A..B (B excluded).
    #[arg(long, value_parser = parse_range)]
    pub seeds: Option<Range<u64>>,
    /// Run every seed twice and fail if the two traces differ in any way.
    #[arg(long)]
    pub check_determinism: bool,
    /// Write a readable line per event to FILE (single seed only).
    #[arg(long, requires = "seed")]
    pub trace: Option<PathBuf>,
    /// Write the clients' history (JSON Lines, the input of `synod check`) to FILE (raft
    /// scenario, single seed).
    #[arg(long, requires = "seed")]
    pub history: Option<PathBuf>,
    /// Write the history with the stale reads too (the one checked for sequential
    /// consistency and the session guarantees: `synod check --model sequential,session`)
    /// to FILE (raft scenario, single seed).
    #[arg(long, requires = "seed")]
    pub history_with_stale: Option<PathBuf>,
    /// Worker threads for sweeps (each run stays on one thread).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Nodes in the simulated cluster.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// `swarm` (each seed draws its own fault mix) or a preset: none, crash, pause, loss,
    /// partition, clock, disk, all (every kind at once).
    #[arg(long, default_value = "swarm")]
    pub faults: String,
    /// Virtual seconds of the safety phase (faults on) before the liveness phase.
    #[arg(long, default_value_t = 20)]
    pub safety_secs: u64,
    /// Print a line for every seed of a sweep, not only the failures.
    #[arg(long)]
    pub verbose: bool,
    /// After a single-seed run, print every node's live supervision tree (actors, mailbox
    /// depth and high-water mark, restarts, drops).
    #[arg(long)]
    pub tree: bool,
}

/// Parses `A..B`.
pub fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a range: write it as A..B, e.g. 0..200"))?;
    let start: u64 = start
        .trim()
        .parse()
        .map_err(|_| format!("{start:?} is not a seed"))?;
    let end: u64 = end
        .trim()
        .parse()
        .map_err(|_| format!("{end:?} is not a seed"))?;
    if end <= start {
        return Err(format!(
            "the range {start}..{end} is empty: B must exceed A"
        ));
    }
    Ok(start..end)
}

/// Builds the run options from the arguments, with the flags a replay must repeat.
pub fn run_options(args: &SimArgs) -> Result<RunOptions> {
    let mut options = RunOptions::default();
    let mut flags = Vec::new();
    if args.faults != "swarm" {
        options.faults = FaultSelection::Fixed(scenarios::fault_preset(&args.faults)?);
        flags.push(format!("--faults {}", args.faults));
    }
    if args.safety_secs == 0 {
        bail!("--safety-secs must be positive");
    }
    options.safety_duration = Duration::from_secs(args.safety_secs);
    if args.safety_secs != 20 {
        flags.push(format!("--safety-secs {}", args.safety_secs));
    }
    if args.nodes != 5 {
        flags.push(format!("--nodes {}", args.nodes));
    }
    options.replay_flags = flags.join(" ");
    Ok(options)
}

pub fn run(args: &SimArgs) -> Result<ExitCode> {
    let options = run_options(args)?;
    if args.history.is_some() || args.history_with_stale.is_some() {
        if args.scenario != "raft" {
            bail!("--history and --history-with-stale are recorded by the raft scenario only");
        }
        let sink = std::sync::Arc::new(std::sync::Mutex::new(None));
        let factory = scenarios::raft_with_history(args.nodes, sink.clone())?;
        let code = run_single(args, &*factory, &options, args.seed.unwrap_or(0))?;
        let history = sink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .unwrap_or_default();
        let files = [
            (&args.history, history.checked),
            (&args.history_with_stale, history.with_stale),
        ];
        for (path, text) in files {
            if let Some(path) = path {
                std::fs::write(path, text)
                    .with_context(|| format!("cannot write the history to {}", path.display()))?;
                println!("history: {}", path.display());
            }
        }
        return Ok(code);
    }
    let factory = scenarios::factory(&args.scenario, args.nodes)?;
    match &args.seeds {
        Some(seeds) => run_sweep(args, &*factory, &options, seeds.clone()),
        None => run_single(args, &*factory, &options, args.seed.unwrap_or(0)),
    }
}

fn run_single(
    args: &SimArgs,
    factory: &(dyn Fn() -> Box<dyn synod_sim::Scenario> + Sync),
    options: &RunOptions,
    seed: u64,
) -> Result<ExitCode> {
    let started = Instant::now();
    let trace = match &args.trace {
        Some(path) => Some(
            synod_sim::trace_file(path)
                .with_context(|| format!("cannot create trace file {}", path.display()))?,
        ),
        None => None,
    };
    let outcome = synod_sim::run_seed_traced(factory, options, seed, trace);
    let mut failed = !outcome.passed();
    if args.check_determinism {
        let again = synod_sim::run_seed(factory, options, seed);
        if again.trace_hash != outcome.trace_hash || again.events_count != outcome.events_count {
            println!(
                "seed {seed}: NONDETERMINISM: trace hash {:016x} then {:016x}",
                outcome.trace_hash, again.trace_hash
            );
            println!("replay: {}", outcome.replay_command());
            println!("0 passed, 1 failed");
            return Ok(ExitCode::from(5));
        }
    }
    print_outcome(&outcome);
    if args.tree {
        print_trees(factory, options, seed);
    }
    if let Some(error) = &outcome.trace_error {
        println!("trace: could not be written completely: {error}");
        failed = true;
    }
    let elapsed = started.elapsed();
    println!(
        "{} events in {:.2}s of wall time ({:.0} events/s)",
        outcome.events_count,
        elapsed.as_secs_f64(),
        outcome.events_count as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "{} passed, {} failed",
        u32::from(!failed),
        u32::from(failed)
    );
    Ok(exit_code(outcome.exit_code()))
}

fn print_outcome(outcome: &RunOutcome) {
    println!("{}", outcome.summary_line());
    println!("faults: {}", outcome.fault_mix);
    let network = &outcome.network;
    println!("network: {network:?}");
    println!("nodes: {:?}", outcome.nodes);
    if !outcome.report.is_empty() {
        println!("figures:");
        for (name, value) in &outcome.report {
            println!("  {name:<36} {value}");
        }
    }
    if let Some(report) = outcome.failure_report() {
        println!("{report}");
    }
}

/// Replays the seed and prints each node's supervision tree as the run left it.
fn print_trees(
    factory: &(dyn Fn() -> Box<dyn synod_sim::Scenario> + Sync),
    options: &RunOptions,
    seed: u64,
) {
    let mut simulation = synod_sim::Simulation::new(factory(), options, seed, None);
    simulation.run();
    let view = simulation.view();
    for node in view.node_ids() {
        println!(
            "{node} ({:?}, boot {}):",
            view.status(node),
            view.boot_generation(node)
        );
        match view.system(node) {
            Some(system) => print!("{}", system.render_tree()),
            None => println!("  (down)"),
        }
    }
}

fn run_sweep(
    args: &SimArgs,
    factory: &(dyn Fn() -> Box<dyn synod_sim::Scenario> + Sync),
    options: &RunOptions,
    seeds: Range<u64>,
) -> Result<ExitCode> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let started = Instant::now();
    let outcome: SweepOutcome =
        synod_sim::sweep(factory, options, seeds, threads, args.check_determinism);
    for run in &outcome.outcomes {
        if args.verbose || !run.passed() {
            println!("{}", run.summary_line());
        }
        if let Some(report) = run.failure_report() {
            println!("{report}");
        }
    }
    let elapsed = started.elapsed();
    let events = outcome.events_count();
    println!(
        "{} seeds ({}), {} events in {:.2}s on {} threads ({:.0} events/s)",
        outcome.outcomes.len(),
        if args.check_determinism {
            "each run twice"
        } else {
            "each run once"
        },
        events,
        elapsed.as_secs_f64(),
        threads,
        events as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "{} passed, {} failed",
        outcome.passed_count(),
        outcome.failed_count()
    );
    let first = outcome.failures().next().map_or(0, RunOutcome::exit_code);
    Ok(exit_code(first))
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_or_say_what_is_wrong() {
        // Checks the `--seeds A..B` syntax and its error messages.
        assert_eq!(parse_range("0..200"), Ok(0..200));
        assert!(parse_range("5").unwrap_err().contains("not a range"));
        assert!(parse_range("9..3").unwrap_err().contains("empty"));
        assert!(parse_range("x..3").unwrap_err().contains("not a seed"));
    }
}
