//! `synod bench overload`: what a real cluster does when offered more than it can serve.
//!
//! It starts a cluster (`synod up`) with load shedding off
//! (`SYNOD_RESILIENCE__SHEDDING=false`: requests wait in the gateway until answered or timed
//! out, as before admission control) and measures, with writes (`SET`) spread over every
//! node: the unloaded latency (closed loop, one client per node, after a closed loop of the
//! same shape that warms the young cluster up), the peak throughput (the best of closed loops
//! with more and more clients: at any latency, and within a latency objective of
//! `--latency-factor` times the unloaded p99; `--peak` picks which), then offers `--factor`
//! times that peak open-loop for `--seconds`: a fixed-rate generator over many connections,
//! each with a bounded number of requests outstanding (a send due while the bound is reached
//! is skipped and counted, so the generator's own memory stays bounded). Then it starts a
//! second cluster with shedding on (the default), runs the unloaded closed loop on it first
//! (the adaptive limit learns its baseline latency from it, as from normal traffic), and
//! offers the same rate. For each overload run it prints the accepted throughput against the
//! peak (answers that arrive after the offer ended are counted apart, not as throughput), the
//! p99 of accepted requests against the unloaded p99 (latency from each request's scheduled
//! send time, so the generator's own lag counts), refusals (`-BUSY`), other errors, the terms
//! before and after (leader changes), and every node's peak RSS (VmHWM). Other `SYNOD_*`
//! variables in the environment reach both clusters' servers (for example
//! `SYNOD_RESILIENCE__LIMIT_MIN`).
//!
//! These are measurements printed as numbers; nothing here asserts a timing.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::BytesMut;
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value as Json, json};
use synod_server::{Reply, ReplyParser, RespLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::lab::LabCluster;

#[derive(Args, Debug)]
pub struct OverloadArgs {
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Base port of the clusters (as `synod up --base-port`); both use it in turn.
    #[arg(long, default_value_t = 7800)]
    pub base_port: u16,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Closed-loop client counts tried for the peak (comma-separated); the best
    /// throughput is the peak. Raft batches concurrent writes into shared fsyncs, so the
    /// peak needs many writes in flight.
    #[arg(long, default_value = "6,9,12,18,24,48,96,256,1024")]
    pub peak_clients: String,
    /// Which peak the overload multiplies: `throughput`, the best closed-loop throughput
    /// at any latency (batching keeps raising it with the queue, and the latency with it);
    /// or `objective`, the best whose p99 stays within --latency-factor times the unloaded
    /// p99 (what the cluster serves at the latency it promises). Both are printed.
    #[arg(long, value_enum, default_value_t = PeakKind::Throughput)]
    pub peak: PeakKind,
    /// The latency objective: p99 at most this many times the unloaded p99.
    #[arg(long, default_value_t = 2.0)]
    pub latency_factor: f64,
    /// The overload is this many times the peak.
    #[arg(long, default_value_t = 3.0)]
    pub factor: f64,
    /// Connections of the open-loop generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Requests the generator keeps outstanding at most, over all its connections.
    #[arg(long, default_value_t = 16_384)]
    pub outstanding_max: usize,
    /// Run the clusters' processes on CPU 0 and this load generator on the other CPUs
    /// (Linux `taskset`), so that the generator's own sends and reads do not take the CPU
    /// the cluster serves with, as when clients run on other machines. Needs 2 CPUs.
    #[arg(long)]
    pub pin: bool,
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
}

/// Which closed-loop run is the peak.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeakKind {
    Objective,
    Throughput,
}

/// The highest latency recorded, in microseconds (larger ones saturate).
const LATENCY_US_MAX: u64 = 120_000_000;
/// How long the generator waits for outstanding answers after its last send.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTIONS_MAX: usize = 4_096;

pub fn run(args: &OverloadArgs) -> Result<ExitCode> {
    let peak_clients: Vec<usize> = args
        .peak_clients
        .split(',')
        .map(|count| count.trim().parse())
        .collect::<Result<_, _>>()
        .context("--peak-clients: a comma-separated list of client counts")?;
    if args.seconds == 0 || args.connections == 0 || peak_clients.contains(&0) {
        bail!("--seconds, --peak-clients and --connections must be positive");
    }
    let most = peak_clients.iter().copied().max().unwrap_or(0);
    if args.connections > CONNECTIONS_MAX || most > CONNECTIONS_MAX {
        bail!("--connections and --peak-clients may be at most {CONNECTIONS_MAX}");
    }
    if args.outstanding_max < args.connections || args.factor.is_nan() || args.factor <= 0.0 {
        bail!("--outstanding-max must be at least --connections, --factor positive");
    }
    if args.latency_factor.is_nan() || args.latency_factor < 1.0 {
        bail!("--latency-factor must be at least 1 (a p99 bound relative to the unloaded one)");
    }
    let exe = std::env::current_exe().context("cannot find the synod binary")?;
    let runtime = crate::server::tokio_runtime(4)?;
    if args.pin {
        pin_generator()?;
    }
    let seconds = Duration::from_secs(args.seconds);

    // The unloaded latency and the peak are measured with shedding off, so that refusals do
    // not cut the closed loop's concurrency; the overload then runs on that cluster and on a
    // fresh one with shedding on.
    let off = Run::start(&exe, args, false)?;
    // A young cluster's first seconds are slower (first snapshots, cold caches): a closed
    // loop of the same shape first, not measured.
    runtime.block_on(closed_loop(
        &off.endpoints,
        args,
        args.nodes as usize,
        seconds,
    ))?;
    let unloaded = runtime.block_on(closed_loop(
        &off.endpoints,
        args,
        args.nodes as usize,
        seconds,
    ))?;
    let unloaded_p99 = unloaded.latency.value_at_quantile(0.99).max(1);
    let objective_us = (unloaded_p99 as f64 * args.latency_factor) as u64;
    let rate = |tally: &Tally| tally.ok_count as f64 / seconds.as_secs_f64();
    println!(
        "unloaded (closed loop, {} clients): {:.0} writes/s, p50 {} us, p99 {unloaded_p99} us; \
         latency objective: p99 <= {objective_us} us ({}x)",
        args.nodes,
        rate(&unloaded),
        unloaded.latency.value_at_quantile(0.5),
        args.latency_factor
    );
    // (clients, writes/s, p99 us) of every closed loop, the unloaded one first.
    let mut runs = vec![(
        args.nodes as usize,
        rate(&unloaded),
        unloaded_p99,
        unloaded.error_example.clone(),
    )];
    for clients in peak_clients {
        let tally = runtime.block_on(closed_loop(&off.endpoints, args, clients, seconds))?;
        let p99 = tally.latency.value_at_quantile(0.99);
        let within = if p99 <= objective_us {
            "within"
        } else {
            "beyond"
        };
        println!(
            "closed loop, {clients} clients: {:.0} writes/s, p99 {p99} us ({within} the \
             objective)",
            rate(&tally)
        );
        runs.push((clients, rate(&tally), p99, tally.error_example.clone()));
    }
    let best = |runs: &mut dyn Iterator<Item = &(usize, f64, u64, Option<String>)>| {
        runs.max_by(|a, b| a.1.total_cmp(&b.1)).cloned()
    };
    let raw = best(&mut runs.iter()).expect("at least one run");
    let objective = best(&mut runs.iter().filter(|run| run.2 <= objective_us))
        .expect("the unloaded run is within the objective");
    for (name, run) in [
        ("peak within the objective", &objective),
        ("peak at any latency", &raw),
    ] {
        println!(
            "{name}: {:.0} writes/s (closed loop, {} clients, p99 {} us)",
            run.1, run.0, run.2
        );
        if let Some(example) = &run.3 {
            println!("  an error reply: {example}");
        }
    }
    let peak = match args.peak {
        PeakKind::Objective => &objective,
        PeakKind::Throughput => &raw,
    };
    let peak_rate = peak.1;
    let offered_rate = peak_rate * args.factor;
    println!(
        "offering {offered_rate:.0}/s open-loop ({}x the {:?} peak)",
        args.factor, args.peak
    );
    let queued = off.overload(&runtime, args, offered_rate, peak_rate, unloaded_p99)?;
    drop(off);
    let on = Run::start(&exe, args, true)?;
    // A store runs before it is overloaded: the unloaded closed loop first gives the
    // adaptive limit its baseline latency, as normal traffic does in production.
    let warm = runtime.block_on(closed_loop(
        &on.endpoints,
        args,
        args.nodes as usize,
        seconds,
    ))?;
    println!(
        "shedding on, unloaded first (closed loop, {} clients): {:.0} writes/s, p99 {} us",
        args.nodes,
        rate(&warm),
        warm.latency.value_at_quantile(0.99)
    );
    let shed = on.overload(&runtime, args, offered_rate, peak_rate, unloaded_p99)?;
    drop(on);
    let report = json!({
        "nodes": args.nodes,
        "seconds": args.seconds,
        "unloaded": unloaded.json(seconds),
        "latency_objective_us": objective_us,
        "peak_kind": format!("{:?}", args.peak).to_lowercase(),
        "peak_within_objective_per_second": objective.1.round(),
        "peak_at_any_latency_per_second": raw.1.round(),
        "offered_per_second": offered_rate.round(),
        "shedding_on": shed,
        "shedding_off": queued,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// One cluster of the benchmark.
struct Run {
    cluster: LabCluster,
    endpoints: Vec<SocketAddr>,
    http: Vec<SocketAddr>,
    shedding: bool,
}

impl Run {
    fn start(exe: &Path, args: &OverloadArgs, shedding: bool) -> Result<Run> {
        let dir = std::env::temp_dir().join(format!(
            "synod-overload-{}-{}",
            std::process::id(),
            if shedding { "on" } else { "off" }
        ));
        let launcher: &[&str] = if args.pin {
            &["taskset", "-c", "0"]
        } else {
            &[]
        };
        let cluster =
            LabCluster::start_through(launcher, exe, args.nodes, args.base_port, dir, |command| {
                command
                    .env("SYNOD_RESILIENCE__SHEDDING", shedding.to_string())
                    .stderr(Stdio::null());
            })?;
        let address = |offset: u64, id: u64| {
            let port = u64::from(args.base_port) + offset + id;
            SocketAddr::from(([127, 0, 0, 1], port as u16))
        };
        let run = Run {
            cluster,
            endpoints: (1..=args.nodes).map(|id| address(0, id)).collect(),
            http: (1..=args.nodes).map(|id| address(100, id)).collect(),
            shedding,
        };
        run.wait_for_writes()?;
        Ok(run)
    }

    /// Waits until a write through node 1 succeeds (a leader is elected), bounded.
    fn wait_for_writes(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut stream) = StdTcpStream::connect(self.endpoints[0]) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let request = b"*3\r\n$3\r\nSET\r\n$5\r\nready\r\n$1\r\n1\r\n";
                let mut answer = [0u8; 64];
                if stream.write_all(request).is_ok()
                    && let Ok(read) = stream.read(&mut answer)
                    && answer[..read].starts_with(b"+OK")
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("the cluster did not accept a write within 60 s")
    }

    /// `(node, term, role)` from every node's `/status`.
    fn terms(&self) -> Vec<(u64, u64, String)> {
        self.http
            .iter()
            .enumerate()
            .map(|(index, address)| {
                let status = http_get_json(*address, "/status").unwrap_or(Json::Null);
                let term = status["term"].as_u64().unwrap_or(0);
                let role = status["role"].as_str().unwrap_or("unreachable").to_string();
                (index as u64 + 1, term, role)
            })
            .collect()
    }

    /// A file of each node's `/proc/<pid>/` (empty where it cannot be read).
    fn proc_files(&self, name: &str) -> Vec<String> {
        (1..=self.endpoints.len())
            .map(|id| {
                let pid_file = self
                    .cluster
                    .dir
                    .join(format!("node-{id}"))
                    .join("synod.pid");
                let pid = std::fs::read_to_string(pid_file).unwrap_or_default();
                std::fs::read_to_string(format!("/proc/{}/{name}", pid.trim())).unwrap_or_default()
            })
            .collect()
    }

    /// Peak resident memory of each node process, in KiB (VmHWM).
    fn peak_rss_kib(&self) -> Vec<u64> {
        self.proc_files("status")
            .iter()
            .map(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// CPU time each node process has used so far (user and system, every thread).
    fn cpu_seconds(&self) -> Vec<f64> {
        self.proc_files("stat")
            .iter()
            .map(|stat| cpu_seconds_of_stat(stat).unwrap_or(0.0))
            .collect()
    }

    fn overload(
        &self,
        runtime: &tokio::runtime::Runtime,
        args: &OverloadArgs,
        rate: f64,
        peak_rate: f64,
        unloaded_p99_us: u64,
    ) -> Result<Json> {
        let before = self.terms();
        // Every node's admission figures half-way through the offer, read beside the load.
        let sampler = {
            let (http, half) = (self.http.clone(), Duration::from_secs(args.seconds) / 2);
            std::thread::spawn(move || {
                std::thread::sleep(half);
                http.iter()
                    .map(|address| admission_figures(*address))
                    .collect::<Vec<_>>()
            })
        };
        let (cpu_before, started) = (self.cpu_seconds(), Instant::now());
        let result = runtime.block_on(open_loop(&self.endpoints, args, rate))?;
        let cpu_after = self.cpu_seconds();
        let elapsed = started.elapsed().as_secs_f64();
        // Cores each node kept busy while the load was offered (the tail after the offer
        // included: at most the generator's drain).
        let cores: Vec<f64> = cpu_before
            .iter()
            .zip(&cpu_after)
            .map(|(before, after)| (after - before).max(0.0) / elapsed)
            .collect();
        let admission = sampler.join().unwrap_or_default();
        let after = self.terms();
        let seconds = args.seconds as f64;
        // Only answers within the offer count: with shedding off, requests queued during
        // the overload are still answered for seconds after it.
        let accepted_rate = result.in_window() as f64 / seconds;
        let p99 = result.latency.value_at_quantile(0.99);
        let term_changes: u64 = before
            .iter()
            .zip(&after)
            .map(|((_, old, _), (_, new, _))| new.saturating_sub(*old))
            .max()
            .unwrap_or(0);
        let leader_before = before.iter().find(|(_, _, role)| role == "leader");
        let leader_after = after.iter().find(|(_, _, role)| role == "leader");
        let rss = self.peak_rss_kib();
        let mode = if self.shedding { "on" } else { "off" };
        println!(
            "overload, shedding {mode}: accepted {accepted_rate:.0}/s = {:.0}% of peak; p99 \
             of accepted {p99} us = {:.1}x unloaded; answered OK after the offer ended {}; \
             refused (BUSY) {}, other errors {}, unanswered {}, skipped by the generator's \
             bound {}; term +{term_changes} \
             (leader {:?} -> {:?}); peak RSS per node {:?} KiB",
            100.0 * accepted_rate / peak_rate.max(1.0),
            p99 as f64 / unloaded_p99_us as f64,
            result.late_count,
            result.busy_count,
            result.error_count,
            result.unanswered_count,
            result.skipped_count,
            leader_before.map(|leader| leader.0),
            leader_after.map(|leader| leader.0),
            rss
        );
        if let Some(example) = &result.error_example {
            println!("  an error reply: {example}");
        }
        println!(
            "  CPU the cluster used while offered: {:.2} cores ({})",
            cores.iter().sum::<f64>(),
            cores
                .iter()
                .enumerate()
                .map(|(node, used)| format!("node {} {used:.2}", node + 1))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if self.shedding {
            for (node, figures) in admission.iter().enumerate() {
                println!(
                    "  node {} half-way: admission limit {}, running {}, queued {}, long-term \
                     latency {} us",
                    node + 1,
                    figures.limit,
                    figures.running,
                    figures.queued,
                    figures.rtt_long_us
                );
            }
        }
        let mut report = result.json(Duration::from_secs(args.seconds));
        if self.shedding {
            let figures: Vec<Json> = admission
                .iter()
                .map(|figures| {
                    json!({
                        "limit": figures.limit,
                        "running": figures.running,
                        "queued": figures.queued,
                        "rtt_long_us": figures.rtt_long_us,
                    })
                })
                .collect();
            report["admission_half_way"] = json!(figures);
        }
        report["shedding"] = json!(self.shedding);
        report["accepted_per_second"] = json!(accepted_rate.round());
        report["accepted_of_peak_percent"] = json!((100.0 * accepted_rate / peak_rate).round());
        report["p99_of_unloaded_ratio"] = json!(p99 as f64 / unloaded_p99_us as f64);
        report["term_increase_max"] = json!(term_changes);
        report["leader_before"] = json!(leader_before.map(|leader| leader.0));
        report["leader_after"] = json!(leader_after.map(|leader| leader.0));
        report["peak_rss_kib"] = json!(rss);
        report["cpu_cores_per_node"] = json!(cores);
        Ok(report)
    }
}

/// Moves every thread of this process (the generator's runtime included) off CPU 0, which
/// `--pin` leaves to the cluster.
fn pin_generator() -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cpus < 2 {
        bail!("--pin needs at least 2 CPUs (this machine has {cpus})");
    }
    let others = format!("1-{}", cpus - 1);
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &others, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("--pin runs taskset (util-linux), which could not be started")?;
    if !status.success() {
        bail!("taskset could not pin the generator to CPUs {others} ({status})");
    }
    println!("pinned: the clusters on CPU 0, this generator on CPUs {others}");
    Ok(())
}

/// One HTTP GET on loopback, its body.
fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    let mut stream = StdTcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn http_get_json(address: SocketAddr, path: &str) -> Option<Json> {
    serde_json::from_str(&http_get(address, path)?).ok()
}

/// The CPU time (user plus system, in seconds) in the text of a `/proc/<pid>/stat`. Its
/// fields after the command name (which may hold spaces, so the split is at its closing
/// parenthesis) start with the third; utime and stime are the 14th and 15th, in clock ticks
/// of `USER_HZ`, which Linux fixes at 100 for user space.
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// A node's admission gauges, read from its `/metrics` (zeros where it did not answer).
#[derive(Debug, Clone, Copy, Default)]
struct AdmissionSample {
    limit: u64,
    running: u64,
    queued: u64,
    rtt_long_us: u64,
}

fn admission_figures(address: SocketAddr) -> AdmissionSample {
    parse_admission(&http_get(address, "/metrics").unwrap_or_default())
}

/// The admission gauges of a `/metrics` page (Prometheus text; zero for a missing one).
fn parse_admission(metrics: &str) -> AdmissionSample {
    let gauge = |name: &str| {
        metrics
            .lines()
            .filter_map(|line| line.strip_prefix(name))
            .find_map(|rest| rest.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    };
    AdmissionSample {
        limit: gauge("synod_admission_limit"),
        running: gauge("synod_admission_running"),
        queued: gauge("synod_admission_queued"),
        rtt_long_us: gauge("synod_admission_rtt_long_microseconds"),
    }
}

/// What one measurement counted.
struct Tally {
    /// Latencies of the requests answered OK, in microseconds.
    latency: Histogram<u64>,
    ok_count: u64,
    /// Of those, answered after the offer ended (requests that had waited in queues); not
    /// part of the accepted throughput.
    late_count: u64,
    busy_count: u64,
    error_count: u64,
    unanswered_count: u64,
    skipped_count: u64,
    error_example: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_max(LATENCY_US_MAX, 3).expect("valid histogram bounds"),
            ok_count: 0,
            late_count: 0,
            busy_count: 0,
            error_count: 0,
            unanswered_count: 0,
            skipped_count: 0,
            error_example: None,
        }
    }

    fn add(&mut self, other: Tally) {
        self.latency.add(&other.latency).expect("same bounds");
        self.ok_count += other.ok_count;
        self.late_count += other.late_count;
        self.busy_count += other.busy_count;
        self.error_count += other.error_count;
        self.unanswered_count += other.unanswered_count;
        self.skipped_count += other.skipped_count;
        self.error_example = self.error_example.take().or(other.error_example);
    }

    fn record(&mut self, reply: &Reply, latency: Duration) {
        match reply {
            Reply::Simple(text) if text == "OK" => {
                self.ok_count += 1;
                let micros = (latency.as_micros() as u64).min(LATENCY_US_MAX);
                let _ = self.latency.record(micros);
            }
            Reply::Error(text) if text.starts_with("BUSY") => self.busy_count += 1,
            other => {
                self.error_count += 1;
                if self.error_example.is_none() {
                    self.error_example = Some(format!("{other:?}"));
                }
            }
        }
    }

    /// The OK answers that arrived while the load was offered.
    fn in_window(&self) -> u64 {
        self.ok_count - self.late_count
    }

    fn json(&self, seconds: Duration) -> Json {
        let quantile = |q: f64| self.latency.value_at_quantile(q);
        json!({
            "ok": self.ok_count,
            "ok_late": self.late_count,
            "ok_per_second": (self.in_window() as f64 / seconds.as_secs_f64()).round(),
            "busy": self.busy_count,
            "errors": self.error_count,
            "unanswered": self.unanswered_count,
            "skipped": self.skipped_count,
            "p50_us": quantile(0.5),
            "p99_us": quantile(0.99),
            "p999_us": quantile(0.999),
            "max_us": self.latency.max(),
        })
    }
}

/// A SET of a pseudo-random key, as RESP.
fn set_command(sequence: u64, keys: u64, value: &[u8], out: &mut Vec<u8>) {
    // A multiplicative hash spreads consecutive sequences over the keys.
    let key = format!(
        "key:{}",
        sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keys.max(1)
    );
    out.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
    out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Reads one reply off `stream`, buffering in `buffer`.
async fn read_reply(
    stream: &mut (impl AsyncReadExt + Unpin),
    parser: &mut ReplyParser,
    buffer: &mut BytesMut,
) -> Result<Reply> {
    loop {
        if let Some(reply) = parser.feed(buffer).context("a malformed reply")? {
            return Ok(reply);
        }
        if stream.read_buf(buffer).await? == 0 {
            bail!("the node closed the connection");
        }
    }
}

/// `clients` connections spread over the nodes, each with one SET in flight.
async fn closed_loop(
    endpoints: &[SocketAddr],
    args: &OverloadArgs,
    clients: usize,
    seconds: Duration,
) -> Result<Tally> {
    let sequence = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + seconds;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let address = endpoints[client % endpoints.len()];
        let (sequence, keys, value) = (sequence.clone(), args.keys, vec![b'v'; args.value_size]);
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (mut parser, mut buffer) =
                (ReplyParser::new(RespLimits::default()), BytesMut::new());
            let mut tally = Tally::new();
            let mut request = Vec::new();
            while Instant::now() < deadline {
                request.clear();
                set_command(
                    sequence.fetch_add(1, Ordering::Relaxed),
                    keys,
                    &value,
                    &mut request,
                );
                let sent = Instant::now();
                stream.write_all(&request).await?;
                let reply = read_reply(&mut stream, &mut parser, &mut buffer).await?;
                tally.record(&reply, sent.elapsed());
            }
            anyhow::Ok(tally)
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        total.add(task.await??);
    }
    Ok(total)
}

/// Sends at `rate` per second over `args.connections` connections for `args.seconds`,
/// each connection with at most its share of `args.outstanding_max` unanswered.
async fn open_loop(endpoints: &[SocketAddr], args: &OverloadArgs, rate: f64) -> Result<Tally> {
    let connections = args.connections;
    let per_connection_rate = rate / connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection_rate.max(1e-3));
    let outstanding_max = args.outstanding_max / connections;
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::with_capacity(connections);
    for connection in 0..connections {
        let address = endpoints[connection % endpoints.len()];
        let (keys, value) = (args.keys, vec![b'v'; args.value_size]);
        // Connections start spread over one interval so that their sends interleave.
        let offset = interval.mul_f64(connection as f64 / connections as f64);
        tasks.push(tokio::spawn(open_loop_connection(
            address,
            keys,
            value,
            (start + offset, end, interval),
            outstanding_max,
            connection as u64,
        )));
    }
    let mut total = Tally::new();
    for task in tasks {
        total.add(task.await??);
    }
    Ok(total)
}

async fn open_loop_connection(
    address: SocketAddr,
    keys: u64,
    value: Vec<u8>,
    (first, end, interval): (Instant, Instant, Duration),
    outstanding_max: usize,
    connection: u64,
) -> Result<Tally> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    // The scheduled send times of the requests outstanding, oldest first; the channel's
    // bound is the connection's outstanding bound.
    let (scheduled_sender, mut scheduled) = mpsc::channel::<Instant>(outstanding_max.max(1));
    let receive = tokio::spawn(async move {
        let (mut parser, mut buffer) = (ReplyParser::new(RespLimits::default()), BytesMut::new());
        let mut tally = Tally::new();
        let mut pending: VecDeque<Instant> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match scheduled.recv().await {
                    Some(at) => pending.push_back(at),
                    None => return tally,
                }
            }
            let read = tokio::time::timeout(
                DRAIN_TIMEOUT,
                read_reply(&mut reader, &mut parser, &mut buffer),
            )
            .await;
            let Ok(Ok(reply)) = read else {
                // No answer in time, or the connection broke: the rest go unanswered.
                while scheduled.try_recv().is_ok() {
                    tally.unanswered_count += 1;
                }
                tally.unanswered_count += pending.len() as u64;
                return tally;
            };
            let at = pending.pop_front().expect("not empty");
            tally.record(&reply, at.elapsed());
            if Instant::now() > end && matches!(&reply, Reply::Simple(text) if text == "OK") {
                tally.late_count += 1;
            }
            while let Ok(at) = scheduled.try_recv() {
                pending.push_back(at);
            }
        }
    });
    let mut skipped = 0u64;
    let mut next = first;
    let mut sequence = connection << 40;
    let mut batch = Vec::new();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        batch.clear();
        while next <= now && next < end {
            match scheduled_sender.try_send(next) {
                Ok(()) => {
                    set_command(sequence, keys, &value, &mut batch);
                    sequence += 1;
                }
                Err(_) => skipped += 1,
            }
            next += interval;
        }
        if !batch.is_empty() && writer.write_all(&batch).await.is_err() {
            break;
        }
    }
    drop(scheduled_sender);
    let mut tally = receive.await.context("the reply reader failed")?;
    tally.skipped_count += skipped;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        // Checks utime (250 ticks) and stime (50 ticks) are found after a command name that
        // holds a space and a parenthesis, and that a truncated line gives nothing.
        let stat = "4242 (synod (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_seconds_of_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("4242 (synod) S 1 2"), None);
    }

    #[test]
    fn admission_gauges_are_read_by_exact_name() {
        // Checks the half-way sample takes each gauge by its exact name (not a longer name
        // that starts with it), skips comments, and reads a missing gauge as zero.
        let metrics = "# HELP synod_admission_limit The adaptive limit\n\
                       synod_admission_limit 37\n\
                       synod_admission_limit_other 99\n\
                       synod_admission_running 12\n\
                       synod_admission_rtt_long_microseconds 2150.5\n";
        let sample = parse_admission(metrics);
        assert_eq!(
            (
                sample.limit,
                sample.running,
                sample.queued,
                sample.rtt_long_us
            ),
            (37, 12, 0, 2150)
        );
    }
}
