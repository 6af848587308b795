//! Running one seed: the outcome, its failure report and the command that replays it.

use std::fmt::Write as _;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

use synod_core::{Duration, Instant, Validate};

use crate::FailureClass;
use crate::network::PathStats;
use crate::options::RunOptions;
use crate::panics::{QuietPanics, payload_text, take_last_panic};
use crate::scenario::Scenario;
use crate::sim::{Failure, NodeCounters, Simulation, Verdict};

/// Builds a fresh scenario for each run.
pub type ScenarioFactory<'a> = &'a dyn Fn() -> Box<dyn Scenario>;

/// Everything a run leaves behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub scenario: String,
    pub seed: u64,
    pub verdict: Verdict,
    /// The hash of the whole trace; the same seed must always give the same hash.
    pub trace_hash: u64,
    pub events_count: u64,
    pub virtual_duration: Duration,
    /// The run's fault mix, one line.
    pub fault_mix: String,
    /// The scenario's figures (empty when the run crashed).
    pub report: Vec<(String, String)>,
    pub network: PathStats,
    pub nodes: NodeCounters,
    pub buggify_fires_count: u64,
    /// Flags the replay command must carry besides the scenario and the seed.
    pub replay_flags: String,
    /// An error writing the readable trace, if there was one.
    pub trace_error: Option<String>,
}

impl RunOutcome {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }

    pub fn failure(&self) -> Option<&Failure> {
        match &self.verdict {
            Verdict::Passed => None,
            Verdict::Failed(failure) => Some(failure),
        }
    }

    /// 0 for a pass, else the failure class's exit code.
    pub fn exit_code(&self) -> i32 {
        self.failure()
            .map_or(0, |failure| failure.class.exit_code())
    }

    /// The one command that replays this run.
    pub fn replay_command(&self) -> String {
        let mut command = format!(
            "synod sim --scenario {} --seed {}",
            self.scenario, self.seed
        );
        if !self.replay_flags.is_empty() {
            command.push(' ');
            command.push_str(&self.replay_flags);
        }
        command
    }

    /// One line: seed, verdict, events, virtual time, hash.
    pub fn summary_line(&self) -> String {
        let verdict = match self.failure() {
            None => "passed".to_string(),
            Some(failure) => format!("FAILED ({})", failure.class.name()),
        };
        format!(
            "seed {}: {verdict}, {} events, {} virtual, trace {:016x}",
            self.seed, self.events_count, self.virtual_duration, self.trace_hash
        )
    }

    /// For a failed run: the seed, the class, what broke, and the command that replays it.
    pub fn failure_report(&self) -> Option<String> {
        let failure = self.failure()?;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "seed {} FAILED: {} failure (exit code {})",
            self.seed,
            failure.class.name(),
            failure.class.exit_code()
        );
        let at = failure
            .at
            .map_or_else(|| "outside the event loop".to_string(), |at| at.to_string());
        let _ = writeln!(text, "  what broke: {} (at {at})", failure.description);
        let _ = writeln!(text, "  fault mix:  {}", self.fault_mix);
        let _ = writeln!(
            text,
            "  run:        {} events, {} virtual, trace hash {:016x}",
            self.events_count, self.virtual_duration, self.trace_hash
        );
        let _ = writeln!(text, "  replay:     {}", self.replay_command());
        let _ = writeln!(
            text,
            "  trace it:   {} --trace trace.log",
            self.replay_command()
        );
        Some(text)
    }
}

/// Runs one seed to its end. Every panic (the scenario's, the simulator's) is caught and
/// reported as a crash failure.
pub fn run_seed(factory: ScenarioFactory<'_>, options: &RunOptions, seed: u64) -> RunOutcome {
    run_seed_traced(factory, options, seed, None)
}

/// [`run_seed`], writing a readable line per event to `trace` when given.
pub fn run_seed_traced(
    factory: ScenarioFactory<'_>,
    options: &RunOptions,
    seed: u64,
    trace: Option<Box<dyn io::Write>>,
) -> RunOutcome {
    let _quiet = QuietPanics::enter();
    let mut outcome = RunOutcome {
        scenario: "?".to_string(),
        seed,
        verdict: Verdict::Passed,
        trace_hash: 0,
        events_count: 0,
        virtual_duration: Duration::ZERO,
        fault_mix: String::new(),
        report: Vec::new(),
        network: PathStats::default(),
        nodes: NodeCounters::default(),
        buggify_fires_count: 0,
        replay_flags: options.replay_flags.clone(),
        trace_error: None,
    };
    if let Err(error) = options.validate() {
        outcome.verdict = crashed(format!("invalid run options: {error}"), None);
        return outcome;
    }
    let mut simulation: Option<Simulation> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let scenario = factory();
        outcome.scenario = scenario.name().to_string();
        let simulation = simulation.insert(Simulation::new(scenario, options, seed, trace));
        let verdict = simulation.run();
        let report = simulation.report();
        (verdict, report)
    }));
    match result {
        Ok((verdict, report)) => {
            outcome.verdict = verdict;
            outcome.report = report;
        }
        Err(payload) => {
            let text = take_last_panic().unwrap_or_else(|| payload_text(payload.as_ref()));
            let at = simulation.as_ref().map(Simulation::now);
            outcome.verdict = crashed(format!("panic outside the actors: {text}"), at);
        }
    }
    if let Some(simulation) = simulation.as_mut() {
        fill_from(&mut outcome, simulation);
    }
    outcome
}

/// A buffered file for the readable trace (`synod sim --trace FILE`).
pub fn trace_file(path: &std::path::Path) -> io::Result<Box<dyn io::Write>> {
    let file = std::fs::File::create(path)?;
    Ok(Box::new(io::BufWriter::new(file)))
}

fn crashed(description: String, at: Option<Instant>) -> Verdict {
    Verdict::Failed(Failure {
        class: FailureClass::Crash,
        description,
        at,
    })
}

fn fill_from(outcome: &mut RunOutcome, simulation: &mut Simulation) {
    outcome.trace_hash = simulation.trace_hash();
    outcome.events_count = simulation.events_count();
    outcome.virtual_duration = simulation.now() - Instant::ZERO;
    outcome.fault_mix = simulation.fault_mix().summary();
    outcome.network = simulation.network().totals();
    outcome.nodes = simulation.counters();
    outcome.buggify_fires_count = simulation.buggify().fires_count();
    outcome.trace_error = simulation.finish_trace();
}

/// What a benchmark run did; the caller (the binary) measures the wall time around it,
/// since this crate reads no real clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchOutcome {
    pub events_count: u64,
    pub virtual_duration: Duration,
    pub verdict: Option<Verdict>,
}

/// Runs one seed for at most `events_max` events (or to the end of the run, whichever
/// comes first), without the report.
pub fn bench(
    factory: ScenarioFactory<'_>,
    options: &RunOptions,
    seed: u64,
    events_max: u64,
) -> BenchOutcome {
    let mut simulation = Simulation::new(factory(), options, seed, None);
    while simulation.events_count() < events_max && simulation.step() {}
    BenchOutcome {
        events_count: simulation.events_count(),
        virtual_duration: simulation.now() - Instant::ZERO,
        verdict: simulation.verdict().cloned(),
    }
}
