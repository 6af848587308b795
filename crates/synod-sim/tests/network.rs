//! Network faults in whole runs: loss, duplication, reordering, the in-flight bound and
//! swizzle-clog, checked through the per-path counters.

mod common;

use common::{at_millis, options, pingpong};
use synod_core::{Duration, NodeId};
use synod_sim::scenarios::pingpong::PingPong;
use synod_sim::{FaultMix, LinkFaults, NetworkConfig, PartitionKinds, Simulation, run_seed};

/// Every message accepted onto the network is accounted for: delivered, dropped for one
/// reason, or still in flight.
fn assert_conserved(simulation: &Simulation, nodes_count: u64) {
    let totals = simulation.network().totals();
    let mut in_flight = 0;
    for from in 1..=nodes_count {
        for to in 1..=nodes_count {
            in_flight += u64::from(simulation.network().in_flight(NodeId(from), NodeId(to)));
        }
    }
    let accounted = totals.delivered_count
        + totals.dropped_loss_count
        + totals.dropped_partition_count
        + totals.dropped_down_count
        + in_flight;
    assert_eq!(
        totals.sent_count + totals.duplicated_count,
        accounted,
        "{totals:?}"
    );
}

#[test]
fn loss_duplication_and_reordering_are_counted_at_their_rates() {
    // Checks the network fault counters over a 10s run: loss near 25% of sends,
    // duplication near 25% of the rest, reordering present, and conservation of messages.
    let mix = FaultMix {
        network: LinkFaults {
            loss_probability: 0.25,
            duplicate_probability: 0.25,
            reorder_probability: 0.3,
            reorder_delay_max: Duration::from_millis(20),
            jitter_factor: 1,
        },
        ..FaultMix::none()
    };
    let mut simulation = Simulation::new(Box::new(PingPong::new(3)), &options(mix, 60), 11, None);
    simulation.run_until(at_millis(10_000));
    let totals = simulation.network().totals();
    let sent = totals.sent_count as f64;
    let loss = totals.dropped_loss_count as f64 / sent;
    let duplication = totals.duplicated_count as f64 / (sent - totals.dropped_loss_count as f64);
    assert!(totals.sent_count > 2_000, "{totals:?}");
    assert!((0.21..0.29).contains(&loss), "loss {loss}");
    assert!(
        (0.21..0.29).contains(&duplication),
        "duplication {duplication}"
    );
    assert!(totals.reordered_count > 0);
    assert_eq!(
        totals.dropped_partition_count + totals.dropped_full_count,
        0
    );
    assert_conserved(&simulation, 3);
}

#[test]
fn in_flight_bound_refuses_sends_to_a_paused_node() {
    // Checks the per-path bound: while n2 is paused, messages to it stay in flight (held),
    // at most 8 per path; further sends are refused and counted as full, and everything
    // held is delivered on resume.
    let mix = FaultMix::none();
    let options = synod_sim::RunOptions {
        network: NetworkConfig {
            in_flight_per_path_max: 8,
            ..NetworkConfig::default()
        },
        ..options(mix, 60)
    };
    let mut simulation = Simulation::new(Box::new(PingPong::new(3)), &options, 12, None);
    simulation.run_until(at_millis(500));
    simulation.pause(NodeId(2), Duration::from_secs(2));
    simulation.run_until(at_millis(2_400));
    let path = simulation.network().path_stats(NodeId(1), NodeId(2));
    assert!(path.dropped_full_count > 10, "{path:?}");
    assert_eq!(simulation.network().in_flight(NodeId(1), NodeId(2)), 8);
    simulation.run_until(at_millis(3_000));
    assert!(simulation.network().in_flight(NodeId(1), NodeId(2)) < 8);
    assert_conserved(&simulation, 3);
}

#[test]
fn swizzle_clog_delays_messages_and_the_run_still_passes() {
    // Checks swizzle-clog under the nemesis: nodes get clogged, arrivals on clogged links
    // wait and retry (none are dropped for it), and ping-pong's invariant holds.
    let mix = FaultMix {
        partitions: PartitionKinds {
            swizzle_clog: true,
            ..PartitionKinds::default()
        },
        nemesis_interval_mean: Duration::from_millis(200),
        ..FaultMix::none()
    };
    let outcome = run_seed(&pingpong(5), &options(mix, 10), 13);
    assert!(outcome.passed(), "{outcome:?}");
    assert!(outcome.nodes.clogs_count >= 3, "{:?}", outcome.nodes);
    assert!(outcome.network.clog_delayed_count > 0);
    assert_eq!(outcome.network.dropped_partition_count, 0);
}
