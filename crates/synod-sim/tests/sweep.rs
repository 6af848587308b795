//! Sweeps: a canary that must be caught on exactly the seeds it breaks, and results that do
//! not depend on the number of threads.

mod common;

use common::{pingpong, splitmix};
use synod_actor::System;
use synod_core::{Duration, Instant, NodeId};
use synod_sim::scenarios::pingpong::PingPong;
use synod_sim::{ClusterView, FailureClass, RunOptions, Scenario, sweep};

/// Ping-pong with a deliberately broken check: it fails, at the first event past the middle
/// of the safety phase, on the seeds where `splitmix(seed) % 100 == 0` (about 1%).
struct Canary {
    inner: PingPong,
    middle: Instant,
}

impl Scenario for Canary {
    fn name(&self) -> &str {
        "canary"
    }
    fn nodes_count(&self) -> usize {
        self.inner.nodes_count()
    }
    fn boot(&mut self, node: NodeId, system: &mut System) {
        self.inner.boot(node, system);
    }
    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        if view.now() >= self.middle && splitmix(view.seed()).is_multiple_of(100) {
            return Err(format!("canary tripped on seed {}", view.seed()));
        }
        self.inner.check(view)
    }
    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        self.inner.progress(view)
    }
    fn liveness_bound(&self) -> Duration {
        self.inner.liveness_bound()
    }
    fn report(&mut self, view: &ClusterView<'_>) -> Vec<(String, String)> {
        self.inner.report(view)
    }
}

#[test]
fn canary_is_caught_on_exactly_the_expected_seeds() {
    // Checks the sweep end to end under swarm faults: over seeds 0..300 the failures are
    // exactly the seeds the canary's formula picks (computed here independently), each a
    // correctness failure at the middle of the safety phase, reported in seed order with
    // the command that replays it; every other seed passes.
    let options = RunOptions {
        safety_duration: Duration::from_secs(4),
        ..RunOptions::default()
    };
    let middle = Instant::ZERO + Duration::from_secs(2);
    let factory = move || {
        Box::new(Canary {
            inner: PingPong::new(3),
            middle,
        }) as Box<dyn Scenario>
    };
    let expected: Vec<u64> = (0..300)
        .filter(|seed| splitmix(*seed).is_multiple_of(100))
        .collect();
    assert!((1..=8).contains(&expected.len()), "{expected:?}");
    let outcome = sweep(&factory, &options, 0..300, 4, false);
    let seeds: Vec<u64> = outcome.outcomes.iter().map(|run| run.seed).collect();
    assert_eq!(seeds, (0..300).collect::<Vec<u64>>());
    let failed: Vec<u64> = outcome.failures().map(|run| run.seed).collect();
    assert_eq!(failed, expected, "{}", outcome.report());
    for run in outcome.failures() {
        let failure = run.failure().unwrap();
        assert_eq!(failure.class, FailureClass::Correctness);
        assert!(
            failure
                .at
                .is_some_and(|at| at >= middle && at < middle + Duration::from_millis(50))
        );
        let command = format!("synod sim --scenario canary --seed {}", run.seed);
        assert_eq!(run.replay_command(), command);
        let report = run.failure_report().unwrap();
        assert!(report.contains(&command) && report.contains("--trace trace.log"));
        assert!(report.contains("canary tripped") && report.contains("correctness"));
    }
    assert_eq!(outcome.exit_code(), 1);
    assert!(outcome.report().starts_with("300 seeds: "));
}

#[test]
fn sweep_results_do_not_depend_on_the_thread_count() {
    // Checks that one thread and three threads give identical outcomes in identical order.
    let options = RunOptions {
        safety_duration: Duration::from_secs(2),
        ..RunOptions::default()
    };
    let one = sweep(&pingpong(3), &options, 40..52, 1, false);
    let three = sweep(&pingpong(3), &options, 40..52, 3, false);
    assert_eq!(one, three);
    assert_eq!(one.failed_count(), 0, "{}", one.report());
}
