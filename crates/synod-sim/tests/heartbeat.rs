//! The heartbeat cluster (synod-node's failure-detection tree) under the simulator: a short
//! swarm sweep with determinism checked, and detection figures under isolated fault kinds.

use std::sync::{Arc, Mutex};

use synod_core::Duration;
use synod_sim::scenarios::heartbeat::{Cause, DetectionFigures, HeartbeatScenario, percentile};
use synod_sim::{FaultMix, FaultSelection, PartitionKinds, RunOptions, Scenario};

fn heartbeat() -> Box<dyn Scenario> {
    Box::new(HeartbeatScenario::new(5))
}

#[test]
fn swarm_sweep_passes_and_every_seed_replays_identically() {
    // Checks the CI-sized sweep: 256 seeds, each drawing its own fault mix, each run twice;
    // every history must satisfy the durability and self-suspicion invariants, the healed
    // core must settle, and both runs of a seed must give the same trace.
    let options = RunOptions::default();
    let outcome = synod_sim::sweep(&heartbeat, &options, 0..256, 2, true);
    let reports: Vec<String> = outcome
        .failures()
        .filter_map(|run| run.failure_report())
        .collect();
    assert!(reports.is_empty(), "failing seeds:\n{}", reports.join("\n"));
    assert_eq!(outcome.passed_count(), 256);
}

/// Runs `seeds` seeds of the heartbeat cluster with one fixed fault mix and returns the
/// merged detection figures.
fn figures_under(mix: FaultMix, seeds: u64) -> DetectionFigures {
    let sink = Arc::new(Mutex::new(DetectionFigures::default()));
    let shared = sink.clone();
    let factory =
        move || Box::new(HeartbeatScenario::with_sink(5, shared.clone())) as Box<dyn Scenario>;
    let options = RunOptions {
        faults: FaultSelection::Fixed(mix),
        safety_duration: Duration::from_secs(30),
        ..RunOptions::default()
    };
    let outcome = synod_sim::sweep(&factory, &options, 0..seeds, 2, false);
    let reports: Vec<String> = outcome
        .failures()
        .filter_map(|run| run.failure_report())
        .collect();
    assert!(reports.is_empty(), "failing seeds:\n{}", reports.join("\n"));
    sink.lock().unwrap().clone()
}

#[test]
fn crashes_are_detected_within_a_second_of_virtual_time_without_false_suspicions() {
    // Checks the detector's promise under crashes alone: with 100ms heartbeats and the
    // default threshold, every detected crash is suspected within 1s of virtual time (about
    // five missed heartbeats plus a tick), and no healthy peer is ever suspected.
    let mut mix = FaultMix::none();
    mix.crashes = true;
    let figures = figures_under(mix, 8);
    let mut samples = figures.detection_samples[&Cause::Crash].clone();
    samples.sort();
    assert!(
        samples.len() > 50,
        "only {} crash detections",
        samples.len()
    );
    let max = percentile(&samples, 100);
    assert!(
        max < Duration::from_secs(1),
        "slowest crash detection took {max}"
    );
    assert!(
        percentile(&samples, 50) > Duration::from_millis(300),
        "too eager to suspect"
    );
    assert_eq!(figures.false_suspicions_count, 0);
}

#[test]
fn partitions_are_detected_by_the_side_that_stops_hearing() {
    // Checks detection across every partition pattern (halves, isolation, one-way, bridge,
    // swizzle-clog): the observer cut off from a peer suspects it, within 1s of the cut.
    let mut mix = FaultMix::none();
    mix.partitions = PartitionKinds {
        halves: true,
        isolate: true,
        one_way: true,
        bridge: true,
        swizzle_clog: true,
    };
    let figures = figures_under(mix, 8);
    let mut samples = figures.detection_samples[&Cause::Partition].clone();
    samples.sort();
    assert!(
        samples.len() > 50,
        "only {} partition detections",
        samples.len()
    );
    assert!(percentile(&samples, 99) < Duration::from_secs(1));
    assert_eq!(figures.false_suspicions_count, 0);
}
