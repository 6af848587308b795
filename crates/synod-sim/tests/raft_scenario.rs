//! synod-node's replicas (Raft, the key-value store and their storage) with closed-loop
//! clients under the whole simulator: election safety, committed entries, leader
//! completeness and state-machine digests after every event, and every history checked for
//! linearizability by synod-check.

use synod_core::Duration;
use synod_sim::scenarios::raft::RaftScenario;
use synod_sim::{FaultMix, RunOptions, RunOutcome, Scenario, SweepOutcome};

/// Seeds of the every-fault sweep; with the swarm sweep, CI runs 1,000 seeds. A seed costs
/// about 0.08 s of CPU in the test profile (0.1 s for a swarm seed);
/// `synod sim --scenario raft --seeds A..B --faults all` runs any range in release.
const ALL_FAULTS_SEEDS: u64 = 500;
/// Seeds of the swarm sweep (each seed draws its own fault mix).
const SWARM_SEEDS: u64 = 500;
/// Seeds of the three-node swarm sweep: with three nodes the operator's removals leave two
/// voters, or one, and a removed leader's restart can leave it the only complete log (seed
/// 173 found that Raft then needed it to campaign outside its configuration).
const THREE_NODE_SEEDS: u64 = 200;
/// Worker threads of the sweeps (each run stays on one thread).
const THREADS: usize = 4;

fn raft() -> Box<dyn Scenario> {
    Box::new(RaftScenario::new(5))
}

/// The scenario without its operator (no membership changes or leader transfers).
fn raft_without_operator() -> Box<dyn Scenario> {
    Box::new(RaftScenario::new(5).without_operator())
}

fn all_faults_options() -> RunOptions {
    RunOptions {
        replay_flags: "--faults all".to_string(),
        ..RunOptions::with_faults(synod_sim::fault_preset("all").expect("a preset"))
    }
}

fn figure<'a>(run: &'a RunOutcome, name: &str) -> &'a str {
    run.report
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

fn figure_sum(outcome: &SweepOutcome, name: &str) -> u64 {
    outcome
        .outcomes
        .iter()
        .map(|run| figure(run, name).parse::<u64>().unwrap_or(0))
        .sum()
}

fn assert_all_passed(outcome: &SweepOutcome) {
    let reports: Vec<String> = outcome
        .failures()
        .filter_map(RunOutcome::failure_report)
        .collect();
    assert!(reports.is_empty(), "failing seeds:\n{}", reports.join("\n"));
}

#[test]
fn a_fault_free_run_elects_a_leader_commits_and_is_linearizable() {
    // Checks that without faults (and without the operator's changes) the cluster elects
    // one leader, commits thousands of entries, serves reads at both levels, that its
    // history is linearizable, and that with its stale reads it keeps the session guarantees
    // and is sequentially consistent.
    let options = RunOptions {
        safety_duration: Duration::from_secs(5),
        ..RunOptions::with_faults(FaultMix::none())
    };
    let run = synod_sim::run_seed(&raft_without_operator, &options, 7);
    assert!(run.passed(), "{}", run.failure_report().unwrap_or_default());
    assert_eq!(figure(&run, "terms_with_leader"), "1", "{:?}", run.report);
    assert_eq!(figure(&run, "lease_reads"), "on");
    assert_eq!(
        figure(&run, "history_verdict"),
        "linearizable=valid lost-writes=valid stale-included-sequential=valid \
         stale-included-session=valid"
    );
    let number = |name| figure(&run, name).parse::<u64>().unwrap();
    assert!(number("commit_index_max") > 1_000, "{:?}", run.report);
    assert!(number("writes_ok") > 500, "{:?}", run.report);
    assert!(number("reads_linearizable_ok") > 100, "{:?}", run.report);
    assert!(number("reads_lease_ok") > 100, "{:?}", run.report);
    assert_eq!(number("operations_info"), 0, "{:?}", run.report);
    assert!(number("digests_compared") > 1_000, "{:?}", run.report);
}

#[test]
fn every_seed_with_every_fault_kind_stays_safe_and_linearizable() {
    // Checks a sweep of seeds with every fault kind on at once (`--faults all`): no run
    // breaks a Raft invariant or linearizability, every healed core makes progress, and the
    // faults really exercise the protocol (elections, snapshots, unknown outcomes).
    let outcome = synod_sim::sweep(
        &raft,
        &all_faults_options(),
        0..ALL_FAULTS_SEEDS,
        THREADS,
        false,
    );
    assert_all_passed(&outcome);
    assert!(figure_sum(&outcome, "leaderships_won") > 2 * ALL_FAULTS_SEEDS);
    // The operator changed membership and moved leadership during the runs.
    assert!(figure_sum(&outcome, "operator_changes_done") > ALL_FAULTS_SEEDS);
    assert!(figure_sum(&outcome, "snapshots_installed") > 0);
    assert!(figure_sum(&outcome, "operations_info") > 0);
}

#[test]
fn every_swarm_seed_stays_safe_and_linearizable() {
    // Checks a sweep of swarm seeds (each draws its own fault mix, some with clocks outside
    // their bound, where leases are off): no invariant breaks, every history is
    // linearizable and every healed core makes progress.
    let outcome = synod_sim::sweep(
        &raft,
        &RunOptions::default(),
        0..SWARM_SEEDS,
        THREADS,
        false,
    );
    assert_all_passed(&outcome);
}

#[test]
fn every_three_node_swarm_seed_stays_safe_and_live() {
    // Checks a sweep of swarm seeds on three nodes, where membership changes cut deepest:
    // no invariant breaks, every history is linearizable and every healed core (a majority
    // of each voter set in force) makes progress.
    let three = || Box::new(RaftScenario::new(3)) as Box<dyn Scenario>;
    let options = RunOptions {
        replay_flags: "--nodes 3".to_string(),
        ..RunOptions::default()
    };
    let outcome = synod_sim::sweep(&three, &options, 0..THREE_NODE_SEEDS, THREADS, false);
    assert_all_passed(&outcome);
    assert!(figure_sum(&outcome, "operator_changes_done") > THREE_NODE_SEEDS);
}

#[test]
fn leases_are_off_when_clocks_leave_their_bound() {
    // Checks that a run whose fault mix drives clocks outside their bound configures no
    // lease (lease reads fall back to ReadIndex) and still passes.
    let mut mix = FaultMix::none();
    mix.clock_outside_bound = true;
    let options = RunOptions {
        safety_duration: Duration::from_secs(3),
        ..RunOptions::with_faults(mix)
    };
    let run = synod_sim::run_seed(&raft, &options, 3);
    assert!(run.passed(), "{}", run.failure_report().unwrap_or_default());
    assert_eq!(figure(&run, "lease_reads"), "off");
    assert_eq!(figure(&run, "reads_served_by_lease"), "0");
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    // Checks determinism under every fault kind: each seed run twice gives the same trace
    // hash, event count and verdict (the sweep compares them), and a third run outside the
    // sweep gives the same figures.
    let options = all_faults_options();
    let outcome = synod_sim::sweep(&raft, &options, 100..104, THREADS, true);
    assert_all_passed(&outcome);
    let first = &outcome.outcomes[0];
    let again = synod_sim::run_seed(&raft, &options, first.seed);
    assert_eq!(again.trace_hash, first.trace_hash);
    assert_eq!(again.events_count, first.events_count);
    assert_eq!(again.report, first.report);
}
