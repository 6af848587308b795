//! synod-node's log actor under the whole simulator (swarm faults: crashes and power loss,
//! torn and failing writes and fsyncs, partitions, pauses, clock faults), CI-sized.

use synod_sim::scenarios::wal::WalScenario;
use synod_sim::{RunOptions, Scenario};

fn wal() -> Box<dyn Scenario> {
    Box::new(WalScenario::new(3))
}

#[test]
fn every_recovered_log_holds_exactly_what_was_acknowledged_and_appended() {
    // Checks 24 swarm seeds, each run twice: at every recovery of every node the log is a
    // sequence of appended entries holding every acknowledged one, the healed core goes on
    // acknowledging appends, and both runs of a seed give the same trace.
    let outcome = synod_sim::sweep(&wal, &RunOptions::default(), 0..24, 2, true);
    let reports: Vec<String> = outcome
        .failures()
        .filter_map(|run| run.failure_report())
        .collect();
    assert!(reports.is_empty(), "failing seeds:\n{}", reports.join("\n"));
    let recoveries: u64 = outcome
        .outcomes
        .iter()
        .flat_map(|run| run.report.iter())
        .filter(|(name, _)| name == "recoveries_checked")
        .map(|(_, value)| value.parse::<u64>().unwrap())
        .sum();
    assert!(recoveries > 24, "only {recoveries} recoveries were checked");
}
