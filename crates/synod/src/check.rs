//! `synod check`: judges a recorded history (JSON Lines, docs/consistency.md) against the
//! consistency models, or generates a history that is valid by construction.
//!
//! Exit codes: 0 valid, 1 violation, 2 unusable input, 3 unknown (a key's search ran out of
//! its time or memory budget before deciding; never reported as valid).

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use synod_check::generate::{SHAPE_NAMES, Shape, generate};
use synod_check::{CheckOptions, History, Models, ParseOptions, Report, Verdict, html};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The history file (JSON Lines); `-` reads standard input.
    history: Option<String>,
    /// Models to check (repeat or comma-separate); all by default.
    #[arg(long = "model", value_enum, value_delimiter = ',')]
    models: Vec<Model>,
    /// Time budget per key, in seconds; a key whose search exceeds it is "unknown".
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Time budget of the whole-history sequential-consistency search, in seconds (it runs
    /// only when some key is not linearizable but every key is sequentially consistent on
    /// its own); when it runs out the model is "unknown".
    #[arg(long, default_value_t = 60.0)]
    sequential_timeout: f64,
    /// Configuration budget of that search (a limit that does not depend on the machine).
    #[arg(long, default_value_t = synod_check::SEQUENTIAL_NODES_MAX_DEFAULT)]
    sequential_nodes_max: u64,
    /// Memory budget of all searches together, in GiB.
    #[arg(long, default_value_t = 3.0)]
    memory_gib: f64,
    /// Worker threads for the per-key searches (default: the machine's parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Where to write the HTML timeline of the first linearizability violation (or, when
    /// there is none, of the first sequential-consistency violation).
    #[arg(long, default_value = "synod-check.html")]
    html: String,
    /// Do not write the HTML timeline.
    #[arg(long)]
    no_html: bool,
    /// Check the lines before a truncated last line (a history still being written).
    #[arg(long)]
    allow_truncated: bool,
    /// Instead of checking, write a generated valid history of this shape to --out.
    #[arg(long, value_name = "SHAPE")]
    generate: Option<String>,
    /// The file --generate writes.
    #[arg(long)]
    out: Option<String>,
    /// The seed of --generate.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Linearizable,
    Sequential,
    Session,
    LostWrites,
    All,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    if let Some(shape) = &args.generate {
        return generate_history(shape, args);
    }
    let Some(path) = &args.history else {
        bail!("give a history file to check (or --generate SHAPE --out FILE)");
    };
    let text = read_history(path)?;
    let options = ParseOptions {
        allow_truncated: args.allow_truncated,
    };
    let history = match synod_check::parse_history(&text, options) {
        Ok(history) => history,
        Err(error) => {
            if args.json {
                let json = serde_json::json!({"error": error.to_string(), "line": error.line()});
                println!("{json}");
            }
            eprintln!("synod check: {path}: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = check(&history, args)?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text(&history));
    }
    write_timeline(&history, &report, args)?;
    Ok(ExitCode::from(match report.verdict {
        Verdict::Valid => 0,
        Verdict::Violation => 1,
        Verdict::Unknown => 3,
    }))
}

fn read_history(path: &str) -> Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the history from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading the history {path}"))
}

fn check(history: &History, args: &CheckArgs) -> Result<Report> {
    if !args.timeout.is_finite() || args.timeout <= 0.0 {
        bail!(
            "--timeout ({}) must be a positive number of seconds",
            args.timeout
        );
    }
    if !args.sequential_timeout.is_finite() || args.sequential_timeout <= 0.0 {
        bail!(
            "--sequential-timeout ({}) must be a positive number of seconds",
            args.sequential_timeout
        );
    }
    if !args.memory_gib.is_finite() || args.memory_gib <= 0.0 {
        bail!("--memory-gib ({}) must be positive", args.memory_gib);
    }
    let selected = |model: Model| {
        args.models.is_empty() || args.models.contains(&Model::All) || args.models.contains(&model)
    };
    let models = Models {
        linearizable: selected(Model::Linearizable),
        sequential: selected(Model::Sequential),
        session: selected(Model::Session),
        lost_writes: selected(Model::LostWrites),
    };
    let started = Instant::now();
    let clock = move || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |count| count.get()));
    let options = CheckOptions {
        models,
        key_timeout_nanos: Some((args.timeout * 1e9) as u64),
        clock_nanos: &clock,
        memory_bytes_max: (args.memory_gib * (1u64 << 30) as f64) as usize,
        threads: threads.max(1),
        sequential_timeout_nanos: Some((args.sequential_timeout * 1e9) as u64),
        sequential_nodes_max: args.sequential_nodes_max,
        session_steps_max: synod_check::session::STEPS_MAX_DEFAULT,
        // Each key's search is bounded by the timeout above.
        key_sequential_nodes_max: u64::MAX,
    };
    Ok(synod_check::check(history, &options))
}

fn write_timeline(history: &History, report: &Report, args: &CheckArgs) -> Result<()> {
    if args.no_html {
        return Ok(());
    }
    // The first linearizability violation, else the first sequential one (when only that
    // model was checked).
    let linear = report
        .linearizable
        .as_ref()
        .and_then(|model| model.violations.first());
    let sequential = report
        .sequential
        .as_ref()
        .and_then(|model| model.violations.first());
    let (page, what) = match (linear, sequential) {
        (Some(violation), _) => (
            html::timeline(history, violation),
            format!("key {:?}", violation.key),
        ),
        (None, Some(violation)) => (
            html::sequential_timeline(history, violation),
            format!("keys {:?}", violation.keys),
        ),
        (None, None) => return Ok(()),
    };
    std::fs::write(&args.html, page)
        .with_context(|| format!("writing the timeline {}", args.html))?;
    eprintln!("timeline of {what} written to {}", args.html);
    Ok(())
}

fn generate_history(name: &str, args: &CheckArgs) -> Result<ExitCode> {
    let Some(shape) = Shape::named(name, args.seed) else {
        bail!(
            "unknown shape {name:?}: the shapes are {}",
            SHAPE_NAMES.join(", ")
        );
    };
    let Some(out) = &args.out else {
        bail!("--generate needs --out FILE");
    };
    std::fs::write(out, generate(&shape)).with_context(|| format!("writing {out}"))?;
    eprintln!(
        "wrote {out}: {} operations on {} keys from {} processes (seed {})",
        shape.operations, shape.keys, shape.processes, args.seed
    );
    Ok(ExitCode::SUCCESS)
}
