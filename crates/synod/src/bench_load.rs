//! `synod bench load`: a closed-loop load generator against synod, Redis or etcd.
//!
//! Each client owns one connection and keeps one request in flight. Keys are `key:<n>`, drawn
//! from a seeded PRNG; each value starts with `<writer>:<counter>:` (padded to the value
//! size) so that every value read can be traced to the write that wrote it. Latencies go into
//! HDR histograms per operation; one JSON line per run goes to stdout. Every read is checked
//! against the values written to its key, and `--history` writes the run in the format
//! `synod check` reads, with each value recorded by its `<writer>:<counter>` identity.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value as Json, json};
use synod_client::{Connection, Reply, parse_status};
use synod_core::Prng;

use crate::history_lines::{Event, history_text, key_name};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const CLIENTS_MAX: usize = 4096;
const VALUE_SIZE_MIN: usize = 24;
const VALUE_SIZE_MAX: usize = 1024 * 1024;
const KEYS_MAX: u64 = 10_000_000;
/// The highest latency a histogram records, in microseconds (larger ones saturate).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Most reconnection attempts in a row before a client gives up on the run.
const RECONNECT_ATTEMPTS_MAX: u32 = 50;
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Violations printed as examples; all are counted.
const VIOLATION_EXAMPLES_MAX: usize = 5;

/// Redis has no compare-and-set command: this script is one, with SYNOD.CAS's reply.
const REDIS_CAS_SCRIPT: &str = "local current = redis.call('GET', KEYS[1]) \
    if current == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return {1, ARGV[2]} end \
    return {0, current}";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Synod,
    Redis,
    Etcd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Put,
    Get,
    Mixed,
    Cas,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Linearizable,
    Lease,
    Follower,
    Stale,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Linearizable => "linearizable",
            Level::Lease => "lease",
            Level::Follower => "follower",
            Level::Stale => "stale",
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// What to load: synod, redis or etcd.
    #[arg(long, value_enum)]
    pub target: Target,
    /// Comma-separated host:port list (RESP ports for synod and redis, client URLs' host:port
    /// for etcd).
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[arg(long, value_enum, default_value = "put")]
    pub workload: Workload,
    /// Closed-loop clients, one connection and one request in flight each.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys, key:0 .. key:<keys-1> (shifted by --key-offset).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// The first key's number: runs with disjoint ranges never read each other's writes
    /// (each run's history then holds every write its reads can see).
    #[arg(long, default_value_t = 0)]
    pub key_offset: u64,
    /// Length of the measured phase.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Stop after this many operations in all (or at the duration, whichever comes first).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Read consistency (synod: SYNOD.READ-LEVEL; etcd: stale is a serializable range).
    #[arg(long, value_enum)]
    pub level: Option<Level>,
    /// Share of reads in the mixed workload, in percent.
    #[arg(long, default_value_t = 50)]
    pub read_percent: u8,
    /// Print only the JSON line: no progress bar.
    #[arg(long)]
    pub json: bool,
    /// Write the run as a JSON Lines history for `synod check`.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Bound on one request, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

impl LoadArgs {
    fn validate(&self) -> Result<()> {
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            bail!(
                "bench load: --clients ({}) must be in 1..={CLIENTS_MAX}",
                self.clients
            );
        }
        if !(VALUE_SIZE_MIN..=VALUE_SIZE_MAX).contains(&self.value_size) {
            bail!(
                "bench load: --value-size ({}) must be in {VALUE_SIZE_MIN}..={VALUE_SIZE_MAX} \
                 (a value holds its writer and counter)",
                self.value_size
            );
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            bail!(
                "bench load: --keys ({}) must be in 1..={KEYS_MAX}",
                self.keys
            );
        }
        if self.key_offset > u64::MAX / 2 {
            bail!(
                "bench load: --key-offset ({}) must be at most {}",
                self.key_offset,
                u64::MAX / 2
            );
        }
        if self.duration_secs == 0 || self.timeout_ms == 0 {
            bail!("bench load: --duration-secs and --timeout-ms must be positive");
        }
        if self.read_percent > 100 {
            bail!(
                "bench load: --read-percent ({}) must be at most 100",
                self.read_percent
            );
        }
        if self
            .endpoints
            .iter()
            .any(|endpoint| endpoint.trim().is_empty())
        {
            bail!("bench load: --endpoints has an empty entry");
        }
        if self.target == Target::Redis && self.level.is_some() {
            bail!("bench load: --level applies to synod and etcd, not redis");
        }
        Ok(())
    }

    fn needs_warm_up(&self) -> bool {
        self.workload != Workload::Put
    }
}

pub fn run(args: &LoadArgs) -> Result<ExitCode> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let outcome = runtime.block_on(run_load(args))?;
    let report = outcome.report(args);
    println!("{report}");
    if let Some(path) = &args.history {
        write_history(path, &outcome.clients)?;
        eprintln!("bench load: history written to {}", path.display());
    }
    if outcome.violations.count > 0 {
        eprintln!(
            "bench load: {} reads returned a value nobody wrote to that key, e.g. {}",
            outcome.violations.count,
            outcome.violations.examples.join("; ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// What every client task shares.
struct Shared {
    stop: AtomicBool,
    failed: AtomicBool,
    ops_count: AtomicU64,
    /// Operations left when --requests is given.
    requests_remaining: Option<AtomicU64>,
}

impl Shared {
    /// Takes one operation from the budget; false when the run is over.
    fn take_request(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let Some(remaining) = &self.requests_remaining else {
            return true;
        };
        remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// Where each client connects.
#[derive(Debug, Clone)]
struct Routing {
    target: Target,
    /// Where writes go (the leader; for redis, the server).
    writer_address: String,
    /// Where reads may go, one per client in turn.
    reader_addresses: Vec<String>,
}

async fn run_load(args: &LoadArgs) -> Result<Outcome> {
    let routing = discover_routing(args).await?;
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        ops_count: AtomicU64::new(0),
        requests_remaining: args.requests.map(AtomicU64::new),
    });
    let origin = Instant::now();
    let barrier = Arc::new(Barrier::new(args.clients + 1));
    let mut seeds = Prng::from_seed(args.seed);
    let mut tasks = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let context = ClientContext {
            index,
            args: args.clone(),
            routing: routing.clone(),
            shared: shared.clone(),
            barrier: barrier.clone(),
            origin,
            prng: seeds.fork(),
        };
        tasks.push(tokio::spawn(run_client(context)));
    }
    barrier.wait().await;
    let started = Instant::now();
    if !shared.failed.load(Ordering::Relaxed) {
        show_progress(args, &shared, started).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut clients = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for task in tasks {
        match task.await.context("a client task panicked")? {
            Ok(result) => clients.push(result),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = first_error {
        return Err(error.context("bench load: a client could not run"));
    }
    let violations = verify_reads(&clients);
    Ok(Outcome {
        clients,
        seconds,
        violations,
        routing,
    })
}

/// Updates the progress bar until the duration ends or the clients stop (bounded by the
/// duration).
async fn show_progress(args: &LoadArgs, shared: &Shared, started: Instant) {
    let duration = Duration::from_secs(args.duration_secs);
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(args.duration_secs);
        let template = "{prefix} [{bar:30}] {pos}/{len}s {msg}";
        let style = indicatif::ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{:?} {:?}", args.target, args.workload).to_lowercase());
        bar
    };
    let mut active = args.clients;
    while started.elapsed() < duration && active > 0 {
        tokio::time::sleep(PROGRESS_INTERVAL.min(duration.saturating_sub(started.elapsed()))).await;
        let elapsed = started.elapsed();
        let ops = shared.ops_count.load(Ordering::Relaxed);
        bar.set_position(elapsed.as_secs().min(args.duration_secs));
        bar.set_message(format!(
            "{ops} ops, {:.0} ops/s",
            ops as f64 / elapsed.as_secs_f64().max(1e-9)
        ));
        let budget_spent = shared
            .requests_remaining
            .as_ref()
            .is_some_and(|left| left.load(Ordering::Relaxed) == 0);
        if budget_spent || shared.failed.load(Ordering::Relaxed) {
            active = 0;
        }
    }
    bar.finish_and_clear();
}

struct ClientContext {
    index: usize,
    args: LoadArgs,
    routing: Routing,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    origin: Instant,
    prng: Prng,
}

/// A value's identity: its writer and that writer's counter.
type Identity = (u32, u64);

/// What one read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Absent,
    Value(Identity),
    Unrecognised,
}

/// Everything one client measured and saw.
struct ClientResult {
    histograms: BTreeMap<&'static str, Histogram<u64>>,
    ops_count: u64,
    errors_count: u64,
    /// Every write invoked (its outcome aside): (key, identity).
    writes: Vec<(u64, Identity)>,
    /// Keys whose warm-up write was acknowledged.
    warmed: Vec<u64>,
    /// Every read answered: (key, what it returned, whether it started after warm-up).
    reads: Vec<(u64, Seen)>,
    history: Vec<Event>,
}

/// How an operation failed.
#[derive(Debug)]
struct OpError {
    /// Whether it may have taken effect (`info` in the history) or certainly did not (`fail`).
    ambiguous: bool,
    /// Whether the connection must be replaced.
    reconnect: bool,
    message: String,
}

/// What an operation returned.
enum OpOutput {
    Done,
    Read(Option<Vec<u8>>),
    Cas(bool),
}

async fn run_client(mut context: ClientContext) -> Result<ClientResult> {
    let mut client = LoadClient::new(&context);
    let warm_up = async {
        client.connect(&context).await?;
        if context.args.needs_warm_up() {
            client.warm_up(&context).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if warm_up.is_err() {
        context.shared.failed.store(true, Ordering::Relaxed);
    }
    // Every client reaches the barrier, failed or not, so the run never waits on a client.
    context.barrier.wait().await;
    warm_up?;
    if context.shared.failed.load(Ordering::Relaxed) {
        return Ok(client.result);
    }
    // Bounded: each pass takes one operation from the budget or ends at the stop flag, and
    // the stop flag is set when the duration ends.
    while context.shared.take_request() {
        client.step(&mut context).await?;
        context.shared.ops_count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(client.result)
}

/// One client's connection and bookkeeping.
struct LoadClient {
    backend: Option<Backend>,
    writer: u32,
    counter: u64,
    /// The client's history process id; a new one after each `info` (the old one retires).
    process: u64,
    clients: u64,
    result: ClientResult,
    value_size: usize,
}

impl LoadClient {
    fn new(context: &ClientContext) -> LoadClient {
        let mut histograms = BTreeMap::new();
        for name in ["put", "get", "cas"] {
            let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)
                .expect("the histogram bounds are valid");
            histograms.insert(name, histogram);
        }
        LoadClient {
            backend: None,
            writer: u32::try_from(context.index).expect("clients fit in u32"),
            counter: 0,
            process: context.index as u64,
            clients: context.args.clients as u64,
            result: ClientResult {
                histograms,
                ops_count: 0,
                errors_count: 0,
                writes: Vec::new(),
                warmed: Vec::new(),
                reads: Vec::new(),
                history: Vec::new(),
            },
            value_size: context.args.value_size,
        }
    }

    /// Connects, retrying a bounded number of times.
    async fn connect(&mut self, context: &ClientContext) -> Result<()> {
        let mut last_error = None;
        for _ in 0..RECONNECT_ATTEMPTS_MAX {
            match Backend::connect(context).await {
                Ok(backend) => {
                    self.backend = Some(backend);
                    return Ok(());
                }
                Err(error) => last_error = Some(error),
            }
            if context.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
        let error = last_error.unwrap_or_else(|| anyhow::anyhow!("the run was stopped"));
        Err(error.context(format!(
            "client {}: cannot connect after {RECONNECT_ATTEMPTS_MAX} attempts",
            context.index
        )))
    }

    /// Writes every key this client owns (key % clients == index) once.
    async fn warm_up(&mut self, context: &ClientContext) -> Result<()> {
        let keys = context.args.keys;
        let mut key = context.index as u64;
        // Bounded by the key count.
        while key < keys {
            let number = context.args.key_offset + key;
            if self.put(context, number, false).await? {
                self.result.warmed.push(number);
            }
            key += self.clients;
        }
        Ok(())
    }

    async fn step(&mut self, context: &mut ClientContext) -> Result<()> {
        let key = context.args.key_offset + context.prng.below(context.args.keys);
        let read = match context.args.workload {
            Workload::Put => false,
            Workload::Get | Workload::Cas => true,
            Workload::Mixed => context.prng.below(100) < u64::from(context.args.read_percent),
        };
        if !read {
            self.put(context, key, true).await?;
            return Ok(());
        }
        let seen = self.get(context, key).await?;
        if context.args.workload == Workload::Cas
            && let Some(current) = seen
        {
            self.cas(context, key, current).await?;
        }
        Ok(())
    }

    fn next_value(&mut self) -> (Identity, Vec<u8>) {
        self.counter += 1;
        let identity = (self.writer, self.counter);
        let mut value = format!("{}:{}:", identity.0, identity.1).into_bytes();
        value.resize(self.value_size.max(value.len()), b'x');
        (identity, value)
    }

    /// One put; true when acknowledged.
    async fn put(&mut self, context: &ClientContext, key: u64, measured: bool) -> Result<bool> {
        let (identity, value) = self.next_value();
        self.result.writes.push((key, identity));
        let recorded = Json::String(identity_text(identity));
        self.invoke(context, "write", key, recorded.clone());
        let started = Instant::now();
        let outcome = self.backend_mut().put(&key_name(key), &value).await;
        self.complete(context, "put", key, started, measured, outcome, recorded)
            .await
            .map(|output| output.is_some())
    }

    /// One get; the full value read, when it succeeded and the key held one.
    async fn get(&mut self, context: &ClientContext, key: u64) -> Result<Option<Vec<u8>>> {
        self.invoke(context, "read", key, Json::Null);
        let started = Instant::now();
        let outcome = self.backend_mut().get(&key_name(key)).await;
        let (seen, recorded) = match &outcome {
            Ok(OpOutput::Read(value)) => {
                let seen = recognise(value.as_deref());
                (Some(seen), seen_json(seen, value.as_deref()))
            }
            _ => (None, Json::Null),
        };
        if let Some(seen) = seen {
            self.result.reads.push((key, seen));
        }
        let output = self
            .complete(context, "get", key, started, true, outcome, recorded)
            .await?;
        Ok(match output {
            Some(OpOutput::Read(value)) => value,
            _ => None,
        })
    }

    /// One compare-and-set from `current` to a new value of this client.
    async fn cas(&mut self, context: &ClientContext, key: u64, current: Vec<u8>) -> Result<()> {
        let (identity, value) = self.next_value();
        self.result.writes.push((key, identity));
        let expected = seen_json(recognise(Some(&current)), Some(&current));
        let recorded = json!([expected, identity_text(identity)]);
        self.invoke(context, "cas", key, recorded.clone());
        let started = Instant::now();
        let outcome = self
            .backend_mut()
            .cas(&key_name(key), &current, &value)
            .await;
        let outcome = match outcome {
            Ok(OpOutput::Cas(false)) => Err(OpError {
                ambiguous: false,
                reconnect: false,
                message: String::new(),
            }),
            other => other,
        };
        let compare_failed = matches!(&outcome, Err(error) if error.message.is_empty());
        let result = self
            .complete(context, "cas", key, started, true, outcome, recorded)
            .await?;
        if result.is_none() && compare_failed {
            // A refused compare is an answer, not an error: undo the error count.
            self.result.errors_count -= 1;
        }
        Ok(())
    }

    fn backend_mut(&mut self) -> &mut Backend {
        self.backend
            .as_mut()
            .expect("connected before any operation")
    }

    fn invoke(&mut self, context: &ClientContext, function: &'static str, key: u64, value: Json) {
        let time = nanos_since(context.origin);
        self.result.history.push(Event {
            process: self.process,
            kind: "invoke",
            function,
            key,
            value,
            time,
        });
    }

    /// Records an operation's completion, latency and errors; reconnects when the
    /// connection is lost. `Some(output)` when it succeeded.
    async fn complete(
        &mut self,
        context: &ClientContext,
        operation: &'static str,
        key: u64,
        started: Instant,
        measured: bool,
        outcome: Result<OpOutput, OpError>,
        recorded: Json,
    ) -> Result<Option<OpOutput>> {
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let time = nanos_since(context.origin);
        let function = match operation {
            "put" => "write",
            "get" => "read",
            _ => "cas",
        };
        let (kind, output) = match outcome {
            Ok(output) => ("ok", Some(output)),
            Err(error) => {
                self.result.errors_count += 1;
                if error.reconnect {
                    self.connect(context).await?;
                }
                (if error.ambiguous { "info" } else { "fail" }, None)
            }
        };
        if measured {
            self.result.ops_count += 1;
            if output.is_some() {
                let histogram = self.result.histograms.get_mut(operation).expect("known");
                histogram.saturating_record(latency_us.max(1));
            }
        }
        let value = if kind == "info" && function == "read" {
            Json::Null
        } else {
            recorded
        };
        self.result.history.push(Event {
            process: self.process,
            kind,
            function,
            key,
            value,
            time,
        });
        if kind == "info" {
            self.process += self.clients;
        }
        Ok(output)
    }
}

fn identity_text(identity: Identity) -> String {
    format!("{}:{}", identity.0, identity.1)
}

fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Reads `<writer>:<counter>:` off the front of a value.
fn recognise(value: Option<&[u8]>) -> Seen {
    let Some(value) = value else {
        return Seen::Absent;
    };
    let mut fields = value.splitn(3, |&byte| byte == b':');
    let writer = fields.next().and_then(parse_decimal);
    let counter = fields.next().and_then(parse_decimal);
    match (writer, counter, fields.next()) {
        (Some(writer), Some(counter), Some(_)) => match u32::try_from(writer) {
            Ok(writer) => Seen::Value((writer, counter)),
            Err(_) => Seen::Unrecognised,
        },
        _ => Seen::Unrecognised,
    }
}

fn parse_decimal(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// How a read's value is recorded in the history: its identity, or the text itself.
fn seen_json(seen: Seen, value: Option<&[u8]>) -> Json {
    match seen {
        Seen::Absent => Json::Null,
        Seen::Value(identity) => Json::String(identity_text(identity)),
        Seen::Unrecognised => {
            Json::String(String::from_utf8_lossy(value.unwrap_or_default()).into_owned())
        }
    }
}

/// Reads that returned something no client wrote to that key.
#[derive(Debug, Default)]
struct Violations {
    count: u64,
    examples: Vec<String>,
}

fn verify_reads(clients: &[ClientResult]) -> Violations {
    let written: BTreeSet<(u64, Identity)> = clients
        .iter()
        .flat_map(|client| client.writes.iter().copied())
        .collect();
    let warmed: BTreeSet<u64> = clients
        .iter()
        .flat_map(|client| client.warmed.iter().copied())
        .collect();
    let mut violations = Violations::default();
    for (key, seen) in clients.iter().flat_map(|client| client.reads.iter()) {
        let problem = match seen {
            Seen::Value(identity) if written.contains(&(*key, *identity)) => continue,
            Seen::Absent if !warmed.contains(key) => continue,
            Seen::Value(identity) => format!(
                "key:{key} returned {} which was never written to it",
                identity_text(*identity)
            ),
            Seen::Absent => format!("key:{key} read as absent after its warm-up write"),
            Seen::Unrecognised => format!("key:{key} returned a value no client writes"),
        };
        violations.count += 1;
        if violations.examples.len() < VIOLATION_EXAMPLES_MAX {
            violations.examples.push(problem);
        }
    }
    violations
}

fn write_history(path: &std::path::Path, clients: &[ClientResult]) -> Result<()> {
    let mut events: Vec<&Event> = clients
        .iter()
        .flat_map(|client| client.history.iter())
        .collect();
    let text = history_text(&mut events);
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the history to {}", path.display()))
}

struct Outcome {
    clients: Vec<ClientResult>,
    seconds: f64,
    violations: Violations,
    routing: Routing,
}

impl Outcome {
    fn report(&self, args: &LoadArgs) -> Json {
        let mut total = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3)
            .expect("the histogram bounds are valid");
        let mut per_operation: BTreeMap<&str, Histogram<u64>> = BTreeMap::new();
        for client in &self.clients {
            for (name, histogram) in &client.histograms {
                total.add(histogram).expect("histograms share bounds");
                per_operation
                    .entry(name)
                    .or_insert_with(|| Histogram::new_from(histogram))
                    .add(histogram)
                    .expect("histograms share bounds");
            }
        }
        let ops: u64 = self.clients.iter().map(|client| client.ops_count).sum();
        let errors: u64 = self.clients.iter().map(|client| client.errors_count).sum();
        let mut report = json!({
            "target": format!("{:?}", args.target).to_lowercase(),
            "workload": format!("{:?}", args.workload).to_lowercase(),
            "level": args.level.map_or("default", Level::name),
            "clients": args.clients,
            "value_size": args.value_size,
            "keys": args.keys,
            "ops": ops,
            "errors": errors,
            "violations": self.violations.count,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "ops_per_sec": (ops as f64 / self.seconds.max(1e-9)).round(),
            "writer": self.routing.writer_address,
        });
        add_percentiles(&mut report, &total);
        let mut operations = serde_json::Map::new();
        for (name, histogram) in per_operation.iter().filter(|(_, h)| !h.is_empty()) {
            let mut entry = json!({ "ops": histogram.len() });
            add_percentiles(&mut entry, histogram);
            operations.insert((*name).to_owned(), entry);
        }
        report["operations"] = Json::Object(operations);
        report
    }
}

fn add_percentiles(object: &mut Json, histogram: &Histogram<u64>) {
    let empty = histogram.is_empty();
    let at = |quantile: f64| {
        if empty {
            0
        } else {
            histogram.value_at_quantile(quantile)
        }
    };
    object["p50_us"] = json!(at(0.50));
    object["p90_us"] = json!(at(0.90));
    object["p99_us"] = json!(at(0.99));
    object["p999_us"] = json!(at(0.999));
    object["max_us"] = json!(if empty { 0 } else { histogram.max() });
}

/// Finds where writes and reads go: the leader of synod (SYNOD.STATUS) or etcd
/// (/v3/maintenance/status); the one server of Redis.
async fn discover_routing(args: &LoadArgs) -> Result<Routing> {
    let timeout = Duration::from_millis(args.timeout_ms);
    match args.target {
        Target::Redis => Ok(Routing {
            target: Target::Redis,
            writer_address: args.endpoints[0].clone(),
            reader_addresses: vec![args.endpoints[0].clone()],
        }),
        Target::Synod => discover_synod(args, timeout).await,
        Target::Etcd => discover_etcd(args, timeout).await,
    }
}

async fn discover_synod(args: &LoadArgs, timeout: Duration) -> Result<Routing> {
    let mut problems = Vec::new();
    for endpoint in &args.endpoints {
        let reply = match Connection::connect(endpoint, timeout).await {
            Ok(mut connection) => connection.call(&[b"SYNOD.STATUS"]).await,
            Err(error) => Err(error),
        };
        let status = match reply {
            Ok(reply) => parse_status(&reply),
            Err(error) => Err(error.to_string()),
        };
        match status {
            Ok(status) => {
                let Some(leader) = status.leader_address() else {
                    problems.push(format!("{endpoint}: node {} knows no leader", status.node));
                    continue;
                };
                let mut readers: Vec<String> = status
                    .members
                    .iter()
                    .map(|member| member.resp_address.clone())
                    .collect();
                let spread = matches!(args.level, Some(Level::Follower | Level::Stale));
                if readers.is_empty() || !spread {
                    readers = vec![leader.to_owned()];
                }
                return Ok(Routing {
                    target: Target::Synod,
                    writer_address: leader.to_owned(),
                    reader_addresses: readers,
                });
            }
            Err(problem) => problems.push(format!("{endpoint}: {problem}")),
        }
    }
    bail!(
        "bench load: no synod endpoint named a leader ({}); is the cluster up (synod up)?",
        problems.join("; ")
    )
}

async fn discover_etcd(args: &LoadArgs, timeout: Duration) -> Result<Routing> {
    let mut leader_address = None;
    let mut problems = Vec::new();
    for endpoint in &args.endpoints {
        let status = match EtcdConnection::connect(endpoint, timeout).await {
            Ok(mut connection) => connection.post("/v3/maintenance/status", &json!({})).await,
            Err(error) => Err(error),
        };
        match status {
            Ok(status) => {
                let member = json_id(&status["header"]["member_id"]);
                let leader = json_id(&status["leader"]);
                if member.is_some() && member == leader {
                    leader_address = Some(endpoint.clone());
                    break;
                }
            }
            Err(error) => problems.push(format!("{endpoint}: {}", error.message)),
        }
    }
    let Some(leader) = leader_address else {
        bail!(
            "bench load: no etcd endpoint says it is the leader ({}); is the cluster up?",
            problems.join("; ")
        );
    };
    Ok(Routing {
        target: Target::Etcd,
        writer_address: leader,
        reader_addresses: args.endpoints.clone(),
    })
}

/// An etcd id, sent as a decimal string (uint64 in JSON) or a number.
fn json_id(value: &Json) -> Option<u64> {
    match value {
        Json::String(text) => text.parse().ok(),
        Json::Number(number) => number.as_u64(),
        _ => None,
    }
}

/// One client's connection to the target.
enum Backend {
    Resp {
        connection: Connection,
        /// synod has SYNOD.CAS; Redis gets a Lua script instead.
        synod: bool,
    },
    Etcd {
        connection: EtcdConnection,
        serializable: bool,
    },
}

impl Backend {
    async fn connect(context: &ClientContext) -> Result<Backend> {
        let args = &context.args;
        let timeout = Duration::from_millis(args.timeout_ms);
        let routing = &context.routing;
        let address = if args.workload == Workload::Get {
            &routing.reader_addresses[context.index % routing.reader_addresses.len()]
        } else {
            &routing.writer_address
        };
        match routing.target {
            Target::Synod | Target::Redis => {
                let mut connection = Connection::connect(address, timeout).await?;
                if let Some(level) = args.level {
                    let reply = connection
                        .call(&[b"SYNOD.READ-LEVEL", level.name().as_bytes()])
                        .await?;
                    if let Reply::Error(message) = reply {
                        bail!("{address}: SYNOD.READ-LEVEL {}: {message}", level.name());
                    }
                }
                Ok(Backend::Resp {
                    connection,
                    synod: routing.target == Target::Synod,
                })
            }
            Target::Etcd => {
                let connection = EtcdConnection::connect(address, timeout)
                    .await
                    .map_err(|error| anyhow::anyhow!("{address}: {}", error.message))?;
                Ok(Backend::Etcd {
                    connection,
                    serializable: args.level == Some(Level::Stale),
                })
            }
        }
    }

    async fn put(&mut self, key: &str, value: &[u8]) -> Result<OpOutput, OpError> {
        match self {
            Backend::Resp { connection, .. } => {
                let reply = resp_call(connection, &[b"SET", key.as_bytes(), value]).await?;
                match reply {
                    Reply::Simple(text) if text == "OK" => Ok(OpOutput::Done),
                    other => Err(unexpected("SET", &other)),
                }
            }
            Backend::Etcd { connection, .. } => {
                let body = json!({ "key": base64_encode(key.as_bytes()),
                                   "value": base64_encode(value) });
                connection.post("/v3/kv/put", &body).await?;
                Ok(OpOutput::Done)
            }
        }
    }

    async fn get(&mut self, key: &str) -> Result<OpOutput, OpError> {
        match self {
            Backend::Resp { connection, .. } => {
                match resp_call(connection, &[b"GET", key.as_bytes()]).await? {
                    Reply::Bulk(value) => Ok(OpOutput::Read(value.map(|value| value.to_vec()))),
                    Reply::Null => Ok(OpOutput::Read(None)),
                    other => Err(unexpected("GET", &other)),
                }
            }
            Backend::Etcd {
                connection,
                serializable,
            } => {
                let mut body = json!({ "key": base64_encode(key.as_bytes()) });
                if *serializable {
                    body["serializable"] = json!(true);
                }
                let response = connection.post("/v3/kv/range", &body).await?;
                Ok(OpOutput::Read(etcd_first_value(&response["kvs"])?))
            }
        }
    }

    async fn cas(&mut self, key: &str, expected: &[u8], new: &[u8]) -> Result<OpOutput, OpError> {
        match self {
            Backend::Resp { connection, synod } => {
                let reply = if *synod {
                    resp_call(connection, &[b"SYNOD.CAS", key.as_bytes(), expected, new]).await?
                } else {
                    let script = REDIS_CAS_SCRIPT.as_bytes();
                    let arguments: [&[u8]; 6] =
                        [b"EVAL", script, b"1", key.as_bytes(), expected, new];
                    resp_call(connection, &arguments).await?
                };
                match synod_client::client::parse_cas(&reply) {
                    Some(outcome) => Ok(OpOutput::Cas(outcome.swapped)),
                    None => Err(unexpected("CAS", &reply)),
                }
            }
            Backend::Etcd { connection, .. } => {
                let key = base64_encode(key.as_bytes());
                let body = json!({
                    "compare": [{ "key": key, "result": "EQUAL", "target": "VALUE",
                                  "value": base64_encode(expected) }],
                    "success": [{ "request_put": { "key": key, "value": base64_encode(new) } }],
                });
                let response = connection.post("/v3/kv/txn", &body).await?;
                Ok(OpOutput::Cas(
                    response["succeeded"].as_bool().unwrap_or(false),
                ))
            }
        }
    }
}

async fn resp_call(connection: &mut Connection, arguments: &[&[u8]]) -> Result<Reply, OpError> {
    match connection.call(arguments).await {
        Ok(Reply::Error(message)) => Err(OpError {
            // A refusal did nothing; a write that timed out or whose leader changed may
            // have taken effect, and is recorded as such.
            ambiguous: synod_client::outcome_unknown(&message),
            reconnect: message.starts_with("TRYAGAIN"),
            message,
        }),
        Ok(reply) => Ok(reply),
        Err(error) => Err(OpError {
            ambiguous: true,
            reconnect: true,
            message: error.to_string(),
        }),
    }
}

fn unexpected(command: &str, reply: &Reply) -> OpError {
    OpError {
        ambiguous: true,
        reconnect: true,
        message: format!("{command}: unexpected reply {reply:?}"),
    }
}

/// The first key-value's value in an etcd range response, base64-decoded.
fn etcd_first_value(kvs: &Json) -> Result<Option<Vec<u8>>, OpError> {
    let Some(first) = kvs.as_array().and_then(|kvs| kvs.first()) else {
        return Ok(None);
    };
    // etcd omits an empty value.
    let encoded = first["value"].as_str().unwrap_or("");
    base64_decode(encoded).map(Some).ok_or_else(|| OpError {
        ambiguous: false,
        reconnect: false,
        message: format!("etcd sent a value that is not base64: {encoded:?}"),
    })
}

/// One HTTP/1.1 keep-alive connection to etcd's v3 JSON gateway.
struct EtcdConnection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    timeout: Duration,
}

impl EtcdConnection {
    async fn connect(address: &str, timeout: Duration) -> Result<EtcdConnection, OpError> {
        let failure = |message: String| OpError {
            ambiguous: false,
            reconnect: true,
            message,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| failure(format!("connecting to {address} timed out")))?
            .map_err(|error| failure(format!("cannot connect to {address}: {error}")))?;
        stream
            .set_nodelay(true)
            .map_err(|error| failure(format!("{address}: {error}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| failure(format!("{address}: HTTP handshake: {error}")))?;
        // The connection task ends when the sender is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(EtcdConnection {
            sender,
            host: address.to_owned(),
            timeout,
        })
    }

    /// POSTs a JSON body and returns the JSON response. A failure after the request was sent
    /// is ambiguous (the operation may have run).
    async fn post(&mut self, path: &str, body: &Json) -> Result<Json, OpError> {
        let ambiguous = |message: String| OpError {
            ambiguous: true,
            reconnect: true,
            message,
        };
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|error| ambiguous(format!("building the request: {error}")))?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|error| ambiguous(format!("{}: {error}", self.host)))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|error| ambiguous(format!("{}{path}: {error}", self.host)))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|error| ambiguous(format!("{}{path}: {error}", self.host)))?
                .to_bytes();
            Ok::<_, OpError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ambiguous(format!("{}{path}: no reply in time", self.host)))??;
        if !status.is_success() {
            // etcd's gateway reports timeouts and lost leaders as 5xx after the request may
            // have been proposed, so the outcome is unknown.
            return Err(OpError {
                ambiguous: true,
                reconnect: false,
                message: format!(
                    "{}{path}: HTTP {status}: {}",
                    self.host,
                    String::from_utf8_lossy(&bytes)
                ),
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|error| ambiguous(format!("{}{path}: bad JSON: {error}", self.host)))
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (etcd's JSON encoding of bytes).
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let group = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (group >> (18 - 6 * index)) & 0x3f;
                out.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut group: u32 = 0;
    let mut bits = 0;
    for &symbol in text {
        let value = BASE64_ALPHABET
            .iter()
            .position(|&letter| letter == symbol)?;
        group = (group << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((group >> bits) as u8);
            group &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_known_text() {
        // Checks base64 against RFC 4648's test vectors and a round trip of every length.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        let data: Vec<u8> = (0..=255).collect();
        for length in 0..data.len() {
            assert_eq!(
                base64_decode(&base64_encode(&data[..length])).unwrap(),
                &data[..length]
            );
        }
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn values_are_recognised_by_writer_and_counter() {
        // Checks the value identity parser on written, absent and foreign values.
        assert_eq!(recognise(Some(b"3:17:xxxx")), Seen::Value((3, 17)));
        assert_eq!(recognise(None), Seen::Absent);
        assert_eq!(recognise(Some(b"hello")), Seen::Unrecognised);
        assert_eq!(recognise(Some(b"3:17")), Seen::Unrecognised);
    }

    #[test]
    fn reads_of_unwritten_values_are_violations() {
        // Checks verify_reads: a value written to another key, an absent warmed key and a
        // foreign value count; a written value and an absent unwarmed key do not.
        let histograms = BTreeMap::new();
        let client = ClientResult {
            histograms,
            ops_count: 0,
            errors_count: 0,
            writes: vec![(1, (0, 1)), (2, (0, 2))],
            warmed: vec![1],
            reads: vec![
                (1, Seen::Value((0, 1))),
                (2, Seen::Value((0, 1))),
                (1, Seen::Absent),
                (3, Seen::Absent),
                (2, Seen::Unrecognised),
            ],
            history: Vec::new(),
        };
        let violations = verify_reads(&[client]);
        assert_eq!(violations.count, 3, "{:?}", violations.examples);
    }
}
