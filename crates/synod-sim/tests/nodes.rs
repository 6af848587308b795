//! Node faults driven by hand: crash and restart from disk, pause, partitions, clocks.

mod common;

use common::{at_millis, healthy};
use synod_core::{Duration, NodeId};
use synod_sim::scenarios::pingpong::{
    Acknowledged, COUNTER_FILE, PingPongActor, Recovered, recover_counter,
};
use synod_sim::{ClusterView, LinkSet, NodeStatus, Simulation};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);

fn actor<'a>(view: &ClusterView<'a>, node: NodeId) -> Option<&'a PingPongActor> {
    let system = view.system(node)?;
    system.actor::<PingPongActor>(system.find("pingpong")?)
}

/// Acknowledgements by `node` recorded at or after `since_millis`.
fn acks_since(simulation: &Simulation, node: NodeId, since_millis: u64) -> usize {
    let view = simulation.view();
    view.observations_since(0)
        .filter(|(_, record)| record.node == node && record.at >= at_millis(since_millis))
        .filter(|(_, record)| record.downcast::<Acknowledged>().is_some())
        .count()
}

#[test]
fn crash_drops_volatile_state_and_restart_recovers_from_disk() {
    // Checks a power-loss crash: the system is gone at once, in-flight disk work and
    // messages to the node are discarded, and the restarted node (boot 2) recovers at least
    // every value it acknowledged from what is durable on its disk.
    let mut simulation = healthy(3, 1);
    assert_eq!(simulation.run_until(at_millis(2_000)), None);
    let durable_before = actor(&simulation.view(), N1).unwrap().durable();
    assert!(durable_before > 10, "only {durable_before} values in 2s");
    let processed_before = simulation
        .view()
        .system(N1)
        .unwrap()
        .stats()
        .messages_processed_count;
    simulation.crash(N1, true);
    let view = simulation.view();
    assert_eq!(view.status(N1), NodeStatus::Down);
    assert!(view.system(N1).is_none());
    assert_eq!(view.boot_generation(N1), 1);
    let on_media = recover_counter(simulation.disk(N1).durable_contents(COUNTER_FILE).unwrap());
    assert!(on_media >= durable_before);
    simulation.run_until(at_millis(2_500));
    assert!(simulation.network().totals().dropped_down_count > 0);
    simulation.restart(N1);
    simulation.run_until(at_millis(2_600));
    let view = simulation.view();
    assert_eq!(
        (view.status(N1), view.boot_generation(N1)),
        (NodeStatus::Up, 2)
    );
    let system = view.system(N1).unwrap();
    assert!(system.stats().messages_processed_count < processed_before);
    let recovered: Vec<u64> = view
        .observations_since(0)
        .filter(|(_, record)| record.node == N1 && record.boot == 2)
        .filter_map(|(_, record)| record.downcast::<Recovered>().map(|r| r.counter))
        .collect();
    assert_eq!(recovered, vec![on_media]);
    assert!(actor(&view, N1).unwrap().durable() >= durable_before);
    assert_eq!(simulation.counters().power_losses_count, 1);
    assert_eq!(simulation.disk(N1).stats().crashes, 1);
}

#[test]
fn pause_holds_messages_and_disk_completions_until_resume() {
    // Checks a pause: the node handles nothing while paused (its processed count stands
    // still) although messages reach it and are counted as held; on resume they are all
    // handed over and it acknowledges again.
    let mut simulation = healthy(3, 2);
    simulation.run_until(at_millis(1_000));
    simulation.pause(N2, Duration::from_millis(1_500));
    let processed = |simulation: &Simulation| {
        let view = simulation.view();
        view.system(N2).unwrap().stats().messages_processed_count
    };
    let before = processed(&simulation);
    simulation.run_until(at_millis(2_400));
    assert_eq!(simulation.view().status(N2), NodeStatus::Paused);
    assert_eq!(processed(&simulation), before);
    let held = simulation.network().path_stats(N1, N2).held_count;
    assert!(held > 10, "held {held}");
    assert_eq!(acks_since(&simulation, N2, 1_100), 0);
    simulation.run_until(at_millis(3_000));
    assert_eq!(simulation.view().status(N2), NodeStatus::Up);
    assert!(processed(&simulation) > before + held);
    assert!(acks_since(&simulation, N2, 2_500) > 0);
    assert_eq!(simulation.network().in_flight(N1, N2), 0);
}

#[test]
fn isolating_a_node_drops_its_links_both_ways_until_healed() {
    // Checks a partition set by hand: only the isolated node's links drop messages, it
    // acknowledges nothing meanwhile, and after healing it acknowledges again.
    let mut simulation = healthy(3, 3);
    simulation.run_until(at_millis(1_000));
    simulation.set_partition(LinkSet::isolate(3, N3));
    simulation.run_until(at_millis(3_000));
    let network = simulation.network();
    assert!(network.path_stats(N1, N3).dropped_partition_count > 0);
    assert!(network.path_stats(N3, N2).dropped_partition_count > 0);
    assert_eq!(network.path_stats(N1, N2).dropped_partition_count, 0);
    assert_eq!(acks_since(&simulation, N3, 1_100), 0);
    assert!(acks_since(&simulation, N1, 1_100) > 0);
    simulation.set_partition(LinkSet::none());
    simulation.run_until(at_millis(4_000));
    assert!(acks_since(&simulation, N3, 3_000) > 0);
}

#[test]
fn one_way_partition_lets_the_other_direction_through() {
    // Checks an asymmetric partition: messages n1 -> n2 are dropped while n2 -> n1 are
    // still delivered.
    let mut simulation = healthy(2, 4);
    simulation.set_partition(LinkSet::one_way(&[N1], &[N2]));
    simulation.run_until(at_millis(2_000));
    let network = simulation.network();
    let (forward, backward) = (network.path_stats(N1, N2), network.path_stats(N2, N1));
    assert!(forward.dropped_partition_count > 0);
    assert_eq!(forward.delivered_count, 0);
    assert_eq!(backward.dropped_partition_count, 0);
    assert!(backward.delivered_count > 0);
}

#[test]
fn drift_scales_node_timers_and_jumps_move_only_the_wall_clock() {
    // Checks that node-local timers run at the node's clock rate: at +50% drift a node
    // sends half again as many pings as a node at 0, at -25% a quarter fewer; and that a
    // wall-clock jump shows in the offset while the monotonic clock keeps its pace.
    let mut simulation = healthy(3, 5);
    simulation.set_drift(N1, 500_000);
    simulation.set_drift(N2, -250_000);
    simulation.run_until(at_millis(20_000));
    let sent_by = |node: NodeId| actor(&simulation.view(), node).unwrap().pings_sent_count();
    let (fast, slow, normal) = (sent_by(N1) as f64, sent_by(N2) as f64, sent_by(N3) as f64);
    assert!(
        (fast / normal - 1.5).abs() < 0.05,
        "fast {fast} normal {normal}"
    );
    assert!(
        (slow / normal - 0.75).abs() < 0.05,
        "slow {slow} normal {normal}"
    );
    let view = simulation.view();
    let reading = view.clock(N1);
    assert_eq!(reading.drift_ppm, 500_000);
    assert!(!reading.within_bound);
    assert!(view.clock(N3).within_bound);
    let local_before = view.clock(N3).local;
    simulation.jump_clock(N3, -7_000_000_000);
    let reading = simulation.view().clock(N3);
    assert_eq!(reading.offset_nanos, -7_000_000_000);
    assert_eq!(reading.local, local_before);
    assert!(!simulation.view().clocks_within_bound());
}
