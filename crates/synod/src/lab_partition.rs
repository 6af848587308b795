//! `synod lab partition`: CAP, measured.
//!
//! The lab starts its own cluster through the nemesis harness (real `synod server`
//! processes whose peer links pass through proxies on loopback or network namespaces, so
//! that it can cut them), and runs closed-loop clients pinned to one node each (a client
//! talks only to its node's RESP port, so it is on one side of the partition), one per
//! node and read level: linearizable, lease, follower and stale reads, each mixed with
//! writes. Three phases follow: a baseline, a partition that puts the leader and
//! (with five nodes) one follower on the minority side, both directions dropped, and the
//! heal. Every request is recorded in a history per level and checked with synod-check
//! in-process; the report (`report.rs`) gives, per level, side and phase, the fraction of
//! requests that succeeded and their latency, and per level the verdicts, each number
//! beside what it means. It exits 1 when a model a level promises fails (linearizability
//! for writes and linearizable, lease and follower reads; the session guarantees for
//! every level), 3 when the checker could not decide one, and 0 otherwise: stale reads
//! that are not linearizable are the expected price of their availability.

mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value as Json;
use synod_check::{Models, Verdict};
use synod_client::{
    BreakerConfig, Client, ClientConfig, ClientError, ReadLevel, Retry, SlidingWindow,
};
use synod_core::Prng;

use crate::harness::{TempDir, block_on_interruptible, check_recorded, parse_recorded};
use crate::history_lines::{Event, key_name};
use crate::nemesis::cluster::{Cluster, ELECTION_TIMEOUT_MS, status_of};
use crate::nemesis::net::{NetMode, Network};
use crate::nemesis::proxy::LinkMode;

#[derive(Args, Debug)]
pub struct PartitionArgs {
    /// Nodes of the cluster the lab starts (3 or 5). The lab always starts its own cluster:
    /// it must control the links between the nodes, which a running cluster does not let
    /// it do.
    #[arg(long, default_value_t = 5)]
    pub nodes: u64,
    /// Seconds before the partition (the reference).
    #[arg(long, default_value_t = 5)]
    pub baseline_seconds: u64,
    /// Seconds the partition lasts.
    #[arg(long, default_value_t = 10)]
    pub partition_seconds: u64,
    /// Seconds after the heal.
    #[arg(long, default_value_t = 5)]
    pub healed_seconds: u64,
    /// Clients per node and read level (each mixes reads at its level with writes).
    #[arg(long, default_value_t = 1)]
    pub clients_per_node: u64,
    /// Keys of each level's clients (every level has keys of its own, and a history).
    #[arg(long, default_value_t = 8)]
    pub keys: u64,
    /// Where the report goes: lab-partition.md, .html, .json and each level's history.
    #[arg(long, default_value = "lab-report")]
    pub report: PathBuf,
    /// How peer traffic is carried and cut: proxies on loopback, or a network namespace per
    /// node with iptables (root); auto picks netns when it can.
    #[arg(long, value_enum, default_value = "auto")]
    pub net: NetMode,
    /// The seed of the clients' choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the temporary directory (the nodes' configs, data and logs).
    #[arg(long)]
    pub keep: bool,
}

/// The most seconds one phase may last.
const PHASE_SECONDS_MAX: u64 = 600;
const CLIENTS_PER_NODE_MAX: u64 = 8;
const KEYS_MAX: u64 = 1_000;
/// How long the lab waits for the first leader, and for every node to know it.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the lab asks the nodes for their status while it watches an election.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// One request of a client: connect, send, answer. Short, so that a side that cannot
/// answer shows within a second; the nodes give up on a request after 1.5 s.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
/// A safety net beyond the client's own timeout.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause between two requests of one client, and after a failed one: a client that
/// is refused at once does not spin.
const THINK_TIME: Duration = Duration::from_millis(10);
const FAILURE_PAUSE: Duration = Duration::from_millis(100);
/// Requests one client records at most.
const REQUESTS_PER_CLIENT_MAX: usize = 200_000;
/// How long the clients may take to stop once the last phase is over.
const CLIENTS_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The checker's budget per key and for the whole-history sequential search.
const CHECK_KEY_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest count window a client's breaker takes (synod-resilience's
/// `WINDOW_CALLS_COUNT_MAX`); with `calls_min` at it, the breaker judges no window before
/// that many calls, and opens only when every one of them failed.
const BREAKER_WINDOW_CALLS: u32 = 10_000;

/// What the clients do, in the report's order: writes, then reads at each level.
pub(crate) const OPERATIONS: [&str; 5] = ["write", "linearizable", "lease", "follower", "stale"];
/// The index in `OPERATIONS` of the reads at `ReadLevel::ALL[index - 1]`.
const LEVELS: [ReadLevel; 4] = ReadLevel::ALL;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    Minority,
    Majority,
}

impl Side {
    pub(crate) const ALL: [Side; 2] = [Side::Minority, Side::Majority];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Minority => "minority",
            Side::Majority => "majority",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Baseline,
    Partition,
    Healed,
}

impl Phase {
    pub(crate) const ALL: [Phase; 3] = [Phase::Baseline, Phase::Partition, Phase::Healed];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Partition => "partition",
            Phase::Healed => "healed",
        }
    }
}

impl PartitionArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.nodes != 3 && self.nodes != 5 {
            bail!("--nodes must be 3 or 5 (got {})", self.nodes);
        }
        for (name, seconds) in [
            ("--baseline-seconds", self.baseline_seconds),
            ("--partition-seconds", self.partition_seconds),
            ("--healed-seconds", self.healed_seconds),
        ] {
            if !(1..=PHASE_SECONDS_MAX).contains(&seconds) {
                bail!("{name} must be between 1 and {PHASE_SECONDS_MAX} (got {seconds})");
            }
        }
        if !(1..=CLIENTS_PER_NODE_MAX).contains(&self.clients_per_node) {
            bail!(
                "--clients-per-node must be between 1 and {CLIENTS_PER_NODE_MAX} (got {})",
                self.clients_per_node
            );
        }
        if !(1..=KEYS_MAX).contains(&self.keys) {
            bail!(
                "--keys must be between 1 and {KEYS_MAX} (got {})",
                self.keys
            );
        }
        Ok(())
    }
}

/// One request as the report counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    /// Index into `OPERATIONS`.
    pub(crate) operation: usize,
    pub(crate) node: u64,
    /// `ok`, `fail` or `info`.
    pub(crate) kind: &'static str,
    pub(crate) invoke: u64,
    pub(crate) complete: u64,
}

/// What one client did.
struct ClientRun {
    /// Index into `LEVELS`.
    level: usize,
    events: Vec<Event>,
    requests: Vec<Request>,
}

/// What the run measured, before the checks.
pub(crate) struct Measured {
    pub(crate) net: &'static str,
    pub(crate) leader: u64,
    pub(crate) minority: Vec<u64>,
    pub(crate) majority: Vec<u64>,
    /// (start, end) of each phase, nanoseconds since the clients started.
    pub(crate) phases: [(u64, u64); 3],
    /// When a node of the majority first reported itself leader.
    pub(crate) elected: Option<(u64, u64)>,
    /// When every node of the old minority followed the majority's leader after the heal.
    pub(crate) rejoined: Option<u64>,
    /// Nodes that exited on their own: (node, time, status).
    pub(crate) crashes: Vec<(u64, u64, String)>,
    pub(crate) requests: Vec<Request>,
    /// Each level's events (index into `LEVELS`).
    events: [Vec<Event>; 4],
}

impl Measured {
    pub(crate) fn side(&self, node: u64) -> Side {
        match self.minority.contains(&node) {
            true => Side::Minority,
            false => Side::Majority,
        }
    }

    /// The phase a request counts in: the one in force when it was sent, except that a
    /// request still waiting when the partition began counts in the partition (it met
    /// the fault), so that the baseline is untouched by it.
    pub(crate) fn phase(&self, request: &Request) -> Phase {
        let (cut, healed) = (self.phases[1].0, self.phases[2].0);
        match (request.invoke, request.complete) {
            (invoke, complete) if invoke < cut && complete < cut => Phase::Baseline,
            (invoke, _) if invoke < healed => Phase::Partition,
            _ => Phase::Healed,
        }
    }
}

/// The checker's verdicts for one level's history.
pub(crate) struct LevelCheck {
    pub(crate) linearizable: Verdict,
    pub(crate) sequential: Verdict,
    pub(crate) session: Verdict,
    /// The first violation of each model, in words.
    pub(crate) notes: Vec<String>,
    pub(crate) history: PathBuf,
    pub(crate) operations: usize,
}

pub fn run(args: &PartitionArgs) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let nanos = now.map_or(1, |elapsed| elapsed.as_nanos() as u64);
    let seed = args.seed.unwrap_or(nanos);
    let name = format!("synod-lab-partition-{}-{nanos}", std::process::id());
    let dir = TempDir::create("lab partition", &name, args.keep)?;
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("cannot create {}", args.report.display()))?;
    eprintln!(
        "lab partition: seed {seed}, directory {}",
        dir.path.display()
    );
    let outcome = block_on_interruptible("lab partition", measure(args, seed, &dir.path));
    drop(dir);
    let Some(measured) = outcome? else {
        return Ok(ExitCode::from(130));
    };
    finish(args, seed, measured)
}

/// The minority side for a partition while `leader` leads: the leader and, with five
/// nodes, the lowest-numbered other node; a minority has (nodes - 1) / 2 members.
pub(crate) fn sides(nodes: u64, leader: u64) -> (Vec<u64>, Vec<u64>) {
    let minority_size = ((nodes - 1) / 2) as usize;
    let mut minority = vec![leader];
    let others = (1..=nodes).filter(|&node| node != leader);
    minority.extend(others.take(minority_size - 1));
    minority.sort_unstable();
    let majority = (1..=nodes)
        .filter(|node| !minority.contains(node))
        .collect();
    (minority, majority)
}

/// The run's processes and network, and what happened to them.
struct Lab {
    // Declared before the network: the processes die before their namespaces go.
    cluster: Cluster,
    network: Network,
    origin: Instant,
    crashes: Vec<(u64, u64, String)>,
}

impl Lab {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes nodes that exited on their own and starts them again, so the run goes on.
    fn watch_crashes(&mut self) -> anyhow::Result<()> {
        for (node, status) in self.cluster.exited() {
            let time = self.now();
            eprintln!("lab partition: node {node} exited on its own ({status}); restarting it");
            self.crashes.push((node, time, status));
            self.cluster.restart(node)?;
        }
        Ok(())
    }

    /// Sleeps until `until`, watching for crashes.
    async fn sleep_until(&mut self, until: Instant) -> anyhow::Result<()> {
        // Bounded by `until`.
        while Instant::now() < until {
            let step = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(step.min(Duration::from_millis(200))).await;
            self.watch_crashes()?;
        }
        Ok(())
    }

    /// Drops every link between the two sides, both directions.
    fn cut(&mut self, minority: &[u64], majority: &[u64]) {
        for &a in minority {
            for &b in majority {
                self.network.set_mode(a, b, LinkMode::Dropped);
                self.network.set_mode(b, a, LinkMode::Dropped);
            }
        }
    }
}

/// Starts the cluster, runs the clients through the three phases and stops everything.
async fn measure(args: &PartitionArgs, seed: u64, dir: &Path) -> anyhow::Result<Measured> {
    // The network first and the cluster second, so that on every early return the cluster
    // (its processes) is dropped before the network (the namespaces they run in).
    let (network, setups) = Network::start(args.net, args.nodes).await?;
    let net = match network {
        Network::Proxy(_) => "proxies on loopback",
        Network::Namespaces(_) => "network namespaces and iptables",
    };
    let mut cluster = Cluster::plan(setups, dir)?;
    cluster.start(&network)?;
    cluster.wait_ready().await?;
    let first_leader = cluster.wait_leader(LEADER_TIMEOUT).await?;
    let addresses = cluster.resp_addresses();
    wait_known_leader(&addresses).await?;
    eprintln!(
        "lab partition: {} nodes up, node {first_leader} leads",
        args.nodes
    );
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for plan in client_plans(args, seed, &addresses, origin, &stop) {
        clients.spawn(run_client(plan));
    }
    let mut lab = Lab {
        cluster,
        network,
        origin,
        crashes: Vec::new(),
    };
    // Each phase lasts its full length from the moment it really began: on a busy machine
    // finding the leader before the cut can take seconds, which must not eat the partition.
    lab.sleep_until(origin + seconds(args.baseline_seconds))
        .await?;
    // The leader now; on a busy machine one round of status queries may all time out, so
    // ask until one answers (an election under way also ends within the bound).
    let leader = lab
        .cluster
        .wait_leader(LEADER_TIMEOUT)
        .await
        .context("no node reported a leader at the end of the baseline")?;
    let (minority, majority) = sides(args.nodes, leader);
    lab.cut(&minority, &majority);
    let cut_at = lab.now();
    let partition_end = Instant::now() + seconds(args.partition_seconds);
    eprintln!("lab partition: partition: {minority:?} (node {leader} leads) | {majority:?}");
    let majority_addresses: Vec<String> = majority_of(&addresses, &majority);
    let elected = watch_election(&lab, &majority_addresses, partition_end).await;
    lab.sleep_until(partition_end).await?;
    lab.network.heal()?;
    let healed_at = lab.now();
    let healed_end = Instant::now() + seconds(args.healed_seconds);
    eprintln!("lab partition: healed");
    let rejoined = watch_rejoin(&lab, &addresses, &minority, healed_end).await;
    lab.sleep_until(healed_end).await?;
    stop.store(true, Ordering::Relaxed);
    let end_at = lab.now();
    let runs = join_clients(clients).await?;
    let Lab {
        cluster,
        network,
        crashes,
        ..
    } = lab;
    drop(cluster);
    network.shutdown().await;
    let phases = [(0, cut_at), (cut_at, healed_at), (healed_at, end_at)];
    Ok(measured(
        runs,
        net,
        (leader, minority, majority),
        phases,
        (elected, rejoined),
        crashes,
    ))
}

/// A phase's length.
fn seconds(count: u64) -> Duration {
    Duration::from_secs(count)
}

fn majority_of(addresses: &[String], majority: &[u64]) -> Vec<String> {
    majority
        .iter()
        .map(|&node| addresses[(node - 1) as usize].clone())
        .collect()
}

fn measured(
    runs: Vec<ClientRun>,
    net: &'static str,
    (leader, minority, majority): (u64, Vec<u64>, Vec<u64>),
    phases: [(u64, u64); 3],
    (elected, rejoined): (Option<(u64, u64)>, Option<u64>),
    crashes: Vec<(u64, u64, String)>,
) -> Measured {
    let mut events: [Vec<Event>; 4] = Default::default();
    let mut requests = Vec::new();
    for run in runs {
        events[run.level].extend(run.events);
        requests.extend(run.requests);
    }
    Measured {
        net,
        leader,
        minority,
        majority,
        phases,
        elected,
        rejoined,
        crashes,
        requests,
        events,
    }
}

async fn join_clients(
    mut clients: tokio::task::JoinSet<ClientRun>,
) -> anyhow::Result<Vec<ClientRun>> {
    let mut runs = Vec::new();
    let joined = tokio::time::timeout(CLIENTS_STOP_TIMEOUT, async {
        while let Some(result) = clients.join_next().await {
            runs.push(result.context("a client task failed")?);
        }
        anyhow::Ok(())
    });
    joined
        .await
        .context("the clients did not stop within 30 s")??;
    Ok(runs)
}

/// Waits until every node names the same leader, so that no baseline client starts with
/// a node that has not heard of it yet.
async fn wait_known_leader(addresses: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + LEADER_TIMEOUT;
    // Bounded by the deadline.
    loop {
        let mut leaders = Vec::new();
        for address in addresses {
            leaders.push(status_of(address).await.and_then(|status| status.leader));
        }
        if leaders[0].is_some() && leaders.iter().all(|leader| *leader == leaders[0]) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the nodes did not agree on a leader within {} s (they name {leaders:?})",
                LEADER_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// When a node of the majority first reports itself the leader: (time, node).
async fn watch_election(lab: &Lab, majority: &[String], until: Instant) -> Option<(u64, u64)> {
    // Bounded by `until`.
    while Instant::now() < until {
        for address in majority {
            let Some(status) = status_of(address).await else {
                continue;
            };
            if status.leader == Some(status.node) {
                return Some((lab.now(), status.node));
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    None
}

/// When every node of the old minority names the same leader as the majority, after the
/// heal.
async fn watch_rejoin(
    lab: &Lab,
    addresses: &[String],
    minority: &[u64],
    until: Instant,
) -> Option<u64> {
    // Bounded by `until`.
    while Instant::now() < until {
        let mut statuses = Vec::new();
        for address in addresses {
            statuses.push(status_of(address).await);
        }
        let majority_leader = statuses
            .iter()
            .flatten()
            .filter(|status| !minority.contains(&status.node))
            .find_map(|status| status.leader);
        let followed = statuses.iter().all(|status| {
            status
                .as_ref()
                .is_some_and(|status| status.leader == majority_leader)
        });
        if majority_leader.is_some() && followed {
            return Some(lab.now());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    None
}

/// What one client is asked to do.
#[derive(Debug, Clone)]
struct ClientPlan {
    /// The client's number among all clients, its first process id.
    index: u64,
    clients: u64,
    level: usize,
    node: u64,
    address: String,
    keys: u64,
    /// The first key of the client's level.
    key_first: u64,
    origin: Instant,
    /// Set once the last phase has ended: the client finishes its request and stops.
    stop: Arc<AtomicBool>,
    seed: u64,
}

fn client_plans(
    args: &PartitionArgs,
    seed: u64,
    addresses: &[String],
    origin: Instant,
    stop: &Arc<AtomicBool>,
) -> Vec<ClientPlan> {
    let clients = args.nodes * LEVELS.len() as u64 * args.clients_per_node;
    let mut plans = Vec::new();
    for level in 0..LEVELS.len() {
        for node in 1..=args.nodes {
            for _ in 0..args.clients_per_node {
                plans.push(ClientPlan {
                    index: plans.len() as u64,
                    clients,
                    level,
                    node,
                    address: addresses[(node - 1) as usize].clone(),
                    keys: args.keys,
                    key_first: level as u64 * args.keys,
                    origin,
                    stop: Arc::clone(stop),
                    seed,
                });
            }
        }
    }
    plans
}

/// A client of one node only: no leader discovery (the node forwards what needs the leader
/// itself), one attempt per request (a failure is counted, not hidden by a retry),
/// sessions off (a write whose outcome is unknown is never sent again), and a circuit
/// breaker that never opens (the lab measures the node's answers, not the client's
/// protection).
fn client_config(seed: u64, level: ReadLevel) -> ClientConfig {
    let calls_count = BREAKER_WINDOW_CALLS;
    ClientConfig {
        request_timeout: REQUEST_TIMEOUT,
        operation_deadline: REQUEST_TIMEOUT,
        attempts_max: 1,
        read_level: Some(level),
        discovery: false,
        sessions: false,
        jitter_seed: Some(seed),
        breaker: BreakerConfig {
            window: SlidingWindow::Count { calls_count },
            failure_rate_percent: 100,
            slow_call_rate_percent: 100,
            calls_min: calls_count,
            ..BreakerConfig::default()
        },
        ..ClientConfig::default()
    }
}

/// Whether a failed write certainly did not take effect (`fail`) or may have (`info`).
fn write_failed_certainly(error: &ClientError) -> bool {
    match error {
        ClientError::GaveUp { last, .. } => write_failed_certainly(last),
        other => other.retry() == Retry::Safe,
    }
}

/// One client's loop: a random key of its level, read at its level or written, until the
/// lab says stop.
async fn run_client(plan: ClientPlan) -> ClientRun {
    let level = LEVELS[plan.level];
    let config = client_config(plan.seed ^ plan.index, level);
    let mut client =
        Client::new(&[plan.address.as_str()], config).expect("the lab's client config is valid");
    let mut prng = Prng::from_seed(plan.seed.wrapping_add(plan.index).wrapping_mul(0x9e37_79b9));
    let nanos = |origin: Instant| u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut run = ClientRun {
        level: plan.level,
        events: Vec::new(),
        requests: Vec::new(),
    };
    let mut process = plan.index;
    let mut counter = 0u64;
    // Bounded by the stop flag, set after the last phase, and by REQUESTS_PER_CLIENT_MAX.
    while !plan.stop.load(Ordering::Relaxed) && run.requests.len() < REQUESTS_PER_CLIENT_MAX {
        let key = plan.key_first + prng.below(plan.keys);
        let write = prng.below(2) == 0;
        let invoke = nanos(plan.origin);
        let (function, value, kind) = if write {
            counter += 1;
            let value = format!("{}:{counter}", plan.index);
            let kind = write_once(&mut client, key, &value).await;
            ("write", Json::String(value), kind)
        } else {
            let (kind, value) = read_once(&mut client, key).await;
            ("read", value, kind)
        };
        let complete = nanos(plan.origin);
        let invoke_value = if write { value.clone() } else { Json::Null };
        let event = |kind, value, time| Event {
            process,
            kind,
            function,
            key,
            value,
            time,
        };
        run.events.push(event("invoke", invoke_value, invoke));
        run.events.push(event(kind, value, complete));
        run.requests.push(Request {
            operation: if write { 0 } else { plan.level + 1 },
            node: plan.node,
            kind,
            invoke,
            complete,
        });
        if kind == "ok" {
            tokio::time::sleep(THINK_TIME).await;
        } else {
            // The client drops its connection after a failure and opens a new one: synod
            // keeps session guarantees per connection, so the history starts a new session
            // (and after an unknown outcome a process may never invoke again).
            process += plan.clients;
            tokio::time::sleep(FAILURE_PAUSE).await;
        }
    }
    run
}

async fn write_once(client: &mut Client, key: u64, value: &str) -> &'static str {
    let name = key_name(key);
    let call = client.set(name.as_bytes(), value.as_bytes());
    match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) if write_failed_certainly(&error) => "fail",
        _ => "info",
    }
}

/// A read changes nothing, so a failed one is `fail` whatever the error.
async fn read_once(client: &mut Client, key: u64) -> (&'static str, Json) {
    let name = key_name(key);
    let call = client.get(name.as_bytes());
    match tokio::time::timeout(OPERATION_TIMEOUT, call).await {
        Ok(Ok(value)) => {
            let value = value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            ("ok", value.map_or(Json::Null, Json::String))
        }
        _ => ("fail", Json::Null),
    }
}

/// Writes and checks each level's history, reports, and picks the exit code.
fn finish(args: &PartitionArgs, seed: u64, mut measured: Measured) -> anyhow::Result<ExitCode> {
    measured.requests.sort_by_key(|request| request.invoke);
    let mut checks = Vec::new();
    for (level, events) in measured.events.iter_mut().enumerate() {
        let name = LEVELS[level].name();
        let text = crate::history_lines::history_text(&mut events.iter().collect::<Vec<_>>());
        let path = args.report.join(format!("lab-partition-{name}.jsonl"));
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "lab partition: checking the {name} history ({} events)",
            events.len()
        );
        checks.push(check_level(&text, path)?);
    }
    let summary = report::Summary {
        args,
        seed,
        measured: &measured,
        checks: &checks,
        election_timeout_ms: ELECTION_TIMEOUT_MS,
    };
    let markdown = report::markdown(&summary);
    print!("{markdown}");
    let base = args.report.join("lab-partition");
    let outputs = [
        (base.with_extension("md"), markdown),
        (base.with_extension("html"), report::html(&summary)),
        (
            base.with_extension("json"),
            report::json(&summary).to_string(),
        ),
    ];
    for (path, text) in &outputs {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "lab partition: report in {} (and .html, .json)",
        outputs[0].0.display()
    );
    Ok(match summary.outcome() {
        Verdict::Valid => ExitCode::SUCCESS,
        Verdict::Unknown => ExitCode::from(3),
        Verdict::Violation => ExitCode::from(1),
    })
}

/// Whether the level at `LEVELS[level]` promises linearizable reads (every level but
/// stale: follower reads are confirmed by the leader's read index).
pub(crate) fn promises_linearizable(level: usize) -> bool {
    LEVELS[level] != ReadLevel::Stale
}

fn check_level(text: &str, history: PathBuf) -> anyhow::Result<LevelCheck> {
    let parsed = parse_recorded(text)
        .map_err(|error| anyhow::anyhow!("the recorded history is malformed: {error}"))?;
    let models = Models {
        linearizable: true,
        sequential: true,
        session: true,
        lost_writes: false,
    };
    let checked = check_recorded(&parsed, models, CHECK_KEY_TIMEOUT);
    let verdict = |model: Option<Verdict>| model.unwrap_or(Verdict::Unknown);
    let mut notes = Vec::new();
    if let Some(model) = &checked.linearizable
        && let Some(violation) = model.violations.first()
    {
        notes.push(format!(
            "linearizable, key {}: {}",
            violation.key, violation.explanation
        ));
    }
    if let Some(model) = &checked.session {
        let first = model.guarantees.iter().find_map(|g| g.violations.first());
        if let Some(violation) = first {
            notes.push(format!(
                "session ({}), key {}: {}",
                violation.guarantee.name(),
                violation.key,
                violation.explanation
            ));
        }
    }
    Ok(LevelCheck {
        linearizable: verdict(checked.linearizable.as_ref().map(|m| m.verdict)),
        sequential: verdict(checked.sequential.as_ref().map(|m| m.verdict)),
        session: verdict(checked.session.as_ref().map(|m| m.verdict)),
        notes,
        history,
        operations: checked.operations,
    })
}

/// Requests grouped by (operation, side, phase).
pub(crate) fn groups(measured: &Measured) -> BTreeMap<(usize, Side, Phase), Vec<Request>> {
    let mut groups: BTreeMap<(usize, Side, Phase), Vec<Request>> = BTreeMap::new();
    for request in &measured.requests {
        let key = (
            request.operation,
            measured.side(request.node),
            measured.phase(request),
        );
        groups.entry(key).or_default().push(*request);
    }
    groups
}

/// The value at `per_mille` of `sorted` by nearest rank (0 for none).
pub(crate) fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * per_mille).div_ceil(1_000).max(1);
    sorted[(rank - 1) as usize]
}

/// The first request of `operation` from `side` invoked at or after `time` that
/// succeeded: how long after `time` it completed.
pub(crate) fn first_success_after(
    measured: &Measured,
    operation: usize,
    side: Side,
    time: u64,
) -> Option<u64> {
    measured
        .requests
        .iter()
        .filter(|request| request.operation == operation && request.kind == "ok")
        .filter(|request| request.invoke >= time && measured.side(request.node) == side)
        .map(|request| request.complete - time)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minority_holds_the_leader_and_fewer_than_half_the_nodes() {
        // Checks the sides table: with 3 nodes the leader alone, with 5 the leader and the
        // lowest other node; the majority is every other node.
        let cases = [
            (3, 1, vec![1], vec![2, 3]),
            (3, 3, vec![3], vec![1, 2]),
            (5, 1, vec![1, 2], vec![3, 4, 5]),
            (5, 4, vec![1, 4], vec![2, 3, 5]),
        ];
        for (nodes, leader, minority, majority) in cases {
            assert_eq!(
                sides(nodes, leader),
                (minority, majority),
                "{nodes} {leader}"
            );
        }
    }

    #[test]
    fn a_request_counts_in_the_phase_it_was_sent_in_unless_the_cut_caught_it() {
        // Checks the phase table: sent and answered before the cut is baseline; still
        // waiting at the cut, or sent before the heal, is partition; sent at or after the
        // heal is healed, even when answered long after.
        let measured = Measured {
            net: "test",
            leader: 1,
            minority: vec![1],
            majority: vec![2, 3],
            phases: [(0, 100), (100, 200), (200, 300)],
            elected: None,
            rejoined: None,
            crashes: Vec::new(),
            requests: Vec::new(),
            events: Default::default(),
        };
        let cases = [
            (10, 99, Phase::Baseline),
            (90, 100, Phase::Partition),
            (90, 250, Phase::Partition),
            (150, 160, Phase::Partition),
            (199, 210, Phase::Partition),
            (200, 201, Phase::Healed),
            (290, 900, Phase::Healed),
        ];
        for (invoke, complete, phase) in cases {
            let request = Request {
                operation: 0,
                node: 1,
                kind: "ok",
                invoke,
                complete,
            };
            assert_eq!(measured.phase(&request), phase, "{invoke}..{complete}");
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        // Checks the percentile helper on a small sorted list and on an empty one.
        let sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&sorted, 500), 5);
        assert_eq!(percentile(&sorted, 990), 10);
        assert_eq!(percentile(&[], 500), 0);
    }
}
