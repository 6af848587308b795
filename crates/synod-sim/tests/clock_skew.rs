//! Lease reads under clock-rate skew, in the `raft` scenario: the leader measures each
//! voter's clock rate from its append answers and suspends the lease while a voter's clock
//! is proven to run apart from its own faster than the lease's drift bound. One voter's clock
//! is set to drift from the start of a fault-free run; the scenario's lease assumes 410 ppm
//! (`lease_for_drift` of the default 200 ppm per clock).

use synod_core::Duration;
use synod_sim::scenarios::raft::RaftScenario;
use synod_sim::{FaultMix, RunOptions, Simulation, Verdict, node_id};

/// A fault-free 3-node run (no operator) of 5 virtual seconds whose second node's clock
/// drifts `drift_ppm` from the start. Returns the verdict, the report and the replay hint.
fn drifting_run(drift_ppm: i64, seed: u64) -> (Verdict, Vec<(String, String)>, String) {
    let options = RunOptions {
        safety_duration: Duration::from_secs(5),
        ..RunOptions::with_faults(FaultMix::none())
    };
    let scenario = RaftScenario::new(3).without_operator();
    let mut simulation = Simulation::new(Box::new(scenario), &options, seed, None);
    simulation.set_drift(node_id(1), drift_ppm);
    let verdict = simulation.run();
    let report = simulation.report();
    let replay = format!(
        "seed {seed}, drift {drift_ppm} ppm on node 2: \
         cargo test -p synod-sim --test clock_skew"
    );
    (verdict, report, replay)
}

fn figure(report: &[(String, String)], name: &str) -> u64 {
    let value = report.iter().find(|(key, _)| key == name);
    value.map_or_else(
        || panic!("no figure {name} in {report:?}"),
        |(_, value)| value.parse().unwrap_or(0),
    )
}

fn verdict_text(report: &[(String, String)]) -> &str {
    let value = report.iter().find(|(key, _)| key == "history_verdict");
    value.map_or("", |(_, value)| value.as_str())
}

#[test]
fn a_voter_clock_five_percent_fast_suspends_the_lease_and_the_history_stays_linearizable() {
    // Checks that with one voter's clock 5% fast (over a hundred times the bound) the leader
    // proves the skew and refuses lease reads (they go the ReadIndex way), and that the
    // history, lease reads included, is linearizable.
    for seed in [1, 2] {
        let (verdict, report, replay) = drifting_run(50_000, seed);
        assert_eq!(verdict, Verdict::Passed, "{replay}: {report:?}");
        let history = verdict_text(&report);
        assert!(
            history.starts_with("linearizable=valid lost-writes=valid"),
            "{replay}: {history}"
        );
        let refused = figure(&report, "lease_refused_skew");
        let served = figure(&report, "reads_served_by_lease");
        assert!(refused > 100, "{replay}: {report:?}");
        // Only the reads before the skew was proven (the first samples of a run) used the
        // lease.
        eprintln!("{replay}: {refused} lease reads refused for skew, {served} served by lease");
        assert!(served < refused / 4, "{replay}: {report:?}");
        assert!(
            figure(&report, "reads_lease_ok") > 100,
            "{replay}: {report:?}"
        );
    }
}

#[test]
fn a_voter_clock_inside_the_drift_bound_keeps_the_lease() {
    // Checks that a skew inside the bound (150 ppm against a 410 ppm bound) never suspends
    // the lease: lease reads are served by the lease throughout, none refused.
    for seed in [1, 2] {
        let (verdict, report, replay) = drifting_run(150, seed);
        assert_eq!(verdict, Verdict::Passed, "{replay}: {report:?}");
        assert_eq!(figure(&report, "lease_refused_skew"), 0, "{replay}");
        assert!(
            figure(&report, "reads_served_by_lease") > 100,
            "{replay}: {report:?}"
        );
    }
}
