//! `synod nemesis`: a Jepsen-style test of real `synod server` processes on this machine.
//!
//! It starts a cluster whose peer links all pass through a network it controls (`net.rs`:
//! fault-injecting proxies on loopback, `proxy.rs`, or a network namespace per node with
//! iptables, `netns.rs`), runs closed-loop clients that record a history (`workload.rs`),
//! injects a seeded random schedule of faults (kill -9 and restart, SIGSTOP/SIGCONT,
//! partitions: `faults.rs`; clock skew, membership changes, a full and a slow disk:
//! `schedule.rs`, one or several at once: `injector.rs`), heals everything, waits a quiet
//! period, reads every key one last time, and judges the history with synod-check
//! in-process. It reports in Markdown (`report.rs`) and in HTML with a timeline (`html.rs`,
//! `timeline.rs`).
//! docs/nemesis.md explains how to read the report.

mod admin;
pub(crate) mod cluster;
mod disk;
mod faults;
mod html;
mod injector;
pub(crate) mod net;
mod netns;
pub(crate) mod proxy;
mod report;
mod schedule;
mod timeline;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use synod_check::{Models, Verdict};
use synod_core::Prng;

use cluster::Cluster;
use net::{NetMode, Network};
use report::{FaultRecord, RunSummary};
use schedule::{Kind, Selection};
use workload::{Event, WorkloadConfig};

use crate::harness::{TempDir, block_on_interruptible, check_recorded, parse_recorded};

/// How long the clients wait for a leader before the workload starts.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// The checker's budget per key and for the whole-history sequential search.
const CHECK_KEY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct NemesisArgs {
    /// How many `synod server` processes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// How long the workload runs, faults and the final quiet period included.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The kinds of fault to inject (comma-separated): kill, pause, partition, clock,
    /// membership, disk (a full disk, root only), slow-disk, failing-disk, or all (every
    /// kind this machine allows).
    #[arg(
        long,
        value_parser = schedule::parse_selection,
        value_delimiter = ',',
        default_value = "kill,pause,partition"
    )]
    pub faults: Vec<Selection>,
    /// The chance that a fault starts while another is in force (at most two at once,
    /// bounded so that a majority can make progress after the heal); 0: one at a time.
    #[arg(long, default_value_t = 0.25)]
    pub overlap: f64,
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
    /// How peer traffic is carried and cut: proxies on loopback, or a network namespace per
    /// node with iptables (root); auto picks netns when it can.
    #[arg(long, value_enum, default_value = "auto")]
    pub net: NetMode,
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
        if !(0.0..=1.0).contains(&self.overlap) {
            bail!("--overlap must be between 0 and 1 (got {})", self.overlap);
        }
        Ok(())
    }

    /// The quiet period at the end: no faults, everything healed.
    fn quiet(&self) -> Duration {
        Duration::from_secs((self.seconds / 5).clamp(2, 10))
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
    let dir = TempDir::create("nemesis", &name, args.keep)?;
    eprintln!("nemesis: seed {seed}, directory {}", dir.path.display());
    let outcome = block_on_interruptible("nemesis", run_nemesis(args, seed, &dir.path));
    drop(dir);
    Ok(outcome?.unwrap_or(ExitCode::from(130)))
}

/// The fault loop's view of the run.
struct Nemesis<'a> {
    // Declared before the network: the processes die before their namespaces go.
    cluster: Cluster,
    network: Network,
    origin: Instant,
    prng: Prng,
    faults: Vec<FaultRecord>,
    crashes: Vec<(u64, u64, String)>,
    args: &'a NemesisArgs,
    /// The kinds this run injects.
    kinds: Vec<Kind>,
    /// The voters and learners as last read from the leader.
    voters: Vec<u64>,
    learners: Vec<u64>,
    /// The node whose data is on the harness's tmpfs, and the mount (declared after the
    /// cluster, so that it is unmounted after the processes die).
    disk: Option<(u64, disk::TmpfsMount)>,
    disk_baseline: Option<injector::DiskBaseline>,
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
}

async fn run_nemesis(
    args: &NemesisArgs,
    seed: u64,
    dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let (mut kinds, mut skipped) =
        schedule::resolve(&args.faults, disk::unavailable_reason().as_deref());
    // A membership change needs a node outside the cluster to add: a spare that runs from
    // the start without a vote.
    let nodes_total = args.nodes + u64::from(kinds.contains(&Kind::Membership));
    // The disk's mount first, so that on every early return it is unmounted after the
    // processes that use it died.
    let disk = mount_disk(&mut kinds, &mut skipped, args.nodes, dir);
    for line in &skipped {
        eprintln!("nemesis: {line}");
    }
    // The network first and the cluster second, so that on every early return the cluster
    // (its processes) is dropped before the network (the namespaces they run in).
    let (network, setups) = Network::start(args.net, nodes_total).await?;
    let mut cluster = Cluster::plan(setups, dir)?;
    cluster.set_voters_count(args.nodes);
    if let Some((node, mount)) = &disk {
        cluster.set_data_dir(*node, mount.path().join("data"));
    }
    cluster.start(&network)?;
    cluster.wait_ready().await?;
    let leader = cluster.wait_leader(LEADER_TIMEOUT).await?;
    eprintln!(
        "nemesis: {nodes_total} nodes up ({} voters), node {leader} leads",
        args.nodes
    );
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
        network,
        origin,
        prng: Prng::from_seed(seed),
        faults: Vec::new(),
        crashes: Vec::new(),
        args,
        kinds,
        voters: (1..=args.nodes).collect(),
        learners: Vec::new(),
        disk,
        disk_baseline: None,
    };
    let faults_result = nemesis.run_faults(stop_at).await;
    if faults_result.is_err() {
        nemesis.heal_all().await?;
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
        network,
        faults,
        crashes,
        kinds,
        disk,
        ..
    } = nemesis;
    drop(cluster);
    drop(disk);
    network.shutdown().await;
    let run = FinishedRun {
        events,
        faults,
        crashes,
        workload_end,
        kinds,
        skipped,
        nodes_total,
    };
    finish(args, seed, dir, run).await
}

/// Mounts the disk fault's tmpfs for the last voter when the disk kind is selected; on
/// failure the kind is dropped with the reason in `skipped`.
fn mount_disk(
    kinds: &mut Vec<Kind>,
    skipped: &mut Vec<String>,
    node: u64,
    dir: &std::path::Path,
) -> Option<(u64, disk::TmpfsMount)> {
    if !kinds.contains(&Kind::Disk) {
        return None;
    }
    let path = dir.join(format!("node-{node}")).join("disk");
    match disk::TmpfsMount::mount(&path, disk::TMPFS_SIZE_MB) {
        Ok(mount) => Some((node, mount)),
        Err(error) => {
            kinds.retain(|kind| *kind != Kind::Disk);
            skipped.push(format!("disk faults skipped: {error:#}"));
            None
        }
    }
}

/// What the run leaves for the report.
struct FinishedRun {
    events: Vec<Event>,
    faults: Vec<FaultRecord>,
    crashes: Vec<(u64, u64, String)>,
    workload_end: u64,
    kinds: Vec<Kind>,
    skipped: Vec<String>,
    nodes_total: u64,
}

/// Writes the history, checks it and reports (Markdown printed and in `--report`, HTML
/// beside it and in the run's directory).
async fn finish(
    args: &NemesisArgs,
    seed: u64,
    dir: &std::path::Path,
    run: FinishedRun,
) -> anyhow::Result<ExitCode> {
    let FinishedRun {
        mut events,
        mut faults,
        crashes,
        workload_end,
        kinds,
        skipped,
        nodes_total,
    } = run;
    // Faults are recorded as they heal; the report lists them as they started.
    faults.sort_by_key(|record| record.start);
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
        nodes_total,
        clients: args.clients,
        keys: args.keys,
        kinds,
        skipped: &skipped,
        overlap: args.overlap,
        election_timeout_ms: cluster::ELECTION_TIMEOUT_MS,
        drift_bound_ppm: cluster::LEASE_DRIFT_BOUND_PPM,
        events: &events,
        faults: &faults,
        crashes: &crashes,
        workload_end,
        check: &report,
        check_seconds,
        history_path: history_path.display().to_string(),
    };
    let markdown = report::markdown(&summary);
    println!("{markdown}");
    let page = html::page(&summary);
    let mut html_paths = vec![dir.join("report.html")];
    if let Some(path) = &args.report {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
        html_paths.push(path.with_extension("html"));
    }
    for path in &html_paths {
        std::fs::write(path, &page)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    if let Some(path) = html_paths.get(1) {
        eprintln!("nemesis: HTML report in {}", path.display());
    }
    Ok(match (summary.passed(), report.verdict) {
        (true, _) => ExitCode::SUCCESS,
        (false, Verdict::Unknown) if summary.lost_writes_count() == 0 => ExitCode::from(3),
        (false, _) => ExitCode::from(1),
    })
}

fn check_history(text: &str) -> anyhow::Result<synod_check::Report> {
    let history = parse_recorded(text)
        .map_err(|error| anyhow::anyhow!("the recorded history is malformed: {error}"))?;
    Ok(check_recorded(&history, Models::ALL, CHECK_KEY_TIMEOUT))
}
