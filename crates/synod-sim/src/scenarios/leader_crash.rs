//! The leader-crash experiment: how fast a Raft cluster replaces a dead leader, and how
//! often it holds an election it did not need, under one way of suspecting the leader.
//!
//! One run is the [`super::raft`] scenario (five replicas, closed-loop clients, every safety
//! check after every event) on a jittery network, driven in three stretches of virtual
//! time:
//!
//! 1. Warm-up: the cluster boots and elects a leader.
//! 2. Alive: for `alive` the leader stays up while nodes (the leader too) are paused now and
//!    then for less than the maximal election timeout. Every election started here is
//!    needless: the leader was alive all along and came back before a randomized timer
//!    could have been forced to fire.
//! 3. Crash: the leader of the moment crashes (and stays down). The run records when a
//!    survivor first starts a (pre-)vote and when a survivor leads a later term.
//!
//! The pauses are drawn from a PRNG of their own, seeded from the run's seed, so both modes
//! of a seed get the same pause schedule; the cluster's own randomness diverges as soon as
//! the modes behave differently.

use synod_core::{Duration, Instant, NodeId, Prng, Term};
use synod_node::replica::ReplicaActor;
use synod_raft::{LeaderSuspicion, Raft, Role};

use super::raft::RaftScenario;
use crate::mix::FaultMix;
use crate::network::NetworkConfig;
use crate::options::{FaultSelection, RunOptions};
use crate::scenario::{ClusterView, NodeStatus};
use crate::sim::{Simulation, Verdict};

/// Nodes in the experiment's cluster.
pub const LEADER_CRASH_NODES_COUNT: usize = 5;
/// How finely the crash stretch is observed.
const OBSERVE_STEP: Duration = Duration::from_millis(1);
/// A fixed salt that separates the pause schedule's PRNG from the simulator's.
const PAUSE_SEED_SALT: u64 = 0x9a05_e5c4_ed01_e000;

/// The settings of one run.
#[derive(Clone, Debug)]
pub struct LeaderCrashOptions {
    pub suspicion: LeaderSuspicion,
    /// Boot and first election.
    pub warm_up: Duration,
    /// The stretch with the leader alive, pauses and jitter.
    pub alive: Duration,
    /// Mean time between two pauses (exponential).
    pub pause_interval_mean: Duration,
    /// Pauses last a uniform time in `[pause_duration_min, pause_duration_max]`.
    pub pause_duration_min: Duration,
    pub pause_duration_max: Duration,
    /// Multiplies the network's latency jitter mean (300 us by default).
    pub jitter_factor: u32,
    /// The cap on one message's latency.
    pub latency_max: Duration,
    /// How long after the crash a new leader must appear.
    pub replace_deadline: Duration,
}

impl LeaderCrashOptions {
    /// The settings of `synod bench elections` and the simulator's tests: 2 s of warm-up,
    /// 20 s alive with a pause of 10-180 ms every 500 ms on average (the maximal election
    /// timeout is 200 ms), exponential jitter with a 6 ms mean (capped at the network's 50 ms
    /// latency bound), and 10 s for a new leader.
    pub fn new(suspicion: LeaderSuspicion) -> LeaderCrashOptions {
        LeaderCrashOptions {
            suspicion,
            warm_up: Duration::from_secs(2),
            alive: Duration::from_secs(20),
            pause_interval_mean: Duration::from_millis(500),
            pause_duration_min: Duration::from_millis(10),
            pause_duration_max: Duration::from_millis(180),
            jitter_factor: 20,
            latency_max: NetworkConfig::default().latency_max,
            replace_deadline: Duration::from_secs(10),
        }
    }
}

impl LeaderCrashOptions {
    /// The same run on a network with a wide latency spread: jitter with a 30 ms mean and
    /// a 150 ms cap, so that the gaps between a leader's messages vary by about as much as
    /// the election timeout itself.
    pub fn with_wide_jitter(mut self) -> LeaderCrashOptions {
        self.jitter_factor = 100;
        self.latency_max = Duration::from_millis(150);
        self
    }
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderCrashFigures {
    pub seed: u64,
    /// Elections (pre-votes included) started in the alive stretch.
    pub needless_elections: u64,
    /// Pauses in the alive stretch.
    pub pauses: u64,
    /// From the crash to the first (pre-)vote by a survivor.
    pub detection: Option<Duration>,
    /// From the crash to a survivor leading a later term.
    pub new_leader: Option<Duration>,
    /// A safety check that failed, or why the run could not be measured.
    pub failure: Option<String>,
}

/// The Raft engine of `node`'s current replica, if it is running.
pub fn raft_of<'a>(view: &ClusterView<'a>, node: NodeId) -> Option<&'a Raft> {
    let system = view.system(node)?;
    let replica = system.actor::<ReplicaActor>(system.find("replica")?)?;
    replica.raft()
}

/// The node leading the highest term, with that term.
fn leader_now(view: &ClusterView<'_>) -> Option<(NodeId, Term)> {
    view.node_ids()
        .filter(|node| view.status(*node) == NodeStatus::Up)
        .filter_map(|node| raft_of(view, node).map(|raft| (node, raft)))
        .filter(|(_, raft)| raft.role() == Role::Leader)
        .map(|(node, raft)| (node, raft.term()))
        .max_by_key(|(_, term)| *term)
}

/// Elections started per node (index = node id - 1), zero for a node without a replica.
fn elections(view: &ClusterView<'_>) -> Vec<u64> {
    view.node_ids()
        .map(|node| raft_of(view, node).map_or(0, |raft| raft.stats().elections_started))
        .collect()
}

/// The run options of the experiment: no nemesis (the driver pauses and crashes), a
/// jittery network, and a safety phase longer than the run so liveness is never judged.
pub fn leader_crash_run_options(options: &LeaderCrashOptions) -> RunOptions {
    let mut mix = FaultMix::none();
    mix.network.jitter_factor = options.jitter_factor;
    let total = options.warm_up + options.alive + options.replace_deadline;
    RunOptions {
        safety_duration: total + Duration::from_secs(60),
        network: NetworkConfig {
            latency_max: options.latency_max,
            ..NetworkConfig::default()
        },
        faults: FaultSelection::Fixed(mix),
        ..RunOptions::default()
    }
}

/// Runs one seed of the experiment.
pub fn run_leader_crash(seed: u64, options: &LeaderCrashOptions) -> LeaderCrashFigures {
    let scenario = RaftScenario::new(LEADER_CRASH_NODES_COUNT)
        .without_operator()
        .without_history_check_in_report()
        .with_leader_suspicion(options.suspicion.clone());
    let run_options = leader_crash_run_options(options);
    let mut simulation = Simulation::new(Box::new(scenario), &run_options, seed, None);
    let mut figures = LeaderCrashFigures {
        seed,
        needless_elections: 0,
        pauses: 0,
        detection: None,
        new_leader: None,
        failure: None,
    };
    if let Err(failure) = run_alive(&mut simulation, options, &mut figures) {
        figures.failure = Some(failure);
        return figures;
    }
    if let Err(failure) = run_crash(&mut simulation, options, &mut figures) {
        figures.failure = Some(failure);
    }
    figures
}

fn verdict_failure(verdict: Option<&Verdict>) -> Result<(), String> {
    match verdict {
        None | Some(Verdict::Passed) => Ok(()),
        Some(Verdict::Failed(failure)) => Err(format!(
            "{} at {:?}: {}",
            failure.class.name(),
            failure.at,
            failure.description
        )),
    }
}

/// Warm-up, then the alive stretch with its pauses; counts the elections of the latter.
fn run_alive(
    simulation: &mut Simulation,
    options: &LeaderCrashOptions,
    figures: &mut LeaderCrashFigures,
) -> Result<(), String> {
    let alive_start = Instant::ZERO + options.warm_up;
    verdict_failure(simulation.run_until(alive_start))?;
    let before = elections(&simulation.view());
    let mut pauses = Prng::from_seed(figures.seed ^ PAUSE_SEED_SALT);
    let alive_end = alive_start + options.alive;
    let interval_mean_nanos = options.pause_interval_mean.as_nanos() as f64;
    let (duration_min, duration_max) = (
        options.pause_duration_min.as_nanos(),
        options.pause_duration_max.as_nanos(),
    );
    let mut at = alive_start;
    loop {
        let gap = pauses.exponential(interval_mean_nanos, 10.0 * interval_mean_nanos);
        at += Duration::from_nanos(gap as u64);
        let node = NodeId(1 + pauses.below(LEADER_CRASH_NODES_COUNT as u64));
        let duration = Duration::from_nanos(pauses.range_inclusive(duration_min, duration_max));
        if at >= alive_end {
            break;
        }
        verdict_failure(simulation.run_until(at))?;
        if simulation.view().status(node) == NodeStatus::Up {
            simulation.pause(node, duration);
            figures.pauses += 1;
        }
    }
    verdict_failure(simulation.run_until(alive_end))?;
    let after = elections(&simulation.view());
    figures.needless_elections = after
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .sum();
    Ok(())
}

/// Crashes the leader of the moment and watches the survivors replace it.
fn run_crash(
    simulation: &mut Simulation,
    options: &LeaderCrashOptions,
    figures: &mut LeaderCrashFigures,
) -> Result<(), String> {
    // The alive stretch may end inside an election its last pause caused: wait for a leader.
    let wait_end = simulation.now() + options.replace_deadline;
    let (leader, term) = loop {
        if let Some(found) = leader_now(&simulation.view()) {
            break found;
        }
        if simulation.now() >= wait_end {
            return Err("no leader to crash at the end of the alive stretch".to_string());
        }
        let next = simulation.now() + OBSERVE_STEP;
        verdict_failure(simulation.run_until(next))?;
    };
    let baseline = elections(&simulation.view());
    let crashed_at = simulation.now();
    simulation.crash(leader, false);
    let deadline = crashed_at + options.replace_deadline;
    while simulation.now() < deadline {
        let next = simulation.now() + OBSERVE_STEP;
        verdict_failure(simulation.run_until(next))?;
        let view = simulation.view();
        let since_crash = view.now().saturating_duration_since(crashed_at);
        if figures.detection.is_none() {
            let now = elections(&view);
            if now.iter().zip(&baseline).any(|(now, before)| now > before) {
                figures.detection = Some(since_crash);
            }
        }
        if let Some((_, new_term)) = leader_now(&view).filter(|(node, _)| *node != leader)
            && new_term > term
        {
            figures.new_leader = Some(since_crash);
            return Ok(());
        }
    }
    Err(format!(
        "no new leader within {} of crashing {leader}",
        options.replace_deadline
    ))
}
