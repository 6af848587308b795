//! The relay actors of `common::relay` run unchanged under the tokio executor and under the
//! simulator, and both must produce exactly the observations the relay's rules predict.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use common::relay::{RelayConfig, RelayObservation, boot_relay};
use common::{start_cluster, test_config, wait_until};
use synod_actor::System;
use synod_core::{Duration, NodeId};
use synod_sim::{ClusterView, FaultMix, RunOptions, Scenario};

type Observed = BTreeMap<NodeId, Vec<RelayObservation>>;

/// Runs the relay over real TCP on loopback and returns what each node observed.
async fn observed_under_tokio(relay: &RelayConfig) -> Observed {
    let configs = relay.ring.iter().map(|node| test_config(*node)).collect();
    let nodes = start_cluster(configs, |_| boot_relay(relay.clone()));
    let last_holder = relay.holder(relay.final_token());
    let last = nodes.iter().find(|node| node.node == last_holder).unwrap();
    wait_until(
        "the final token arrives",
        StdDuration::from_secs(10),
        || {
            last.handle
                .observations_of::<RelayObservation>()
                .last()
                .is_some_and(|seen| seen.token == relay.final_token())
        },
    )
    .await;
    let mut observed = Observed::new();
    for node in nodes {
        let id = node.node;
        let report = node.stop().await;
        let seen = report
            .observations_of::<RelayObservation>()
            .into_iter()
            .copied()
            .collect();
        observed.insert(id, seen);
    }
    observed
}

/// The relay as a simulator scenario: it records what each node observes and makes progress
/// once the final token has arrived.
struct RelayScenario {
    relay: RelayConfig,
    observed: Arc<Mutex<Observed>>,
    next: u64,
}

impl Scenario for RelayScenario {
    fn name(&self) -> &str {
        "relay"
    }

    fn nodes_count(&self) -> usize {
        self.relay.ring.len()
    }

    fn boot(&mut self, _node: NodeId, system: &mut System) {
        boot_relay(self.relay.clone())(system);
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        let mut observed = self.observed.lock().unwrap();
        for (index, record) in view.observations_since(self.next) {
            self.next = index + 1;
            if let Some(seen) = record.downcast::<RelayObservation>() {
                observed.entry(record.node).or_default().push(*seen);
            }
        }
        Ok(())
    }

    fn progress(&mut self, _view: &ClusterView<'_>) -> bool {
        let last_holder = self.relay.holder(self.relay.final_token());
        let observed = self.observed.lock().unwrap();
        let last = observed.get(&last_holder).and_then(|seen| seen.last());
        last.is_some_and(|seen| seen.token == self.relay.final_token())
    }

    fn liveness_bound(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn report(&mut self, _view: &ClusterView<'_>) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Runs the relay in the simulator with `mix` and returns what each node observed.
fn observed_under_simulation(relay: &RelayConfig, mix: FaultMix, seed: u64) -> Observed {
    let observed = Arc::new(Mutex::new(Observed::new()));
    let (shared, config) = (observed.clone(), relay.clone());
    let factory = move || {
        let scenario = RelayScenario {
            relay: config.clone(),
            observed: shared.clone(),
            next: 0,
        };
        Box::new(scenario) as Box<dyn Scenario>
    };
    let options = RunOptions {
        safety_duration: Duration::from_secs(1),
        ..RunOptions::with_faults(mix)
    };
    let outcome = synod_sim::run_seed(&factory, &options, seed);
    assert!(
        outcome.passed(),
        "{}",
        outcome.failure_report().unwrap_or_default()
    );
    observed.lock().unwrap().clone()
}

fn expected(relay: &RelayConfig) -> Observed {
    relay
        .ring
        .iter()
        .map(|node| (*node, relay.expected_observations(*node)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_relay_actors_observe_the_same_under_tokio_and_the_simulator() {
    // Checks that one actor system, unchanged, runs on both executors: a token circles a
    // 3-node ring five times over real TCP and over the simulated network (healthy, then
    // losing and duplicating messages), and every node observes exactly its own turns, in
    // order, once each, under all three.
    let relay = RelayConfig::new(vec![NodeId(1), NodeId(2), NodeId(3)], 5);
    let real = observed_under_tokio(&relay).await;
    assert_eq!(real, expected(&relay));
    let healthy = observed_under_simulation(&relay, FaultMix::none(), 1);
    assert_eq!(healthy, real);
    let mut lossy = FaultMix::none();
    lossy.network.loss_probability = 0.2;
    lossy.network.duplicate_probability = 0.2;
    let faulty = observed_under_simulation(&relay, lossy, 2);
    assert_eq!(faulty, real);
}
