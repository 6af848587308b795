//! `synod nemesis`: a Jepsen-style test of real `synod server` processes on this machine.
//!
//! It starts a cluster whose peer links all pass through fault-injecting proxies
//! (`proxy.rs`), runs closed-loop clients that record a history (`workload.rs`), injects a
//! seeded random schedule of faults (kill -9 and restart, SIGSTOP/SIGCONT, partitions:
//! `faults.rs`), heals everything, waits a quiet period, reads every key one last time, and
//! judges the history with synod-check in-process (`report.rs`). docs/nemesis.md explains
//! how to read the report.

mod cluster;
mod faults;
mod proxy;
mod report;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use synod_check::{CheckOptions, Models, ParseOptions, Verdict};
use synod_core::Prng;

use cluster::Cluster;
use faults::{FaultKind, Schedule};
use proxy::Proxies;
use report::{FaultRecord, RunSummary};
use workload::{Event, WorkloadConfig};

/// Time after the start before the first fault.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long a fault lasts: uniformly in [min, max] milliseconds.
const FAULT_MS_MIN: u64 = 1_500;
const FAULT_MS_MAX: u64 = 3_500;
/// The pause between a heal and the next fault.
const GAP_MS_MIN: u64 = 800;
const GAP_MS_MAX: u64 = 2_000;
/// The most faults of one run.
const FAULTS_MAX: usize = 1_000;
/// How long the clients wait for a leader before the workload starts.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// The checker's budget per key and for the whole-history sequential search.
const CHECK_KEY_TIMEOUT: Duration = Duration::from_secs(20);
const CHECK_MEMORY_BYTES_MAX: usize = 2 << 30;

#[derive(Args, Debug)]
pub struct NemesisArgs {
    /// How many `synod server` processes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// How long the workload runs, faults and the final quiet period included.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The kinds of fault to inject (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,pause,partition"
    )]
    pub faults: Vec<FaultKind>,
    /// The seed of the fault schedule and the workload (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 8)]
    pub clients: u64,
    /// Keys the clients share.
    #[arg(long, default_value_t = 8)]
    pub keys: u64,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Keep the temporary directory (configs, data, logs, history) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

impl NemesisArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=9).contains(&self.nodes) {
            bail!("--nodes must be between 1 and 9 (got {})", self.nodes);
        }
        if !(5..=3_600).contains(&self.seconds) {
            bail!(
                "--seconds must be between 5 and 3600 (got {})",
                self.seconds
            );
        }
        if !(1..=64).contains(&self.clients) {
            bail!("--clients must be between 1 and 64 (got {})", self.clients);
        }
        if !(1..=1_000).contains(&self.keys) {
            bail!("--keys must be between 1 and 1000 (got {})", self.keys);
        }
        Ok(())
    }

    /// The quiet period at the end: no faults, everything healed.
    fn quiet(&self) -> Duration {
        Duration::from_secs((self.seconds / 5).clamp(2, 10))
    }
}

/// The run's temporary directory, removed when dropped unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("nemesis: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn run(args: &NemesisArgs) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |elapsed| elapsed.as_nanos() as u64)
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let name = format!("synod-nemesis-{}-{nanos}", std::process::id());
    let dir = TempDir {
        path: std::env::temp_dir().join(name),
        keep: args.keep,
    };
    std::fs::create_dir_all(&dir.path)
        .with_context(|| format!("cannot create {}", dir.path.display()))?;
    eprintln!("nemesis: seed {seed}, directory {}", dir.path.display());
    let runtime = crate::server::tokio_runtime(2)?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run_nemesis(args, seed, &dir.path) => result,
            () = crate::server::stop_signal() => {
                eprintln!("nemesis: interrupted; stopping every process it started");
                Ok(ExitCode::from(130))
            }
        }
    });
    // The cluster (inside the dropped future) has been killed by now; the runtime's
    // remaining tasks (clients, proxies) end with it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(dir);
    outcome
}

/// The fault loop's view of the run.
struct Nemesis<'a> {
    cluster: Cluster,
    proxies: Proxies,
    origin: Instant,
    prng: Prng,
    faults: Vec<FaultRecord>,
    crashes: Vec<(u64, u64, String)>,
    args: &'a NemesisArgs,
}

impl Nemesis<'_> {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sleeps until `until`, noting nodes that exit on their own (and starting them again,
    /// so the run goes on).
    async fn sleep_watching(&mut self, until: Instant) -> anyhow::Result<()> {
        // Bounded by `until`.
        while Instant::now() < until {
            let step = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(step.min(Duration::from_millis(200))).await;
            for (node, status) in self.cluster.exited() {
                let time = self.now();
                eprintln!("nemesis: node {node} exited on its own ({status}); restarting it");
                self.crashes.push((node, time, status));
                self.cluster.restart(node)?;
            }
        }
        Ok(())
    }

    /// Injects faults until the quiet period; then heals everything.
    async fn run_faults(&mut self, stop_at: Instant) -> anyhow::Result<()> {
        let mut schedule = Schedule::new(&self.args.faults);
        let nodes: Vec<u64> = self.cluster.nodes.iter().map(|node| node.id).collect();
        let faults_end = stop_at - self.args.quiet();
        self.sleep_watching(self.origin + WARM_UP).await?;
        while self.faults.len() < FAULTS_MAX {
            let length =
                Duration::from_millis(self.prng.range_inclusive(FAULT_MS_MIN, FAULT_MS_MAX));
            if Instant::now() + length > faults_end {
                break;
            }
            let Some(kind) = schedule.next_kind(&mut self.prng) else {
                break;
            };
            let leader = self.cluster.leader().await;
            let fault = faults::plan(kind, &nodes, leader, &mut self.prng);
            let start = self.now();
            eprintln!("nemesis: {:>6.2} s  {fault}", start as f64 / 1e9);
            faults::inject(&fault, &mut self.cluster, &self.proxies);
            self.sleep_watching(Instant::now() + length).await?;
            faults::heal(&fault, &mut self.cluster, &self.proxies)?;
            let end = self.now();
            eprintln!("nemesis: {:>6.2} s  healed", end as f64 / 1e9);
            self.faults.push(FaultRecord { fault, start, end });
            let gap = Duration::from_millis(self.prng.range_inclusive(GAP_MS_MIN, GAP_MS_MAX));
            self.sleep_watching(Instant::now() + gap).await?;
        }
        self.heal_all()?;
        self.sleep_watching(stop_at).await
    }

    /// Heals every link, continues every paused node and starts every stopped one.
    fn heal_all(&mut self) -> anyhow::Result<()> {
        self.proxies.heal();
        let nodes: Vec<u64> = self.cluster.nodes.iter().map(|node| node.id).collect();
        for node in nodes {
            self.cluster.resume(node);
            self.cluster.restart(node)?;
        }
        Ok(())
    }
}

async fn run_nemesis(
    args: &NemesisArgs,
    seed: u64,
    dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let mut cluster = Cluster::plan(args.nodes, dir)?;
    let proxies = Proxies::start(&cluster.peer_addresses()).await?;
    cluster.start(&proxies)?;
    cluster.wait_ready().await?;
    let leader = cluster.wait_leader(LEADER_TIMEOUT).await?;
    eprintln!("nemesis: {} nodes up, node {leader} leads", args.nodes);
    let origin = Instant::now();
    let stop_at = origin + Duration::from_secs(args.seconds);
    let config = WorkloadConfig {
        seeds: cluster.resp_addresses(),
        clients: args.clients,
        keys: args.keys,
        origin,
        stop_at,
        seed,
    };
    let mut clients = tokio::task::JoinSet::new();
    for index in 0..args.clients {
        clients.spawn(workload::run_client(config.clone(), index));
    }
    let mut nemesis = Nemesis {
        cluster,
        proxies,
        origin,
        prng: Prng::from_seed(seed),
        faults: Vec::new(),
        crashes: Vec::new(),
        args,
    };
    let faults_result = nemesis.run_faults(stop_at).await;
    if faults_result.is_err() {
        nemesis.heal_all()?;
    }
    faults_result?;
    let mut events = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(result) = clients.join_next().await {
            events.extend(result.context("a client task failed")?);
        }
        anyhow::Ok(())
    });
    joined
        .await
        .context("the clients did not stop within 30 s")??;
    let workload_end = nemesis.now();
    eprintln!("nemesis: workload over; final reads");
    let final_process = args.clients * 1_000_000;
    events.extend(workload::final_reads(&config, final_process).await);
    let Nemesis {
        cluster,
        proxies,
        faults,
        crashes,
        ..
    } = nemesis;
    drop(cluster);
    proxies.shutdown().await;
    finish(args, seed, dir, events, &faults, &crashes, workload_end).await
}

/// Writes the history, checks it and reports.
async fn finish(
    args: &NemesisArgs,
    seed: u64,
    dir: &std::path::Path,
    mut events: Vec<Event>,
    faults: &[FaultRecord],
    crashes: &[(u64, u64, String)],
    workload_end: u64,
) -> anyhow::Result<ExitCode> {
    // The report reads the events in time order too (stable: a process's events keep
    // their order at equal times).
    events.sort_by_key(|event| event.time);
    let text = crate::history_lines::history_text(&mut events.iter().collect::<Vec<_>>());
    let history_path = dir.join("history.jsonl");
    std::fs::write(&history_path, &text)
        .with_context(|| format!("cannot write {}", history_path.display()))?;
    eprintln!("nemesis: checking {} events", events.len());
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || check_history(&text))
        .await
        .context("the checker panicked")??;
    let check_seconds = started.elapsed().as_secs_f64();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let summary = RunSummary {
        command,
        seed,
        nodes: args.nodes,
        clients: args.clients,
        keys: args.keys,
        events: &events,
        faults,
        crashes,
        workload_end,
        check: &report,
        check_seconds,
        history_path: history_path.display().to_string(),
    };
    let markdown = report::markdown(&summary);
    println!("{markdown}");
    if let Some(path) = &args.report {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    Ok(match (summary.passed(), report.verdict) {
        (true, _) => ExitCode::SUCCESS,
        (false, Verdict::Unknown) if summary.lost_writes_count() == 0 => ExitCode::from(3),
        (false, _) => ExitCode::from(1),
    })
}

fn check_history(text: &str) -> anyhow::Result<synod_check::Report> {
    let options = ParseOptions {
        allow_truncated: false,
    };
    let history = synod_check::parse_history(text, options)
        .map_err(|error| anyhow::anyhow!("the recorded history is malformed: {error}"))?;
    let started = Instant::now();
    let clock = move || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let timeout_nanos = u64::try_from(CHECK_KEY_TIMEOUT.as_nanos()).unwrap_or(u64::MAX);
    let options = CheckOptions {
        models: Models {
            linearizable: true,
            sequential: true,
            session: true,
            lost_writes: true,
        },
        key_timeout_nanos: Some(timeout_nanos),
        clock_nanos: &clock,
        memory_bytes_max: CHECK_MEMORY_BYTES_MAX,
        threads,
        sequential_timeout_nanos: Some(timeout_nanos),
        sequential_nodes_max: synod_check::SEQUENTIAL_NODES_MAX_DEFAULT,
        session_steps_max: synod_check::session::STEPS_MAX_DEFAULT,
        key_sequential_nodes_max: u64::MAX,
    };
    Ok(synod_check::check(&history, &options))
}
