//! `synod bench sim --scenario raft`: the raft scenario's cluster under closed-loop clients
//! with no think time, measured in committed operations per simulated second (what the
//! protocol achieves on the simulated network and disks) and simulator events per wall
//! second (how fast the simulator runs it, invariant checks after every event included).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use synod_core::Duration;
use synod_sim::scenarios::raft::RaftScenario;
use synod_sim::scenarios::raft_client::{OPERATIONS_PER_CLIENT_MAX, Workload};
use synod_sim::{RunOptions, Simulation};

use crate::scenarios;

const NODES_COUNT: usize = 5;

/// One measured run.
struct Sample {
    events_per_wall_second: f64,
    ok_per_simulated_second: f64,
    entries_per_simulated_second: f64,
}

pub fn run(events: u64, runs: u64, faults: &str) -> Result<ExitCode> {
    if runs == 0 || events == 0 {
        bail!("--events and --runs must be positive");
    }
    let mut options = RunOptions::with_faults(scenarios::fault_preset(faults)?);
    options.safety_duration = Duration::from_secs(1_000_000);
    let workload = Workload {
        think_time_max: Duration::ZERO,
        operations_per_client_max: OPERATIONS_PER_CLIENT_MAX,
        ..Workload::default()
    };
    println!(
        "simulator: {NODES_COUNT}-node raft cluster, {} closed-loop clients per node without \
         think time, faults {faults}, one thread",
        workload.clients_per_node
    );
    let mut samples = Vec::new();
    for seed in 1..=runs {
        let scenario = RaftScenario::with_workload(NODES_COUNT, workload.clone())
            .without_history_check_in_report();
        let mut simulation = Simulation::new(Box::new(scenario), &options, seed, None);
        let started = Instant::now();
        while simulation.events_count() < events && simulation.step() {}
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let simulated = (simulation.now() - synod_core::Instant::ZERO)
            .as_secs_f64()
            .max(1e-9);
        let events_count = simulation.events_count();
        if let Some(verdict) = simulation.verdict().cloned() {
            println!("  (seed {seed} ended early: {verdict:?})");
        }
        let report = simulation.report();
        let figure = |name: &str| -> f64 {
            report
                .iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.parse().ok())
                .unwrap_or(0.0)
        };
        let sample = Sample {
            events_per_wall_second: events_count as f64 / elapsed,
            ok_per_simulated_second: figure("operations_ok") / simulated,
            entries_per_simulated_second: figure("commit_index_max") / simulated,
        };
        println!(
            "  seed {seed}: {events_count} events, {simulated:.2}s simulated, {elapsed:.2}s wall: \
             {:.0} events/s, {:.0} ok operations and {:.0} committed entries per simulated s \
             ({} snapshots sent, {} leaderships)",
            sample.events_per_wall_second,
            sample.ok_per_simulated_second,
            sample.entries_per_simulated_second,
            figure("snapshots_sent"),
            figure("leaderships_won"),
        );
        samples.push(sample);
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "median: {:.0} simulated events/s, {:.0} ok operations/simulated s, {:.0} committed \
         entries/simulated s",
        median(samples.iter().map(|s| s.events_per_wall_second).collect()),
        median(samples.iter().map(|s| s.ok_per_simulated_second).collect()),
        median(
            samples
                .iter()
                .map(|s| s.entries_per_simulated_second)
                .collect()
        ),
    );
    Ok(ExitCode::SUCCESS)
}
