//! Whole runs: determinism, the readable trace, failure classes, halts, buggify, bench.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{options, pingpong};
use synod_actor::{Actor, ChildSpec, Context, System, SystemConfig};
use synod_core::{Duration, FaultPoints, Instant, NodeId};
use synod_sim::scenarios::pingpong::PingPong;
use synod_sim::{
    BuggifyRates, ClusterView, FailureClass, FaultMix, Phase, RunOptions, Scenario, bench,
    run_seed, run_seed_traced, sweep, trace_file,
};

/// Ping-pong with parts deliberately changed, to provoke each failure class.
struct Altered {
    inner: PingPong,
    name: &'static str,
    never_progress: bool,
    panic_in_check_after: Option<Duration>,
}

impl Altered {
    fn new(name: &'static str) -> Altered {
        Altered {
            inner: PingPong::new(3),
            name,
            never_progress: false,
            panic_in_check_after: None,
        }
    }
}

impl Scenario for Altered {
    fn name(&self) -> &str {
        self.name
    }
    fn nodes_count(&self) -> usize {
        self.inner.nodes_count()
    }
    fn boot(&mut self, node: NodeId, system: &mut System) {
        self.inner.boot(node, system);
    }
    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        if let Some(after) = self.panic_in_check_after {
            assert!(
                view.now() < Instant::ZERO + after,
                "the check itself is broken"
            );
        }
        self.inner.check(view)
    }
    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        !self.never_progress && self.inner.progress(view)
    }
    fn liveness_bound(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn report(&mut self, view: &ClusterView<'_>) -> Vec<(String, String)> {
        self.inner.report(view)
    }
}

#[test]
fn same_seed_replays_the_same_run_and_other_seeds_differ() {
    // Checks determinism under swarm faults: the same seed gives an identical outcome
    // (trace hash, events, report), different seeds give different hashes, and a sweep
    // that runs every seed twice finds no difference.
    let options = RunOptions {
        safety_duration: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let factory = pingpong(5);
    let first = run_seed(&factory, &options, 7);
    assert!(first.passed(), "{first:?}");
    assert_eq!(run_seed(&factory, &options, 7), first);
    let hashes: std::collections::BTreeSet<u64> = (0..20)
        .map(|seed| run_seed(&factory, &options, seed).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 20);
    let checked = sweep(&factory, &options, 0..12, 3, true);
    assert_eq!(checked.failed_count(), 0, "{}", checked.report());
}

/// A trace sink the test can read back.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn readable_trace_does_not_change_the_run() {
    // Checks that writing the readable trace leaves the hash unchanged and that it has a
    // line for boots, sends, arrivals, disk operations and the phase change.
    let options = RunOptions {
        safety_duration: Duration::from_secs(2),
        ..RunOptions::default()
    };
    let plain = run_seed(&pingpong(3), &options, 21);
    let sink = Shared::default();
    let traced = run_seed_traced(&pingpong(3), &options, 21, Some(Box::new(sink.clone())));
    assert_eq!(traced, plain);
    let text = String::from_utf8(sink.0.borrow().clone()).unwrap();
    for expected in [
        "n1   boot 1",
        "send to n",
        "arrive from n",
        "disk write",
        "liveness phase",
    ] {
        assert!(text.contains(expected), "no {expected:?} in the trace");
    }
    assert!(text.lines().count() as u64 >= plain.events_count);
    let path = std::env::temp_dir().join(format!("synod-sim-trace-{}.log", std::process::id()));
    let file = trace_file(&path).unwrap();
    let to_file = run_seed_traced(&pingpong(3), &options, 21, Some(file));
    assert_eq!(to_file.trace_hash, plain.trace_hash);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn reaching_the_event_limit_is_a_liveness_failure() {
    // Checks the run's event bound: a run cut off by events_max fails with the liveness
    // class after exactly that many events, naming the limit.
    let options = RunOptions {
        events_max: 1_000,
        ..options(FaultMix::none(), 3)
    };
    let outcome = run_seed(&pingpong(3), &options, 2);
    let failure = outcome.failure().unwrap();
    assert_eq!(
        (failure.class, outcome.events_count),
        (FailureClass::Liveness, 1_000)
    );
    assert!(
        failure.description.contains("limit of 1000 events"),
        "{failure:?}"
    );
}

#[test]
fn missing_progress_is_a_liveness_failure_at_the_bound() {
    // Checks the liveness phase: a scenario whose progress never comes fails with the
    // liveness class (exit code 4) exactly when the bound after healing has passed.
    let factory = || {
        let mut scenario = Altered::new("never");
        scenario.never_progress = true;
        Box::new(scenario) as Box<dyn Scenario>
    };
    let outcome = run_seed(&factory, &options(FaultMix::none(), 3), 1);
    let failure = outcome.failure().expect("a liveness failure");
    assert_eq!(failure.class, FailureClass::Liveness);
    assert_eq!(outcome.exit_code(), 4);
    assert_eq!(failure.at, Some(Instant::ZERO + Duration::from_secs(5)));
    assert!(
        failure.description.contains("liveness bound"),
        "{failure:?}"
    );
    let healthy = run_seed(
        &|| Box::new(Altered::new("ok")) as _,
        &options(FaultMix::none(), 3),
        1,
    );
    assert!(healthy.passed(), "{healthy:?}");
    assert!(healthy.virtual_duration < Duration::from_secs(4));
}

#[test]
fn a_panicking_check_is_a_crash_and_does_not_stop_the_sweep() {
    // Checks that a panic in the scenario (here a failed assertion in its check) is caught
    // and classified as a crash (exit code 3) with its message and location, for every
    // seed of a sweep.
    let factory = || {
        let mut scenario = Altered::new("broken-check");
        scenario.panic_in_check_after = Some(Duration::from_secs(1));
        Box::new(scenario) as Box<dyn Scenario>
    };
    let outcome = sweep(&factory, &options(FaultMix::none(), 3), 0..4, 2, false);
    assert_eq!(outcome.failed_count(), 4);
    for run in &outcome.outcomes {
        let failure = run.failure().unwrap();
        assert_eq!(failure.class, FailureClass::Crash);
        assert!(failure.description.contains("the check itself is broken"));
        assert!(failure.description.contains("tests/runs.rs"), "{failure:?}");
        assert!(run.events_count > 0);
    }
    assert_eq!(outcome.exit_code(), 3);
}

/// Panics on its first tick.
struct Doomed;

impl Actor for Doomed {
    type Message = ();
    fn on_start(&mut self, ctx: &mut Context<'_, ()>) {
        ctx.set_timer(Duration::from_millis(100), ());
    }
    fn on_message(&mut self, _ctx: &mut Context<'_, ()>, _message: ()) {
        panic!("doomed actor reached its tick");
    }
}

struct DoomedScenario {
    panics_are_failures: bool,
}

impl Scenario for DoomedScenario {
    fn name(&self) -> &str {
        "doomed"
    }
    fn nodes_count(&self) -> usize {
        2
    }
    fn system_config(&self, node: NodeId) -> SystemConfig {
        let mut config = SystemConfig::new(node);
        config.root_supervision = config
            .root_supervision
            .intensity(2, Duration::from_secs(10));
        config
    }
    fn boot(&mut self, _node: NodeId, system: &mut System) {
        system.spawn(ChildSpec::new("doomed", || Doomed)).unwrap();
    }
    fn check(&mut self, _view: &ClusterView<'_>) -> Result<(), String> {
        Ok(())
    }
    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        view.node_ids().all(|node| view.system(node).is_some())
    }
    fn liveness_bound(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn report(&mut self, _view: &ClusterView<'_>) -> Vec<(String, String)> {
        Vec::new()
    }
    fn panics_are_failures(&self) -> bool {
        self.panics_are_failures
    }
}

#[test]
fn actor_panics_are_crashes_unless_the_scenario_expects_them() {
    // Checks actor panics: counted as a crash failure (exit code 3, naming the actor and
    // message) when the scenario says so; otherwise the supervisor restarts the actor, the
    // root gives up, and the simulator restarts the halted node after its delay.
    let failing = || {
        Box::new(DoomedScenario {
            panics_are_failures: true,
        }) as Box<dyn Scenario>
    };
    let outcome = run_seed(&failing, &options(FaultMix::none(), 3), 5);
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.class, FailureClass::Crash);
    assert!(
        failure.description.contains("actor doomed on n"),
        "{failure:?}"
    );
    assert!(
        failure
            .description
            .contains("doomed actor reached its tick")
    );
    let tolerated = || {
        Box::new(DoomedScenario {
            panics_are_failures: false,
        }) as Box<dyn Scenario>
    };
    let outcome = run_seed(&tolerated, &options(FaultMix::none(), 3), 5);
    assert!(outcome.passed(), "{outcome:?}");
    assert!(outcome.nodes.halts_count >= 4, "{:?}", outcome.nodes);
    assert!(outcome.nodes.boots_count >= 6, "{:?}", outcome.nodes);
    assert!(
        outcome.nodes.actor_panics_count >= 12,
        "{:?}",
        outcome.nodes
    );
}

/// Boots ping-pong with a ping interval that changes from run to run: deliberately
/// nondeterministic.
struct Flaky {
    inner: PingPong,
}

static FLAKY_RUNS: AtomicU64 = AtomicU64::new(0);

impl Scenario for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn nodes_count(&self) -> usize {
        3
    }
    fn boot(&mut self, node: NodeId, system: &mut System) {
        self.inner.boot(node, system);
    }
    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
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
fn differing_replays_are_reported_as_nondeterminism() {
    // Checks the determinism check of a sweep: a scenario that behaves differently on
    // every run of a seed is reported with the nondeterminism class (exit code 5).
    let factory = || {
        let run = FLAKY_RUNS.fetch_add(1, Ordering::Relaxed);
        let interval = Duration::from_millis(20 + run % 7);
        let inner = PingPong::new(3).with_ping_interval(interval);
        Box::new(Flaky { inner }) as Box<dyn Scenario>
    };
    let outcome = sweep(&factory, &options(FaultMix::none(), 1), 0..2, 1, true);
    for run in &outcome.outcomes {
        let failure = run.failure().expect("nondeterminism found");
        assert_eq!(failure.class, FailureClass::Nondeterminism);
        assert!(failure.description.contains("trace hash"), "{failure:?}");
    }
    assert_eq!(outcome.exit_code(), 5);
}

/// Asks a fault point on every tick, through the context and through an owned source,
/// and reports each fire.
struct Prober {
    owned: Option<Box<dyn FaultPoints + Send>>,
}

#[derive(Debug)]
struct Fired;

impl Actor for Prober {
    type Message = ();
    fn on_start(&mut self, ctx: &mut Context<'_, ()>) {
        self.owned = Some(ctx.fault_points());
        ctx.set_timer(Duration::from_millis(10), ());
    }
    fn on_message(&mut self, ctx: &mut Context<'_, ()>, _message: ()) {
        ctx.set_timer(Duration::from_millis(10), ());
        let owned = self.owned.as_mut().expect("set at start");
        if ctx.buggify("test.context") || owned.fires("test.owned") {
            ctx.observe(Fired);
        }
    }
}

struct ProberScenario;

impl Scenario for ProberScenario {
    fn name(&self) -> &str {
        "prober"
    }
    fn nodes_count(&self) -> usize {
        1
    }
    fn boot(&mut self, _node: NodeId, system: &mut System) {
        system
            .spawn(ChildSpec::new("prober", || Prober { owned: None }))
            .unwrap();
    }
    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        let Phase::Liveness { healed_at } = view.phase() else {
            return Ok(());
        };
        let late = view
            .observations_since(0)
            .any(|(_, record)| record.at > healed_at && record.downcast::<Fired>().is_some());
        if late {
            return Err("a fault point fired in the liveness phase".to_string());
        }
        Ok(())
    }
    fn progress(&mut self, view: &ClusterView<'_>) -> bool {
        view.now() > Instant::ZERO + Duration::from_millis(1_500)
    }
    fn liveness_bound(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn report(&mut self, view: &ClusterView<'_>) -> Vec<(String, String)> {
        let fired = view
            .observations_since(0)
            .filter(|(_, record)| record.downcast::<Fired>().is_some())
            .count();
        vec![("fired".to_string(), fired.to_string())]
    }
}

#[test]
fn buggify_points_fire_in_the_safety_phase_only_and_are_counted() {
    // Checks fault points: armed with certainty and firing half the time, both the
    // context's and an owned source's points fire during the safety phase (about 75% of
    // the 100 ticks), never after healing, and the run counts the fires.
    let mix = FaultMix {
        buggify: Some(BuggifyRates {
            arm_probability: 1.0,
            fire_probability: 0.5,
        }),
        ..FaultMix::none()
    };
    let outcome = run_seed(&|| Box::new(ProberScenario) as _, &options(mix, 1), 3);
    assert!(outcome.passed(), "{outcome:?}");
    let fired: u64 = outcome.report[0].1.parse().unwrap();
    assert!((60..=90).contains(&fired), "fired {fired}");
    assert!(outcome.buggify_fires_count >= fired);
    let quiet = run_seed(
        &|| Box::new(ProberScenario) as _,
        &options(FaultMix::none(), 1),
        3,
    );
    assert_eq!(
        (quiet.report[0].1.as_str(), quiet.buggify_fires_count),
        ("0", 0)
    );
}

#[test]
fn bench_stops_at_the_requested_event_count() {
    // Checks the benchmark entry point: it processes exactly the requested number of
    // events when the run is longer, and reports the virtual time reached.
    let options = RunOptions::default();
    let outcome = bench(&pingpong(5), &options, 1, 20_000);
    assert_eq!(outcome.events_count, 20_000);
    assert!(outcome.virtual_duration > Duration::ZERO);
    assert_eq!(outcome.verdict, None);
}
