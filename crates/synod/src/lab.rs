//! `synod lab`: experiments on a live cluster that show, measured, what each consistency
//! level costs. `synod lab latency` is the "else" of PACELC: with no faults, the latency and
//! throughput of writes and of reads at every level, side by side, each number explained.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value as Json;
use synod_check::html::escape;

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Latency and throughput of writes and of reads at each level, no faults (PACELC's
    /// "else": the price of consistency when nothing is wrong).
    Latency(LatencyArgs),
    /// Lease reads while one node's clock drifts inside and then outside the lease's drift
    /// bound: the leader measures the skew and suspends the lease; every history checked.
    Skew(crate::lab_skew::SkewArgs),
    /// CAP, measured: the leader partitioned into a minority; per read level and side, the
    /// share of requests that succeeded and whether the history stayed consistent. Always
    /// starts its own cluster (it must control the links between the nodes).
    Partition(crate::lab_partition::PartitionArgs),
}

#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Use a running cluster (comma-separated RESP addresses) instead of starting one.
    #[arg(long)]
    pub endpoints: Option<String>,
    /// Nodes of the cluster the lab starts.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Base port of the cluster the lab starts (as `synod up --base-port`).
    #[arg(long, default_value_t = 7600)]
    pub base_port: u16,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Closed-loop clients per measurement.
    #[arg(long, default_value_t = 16)]
    pub clients: u64,
    #[arg(long, default_value_t = 1_000)]
    pub keys: u64,
    #[arg(long, default_value_t = 256)]
    pub value_size: u64,
    /// Where the report goes (lab-latency.md and lab-latency.html).
    #[arg(long, default_value = "lab-report")]
    pub report: PathBuf,
}

/// The most seconds one measurement may be asked to run.
const SECONDS_MAX: u64 = 3_600;

pub fn run(command: &LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Latency(args) => latency(args),
        LabCommand::Skew(args) => crate::lab_skew::run(args),
        LabCommand::Partition(args) => crate::lab_partition::run(args),
    }
}

/// One measured row: what ran, its figures, and what they mean.
struct Row {
    name: &'static str,
    explanation: &'static str,
    result: Json,
}

const ROWS: [(&str, &str, Option<&str>, &str); 5] = [
    (
        "write",
        "put",
        None,
        "acknowledged once its entry is durable (fdatasync) on a majority: one round trip \
         to the followers and the slower of two disk syncs; always at the leader",
    ),
    (
        "read, linearizable",
        "get",
        Some("linearizable"),
        "ReadIndex: the leader confirms it still leads with one heartbeat round to a \
         majority, then reads its state; no disk, but a network round per batch of reads",
    ),
    (
        "read, lease",
        "get",
        Some("lease"),
        "the leader reads under its lease, without the round, while clocks drift less \
         than the configured bound; linearizable under that assumption",
    ),
    (
        "read, follower",
        "get",
        Some("follower"),
        "any node asks the leader for the read index (one round trip, no data) and serves \
         from its own state once it has applied that far: linearizable, load spread",
    ),
    (
        "read, stale",
        "get",
        Some("stale"),
        "any node serves its applied state at once: no coordination at all, and reads \
         spread over every node, but it may miss recent writes (SYNOD.GET reports by how \
         much)",
    ),
];

/// A cluster the lab started with `synod up`, stopped with SIGTERM when dropped.
pub(crate) struct LabCluster {
    pub(crate) up: Child,
    pub(crate) dir: PathBuf,
}

impl LabCluster {
    /// Starts `synod up` with `nodes` nodes from `base_port`, its data in `dir` (emptied
    /// first); its stderr is inherited unless `configure`, which may also set the
    /// environment, says otherwise.
    pub(crate) fn start(
        exe: &Path,
        nodes: u64,
        base_port: u16,
        dir: PathBuf,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<LabCluster> {
        LabCluster::start_through(&[], exe, nodes, base_port, dir, configure)
    }

    /// As `start`, with `synod up` run through `launcher` (a program and its arguments that
    /// run the command after them, such as `taskset -c 0`); empty: run directly.
    pub(crate) fn start_through(
        launcher: &[&str],
        exe: &Path,
        nodes: u64,
        base_port: u16,
        dir: PathBuf,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<LabCluster> {
        let _ = std::fs::remove_dir_all(&dir);
        let mut command = crate::server::command_through(launcher, exe);
        command
            .args(["up", "--nodes", &nodes.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        configure(&mut command);
        let up = command.spawn().context("cannot start synod up")?;
        Ok(LabCluster { up, dir })
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        let pid = self.up.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.up.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster(args: &LatencyArgs, exe: &Path) -> anyhow::Result<(LabCluster, String)> {
    let dir = std::env::temp_dir().join(format!("synod-lab-{}", std::process::id()));
    let cluster = LabCluster::start(exe, args.nodes, args.base_port, dir, |_| {})?;
    let endpoints: Vec<String> = (1..=args.nodes)
        .map(|id| format!("127.0.0.1:{}", u64::from(args.base_port) + id))
        .collect();
    Ok((cluster, endpoints.join(",")))
}

/// Runs one `synod bench load` and returns its JSON line.
fn measure(
    exe: &Path,
    args: &LatencyArgs,
    endpoints: &str,
    workload: &str,
    level: Option<&str>,
) -> anyhow::Result<Json> {
    let mut command = Command::new(exe);
    command
        .args(["bench", "load", "--target", "synod", "--json"])
        .args(["--endpoints", endpoints, "--workload", workload])
        .args(["--clients", &args.clients.to_string()])
        .args(["--keys", &args.keys.to_string()])
        .args(["--value-size", &args.value_size.to_string()])
        .args(["--duration-secs", &args.seconds.to_string()]);
    if let Some(level) = level {
        command.args(["--level", level]);
    }
    bench_load_result(&mut command)
}

/// Runs a `synod bench load ... --json` command, its stderr inherited, and returns the
/// JSON line it ends with.
pub(crate) fn bench_load_result(command: &mut Command) -> anyhow::Result<Json> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run synod bench load")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().rev().find(|line| line.starts_with('{'));
    let Some(line) = line else {
        bail!("synod bench load printed no result ({})", output.status);
    };
    serde_json::from_str(line).context("synod bench load's result is not JSON")
}

/// Waits until the cluster serves writes (a leader is elected), bounded in time.
pub(crate) fn wait_for_leader(exe: &Path, endpoints: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = Command::new(exe)
            .args([
                "bench",
                "load",
                "--target",
                "synod",
                "--json",
                "--endpoints",
            ])
            .arg(endpoints)
            .args(["--clients", "1", "--requests", "1", "--keys", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|status| status.success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the cluster at {endpoints} did not serve a write within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn latency(args: &LatencyArgs) -> anyhow::Result<ExitCode> {
    if !(1..=SECONDS_MAX).contains(&args.seconds) {
        bail!("--seconds must be between 1 and {SECONDS_MAX}");
    }
    let exe = std::env::current_exe().context("cannot find the synod executable")?;
    let (_cluster, endpoints) = match &args.endpoints {
        Some(endpoints) => (None, endpoints.clone()),
        None => {
            let (cluster, endpoints) = start_cluster(args, &exe)?;
            (Some(cluster), endpoints)
        }
    };
    wait_for_leader(&exe, &endpoints)?;
    let mut rows = Vec::new();
    for (name, workload, level, explanation) in ROWS {
        eprintln!("lab latency: measuring {name} ({} s)...", args.seconds);
        let result = measure(&exe, args, &endpoints, workload, level)?;
        rows.push(Row {
            name,
            explanation,
            result,
        });
    }
    let markdown = render_markdown(args, &rows);
    print!("{markdown}");
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("cannot create {}", args.report.display()))?;
    let md_path = args.report.join("lab-latency.md");
    let html_path = args.report.join("lab-latency.html");
    std::fs::write(&md_path, &markdown)?;
    std::fs::write(&html_path, render_html(args, &rows))?;
    eprintln!(
        "lab latency: report in {} and {}",
        md_path.display(),
        html_path.display()
    );
    let errors: u64 = rows
        .iter()
        .map(|row| figure(&row.result, "errors") + figure(&row.result, "violations"))
        .sum();
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn figure(result: &Json, name: &str) -> u64 {
    result[name]
        .as_f64()
        .map_or(0, |value| value.max(0.0) as u64)
}

pub(crate) fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1_000.0)
}

fn render_markdown(args: &LatencyArgs, rows: &[Row]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# synod lab latency: the price of consistency, no faults\n"
    );
    let _ = writeln!(
        text,
        "{} closed-loop clients, {} keys, {}-byte values, {} s per row. Every node fsyncs \
         every write. Latencies in milliseconds.\n",
        args.clients, args.keys, args.value_size, args.seconds
    );
    let _ = writeln!(
        text,
        "| operation | ops/s | p50 | p99 | p99.9 | errors | what it costs and why |"
    );
    let _ = writeln!(text, "|---|---|---|---|---|---|---|");
    for row in rows {
        let result = &row.result;
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            figure(result, "ops_per_sec"),
            millis(figure(result, "p50_us")),
            millis(figure(result, "p99_us")),
            millis(figure(result, "p999_us")),
            figure(result, "errors") + figure(result, "violations"),
            row.explanation
        );
    }
    let _ = writeln!(
        text,
        "\nPACELC says that even with no partition (the \"else\"), a replicated store trades \
         latency (L) for consistency (C). Read down the table: each level gives up a little \
         consistency, or leans on an assumption (bounded clock drift for lease), for speed. \
         Writes pay for durability on a majority whatever the read level.\n"
    );
    let _ = writeln!(
        text,
        "Reproduce: `synod lab latency --seconds {} --clients {}`; each row is `synod bench \
         load --workload {{put|get}} [--level L]`.",
        args.seconds, args.clients
    );
    text
}

fn render_html(args: &LatencyArgs, rows: &[Row]) -> String {
    let p99_max = rows
        .iter()
        .map(|row| figure(&row.result, "p99_us"))
        .max()
        .unwrap_or(1)
        .max(1);
    let ops_max = rows
        .iter()
        .map(|row| figure(&row.result, "ops_per_sec"))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut bars = String::new();
    for (index, row) in rows.iter().enumerate() {
        let y = 30 + index * 56;
        let p50 = figure(&row.result, "p50_us");
        let p99 = figure(&row.result, "p99_us");
        let ops = figure(&row.result, "ops_per_sec");
        let width = |value: u64, max: u64| 8 + (value * 360 / max) as usize;
        let _ = write!(
            bars,
            "<text x=\"0\" y=\"{}\">{}</text>\
             <rect x=\"160\" y=\"{}\" width=\"{}\" height=\"12\" fill=\"#9ec5fe\"/>\
             <rect x=\"160\" y=\"{}\" width=\"{}\" height=\"12\" fill=\"#0d6efd\"/>\
             <text x=\"{}\" y=\"{}\">p50 {} ms, p99 {} ms</text>\
             <rect x=\"640\" y=\"{}\" width=\"{}\" height=\"12\" fill=\"#198754\"/>\
             <text x=\"{}\" y=\"{}\">{} ops/s</text>",
            y + 10,
            escape(row.name),
            y,
            width(p99, p99_max),
            y,
            width(p50, p99_max),
            160 + width(p99, p99_max) + 6,
            y + 10,
            millis(p50),
            millis(p99),
            y + 20,
            width(ops, ops_max) / 2,
            640 + width(ops, ops_max) / 2 + 6,
            y + 30,
            ops,
        );
    }
    let height = 40 + rows.len() * 56;
    let mut explanations = String::new();
    for row in rows {
        let _ = write!(
            explanations,
            "<li><b>{}</b>: {}</li>",
            escape(row.name),
            escape(row.explanation)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>synod lab latency</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}\
         text{{font-size:12px}}</style></head><body>\
         <h1>synod lab latency: the price of consistency, no faults</h1>\
         <p>{} closed-loop clients, {} keys, {}-byte values, {} s per row; every node \
         fsyncs every write. Light bar: p99 latency; dark bar: p50; green: throughput.</p>\
         <svg width=\"1000\" height=\"{height}\">{bars}</svg><ul>{explanations}</ul>\
         <p>PACELC: even with no partition, a replicated store trades latency for \
         consistency. Each level down the chart gives up a little consistency, or leans on \
         bounded clock drift (lease), for speed.</p></body></html>\n",
        args.clients, args.keys, args.value_size, args.seconds
    )
}
