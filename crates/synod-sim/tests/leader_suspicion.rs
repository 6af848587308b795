//! Phi-accrual leader suspicion in the raft scenario: the whole simulator's safety checks and
//! the history check still hold with it, and a crashed leader is replaced.

use synod_raft::{LeaderSuspicion, PhiSuspicion};
use synod_sim::scenarios::leader_crash::{LeaderCrashOptions, run_leader_crash};
use synod_sim::scenarios::raft::RaftScenario;
use synod_sim::{RunOptions, RunOutcome, Scenario};

fn phi() -> LeaderSuspicion {
    LeaderSuspicion::PhiAccrual(PhiSuspicion::default())
}

fn raft_with_phi() -> Box<dyn Scenario> {
    Box::new(RaftScenario::new(5).with_leader_suspicion(phi()))
}

fn figure<'a>(run: &'a RunOutcome, name: &str) -> &'a str {
    run.report
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

#[test]
fn phi_suspicion_keeps_every_check_under_faults() {
    // Checks that with phi-accrual suspicion in every replica, seeds under every fault kind
    // (crashes, pauses, partitions, clocks, disks, the operator's membership changes and
    // leader transfers) pass every safety check after every event, reach liveness after the
    // heal, and leave a linearizable history.
    for (preset, seeds) in [("all", 0..6u64), ("pause", 0..3), ("crash", 0..3)] {
        let options = RunOptions {
            replay_flags: format!("--faults {preset}"),
            ..RunOptions::with_faults(synod_sim::fault_preset(preset).expect("a preset"))
        };
        for seed in seeds {
            let run = synod_sim::run_seed(&raft_with_phi, &options, seed);
            assert!(
                run.passed(),
                "phi suspicion, --faults {preset}, seed {seed}: {}",
                run.failure_report().unwrap_or_default()
            );
            let verdict = figure(&run, "history_verdict");
            assert!(
                verdict.starts_with("linearizable=valid"),
                "seed {seed}: {verdict}"
            );
        }
    }
}

#[test]
fn a_crashed_leader_is_replaced_under_phi_suspicion() {
    // Checks the leader-crash experiment in phi mode: under jitter and pauses every seed
    // passes its safety checks, a survivor starts a (pre-)vote after the crash and a new
    // leader of a later term follows within the maximal election timeout plus rounds of
    // voting, and phi's floor holds: nobody campaigns within 100 ms less a tick of silence.
    let options = LeaderCrashOptions::new(phi());
    for seed in 0..4 {
        let figures = run_leader_crash(seed, &options);
        assert_eq!(figures.failure, None, "seed {seed}: {figures:?}");
        let detection = figures.detection.expect("a survivor campaigned");
        let new_leader = figures.new_leader.expect("a new leader");
        assert!(detection <= new_leader, "seed {seed}: {figures:?}");
        assert!(
            detection >= synod_core::Duration::from_millis(70),
            "seed {seed}: campaigned before the floor: {figures:?}"
        );
        assert!(
            new_leader <= synod_core::Duration::from_secs(2),
            "seed {seed}: {figures:?}"
        );
        assert!(figures.pauses > 0, "seed {seed}: {figures:?}");
    }
}
